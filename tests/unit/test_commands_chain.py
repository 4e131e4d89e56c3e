"""What the on-chain commands check before touching a chain."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from mesh_x402.commands._chain import (
    account_from_args,
    connect_node,
    local_peer_id,
    parse_peer_id,
)
from mesh_x402.errors import ConfigError, KeyFileError

PEER = "ab" * 32


class TestPeerId:
    def test_from_mesh_view(self, tmp_path: Path) -> None:
        """The plugin's kept mesh view names this node's peer id."""
        (tmp_path / "mesh-view.json").write_text(json.dumps({"local_peer_id": PEER, "peers": {}}))
        assert local_peer_id(tmp_path) == bytes.fromhex(PEER)

    def test_no_view_yet(self, tmp_path: Path) -> None:
        assert local_peer_id(tmp_path) is None
        (tmp_path / "mesh-view.json").write_text(json.dumps({"local_peer_id": None}))
        assert local_peer_id(tmp_path) is None

    @pytest.mark.parametrize(
        ("content", "message"),
        [
            ("{", "cannot read the mesh view"),
            (json.dumps({"local_peer_id": "abc"}), "peer id must be 64 hex digits"),
            (json.dumps({"local_peer_id": 5}), "local_peer_id is not a string"),
        ],
    )
    def test_bad_view(self, tmp_path: Path, content: str, message: str) -> None:
        (tmp_path / "mesh-view.json").write_text(content)
        with pytest.raises(ConfigError, match=message):
            local_peer_id(tmp_path)

    def test_flag_accepts_upper_case(self) -> None:
        assert parse_peer_id(PEER.upper(), "--peer-id") == bytes.fromhex(PEER)
        with pytest.raises(ConfigError, match="--peer-id: peer id must be 64 hex digits"):
            parse_peer_id("zz" * 32, "--peer-id")


class TestKeys:
    def test_env_key(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("NODE_KEY", "0x" + "00" * 31 + "01")
        assert account_from_args(None, "NODE_KEY").address == (
            "0x7E5F4552091A69125d5DfCb7b8C2659029395Bdf"
        )

    def test_env_unset(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.delenv("NODE_KEY", raising=False)
        with pytest.raises(KeyFileError, match="environment variable NODE_KEY is not set"):
            account_from_args(None, "NODE_KEY")

    def test_env_zero_key_is_not_echoed(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Zero is not a valid secp256k1 key; the value never appears in the error."""
        monkeypatch.setenv("NODE_KEY", "00" * 32)
        with pytest.raises(KeyFileError) as info:
            account_from_args(None, "NODE_KEY")
        assert "00" * 32 not in str(info.value)


class TestConfig:
    def test_chain_addresses_required(self, tmp_path: Path) -> None:
        """A node config without contract addresses says how to fill them, before any RPC."""
        config = tmp_path / "node.toml"
        config.write_text('[chain]\nrpc = "http://127.0.0.1:1"\n')
        with pytest.raises(ConfigError, match=r"\[chain\] token is not set; run `mesh-x402 init"):
            connect_node(config)
