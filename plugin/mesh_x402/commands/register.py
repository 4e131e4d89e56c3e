"""`mesh-x402 register`: make this node an ERC-8004 agent, or check that it is one.

    mesh-x402 register --config node.toml [--peer-id HEX] [--agent-uri URI]
        [--endpoint-url URL] [--wallet-key-file F | --wallet-key-env VAR]

The command converges on a desired state and sends only the transactions
that are missing, so running it twice changes nothing the second time:

- an agent owned by the node key (minted once; its id is kept in
  `<state_dir>/identity.json` and checked on chain on every later run);
- metadata `mesh-llm.peer-id` = the node's 32-byte mesh-llm peer id (from
  `--peer-id` or the mesh view the plugin keeps), and `mesh-llm.signer` =
  the node key's address when the payout wallet is another address;
- the agentWallet (where withdrawals go) = the wallet key's address, proven
  with that key's EIP-712 `AgentWalletSet` signature; the node key itself
  when no wallet key is given;
- the agentURI = `--agent-uri`, or the registration file (the node's x402
  endpoints, `x402Support`, the registration back-reference) as a `data:` URI.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from eth_account.signers.local import LocalAccount
from eth_utils.address import to_canonical_address

from mesh_x402.chain.bindings import PEER_ID_KEY, SIGNER_KEY
from mesh_x402.chain.client import TransactionReverted
from mesh_x402.chain.eip712 import sign_agent_wallet_set
from mesh_x402.chain.registration import (
    agent_registry_id,
    build_registration,
    encode_data_uri,
    gateway_endpoints,
)
from mesh_x402.commands._chain import (
    NodeChain,
    account_from_args,
    connect_node,
    local_peer_id,
    parse_peer_id,
    quiet_logs,
)
from mesh_x402.errors import ChainError, ConfigError
from mesh_x402.state import IDENTITY_FILE, IdentityState, load_identity, save_identity

__all__ = ["Registration", "configure", "ensure_registered", "run"]

# The registry accepts a wallet proof whose deadline is at most 5 minutes ahead of
# the block that includes it; 2 minutes leaves room for a slow inclusion either way.
_WALLET_PROOF_SECONDS: Final = 120
_DESCRIPTION: Final = "mesh-llm node: OpenAI-compatible inference paid per request with x402"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, type=Path, help="the node's node.toml")
    parser.add_argument("--peer-id", metavar="HEX", help="mesh-llm peer id (64 hex digits)")
    parser.add_argument("--agent-uri", metavar="URI", help="agentURI instead of a data: URI")
    parser.add_argument(
        "--endpoint-url",
        metavar="URL",
        help="public base URL of the gateway (default: http://<gateway.listen>)",
    )
    wallet = parser.add_mutually_exclusive_group()
    wallet.add_argument(
        "--wallet-key-file", type=Path, help="key of the payout wallet (signs its consent only)"
    )
    wallet.add_argument("--wallet-key-env", metavar="VAR", help="env var with the wallet key")


def _peer_id(args: argparse.Namespace, node: NodeChain) -> bytes:
    if args.peer_id:
        return parse_peer_id(args.peer_id, "--peer-id")
    found = local_peer_id(node.state_dir)
    if found is None:
        raise ConfigError(
            f"no peer id: pass --peer-id HEX, or run the plugin under mesh-llm once so "
            f"{node.state_dir / 'mesh-view.json'} records it"
        )
    return found


def _registration_uri(
    node: NodeChain,
    peer_id: bytes,
    agent_id: int | None,
    agent_uri: str | None,
    endpoint_url: str | None,
) -> str:
    if agent_uri:
        return agent_uri
    try:
        endpoints = gateway_endpoints(node.config.gateway.listen, endpoint_url)
    except ValueError as exc:
        raise ConfigError(f"{node.config.path}: {exc} (--endpoint-url)") from None
    registration = build_registration(
        name=f"mesh-llm node {peer_id.hex()[:16]}",
        description=_DESCRIPTION,
        endpoints=endpoints,
        chain_id=node.client.chain_id,
        registry=node.registry.address,
        agent_id=agent_id,
    )
    return encode_data_uri(registration)


def _known_agent(node: NodeChain) -> int | None:
    """The agentId recorded in node state for THIS registry, verified on chain."""
    identity = load_identity(node.state_dir)
    if identity is None:
        return None
    same_registry = (
        identity.chain_id == node.client.chain_id
        and identity.identity_registry.lower() == node.registry.address.lower()
    )
    if not same_registry:
        return None  # recorded for another deployment: this registry needs its own agent
    path = node.state_dir / IDENTITY_FILE
    try:
        owner = node.registry.owner_of(identity.agent_id)
    except TransactionReverted:
        raise ChainError(
            f"agentId {identity.agent_id} recorded in {path} does not exist in registry "
            f"{node.registry.address}; remove {path} to register anew"
        ) from None
    if owner != node.account.address:
        raise ChainError(
            f"agentId {identity.agent_id} recorded in {path} is owned by {owner}, not by this "
            f"node's key {node.account.address}"
        )
    return identity.agent_id


@dataclass(frozen=True)
class Registration:
    """What `ensure_registered` found or did."""

    agent_id: int
    new: bool
    changes: tuple[str, ...]
    wallet: str


def ensure_registered(
    node: NodeChain,
    *,
    peer_id: bytes,
    wallet: LocalAccount | None = None,
    agent_uri: str | None = None,
    endpoint_url: str | None = None,
) -> Registration:
    """Bring the node's agent to the desired state, sending only missing transactions.

    Args:
        node: the connected node (its key owns the agent and pays gas).
        peer_id: the node's 32-byte mesh-llm peer id.
        wallet: the payout wallet's key, when it is not the node key.
        agent_uri: the agentURI to set; the registration data: URI when None.
        endpoint_url: public base URL of the gateway, for the registration file.

    Raises:
        ConfigError: the registration file cannot be built (unreachable gateway address).
        ChainError: the recorded agent is gone or not ours, or a transaction failed.
    """
    signer = node.account
    payout = wallet or signer
    metadata = {PEER_ID_KEY: peer_id}
    if payout.address != signer.address:
        metadata[SIGNER_KEY] = to_canonical_address(signer.address)

    changes: list[str] = []
    agent_id = _known_agent(node)
    new = agent_id is None
    if agent_id is None:
        first_uri = _registration_uri(node, peer_id, None, agent_uri, endpoint_url)
        agent_id, _ = node.registry.register(signer, first_uri, metadata)
        # Recorded at once: a failure below must not lead to a second agent next run.
        save_identity(
            node.state_dir,
            IdentityState(
                agent_id=agent_id,
                chain_id=node.client.chain_id,
                identity_registry=node.registry.address,
            ),
        )

    for key, value in metadata.items():
        if node.registry.get_metadata(agent_id, key) != value:
            node.registry.set_metadata(signer, agent_id, key, value)
            changes.append(key)

    uri = _registration_uri(node, peer_id, agent_id, agent_uri, endpoint_url)
    if node.registry.token_uri(agent_id) != uri:
        node.registry.set_agent_uri(signer, agent_id, uri)
        changes.append("agentURI")

    if node.registry.get_agent_wallet(agent_id) != payout.address:
        latest = node.client.run("latest block", lambda: node.client.w3.eth.get_block("latest"))
        deadline = int(latest["timestamp"]) + _WALLET_PROOF_SECONDS
        proof = sign_agent_wallet_set(
            payout.key,
            agent_id=agent_id,
            owner=signer.address,
            deadline=deadline,
            chain_id=node.client.chain_id,
            registry=node.registry.address,
        )
        node.registry.set_agent_wallet(signer, agent_id, payout.address, deadline, proof)
        changes.append("agentWallet")
    return Registration(agent_id=agent_id, new=new, changes=tuple(changes), wallet=payout.address)


def run(args: argparse.Namespace) -> int:
    quiet_logs()
    wallet: LocalAccount | None = None
    if args.wallet_key_file is not None or args.wallet_key_env is not None:
        wallet = account_from_args(args.wallet_key_file, args.wallet_key_env)
    node = connect_node(args.config)
    peer_id = _peer_id(args, node)
    result = ensure_registered(
        node,
        peer_id=peer_id,
        wallet=wallet,
        agent_uri=args.agent_uri,
        endpoint_url=args.endpoint_url,
    )
    registry_id = agent_registry_id(node.client.chain_id, node.registry.address)
    if result.new:
        print(f"registered a new agent: agentId {result.agent_id}")
    if result.changes:
        print(f"updated: {', '.join(result.changes)}")
    elif not result.new:
        print(f"already registered: agentId {result.agent_id} in {registry_id}, nothing to change")
    print(f"agentId {result.agent_id}")
    print(f"registry {registry_id}")
    print(f"peer id {peer_id.hex()}")
    print(f"wallet {result.wallet}")
    return 0
