"""Generate the Python protobuf modules from protos/ (nobody edits them by hand).

Usage: python tools/gen_protos.py [--out DIR]

The output lands in plugin/mesh_x402/_pb by default. tests/unit/test_protos.py
regenerates into a temporary folder and fails on any difference, so the
checked-in modules always match protos/.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
PROTOS = ROOT / "protos"
DEFAULT_OUT = ROOT / "plugin" / "mesh_x402" / "_pb"
# Files with a gRPC service also get a *_pb2_grpc module.
SERVICES: frozenset[str] = frozenset()


def proto_files() -> list[Path]:
    return sorted(PROTOS.rglob("*.proto"))


def generate(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    include = f"-I{PROTOS}"
    well_known = Path(protoc.__file__).parent / "_proto"
    for proto in proto_files():
        rel = proto.relative_to(PROTOS).as_posix()
        args = ["protoc", include, f"-I{well_known}", f"--python_out={out}", f"--pyi_out={out}"]
        if rel in SERVICES:
            args.append(f"--grpc_python_out={out}")
        if protoc.main([*args, rel]) != 0:
            sys.exit(f"protoc failed on {rel}")
    # Every generated folder becomes a regular package so mypy and imports see it.
    for folder in [out, *(p for p in out.rglob("*") if p.is_dir())]:
        if folder.name != "__pycache__":
            (folder / "__init__.py").touch()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    generate(parser.parse_args().out)


if __name__ == "__main__":
    main()
