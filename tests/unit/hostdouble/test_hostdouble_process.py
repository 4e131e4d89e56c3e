"""The plugin's socket path and environment."""

from __future__ import annotations

import os
import re
import sys
import tempfile
from pathlib import Path

import pytest
from mesh_x402.hostdouble import HostConfig
from mesh_x402.hostdouble.process import plugin_env, socket_path

COMMAND = [sys.executable, "-c", "pass"]


class TestSocketPath:
    def test_under_home_run_plugins(self, tmp_path: Path) -> None:
        """`<home>/run/plugins/p<pid>-<8 hex>-<name>.sock`, fresh each time."""
        path = socket_path(tmp_path, "x402", pid=4242)
        assert path.parent == tmp_path / "run" / "plugins"
        assert re.fullmatch(r"p4242-[0-9a-f]{8}-x402\.sock", path.name)
        assert socket_path(tmp_path, "x402", pid=4242) != path

    def test_defaults_to_own_pid(self, tmp_path: Path) -> None:
        """The pid in the name is the host's own."""
        assert socket_path(tmp_path, "x402").name.startswith(f"p{os.getpid()}-")

    def test_long_home_moves_to_tmpdir(self, tmp_path: Path) -> None:
        """A path over 107 bytes cannot be bound, so it lives in $TMPDIR instead."""
        home = tmp_path / ("h" * 120)
        path = socket_path(home, "x402")
        assert path.parent == Path(tempfile.gettempdir())
        assert re.fullmatch(r"p\d+-[0-9a-f]{8}-x402\.sock", path.name)


class TestEnvironment:
    def test_host_variables_win(self, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
        """Inherited env, then cfg.env, then the host's three variables on top."""
        monkeypatch.setenv("MESH_LLM_PLUGIN_NAME", "inherited")
        monkeypatch.setenv("SOME_INHERITED", "yes")
        monkeypatch.setenv("MESH_LLM_PLUGIN_WEB_UI_DIR", "/nowhere")
        config = HostConfig(
            plugin_name="x402",
            command=COMMAND,
            env={"EXTRA": "1", "MESH_LLM_PLUGIN_TRANSPORT": "pipe"},
        )
        env = plugin_env(config, tmp_path / "p.sock")
        assert env["SOME_INHERITED"] == "yes"
        assert env["EXTRA"] == "1"
        assert env["MESH_LLM_PLUGIN_ENDPOINT"] == str(tmp_path / "p.sock")
        assert env["MESH_LLM_PLUGIN_TRANSPORT"] == "unix"
        assert env["MESH_LLM_PLUGIN_NAME"] == "x402"
        assert "MESH_LLM_PLUGIN_WEB_UI_DIR" not in env
