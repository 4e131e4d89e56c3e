"""`GateContext`: everything the x402 gate needs, built once by `serve`.

The gate itself reads no files and opens no connections: `serve` (or a
test) reads the token's domain from the chain once, opens the journal and
the upstream client, and hands them over here.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from mesh_x402.config import NodeConfig
from mesh_x402.core.ports import BalanceView, Clock, ReceiptIssuer, Settler, TokenDomain
from mesh_x402.http.upstream import UpstreamClient
from mesh_x402.store.journal import Journal

__all__ = ["GateContext"]


@dataclass(frozen=True)
class GateContext:
    """The gate's dependencies.

    Attributes:
        config: the node config (pricing, gateway body limit, settlement mode).
        journal: the payment journal (`Journal.in_state_dir(config.state_path)`).
        token: the payment token's EIP-712 domain, read from the chain at start
            (`name()`, `version()`, the chain id, the token address).
        pay_to: the settlement contract (`config.chain.settlement`), checksummed.
        balances: cached payer balances (`http.balances.BalanceCache`).
        upstream: the pooled client for mesh-llm's OpenAI API.
        clock: unix time in seconds.
        agent_id: this node's ERC-8004 agentId, if registered (for the
            registration file).
        identity_registry: the ERC-8004 registry address, if any.
        public_url: the gateway's public base URL for the registration file;
            by default taken from each request's `Host`.
        receipts: signs receipts and floods reservations; None: journal only.
        settler: settles a non-streamed payment before its response is
            released; set exactly when `config.settlement.mode` is `immediate`.
    """

    config: NodeConfig
    journal: Journal
    token: TokenDomain
    pay_to: str
    balances: BalanceView
    upstream: UpstreamClient
    clock: Clock = time.time
    agent_id: int | None = None
    identity_registry: str | None = None
    public_url: str | None = None
    receipts: ReceiptIssuer | None = None
    settler: Settler | None = None
