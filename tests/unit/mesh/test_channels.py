"""The x402.v1 channel API, streams negotiation, and the hello on PEER_UP."""

from __future__ import annotations

import asyncio
import json

import pytest
from mesh_x402._pb.meshllm.plugin.v1 import plugin_pb2 as pb
from mesh_x402.mesh.channels import MAX_BODY_BYTES, Channel, ChannelMessage
from mesh_x402.mesh.presence import Presence
from mesh_x402.mesh.streams import StreamNegotiator
from mesh_x402.mesh.view import MeshView

PEER_B = "bb" * 32


class Outbox:
    def __init__(self) -> None:
        self.sent: list[pb.Envelope] = []

    async def __call__(self, envelope: pb.Envelope) -> None:
        self.sent.append(envelope)


class TestChannel:
    async def test_send_targets_one_peer_on_our_channel(self):
        outbox = Outbox()
        await Channel(outbox).send(b'{"a":1}', kind="claim", target=PEER_B, correlation_id="c1")
        (envelope,) = outbox.sent
        assert envelope.request_id == 0
        message = envelope.channel_message
        assert (message.channel, message.target_peer_id, message.message_kind) == (
            "x402.v1",
            PEER_B,
            "claim",
        )
        assert (message.body, message.correlation_id) == (b'{"a":1}', "c1")
        assert message.source_peer_id == ""  # the host fills it in

    async def test_send_without_target_is_a_broadcast(self):
        outbox = Outbox()
        await Channel(outbox).send(b"x", kind="k")
        assert outbox.sent[0].channel_message.target_peer_id == ""

    async def test_oversized_body_is_refused_before_sending(self):
        outbox = Outbox()
        with pytest.raises(ValueError, match="over the"):
            await Channel(outbox).send(b"\0" * (MAX_BODY_BYTES + 1), kind="k")
        assert outbox.sent == []

    async def test_delivery_reaches_every_receiver(self):
        channel = Channel(Outbox())
        got: list[ChannelMessage] = []

        async def broken(message: ChannelMessage) -> None:
            raise RuntimeError("receiver bug")

        async def keep(message: ChannelMessage) -> None:
            got.append(message)

        channel.subscribe(broken)
        channel.subscribe(keep)
        await channel.deliver(
            pb.ChannelMessage(
                channel="x402.v1", source_peer_id=PEER_B, body=b"hi", message_kind="hello"
            )
        )
        assert [(m.source_peer_id, m.body, m.kind) for m in got] == [(PEER_B, b"hi", "hello")]

    @pytest.mark.parametrize(
        "message",
        [
            pb.ChannelMessage(channel="blackboard.v1", body=b"x"),
            pb.ChannelMessage(channel="x402.v1", body=b"\0" * (MAX_BODY_BYTES + 1)),
        ],
        ids=["other-channel", "too-large"],
    )
    async def test_foreign_or_oversized_frames_are_dropped(self, message):
        channel = Channel(Outbox())
        got: list[ChannelMessage] = []

        async def keep(received: ChannelMessage) -> None:
            got.append(received)

        channel.subscribe(keep)
        await channel.deliver(message)
        assert got == []


class TestPresence:
    async def test_peer_up_sends_hello_to_that_peer(self, tmp_path):
        outbox = Outbox()
        view = MeshView(tmp_path)
        event = pb.MeshEvent(kind=1, local_peer_id="aa" * 32, peer=pb.MeshPeer(peer_id=PEER_B))
        view.apply(event)
        await Presence(Channel(outbox), view, "0.1.0").on_event(event)
        (envelope,) = outbox.sent
        assert envelope.channel_message.target_peer_id == PEER_B
        assert envelope.channel_message.message_kind == "hello"
        body = json.loads(envelope.channel_message.body)
        assert body == {"peer_id": "aa" * 32, "version": "0.1.0"}

    @pytest.mark.parametrize("kind", [2, 3, 4, 5, 6])
    async def test_other_events_send_nothing(self, tmp_path, kind):
        outbox = Outbox()
        event = pb.MeshEvent(kind=kind, peer=pb.MeshPeer(peer_id=PEER_B))
        await Presence(Channel(outbox), MeshView(tmp_path), "0.1.0").on_event(event)
        assert outbox.sent == []


def open_request(**overrides: object) -> pb.OpenStreamRequest:
    fields: dict[str, object] = {
        "stream_id": "http-1-1",
        "purpose": pb.STREAM_PURPOSE_GENERIC,
        "mode": pb.STREAM_MODE_HTTP1,
        "bidirectional": True,
        "content_type": "application/http",
        "metadata_json": json.dumps(
            {"binding_id": "chat-completions", "method": "POST", "path": "/v1/chat/completions"}
        ),
        "expected_bytes": 120,
        "idle_timeout_ms": 30000,
    }
    fields.update(overrides)
    return pb.OpenStreamRequest(**fields)


class TestStreams:
    async def test_declared_binding_gets_our_unix_socket(self):
        negotiator = StreamNegotiator()
        negotiator.set_endpoint("/tmp/x/http.sock")
        reply = await negotiator.open(open_request())
        assert reply.accepted is True
        assert reply.stream_id == "http-1-1"
        assert reply.transport_kind == pb.STREAM_TRANSPORT_KIND_UNIX_SOCKET
        assert reply.endpoint == "/tmp/x/http.sock"

    async def test_request_waits_for_the_socket(self):
        negotiator = StreamNegotiator()
        pending = asyncio.create_task(negotiator.open(open_request()))
        await asyncio.sleep(0)
        assert not pending.done()
        negotiator.set_endpoint("/tmp/x/http.sock")
        assert (await asyncio.wait_for(pending, 10)).accepted is True

    async def test_socket_that_never_listens_is_a_refusal(self):
        reply = await StreamNegotiator(ready_timeout=0.01).open(open_request())
        assert reply.accepted is False
        assert "not listening" in reply.message

    @pytest.mark.parametrize(
        ("overrides", "reason"),
        [
            ({"metadata_json": json.dumps({"binding_id": "other"})}, "no streamed binding"),
            ({"metadata_json": "{"}, "not JSON"),
            ({"metadata_json": "[]"}, "no streamed binding"),
            ({"mode": pb.STREAM_MODE_RAW_BYTES}, "only HTTP1"),
        ],
    )
    async def test_other_streams_are_refused_with_a_reason(self, overrides, reason):
        negotiator = StreamNegotiator()
        negotiator.set_endpoint("/tmp/x/http.sock")
        reply = await negotiator.open(open_request(**overrides))
        assert reply.accepted is False
        assert reason in reply.message
        assert not reply.HasField("endpoint")

    async def test_request_without_metadata_is_refused(self):
        negotiator = StreamNegotiator()
        negotiator.set_endpoint("/tmp/x/http.sock")
        request = open_request()
        request.ClearField("metadata_json")
        assert (await negotiator.open(request)).accepted is False
