"""Compile contracts/src with the pinned solc and write contracts/out/<Name>.json.

Usage: python tools/build_contracts.py [--out DIR] [--check]

The compiler is solc-js (npm `solc@0.8.28`) driven through standard JSON, installed on
first use into the shared npm cache (`$MESH_X402_CACHE/npm`, default
`~/.cache/mesh-x402/npm`) under a file lock, so parallel tox environments do not race.
Every setting that changes the bytecode is fixed here (optimizer runs, evmVersion, no
metadata hash), so the same sources always give byte-identical artifacts.
`--check` compiles into memory and exits 1 when contracts/out differs:
tests/unit/test_contract_artifacts.py runs exactly that comparison.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from mesh_x402.chain.npm import npm_install

ROOT = Path(__file__).resolve().parent.parent
SOURCES = ROOT / "contracts" / "src"
DEFAULT_OUT = ROOT / "contracts" / "out"
SOLC_VERSION = "0.8.28"
CONTRACTS = ("TestUSDC", "IdentityRegistry", "MeshSettlement")
# Runs tuned for the hot path (settle is called many times, deployed once): with 10000
# runs the optimizer favours cheap execution over small bytecode.
OPTIMIZER = {"enabled": True, "runs": 10000}
EVM_VERSION = "cancun"
_COMPILE_TIMEOUT = 300.0


def standard_input() -> dict[str, Any]:
    """The solc standard-JSON input: every .sol under contracts/src, sorted, by content."""
    sources = {
        f"src/{path.relative_to(SOURCES).as_posix()}": {"content": path.read_text(encoding="utf-8")}
        for path in sorted(SOURCES.rglob("*.sol"))
    }
    return {
        "language": "Solidity",
        "sources": sources,
        "settings": {
            "optimizer": OPTIMIZER,
            "evmVersion": EVM_VERSION,
            # No CBOR metadata tail: the bytecode then depends on the code alone.
            "metadata": {"appendCBOR": False},
            "outputSelection": {
                "*": {"*": ["abi", "evm.bytecode.object", "evm.deployedBytecode.object"]}
            },
        },
    }


def compile_sources(request: dict[str, Any]) -> dict[str, Any]:
    """Run solc-js on `request`; exit with solc's own messages on a compile error."""
    solc_dir = npm_install(f"solc@{SOLC_VERSION}")
    node = shutil.which("node")
    if node is None:
        sys.exit("build_contracts: node is not on PATH (needed to run solc-js)")
    # The solcjs CLI prints notes on stdout next to the JSON, so call the library directly.
    script = (
        f"const solc = require({json.dumps(str(solc_dir))});"
        "let input = ''; process.stdin.on('data', (c) => { input += c; });"
        "process.stdin.on('end', () => process.stdout.write(solc.compile(input)));"
    )
    done = subprocess.run(
        [node, "-e", script],
        input=json.dumps(request).encode(),
        capture_output=True,
        check=False,
        timeout=_COMPILE_TIMEOUT,
    )
    if done.returncode != 0:
        sys.exit(f"build_contracts: solc failed: {done.stderr.decode(errors='replace')}")
    output: dict[str, Any] = json.loads(done.stdout)
    for warning in (e for e in output.get("errors", []) if e.get("severity") != "error"):
        print(warning["formattedMessage"], file=sys.stderr)
    errors = [e for e in output.get("errors", []) if e.get("severity") == "error"]
    if errors:
        sys.exit(
            "build_contracts: compile errors:\n" + "\n".join(e["formattedMessage"] for e in errors)
        )
    return output


def _solc_long_version(solc_dir: Path) -> str:
    node = shutil.which("node") or "node"
    script = f"process.stdout.write(require({json.dumps(str(solc_dir))}).version())"
    done = subprocess.run([node, "-e", script], capture_output=True, check=True, timeout=60)
    return done.stdout.decode().strip()


def artifacts() -> dict[str, str]:
    """Compile and return {file name: JSON text} for every artifact."""
    request = standard_input()
    output = compile_sources(request)
    version = _solc_long_version(npm_install(f"solc@{SOLC_VERSION}"))
    source_hash = "0x" + hashlib.sha256(json.dumps(request, sort_keys=True).encode()).hexdigest()
    result: dict[str, str] = {}
    for name in CONTRACTS:
        compiled = output["contracts"][f"src/{name}.sol"][name]
        artifact = {
            "contractName": name,
            "abi": compiled["abi"],
            "bytecode": "0x" + compiled["evm"]["bytecode"]["object"],
            "deployedBytecode": "0x" + compiled["evm"]["deployedBytecode"]["object"],
            "compiler": {"solc": version, "optimizer": OPTIMIZER, "evmVersion": EVM_VERSION},
            "sourceHash": source_hash,
        }
        result[f"{name}.json"] = json.dumps(artifact, indent=2, sort_keys=True) + "\n"
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument(
        "--check", action="store_true", help="compare with --out; exit 1 on a difference"
    )
    args = parser.parse_args()
    built = artifacts()
    if args.check:
        stale = [
            name
            for name, text in built.items()
            if not (args.out / name).is_file()
            or (args.out / name).read_text(encoding="utf-8") != text
        ]
        if stale:
            names = ", ".join(stale)
            sys.exit(f"build_contracts: {names} differ from the sources; rebuild them")
        return
    args.out.mkdir(parents=True, exist_ok=True)
    for name, text in built.items():
        (args.out / name).write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
