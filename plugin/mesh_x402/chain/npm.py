"""Pinned npm packages (anvil, solc) installed into a per-user cache on first use.

CI starts from a clean machine whose only registries are PyPI, npm and
Debian, so the tools the tests need come from npm. They go into one prefix,
`$MESH_X402_CACHE/npm` (default `~/.cache/mesh-x402/npm`), installed WITH a
package.json: `npm install --no-save` prunes whatever that file does not list,
so a second package would silently remove the first. Parallel tox
environments install at the same moment, hence the lock file around npm.

npm runs inside the cache folder rather than with `--prefix`: `--prefix`
also moves npm's global config to `<prefix>/etc/npmrc`, which drops the
machine's own settings (a `cafile` for a TLS-inspecting proxy, a mirror),
and every fetch then fails or falls back to a stale cache after retries.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Final

from mesh_x402.errors import ChainError

__all__ = ["cache_dir", "npm_install"]

_NPM_TIMEOUT: Final = 600.0


def cache_dir() -> Path:
    """Where npm packages are installed: `$MESH_X402_CACHE/npm` or `~/.cache/mesh-x402/npm`."""
    root = os.environ.get("MESH_X402_CACHE")
    base = Path(root) if root else Path.home() / ".cache" / "mesh-x402"
    return base / "npm"


def _installed_version(package_dir: Path) -> str | None:
    try:
        manifest = json.loads((package_dir / "package.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    version = manifest.get("version") if isinstance(manifest, dict) else None
    return version if isinstance(version, str) else None


def npm_install(spec: str, *, prefix: Path | None = None) -> Path:
    """Install `name@version` into the cache once; return the package's folder.

    Concurrent callers serialise on a lock file in the prefix; the second one
    finds the package installed and returns at once.

    Raises:
        ChainError: npm is missing or the install fails (its output is quoted).
    """
    target = prefix or cache_dir()
    target.mkdir(parents=True, exist_ok=True)
    name, _, version = spec.rpartition("@")
    package_dir = target / "node_modules" / name
    with (target / ".install.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if _installed_version(package_dir) == version:
            return package_dir
        npm = shutil.which("npm")
        if npm is None:
            raise ChainError(f"cannot install {spec}: npm is not on PATH")
        manifest = target / "package.json"
        if not manifest.exists():
            # Without one, npm would look for a project root above the cache folder.
            manifest.write_text('{"private": true}\n', encoding="utf-8")
        try:
            subprocess.run(
                [npm, "install", "--save-exact", "--no-audit", "--no-fund", spec],
                cwd=target,
                check=True,
                capture_output=True,
                timeout=_NPM_TIMEOUT,
            )
        except subprocess.CalledProcessError as exc:
            tail = exc.stderr.decode(errors="replace").strip().splitlines()[-3:]
            raise ChainError(f"npm install {spec} failed: {' | '.join(tail)}") from None
        except subprocess.TimeoutExpired:
            raise ChainError(f"npm install {spec} took more than {_NPM_TIMEOUT:.0f} s") from None
        if _installed_version(package_dir) != version:
            raise ChainError(f"npm install {spec} did not leave {package_dir}/package.json")
        return package_dir
