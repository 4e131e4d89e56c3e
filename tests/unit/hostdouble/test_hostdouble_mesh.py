"""Mesh relay rules, with nodes that record deliveries instead of running plugins."""

from __future__ import annotations

from typing import Any

import pytest
from mesh_x402._pb.meshllm.plugin.v1 import plugin_pb2 as pb
from mesh_x402.hostdouble import HostConfigError, Mesh
from mesh_x402.hostdouble.mesh import Dedup


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Node:
    """Stands in for a Host: the mesh only needs these members."""

    def __init__(self, index: int) -> None:
        self.peer_id = f"{index:x}" * 64
        self.state = "running"
        self.mesh: Any = None
        self.board = None
        self.delivered: list[tuple[pb.ChannelMessage, str]] = []
        self.events: list[tuple[str, str]] = []

    async def deliver_channel(self, message: pb.ChannelMessage, plugin_name: str) -> bool:
        self.delivered.append((message, plugin_name))
        return True

    def local_peer(self) -> pb.MeshPeer:
        return pb.MeshPeer(peer_id=self.peer_id)

    async def peer_up(self, peer: pb.MeshPeer) -> bool:
        self.events.append(("up", peer.peer_id))
        return True

    async def peer_down(self, peer_id: str) -> bool:
        self.events.append(("down", peer_id))
        return True

    async def peer_updated(self, peer: pb.MeshPeer) -> bool:
        self.events.append(("updated", peer.peer_id))
        return True


def build(count: int, links: list[tuple[int, int]] | None = None) -> tuple[Mesh, list[Node]]:
    nodes = [Node(i + 1) for i in range(count)]
    return Mesh(nodes, links), nodes  # type: ignore[arg-type]


def message(target: str = "", size: int = 3) -> pb.ChannelMessage:
    return pb.ChannelMessage(
        channel="x402.v1", source_peer_id="1" * 64, target_peer_id=target, body=b"x" * size
    )


async def send(mesh: Mesh, sender: Node, msg: pb.ChannelMessage) -> None:
    await mesh.relay(sender, msg, "x402")  # type: ignore[arg-type]


def delivered(nodes: list[Node]) -> list[int]:
    return [len(node.delivered) for node in nodes]


class TestRelay:
    async def test_broadcast_reaches_direct_peers_not_sender(self) -> None:
        """A broadcast reaches every direct peer once, and never the sender."""
        mesh, nodes = build(3)
        await send(mesh, nodes[0], message())
        assert delivered(nodes) == [0, 1, 1]
        assert nodes[1].delivered[0][1] == "x402"

    async def test_broadcast_is_not_reflooded(self) -> None:
        """On a line A-B-C a broadcast from A stops at B."""
        mesh, nodes = build(3, [(0, 1), (1, 2)])
        await send(mesh, nodes[0], message())
        assert delivered(nodes) == [0, 1, 0]

    async def test_targeted_two_hops_not_three(self) -> None:
        """A targeted message goes at most two hops: C on A-B-C, never D on A-B-C-D."""
        mesh, nodes = build(4, [(0, 1), (1, 2), (2, 3)])
        await send(mesh, nodes[0], message(target=nodes[2].peer_id))
        assert delivered(nodes) == [0, 0, 1, 0]
        await send(mesh, nodes[0], message(target=nodes[3].peer_id))
        assert delivered(nodes) == [0, 0, 1, 0]

    async def test_target_is_exact_lowercase(self) -> None:
        """Only an exact lowercase-hex target matches; the others drop it."""
        mesh, nodes = build(3)
        await send(mesh, nodes[0], message(target=nodes[1].peer_id))
        assert delivered(nodes) == [0, 1, 0]
        await send(mesh, nodes[0], message(target="B" * 64))
        assert delivered(nodes) == [0, 1, 0]

    async def test_duplicates_through_two_paths_are_dropped(self) -> None:
        """A diamond A-B-C, A-D-C: a message targeted at C arrives twice and is delivered once."""
        mesh, nodes = build(4, [(0, 1), (0, 3), (1, 2), (3, 2)])
        await send(mesh, nodes[0], message(target=nodes[2].peer_id))
        assert delivered(nodes) == [0, 0, 1, 0]
        assert (nodes[2].peer_id, "duplicate") in mesh.dropped

    async def test_sender_never_gets_its_own_back(self) -> None:
        """A message targeted at the sender, relayed back by a peer, is dropped as seen."""
        mesh, nodes = build(2)
        await send(mesh, nodes[0], message(target=nodes[0].peer_id))
        assert delivered(nodes) == [0, 0]

    async def test_oversize_frames_are_dropped(self) -> None:
        """A frame over 10,000,000 bytes is dropped by the receiving node."""
        mesh, nodes = build(2)
        await send(mesh, nodes[0], message(size=10_000_001))
        assert delivered(nodes) == [0, 0]
        assert (nodes[1].peer_id, "oversize") in mesh.dropped
        await send(mesh, nodes[0], message(size=9_000_000))
        assert delivered(nodes) == [0, 1]

    async def test_stopped_nodes_get_nothing(self) -> None:
        """A stopped node is gone from the mesh."""
        mesh, nodes = build(2)
        nodes[1].state = "stopped"
        await send(mesh, nodes[0], message())
        assert delivered(nodes) == [0, 0]


class TestLinks:
    async def test_link_and_unlink_send_peer_events(self) -> None:
        """Linking sends PEER_UP both ways; unlinking sends PEER_DOWN both ways."""
        mesh, nodes = build(2, [])
        await mesh.link(0, 1)
        await mesh.unlink(0, 1)
        assert nodes[0].events == [("up", nodes[1].peer_id), ("down", nodes[1].peer_id)]
        assert nodes[1].events == [("up", nodes[0].peer_id), ("down", nodes[0].peer_id)]
        await send(mesh, nodes[0], message())
        assert delivered(nodes) == [0, 0]

    async def test_update_reaches_direct_peers(self) -> None:
        """A node's changed gossip is announced with PEER_UPDATED to its direct peers only."""
        mesh, nodes = build(3, [(0, 1), (1, 2)])
        await mesh.announce_update(0)
        assert nodes[1].events == [("updated", nodes[0].peer_id)]
        assert nodes[2].events == []

    async def test_stop_host_tells_its_peers(self) -> None:
        """Stopping a node sends PEER_DOWN to its direct peers and unlinks it."""
        mesh, nodes = build(3, [(0, 1), (1, 2)])

        async def stop() -> None:
            nodes[1].state = "stopped"

        nodes[1].stop = stop  # type: ignore[attr-defined]
        await mesh.stop_host(1)
        assert nodes[0].events == [("down", nodes[1].peer_id)]
        assert nodes[2].events == [("down", nodes[1].peer_id)]
        assert mesh.neighbours(nodes[0]) == []  # type: ignore[arg-type]

    def test_bad_meshes(self) -> None:
        """Duplicate peer ids and links to nowhere are refused."""
        nodes = [Node(1), Node(1)]
        with pytest.raises(HostConfigError, match="distinct"):
            Mesh(nodes)  # type: ignore[arg-type]
        with pytest.raises(HostConfigError, match=r"link \(0, 5\)"):
            Mesh([Node(1), Node(2)], [(0, 5)])  # type: ignore[arg-type]
        with pytest.raises(HostConfigError, match=r"link \(1, 1\)"):
            Mesh([Node(1), Node(2)], [(1, 1)])  # type: ignore[arg-type]


def test_dedup_window_is_120_seconds() -> None:
    """An id is a duplicate for 120 s after it was first seen, then new again."""
    clock = Clock()
    dedup = Dedup(clock)
    assert dedup.first_sight("m1")
    clock.now = 119.9
    assert not dedup.first_sight("m1")
    clock.now = 120.0
    assert dedup.first_sight("m1")
