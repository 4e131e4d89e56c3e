"""The mesh-llm plugin-store archive: `<name>-<version>-<triple>.tar.gz`.

mesh-llm 0.76 installs a plugin from such an archive (`mesh-llm plugins
install --archive FILE --name NAME`) and then starts it on every node start
with no `[[plugin]]` entry, no args and no working directory. It also serves
the archive's web bundle as a page of its console, which is the only way a
plugin gets one. The host's rules (spec sheet `meshllm-plugin-store.md`)
shape everything here:

- one root folder named after the plugin, holding `plugin.toml` and an
  executable named exactly like the plugin (checked for existence only);
- tar.gz keeps the launcher's mode 0755 (a zip would lose it);
- the launcher is spawned directly, so it needs a shebang, and it finds its
  files from its own path because the host sets no cwd;
- `plugin-manifest.json` carries `config_schema` (its `plugin_name` must be
  the install name, or the install fails) and `web_ui` (one bundle; a bad one
  only marks the page invalid, silently, so it is checked here too).

The launcher runs `serve` with the interpreter that built the archive (the
Python environment holding web3, grpc and the rest: mesh-llm installs no
Python dependencies) on the package copy inside the archive, with the node
config given at build time or `$MESH_X402_CONFIG`.
"""

from __future__ import annotations

import io
import json
import platform
import re
import shlex
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from mesh_x402 import __version__
from mesh_x402.chain.artifacts import ARTIFACT_NAMES, artifacts_dir
from mesh_x402.errors import PluginError

__all__ = [
    "CONFIG_ENV",
    "DEFAULT_NAME",
    "PAGE_ID",
    "WEB_ROOT",
    "ArchiveError",
    "BuiltArchive",
    "archive_name",
    "build_archive",
    "launcher_script",
    "package_manifest",
    "target_triple",
    "validate_name",
]

DEFAULT_NAME: Final = "x402"
CONFIG_ENV: Final = "MESH_X402_CONFIG"
WEB_ROOT: Final = "web"
PAGE_ID: Final = "payments"
ENTRY_SCRIPT: Final = "payments.js"
LIB_DIR: Final = "lib"
# mesh-llm's `is_valid_name`: ASCII letters, digits, '.', '_' and '-'.
_NAME: Final = re.compile(r"^[A-Za-z0-9._-]+$")
_RESERVED: Final = frozenset({"blobstore"})
# (system, machine) -> triple: the host's own table; nothing else installs.
_TRIPLES: Final = {
    ("Darwin", "arm64"): "aarch64-apple-darwin",
    ("Darwin", "aarch64"): "aarch64-apple-darwin",
    ("Darwin", "x86_64"): "x86_64-apple-darwin",
    ("Linux", "x86_64"): "x86_64-unknown-linux-gnu",
    ("Linux", "amd64"): "x86_64-unknown-linux-gnu",
    ("Linux", "aarch64"): "aarch64-unknown-linux-gnu",
    ("Linux", "arm64"): "aarch64-unknown-linux-gnu",
}
_PACKAGE_DIR: Final = Path(__file__).resolve().parent
# Fixed metadata keeps two builds of the same tree byte-identical inside.
_MTIME: Final = 0


class ArchiveError(PluginError):
    """The archive cannot be built as mesh-llm requires (bad name, unsupported platform)."""


@dataclass(frozen=True)
class BuiltArchive:
    """A finished archive and what `mesh-llm plugins install` needs to install it."""

    path: Path
    name: str
    version: str
    triple: str

    def install_command(self) -> list[str]:
        """`mesh-llm plugins install --archive FILE --name NAME --version V`."""
        return [
            "mesh-llm",
            "plugins",
            "install",
            "--archive",
            str(self.path),
            "--name",
            self.name,
            "--version",
            self.version,
        ]


def validate_name(name: str) -> str:
    """The install name, checked as mesh-llm checks it.

    The same name becomes the root folder, the executable, the archive prefix,
    `config_schema.plugin_name`, the plugin id and the console URLs.

    Raises:
        ArchiveError: empty, a character outside [A-Za-z0-9._-], a dot-only
            name (a path segment, not a folder name) or the reserved `blobstore`.
    """
    if not _NAME.match(name):
        raise ArchiveError(
            f"plugin name {name!r} must be non-empty ASCII letters, digits, '.', '_' or '-' "
            "(mesh-llm's rule; [a-z0-9-] is the safest choice)"
        )
    if set(name) == {"."}:
        raise ArchiveError(f"plugin name {name!r} is not a usable folder name")
    if name in _RESERVED:
        raise ArchiveError(f"plugin name {name!r} is reserved by mesh-llm")
    return name


def target_triple(system: str | None = None, machine: str | None = None) -> str:
    """The host's target triple for this OS and CPU (defaults: this machine).

    Raises:
        ArchiveError: Windows (it needs a native `<name>.exe`, which a Python
            launcher is not) or a platform mesh-llm cannot install on at all.
    """
    system = platform.system() if system is None else system
    machine = platform.machine() if machine is None else machine
    if system == "Windows":
        raise ArchiveError(
            "a store archive for Windows needs a native <name>.exe in a zip; "
            "this Python launcher serves Linux and macOS only (use a [[plugin]] entry)"
        )
    triple = _TRIPLES.get((system, machine.lower() if system == "Linux" else machine))
    if triple is None:
        raise ArchiveError(
            f"mesh-llm has no plugin target for {system}/{machine} "
            "(x86_64 or arm64 Linux and macOS only)"
        )
    return triple


def archive_name(name: str, version: str, triple: str) -> str:
    """`<name>-<version>-<triple>.tar.gz`: the asset name the host looks for first."""
    return f"{name}-{version.removeprefix('v')}-{triple}.tar.gz"


def _setting(key: str, label: str, help_text: str, *, default: int, low: int, high: int) -> Any:
    return {
        "key": key,
        "value_schema": {"kind": "integer"},
        "apply_mode": "dynamic_apply",
        "restart_scope": "none",
        "visibility": "user",
        "required": False,
        "default_json": str(default),
        "constraints": [{"kind": "range", "min": str(low), "max": str(high)}],
        "description": help_text,
        "presentation": {"label": label, "help": help_text, "category_id": "payments-page"},
    }


def package_manifest(name: str) -> dict[str, Any]:
    """`plugin-manifest.json`: the settings schema and the Payments page.

    The settings are read by the page only (`host.config.visible.settings`):
    mesh-llm never passes `[plugin.settings]` to the plugin process, so
    nothing the process needs is declared here.
    """
    bundle_id = f"{name}-web"
    return {
        "config_schema": {
            "plugin_name": name,
            "schema_version": 1,
            "allow_unvalidated_config": False,
            "settings": [
                _setting(
                    "refresh_seconds",
                    "Refresh every (s)",
                    "How often the Payments page reloads its figures.",
                    default=5,
                    low=1,
                    high=3600,
                ),
                _setting(
                    "receipt_rows",
                    "Receipts shown",
                    "How many recent receipts the Payments page lists.",
                    default=20,
                    low=1,
                    high=500,
                ),
            ],
        },
        "web_ui": {
            "bundles": [{"id": bundle_id, "root_path": WEB_ROOT}],
            "pages": [
                {
                    "id": PAGE_ID,
                    "label": "Payments",
                    "route": PAGE_ID,
                    "bundle_id": bundle_id,
                    "entry_script": ENTRY_SCRIPT,
                }
            ],
        },
    }


def launcher_script(python: str, config: Path | None) -> str:
    """The executable the host spawns: a POSIX shell script.

    A shell script rather than `#!<python>`: a shebang line is limited to
    127 bytes on Linux and cannot carry spaces, and a virtualenv path easily
    has either. `$0` is the path the host spawned (absolute, the install
    dir), since the host sets no working directory.
    """
    config_default = "" if config is None else str(config)
    return f"""#!/bin/sh
# mesh-x402 launcher for mesh-llm's plugin store (built by `mesh-x402 plugin-install`).
# The host starts it with no arguments and no working directory: everything
# is found from this file's own location.
here=$(CDPATH= cd -- "$(dirname -- "$0")" && pwd) || exit 1
config=${{{CONFIG_ENV}:-}}
if [ -z "$config" ]; then
    config={shlex.quote(config_default)}
fi
if [ -z "$config" ]; then
    echo "mesh-x402: no node config: set \\${CONFIG_ENV} or rebuild with --config" >&2
    exit 2
fi
PYTHONPATH="$here/{LIB_DIR}${{PYTHONPATH:+:$PYTHONPATH}}"
export PYTHONPATH
exec {shlex.quote(python)} -m mesh_x402 serve --config "$config"
"""


def _plugin_toml(name: str, version: str) -> str:
    # Only its existence is checked; the fields are for people reading it.
    return (
        f"name = {json.dumps(name)}\n"
        f"version = {json.dumps(version)}\n"
        'description = "x402 payments for mesh-llm: paid inference, receipts, settlement"\n'
        f"command = {json.dumps(name)}\n"
    )


def _package_files() -> Iterator[tuple[str, Path]]:
    """The package's own files (relative path, source), without caches or the web bundle."""
    for path in sorted(_PACKAGE_DIR.rglob("*")):
        relative = path.relative_to(_PACKAGE_DIR)
        if not path.is_file() or "__pycache__" in relative.parts or path.suffix == ".pyc":
            continue
        if relative.parts[0] == WEB_ROOT or relative.parts[:2] == ("chain", "_artifacts"):
            continue  # the bundle goes to web/; the artifacts come from _artifact_files
        yield relative.as_posix(), path


def _artifact_files() -> Iterator[tuple[str, Path]]:
    """The compiled contracts, where an installed wheel keeps them (`chain/_artifacts`):
    a checkout reads them from `<repo>/contracts/out`, which the archive does not have."""
    source = artifacts_dir()
    for name in ARTIFACT_NAMES:
        path = source / f"{name}.json"
        if not path.is_file():
            raise ArchiveError(f"compiled contract {path} is missing: the plugin could not settle")
        yield f"chain/_artifacts/{name}.json", path


def _web_files() -> Iterator[tuple[str, Path]]:
    web = _PACKAGE_DIR / WEB_ROOT
    for path in sorted(web.rglob("*")):
        if path.is_file() and path.suffix in {".js", ".css", ".svg", ".json"}:
            yield path.relative_to(web).as_posix(), path


def _add(tar: tarfile.TarFile, arcname: str, data: bytes | None, mode: int) -> None:
    info = tarfile.TarInfo(arcname)
    info.mtime = _MTIME
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    info.mode = mode
    if data is None:
        info.type = tarfile.DIRTYPE
        tar.addfile(info)
        return
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def build_archive(
    out_dir: Path,
    *,
    name: str = DEFAULT_NAME,
    config: Path | None = None,
    python: str,
    version: str = __version__,
    triple: str | None = None,
) -> BuiltArchive:
    """Write the archive into `out_dir` (created if missing) and return it.

    Written to a temporary name and renamed, so a failed build never leaves
    a half archive where the installer would find it.

    Args:
        out_dir: where the archive goes.
        name: the install name (see `validate_name`).
        config: the node config the launcher passes to `serve` unless
            `$MESH_X402_CONFIG` is set when it starts; made absolute.
        python: the interpreter the launcher runs (`sys.executable` of the build).
        version: the plugin version in the file name and `plugin.toml`.
        triple: the target triple; by default this machine's.

    Raises:
        ArchiveError: a bad name, an unsupported platform, or the config
            file missing.
        OSError: `out_dir` cannot be written.
    """
    validate_name(name)
    triple = target_triple() if triple is None else triple
    if config is not None:
        config = config.expanduser().absolute()
        if not config.is_file():
            raise ArchiveError(f"--config {config}: no such file")
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / archive_name(name, version, triple)
    partial = target.with_name(target.name + ".partial")
    with tarfile.open(partial, "w:gz", format=tarfile.PAX_FORMAT) as tar:
        _add(tar, name, None, 0o755)
        _add(tar, f"{name}/plugin.toml", _plugin_toml(name, version).encode(), 0o644)
        _add(tar, f"{name}/{name}", launcher_script(python, config).encode(), 0o755)
        manifest = json.dumps(package_manifest(name), indent=2) + "\n"
        _add(tar, f"{name}/plugin-manifest.json", manifest.encode(), 0o644)
        _add(tar, f"{name}/{WEB_ROOT}", None, 0o755)
        for relative, source in _web_files():
            _add(tar, f"{name}/{WEB_ROOT}/{relative}", source.read_bytes(), 0o644)
        made: set[str] = set()
        for relative, source in (*_package_files(), *_artifact_files()):
            parts = f"{LIB_DIR}/mesh_x402/{relative}".split("/")
            for depth in range(1, len(parts)):
                folder = "/".join(parts[:depth])
                if folder not in made:
                    made.add(folder)
                    _add(tar, f"{name}/{folder}", None, 0o755)
            _add(tar, f"{name}/{'/'.join(parts)}", source.read_bytes(), 0o644)
    partial.replace(target)
    return BuiltArchive(path=target, name=name, version=version, triple=triple)
