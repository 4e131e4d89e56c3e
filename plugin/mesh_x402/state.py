"""Small node state files under `<state_dir>`, written atomically.

The host SIGKILLs plugins at any instant and operators interrupt commands,
so a state file is replaced in one rename: a temporary file in the same
folder, fsync, rename, fsync the folder. A reader sees the old file or the
new one, never half of one.

`identity.json` records the node's ERC-8004 agentId together with the chain
and registry it lives in: an agentId means nothing in another registry, so a
node pointed at a new deployment does not mistake an old id for its own.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Final

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic.alias_generators import to_camel

from mesh_x402.errors import ConfigError

__all__ = ["IDENTITY_FILE", "IdentityState", "load_identity", "save_identity", "write_atomic"]

IDENTITY_FILE: Final = "identity.json"


def write_atomic(path: Path, data: bytes) -> None:
    """Replace `path` with `data` in one rename, creating the folder if needed."""
    folder = path.parent
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".{path.name}.{os.getpid()}.tmp"
    try:
        with open(tmp, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    dir_fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


class IdentityState(BaseModel):
    """The node's agent: which id, in which registry on which chain."""

    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True
    )

    agent_id: int = Field(ge=0)
    chain_id: int = Field(gt=0)
    identity_registry: str = Field(pattern=r"^0x[0-9a-fA-F]{40}$")


def load_identity(state_dir: Path) -> IdentityState | None:
    """The recorded identity, or None when the node never registered.

    Raises:
        ConfigError: the file exists but is unreadable or malformed.
    """
    path = state_dir / IDENTITY_FILE
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    try:
        return IdentityState.model_validate_json(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or '(top level)'}: {e['msg']}"
            for e in exc.errors()
        )
        raise ConfigError(f"{path}: {problems}") from None


def save_identity(state_dir: Path, identity: IdentityState) -> None:
    """Record the identity atomically."""
    data = identity.model_dump_json(by_alias=True, indent=1).encode() + b"\n"
    write_atomic(state_dir / IDENTITY_FILE, data)
