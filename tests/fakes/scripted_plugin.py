"""A tiny scripted mesh-llm plugin for testing the host double itself.

Run as a script by the double (`python scripted_plugin.py`). It speaks the
real framing, answers initialize, health, invoke and stream requests, sends
a keepalive frame every FAKE_KEEPALIVE seconds, and writes what it observes
as JSON lines to FAKE_RECORD so a test can check what the plugin saw.

Environment:
    FAKE_RECORD      JSONL file of observations (one process at a time appends)
    FAKE_BEHAVIOUR   comma-separated flags; a flag `first:X` applies X on the
                     first spawn only (the respawned process behaves). Flags:
                     slow_connect, wrong_id, bad_server_info, disable,
                     no_init_answer, unhealthy, silent, exit_after_init,
                     huge_head, tcp_stream, refuse_stream, extra_capability,
                     split_frames, foreign_id
    FAKE_CONNECT_DELAY  seconds slow_connect waits (default 3)
    FAKE_KEEPALIVE   seconds between keepalive frames (default 1)
    FAKE_CHANNELS    declared channels, comma-separated (default "x402.v1")
    FAKE_SUBSCRIBE   subscribed event kinds as numbers (default all six)

Host RpcRequests it understands (so a test can make it act):
    send_channel {channel, target?, body, repeat?, plugin_id?}  send a ChannelMessage
    hang {}                                            never answer
    hang_first {}                                      never answer on the first spawn
    ask_host {}                                        send the host an RpcRequest (reply recorded)
    bad_frame {}                                       write an oversized frame prefix
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import tempfile
from pathlib import Path

from google.protobuf import json_format
from mesh_x402._pb.meshllm.plugin.v1 import plugin_pb2 as pb
from mesh_x402.mesh.framing import FrameDecoder, encode_frame

RECORD = os.environ.get("FAKE_RECORD", "")
ASK_ID = 1_000_000  # request id of the plugin's own RpcRequest to the host


def record(kind: str, **fields: object) -> None:
    if not RECORD:
        return
    line = json.dumps({"kind": kind, "pid": os.getpid(), **fields})
    with open(RECORD, "a", encoding="utf-8") as handle:
        handle.write(line + "\n")


def remove_socket(folder: str, path: str) -> None:
    Path(path).unlink(missing_ok=True)
    Path(folder).rmdir()


def path_exists(path: str) -> bool:
    return Path(path).exists()


def spawn_index() -> int:
    if not RECORD or not Path(RECORD).exists():
        return 0
    lines = Path(RECORD).read_text(encoding="utf-8").splitlines()
    return sum(1 for line in lines if json.loads(line)["kind"] == "spawn")


def behaviours(index: int) -> set[str]:
    flags: set[str] = set()
    for flag in filter(None, os.environ.get("FAKE_BEHAVIOUR", "").split(",")):
        if flag.startswith("first:"):
            if index == 0:
                flags.add(flag.removeprefix("first:"))
        else:
            flags.add(flag)
    return flags


def manifest() -> pb.PluginManifest:
    channels = [c for c in os.environ.get("FAKE_CHANNELS", "x402.v1").split(",") if c]
    kinds = os.environ.get("FAKE_SUBSCRIBE", "1,2,3,4,5,6").split(",")
    streamed = pb.HTTP_BODY_MODE_STREAMED
    buffered = pb.HTTP_BODY_MODE_BUFFERED
    return pb.PluginManifest(
        capabilities=["fake.v1"],
        mesh_channels=[pb.MeshChannelManifest(name=name) for name in channels],
        mesh_event_subscriptions=[
            pb.MeshEventSubscription(kind=int(kind)) for kind in kinds if kind
        ],
        http_bindings=[
            pb.HttpBindingManifest(
                binding_id="echo",
                method=pb.HTTP_METHOD_POST,
                path="/echo",
                request_body_mode=streamed,
                response_body_mode=streamed,
            ),
            pb.HttpBindingManifest(
                binding_id="echo-get",
                method=pb.HTTP_METHOD_GET,
                path="/echo",
                request_body_mode=buffered,
                response_body_mode=streamed,
            ),
            pb.HttpBindingManifest(
                binding_id="op",
                method=pb.HTTP_METHOD_POST,
                path="/op",
                operation_name="echo-op",
                request_body_mode=buffered,
                response_body_mode=buffered,
            ),
        ],
    )


class Plugin:
    def __init__(self, index: int, flags: set[str]) -> None:
        self.index = index
        self.flags = flags
        self.name = os.environ["MESH_LLM_PLUGIN_NAME"]
        self.endpoint = os.environ["MESH_LLM_PLUGIN_ENDPOINT"]
        self.writer: asyncio.StreamWriter | None = None
        self.tasks: set[asyncio.Task[None]] = set()

    async def send(self, envelope: pb.Envelope) -> None:
        assert self.writer is not None
        frame = encode_frame(envelope)
        if "split_frames" in self.flags and len(frame) > 4:
            # What a careless plugin does: prefix and body in two writes.
            self.writer.write(frame[:4])
            await self.writer.drain()
            await asyncio.sleep(0.05)
            frame = frame[4:]
        self.writer.write(frame)
        await self.writer.drain()

    async def reply(self, request: pb.Envelope, **payload: object) -> None:
        envelope = pb.Envelope(protocol_version=2, request_id=request.request_id)
        if "foreign_id" in self.flags and "health_response" in payload:
            envelope.plugin_id = "someone-else"
        for name, message in payload.items():
            getattr(envelope, name).CopyFrom(message)
        await self.send(envelope)

    async def run(self) -> None:
        if "slow_connect" in self.flags:
            await asyncio.sleep(float(os.environ.get("FAKE_CONNECT_DELAY", "3")))
        reader, self.writer = await asyncio.open_unix_connection(self.endpoint)
        decoder = FrameDecoder()
        while True:
            data = await reader.read(65536)
            if not data:
                record("eof")
                return
            for envelope in decoder.feed(data):
                await self.handle(envelope)

    async def keepalive(self) -> None:
        interval = float(os.environ.get("FAKE_KEEPALIVE", "1"))
        while True:
            await asyncio.sleep(interval)
            await self.send(pb.Envelope())

    async def handle(self, envelope: pb.Envelope) -> None:
        payload = envelope.WhichOneof("payload")
        if payload not in {"mesh_event", "channel_message"}:
            record("request", id=envelope.request_id, payload=payload)
        if payload == "initialize_request":
            await self.initialize(envelope)
        elif payload == "health_request":
            status = pb.HealthResponse.STATUS_OK
            if "unhealthy" in self.flags:
                status = pb.HealthResponse.STATUS_DEGRADED
            await self.reply(envelope, health_response=pb.HealthResponse(status=status))
        elif payload == "mesh_event":
            event = envelope.mesh_event
            record(
                "event",
                event_kind=event.kind,
                peer_id=event.peer.peer_id,
                local_peer_id=event.local_peer_id,
                mesh_id=event.mesh_id,
            )
        elif payload == "channel_message":
            message = envelope.channel_message
            record(
                "channel",
                channel=message.channel,
                source=message.source_peer_id,
                target=message.target_peer_id,
                body=message.body.decode(),
                request_id=envelope.request_id,
                plugin_id=envelope.plugin_id,
            )
        elif payload == "rpc_request":
            await self.rpc(envelope)
        elif envelope.request_id == ASK_ID:
            record("host_reply", reply=json.loads(json_format.MessageToJson(envelope)))
        elif payload == "invoke_service_request":
            invoke = envelope.invoke_service_request
            output = json.dumps(
                {"operation": invoke.service_name, "input": json.loads(invoke.input_json)}
            )
            await self.reply(
                envelope, invoke_service_response=pb.InvokeServiceResponse(output_json=output)
            )
        elif payload == "open_stream_request":
            await self.open_stream(envelope)
        else:
            error = pb.ErrorResponse(code=-32601, message=f"unknown request {payload}")
            await self.reply(envelope, error_response=error)

    async def initialize(self, envelope: pb.Envelope) -> None:
        request = envelope.initialize_request
        record(
            "spawn_env",
            env={k: v for k, v in os.environ.items() if k.startswith(("MESH_LLM_", "FAKE_EXTRA"))},
            socket_exists=path_exists(self.endpoint),
            host_protocol_version=request.host_protocol_version,
            mesh_visibility=request.mesh_visibility,
        )
        if "no_init_answer" in self.flags:
            return
        if "disable" in self.flags:
            error = pb.ErrorResponse(code=-32010, message="disabled by config")
            await self.reply(envelope, error_response=error)
            return
        capabilities: dict[str, object] = {"tools": {}}
        if "extra_capability" in self.flags:
            capabilities["logging"] = {}
        info = {
            "protocolVersion": "2025-03-26",
            "capabilities": capabilities,
            "serverInfo": {"name": "scripted", "version": "0.0.1"},
        }
        response = pb.InitializeResponse(
            plugin_id="wrong-name" if "wrong_id" in self.flags else self.name,
            plugin_protocol_version=2,
            plugin_version="0.0.1",
            server_info_json="{not json" if "bad_server_info" in self.flags else json.dumps(info),
            manifest=manifest(),
        )
        await self.reply(envelope, initialize_response=response)
        if "silent" not in self.flags:
            self.start(self.keepalive())
        if "exit_after_init" in self.flags:
            self.start(self.exit_soon())

    async def exit_soon(self) -> None:
        await asyncio.sleep(0.2)
        record("exiting")
        os._exit(3)

    async def rpc(self, envelope: pb.Envelope) -> None:
        request = envelope.rpc_request
        params = json.loads(request.params_json or "{}")
        if request.method == "hang" or (request.method == "hang_first" and self.index == 0):
            return
        if request.method == "bad_frame":
            assert self.writer is not None
            self.writer.write((17 * 1024 * 1024).to_bytes(4, "little"))
            await self.writer.drain()
            return
        if request.method == "ask_host":
            ask = pb.Envelope(request_id=ASK_ID, rpc_request=pb.RpcRequest(method="peers/list"))
            await self.send(ask)
            await self.reply(envelope, rpc_response=pb.RpcResponse(result_json="{}"))
            return
        if request.method == "send_channel":
            message = pb.ChannelMessage(
                channel=params["channel"],
                target_peer_id=params.get("target", ""),
                content_type="text/plain",
                body=params["body"].encode() * params.get("repeat", 1),
            )
            out = pb.Envelope(
                protocol_version=2, plugin_id=params.get("plugin_id", ""), channel_message=message
            )
            await self.send(out)
            await self.reply(envelope, rpc_response=pb.RpcResponse(result_json='{"sent":true}'))
            return
        error = pb.ErrorResponse(code=-32601, message=f"unknown method {request.method}")
        await self.reply(envelope, error_response=error)

    async def open_stream(self, envelope: pb.Envelope) -> None:
        request = envelope.open_stream_request
        opened = {
            "stream_id": request.stream_id,
            "purpose": request.purpose,
            "mode": request.mode,
            "bidirectional": request.bidirectional,
            "content_type": request.content_type,
            "metadata": json.loads(request.metadata_json),
            "expected_bytes": request.expected_bytes,
            "idle_timeout_ms": request.idle_timeout_ms,
        }
        if "refuse_stream" in self.flags:
            response = pb.OpenStreamResponse(
                stream_id=request.stream_id, accepted=False, message="no"
            )
            await self.reply(envelope, open_stream_response=response)
            return
        if "tcp_stream" in self.flags:
            response = pb.OpenStreamResponse(
                stream_id=request.stream_id,
                accepted=True,
                transport_kind=pb.STREAM_TRANSPORT_KIND_TCP,
                endpoint="127.0.0.1:9",
            )
            await self.reply(envelope, open_stream_response=response)
            return
        # One short-lived socket per stream, in its own folder under /tmp (a
        # test's tmp_path can be too long for a socket); both go once served.
        folder = tempfile.mkdtemp(prefix="fk-", dir="/tmp")
        path = os.path.join(folder, "s.sock")

        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            raw = await reader.read(-1)  # the host half-closes after the request
            record("stream", opened=opened, raw=raw.decode("latin-1"))
            body = json.dumps({"opened": opened, "raw": raw.decode("latin-1")}).encode()
            status = "200 OK"
            for line in raw.split(b"\r\n"):
                if line.lower().startswith(b"x-fake-status:"):
                    status = line.split(b":", 1)[1].strip().decode() + " Fake"
            headers = [
                f"HTTP/1.1 {status}",
                "Content-Type: application/json",
                f"Content-Length: {len(body)}",
                "x-request-id: set-by-plugin",
                "Connection: close",
            ]
            if "huge_head" in self.flags:
                headers += [f"X-Pad-{i}: {i}" for i in range(70)]
            writer.write(("\r\n".join(headers) + "\r\n\r\n").encode() + body)
            await writer.drain()
            writer.close()
            server.close()
            remove_socket(folder, path)

        server = await asyncio.start_unix_server(serve, path)
        response = pb.OpenStreamResponse(
            stream_id=request.stream_id,
            accepted=True,
            transport_kind=pb.STREAM_TRANSPORT_KIND_UNIX_SOCKET,
            endpoint=path,
        )
        await self.reply(envelope, open_stream_response=response)

    def start(self, coro: object) -> None:
        task = asyncio.ensure_future(coro)  # type: ignore[arg-type]
        self.tasks.add(task)


def main() -> None:
    index = spawn_index()
    record("spawn", index=index)
    print(f"scripted plugin {os.getpid()} started", file=sys.stderr, flush=True)
    plugin = Plugin(index, behaviours(index))
    asyncio.run(plugin.run())


if __name__ == "__main__":
    main()
    sys.exit(0)
