"""Installing pinned npm tools and running anvil: the failure paths a fresh machine hits."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from mesh_x402.chain.anvil import Anvil, dev_account, find_anvil
from mesh_x402.chain.npm import cache_dir, npm_install
from mesh_x402.errors import ChainError


def fake_installed(prefix: Path, name: str, version: str) -> Path:
    folder = prefix / "node_modules" / name
    folder.mkdir(parents=True)
    (folder / "package.json").write_text(json.dumps({"name": name, "version": version}))
    return folder


class TestNpmInstall:
    def test_installed_package_needs_no_npm(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A package already at the pinned version is used as it is, without running npm."""
        folder = fake_installed(tmp_path, "@foundry-rs/anvil-linux-amd64", "1.7.1")
        monkeypatch.setenv("PATH", "")
        assert npm_install("@foundry-rs/anvil-linux-amd64@1.7.1", prefix=tmp_path) == folder

    def test_other_version_without_npm(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Another installed version is not accepted; with no npm the error says so."""
        fake_installed(tmp_path, "solc", "0.8.27")
        monkeypatch.setenv("PATH", "")
        with pytest.raises(ChainError, match=r"cannot install solc@0\.8\.28: npm is not on PATH"):
            npm_install("solc@0.8.28", prefix=tmp_path)

    def test_cache_dir_follows_env(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("MESH_X402_CACHE", str(tmp_path))
        assert cache_dir() == tmp_path / "npm"
        monkeypatch.delenv("MESH_X402_CACHE")
        monkeypatch.setenv("HOME", str(tmp_path / "home"))
        assert cache_dir() == tmp_path / "home" / ".cache" / "mesh-x402" / "npm"


class TestAnvil:
    def test_override_must_be_executable(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        not_exec = tmp_path / "anvil"
        not_exec.write_text("")
        monkeypatch.setenv("MESH_X402_ANVIL", str(not_exec))
        with pytest.raises(ChainError, match="is not an executable file"):
            find_anvil()

    def test_binary_that_exits_is_reported(self, tmp_path: Path) -> None:
        """A binary that dies at start gives its exit code, not a hang."""
        script = tmp_path / "anvil"
        script.write_text("#!/bin/sh\necho 'error: bad flag' >&2\nexit 3\n")
        script.chmod(0o755)
        node = Anvil(binary=script)
        with pytest.raises(ChainError, match="anvil exited with code 3: error: bad flag"):
            node.start()
        assert node.pid is None
        with pytest.raises(ChainError, match="anvil is not running"):
            _ = node.url

    def test_dev_accounts_are_anvils(self) -> None:
        """The dev mnemonic gives anvil's well-known funded accounts."""
        assert dev_account(0).address == "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"
        assert dev_account(1).address == "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"
