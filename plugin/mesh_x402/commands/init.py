"""`mesh-x402 init --dir DIR [--deployment deployment.json] [--rpc URL]`: create a node folder.

Writes a commented `node.toml` and a fresh EVM key file (mode 0600), never
overwriting either, then prints the node's address and the `[[plugin]]`
entry for `~/.mesh-llm/config.toml`. The entry holds only `name`, `command`,
`args` and `enabled`: a 0.76 host refuses any other key it does not know and
a non-empty `[plugin.settings]` for a plugin it did not install itself.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Final

from mesh_x402.config import ChainConfig
from mesh_x402.errors import ConfigError
from mesh_x402.keys import create_key_file

__all__ = ["CONFIG_FILE", "KEY_FILE", "configure", "plugin_entry", "run", "write_node_config"]

CONFIG_FILE: Final = "node.toml"
KEY_FILE: Final = "node.key"
PLUGIN_NAME: Final = "x402"

_CHAIN_KEYS: Final = (
    "rpc",
    "chain_id",
    "token",
    "settlement",
    "settlement_block",
    "identity_registry",
)


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dir", required=True, type=Path, help="the node folder to create")
    parser.add_argument(
        "--deployment", type=Path, help="deployment.json from `mesh-x402 deploy`: fills [chain]"
    )
    parser.add_argument("--rpc", metavar="URL", help="[chain] rpc: the chain's JSON-RPC URL")


def _toml(value: str | int) -> str:
    # A JSON string is a valid TOML basic string (same escapes).
    return json.dumps(value, ensure_ascii=False)


def _chain_lines(chain: Mapping[str, str | int] | None) -> str:
    given = dict(chain or {})
    unknown = sorted(set(given) - set(_CHAIN_KEYS))
    if unknown:
        raise ValueError(f"unknown [chain] keys: {', '.join(unknown)}")
    defaults = ChainConfig()
    described = {
        "rpc": "JSON-RPC URL of the chain the mesh settles on.",
        "chain_id": "Chain id the RPC must report (31337: a local anvil).",
        "token": "EIP-3009 token (USDC) address clients pay in.",
        "settlement": "MeshSettlement contract: the x402 payTo.",
        "settlement_block": "Block it was deployed in (deployment.json's deployedAt).",
        "identity_registry": "ERC-8004 IdentityRegistry holding the nodes' agent ids.",
    }
    example = {"token": "0x...", "settlement": "0x...", "identity_registry": "0x..."}
    lines = []
    for name in _CHAIN_KEYS:
        lines.append(f"# {described[name]}")
        value = given.get(name, getattr(defaults, name))
        if value is None:
            lines.append(f"# {name} = {_toml(example[name])}")
        else:
            lines.append(f"{name} = {_toml(value)}")
    return "\n".join(lines)


_TEMPLATE: Final = """\
# mesh-x402 node config. Relative paths are relative to this file's folder.
# Every key below shows its default; `mesh-x402 serve --config {config}` reads it.

[node]
# EVM signing key of this node (hex), mode 0600. Never share it.
key_file = "{key_file}"
# Payment journal and the kept mesh view.
state_dir = "state"
# debug, info, warning or error.
log_level = "info"

[gateway]
# The paid HTTP port for clients on other machines. Keep it on loopback
# unless you mean to expose it (clients on this machine can also use
# http://127.0.0.1:3131/api/plugins/x402/http/v1/...).
listen = "127.0.0.1:9402"
max_body_bytes = 8388608

[upstream]
# mesh-llm's OpenAI-compatible API, where paid requests go.
url = "http://127.0.0.1:9337"
timeout_seconds = 300.0

[chain]
{chain}
confirmations = 1

[pricing]
# Money is in the token's atomic units (USDC: 6 decimals, so 1000 = $0.001).
version = 1
# "default" prices unknown models with [pricing.default]; "refuse" refuses them.
unknown_models = "default"
max_completion_tokens = 4096

[pricing.default]
base = 1000
prompt_per_1k = 500
completion_per_1k = 2000

# A price for one model:
# [pricing.models."llama-3.1-8b"]
# base = 500
# prompt_per_1k = 200
# completion_per_1k = 800

[settlement]
# "deferred" batches accepted payments; "immediate" settles each at once.
mode = "deferred"
batch_size = 50
interval_seconds = 10.0

[receipts]
policy = "vram-proportional"
# The entry node's share of each charge for routing, in basis points.
routing_share_bps = 1000

[operator]
# gRPC operator API: unix:PATH (relative to this folder) or HOST:PORT on loopback.
listen = "unix:state/operator.sock"
"""


def write_node_config(folder: Path, chain: Mapping[str, str | int] | None = None) -> Path:
    """Write `folder/node.toml` (never over an existing one) and return its path.

    Args:
        folder: the node folder (must exist).
        chain: values for the `[chain]` section (rpc, chain_id, token,
            settlement, identity_registry); missing ones keep the defaults.

    Raises:
        ConfigError: the file exists or cannot be written.
    """
    path = folder / CONFIG_FILE
    text = _TEMPLATE.format(config=path.name, key_file=KEY_FILE, chain=_chain_lines(chain))
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
        raise ConfigError(f"{path}: already exists; refusing to overwrite it") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot create: {exc.strerror}") from None
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
    return path


def plugin_entry(config_path: Path) -> str:
    """The `[[plugin]]` entry that loads this node's plugin into mesh-llm."""
    config = os.path.abspath(config_path)
    script = Path(sys.executable).parent / "mesh-x402"
    if script.is_file() and os.access(script, os.X_OK):
        command, args = str(script.absolute()), ["serve", "--config", config]
    else:
        command, args = sys.executable, ["-m", "mesh_x402", "serve", "--config", config]
    return (
        "[[plugin]]\n"
        f"name = {_toml(PLUGIN_NAME)}\n"
        f"command = {_toml(command)}\n"
        f"args = [{', '.join(_toml(arg) for arg in args)}]\n"
        "enabled = true\n"
    )


def run(args: argparse.Namespace) -> int:
    folder: Path = args.dir
    chain: dict[str, str | int] = {}
    if args.deployment is not None:
        from mesh_x402.chain.deployment import load_deployment  # noqa: PLC0415 - web3 only here

        deployment = load_deployment(args.deployment)
        chain.update(
            chain_id=deployment.chain_id,
            token=deployment.token,
            settlement=deployment.settlement,
            settlement_block=deployment.deployed_at,
            identity_registry=deployment.identity_registry,
        )
    if args.rpc is not None:
        chain["rpc"] = args.rpc
    for name in (CONFIG_FILE, KEY_FILE):
        if (folder / name).exists():
            raise ConfigError(f"{folder / name}: already exists; refusing to overwrite it")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"{folder}: cannot create: {exc.strerror}") from None
    key_path = folder / KEY_FILE
    key = create_key_file(key_path)
    try:
        config_path = write_node_config(folder, chain)
    except ConfigError:
        # Leave nothing half made: a key without its config is the partial
        # write an operator would have to notice and clean up.
        key_path.unlink(missing_ok=True)
        raise
    print(f"created {config_path} and {key_path} (mode 0600)")
    print(f"node address: {key.address}")
    print()
    print("Add this to ~/.mesh-llm/config.toml (with `version = 1` at the top) on this node:")
    print()
    print(plugin_entry(config_path), end="")
    return 0
