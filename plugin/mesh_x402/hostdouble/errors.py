"""Errors the host double raises.

They hang under the package's `PluginError` so callers can catch one tree::

    HostDoubleError
    ├── HostConfigError     a HostConfig field is unusable (names the field)
    ├── PluginStartError    the plugin did not connect or initialize (0.66: the node fails)
    ├── PluginUnavailableError   no live plugin to talk to (stopped, "error" or disabled)
    ├── EntryError          (entries.py) a config.toml entry would stop the node
    └── RequestTimeoutError      a host request timed out twice (first try and the retry)
"""

from __future__ import annotations

from mesh_x402.errors import PluginError

__all__ = [
    "HostConfigError",
    "HostDoubleError",
    "PluginStartError",
    "PluginUnavailableError",
    "RequestTimeoutError",
]


class HostDoubleError(PluginError):
    """Base of every error the host double raises on purpose."""


class HostConfigError(HostDoubleError, ValueError):
    """A HostConfig field is unusable; the message names the field and the problem."""


class PluginStartError(HostDoubleError):
    """The plugin failed to start: no connection in time, a bad or late initialize."""


class PluginUnavailableError(HostDoubleError):
    """There is no live plugin session (stopped, marked "error", disabled, or it died)."""


class RequestTimeoutError(HostDoubleError):
    """A host request was not answered in time, on the first process and on the fresh one."""
