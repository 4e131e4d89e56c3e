"""The mesh view: folded from events, kept on disk, restored after a respawn."""

from __future__ import annotations

import json

import pytest
from mesh_x402._pb.meshllm.plugin.v1 import plugin_pb2 as pb
from mesh_x402.mesh.view import VIEW_FILE, MeshView
from structlog.testing import capture_logs

LOCAL = "aa" * 32
PEER_B = "bb" * 32
PEER_C = "cc" * 32
MESH = "0123456789abcdef0123456789abcdef"
Kind = pb.MeshEvent


def make_peer(peer_id: str = PEER_B, **overrides: object) -> pb.MeshPeer:
    fields: dict[str, object] = {
        "peer_id": peer_id,
        "role": "host",
        "version": "0.76.0",
        "vram_bytes": 24 * 2**30,
        "serving_models": ["llama-8b"],
        "hosted_models": ["llama-8b"],
        "rtt_ms": 12,
    }
    fields.update(overrides)
    return pb.MeshPeer(**fields)


def make_event(kind: int, peer: pb.MeshPeer | None = None, **overrides: object) -> pb.MeshEvent:
    fields: dict[str, object] = {"kind": kind, "local_peer_id": LOCAL}
    if peer is not None:
        fields["peer"] = peer
    fields.update(overrides)
    return pb.MeshEvent(**fields)


def snapshot() -> list[pb.MeshEvent]:
    """What a node start sends: local state, mesh id, then every known peer."""
    return [
        make_event(Kind.KIND_LOCAL_ACCEPTING),
        make_event(Kind.KIND_MESH_ID_UPDATED, mesh_id=MESH),
        make_event(Kind.KIND_PEER_UP, make_peer(PEER_B)),
        make_event(Kind.KIND_PEER_UP, make_peer(PEER_C, role="worker", vram_bytes=8 * 2**30)),
    ]


class TestEvents:
    def test_snapshot_fills_the_view(self, tmp_path):
        view = MeshView(tmp_path)
        for event in snapshot():
            view.apply(event)
        assert view.local_peer_id == LOCAL
        assert view.mesh_id == MESH
        assert view.local_state == "accepting"
        assert set(view.peers) == {PEER_B, PEER_C}
        b = view.peers[PEER_B]
        assert (b.role, b.vram_bytes, b.serving_models, b.hosted_models) == (
            "host",
            24 * 2**30,
            ("llama-8b",),
            ("llama-8b",),
        )
        assert view.peers[PEER_C].role == "worker"

    def test_peer_updated_replaces_and_peer_down_removes(self, tmp_path):
        view = MeshView(tmp_path)
        for event in snapshot():
            view.apply(event)
        view.apply(make_event(Kind.KIND_PEER_UPDATED, make_peer(PEER_B, serving_models=["qwen"])))
        assert view.peers[PEER_B].serving_models == ("qwen",)
        view.apply(make_event(Kind.KIND_PEER_DOWN, make_peer(PEER_C)))
        assert set(view.peers) == {PEER_B}

    def test_standby(self, tmp_path):
        view = MeshView(tmp_path)
        view.apply(make_event(Kind.KIND_LOCAL_STANDBY))
        assert view.local_state == "standby"

    def test_rtt_only_change_is_not_a_change(self, tmp_path):
        """Round-trip times are not kept, so they cost no disk write."""
        view = MeshView(tmp_path)
        assert view.apply(make_event(Kind.KIND_PEER_UP, make_peer(rtt_ms=10))) is True
        assert view.apply(make_event(Kind.KIND_PEER_UPDATED, make_peer(rtt_ms=90))) is False

    def test_down_for_an_unknown_peer_changes_nothing(self, tmp_path):
        view = MeshView(tmp_path)
        view.apply(make_event(Kind.KIND_LOCAL_ACCEPTING))
        assert view.apply(make_event(Kind.KIND_PEER_DOWN, make_peer(PEER_C))) is False

    def test_another_mesh_id_starts_the_peers_over(self, tmp_path):
        """Peers of a mesh we left must not linger: nothing would ever remove them."""
        view = MeshView(tmp_path)
        for event in snapshot():
            view.apply(event)
        view.apply(make_event(Kind.KIND_MESH_ID_UPDATED, mesh_id="ff" * 16))
        assert view.mesh_id == "ff" * 16
        assert dict(view.peers) == {}

    def test_another_local_peer_id_starts_over(self, tmp_path):
        view = MeshView(tmp_path)
        for event in snapshot():
            view.apply(event)
        view.apply(make_event(Kind.KIND_LOCAL_ACCEPTING, local_peer_id="dd" * 32))
        assert view.local_peer_id == "dd" * 32
        assert view.mesh_id is None
        assert dict(view.peers) == {}


class TestPersistence:
    def test_respawn_restores_without_a_snapshot(self, tmp_path):
        """A new process on the same state folder knows what the old one knew."""
        first = MeshView(tmp_path / "state")
        for event in snapshot():
            first.apply(event)
        second = MeshView(tmp_path / "state")
        with capture_logs() as logs:
            second.restore()
        assert second.local_peer_id == LOCAL
        assert second.mesh_id == MESH
        assert second.peers == first.peers
        assert logs[0]["event"] == "mesh.view_restored"
        assert logs[0]["peers"] == 2

    def test_file_is_json_and_leaves_no_temporary_files(self, tmp_path):
        view = MeshView(tmp_path)
        for event in snapshot():
            view.apply(event)
        assert [p.name for p in tmp_path.iterdir()] == [VIEW_FILE]
        data = json.loads((tmp_path / VIEW_FILE).read_text())
        assert data["local_peer_id"] == LOCAL
        assert set(data["peers"]) == {PEER_B, PEER_C}

    def test_missing_file_is_an_empty_view(self, tmp_path):
        view = MeshView(tmp_path)
        view.restore()
        assert view.local_peer_id is None
        assert dict(view.peers) == {}

    @pytest.mark.parametrize("content", [b"", b"{not json", b'{"peers": 5}', b"\xff\xfe"])
    def test_unreadable_file_is_logged_and_ignored(self, tmp_path, content):
        """A damaged file must not stop the plugin (the host would respawn it in a loop)."""
        (tmp_path / VIEW_FILE).write_bytes(content)
        view = MeshView(tmp_path)
        with capture_logs() as logs:
            view.restore()
        assert dict(view.peers) == {}
        assert [entry["event"] for entry in logs] == ["mesh.view_unreadable"]
        assert logs[0]["path"] == str(tmp_path / VIEW_FILE)

    def test_unchanged_event_does_not_rewrite(self, tmp_path):
        view = MeshView(tmp_path)
        view.apply(make_event(Kind.KIND_PEER_UP, make_peer()))
        (tmp_path / VIEW_FILE).write_text("sentinel")
        assert view.apply(make_event(Kind.KIND_PEER_UP, make_peer())) is False
        assert (tmp_path / VIEW_FILE).read_text() == "sentinel"
