"""`mesh-x402 devnet`: a whole paid mesh on this machine, in one command.

    mesh-x402 devnet [--nodes N] [--requests M] [--keep-running] [--json] [--workdir DIR]

Starts anvil, deploys the contracts, makes N node folders, registers the
nodes as ERC-8004 agents, runs N host doubles each with the real plugin and
a fake mesh-llm API, pays M requests with the official x402 SDK through
every node, settles, withdraws, and prints the report (`--json`: one JSON
document on stdout; progress always goes to stderr). Exit code 0 when every
invariant holds, 1 when one fails or the devnet could not run, 130/143 when
interrupted (SIGINT/SIGTERM); every process it started is stopped in all
cases. `--keep-running` leaves the mesh up after the report and prints how
to pay it by hand, until Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from pathlib import Path
from typing import Final

from mesh_x402.commands._chain import quiet_logs
from mesh_x402.devnet.progress import Progress
from mesh_x402.devnet.runner import STEPS, Devnet, DevnetError, DevnetOptions
from mesh_x402.errors import PluginError

__all__ = ["configure", "run"]

_SIGNAL_EXIT: Final = {signal.SIGINT: 130, signal.SIGTERM: 143}


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--nodes", type=int, default=3, help="nodes in the mesh (default 3)")
    parser.add_argument(
        "--requests", type=int, default=24, help="paid requests to send (default 24)"
    )
    parser.add_argument(
        "--keep-running",
        action="store_true",
        help="leave the mesh up after the report and show how to pay it by hand",
    )
    parser.add_argument("--json", action="store_true", help="print the report as JSON on stdout")
    parser.add_argument(
        "--workdir", type=Path, help="keep node folders and keys here (default: a temp folder)"
    )


async def _run(devnet: Devnet, args: argparse.Namespace) -> int:
    progress = devnet.progress
    try:
        await devnet.start()
        await devnet.pay()
        await devnet.settle()
        progress.step("auditing the chain's events and the nodes' journals")
        report = await devnet.report()
        progress.finish("all invariants hold" if report.ok else "some invariants FAILED")
        sys.stdout.write(report.to_json() if args.json else report.render())
        sys.stdout.flush()
        if args.keep_running:
            devnet.open_consoles()
            text = devnet.pay_by_hand()
            (sys.stderr if args.json else sys.stdout).write(text)
            (sys.stderr if args.json else sys.stdout).flush()
            await asyncio.Event().wait()  # until a signal cancels this task
        return 0 if report.ok else 1
    finally:
        progress.note("stopping every process the devnet started")
        await asyncio.shield(devnet.stop())


async def _main(devnet: Devnet, args: argparse.Namespace) -> int:
    task = asyncio.ensure_future(_run(devnet, args))
    loop = asyncio.get_running_loop()
    caught: list[int] = []

    def on_signal(signum: int) -> None:
        # The first signal starts the clean-up; more (an impatient second
        # Ctrl-C) must not interrupt it, or processes would be left behind.
        if not caught:
            caught.append(signum)
            task.cancel()

    for signum in _SIGNAL_EXIT:
        loop.add_signal_handler(signum, on_signal, signum)
    try:
        return await task
    except asyncio.CancelledError:
        if not caught:
            raise
        return _SIGNAL_EXIT[signal.Signals(caught[0])]
    finally:
        for signum in _SIGNAL_EXIT:
            loop.remove_signal_handler(signum)


def run(args: argparse.Namespace) -> int:
    quiet_logs()
    try:
        options = DevnetOptions(nodes=args.nodes, requests=args.requests, workdir=args.workdir)
        devnet = Devnet(options, Progress(STEPS))
    except DevnetError as exc:  # bad flags: nothing was started
        print(f"mesh-x402 devnet: {exc}", file=sys.stderr)
        return 2
    try:
        return asyncio.run(_main(devnet, args))
    except DevnetError as exc:
        print(f"mesh-x402 devnet: {exc}", file=sys.stderr)
        return 1
    except PluginError as exc:
        # A chain or config fault inside the run: the devnet failed, the flags were fine.
        print(f"mesh-x402 devnet: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
