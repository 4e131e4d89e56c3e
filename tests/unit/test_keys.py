"""The EVM key file: created private, refused when open to others, never leaked."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from eth_account import Account
from mesh_x402.errors import KeyFileError
from mesh_x402.keys import NodeKey, create_key_file, load_key_file

# A fixed, well-known test key (anvil's first account).
TEST_KEY = "ac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80"
TEST_ADDRESS = "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"


def write_key(path: Path, text: str, mode: int = 0o600) -> Path:
    path.write_text(text, encoding="ascii")
    os.chmod(path, mode)
    return path


class TestCreate:
    def test_fresh_key_has_mode_0600_and_loads(self, tmp_path):
        path = tmp_path / "node.key"
        key = create_key_file(path)
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        loaded = load_key_file(path)
        assert loaded.secret == key.secret
        assert loaded.address == Account.from_key(key.secret).address

    def test_mode_is_private_even_with_a_permissive_umask(self, tmp_path):
        """The mode is set at creation: no umask can make the file readable by others."""
        old = os.umask(0)
        try:
            path = tmp_path / "node.key"
            create_key_file(path)
        finally:
            os.umask(old)
        assert stat.S_IMODE(path.stat().st_mode) == 0o600

    def test_two_keys_differ(self, tmp_path):
        assert create_key_file(tmp_path / "a").secret != create_key_file(tmp_path / "b").secret

    def test_refuses_to_overwrite(self, tmp_path):
        path = write_key(tmp_path / "node.key", TEST_KEY)
        with pytest.raises(KeyFileError, match="already exists"):
            create_key_file(path)
        assert path.read_text() == TEST_KEY


class TestLoad:
    @pytest.mark.parametrize("text", [TEST_KEY, "0x" + TEST_KEY, f"  0x{TEST_KEY}\n"])
    def test_hex_with_or_without_prefix(self, tmp_path, text):
        key = load_key_file(write_key(tmp_path / "k", text))
        assert key.address == TEST_ADDRESS

    @pytest.mark.parametrize("mode", [0o640, 0o604, 0o620, 0o602, 0o644, 0o666])
    def test_refuses_a_file_open_to_others(self, tmp_path, mode):
        """The error names the path and the mode, and how to fix it."""
        path = write_key(tmp_path / "k", TEST_KEY, mode)
        with pytest.raises(KeyFileError) as info:
            load_key_file(path)
        message = str(info.value)
        assert str(path) in message
        assert f"{mode:04o}" in message
        assert TEST_KEY not in message

    def test_owner_only_modes_are_accepted(self, tmp_path):
        assert load_key_file(write_key(tmp_path / "k", TEST_KEY, 0o400)).address == TEST_ADDRESS

    def test_missing(self, tmp_path):
        with pytest.raises(KeyFileError, match="no such key file"):
            load_key_file(tmp_path / "absent")

    @pytest.mark.parametrize(
        "text",
        [
            "",
            TEST_KEY[:-2],
            TEST_KEY + "00",
            "zz" * 32,
            "00" * 32,  # zero is not a key
            "ff" * 32,  # above the curve order
        ],
    )
    def test_malformed_contents(self, tmp_path, text):
        """A bad key is named as such; the error never echoes the contents."""
        path = write_key(tmp_path / "k", text)
        with pytest.raises(KeyFileError) as info:
            load_key_file(path)
        assert str(path) in str(info.value)
        if text:
            assert text not in str(info.value)


def test_repr_hides_the_key():
    key = NodeKey(bytes.fromhex(TEST_KEY))
    assert TEST_KEY not in repr(key)
    assert TEST_KEY not in str(key)
