"""Compiled contract artifacts (ABI and bytecode) of TestUSDC, IdentityRegistry, MeshSettlement.

`tools/build_contracts.py` writes them to `contracts/out/<Name>.json`; the wheel
carries that folder as `mesh_x402/chain/_artifacts` (pyproject force-include).
An installed package reads its own copy; a source or editable checkout, which
has no `_artifacts` folder, reads `<repo>/contracts/out`, so a rebuild is seen
without reinstalling.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, Final, Literal

from mesh_x402.errors import ChainError

__all__ = ["ARTIFACT_NAMES", "Artifact", "ArtifactName", "artifacts_dir", "load_artifact"]

ArtifactName = Literal["TestUSDC", "IdentityRegistry", "MeshSettlement"]
ARTIFACT_NAMES: Final[tuple[ArtifactName, ...]] = ("TestUSDC", "IdentityRegistry", "MeshSettlement")

_PACKAGED: Final = Path(__file__).resolve().parent / "_artifacts"
# plugin/mesh_x402/chain/artifacts.py -> <repo>/contracts/out
_SOURCE_TREE: Final = Path(__file__).resolve().parents[3] / "contracts" / "out"


@dataclass(frozen=True)
class Artifact:
    """One compiled contract.

    Attributes:
        name: the contract name, e.g. "MeshSettlement".
        abi: the ABI as solc emits it (a list of JSON objects), for web3's `contract(abi=...)`.
        bytecode: creation code, 0x-prefixed hex (the deployer appends constructor arguments).
        deployed_bytecode: runtime code, 0x-prefixed hex, what `eth_getCode` returns.
        solc: the full compiler version that produced it.
    """

    name: str
    abi: tuple[dict[str, Any], ...]
    bytecode: str
    deployed_bytecode: str
    solc: str


def artifacts_dir() -> Path:
    """The folder the artifacts are read from (the wheel's copy first, then the checkout's)."""
    return _PACKAGED if _PACKAGED.is_dir() else _SOURCE_TREE


@cache
def load_artifact(name: ArtifactName) -> Artifact:
    """Load one artifact by contract name (cached: the files never change at run time).

    Raises:
        ChainError: the name is unknown, or the file is missing or malformed.
    """
    if name not in ARTIFACT_NAMES:
        raise ChainError(f"unknown contract artifact {name!r}; known: {', '.join(ARTIFACT_NAMES)}")
    path = artifacts_dir() / f"{name}.json"
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        artifact = Artifact(
            name=name,
            abi=tuple(raw["abi"]),
            bytecode=_hex(raw["bytecode"]),
            deployed_bytecode=_hex(raw["deployedBytecode"]),
            solc=str(raw["compiler"]["solc"]),
        )
    except OSError as exc:
        raise ChainError(f"contract artifact {path} cannot be read: {exc.strerror}") from None
    except (ValueError, KeyError, TypeError) as exc:
        raise ChainError(f"contract artifact {path} is malformed: {exc!r}") from None
    if raw.get("contractName") != name:
        raise ChainError(
            f"contract artifact {path} holds {raw.get('contractName')!r}, not {name!r}"
        )
    return artifact


def _hex(value: object) -> str:
    if not isinstance(value, str) or not value.startswith("0x") or len(value) < 4:
        raise ValueError(f"expected 0x-prefixed bytecode, got {str(value)[:20]!r}")
    bytes.fromhex(value[2:])
    return value
