"""Generate the Python protobuf modules from protos/ (nobody edits them by hand).

Usage: python tools/gen_protos.py [--out DIR]

The output lands in plugin/mesh_x402/_pb by default. tests/unit/test_protos.py
regenerates into a temporary folder and fails on any difference, so the
checked-in modules always match protos/.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
PROTOS = ROOT / "protos"
DEFAULT_OUT = ROOT / "plugin" / "mesh_x402" / "_pb"
# Files with a gRPC service also get a *_pb2_grpc module.
SERVICES: frozenset[str] = frozenset({"mesh_x402/v1/operator.proto"})
# The generated tree is the package `mesh_x402._pb`, but protoc writes imports of
# generated modules as if `protos/` were on sys.path (`from mesh_x402.v1 import
# operator_pb2`), which here names the real `mesh_x402` package. Such imports are
# anchored under the package instead; google.protobuf and grpc are left alone.
PACKAGE = "mesh_x402._pb"
# (A module already anchored, `mesh_x402._pb....`, is not anchored twice.)
_GENERATED_IMPORT = r"^from ((?:{roots})(?!\._pb\.)(?:\.\w+)*) import (\w+_pb2)"


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
    roots = "|".join(sorted({p.relative_to(PROTOS).parts[0] for p in proto_files()}))
    pattern = re.compile(_GENERATED_IMPORT.format(roots=roots), re.MULTILINE)
    for module in sorted(out.rglob("*_pb2*.py")):
        text = module.read_text(encoding="utf-8")
        anchored = pattern.sub(rf"from {PACKAGE}.\1 import \2", text)
        if anchored != text:
            module.write_text(anchored, encoding="utf-8")
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
