"""A Python double of a mesh-llm host, for tests and the devnet.

It follows /work/shared/spec/meshllm-plugin-host.md: socket and
environment, handshake checks, the node-start event snapshot (once), health
ticks, the idle read timeout, SIGKILL and respawn, request ids, streamed
HTTP bindings on a 127.0.0.1 management listener, and the plugin channel
relayed between linked hosts. Generation "0.76" by default, "0.66" by option.
`load_plugin_entries` reads config.toml `[[plugin]]` entries as each
generation would.
"""

from __future__ import annotations

from mesh_x402.hostdouble.config import HostConfig
from mesh_x402.hostdouble.entries import EntryError, PluginEntry, load_plugin_entries
from mesh_x402.hostdouble.errors import (
    HostConfigError,
    HostDoubleError,
    PluginStartError,
    PluginUnavailableError,
    RequestTimeoutError,
)
from mesh_x402.hostdouble.host import Host
from mesh_x402.hostdouble.mesh import Mesh

__all__ = [
    "EntryError",
    "Host",
    "HostConfig",
    "HostConfigError",
    "HostDoubleError",
    "Mesh",
    "PluginEntry",
    "PluginStartError",
    "PluginUnavailableError",
    "RequestTimeoutError",
    "load_plugin_entries",
]
