"""`[[plugin]]` entries of mesh-llm's config.toml, read the way each generation reads them.

This lets a test check that the entry `mesh-x402 init` prints would load on a
real node, and lets the devnet build its hosts from that same entry. 0.76
is strict: `version` must be 1; any key but name, enabled, web_ui_enabled,
command, args, url, startup and settings is fatal; a non-empty settings
table is fatal for a plugin not installed through the plugin store (none is,
here); an entry without `command` would be looked up among installed
plugins (none here, so it is fatal too). Duplicate names stop both
generations, and so do reserved ids.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from mesh_x402.hostdouble.config import RESERVED_NAMES, Generation, HostConfig
from mesh_x402.hostdouble.errors import HostDoubleError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

__all__ = ["ENTRY_KEYS_076", "EntryError", "PluginEntry", "host_config", "load_plugin_entries"]

ENTRY_KEYS_076: Final = frozenset(
    {"name", "enabled", "web_ui_enabled", "command", "args", "url", "startup", "settings"}
)
_STARTUP_KEYS: Final = frozenset(
    {"connect_timeout_secs", "init_timeout_secs", "optional", "lazy_start"}
)
_DEFAULT_CONNECT: Final = 10.0
_DEFAULT_INIT: Final = 30.0


class EntryError(HostDoubleError):
    """The config would stop the node; the message names the entry, the key and the problem."""


@dataclass(frozen=True)
class PluginEntry:
    """One `[[plugin]]` entry as the host understood it."""

    name: str
    command: str
    args: tuple[str, ...] = ()
    enabled: bool = True
    connect_timeout: float = _DEFAULT_CONNECT
    init_timeout: float = _DEFAULT_INIT


def load_plugin_entries(text: str, generation: Generation = "0.76") -> list[PluginEntry]:
    """Parse config.toml text and return its plugin entries (disabled ones included).

    Raises:
        EntryError: anything that would stop a node of that generation.
    """
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise EntryError(f"config.toml is not TOML: {exc}") from None
    strict = generation == "0.76"
    if strict and document.get("version", 1) != 1:
        raise EntryError(f"config.toml: version must be 1, not {document['version']!r}")
    raw_entries = document.get("plugin", [])
    if not isinstance(raw_entries, list) or not all(isinstance(e, dict) for e in raw_entries):
        raise EntryError("config.toml: `plugin` must be an array of tables ([[plugin]])")
    entries = [_entry(index, raw, generation) for index, raw in enumerate(raw_entries)]
    names = [entry.name for entry in entries]
    for name in names:
        if names.count(name) > 1:
            raise EntryError(f"config.toml: plugin name {name!r} appears more than once")
    return entries


def host_config(entry: PluginEntry, generation: Generation = "0.76", **fields: Any) -> HostConfig:
    """A HostConfig running this entry's command with its startup timeouts."""
    settings: dict[str, Any] = {
        "plugin_name": entry.name,
        "command": [entry.command, *entry.args],
        "generation": generation,
        "connect_timeout": entry.connect_timeout,
        "init_timeout": entry.init_timeout,
    }
    settings.update(fields)
    return HostConfig(**settings)


def _entry(index: int, raw: Mapping[str, Any], generation: Generation) -> PluginEntry:
    strict = generation == "0.76"
    where = f"config.toml: plugin[{index}]"
    name = raw.get("name")
    if not isinstance(name, str) or not name:
        raise EntryError(f"{where}: `name` must be a non-empty string")
    where = f"{where} ({name})"
    if name in RESERVED_NAMES[generation]:
        raise EntryError(f"{where}: the id {name!r} is reserved on a {generation} host")
    if strict:
        unknown = sorted(set(raw) - ENTRY_KEYS_076)
        if unknown:
            allowed = ", ".join(sorted(ENTRY_KEYS_076))
            raise EntryError(f"{where}: unknown key {unknown[0]!r} (0.76 allows {allowed})")
        if raw.get("settings"):
            raise EntryError(
                f"{where}: a non-empty [plugin.settings] needs a store-installed plugin"
            )
    command = raw.get("command")
    if command is None:
        raise EntryError(f"{where}: no `command`, and no installed plugin of that name")
    if not isinstance(command, str) or not command:
        raise EntryError(f"{where}: `command` must be a non-empty string")
    args = raw.get("args", [])
    if not isinstance(args, list) or not all(isinstance(arg, str) for arg in args):
        raise EntryError(f"{where}: `args` must be a list of strings")
    enabled = raw.get("enabled", True)
    if not isinstance(enabled, bool):
        raise EntryError(f"{where}: `enabled` must be true or false")
    connect, init = _startup(where, raw.get("startup"), strict=strict)
    return PluginEntry(
        name=name,
        command=command,
        args=tuple(args),
        enabled=enabled,
        connect_timeout=connect,
        init_timeout=init,
    )


def _startup(where: str, startup: Any, *, strict: bool) -> tuple[float, float]:
    if startup is None or not strict:
        return _DEFAULT_CONNECT, _DEFAULT_INIT  # 0.66 has no [plugin.startup]
    if not isinstance(startup, dict):
        raise EntryError(f"{where}: `startup` must be a table")
    unknown = sorted(set(startup) - _STARTUP_KEYS)
    if unknown:
        raise EntryError(f"{where}: unknown key startup.{unknown[0]}")
    timeouts = []
    for key, default in (
        ("connect_timeout_secs", _DEFAULT_CONNECT),
        ("init_timeout_secs", _DEFAULT_INIT),
    ):
        value = startup.get(key, default)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
            raise EntryError(f"{where}: startup.{key} must be a positive number of seconds")
        timeouts.append(float(value))
    return timeouts[0], timeouts[1]
