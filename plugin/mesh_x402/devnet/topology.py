"""The devnet's mesh: which node serves which model, and the traffic sent to it.

mesh-llm tells a plugin what each peer does through `PEER_UP` snapshots
(`serving_models`, `hosted_models`, `vram_bytes`), and the receipts credit
work from that view. The devnet lays its mesh out so that every attribution
case shows up: a model served by one node, a model served by another, and
a model split (pipeline) across two nodes in proportion to their VRAM; a
client entering at a node that serves nothing itself pays a routing share
to that node and the rest to the workers.

Every node's mesh-llm API (the fake upstream) answers for every model,
because mesh-llm routes a request to whichever peer serves the model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from mesh_x402.config import Price
from mesh_x402.devnet.fake_upstream import FakeModel

__all__ = [
    "GIB",
    "ModelSpec",
    "NodeLayout",
    "PlannedRequest",
    "mesh_layout",
    "plan_requests",
]

GIB: Final = 2**30
_VRAM_GIB: Final = (24, 48, 80)
_PROMPTS: Final = (
    "Explain in two sentences why a mesh of GPUs can serve a model none of them fits alone.",
    "Write a haiku about paying for inference one token at a time.",
    "Summarise what an EIP-3009 transferWithAuthorization lets a payee do.",
    "List three things a node operator should check before joining a public mesh.",
    "Translate 'the model is split across two machines' into French and German.",
    "What is the difference between a routing share and a compute share?",
)


@dataclass(frozen=True)
class ModelSpec:
    """One model of the mesh: how the fake generates it, what it costs, who runs it.

    Attributes:
        id: the model name clients ask for.
        price: the per-model price every node's price sheet carries.
        completion_tokens: the answer's natural length (max_tokens may cut it).
        chunks: SSE chunks a streamed answer is split into.
        chunk_delay: seconds between two chunks (tokens per second, roughly).
        first_byte_delay: seconds before the first byte (prompt processing).
        serving: node indexes that list it in `serving_models`.
        hosted: node indexes that list it in `hosted_models` (two or more: split).
    """

    id: str
    price: Price
    completion_tokens: int
    chunks: int
    chunk_delay: float
    first_byte_delay: float
    serving: tuple[int, ...]
    hosted: tuple[int, ...]

    @property
    def split(self) -> bool:
        return len(self.hosted) > 1

    def fake(self, nodes: int) -> FakeModel:
        """The fake upstream's model; `owned_by` names the node(s) that run it."""
        owners = "+".join(f"node-{i}" for i in (self.hosted or self.serving)) or f"{nodes} nodes"
        return FakeModel(
            self.id,
            completion_tokens=self.completion_tokens,
            chunks=self.chunks,
            chunk_delay=self.chunk_delay,
            first_byte_delay=self.first_byte_delay,
            owned_by=owners,
        )


@dataclass(frozen=True)
class NodeLayout:
    """What one node gossips about itself (its `MeshPeer`)."""

    index: int
    vram_bytes: int
    serving_models: tuple[str, ...]
    hosted_models: tuple[str, ...]


@dataclass(frozen=True)
class PlannedRequest:
    """One paid request of the run: who pays, where it enters, what it asks."""

    index: int
    client: int
    entry: int
    model: str
    stream: bool
    prompt: str
    max_tokens: int


def mesh_layout(nodes: int) -> tuple[list[ModelSpec], list[NodeLayout]]:
    """The models and the nodes' gossip for a mesh of `nodes` (at least 2).

    Node 0 serves the small model, node 1 the mid-size one, and the large
    model is split across the last two nodes (nodes 0 and 1 when there are
    only two).

    Raises:
        ValueError: fewer than two nodes.
    """
    if nodes < 2:
        raise ValueError(f"a mesh needs at least 2 nodes, got {nodes}")
    split = (nodes - 2, nodes - 1)
    models = [
        ModelSpec(
            "qwen2.5-7b-instruct",
            Price(base=500, prompt_per_1k=200, completion_per_1k=800),
            completion_tokens=60,
            chunks=12,
            chunk_delay=0.015,
            first_byte_delay=0.05,
            serving=(0,),
            hosted=(0,),
        ),
        ModelSpec(
            "llama-3.1-8b-instruct",
            Price(base=600, prompt_per_1k=250, completion_per_1k=1000),
            completion_tokens=90,
            chunks=15,
            chunk_delay=0.015,
            first_byte_delay=0.08,
            serving=(1,),
            hosted=(1,),
        ),
        ModelSpec(
            "llama-3.3-70b-instruct",
            Price(base=2000, prompt_per_1k=1000, completion_per_1k=4000),
            completion_tokens=140,
            chunks=20,
            chunk_delay=0.02,
            first_byte_delay=0.2,
            serving=(split[0],),
            hosted=split,
        ),
    ]
    layout = []
    for index in range(nodes):
        layout.append(
            NodeLayout(
                index=index,
                vram_bytes=_VRAM_GIB[index % len(_VRAM_GIB)] * GIB,
                serving_models=tuple(m.id for m in models if index in m.serving),
                hosted_models=tuple(m.id for m in models if index in m.hosted),
            )
        )
    return models, layout


def plan_requests(
    requests: int, nodes: int, clients: int, models: list[ModelSpec]
) -> list[PlannedRequest]:
    """Spread `requests` over entry nodes, models, clients, streamed and not.

    Entry nodes take turns, and each round shifts the models by one, so
    every entry node sees every model; every other pair of requests is
    streamed, so every entry node gets both kinds; clients take turns by
    round.
    """
    planned = []
    for index in range(requests):
        round_ = index // nodes
        entry = index % nodes
        model = models[(entry + round_) % len(models)]
        planned.append(
            PlannedRequest(
                index=index,
                client=round_ % clients,
                entry=entry,
                model=model.id,
                stream=(index // 2) % 2 == 1,
                prompt=_PROMPTS[index % len(_PROMPTS)],
                max_tokens=(64, 128, 256)[index % 3],
            )
        )
    return planned
