"""Attribution: the entry node's routing share, then the node(s) that ran the model."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from mesh_x402.core.attribution import Worker, attribute
from mesh_x402.core.receipts import Credit

GiB = 2**30
ENTRY = 0
A = "aa" * 32
B = "bb" * 32
C = "cc" * 32


def peer(peer_id: str, agent: int | None, vram: int, *, serving: tuple[str, ...] = (),
         hosted: tuple[str, ...] = ()) -> Worker:  # fmt: skip
    return Worker(peer_id, agent, vram * GiB, serving, hosted)


@pytest.mark.parametrize(
    ("charge", "peers", "bps", "mode", "credits"),
    [
        pytest.param(10_000, [peer(A, 1, 24, serving=("other",))], 1000, "solo",
                     [(ENTRY, 10_000)], id="solo: nobody else lists the model"),
        pytest.param(10_000, [peer(A, 1, 24, serving=("m",)), peer(B, 2, 48)], 1000, "peer",
                     [(ENTRY, 1_000), (1, 9_000)], id="served by one peer"),
        pytest.param(10_000, [peer(A, 1, 24, serving=("m",)), peer(B, 2, 48, serving=("m",))],
                     1000, "peer", [(ENTRY, 1_000), (2, 9_000)],
                     id="elected: most VRAM among the hosts"),
        pytest.param(10_000, [peer(B, 2, 24, serving=("m",)), peer(A, 1, 24, serving=("m",))],
                     1000, "peer", [(ENTRY, 1_000), (1, 9_000)],
                     id="elected: VRAM tie goes to the lowest peer id"),
        pytest.param(10_000, [peer(A, 1, 24, hosted=("m",)), peer(B, 2, 72, hosted=("m",))],
                     1000, "split", [(ENTRY, 1_000), (1, 2_250), (2, 6_750)],
                     id="split in 2 stages by VRAM"),
        pytest.param(1_001, [peer(A, 1, 16, hosted=("m",)), peer(B, 2, 24, hosted=("m",)),
                             peer(C, 3, 40, hosted=("m",))],
                     500, "split", [(ENTRY, 50 + 1), (1, 190), (2, 285), (3, 475)],
                     id="split in 3 stages, rounding remainder to the entry"),
        pytest.param(10_000, [peer(A, None, 24, serving=("m",))], 1000, "peer",
                     [(ENTRY, 10_000)], id="unverified worker: its share goes to the entry"),
        pytest.param(999, [peer(A, 1, 8, serving=("m",))], 0, "peer", [(1, 999)],
                     id="no routing share"),
        pytest.param(999, [peer(A, 1, 8, serving=("m",))], 10_000, "peer", [(ENTRY, 999)],
                     id="all routing share"),
        pytest.param(0, [peer(A, 1, 8, serving=("m",))], 1000, "peer", [],
                     id="zero charge credits nobody"),
        pytest.param(10, [peer(A, 1, 0, hosted=("m",)), peer(B, 2, 0, hosted=("m",))], 0,
                     "split", [(1, 5), (2, 5)], id="split with no VRAM known: equal parts"),
    ],
)  # fmt: skip
def test_table(
    charge: int,
    peers: list[Worker],
    bps: int,
    mode: str,
    credits: list[tuple[int, int]],
) -> None:
    """Each row: who is credited what, and the mode the rule saw."""
    result = attribute(
        charge=charge, model="m", entry_agent_id=ENTRY, peers=peers, routing_share_bps=bps
    )
    assert result.mode == mode
    assert result.credits == tuple(Credit(a, m) for a, m in credits)
    assert sum(c.amount for c in result.credits) == charge


def test_workers_reported_with_unverified() -> None:
    """The attribution names the workers and which of them could not be credited."""
    result = attribute(
        charge=100,
        model="m",
        entry_agent_id=ENTRY,
        peers=[peer(B, None, 24, hosted=("m",)), peer(A, 1, 24, hosted=("m",))],
        routing_share_bps=0,
    )
    assert result.workers == (A, B)
    assert result.unverified == (B,)
    assert result.credits == (Credit(ENTRY, 50), Credit(1, 50))


def test_entry_also_a_stage_is_credited_once() -> None:
    """A worker with the entry's agentId is merged into the entry's one credit."""
    result = attribute(
        charge=100,
        model="m",
        entry_agent_id=7,
        peers=[peer(A, 7, 24, hosted=("m",)), peer(B, 2, 24, hosted=("m",))],
        routing_share_bps=1000,
    )
    assert result.credits == (Credit(7, 55), Credit(2, 45))


@pytest.mark.parametrize(("charge", "bps"), [(-1, 0), (1, -1), (1, 10_001)])
def test_bad_input(charge: int, bps: int) -> None:
    """A negative charge or an out-of-range share is refused."""
    with pytest.raises(ValueError, match=r"charge|routing_share_bps"):
        attribute(charge=charge, model="m", entry_agent_id=0, peers=[], routing_share_bps=bps)


@given(
    charge=st.integers(min_value=0, max_value=10**30),
    bps=st.integers(min_value=0, max_value=10_000),
    vrams=st.lists(st.integers(min_value=0, max_value=2**45), min_size=1, max_size=6),
)
def test_credits_always_sum_to_the_charge(charge: int, bps: int, vrams: list[int]) -> None:
    """Whatever the split, credits sum to the charge and the entry keeps at least its share."""
    peers = [Worker(f"{i:064x}", i + 1, v, (), ("m",)) for i, v in enumerate(vrams)]
    result = attribute(charge=charge, model="m", entry_agent_id=0, peers=peers,
                       routing_share_bps=bps)  # fmt: skip
    assert sum(c.amount for c in result.credits) == charge
    entry = sum(c.amount for c in result.credits if c.agent_id == 0)
    assert entry >= charge * bps // 10_000
    assert len({c.agent_id for c in result.credits}) == len(result.credits)
