"""`mesh-x402 devnet` and `mesh-x402 pay` refuse bad input with one line and exit 2, having
started nothing and paid nothing."""

from __future__ import annotations

from pathlib import Path

import pytest
from mesh_x402.cli import main


def _exit_code(argv: list[str]) -> int:
    with pytest.raises(SystemExit) as exited:
        main(argv)
    code = exited.value.code
    assert isinstance(code, int)
    return code


class TestDevnetFlags:
    def test_one_node_is_not_a_mesh(self, capsys: pytest.CaptureFixture[str]) -> None:
        assert _exit_code(["devnet", "--nodes", "1"]) == 2
        assert capsys.readouterr().err.strip() == (
            "mesh-x402 devnet: --nodes 1: a mesh needs at least 2 nodes"
        )

    def test_no_requests(self, capsys: pytest.CaptureFixture[str]) -> None:
        assert _exit_code(["devnet", "--requests", "0"]) == 2
        assert capsys.readouterr().err.strip() == "mesh-x402 devnet: --requests 0: at least 1"

    def test_a_work_folder_in_use_is_left_alone(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        (tmp_path / "keep.txt").write_text("mine")
        assert _exit_code(["devnet", "--workdir", str(tmp_path)]) == 2
        assert "exists and is not an empty folder" in capsys.readouterr().err
        assert [p.name for p in tmp_path.iterdir()] == ["keep.txt"]


class TestPayInput:
    def test_url_must_be_http(self, capsys: pytest.CaptureFixture[str]) -> None:
        argv = ["pay", "--url", "ftp://x", "--key-env", "NO_SUCH_VAR", "--model", "m", "hi"]
        assert _exit_code(argv) == 2
        assert capsys.readouterr().err.strip() == (
            "mesh-x402 pay: --url 'ftp://x': must be an http:// or https:// URL"
        )

    def test_missing_key_variable(
        self, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
    ) -> None:
        monkeypatch.delenv("NO_SUCH_VAR", raising=False)
        argv = ["pay", "--url", "http://127.0.0.1:9", "--key-env", "NO_SUCH_VAR", "--model", "m"]
        assert _exit_code([*argv, "hi"]) == 2
        assert capsys.readouterr().err.strip() == (
            "mesh-x402 pay: environment variable NO_SUCH_VAR is not set"
        )

    def test_a_key_that_is_not_hex_is_not_echoed(
        self, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
    ) -> None:
        monkeypatch.setenv("PAYER_KEY", "not-a-key-but-secret-looking")
        argv = ["pay", "--url", "http://127.0.0.1:9", "--key-env", "PAYER_KEY", "--model", "m"]
        assert _exit_code([*argv, "hi"]) == 2
        err = capsys.readouterr().err
        assert "does not hold a 32-byte hex private key" in err
        assert "secret-looking" not in err

    def test_max_tokens_must_be_positive(self, capsys: pytest.CaptureFixture[str]) -> None:
        argv = ["pay", "--url", "http://127.0.0.1:9", "--key-env", "K", "--model", "m"]
        assert _exit_code([*argv, "--max-tokens", "0", "hi"]) == 2
        assert "--max-tokens 0: must be at least 1" in capsys.readouterr().err
