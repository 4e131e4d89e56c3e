"""`mesh-x402 withdraw`: pay this node's credited balance to its agentWallet.

    mesh-x402 withdraw --config node.toml

The settlement contract sends the money to the wallet registered in the
ERC-8004 registry, whoever calls; the node key only pays the gas. A zero
balance sends no transaction.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from mesh_x402.commands._chain import connect_node, quiet_logs
from mesh_x402.errors import ChainError, ConfigError
from mesh_x402.state import load_identity

__all__ = ["configure", "run"]


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, type=Path, help="the node's node.toml")


def run(args: argparse.Namespace) -> int:
    quiet_logs()
    node = connect_node(args.config)
    identity = load_identity(node.state_dir)
    if identity is None or identity.identity_registry.lower() != node.registry.address.lower():
        raise ConfigError(
            f"this node has no agent in registry {node.registry.address}: "
            "run `mesh-x402 register` first"
        )
    agent_id = identity.agent_id
    wallet = node.registry.get_agent_wallet(agent_id)
    if wallet is None:
        raise ChainError(f"agentId {agent_id} has no agentWallet; run `mesh-x402 register`")
    balance = node.settlement.balance_of(agent_id)
    if balance == 0:
        print(f"nothing to withdraw for agentId {agent_id}")
        return 0
    amount, paid_to, receipt = node.settlement.withdraw(node.account, agent_id)
    print(f"withdrew {amount} to {paid_to} for agentId {agent_id}")
    print(f"tx {receipt['transactionHash'].to_0x_hex()} (block {receipt['blockNumber']})")
    return 0
