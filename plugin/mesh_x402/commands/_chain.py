"""What the on-chain commands (deploy, register, status, withdraw) share.

Loading a key from a file or an environment variable, and turning a node
config into a connected chain with the three contracts bound, checked once
here so that each command reports a wrong chain id, a missing contract or a
config without addresses in the same one-line way.
"""

from __future__ import annotations

import argparse
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from eth_account import Account
from eth_account.signers.local import LocalAccount

from mesh_x402 import log
from mesh_x402.chain.bindings import IdentityRegistryBinding, SettlementBinding, TokenBinding
from mesh_x402.chain.client import ChainClient
from mesh_x402.config import NodeConfig, load_config
from mesh_x402.errors import ConfigError, KeyFileError
from mesh_x402.keys import NodeKey, load_key_file

__all__ = [
    "MESH_VIEW_FILE",
    "NodeChain",
    "account_from_args",
    "add_key_args",
    "connect_node",
    "local_peer_id",
    "parse_peer_id",
    "quiet_logs",
]

_PEER_ID: Final = re.compile(r"^[0-9a-f]{64}$")
MESH_VIEW_FILE: Final = "mesh-view.json"


def quiet_logs() -> None:
    """Send only errors to stderr: a command's output is what it prints, one line per error."""
    log.configure("error")


def add_key_args(parser: argparse.ArgumentParser, what: str) -> None:
    """`--key-file F | --key-env VAR`, one of them required."""
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--key-file", type=Path, help=f"hex private key of the {what} (mode 0600)")
    group.add_argument("--key-env", metavar="VAR", help=f"environment variable holding the {what}")


def _key_from_env(name: str) -> NodeKey:
    value = os.environ.get(name)
    if not value:
        raise KeyFileError(f"environment variable {name} is not set")
    text = value.strip().removeprefix("0x").removeprefix("0X")
    try:
        return NodeKey(bytes.fromhex(text))
    except ValueError:
        # Never echo the value: it is meant to be a secret.
        raise KeyFileError(
            f"environment variable {name} does not hold a 32-byte hex private key"
        ) from None


def account_from_args(key_file: Path | None, key_env: str | None) -> LocalAccount:
    """The signing account from `--key-file` or `--key-env`.

    Raises:
        KeyFileError: the file or variable is missing, too open or malformed.
    """
    key = load_key_file(key_file) if key_file is not None else _key_from_env(key_env or "")
    account: LocalAccount = Account.from_key(key.secret)
    return account


@dataclass(frozen=True)
class NodeChain:
    """A node config connected to its chain, with the mesh's contracts bound."""

    config: NodeConfig
    client: ChainClient
    account: LocalAccount
    token: TokenBinding
    registry: IdentityRegistryBinding
    settlement: SettlementBinding

    @property
    def state_dir(self) -> Path:
        return self.config.state_path


def _required(config: NodeConfig, name: str, value: str | None) -> str:
    if value is None:
        raise ConfigError(
            f"{config.path}: [chain] {name} is not set; "
            "run `mesh-x402 init --deployment deployment.json` or set it"
        )
    return value


def connect_node(config_path: Path) -> NodeChain:
    """Load the config and key, connect, and check the three contracts.

    Raises:
        ConfigError: a `[chain]` address is not set, or the settlement contract
            is wired to another token or registry than the config names.
        KeyFileError: the node key is unusable.
        RpcUnavailable / WrongChain / NoContractCode: the chain is not the configured one.
    """
    config = load_config(config_path)
    chain = config.chain
    token, registry, settlement = (
        _required(config, name, value)
        for name, value in (
            ("token", chain.token),
            ("identity_registry", chain.identity_registry),
            ("settlement", chain.settlement),
        )
    )
    key = load_key_file(config.key_path)
    account: LocalAccount = Account.from_key(key.secret)
    client = ChainClient.connect(
        chain.rpc, chain_id=chain.chain_id, confirmations=chain.confirmations
    )
    client.require_code(token, "token")
    client.require_code(registry, "identity registry")
    client.require_code(settlement, "settlement")
    node = NodeChain(
        config=config,
        client=client,
        account=account,
        token=TokenBinding(client, token),
        registry=IdentityRegistryBinding(client, registry),
        settlement=SettlementBinding(client, settlement, from_block=chain.settlement_block),
    )
    wired = (node.settlement.token(), node.settlement.identity_registry())
    if wired != (node.token.address, node.registry.address):
        raise ConfigError(
            f"{config.path}: settlement {node.settlement.address} uses token {wired[0]} and "
            f"registry {wired[1]}, not the configured {node.token.address} and "
            f"{node.registry.address}"
        )
    return node


def parse_peer_id(value: str, origin: str) -> bytes:
    """A mesh-llm peer id (64 lowercase hex digits) as its 32 raw bytes."""
    text = value.strip().lower()
    if not _PEER_ID.match(text):
        raise ConfigError(f"{origin}: peer id must be 64 hex digits, got {value!r}")
    return bytes.fromhex(text)


def local_peer_id(state_dir: Path) -> bytes | None:
    """The peer id the plugin last saw for this node (`<state_dir>/mesh-view.json`), if any.

    Raises:
        ConfigError: the file exists but is not JSON or holds a malformed peer id.
    """
    path = state_dir / MESH_VIEW_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{path}: cannot read the mesh view: {exc}") from None
    value = data.get("local_peer_id") if isinstance(data, dict) else None
    if not value:
        return None
    if not isinstance(value, str):
        raise ConfigError(f"{path}: local_peer_id is not a string")
    return parse_peer_id(value, str(path))
