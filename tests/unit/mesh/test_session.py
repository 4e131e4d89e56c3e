"""The host session against a fake host that speaks the real framing over a socketpair."""

from __future__ import annotations

import asyncio
import json
import socket
import struct
from collections.abc import AsyncIterator

import pytest
from mesh_x402._pb.meshllm.plugin.v1 import plugin_pb2 as pb
from mesh_x402.errors import FrameError
from mesh_x402.mesh.framing import FrameDecoder, encode_frame
from mesh_x402.mesh.manifest import initialize_response
from mesh_x402.mesh.session import HostSession

WAIT = 10.0  # generous: a bound on hangs, not a speed assertion


class FakeHost:
    """The host's end: writes frames, reads the plugin's frames (keepalives counted apart)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.decoder = FrameDecoder()
        self.pending: list[pb.Envelope] = []
        self.keepalives = 0
        self.frames: list[pb.Envelope] = []

    async def send(self, envelope: pb.Envelope) -> None:
        envelope.protocol_version = 2
        envelope.plugin_id = "x402"
        await self.send_raw(encode_frame(envelope))

    async def send_raw(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def request(self, request_id: int, **payload: object) -> None:
        await self.send(pb.Envelope(request_id=request_id, **payload))

    async def _next_frame(self) -> pb.Envelope:
        while not self.pending:
            data = await self.reader.read(65536)
            assert data, "plugin closed the connection"
            self.pending += self.decoder.feed(data)
        frame = self.pending.pop(0)
        self.frames.append(frame)
        return frame

    async def recv(self, *, keepalive: bool = False) -> pb.Envelope:
        """The next frame; keepalives are skipped unless asked for."""

        async def next_wanted() -> pb.Envelope:
            while True:
                frame = await self._next_frame()
                is_keepalive = frame.request_id == 0 and frame.WhichOneof("payload") is None
                if is_keepalive:
                    self.keepalives += 1
                if is_keepalive == keepalive:
                    return frame

        return await asyncio.wait_for(next_wanted(), WAIT)

    def close(self) -> None:
        self.writer.close()


class Link:
    def __init__(self, host: FakeHost, session: HostSession, task: asyncio.Task[None]) -> None:
        self.host = host
        self.session = session
        self.task = task


async def open_link(session: HostSession) -> Link:
    plugin_sock, host_sock = socket.socketpair()
    plugin_reader, plugin_writer = await asyncio.open_connection(sock=plugin_sock)
    host_reader, host_writer = await asyncio.open_connection(sock=host_sock)
    task = asyncio.create_task(session.run(plugin_reader, plugin_writer))
    return Link(FakeHost(host_reader, host_writer), session, task)


@pytest.fixture
async def link() -> AsyncIterator[Link]:
    session = HostSession(initialize_response("x402", "0.1.0"), keepalive_seconds=3600)
    opened = await open_link(session)
    yield opened
    opened.host.close()
    await asyncio.wait_for(asyncio.gather(opened.task, return_exceptions=True), WAIT)


def health(request_id: int) -> dict[str, object]:
    return {"request_id": request_id, "health_request": pb.HealthRequest()}


class TestHandshake:
    async def test_initialize_answered_with_same_id(self, link):
        await link.host.request(
            4,
            initialize_request=pb.InitializeRequest(
                host_protocol_version=2, host_version="0.76.0", mesh_visibility=1
            ),
        )
        reply = await link.host.recv()
        assert reply.request_id == 4
        assert reply.WhichOneof("payload") == "initialize_response"
        init = reply.initialize_response
        assert init.plugin_id == "x402"
        assert init.plugin_protocol_version == 2
        info = json.loads(init.server_info_json)
        assert info["capabilities"] == {"tools": {}}
        assert info["serverInfo"]["name"] == "mesh-x402"
        await asyncio.wait_for(link.session.initialized.wait(), WAIT)

    async def test_every_frame_carries_protocol_and_plugin_id(self, link):
        await link.host.send(pb.Envelope(**health(1)))
        reply = await link.host.recv()
        assert (reply.protocol_version, reply.plugin_id) == (2, "x402")


class TestRequests:
    async def test_twenty_concurrent_health_checks_answered_by_id(self, link):
        data = b"".join(encode_frame(pb.Envelope(**health(i))) for i in range(1, 21))
        await link.host.send_raw(data)
        replies = [await link.host.recv() for _ in range(20)]
        assert sorted(r.request_id for r in replies) == list(range(1, 21))
        assert {r.health_response.status for r in replies} == {pb.HealthResponse.STATUS_OK}

    async def test_health_answers_while_another_request_is_stuck(self, link):
        """Requests run concurrently: a stuck stream negotiation does not hold a health check."""
        release = asyncio.Event()

        async def slow_open(envelope: pb.Envelope) -> pb.Envelope:
            await release.wait()
            return pb.Envelope(open_stream_response=pb.OpenStreamResponse(stream_id="s1"))

        link.session.on_request("open_stream_request", slow_open)
        await link.host.request(2, open_stream_request=pb.OpenStreamRequest(stream_id="s1"))
        await link.host.send(pb.Envelope(**health(3)))
        first = await link.host.recv()
        assert (first.request_id, first.WhichOneof("payload")) == (3, "health_response")
        release.set()
        second = await link.host.recv()
        assert (second.request_id, second.open_stream_response.stream_id) == (2, "s1")

    @pytest.mark.parametrize(
        "payload",
        [
            {"rpc_request": pb.RpcRequest(method="tools/list")},
            {"invoke_service_request": pb.InvokeServiceRequest(service_name="x")},
            {"open_stream_request": pb.OpenStreamRequest(stream_id="s")},
            {},
        ],
    )
    async def test_unknown_request_gets_method_not_found(self, link, payload):
        await link.host.request(11, **payload)
        reply = await link.host.recv()
        assert reply.request_id == 11
        assert reply.error_response.code == -32601

    async def test_payload_from_a_newer_host_gets_method_not_found(self, link):
        """A oneof number we do not know (field 40) is an unknown request, not a crash."""
        body = b"\x08\x02" + b"\x18\x0c" + b"\xc2\x02\x00"  # version 2, request 12, field 40
        await link.host.send_raw(struct.pack("<I", len(body)) + body)
        reply = await link.host.recv()
        assert (reply.request_id, reply.error_response.code) == (12, -32601)

    async def test_unsolicited_unknown_frames_get_no_answer(self, link):
        await link.host.send(pb.Envelope(rpc_notification=pb.RpcNotification(method="x")))
        await link.host.send(pb.Envelope())
        await link.host.send(pb.Envelope(request_id=5, rpc_response=pb.RpcResponse()))
        await link.host.send(pb.Envelope(**health(6)))
        reply = await link.host.recv()
        assert reply.request_id == 6

    async def test_failing_handler_gets_internal_error(self, link):
        async def broken(envelope: pb.Envelope) -> pb.Envelope:
            raise RuntimeError("boom")

        link.session.on_request("invoke_service_request", broken)
        await link.host.request(8, invoke_service_request=pb.InvokeServiceRequest())
        reply = await link.host.recv()
        assert (reply.request_id, reply.error_response.code) == (8, -32603)
        await link.host.send(pb.Envelope(**health(9)))
        assert (await link.host.recv()).request_id == 9

    async def test_shutdown_is_answered_then_the_session_ends(self, link):
        await link.host.request(3, shutdown_request=pb.ShutdownRequest(reason="bye"))
        reply = await link.host.recv()
        assert (reply.request_id, reply.WhichOneof("payload")) == (3, "shutdown_response")
        await asyncio.wait_for(link.task, WAIT)


class TestMessages:
    async def test_events_reach_the_handler_in_order(self, link):
        seen: list[int] = []
        done = asyncio.Event()

        async def on_event(envelope: pb.Envelope) -> None:
            seen.append(envelope.mesh_event.kind)
            if len(seen) == 3:
                done.set()

        link.session.on_message("mesh_event", on_event)
        for kind in (4, 6, 1):
            await link.host.send(pb.Envelope(mesh_event=pb.MeshEvent(kind=kind)))
        await asyncio.wait_for(done.wait(), WAIT)
        assert seen == [4, 6, 1]

    async def test_a_slow_message_handler_does_not_hold_requests(self, link):
        release = asyncio.Event()

        async def stuck(envelope: pb.Envelope) -> None:
            await release.wait()

        link.session.on_message("channel_message", stuck)
        await link.host.send(pb.Envelope(channel_message=pb.ChannelMessage(channel="x402.v1")))
        await link.host.send(pb.Envelope(**health(2)))
        assert (await link.host.recv()).request_id == 2
        release.set()

    async def test_a_failing_message_handler_does_not_end_the_session(self, link):
        async def broken(envelope: pb.Envelope) -> None:
            raise ValueError("bad event")

        link.session.on_message("mesh_event", broken)
        await link.host.send(pb.Envelope(mesh_event=pb.MeshEvent(kind=1)))
        await link.host.send(pb.Envelope(**health(2)))
        assert (await link.host.recv()).request_id == 2


class TestKeepalive:
    async def test_quiet_session_sends_empty_envelopes(self):
        session = HostSession(initialize_response("x402", "0.1.0"), keepalive_seconds=0.05)
        opened = await open_link(session)
        try:
            for _ in range(2):
                frame = await opened.host.recv(keepalive=True)
                assert frame.request_id == 0
                assert frame.plugin_id == "x402"
        finally:
            opened.host.close()
            await asyncio.wait_for(opened.task, WAIT)


class TestEndOfStream:
    async def test_eof_ends_the_session(self, link):
        link.host.writer.write_eof()
        await asyncio.wait_for(link.task, WAIT)

    @pytest.mark.parametrize(
        ("data", "match"),
        [
            (encode_frame(pb.Envelope(**health(1)))[:-1], "ended inside a frame"),
            (struct.pack("<I", 16 * 1024 * 1024 + 1), "over the"),
            (struct.pack("<I", 3) + b"\x0a\xff\xff", "not an Envelope"),
        ],
        ids=["truncated", "oversized", "undecodable"],
    )
    async def test_bad_frame_ends_the_session_with_frame_error(self, link, data, match):
        await link.host.send_raw(data)
        link.host.writer.write_eof()
        with pytest.raises(FrameError, match=match):
            await asyncio.wait_for(link.task, WAIT)
