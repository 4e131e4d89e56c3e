"""The gate's app under plain uvicorn, in a process of its own (`run.py --gate uvicorn`).

The same app `mesh-x402 serve` builds (`open_gate` on the same node.toml),
served by uvicorn's h11 protocol on the serve command's own TCP listener
(`bind_tcp`: TCP_NODELAY on every accepted connection, as in the
integration tests' server). Comparing it with `--gate serve` shows
what the serve command's own HTTP layer adds.

    python bench/gate_server.py --config node.toml

prints `READY <url>` once it listens; stops when stdin closes. With
`BENCH_GATE_PROFILE=PATH` in the environment, the event loop's thread runs
under cProfile and the stats are written to PATH at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import os
from pathlib import Path

from mesh_x402 import log
from mesh_x402.config import load_config
from mesh_x402.http.gate import open_gate
from procs import serve_until_stdin_closes


async def _serve(config_path: Path) -> None:
    config = load_config(config_path)
    log.configure(config.node.log_level)  # as `serve` does: the same logging cost per request
    app = await open_gate(config)
    try:
        await serve_until_stdin_closes(app)
    finally:
        await app.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True, type=Path)
    config = parser.parse_args().config
    profile = os.environ.get("BENCH_GATE_PROFILE")
    if not profile:
        asyncio.run(_serve(config))
        return
    # Diagnosis: the event loop's thread under cProfile, written when the server stops.
    profiler = cProfile.Profile()
    profiler.enable()
    try:
        asyncio.run(_serve(config))
    finally:
        profiler.disable()
        profiler.dump_stats(profile)


if __name__ == "__main__":
    main()
