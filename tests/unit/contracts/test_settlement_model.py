"""MeshSettlement against a small Python model of its rules, on generated batches.

settle reads calldata by offset and keeps its caches in raw memory tables for gas; this
checks that, whatever the mix of good and bad items, the statuses, credits, refunds and
the solvency invariant are exactly what the rules say.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from contract_kit import (
    AUTHORIZATION_FAILED,
    BAD_SPLIT,
    NONCE_USED,
    NOT_ENTRY_SIGNER,
    SETTLED,
    UNKNOWN_AGENT,
    Chain,
    key,
    make_item,
    make_payment,
    statuses_of,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

UNKNOWN = 77
BALANCE = 10**9


@dataclass(frozen=True)
class Spec:
    """One generated item: who pays, how it is split, and what (if anything) is wrong."""

    payer: int
    value: int
    refund_share: int  # refund = value * share // 4
    agents: tuple[int, ...]  # indices into (entry, other, UNKNOWN)
    fault: str  # "", "expired", "bad-sig", "foreign-entry", "split+1", "split-1", "duplicate"


specs = st.builds(
    Spec,
    payer=st.integers(0, 2),
    value=st.integers(1, 10**6),
    refund_share=st.integers(0, 4),
    agents=st.lists(st.sampled_from([0, 0, 1, 1, 2]), min_size=0, max_size=3).map(tuple),
    fault=st.sampled_from(
        ["", "", "", "", "expired", "bad-sig", "foreign-entry", "split+1", "split-1", "duplicate"]
    ),
)


@dataclass
class Model:
    credited: dict[int, int] = field(default_factory=dict)
    refunded: dict[str, int] = field(default_factory=dict)
    paid: dict[str, int] = field(default_factory=dict)
    settled: set[bytes] = field(default_factory=set)


def _split(value: int, refund: int, agents: list[int]) -> list[tuple[int, int]]:
    rest = value - refund
    if not agents:
        return []
    share = rest // len(agents)
    amounts = [share] * (len(agents) - 1) + [rest - share * (len(agents) - 1)]
    return list(zip(agents, amounts, strict=True))


def _expected(spec: Spec, item: tuple, entry_ok: bool, model: Model, payer_address: str) -> int:  # noqa: PLR0911 (one return per rule, in the contract's order)
    payment, _, _, credits, refund = item
    nonce = payment[4]
    if not entry_ok:
        return NOT_ENTRY_SIGNER
    rest = payment[1] - refund
    if rest < 0:
        return BAD_SPLIT
    for agent, amount in credits:
        if amount > rest:
            return BAD_SPLIT
        rest -= amount
        if agent == UNKNOWN:
            return UNKNOWN_AGENT
    if rest != 0:
        return BAD_SPLIT
    # The token's pull comes last and refuses a nonce it has already executed.
    if nonce in model.settled:
        return NONCE_USED
    if spec.fault in ("expired", "bad-sig"):
        return AUTHORIZATION_FAILED
    model.settled.add(nonce)
    for agent, amount in credits:
        model.credited[agent] = model.credited.get(agent, 0) + amount
    model.paid[payer_address] = model.paid.get(payer_address, 0) + payment[1]
    model.refunded[payer_address] = model.refunded.get(payer_address, 0) + refund
    return SETTLED


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(batch=st.lists(specs, min_size=1, max_size=6))
def test_settle_matches_the_model(deployed: Chain, batch: list[Spec]) -> None:
    chain = deployed
    snapshot = chain.tester.take_snapshot()
    try:
        _run(chain, batch)
    finally:
        chain.tester.revert_to_snapshot(snapshot)


def _run(chain: Chain, batch: list[Spec]) -> None:
    node, peer = chain.accounts[1], chain.accounts[2]
    entry, other = chain.register(node), chain.register(peer)
    agent_ids = (entry, other, UNKNOWN)
    payers = [key(40 + i) for i in range(3)]
    for payer in payers:
        chain.mint(payer.address, BALANCE)

    items: list[tuple] = []
    effective: list[Spec] = []  # a duplicate behaves like the item it repeats
    for spec in batch:
        if spec.fault == "duplicate" and items:
            items.append(items[-1])
            effective.append(effective[-1])
            continue
        effective.append(spec)
        payer = payers[spec.payer]
        overrides = {"value": spec.value}
        if spec.fault == "expired":
            overrides["validBefore"] = 1
        signer = key(99) if spec.fault == "bad-sig" else None
        payment = make_payment(chain, payer, signer=signer, **overrides)
        refund = spec.value * spec.refund_share // 4
        credits = _split(spec.value, refund, [agent_ids[a] for a in spec.agents])
        if spec.fault == "split+1":
            refund += 1
        if spec.fault == "split-1" and refund > 0:
            refund -= 1
        elif spec.fault == "split-1" and credits:
            credits[-1] = (credits[-1][0], credits[-1][1] + 1)
        entry_of_item = other if spec.fault == "foreign-entry" else entry
        items.append(make_item(payment, entry_of_item, credits, refund))

    model = Model()
    expected = []
    for spec, item in zip(effective, items, strict=True):
        entry_ok = item[1] == entry
        payer_address = item[0][0]
        expected.append(_expected(spec, item, entry_ok, model, payer_address))

    assert statuses_of(chain, items, node) == expected
    chain.transact(chain.settlement.functions.settle(items), node)

    settlement = chain.settlement.functions
    for agent in (entry, other):
        assert settlement.balanceOf(agent).call() == model.credited.get(agent, 0)
    for payer in payers:
        spent = model.paid.get(payer.address, 0) - model.refunded.get(payer.address, 0)
        assert chain.token.functions.balanceOf(payer.address).call() == BALANCE - spent
    held = chain.token.functions.balanceOf(chain.settlement.address).call()
    assert settlement.liabilities().call() == held == sum(model.credited.values())
