"""The plugin process: its socket, environment, spawn and SIGKILL.

mesh-llm binds a Unix socket, spawns the plugin with the endpoint in its
environment, waits for one connection and deletes the socket file once it
has accepted. stdin and stdout are /dev/null, stderr is inherited, no
working directory is set, and the host stops a plugin only with SIGKILL.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import socket
import subprocess
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Final

from mesh_x402.hostdouble.config import HostConfig
from mesh_x402.hostdouble.errors import PluginStartError

__all__ = [
    "ENV_ENDPOINT",
    "ENV_NAME",
    "ENV_TRANSPORT",
    "ENV_WEB_UI_DIR",
    "MAX_SOCKET_PATH_BYTES",
    "PluginProcess",
    "accept_plugin",
    "bind_plugin_socket",
    "plugin_env",
    "socket_path",
]

ENV_ENDPOINT: Final = "MESH_LLM_PLUGIN_ENDPOINT"
ENV_TRANSPORT: Final = "MESH_LLM_PLUGIN_TRANSPORT"
ENV_NAME: Final = "MESH_LLM_PLUGIN_NAME"
ENV_WEB_UI_DIR: Final = "MESH_LLM_PLUGIN_WEB_UI_DIR"
# sun_path holds 108 bytes including the terminating NUL.
MAX_SOCKET_PATH_BYTES: Final = 107


def socket_path(home: Path, name: str, *, pid: int | None = None) -> Path:
    """`<home>/run/plugins/p<pid>-<8 hex>-<name>.sock`, or the same name in $TMPDIR.

    A path over 107 bytes cannot be bound, so like 0.76 the socket moves to
    the temporary directory then.
    """
    basename = f"p{os.getpid() if pid is None else pid}-{secrets.token_hex(4)}-{name}.sock"
    path = home / "run" / "plugins" / basename
    if len(os.fsencode(path)) > MAX_SOCKET_PATH_BYTES:
        return Path(tempfile.gettempdir()) / basename
    return path


def bind_plugin_socket(path: Path) -> socket.socket:
    """Bind and listen on `path` (its folder is created), non-blocking."""
    path.parent.mkdir(parents=True, exist_ok=True)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(os.fspath(path))
        sock.listen(1)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


def plugin_env(config: HostConfig, endpoint: Path) -> dict[str, str]:
    """The inherited environment, the configured extras, then the host's variables.

    The host's own variables win over anything inherited or configured, as
    mesh-llm sets them last. No web UI directory is announced: the plugin
    entry has no web UI.
    """
    env = dict(os.environ)
    env.update(config.env)
    env.pop(ENV_WEB_UI_DIR, None)
    env[ENV_ENDPOINT] = os.fspath(endpoint)
    env[ENV_TRANSPORT] = "unix"
    env[ENV_NAME] = config.plugin_name
    return env


class PluginProcess:
    """One spawned plugin process; `kill` is SIGKILL, as mesh-llm's kill on drop."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self._process = process
        self.killed_by_host = False

    @classmethod
    async def spawn(cls, config: HostConfig, env: Mapping[str, str]) -> PluginProcess:
        """Start `config.command` with /dev/null for stdin and stdout.

        Raises:
            PluginStartError: the executable cannot be started.
        """
        stderr: IO[bytes] | None = None
        if config.stderr_path is not None:
            config.stderr_path.parent.mkdir(parents=True, exist_ok=True)
            stderr = config.stderr_path.open("ab")
        try:
            process = await asyncio.create_subprocess_exec(
                *config.command,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=stderr,
                env=dict(env),
            )
        except OSError as exc:
            raise PluginStartError(f"cannot start {config.command[0]!r}: {exc}") from None
        finally:
            if stderr is not None:
                stderr.close()
        return cls(process)

    @property
    def pid(self) -> int:
        """The process id."""
        return self._process.pid

    @property
    def returncode(self) -> int | None:
        """The exit status once it has exited (negative: killed by that signal)."""
        return self._process.returncode

    async def wait(self) -> int:
        """Wait for the process to exit; return its status."""
        return await self._process.wait()

    async def kill(self) -> None:
        """SIGKILL the process (if still running) and reap it."""
        self.killed_by_host = True
        if self._process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self._process.kill()
        await self._process.wait()


async def accept_plugin(
    sock: socket.socket, path: Path, process: PluginProcess, timeout: float
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Wait for the plugin's one connection, then delete the socket file.

    Raises:
        PluginStartError: no connection within `timeout`, or the process
            exited before connecting.
    """
    loop = asyncio.get_running_loop()
    accept = asyncio.ensure_future(loop.sock_accept(sock))
    exited = asyncio.ensure_future(process.wait())
    try:
        done, _ = await asyncio.wait(
            {accept, exited}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
        )
    finally:
        exited.cancel()
        if not accept.done():
            accept.cancel()
        sock.close()
        path.unlink(missing_ok=True)  # noqa: ASYNC240 - one unlink of a socket file
    if accept not in done or accept.cancelled():
        if exited in done:
            raise PluginStartError(
                f"plugin exited with status {process.returncode} before connecting"
            )
        raise PluginStartError(f"plugin did not connect within {timeout:g} s")
    conn, _ = accept.result()
    return await asyncio.open_unix_connection(sock=conn)
