"""`serve` before it connects: fast imports, overrides, the socket path."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import pytest
from mesh_x402.commands.serve import effective_config, socket_path
from mesh_x402.errors import ConfigError


def test_serve_module_leaves_the_heavy_stack_for_later():
    """Importing `serve` (what runs before connect) pulls in no HTTP or chain library."""
    heavy = ["uvicorn", "starlette", "httpx", "web3", "eth_account", "eth_keys", "x402", "grpc"]
    code = (
        "import sys, json, mesh_x402.commands.serve\n"
        f"print(json.dumps(sorted({{m.split('.')[0] for m in sys.modules}} & set({heavy!r}))))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True
    ).stdout
    assert json.loads(out) == []


def make_args(config: Path, **overrides: object) -> argparse.Namespace:
    fields: dict[str, object] = {"config": config, "gateway": None, "upstream": None}
    fields.update(overrides)
    return argparse.Namespace(**fields)


class TestOverrides:
    def test_flags_replace_the_file_values(self, tmp_path):
        config_file = tmp_path / "node.toml"
        config_file.write_text("[upstream]\ntimeout_seconds = 5.0\n")
        config = effective_config(
            make_args(config_file, gateway="127.0.0.1:0", upstream="http://127.0.0.1:1/")
        )
        assert config.gateway.listen == "127.0.0.1:0"
        assert config.upstream.url == "http://127.0.0.1:1"
        assert config.upstream.timeout_seconds == 5.0

    @pytest.mark.parametrize(("flag", "value"), [("gateway", "localhost"), ("upstream", "unix:/x")])
    def test_bad_flag_is_named(self, tmp_path, flag, value):
        config_file = tmp_path / "node.toml"
        config_file.write_text("")
        with pytest.raises(ConfigError, match=f"--{flag}: "):
            effective_config(make_args(config_file, **{flag: value}))


class TestSocketPath:
    def test_short_state_dir_holds_the_socket(self, tmp_path):
        assert socket_path(tmp_path) == tmp_path / "http.sock"

    def test_long_state_dir_falls_back_to_a_short_stable_path(self, tmp_path):
        deep = tmp_path / ("d" * 60) / ("e" * 60)
        path = socket_path(deep)
        assert len(str(path).encode()) < 100
        assert path == socket_path(deep)  # a respawn finds the same path
        assert path != socket_path(tmp_path / ("f" * 60) / ("e" * 60))
