"""The `mesh-x402` command line.

Each subcommand lives in its own module under `mesh_x402.commands` and
exposes `register(subparsers)`; the module is imported only when its command
runs, so `serve` starts without paying for web3 or the chain layer.

Exit codes: 0 success, 1 the command failed (e.g. a chain error), 2 bad input
(flags, config, key file) with a one-line reason on stderr.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from typing import Final, Protocol

from mesh_x402 import __version__
from mesh_x402.errors import ChainError, PluginError

__all__ = ["COMMANDS", "main"]

# command name -> (module under mesh_x402.commands, one-line help)
COMMANDS: Final[dict[str, tuple[str, str]]] = {
    "init": ("init", "create a node folder: node.toml and a fresh EVM key"),
    "serve": ("serve", "run the plugin (under mesh-llm, or standalone on the gateway port)"),
    "deploy": ("deploy", "deploy the mesh's contracts and write deployment.json"),
    "register": ("register", "register this node as an ERC-8004 agent (idempotent)"),
    "status": ("status", "show this node's agent, wallet, peer id binding and balances"),
    "withdraw": ("withdraw", "pay this node's credited balance to its agentWallet"),
    "reconcile": ("reconcile", "settle chargeable payments on chain now and check credits"),
    "receipts": ("receipts", "list this node's usage receipts (table or --json)"),
    "pay": ("pay", "pay a node for one chat completion with the x402 SDK; show quote and receipt"),
    "devnet": ("devnet", "run a whole paid mesh on this machine and print an audited report"),
    "plugin-install": (
        "plugin_install",
        "build the mesh-llm store archive (Payments page included) and install it",
    ),
}


class _Command(Protocol):
    def configure(self, parser: argparse.ArgumentParser) -> None: ...

    def run(self, args: argparse.Namespace) -> int: ...


def _load(name: str) -> _Command:
    module_name, _ = COMMANDS[name]
    module: _Command = importlib.import_module(f"mesh_x402.commands.{module_name}")
    return module


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The full parser; only `command`'s module is imported to fill its flags."""
    parser = argparse.ArgumentParser(prog="mesh-x402", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"mesh-x402 {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (_, help_text) in COMMANDS.items():
        child = sub.add_parser(name, help=help_text, description=help_text)
        if name == command:
            _load(name).configure(child)
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of the console script."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    command = next((a for a in args_list if a in COMMANDS), None)
    args = build_parser(command).parse_args(args_list)
    try:
        code = _load(args.command).run(args)
    except ChainError as exc:  # the chain failed, the input was fine
        print(f"mesh-x402 {args.command}: {exc}", file=sys.stderr)
        code = 1
    except PluginError as exc:
        print(f"mesh-x402 {args.command}: {exc}", file=sys.stderr)
        code = 2
    except KeyboardInterrupt:
        code = 130
    sys.exit(code)
