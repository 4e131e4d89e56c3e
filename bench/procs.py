"""Processes the benchmark starts and stops (a benchmark helper).

Each server under test runs in a process of its own, apart from the load
generator, so that neither steals the other's event loop. Helpers print
`READY <url>` once they listen and exit when their stdin closes; the gate
(`mesh-x402 serve`) is polled on its free route and stopped with SIGTERM,
as an operator would.
"""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import IO, Any

import httpx
import uvicorn
from mesh_x402.http.server import bind_tcp


class Proc:
    """A child process whose stderr goes to a log file."""

    def __init__(self, name: str, argv: list[str], log_dir: Path) -> None:
        self.name = name
        self.log_path = log_dir / f"{name}.log"
        self._log: IO[bytes] = self.log_path.open("wb")
        self.process = subprocess.Popen(
            argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._log
        )
        self.url = ""

    def wait_ready(self, timeout: float = 60.0) -> str:
        """The URL from the child's `READY <url>` line."""
        assert self.process.stdout is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            line = self.process.stdout.readline().decode().strip()
            if line.startswith("READY "):
                self.url = line.split(" ", 1)[1]
                return self.url
            if not line and self.process.poll() is not None:
                break
        self.stop()
        raise RuntimeError(f"{self.name} did not start; see {self.log_path}")

    def wait_http(self, url: str, path: str, timeout: float = 60.0) -> str:
        """Poll `url + path` until it answers 200 (for servers without a READY line)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                break
            try:
                if httpx.get(url + path, timeout=2, trust_env=False).status_code == 200:
                    self.url = url
                    return url
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"{self.name} did not answer on {url}{path}; see {self.log_path}")

    def stop(self) -> None:
        """Close stdin (helpers exit on it), SIGTERM after 5 s, SIGKILL after 10 s."""
        if self.process.poll() is None:
            try:
                assert self.process.stdin is not None
                self.process.stdin.close()
            except OSError:
                pass
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.terminate()
                try:
                    self.process.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    self.process.kill()
                    self.process.wait()
        self._close()

    def log_tail(self, lines: int = 30) -> str:
        """The last lines of the child's stderr but its info lines (the gate logs
        two a payment), to show why a phase failed."""
        self._log.flush()
        text = self.log_path.read_text(encoding="utf-8", errors="replace")
        kept = [line for line in text.splitlines() if '"level": "info"' not in line]
        return "\n".join(kept[-lines:])

    def _close(self) -> None:
        for pipe in (self.process.stdin, self.process.stdout):
            if pipe is not None:
                pipe.close()
        self._log.close()

    def terminate(self) -> None:
        """SIGTERM, then wait (SIGKILL after 10 s)."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._close()


def free_port() -> int:
    """A port on 127.0.0.1 that was free a moment ago (for servers that need one up front)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def serve_until_stdin_closes(app: Any) -> None:
    """The helper side: serve an ASGI app on a free 127.0.0.1 port, print
    `READY <url>`, and stop once stdin closes (the benchmark ended or died).

    uvicorn's h11 protocol on the gate's own listener (`bind_tcp`), so every
    accepted connection has TCP_NODELAY. An idle connection is kept
    75 s, longer than any client here keeps one (web3's requests session in
    the reference keeps them for ever): a server that closes first races the
    client's next request on that connection, which then fails for nothing
    the benchmark measures.
    """
    sock = bind_tcp("127.0.0.1", 0)
    config = uvicorn.Config(
        app,
        http="h11",
        lifespan="off",
        log_config=None,
        log_level="warning",
        access_log=False,
        timeout_keep_alive=75,
    )
    server = uvicorn.Server(config)
    task = asyncio.ensure_future(server.serve(sockets=[sock]))
    print(f"READY http://127.0.0.1:{sock.getsockname()[1]}", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    server.should_exit = True
    await task
