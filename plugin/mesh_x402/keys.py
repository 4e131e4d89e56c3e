"""The node's EVM signing key file.

The file holds one secp256k1 private key as hex (optionally `0x`-prefixed).
It is created with mode 0600 in the same call that creates it, so there is
no moment when another user could read it, and loading refuses a file that
group or others can read or write: a key another account can read is a key
that is no longer ours. Loading needs only the standard library, so `serve`
can check the key before it connects to the host; the address, which needs
the elliptic-curve code, is derived on demand.

Nothing here ever puts key material in an error message or a log line.
"""

from __future__ import annotations

import os
import secrets
import stat
from pathlib import Path
from typing import Final

from mesh_x402.errors import KeyFileError

__all__ = ["NodeKey", "create_key_file", "load_key_file"]

# The order of the secp256k1 group: a private key is an integer in [1, N-1].
_SECP256K1_N: Final = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
_KEY_BYTES: Final = 32


class NodeKey:
    """A loaded private key. Its repr never shows the key."""

    __slots__ = ("_secret",)

    def __init__(self, secret: bytes) -> None:
        if len(secret) != _KEY_BYTES or not 0 < int.from_bytes(secret, "big") < _SECP256K1_N:
            raise ValueError("not a valid secp256k1 private key")
        self._secret = secret

    @property
    def secret(self) -> bytes:
        """The 32 raw key bytes, for the signer and nothing else."""
        return self._secret

    @property
    def address(self) -> str:
        """The EIP-55 checksummed address of this key."""
        # Imported here: the curve code costs a fifth of a second to import
        # and `serve` must answer the host's initialize before paying that.
        from eth_keys.datatypes import PrivateKey  # noqa: PLC0415

        address: str = PrivateKey(self._secret).public_key.to_checksum_address()
        return address

    def __repr__(self) -> str:
        return "NodeKey(<redacted>)"


def create_key_file(path: Path) -> NodeKey:
    """Write a fresh random key to `path` with mode 0600.

    The file is created by `open(O_CREAT | O_EXCL)` with mode 0600, so it is
    never readable by others and an existing file is never overwritten.

    Raises:
        KeyFileError: the file already exists or cannot be written.
    """
    while True:
        candidate = secrets.token_bytes(_KEY_BYTES)
        if 0 < int.from_bytes(candidate, "big") < _SECP256K1_N:
            key = NodeKey(candidate)
            break
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise KeyFileError(f"{path}: already exists; refusing to overwrite a key") from None
    except OSError as exc:
        raise KeyFileError(f"{path}: cannot create: {exc.strerror}") from None
    try:
        with os.fdopen(fd, "w", encoding="ascii") as handle:
            handle.write(f"0x{candidate.hex()}\n")
            handle.flush()
            os.fsync(handle.fileno())
    except OSError as exc:
        path.unlink(missing_ok=True)
        raise KeyFileError(f"{path}: cannot write: {exc.strerror}") from None
    return key


def load_key_file(path: Path) -> NodeKey:
    """Read the key at `path`, refusing a file others may read or write.

    Raises:
        KeyFileError: the file is missing, open to group or others (the
            message gives its mode), or does not hold one 32-byte hex key.
    """
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        raise KeyFileError(f"{path}: no such key file") from None
    except OSError as exc:
        raise KeyFileError(f"{path}: cannot open: {exc.strerror}") from None
    with os.fdopen(fd, "rb") as handle:
        # fstat on the open file: the mode checked is the mode of what we read.
        mode = stat.S_IMODE(os.fstat(handle.fileno()).st_mode)
        if mode & 0o077:
            raise KeyFileError(
                f"{path}: mode {mode:04o} lets group or others access the key; "
                f"run `chmod 600 {path}`"
            )
        raw = handle.read(1024)
    text = raw.decode("ascii", errors="replace").strip()
    text = text.removeprefix("0x").removeprefix("0X")
    if len(text) != 2 * _KEY_BYTES:
        raise KeyFileError(f"{path}: expected 64 hex digits (a 32-byte key)")
    try:
        return NodeKey(bytes.fromhex(text))
    except ValueError:
        raise KeyFileError(f"{path}: not a valid secp256k1 private key in hex") from None
