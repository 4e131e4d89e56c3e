"""The fake mesh-llm API (`mesh_x402.devnet.fake_upstream`) in a process of its own.

The benchmark's upstream must not share a CPU-bound event loop with the
load generator or a server under test, so it runs here:

    python bench/fake_api.py [--chunks 20] [--chunk-delay 0.01]

serves model `bench` (JSON, or SSE with `stream: true`: `--chunks` content
chunks `--chunk-delay` seconds apart), prints `READY <url>`, and stops when
stdin closes.
"""

from __future__ import annotations

import argparse
import sys

from mesh_x402.devnet.fake_upstream import FakeModel, FakeUpstream

MODEL = "bench"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chunks", type=int, default=20)
    parser.add_argument("--chunk-delay", type=float, default=0.01)
    args = parser.parse_args()
    model = FakeModel(
        MODEL, completion_tokens=args.chunks, chunks=args.chunks, chunk_delay=args.chunk_delay
    )
    with FakeUpstream([model]) as fake:
        print(f"READY {fake.url}", flush=True)
        sys.stdin.read()


if __name__ == "__main__":
    main()
