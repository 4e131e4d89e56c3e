"""`mesh-x402 status`: this node's agent, wallet, peer id binding and balances.

    mesh-x402 status --config node.toml [--json]

Everything shown is read from the chain except the local peer id (the mesh
view the plugin keeps): the point is to see what other nodes and the
settlement contract see. `peerIdBinding` is "match" when the on-chain
`mesh-llm.peer-id` equals the local peer id, "mismatch" when it differs,
"unset" when the agent has none, and "unknown" when this node has not yet
learnt its own peer id from mesh-llm.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from eth_utils.address import to_checksum_address

from mesh_x402.chain.bindings import PEER_ID_KEY, SIGNER_KEY
from mesh_x402.chain.registration import agent_registry_id
from mesh_x402.commands._chain import NodeChain, connect_node, local_peer_id, quiet_logs
from mesh_x402.state import load_identity

__all__ = ["configure", "run", "status_of"]


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, type=Path, help="the node's node.toml")
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def _binding(on_chain: bytes, local: bytes | None) -> str:
    if not on_chain:
        return "unset"
    if local is None:
        return "unknown"
    return "match" if on_chain == local else "mismatch"


def status_of(node: NodeChain) -> dict[str, Any]:
    """The node's on-chain status as a JSON-ready object (amounts in atomic units)."""
    chain_id = node.client.chain_id
    local = local_peer_id(node.state_dir)
    status: dict[str, Any] = {
        "chainId": chain_id,
        "identityRegistry": node.registry.address,
        "agentRegistry": agent_registry_id(chain_id, node.registry.address),
        "settlement": node.settlement.address,
        "token": node.token.address,
        "signer": node.account.address,
        "registered": False,
        "agentId": None,
        "owner": None,
        "wallet": None,
        "signerMetadata": None,
        "peerId": {"local": local.hex() if local else None, "onChain": None},
        "peerIdBinding": "unset",
        "credited": None,
        "tokenBalance": None,
    }
    identity = load_identity(node.state_dir)
    if identity is None or (identity.chain_id, identity.identity_registry.lower()) != (
        chain_id,
        node.registry.address.lower(),
    ):
        status["tokenBalance"] = str(node.token.balance_of(node.account.address))
        return status
    agent_id = identity.agent_id
    exists = node.registry.exists(agent_id)
    status.update(agentId=agent_id, registered=exists)
    if not exists:
        return status
    wallet = node.registry.get_agent_wallet(agent_id)
    on_chain = node.registry.get_metadata(agent_id, PEER_ID_KEY)
    signer_meta = node.registry.get_metadata(agent_id, SIGNER_KEY)
    status.update(
        owner=node.registry.owner_of(agent_id),
        wallet=wallet,
        signerMetadata=to_checksum_address(signer_meta) if len(signer_meta) == 20 else None,
        peerIdBinding=_binding(on_chain, local),
        credited=str(node.settlement.balance_of(agent_id)),
        tokenBalance=str(node.token.balance_of(wallet or node.account.address)),
    )
    status["peerId"]["onChain"] = on_chain.hex() if on_chain else None
    return status


def run(args: argparse.Namespace) -> int:
    quiet_logs()
    node = connect_node(args.config)
    status = status_of(node)
    if args.json:
        print(json.dumps(status, indent=2))
        return 0
    if status["agentId"] is None:
        print(f"not registered in {status['agentRegistry']}: run `mesh-x402 register`")
        print(f"signer          {status['signer']}")
        print(f"token balance   {status['tokenBalance']}")
        return 0
    if not status["registered"]:
        print(f"agentId {status['agentId']} from node state does not exist on chain")
        return 1
    peer = status["peerId"]
    print(f"agentId         {status['agentId']} ({status['agentRegistry']})")
    print(f"owner           {status['owner']}")
    print(f"signer          {status['signer']}")
    print(f"wallet          {status['wallet'] or '(unset)'}")
    print(f"peer id         {peer['onChain'] or '(unset)'} on chain: {status['peerIdBinding']}")
    print(f"local peer id   {peer['local'] or '(unknown)'}")
    print(f"credited        {status['credited']} (settlement {status['settlement']})")
    print(f"token balance   {status['tokenBalance']} (wallet, token {status['token']})")
    return 0
