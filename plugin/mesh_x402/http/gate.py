"""`open_gate`: the x402 gate's start-up, from a node config to a ready ASGI app.

Everything the hot path must not do is done here, once: connect to the
chain, check the token and settlement contracts have code, read the token's
EIP-712 domain (`name()`, `version()`: they differ between chains), open the
journal and the upstream pool. `serve` calls it after the host link is up,
because a chain that answers slowly must not delay the plugin's handshake.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from eth_utils.address import to_checksum_address

from mesh_x402.chain.bindings import TokenBinding
from mesh_x402.chain.client import ChainClient
from mesh_x402.config import NodeConfig
from mesh_x402.core.ports import ReceiptIssuer, Settler, TokenDomain
from mesh_x402.errors import ConfigError
from mesh_x402.http.app import GateApp, build_app
from mesh_x402.http.balances import BalanceCache
from mesh_x402.http.context import GateContext
from mesh_x402.http.upstream import UpstreamClient
from mesh_x402.log import Event, get_logger
from mesh_x402.store.journal import Journal

__all__ = ["open_gate", "read_token_domain"]

_log = get_logger("http")


def read_token_domain(token: TokenBinding, chain_id: int) -> TokenDomain:
    """The token's EIP-712 domain as the chain reports it (blocking: run in a thread)."""
    return TokenDomain(token.name(), token.version(), chain_id, token.address)


async def open_gate(
    config: NodeConfig,
    *,
    agent_id: int | None = None,
    public_url: str | None = None,
    receipts: Callable[[Journal], ReceiptIssuer | None] | None = None,
    settler: Callable[[Journal], Settler] | None = None,
) -> GateApp:
    """Connect to the chain, read the token domain, open journal and upstream; build the app.

    Payments a previous process left `accepted` (killed mid-request) are
    released first: see `Journal.release_interrupted`.

    Args:
        config: the node config (with `[chain] token` and `settlement` set).
        agent_id: this node's ERC-8004 agentId, for the registration file.
        public_url: the gateway's public base URL, for the registration file.
        receipts: builds the receipt issuer on the opened journal (its
            receipts share the journal's file and transactions).
        settler: builds the settler on the opened journal; required in
            settlement mode `immediate`, refused in mode `deferred`.

    Raises:
        ConfigError: `[chain] token` or `settlement` is not set, or the
            settlement mode and `settler` disagree.
        ChainError: the chain is unreachable, another chain, or lacks a contract.
    """
    chain = config.chain
    if chain.token is None or chain.settlement is None:
        raise ConfigError(
            f"{config.path}: chain.token and chain.settlement must be set to take payments "
            "(run `mesh-x402 deploy`, then `mesh-x402 init --deployment`)"
        )
    token_address, settlement = chain.token, chain.settlement

    def connect() -> tuple[TokenBinding, TokenDomain]:
        client = ChainClient.connect(
            chain.rpc, chain_id=chain.chain_id, confirmations=chain.confirmations
        )
        client.require_code(token_address, "token")
        client.require_code(settlement, "settlement")
        token = TokenBinding(client, token_address)
        return token, read_token_domain(token, chain.chain_id)

    token, domain = await asyncio.to_thread(connect)
    journal = Journal.in_state_dir(config.state_path)
    interrupted = journal.release_interrupted()
    if interrupted:
        _log.warning(Event.PAYMENT_RELEASED, reason="interrupted", count=interrupted)
    upstream = UpstreamClient(config.upstream.url, config.upstream.timeout_seconds)
    try:
        return build_app(
            GateContext(
                config=config,
                journal=journal,
                token=domain,
                pay_to=to_checksum_address(settlement),
                balances=BalanceCache(lambda payer: asyncio.to_thread(token.balance_of, payer)),
                upstream=upstream,
                agent_id=agent_id,
                identity_registry=chain.identity_registry,
                public_url=public_url,
                receipts=None if receipts is None else receipts(journal),
                settler=None if settler is None else settler(journal),
            )
        )
    except BaseException:
        await upstream.aclose()
        journal.close()
        raise
