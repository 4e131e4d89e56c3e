"""Session: reply matching by id, keepalives, unsolicited dispatch, and why it ends."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from mesh_x402._pb.meshllm.plugin.v1 import plugin_pb2 as pb
from mesh_x402.hostdouble import PluginUnavailableError
from mesh_x402.hostdouble.session import END_BAD_FRAME, END_EOF, END_IDLE, Session
from mesh_x402.mesh.framing import FrameDecoder, encode_frame


@dataclass
class Pair:
    session: Session
    plugin_reader: asyncio.StreamReader
    plugin_writer: asyncio.StreamWriter
    unsolicited: list[pb.Envelope] = field(default_factory=list)

    async def next_from_host(self) -> pb.Envelope:
        decoder = FrameDecoder()
        while True:
            envelopes = decoder.feed(await self.plugin_reader.read(1))
            if envelopes:
                return envelopes[0]


async def make_pair(
    *,
    idle: float | None = None,
    body: float = 5.0,
    mesh_streams: bool = True,
    violations: list[str] | None = None,
) -> Pair:
    host_sock, plugin_sock = socket.socketpair()
    reader, writer = await asyncio.open_unix_connection(sock=host_sock)
    plugin_reader, plugin_writer = await asyncio.open_unix_connection(sock=plugin_sock)
    unsolicited: list[pb.Envelope] = []

    async def on_message(_session: Session, envelope: pb.Envelope) -> None:
        unsolicited.append(envelope)

    session = Session(
        reader,
        writer,
        on_message=on_message,
        idle_timeout=idle,
        body_timeout=body,
        accepts_mesh_streams=mesh_streams,
        plugin_name="x402",
        on_violation=None if violations is None else violations.append,
    )
    return Pair(session, plugin_reader, plugin_writer, unsolicited)


Maker = Callable[..., Awaitable[Pair]]


@pytest.fixture
async def make() -> AsyncIterator[Maker]:
    """Builds session pairs and closes both ends of each afterwards."""
    made: list[Pair] = []

    async def build(**options: Any) -> Pair:
        built = await make_pair(**options)
        made.append(built)
        return built

    yield build
    for built in made:
        built.plugin_writer.close()
        await built.session.close()


@pytest.fixture
async def pair(make: Maker) -> Pair:
    return await make()


async def test_replies_matched_by_id_in_any_order(pair: Pair) -> None:
    """Two requests in flight; replies in reverse order each reach their caller."""
    runner = asyncio.ensure_future(pair.session.run())
    first = asyncio.ensure_future(
        pair.session.call(pb.Envelope(request_id=1, health_request=pb.HealthRequest()), 5)
    )
    second = asyncio.ensure_future(
        pair.session.call(pb.Envelope(request_id=2, health_request=pb.HealthRequest()), 5)
    )
    got = {(await pair.next_from_host()).request_id, (await pair.next_from_host()).request_id}
    assert got == {1, 2}
    for request_id, status in (
        (2, pb.HealthResponse.STATUS_DEGRADED),
        (1, pb.HealthResponse.STATUS_OK),
    ):
        reply = pb.Envelope(request_id=request_id, health_response=pb.HealthResponse(status=status))
        pair.plugin_writer.write(encode_frame(reply))
    assert (await first).health_response.status == pb.HealthResponse.STATUS_OK
    assert (await second).health_response.status == pb.HealthResponse.STATUS_DEGRADED
    pair.plugin_writer.close()
    assert await runner == END_EOF


async def test_keepalive_and_unsolicited(pair: Pair) -> None:
    """Empty id-0 envelopes are keepalives; channel, rpc and notifications go to the handler."""
    runner = asyncio.ensure_future(pair.session.run())
    frames = [
        pb.Envelope(),
        pb.Envelope(channel_message=pb.ChannelMessage(channel="x402.v1")),
        pb.Envelope(request_id=9, rpc_request=pb.RpcRequest(method="m")),
        pb.Envelope(rpc_notification=pb.RpcNotification(method="n")),
        pb.Envelope(bulk_transfer_message=pb.BulkTransferMessage(channel="c")),
        pb.Envelope(request_id=77, health_response=pb.HealthResponse()),
        pb.Envelope(),
    ]
    pair.plugin_writer.write(b"".join(encode_frame(frame) for frame in frames))
    pair.plugin_writer.close()
    assert await runner == END_EOF
    assert pair.session.keepalives == 2
    assert [e.WhichOneof("payload") for e in pair.unsolicited] == [
        "channel_message",
        "rpc_request",
        "rpc_notification",
        "bulk_transfer_message",
    ]
    assert [e.request_id for e in pair.session.stray_replies] == [77]


async def test_066_takes_mesh_stream_request_as_a_reply(make: Maker) -> None:
    """0.66 knows no OpenMeshStreamRequest: it is an unmatched reply there, a request on 0.76."""
    for mesh_streams, unsolicited in ((True, 1), (False, 0)):
        made = await make(mesh_streams=mesh_streams)
        runner = asyncio.ensure_future(made.session.run())
        frame = pb.Envelope(open_mesh_stream_request=pb.OpenMeshStreamRequest(stream_id="s"))
        made.plugin_writer.write(encode_frame(frame))
        made.plugin_writer.close()
        await runner
        assert len(made.unsolicited) == unsolicited
        assert len(made.session.stray_replies) == 1 - unsolicited


async def test_idle_timeout(make: Maker) -> None:
    """No frame within the idle timeout ends the session as idle."""
    made = await make(idle=0.2)
    assert await made.session.run() == END_IDLE
    assert made.session.closed


async def test_body_timeout(make: Maker) -> None:
    """A frame whose body stalls ends the session as a bad frame."""
    made = await make(idle=10, body=0.2)
    made.plugin_writer.write((100).to_bytes(4, "little") + b"abc")
    assert await made.session.run() == END_BAD_FRAME
    assert "not complete" in made.session.end_detail


@pytest.mark.parametrize(
    ("data", "detail"),
    [
        ((17 * 1024 * 1024).to_bytes(4, "little"), "over the"),
        ((3).to_bytes(4, "little") + b"\xff\xff\xff", "not an Envelope"),
        ((10).to_bytes(4, "little") + b"abc", "ended inside a frame"),
    ],
)
async def test_bad_frames(make: Maker, data: bytes, detail: str) -> None:
    """Oversized, undecodable or truncated frames end the session as bad frames."""
    made = await make()
    made.plugin_writer.write(data)
    made.plugin_writer.close()
    assert await made.session.run() == END_BAD_FRAME
    assert detail in made.session.end_detail


async def test_pending_calls_fail_when_the_connection_ends(pair: Pair) -> None:
    """A request waiting for a reply fails at once when the plugin goes away."""
    runner = asyncio.ensure_future(pair.session.run())
    call = asyncio.ensure_future(
        pair.session.call(pb.Envelope(request_id=5, health_request=pb.HealthRequest()), 30)
    )
    await pair.next_from_host()
    pair.plugin_writer.close()
    with pytest.raises(PluginUnavailableError):
        await call
    await runner
    with pytest.raises(PluginUnavailableError):
        await pair.session.send(pb.Envelope())


async def test_call_times_out(pair: Pair) -> None:
    """An unanswered call raises TimeoutError for the host to act on."""
    runner = asyncio.ensure_future(pair.session.run())
    with pytest.raises(asyncio.TimeoutError):
        await pair.session.call(pb.Envelope(request_id=5, health_request=pb.HealthRequest()), 0.1)
    pair.plugin_writer.close()
    await runner


async def test_prefix_written_alone_is_flagged(make: Maker) -> None:
    """A length prefix that arrives without its body is flagged; the frame still decodes."""
    violations: list[str] = []
    made = await make(violations=violations)
    runner = asyncio.ensure_future(made.session.run())
    frame = encode_frame(pb.Envelope(rpc_notification=pb.RpcNotification(method="n")))
    made.plugin_writer.write(frame[:4])
    await made.plugin_writer.drain()
    for _ in range(1000):  # until the session has read the lone prefix
        if violations:
            break
        await asyncio.sleep(0.001)
    made.plugin_writer.write(frame[4:])
    made.plugin_writer.close()
    assert await runner == END_EOF
    assert violations == ["split_frame"]
    assert [e.rpc_notification.method for e in made.unsolicited] == ["n"]


async def test_whole_frames_and_own_name_are_fine(make: Maker) -> None:
    """Frames written whole, with an empty plugin_id or the configured one, raise nothing;
    another plugin's name is flagged."""
    violations: list[str] = []
    made = await make(violations=violations)
    runner = asyncio.ensure_future(made.session.run())
    frames = [pb.Envelope(plugin_id=name) for name in ("", "x402", "other")]
    made.plugin_writer.write(b"".join(encode_frame(frame) for frame in frames))
    made.plugin_writer.close()
    await runner
    assert violations == ["foreign_plugin_id"]
