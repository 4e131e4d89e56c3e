"""A local anvil chain: find or install the binary, start it, stop it.

Tests, the benchmark and `mesh-x402 devnet` need a real EVM node on a fresh
machine, with no Rust toolchain and no network but the npm registry. Foundry
publishes anvil as a per-platform npm package, so the binary is installed
on first use (see `mesh_x402.chain.npm`).

The node listens on 127.0.0.1 only, on a port the kernel picks (`--port 0`,
which anvil supports and reports as "Listening on 127.0.0.1:PORT"), so
parallel test runs never collide. Its accounts come from anvil's well-known
dev mnemonic, which makes keys deterministic across runs.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import Final

from eth_account import Account
from eth_account.signers.local import LocalAccount

from mesh_x402.chain.npm import npm_install
from mesh_x402.errors import ChainError

__all__ = [
    "ANVIL_PACKAGE",
    "DEV_MNEMONIC",
    "Anvil",
    "dev_account",
    "find_anvil",
]

ANVIL_PACKAGE: Final = "@foundry-rs/anvil-linux-amd64@1.7.1"
DEV_MNEMONIC: Final = "test test test test test test test test test test test junk"
_LISTENING: Final = re.compile(rb"Listening on 127\.0\.0\.1:(\d+)")


def find_anvil() -> Path:
    """The anvil binary: `$MESH_X402_ANVIL` if set, else the pinned npm package (installed now
    if missing)."""
    override = os.environ.get("MESH_X402_ANVIL")
    if override:
        path = Path(override)
        if not os.access(path, os.X_OK):
            raise ChainError(f"MESH_X402_ANVIL={override} is not an executable file")
        return path
    binary = npm_install(ANVIL_PACKAGE) / "bin" / "anvil"
    if not os.access(binary, os.X_OK):
        raise ChainError(f"{binary} is missing or not executable")
    return binary


def dev_account(index: int) -> LocalAccount:
    """Anvil's dev account `index` (10 000 ETH each on a fresh chain)."""
    Account.enable_unaudited_hdwallet_features()
    account: LocalAccount = Account.from_mnemonic(
        DEV_MNEMONIC, account_path=f"m/44'/60'/0'/0/{index}"
    )
    return account


def _answers(url: str) -> bool:
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "eth_chainId", "params": []})
    request = urllib.request.Request(  # noqa: S310 - always http://127.0.0.1
        url, data=body.encode(), headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=2.0) as response:  # noqa: S310
            return b'"result"' in response.read()
    except (OSError, urllib.error.URLError):
        return False


class Anvil:
    """One anvil process on 127.0.0.1; use as a context manager or call start/stop.

    Args:
        chain_id: the chain id anvil reports (31337 by default; 8453 pretends to be Base).
        accounts: how many dev accounts to fund.
        binary: the anvil executable; found (or installed) when omitted.
        start_timeout: seconds to wait for the node to answer.
    """

    def __init__(
        self,
        *,
        chain_id: int = 31337,
        accounts: int = 10,
        binary: Path | None = None,
        start_timeout: float = 60.0,
    ) -> None:
        self.chain_id = chain_id
        self._accounts = accounts
        self._binary = binary
        self._start_timeout = start_timeout
        self._process: subprocess.Popen[bytes] | None = None
        self._workdir: tempfile.TemporaryDirectory[str] | None = None
        self.port: int | None = None

    @property
    def url(self) -> str:
        """The node's JSON-RPC URL."""
        if self.port is None:
            raise ChainError("anvil is not running")
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    def start(self) -> Anvil:
        """Spawn anvil and wait until it answers `eth_chainId`.

        Raises:
            ChainError: anvil exited, or did not answer within `start_timeout`.
        """
        if self._process is not None:
            raise ChainError("anvil is already running")
        binary = self._binary or find_anvil()
        self._workdir = tempfile.TemporaryDirectory(prefix="mesh-x402-anvil-")
        log_path = Path(self._workdir.name) / "anvil.log"
        # A file, not a pipe: anvil logs every request and would block on a full pipe.
        with log_path.open("wb") as log:
            self._process = subprocess.Popen(
                [
                    str(binary),
                    "--host",
                    "127.0.0.1",
                    "--port",
                    "0",
                    "--chain-id",
                    str(self.chain_id),
                    "--accounts",
                    str(self._accounts),
                    "--mnemonic",
                    DEV_MNEMONIC,
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        try:
            self.port = self._wait_listening(log_path)
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_listening(self, log_path: Path) -> int:
        deadline = time.monotonic() + self._start_timeout
        port: int | None = None
        assert self._process is not None
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                tail = log_path.read_bytes()[-500:].decode(errors="replace").strip()
                raise ChainError(f"anvil exited with code {self._process.returncode}: {tail}")
            if port is None:
                match = _LISTENING.search(log_path.read_bytes())
                port = int(match.group(1)) if match else None
            if port is not None and _answers(f"http://127.0.0.1:{port}"):
                return port
            time.sleep(0.05)
        raise ChainError(f"anvil did not answer within {self._start_timeout:.0f} s")

    def stop(self) -> None:
        """Terminate anvil (SIGTERM, then SIGKILL after 5 s) and remove its log folder."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=5.0)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if self._workdir is not None:
            self._workdir.cleanup()
            self._workdir = None
        self.port = None

    def __enter__(self) -> Anvil:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()
