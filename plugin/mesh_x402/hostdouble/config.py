"""HostConfig: what one double of a mesh-llm node is told about itself and its plugin.

One `HostConfig` stands for one `[[plugin]]` entry of one node plus the
node's own gossip (role, VRAM, models), because the double runs exactly one
plugin per node. Defaults are the host's: 15 s health ticks, 30 s per
request, 10 s to connect, 30 s to initialize. The idle read timeout depends
on the generation (see `effective_idle_timeout`).
"""

from __future__ import annotations

import re
import secrets
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, Literal

from mesh_x402.hostdouble.errors import HostConfigError

__all__ = [
    "GENERATIONS",
    "RESERVED_NAMES",
    "Generation",
    "HostConfig",
    "Visibility",
]

Generation = Literal["0.76", "0.66"]
Visibility = Literal["private", "public"]

GENERATIONS: Final[tuple[Generation, ...]] = ("0.76", "0.66")

# Plugin ids a host keeps for its own plugins; an entry with one of them
# stops the node.
RESERVED_NAMES: Final[Mapping[Generation, frozenset[str]]] = {
    "0.66": frozenset({"blackboard", "telemetry", "blobstore", "openai-endpoint", "flash-moe"}),
    "0.76": frozenset({"blobstore"}),
}

_NAME_RE: Final = re.compile(r"[a-z0-9-]+")
_PEER_ID_RE: Final = re.compile(r"[0-9a-f]{64}")
_ROLES: Final = frozenset({"worker", "host", "client"})
# 0.76 allows 90 s without a frame; 0.66 has no idle read timeout.
_IDLE_DEFAULT: Final[Mapping[Generation, float | None]] = {"0.76": 90.0, "0.66": None}
_HOST_VERSION: Final[Mapping[Generation, str]] = {"0.76": "0.76.0", "0.66": "0.66.0"}


def _random_peer_id() -> str:
    return secrets.token_hex(32)


def _random_mesh_id() -> str:
    return secrets.token_hex(16)


def _fresh_home() -> Path:
    # A node's ~/.mesh-llm; a private temporary one so a test never touches
    # the real home directory.
    return Path(tempfile.mkdtemp(prefix="mesh-x402-host-"))


@dataclass
class HostConfig:
    """One node of the double and its one plugin.

    Attributes:
        plugin_name: the `[[plugin]] name`, which is also the plugin id.
        command: the executable and its arguments.
        generation: "0.76" (default) or "0.66"; behaviours differ as the spec sheet says.
        idle_timeout: seconds without a frame before the plugin is dropped;
            None means the generation's own (90 s on 0.76, none on 0.66).
            The hosts of 2026-07/08 used 10 s.
        frame_body_timeout: 0.76 allows 30 s for a frame's body once its
            prefix has arrived.
        stderr_path: append the plugin's stderr there instead of inheriting it.
        blackboard: serve the blackboard stand-in routes (private meshes only).
        accepting: this node accepts work (LOCAL_ACCEPTING) or stands by (LOCAL_STANDBY).
    """

    plugin_name: str
    command: Sequence[str]
    generation: Generation = "0.76"
    peer_id: str = field(default_factory=_random_peer_id)
    mesh_id: str = field(default_factory=_random_mesh_id)
    home: Path = field(default_factory=_fresh_home)
    env: Mapping[str, str] = field(default_factory=dict)
    health_interval: float = 15.0
    request_timeout: float = 30.0
    idle_timeout: float | None = None
    frame_body_timeout: float = 30.0
    connect_timeout: float = 10.0
    init_timeout: float = 30.0
    management_port: int = 0
    mesh_visibility: Visibility = "private"
    role: str = "host"
    vram_bytes: int = 24 * 2**30
    serving_models: Sequence[str] = ()
    hosted_models: Sequence[str] = ()
    accepting: bool = True
    blackboard: bool = False
    stderr_path: Path | None = None
    host_version: str = ""

    def __post_init__(self) -> None:
        self._check_identity()
        self._check_numbers()
        self.command = list(self.command)
        self.home = Path(self.home)
        self.env = dict(self.env)
        self.serving_models = list(self.serving_models)
        self.hosted_models = list(self.hosted_models)
        if not self.host_version:
            self.host_version = _HOST_VERSION[self.generation]

    def _check_identity(self) -> None:
        if self.generation not in GENERATIONS:
            raise HostConfigError(
                f"generation: {self.generation!r} is not one of {', '.join(GENERATIONS)}"
            )
        if not _NAME_RE.fullmatch(self.plugin_name):
            raise HostConfigError(f"plugin_name: {self.plugin_name!r} must match [a-z0-9-]+")
        if self.plugin_name in RESERVED_NAMES[self.generation]:
            raise HostConfigError(
                f"plugin_name: {self.plugin_name!r} is reserved on a {self.generation} host"
            )
        if isinstance(self.command, str) or not self.command:
            raise HostConfigError("command: must be a non-empty list of strings")
        if not all(isinstance(part, str) for part in self.command):
            raise HostConfigError("command: must be a non-empty list of strings")
        if not _PEER_ID_RE.fullmatch(self.peer_id):
            raise HostConfigError(f"peer_id: {self.peer_id!r} is not 64 lowercase hex characters")
        if self.mesh_visibility not in ("private", "public"):
            raise HostConfigError(
                f"mesh_visibility: {self.mesh_visibility!r} is not 'private' or 'public'"
            )
        if self.role not in _ROLES:
            raise HostConfigError(f"role: {self.role!r} is not one of worker, host, client")

    def _check_numbers(self) -> None:
        for name in (
            "health_interval",
            "request_timeout",
            "frame_body_timeout",
            "connect_timeout",
            "init_timeout",
        ):
            value = getattr(self, name)
            if not value > 0:
                raise HostConfigError(f"{name}: {value!r} must be a positive number of seconds")
        if self.idle_timeout is not None and not self.idle_timeout > 0:
            raise HostConfigError(f"idle_timeout: {self.idle_timeout!r} must be positive or None")
        if not 0 <= self.management_port <= 65535:
            raise HostConfigError(f"management_port: {self.management_port!r} is not a port")
        if self.vram_bytes < 0:
            raise HostConfigError(f"vram_bytes: {self.vram_bytes!r} must not be negative")

    @property
    def effective_idle_timeout(self) -> float | None:
        """The idle read timeout in force: the configured one or the generation's."""
        if self.idle_timeout is not None:
            return self.idle_timeout
        return _IDLE_DEFAULT[self.generation]

    @property
    def is_076(self) -> bool:
        """True for the 0.76 generation (trusted-local rules, response head checks)."""
        return self.generation == "0.76"
