"""The devnet's report: one pydantic model, printed as text or as one JSON document.

Every figure in it was measured during the run: token counts and charges
from the nodes' journals and the clients' payment responses, credits,
refunds and withdrawals from the chain's events, gas from the mined
transactions' receipts. The checks (`checks`, and `invariants` mapping each
check's name to its outcome) are what the exit code depends on.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, computed_field

__all__ = [
    "AgentLine",
    "ChainInfo",
    "Check",
    "ClientLine",
    "DevnetReport",
    "GasLine",
    "NodeLine",
    "RequestLine",
    "SettlementInfo",
    "TxLine",
]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ChainInfo(_Model):
    """The chain the run used and the contracts it deployed."""

    kind: str
    rpc: str
    chain_id: int
    token: str
    settlement: str
    identity_registry: str
    deployed_at: int


class NodeLine(_Model):
    """One node: its identity, its doors, and what it runs."""

    name: str
    peer_id: str
    agent_id: int
    signer: str
    wallet: str
    gateway_url: str
    management_url: str
    vram_gib: int
    serving_models: list[str]
    hosted_models: list[str]
    folder: str


class RequestLine(_Model):
    """One paid request as the client and the entry node saw it."""

    index: int
    client: str
    entry: str
    model: str
    stream: bool
    status: int
    receipt_id: str | None
    authorized: int | None
    charged: int | None
    prompt_tokens: int | None
    completion_tokens: int | None
    credits: dict[int, int]
    """agentId -> amount, from the payment's `PaymentSettled` event (empty: not settled)."""
    error: str | None


class ClientLine(_Model):
    """One paying client: what it was asked, charged and refunded."""

    name: str
    address: str
    funded: int
    requests: int
    paid: int
    streamed: int
    prompt_tokens: int
    completion_tokens: int
    authorized: int
    charged: int
    refunded: int
    balance_after: int


class AgentLine(_Model):
    """One ERC-8004 agent (a node): credits from the chain, and where they went."""

    agent_id: int
    node: str
    credited: int
    acknowledged: int | None
    """Credits in receipts the node itself signed or countersigned (its reconciler's count)."""
    payments: int
    withdrawn: int
    remaining: int
    wallet: str
    wallet_balance: int


class TxLine(_Model):
    """One mined transaction of the run."""

    kind: str
    tx_hash: str
    block: int
    gas_used: int


class GasLine(_Model):
    """Gas by kind of transaction."""

    kind: str
    transactions: int
    gas_used: int


class SettlementInfo(_Model):
    """How settlement went: `status` is "settled" or why it did not happen."""

    status: str
    batches: int = 0
    settled: int = 0
    failed: int = 0
    settle_gas_per_payment: int | None = None


class Check(_Model):
    """One invariant and whether the run kept it (`detail` says what was compared)."""

    name: str
    ok: bool
    detail: str


class DevnetReport(_Model):
    """Everything a devnet run measured."""

    chain: ChainInfo
    nodes: list[NodeLine]
    requests: list[RequestLine]
    clients: list[ClientLine]
    agents: list[AgentLine]
    settlement: SettlementInfo
    transactions: list[TxLine]
    gas: list[GasLine]
    checks: list[Check]
    workdir: str
    seconds: float

    @computed_field  # type: ignore[prop-decorator]
    @property
    def invariants(self) -> dict[str, bool]:
        """{check name: kept}: what `--json` consumers test."""
        return {check.name: check.ok for check in self.checks}

    @computed_field  # type: ignore[prop-decorator]
    @property
    def ok(self) -> bool:
        """Every invariant held (and there was at least one to hold)."""
        return bool(self.checks) and all(check.ok for check in self.checks)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def summary(self) -> dict[str, int]:
        """Headline counts: requests, paid, streamed, tokens, charged, refunded, gas."""
        paid = [r for r in self.requests if r.status == 200 and r.error is None]
        return {
            "requests": len(self.requests),
            "paid": len(paid),
            "streamed": sum(1 for r in paid if r.stream),
            "prompt_tokens": sum(c.prompt_tokens for c in self.clients),
            "completion_tokens": sum(c.completion_tokens for c in self.clients),
            "authorized": sum(c.authorized for c in self.clients),
            "charged": sum(c.charged for c in self.clients),
            "refunded": sum(c.refunded for c in self.clients),
            "credited": sum(a.credited for a in self.agents),
            "withdrawn": sum(a.withdrawn for a in self.agents),
            "transactions": len(self.transactions),
            "gas_used": sum(t.gas_used for t in self.transactions),
        }

    def to_json(self) -> str:
        return self.model_dump_json(indent=2) + "\n"

    def render(self) -> str:
        """The report as text for a person (amounts in atomic units and in tokens)."""
        return "\n".join(_render(self)) + "\n"


def _usd(amount: int) -> str:
    # TestUSDC has 6 decimals, like USDC.
    return f"{amount / 1_000_000:.6f}"


def _table(headers: list[str], rows: list[list[Any]]) -> list[str]:
    cells = [[str(c) for c in row] for row in rows]
    widths = [
        max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(headers)
    ]
    lines = ["  " + "  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))]
    for row in cells:
        lines.append(
            "  "
            + "  ".join(
                c.rjust(w) if c.replace(".", "").isdigit() else c.ljust(w)
                for c, w in zip(row, widths, strict=True)
            )
        )
    return [line.rstrip() for line in lines]


def _render(report: DevnetReport) -> list[str]:
    s = report.summary
    chain = report.chain
    out = [
        f"mesh-x402 devnet: {len(report.nodes)} nodes, {s['requests']} requests, "
        f"{report.seconds:.1f} s",
        "",
        f"chain    {chain.kind} {chain.rpc} (chain id {chain.chain_id})",
        f"token    {chain.token} (TestUSDC, 6 decimals)",
        f"registry {chain.identity_registry} (ERC-8004)",
        f"payTo    {chain.settlement} (MeshSettlement, block {chain.deployed_at})",
        "",
        "nodes",
    ]
    out += _table(
        ["node", "agent", "vram", "serves", "hosts", "gateway"],
        [
            [
                n.name,
                n.agent_id,
                f"{n.vram_gib}G",
                ",".join(n.serving_models) or "-",
                ",".join(n.hosted_models) or "-",
                n.gateway_url,
            ]
            for n in report.nodes
        ],
    )
    out += [
        "",
        f"requests: {s['paid']}/{s['requests']} paid ({s['streamed']} streamed), "
        f"tokens metered {s['prompt_tokens']} prompt + {s['completion_tokens']} completion",
    ]
    out += _table(
        [
            "#",
            "client",
            "entry",
            "model",
            "mode",
            "status",
            "authorized",
            "charged",
            "tokens",
            "credits (agent:amount)",
        ],
        [
            [
                r.index,
                r.client,
                r.entry,
                r.model,
                "stream" if r.stream else "json",
                r.status if r.error is None else f"{r.status} {r.error}",
                r.authorized if r.authorized is not None else "-",
                r.charged if r.charged is not None else "-",
                f"{r.prompt_tokens or 0}+{r.completion_tokens or 0}",
                " ".join(f"{agent}:{amount}" for agent, amount in r.credits.items()) or "-",
            ]
            for r in report.requests
        ],
    )
    out += ["", "clients (atomic units; 1 USDC = 1000000)"]
    out += _table(
        ["client", "address", "paid", "tokens", "authorized", "charged", "refunded", "balance"],
        [
            [
                c.name,
                c.address,
                f"{c.paid}/{c.requests}",
                f"{c.prompt_tokens}+{c.completion_tokens}",
                c.authorized,
                c.charged,
                c.refunded,
                f"{c.balance_after} ({_usd(c.balance_after)})",
            ]
            for c in report.clients
        ],
    )
    st = report.settlement
    per = (
        f", {st.settle_gas_per_payment} gas per payment"
        if st.settle_gas_per_payment is not None
        else ""
    )
    out += [
        "",
        f"settlement: {st.status}: {st.settled} settled, {st.failed} failed "
        f"in {st.batches} batch(es){per}",
    ]
    out += ["", "credits per agent (from PaymentSettled / Withdrawn events)"]
    out += _table(
        [
            "agent",
            "node",
            "payments",
            "credited",
            "acknowledged",
            "withdrawn",
            "left",
            "wallet",
            "wallet balance",
        ],
        [
            [
                a.agent_id,
                a.node,
                a.payments,
                a.credited,
                "-" if a.acknowledged is None else a.acknowledged,
                a.withdrawn,
                a.remaining,
                a.wallet,
                a.wallet_balance,
            ]
            for a in report.agents
        ],
    )
    out += ["", f"transactions: {s['transactions']}, gas used {s['gas_used']}"]
    out += _table(
        ["kind", "txs", "gas"], [[g.kind, g.transactions, g.gas_used] for g in report.gas]
    )
    out += ["", "checks"]
    for check in report.checks:
        out.append(f"  [{'ok' if check.ok else 'FAIL'}] {check.name}: {check.detail}")
    out += ["", "all invariants hold" if report.ok else "SOME INVARIANTS FAILED"]
    return out
