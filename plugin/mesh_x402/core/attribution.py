"""Who did the work for one paid exchange, and what each is credited.

Policy `vram-proportional` (the only one; its name goes into every receipt):

1. The entry node (where the client paid) gets its routing share,
   `charge * routing_share_bps // 10_000`.
2. The rest goes to the node(s) that ran the model, as mesh-llm picks them:
   - several peers list the model in `hosted_models`: mesh-llm split it
     (pipeline) across them, in proportion to their VRAM; each stage gets
     `rest * vram // total_vram` (equal parts if no VRAM is known);
   - otherwise the peers listing it in `serving_models` or `hosted_models`
     are its hosts, and mesh-llm elects the one with the most VRAM (ties:
     the lowest peer id) to serve it;
   - no peer lists it: the entry node served it locally (solo) and gets all.
3. Rounding remainders, and the share of a worker whose identity is not
   verified (it cannot be credited on chain), go to the entry node, so the
   credits always sum to the charge exactly and credits + refund == value.

Limits, stated because the plugin cannot see mesh-llm's routing decision:
the rule is recomputed from the mesh view (what peers gossip about their
models and VRAM), so a replicated model served round-robin is credited to
the elected host every time, and the entry node's own hosting is unknown
(the host reports no MeshPeer for the local node): a model the entry node
hosts together with peers is credited to the peers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final, Literal

from mesh_x402.core.receipts import Credit

__all__ = ["BPS", "POLICY", "Attribution", "Mode", "Worker", "attribute"]

POLICY: Final = "vram-proportional"
BPS: Final = 10_000

Mode = Literal["solo", "peer", "split"]


@dataclass(frozen=True)
class Worker:
    """A peer as the mesh view shows it, with its verified agentId (None: unverified)."""

    peer_id: str
    agent_id: int | None
    vram_bytes: int
    serving_models: tuple[str, ...] = ()
    hosted_models: tuple[str, ...] = ()


@dataclass(frozen=True)
class Attribution:
    """The split of one charge.

    Attributes:
        credits: (agentId, amount), the entry node first, each agent once,
            zero amounts left out; they sum to the charge.
        mode: solo (entry alone), peer (one elected host) or split (stages).
        workers: peer ids that ran the model, in credit order.
        unverified: workers whose share went to the entry node instead.
    """

    credits: tuple[Credit, ...]
    mode: Mode
    workers: tuple[str, ...]
    unverified: tuple[str, ...]


def _workers(model: str, peers: Sequence[Worker]) -> tuple[Mode, list[Worker]]:
    stages = [p for p in peers if model in p.hosted_models]
    if len(stages) >= 2:
        return "split", sorted(stages, key=lambda p: p.peer_id)
    hosts = [p for p in peers if model in p.serving_models or model in p.hosted_models]
    if not hosts:
        return "solo", []
    elected = min(hosts, key=lambda p: (-p.vram_bytes, p.peer_id))
    return "peer", [elected]


def attribute(
    *,
    charge: int,
    model: str,
    entry_agent_id: int,
    peers: Sequence[Worker],
    routing_share_bps: int,
) -> Attribution:
    """Split `charge` between the entry node and the peers that ran `model`.

    Args:
        charge: the exchange's charge in atomic units.
        model: the model the request named.
        entry_agent_id: the entry node's agentId.
        peers: the other nodes of the mesh view (never the entry node itself).
        routing_share_bps: the entry node's share in basis points (0..10000).

    Raises:
        ValueError: a negative charge or a share outside 0..10000.
    """
    if charge < 0:
        raise ValueError(f"charge must not be negative, got {charge}")
    if not 0 <= routing_share_bps <= BPS:
        raise ValueError(f"routing_share_bps must be 0..{BPS}, got {routing_share_bps}")
    mode, workers = _workers(model, peers)
    routing = charge * routing_share_bps // BPS
    rest = charge - routing
    if not workers:
        alone = (Credit(entry_agent_id, charge),) if charge else ()
        return Attribution(credits=alone, mode="solo", workers=(), unverified=())
    weights = [w.vram_bytes for w in workers]
    if sum(weights) == 0:
        weights = [1] * len(workers)
    total = sum(weights)
    amounts: dict[int, int] = {entry_agent_id: 0}
    unverified: list[str] = []
    paid = 0
    for worker, weight in zip(workers, weights, strict=True):
        share = rest * weight // total
        if worker.agent_id is None:
            unverified.append(worker.peer_id)
            continue
        amounts[worker.agent_id] = amounts.get(worker.agent_id, 0) + share
        paid += share
    # The routing share, the rounding remainder and unverified shares.
    amounts[entry_agent_id] += charge - paid
    credits = tuple(Credit(agent, amount) for agent, amount in amounts.items() if amount > 0)
    return Attribution(
        credits=credits,
        mode=mode,
        workers=tuple(w.peer_id for w in workers),
        unverified=tuple(unverified),
    )
