"""The checked-in contract artifacts match the sources, and the loader reads them.

The rebuild needs node and npm: tools/build_contracts.py installs the pinned solc-js
into the npm cache on first use (a missing npm fails the test, it never skips).
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest
from mesh_x402.chain import artifacts as artifacts_module
from mesh_x402.chain.artifacts import ARTIFACT_NAMES, artifacts_dir, load_artifact
from mesh_x402.errors import ChainError

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "contracts" / "out"


def _build_tool() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "build_contracts", ROOT / "tools" / "build_contracts.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["build_contracts"] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def fresh_cache() -> Iterator[None]:
    load_artifact.cache_clear()
    yield
    load_artifact.cache_clear()


class TestRebuild:
    def test_artifacts_match_a_fresh_build(self) -> None:
        """Compiling contracts/src with the pinned solc gives exactly the checked-in files."""
        built = _build_tool().artifacts()
        assert sorted(built) == sorted(f"{name}.json" for name in ARTIFACT_NAMES)
        for file_name, text in built.items():
            checked_in = (OUT / file_name).read_text(encoding="utf-8")
            assert text == checked_in, f"{file_name} is stale: run tools/build_contracts.py"

    def test_check_mode_fails_on_a_stale_artifact(self, tmp_path: Path) -> None:
        """`build_contracts.py --check` exits non-zero and names the file that differs."""
        for name in ARTIFACT_NAMES:
            shutil.copy(OUT / f"{name}.json", tmp_path / f"{name}.json")
        stale = tmp_path / "MeshSettlement.json"
        stale.write_text(stale.read_text(encoding="utf-8").replace('"runs": 10000', '"runs": 200'))
        done = subprocess.run(
            [
                sys.executable,
                str(ROOT / "tools" / "build_contracts.py"),
                "--check",
                "--out",
                str(tmp_path),
            ],
            capture_output=True,
            text=True,
            check=False,
            timeout=600,
        )
        assert done.returncode != 0
        assert "MeshSettlement.json differ" in done.stderr
        assert "TestUSDC" not in done.stderr

    def test_compiler_settings_are_pinned(self) -> None:
        for name in ARTIFACT_NAMES:
            compiler = json.loads((OUT / f"{name}.json").read_text(encoding="utf-8"))["compiler"]
            assert compiler["solc"].startswith("0.8.28+commit.")
            assert compiler["evmVersion"] == "cancun"
            assert compiler["optimizer"]["enabled"] is True


class TestLoader:
    @pytest.mark.parametrize("name", ARTIFACT_NAMES)
    def test_loads_each_contract(self, name: str) -> None:
        artifact = load_artifact(name)
        raw = json.loads((OUT / f"{name}.json").read_text(encoding="utf-8"))
        assert artifact.name == name
        assert list(artifact.abi) == raw["abi"]
        assert artifact.bytecode == raw["bytecode"]
        assert artifact.deployed_bytecode == raw["deployedBytecode"]
        assert artifact.solc == raw["compiler"]["solc"]

    def test_reads_the_same_files_as_the_checkout(self) -> None:
        """Installed or editable, the loader's folder holds what contracts/out holds."""
        for name in ARTIFACT_NAMES:
            ours = (artifacts_dir() / f"{name}.json").read_bytes()
            assert ours == (OUT / f"{name}.json").read_bytes()

    def test_unknown_name(self) -> None:
        with pytest.raises(ChainError, match="unknown contract artifact 'Nope'"):
            load_artifact("Nope")  # type: ignore[arg-type]

    def test_missing_and_malformed_files(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fresh_cache: None
    ) -> None:
        monkeypatch.setattr(artifacts_module, "artifacts_dir", lambda: tmp_path)
        with pytest.raises(ChainError, match="cannot be read"):
            load_artifact("TestUSDC")
        (tmp_path / "TestUSDC.json").write_text('{"contractName": "TestUSDC", "abi": []}')
        with pytest.raises(ChainError, match="malformed"):
            load_artifact("TestUSDC")
        good = json.loads((OUT / "IdentityRegistry.json").read_text(encoding="utf-8"))
        (tmp_path / "TestUSDC.json").write_text(json.dumps(good))
        with pytest.raises(ChainError, match="holds 'IdentityRegistry'"):
            load_artifact("TestUSDC")
        (tmp_path / "TestUSDC.json").write_text(json.dumps(dict(good, bytecode="0xzz")))
        with pytest.raises(ChainError, match="malformed"):
            load_artifact("TestUSDC")
