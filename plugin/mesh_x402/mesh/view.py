"""The plugin's view of the mesh: who we are, which mesh, which peers.

The host sends its snapshot of the mesh (own peer id, mesh id, peers) once
per node start and never again after it kills and respawns the plugin. So
the view is kept on disk, written atomically after every change, and read
back on start: a respawned plugin knows its peer id and its peers before any
new event arrives.

Only what the rest of the plugin uses is kept (role, VRAM, models served and
hosted): round-trip times change often and would turn every PEER_UPDATED
into a disk write. An event naming another local peer id or another mesh id
than the kept ones starts the view over: a node restarted with a new key, or
in another mesh, must not inherit peers it will never hear a PEER_DOWN for.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Final, Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from mesh_x402._pb.meshllm.plugin.v1 import plugin_pb2 as pb
from mesh_x402.log import Event, get_logger

__all__ = ["VIEW_FILE", "MeshView", "Peer", "ViewState"]

VIEW_FILE: Final = "mesh-view.json"

_log = get_logger("mesh")
_Kind = pb.MeshEvent.Kind


class Peer(BaseModel):
    """One peer as the host's gossip describes it."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    peer_id: str
    role: str = ""
    version: str = ""
    vram_bytes: int = 0
    serving_models: tuple[str, ...] = ()
    hosted_models: tuple[str, ...] = ()

    @classmethod
    def from_pb(cls, peer: pb.MeshPeer) -> Peer:
        return cls(
            peer_id=peer.peer_id,
            role=peer.role,
            version=peer.version,
            vram_bytes=peer.vram_bytes,
            serving_models=tuple(peer.serving_models),
            hosted_models=tuple(peer.hosted_models),
        )


class ViewState(BaseModel):
    """The persisted form of the view (`mesh-view.json`)."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    local_peer_id: str | None = None
    mesh_id: str | None = None
    local_state: Literal["accepting", "standby"] | None = None
    peers: dict[str, Peer] = {}


class MeshView:
    """The mesh as last reported by the host, kept in `<state_dir>/mesh-view.json`.

    Args:
        state_dir: the node's state folder; created on the first write.
    """

    def __init__(self, state_dir: Path) -> None:
        self._path = state_dir / VIEW_FILE
        self._state = ViewState()

    @property
    def path(self) -> Path:
        return self._path

    @property
    def local_peer_id(self) -> str | None:
        return self._state.local_peer_id

    @property
    def mesh_id(self) -> str | None:
        return self._state.mesh_id

    @property
    def local_state(self) -> Literal["accepting", "standby"] | None:
        return self._state.local_state

    @property
    def peers(self) -> Mapping[str, Peer]:
        return self._state.peers

    def restore(self) -> None:
        """Read the kept view back. A missing file is an empty view; an
        unreadable one is logged and replaced by an empty view, because a
        plugin that refused to start would only be respawned in a loop."""
        try:
            raw = self._path.read_bytes()
        except FileNotFoundError:
            return
        except OSError as exc:
            _log.warning(Event.MESH_VIEW_UNREADABLE, path=str(self._path), reason=exc.strerror)
            return
        try:
            self._state = ViewState.model_validate_json(raw)
        except ValidationError as exc:
            _log.warning(
                Event.MESH_VIEW_UNREADABLE,
                path=str(self._path),
                reason=f"{exc.error_count()} validation error(s)",
            )
            return
        _log.info(
            Event.MESH_VIEW_RESTORED,
            local_peer_id=self._state.local_peer_id,
            mesh_id=self._state.mesh_id,
            peers=len(self._state.peers),
        )

    def apply(self, event: pb.MeshEvent) -> bool:
        """Fold one mesh event into the view and persist it if it changed.

        Returns:
            whether the view changed.
        """
        state = self._state
        if _starts_over(state, event):
            # Another node identity or another mesh: nothing kept applies.
            state = ViewState()
        update: dict[str, object] = {}
        if event.local_peer_id:
            update["local_peer_id"] = event.local_peer_id
        if event.mesh_id:
            update["mesh_id"] = event.mesh_id
        kind = event.kind
        if kind == _Kind.KIND_LOCAL_ACCEPTING:
            update["local_state"] = "accepting"
        elif kind == _Kind.KIND_LOCAL_STANDBY:
            update["local_state"] = "standby"
        elif kind in (_Kind.KIND_PEER_UP, _Kind.KIND_PEER_UPDATED) and event.peer.peer_id:
            update["peers"] = {**state.peers, event.peer.peer_id: Peer.from_pb(event.peer)}
        elif kind == _Kind.KIND_PEER_DOWN and event.peer.peer_id in state.peers:
            update["peers"] = {k: v for k, v in state.peers.items() if k != event.peer.peer_id}
        new_state = state.model_copy(update=update)
        if new_state == self._state:
            return False
        self._state = new_state
        self._save()
        return True

    def _save(self) -> None:
        """Write the view atomically: a temporary file, fsync, rename, fsync the folder.

        A SIGKILL at any instant leaves either the old file or the new one.
        """
        folder = self._path.parent
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / f".{VIEW_FILE}.{os.getpid()}.tmp"
        data = self._state.model_dump_json(indent=1).encode()
        with open(tmp, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, self._path)
        dir_fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def _starts_over(state: ViewState, event: pb.MeshEvent) -> bool:
    """Whether `event` shows the kept view belongs to another node or mesh."""
    other_node = bool(event.local_peer_id) and state.local_peer_id not in (
        None,
        event.local_peer_id,
    )
    other_mesh = bool(event.mesh_id) and state.mesh_id not in (None, event.mesh_id)
    return other_node or other_mesh
