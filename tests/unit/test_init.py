"""`mesh-x402 init`: a node folder that `serve` accepts, created without overwriting."""

from __future__ import annotations

import os
import stat
import sys

import pytest
from eth_account import Account
from mesh_x402.cli import main
from mesh_x402.commands.init import plugin_entry, write_node_config
from mesh_x402.config import NodeConfig, load_config, tomllib
from mesh_x402.errors import ConfigError
from mesh_x402.keys import load_key_file

# What a 0.76 host accepts in a [[plugin]] entry.
HOST_076_KEYS = {"name", "enabled", "web_ui_enabled", "command", "args", "url", "startup"}


def run_init(folder, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["init", "--dir", str(folder)])
    out, err = capsys.readouterr()
    return exit_info.value.code, out, err


def printed_entry(out: str) -> dict:
    entry_text = out[out.index("[[plugin]]") :]
    return tomllib.loads(entry_text)["plugin"][0]


class TestInit:
    def test_creates_config_and_private_key(self, tmp_path, capsys):
        folder = tmp_path / "node-a"
        code, out, _ = run_init(folder, capsys)
        assert code == 0
        key_path = folder / "node.key"
        assert stat.S_IMODE(key_path.stat().st_mode) == 0o600
        key = load_key_file(key_path)
        assert f"node address: {Account.from_key(key.secret).address}" in out

    def test_config_round_trips_to_the_defaults(self, tmp_path, capsys):
        """The commented template is a valid config equal to the documented defaults."""
        run_init(tmp_path, capsys)
        config = load_config(tmp_path / "node.toml")
        assert config.model_dump() == NodeConfig().model_dump()
        assert config.key_path == tmp_path / "node.key"
        text = (tmp_path / "node.toml").read_text()
        assert text.count("\n#") > 10  # commented for the operator

    def test_printed_entry_is_what_a_076_host_accepts(self, tmp_path, capsys):
        _, out, _ = run_init(tmp_path, capsys)
        entry = printed_entry(out)
        assert set(entry) <= HOST_076_KEYS
        assert entry["name"] == "x402"
        assert entry["enabled"] is True
        assert os.path.isabs(entry["command"])
        assert os.access(entry["command"], os.X_OK)
        config_arg = entry["args"][entry["args"].index("--config") + 1]
        assert config_arg == str((tmp_path / "node.toml").absolute())
        assert "serve" in entry["args"]

    @pytest.mark.parametrize("existing", ["node.toml", "node.key"])
    def test_refuses_to_overwrite_either_file(self, tmp_path, capsys, existing):
        """One existing file stops init before anything is written (exit 2)."""
        (tmp_path / existing).write_text("keep me")
        code, _, err = run_init(tmp_path, capsys)
        assert code == 2
        assert existing in err
        assert "refusing to overwrite" in err
        assert (tmp_path / existing).read_text() == "keep me"
        assert sorted(p.name for p in tmp_path.iterdir()) == [existing]


class TestWriteNodeConfig:
    def test_chain_values_fill_the_chain_section(self, tmp_path):
        token = "0x" + "11" * 20
        settlement = "0x" + "22" * 20
        path = write_node_config(
            tmp_path,
            {
                "rpc": "http://127.0.0.1:8545",
                "chain_id": 84532,
                "token": token,
                "settlement": settlement,
            },
        )
        config = load_config(path)
        assert config.chain.chain_id == 84532
        assert config.chain.token == token
        assert config.chain.settlement == settlement
        assert config.chain.identity_registry is None

    def test_refuses_to_overwrite(self, tmp_path):
        (tmp_path / "node.toml").write_text("keep me")
        with pytest.raises(ConfigError, match="refusing to overwrite"):
            write_node_config(tmp_path)
        assert (tmp_path / "node.toml").read_text() == "keep me"


def test_entry_falls_back_to_python_dash_m(tmp_path, monkeypatch):
    """Without a mesh-x402 script beside the interpreter, the entry runs `python -m`."""
    monkeypatch.setattr(sys, "executable", str(tmp_path / "python3"))
    entry = tomllib.loads(plugin_entry(tmp_path / "node.toml"))["plugin"][0]
    assert entry["command"] == str(tmp_path / "python3")
    assert entry["args"][:3] == ["-m", "mesh_x402", "serve"]
