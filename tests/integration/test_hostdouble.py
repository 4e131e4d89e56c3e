"""The host double itself, checked against the spec sheet with a scripted plugin.

`tests/fakes/scripted_plugin.py` is a minimal plugin whose misbehaviour is
chosen by environment variables and which writes what it observed to a
JSON-lines file. Each test runs real processes over real Unix sockets and
the double's real 127.0.0.1 management listener. Where a test needs the
plugin to have processed earlier frames, it sends a health request and waits
for the answer: the plugin handles frames in order, so that is a barrier,
not a timing guess.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import sys
import tempfile
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from mesh_x402._pb.meshllm.plugin.v1 import plugin_pb2 as pb
from mesh_x402.hostdouble import (
    Host,
    HostConfig,
    Mesh,
    PluginStartError,
    PluginUnavailableError,
    RequestTimeoutError,
)

pytestmark = pytest.mark.integration

PLUGIN = Path(__file__).resolve().parent.parent / "fakes" / "scripted_plugin.py"
WAIT = 30.0  # a bound on hangs, never a speed assertion
Kind = pb.MeshEvent


class Node:
    """One host double with its scripted plugin and the plugin's observation file."""

    def __init__(self, host: Host, record: Path) -> None:
        self.host = host
        self.record = record

    def observed(self, kind: str | None = None) -> list[dict[str, Any]]:
        if not self.record.exists():
            return []
        lines = [json.loads(line) for line in self.record.read_text().splitlines()]
        return [line for line in lines if kind is None or line["kind"] == kind]

    async def barrier(self) -> None:
        """Returns once the plugin has handled every frame sent before."""
        await self.host.health()

    async def rpc(self, method: str, **params: Any) -> pb.Envelope:
        request = pb.RpcRequest(method=method, params_json=json.dumps(params))
        return await self.host.request("rpc_request", request)


MakeNode = Callable[..., Awaitable[Node]]


def config_for(
    tmp_path: Path,
    label: str,
    *,
    behaviour: str = "",
    channels: str = "x402.v1",
    plugin_env: dict[str, str] | None = None,
    **overrides: Any,
) -> tuple[HostConfig, Path]:
    folder = tmp_path / label
    folder.mkdir()
    record = folder / "observed.jsonl"
    env = {"FAKE_RECORD": str(record), "FAKE_BEHAVIOUR": behaviour, "FAKE_CHANNELS": channels}
    env.update(plugin_env or {})
    fields: dict[str, Any] = {
        "plugin_name": "fake",
        "command": [sys.executable, str(PLUGIN)],
        "home": folder / "home",
        "env": env,
        "stderr_path": folder / "plugin.log",
        "health_interval": 60.0,
    }
    fields.update(overrides)
    return HostConfig(**fields), record


@pytest.fixture
async def make_node(tmp_path: Path) -> AsyncIterator[MakeNode]:
    """Builds (and by default starts) nodes; stops every one at the end."""
    hosts: list[Host] = []
    count = 0

    async def build(*, start: bool = True, **options: Any) -> Node:
        nonlocal count
        count += 1
        config, record = config_for(tmp_path, f"n{count}", **options)
        host = Host(config)
        hosts.append(host)
        if start:
            await asyncio.wait_for(host.start(), WAIT)
        return Node(host, record)

    yield build
    for host in hosts:
        await host.stop()


# -- process, socket, environment ----------------------------------------------


@pytest.fixture
def short_home() -> Iterator[Path]:
    """A home short enough that the socket path stays under 107 bytes."""
    home = Path(tempfile.mkdtemp(prefix="hd-", dir="/tmp"))
    yield home
    shutil.rmtree(home, ignore_errors=True)


async def test_environment_socket_and_stderr(make_node: MakeNode, short_home: Path) -> None:
    """The plugin gets the three variables plus inherited and configured ones; the
    socket path has mesh-llm's shape and is deleted once accepted; stderr goes to the file."""
    node = await make_node(home=short_home, plugin_env={"FAKE_EXTRA": "from-config"})
    host = node.host
    assert host.state == "running"
    (seen,) = node.observed("spawn_env")
    env = seen["env"]
    endpoint = Path(env["MESH_LLM_PLUGIN_ENDPOINT"])
    assert endpoint.parent == host.config.home / "run" / "plugins"
    assert re.fullmatch(r"p\d+-[0-9a-f]{8}-fake\.sock", endpoint.name)
    assert env["MESH_LLM_PLUGIN_TRANSPORT"] == "unix"
    assert env["MESH_LLM_PLUGIN_NAME"] == "fake"
    assert env["FAKE_EXTRA"] == "from-config"
    assert "MESH_LLM_PLUGIN_WEB_UI_DIR" not in env
    assert seen["socket_exists"] is False
    assert not await asyncio.to_thread(endpoint.exists)
    assert seen["host_protocol_version"] == 2
    assert seen["mesh_visibility"] == pb.MESH_VISIBILITY_PRIVATE
    assert f"scripted plugin {host.plugin_pid} started" in host.config.stderr_path.read_text()


async def test_long_home_puts_socket_in_tmpdir(make_node: MakeNode, tmp_path: Path) -> None:
    """A socket path over 107 bytes would not bind, so it lives in $TMPDIR; the plugin connects."""
    node = await make_node(home=tmp_path / ("h" * 110))
    assert node.host.state == "running"
    (seen,) = node.observed("spawn_env")
    endpoint = Path(seen["env"]["MESH_LLM_PLUGIN_ENDPOINT"])
    assert endpoint.parent == Path(tempfile.gettempdir())
    assert not await asyncio.to_thread(endpoint.exists)


async def test_handshake_is_stored(make_node: MakeNode) -> None:
    """The host keeps the plugin's InitializeResponse and manifest."""
    host = (await make_node()).host
    assert host.initialize_response is not None
    assert host.initialize_response.plugin_id == "fake"
    assert host.manifest is not None
    assert [b.binding_id for b in host.manifest.http_bindings] == ["echo", "echo-get", "op"]
    assert host.event_names()[:4] == ["spawned", "connected", "initialized", "snapshot"]
    await host.health()
    assert not [name for name in host.event_names() if name.startswith("violation:")]


@pytest.mark.parametrize(
    ("behaviour", "violation"),
    [("split_frames", "violation:split_frame"), ("foreign_id", "violation:foreign_plugin_id")],
)
async def test_unforgiven_habits_are_flagged(
    make_node: MakeNode, behaviour: str, violation: str
) -> None:
    """A prefix written apart from its body, or a frame naming another plugin, is flagged
    (the double still works, so the test that caused it can say what went wrong)."""
    node = await make_node(behaviour=behaviour)
    assert (await node.host.health()).status == pb.HealthResponse.STATUS_OK
    assert violation in node.host.event_names()


# -- start failures --------------------------------------------------------------


@pytest.mark.parametrize(
    ("behaviour", "options", "reason"),
    [
        ("wrong_id", {}, "does not match the configured name"),
        ("bad_server_info", {}, "server_info_json is not JSON"),
        ("slow_connect", {"connect_timeout": 0.5}, "did not connect within 0.5 s"),
        ("no_init_answer", {"init_timeout": 0.5}, "did not answer initialize within 0.5 s"),
    ],
)
async def test_076_start_failure_marks_error(
    make_node: MakeNode, behaviour: str, options: dict[str, Any], reason: str
) -> None:
    """0.76: the node runs on, the plugin is "error" and never retried."""
    node = await make_node(behaviour=behaviour, **options)
    host = node.host
    assert host.state == "error"
    assert host.error is not None
    assert reason in host.error
    assert host.spawn_count == 1
    assert "start_failed" in host.event_names()
    with pytest.raises(PluginUnavailableError, match="error"):
        await host.health()
    async with httpx.AsyncClient() as client:
        response = await client.post(f"{host.management_url}/api/plugins/fake/http/echo")
    assert response.status_code == 404


async def test_066_start_failure_raises(make_node: MakeNode) -> None:
    """0.66: a plugin that fails to start fails the node's start."""
    node = await make_node(start=False, behaviour="wrong_id", generation="0.66")
    with pytest.raises(PluginStartError, match="does not match"):
        await node.host.start()
    assert node.host.state == "stopped"


async def test_plugin_that_exits_before_connecting(make_node: MakeNode) -> None:
    """An executable that exits at once fails the start with its status, not a 10 s wait."""
    node = await make_node(command=[sys.executable, "-c", "raise SystemExit(4)"])
    assert node.host.state == "error"
    assert "exited with status 4" in (node.host.error or "")


async def test_opt_out_leaves_plugin_disabled(make_node: MakeNode) -> None:
    """-32010 at initialize: the plugin is left disabled, not an error."""
    node = await make_node(behaviour="disable")
    assert node.host.state == "disabled"
    assert node.host.error is None


async def test_extra_capability_is_noted(make_node: MakeNode) -> None:
    """A capability beyond tools is recorded (a real host would send RpcRequests)."""
    node = await make_node(behaviour="extra_capability")
    assert "capability:logging" in node.host.event_names()


# -- request ids, snapshot, respawn ----------------------------------------------


async def test_request_ids_count_from_one_across_restarts(make_node: MakeNode) -> None:
    """Host request ids start at 1 and keep counting on the respawned process."""
    node = await make_node()
    host = node.host
    await host.health()
    before = host.spawn_count
    await host.kill()
    await host.wait_respawned(before, WAIT)
    await host.health()
    requests = node.observed("request")
    pids = [line["pid"] for line in requests]
    first = [line["id"] for line in requests if line["pid"] == pids[0]]
    second = [line for line in requests if line["pid"] != pids[0]]
    assert requests[0] == {**requests[0], "id": 1, "payload": "initialize_request"}
    assert first == sorted(set(first))  # each id once, counting up
    # The respawned process continues the count (a request in flight at the
    # kill may have used an id the old process never read).
    assert second[0]["payload"] == "initialize_request"
    assert second[0]["id"] > max(first)
    assert [line["id"] for line in second] == sorted({line["id"] for line in second})


async def test_snapshot_once_and_not_after_respawn(make_node: MakeNode) -> None:
    """LOCAL_ACCEPTING, MESH_ID_UPDATED, PEER_UP per known peer once; nothing after a respawn."""
    node = await make_node(start=False)
    host = node.host
    peer = pb.MeshPeer(peer_id="ab" * 32, role="worker", serving_models=["m"])
    host.add_known_peer(peer)
    await host.start()
    await node.barrier()
    first = node.observed("event")
    assert [e["event_kind"] for e in first] == [
        Kind.KIND_LOCAL_ACCEPTING,
        Kind.KIND_MESH_ID_UPDATED,
        Kind.KIND_PEER_UP,
    ]
    assert {e["local_peer_id"] for e in first} == {host.peer_id}
    assert first[1]["mesh_id"] == host.mesh_id
    assert first[2]["peer_id"] == "ab" * 32
    before = host.spawn_count
    await host.kill()
    await host.wait_respawned(before, WAIT)
    await node.barrier()
    assert node.observed("event") == first
    assert host.event_names().count("snapshot") == 1
    assert "killed:manual" in host.event_names()


async def test_snapshot_only_subscribed_kinds_and_standby(make_node: MakeNode) -> None:
    """Only subscribed kinds are sent; a standby node says LOCAL_STANDBY."""
    node = await make_node(accepting=False, plugin_env={"FAKE_SUBSCRIBE": "5,1"})
    host = node.host
    await host.peer_up(pb.MeshPeer(peer_id="cd" * 32))
    assert not await host.send_event(Kind.KIND_MESH_ID_UPDATED)
    await node.barrier()
    kinds = [e["event_kind"] for e in node.observed("event")]
    assert kinds == [Kind.KIND_LOCAL_STANDBY, Kind.KIND_PEER_UP]


async def test_unhealthy_plugin_is_killed_and_respawned(make_node: MakeNode) -> None:
    """A degraded health status kills and respawns the plugin."""
    node = await make_node(behaviour="first:unhealthy", health_interval=0.2)
    host = node.host
    await host.wait_respawned(1, WAIT)
    names = host.event_names()
    assert names.index("killed:health") < names.index("respawned")
    assert (await host.health()).status == pb.HealthResponse.STATUS_OK


async def test_quiet_plugin_hits_idle_timeout(make_node: MakeNode) -> None:
    """A plugin that sends no frame for idle_timeout is killed and respawned."""
    node = await make_node(
        behaviour="first:silent", idle_timeout=1.0, plugin_env={"FAKE_KEEPALIVE": "0.2"}
    )
    host = node.host
    await host.wait_respawned(1, WAIT)
    names = host.event_names()
    assert names.index("killed:idle") < names.index("respawned")


async def test_keepalive_outlives_idle_timeout(make_node: MakeNode) -> None:
    """A plugin that sends a keepalive more often than the idle timeout stays up."""
    node = await make_node(idle_timeout=2.0, plugin_env={"FAKE_KEEPALIVE": "0.2"})
    await asyncio.sleep(4.5)  # two idle periods with no host request at all
    assert node.host.spawn_count == 1
    assert node.host.keepalives >= 2
    assert "killed:idle" not in node.host.event_names()


async def test_timed_out_request_is_retried_once_on_fresh_process(make_node: MakeNode) -> None:
    """A request unanswered in time kills the plugin; the retry on the new process answers."""
    node = await make_node(request_timeout=1.5)
    reply = await node.rpc("hang_first")
    host = node.host
    assert reply.WhichOneof("payload") == "error_response"  # the fresh process: unknown method
    assert host.spawn_count == 2
    assert host.event_names().count("killed:timeout") == 1


async def test_request_timing_out_twice_raises(make_node: MakeNode) -> None:
    """If the retry times out too, the caller gets RequestTimeoutError; the plugin comes back."""
    node = await make_node(request_timeout=1.5)
    with pytest.raises(RequestTimeoutError, match="twice"):
        await node.rpc("hang")
    host = node.host
    assert host.event_names().count("killed:timeout") == 2
    await host.wait_respawned(2, WAIT)
    assert (await host.health()).status == pb.HealthResponse.STATUS_OK


async def test_plugin_exiting_on_its_own_is_respawned(make_node: MakeNode) -> None:
    """A plugin that exits by itself is respawned, as mesh-llm does, and it is recorded."""
    node = await make_node(behaviour="first:exit_after_init")
    await node.host.wait_respawned(1, WAIT)
    assert "exited" in node.host.event_names()


async def test_bad_frame_ends_connection_and_respawns(make_node: MakeNode) -> None:
    """An oversized frame ends the connection; the waiting request fails; a fresh plugin runs."""
    node = await make_node()
    with pytest.raises(PluginUnavailableError, match="ended"):
        await node.rpc("bad_frame")
    host = node.host
    await host.wait_respawned(1, WAIT)
    assert "killed:bad_frame" in host.event_names()
    assert (await host.health()).status == pb.HealthResponse.STATUS_OK


async def test_plugin_rpc_request_gets_no_bridge_error(make_node: MakeNode) -> None:
    """A plugin->host RpcRequest is answered by id with -32603 "No active MCP bridge"."""
    node = await make_node()
    await node.rpc("ask_host")
    await node.barrier()
    (seen,) = node.observed("host_reply")
    assert seen["reply"]["requestId"] == "1000000"
    assert seen["reply"]["errorResponse"] == {"code": -32603, "message": "No active MCP bridge"}


async def test_context_managers_start_and_stop(tmp_path: Path) -> None:
    """`async with Mesh(...)` (or Host) starts every node and stops them on the way out,
    as a long-running script would use it."""
    configs = [config_for(tmp_path, label)[0] for label in ("a", "b")]
    hosts = [Host(config) for config in configs]
    async with Mesh(hosts) as mesh:
        assert [host.state for host in mesh.hosts] == ["running", "running"]
        pids = [host.plugin_pid for host in hosts]
    assert [host.state for host in hosts] == ["stopped", "stopped"]
    assert all(pid is not None for pid in pids)
    async with Host(config_for(tmp_path, "c")[0]) as host:
        assert (await host.health()).status == pb.HealthResponse.STATUS_OK
    assert host.state == "stopped"


async def test_stop_kills_the_plugin(make_node: MakeNode) -> None:
    """stop() SIGKILLs the plugin (no ShutdownRequest, no chance to see EOF); no respawn."""
    node = await make_node()
    host = node.host
    pid = host.plugin_pid
    assert pid is not None
    await host.stop()
    assert host.state == "stopped"
    assert host.event_names()[-1] == "stopped"
    assert host.spawn_count == 1
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert node.observed("eof") == []
    assert "shutdown_request" not in [line["payload"] for line in node.observed("request")]


# -- streamed bindings through the management listener ---------------------------


async def raw_request(host: Host, data: bytes) -> tuple[bytes, bytes]:
    """Send raw bytes to the management port; return (any 100 Continue, final answer)."""
    port = int(host.management_url.rsplit(":", 1)[1])
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(data)
    await writer.drain()
    received = await asyncio.wait_for(reader.read(), WAIT)
    writer.close()
    await writer.wait_closed()
    informational, sep, final = received.rpartition(b"HTTP/1.1 100 Continue\r\n\r\n")
    return (informational + sep, final) if sep else (b"", received)


def parse(raw: bytes) -> tuple[int, dict[str, list[str]], bytes]:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers: dict[str, list[str]] = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers.setdefault(name.strip().lower(), []).append(value.strip())
    return int(lines[0].split(" ")[1]), headers, body


def _request_headers(text: str) -> dict[str, list[str]]:
    head = text.partition("\r\n\r\n")[0]
    headers: dict[str, list[str]] = {}
    for line in head.split("\r\n")[1:]:
        name, _, value = line.partition(":")
        headers.setdefault(name.strip().lower(), []).append(value.strip())
    return headers


CLIENT_REQUEST = (
    b"POST /api/plugins/fake/http/echo?a=1&b=2 HTTP/1.1\r\n"
    b"Host: localhost:3131\r\n"
    b"X-Request-Id: client-chosen\r\n"
    b"Expect: 100-continue\r\n"
    b"Connection: keep-alive\r\n"
    b"Payment-Signature: c2lnbmVk\r\n"
    b"Content-Length: 11\r\n\r\n"
    b"hello world"
)


async def test_076_stream_negotiation_and_rewriting(make_node: MakeNode) -> None:
    """0.76: OpenStreamRequest as the sheet says; the plugin sees the rewritten request;
    the client gets 100 from the host, then the plugin's answer with the host's request id."""
    node = await make_node()
    informational, answer = await raw_request(node.host, CLIENT_REQUEST)
    assert informational == b"HTTP/1.1 100 Continue\r\n\r\n"
    status, headers, body = parse(answer)
    assert status == 200
    echoed = json.loads(body)
    opened = echoed["opened"]
    assert re.fullmatch(r"http-\d+-\d+", opened["stream_id"])
    assert opened["purpose"] == pb.STREAM_PURPOSE_GENERIC
    assert opened["mode"] == pb.STREAM_MODE_HTTP1
    assert opened["bidirectional"] is True
    assert opened["content_type"] == "application/http"
    assert opened["metadata"] == {"binding_id": "echo", "method": "POST", "path": "/echo"}
    assert opened["idle_timeout_ms"] == 30000
    raw = echoed["raw"]
    assert opened["expected_bytes"] == len(raw.encode("latin-1"))
    assert raw.startswith("POST /echo?a=1&b=2 HTTP/1.1\r\n")
    assert raw.endswith("\r\n\r\nhello world")
    seen = _request_headers(raw)
    (request_id,) = seen["x-request-id"]
    uuid.UUID(request_id)
    assert "expect" not in seen
    assert seen["connection"] == ["close"]
    assert seen["payment-signature"] == ["c2lnbmVk"]
    assert seen["host"] == ["localhost:3131"]
    assert headers["x-request-id"] == [request_id]


async def test_076_keeps_client_uuid(make_node: MakeNode) -> None:
    """0.76: a client x-request-id that is a UUID reaches the plugin and comes back."""
    node = await make_node()
    client_id = str(uuid.uuid4())
    async with httpx.AsyncClient() as client:
        response = await client.get(
            f"{node.host.management_url}/api/plugins/fake/http/echo",
            headers={"x-request-id": client_id},
        )
    assert response.status_code == 200
    assert response.headers.get_list("x-request-id") == [client_id]
    seen = _request_headers(response.json()["raw"])
    assert seen["x-request-id"] == [client_id]
    assert response.json()["opened"]["metadata"]["binding_id"] == "echo-get"


async def test_066_stream_passes_headers_and_response(make_node: MakeNode) -> None:
    """0.66: the plugin sees the client's headers as sent (plus Connection: close) and its
    response reaches the client unchanged."""
    node = await make_node(generation="0.66")
    _, answer = await raw_request(node.host, CLIENT_REQUEST)
    status, headers, body = parse(answer)
    assert status == 200
    assert headers["x-request-id"] == ["set-by-plugin"]
    seen = _request_headers(json.loads(body)["raw"])
    assert seen["x-request-id"] == ["client-chosen"]
    assert seen["expect"] == ["100-continue"]
    assert seen["connection"] == ["close"]


async def test_plugin_status_passes_through(make_node: MakeNode) -> None:
    """Any status the plugin writes (402 included) reaches the client."""
    node = await make_node()
    async with httpx.AsyncClient() as client:
        response = await client.post(
            f"{node.host.management_url}/api/plugins/fake/http/echo",
            headers={"x-fake-status": "402"},
            content=b"{}",
        )
    assert response.status_code == 402


@pytest.mark.parametrize(("generation", "status"), [("0.76", 502), ("0.66", 200)])
async def test_response_head_check(make_node: MakeNode, generation: str, status: int) -> None:
    """A response head with more than 64 headers is refused by 0.76 only."""
    node = await make_node(behaviour="huge_head", generation=generation)
    async with httpx.AsyncClient() as client:
        response = await client.post(f"{node.host.management_url}/api/plugins/fake/http/echo")
    assert response.status_code == status


@pytest.mark.parametrize(
    ("behaviour", "message"), [("tcp_stream", "TCP"), ("refuse_stream", "refused")]
)
async def test_unusable_stream_is_502(make_node: MakeNode, behaviour: str, message: str) -> None:
    """A TCP endpoint or a refused stream gives the client a 502 naming why."""
    node = await make_node(behaviour=behaviour)
    async with httpx.AsyncClient() as client:
        response = await client.post(f"{node.host.management_url}/api/plugins/fake/http/echo")
    assert response.status_code == 502
    assert message in response.json()["error"]["message"]


@pytest.mark.parametrize(
    ("headers", "status_076"),
    [
        ({"Host": "example.com"}, 403),
        ({"Origin": "http://evil.example"}, 403),
        ({"Host": "localhost:3131", "Origin": "http://127.0.0.1:8080"}, 200),
    ],
)
async def test_trusted_local_rule(
    make_node: MakeNode, headers: dict[str, str], status_076: int
) -> None:
    """0.76 serves plugin routes to trusted local callers only; 0.66 serves anyone."""
    node_076 = await make_node()
    node_066 = await make_node(generation="0.66")
    async with httpx.AsyncClient() as client:
        refused = await client.post(
            f"{node_076.host.management_url}/api/plugins/fake/http/echo", headers=headers
        )
        served = await client.post(
            f"{node_066.host.management_url}/api/plugins/fake/http/echo", headers=headers
        )
    assert refused.status_code == status_076
    assert served.status_code == 200
    if status_076 == 403:
        await node_076.barrier()
        assert node_076.observed("stream") == []


async def test_management_limits(make_node: MakeNode) -> None:
    """Body over 8 MiB: 413; head over 64 KiB or 65 headers: 431; the plugin is never asked."""
    node = await make_node()
    url = f"{node.host.management_url}/api/plugins/fake/http/echo"
    async with httpx.AsyncClient() as client:
        too_big = await client.post(url, content=b"x" * (8 * 1024 * 1024 + 1))
        big_head = await client.post(url, headers={"X-Big": "a" * 70_000})
        many = await client.post(url, headers={f"X-H{i}": "v" for i in range(65)})
    assert too_big.status_code == 413
    assert big_head.status_code == 431
    assert many.status_code == 431
    await node.barrier()
    assert node.observed("stream") == []


async def test_buffered_binding_invokes_operation(make_node: MakeNode) -> None:
    """A buffered binding reaches the plugin as InvokeServiceRequest with merged input."""
    node = await make_node()
    async with httpx.AsyncClient() as client:
        response = await client.post(
            f"{node.host.management_url}/api/plugins/fake/http/op?x=1", json={"y": 2}
        )
    assert response.status_code == 200
    assert response.json() == {"operation": "echo-op", "input": {"x": "1", "y": 2}}


async def test_blackboard_on_private_mesh_only(make_node: MakeNode) -> None:
    """The blackboard stand-in answers on a private mesh, and not on a public one."""
    private = await make_node(blackboard=True)
    public = await make_node(blackboard=True, mesh_visibility="public")
    async with httpx.AsyncClient() as client:
        posted = await client.post(
            f"{private.host.management_url}/api/plugins/blackboard/http/post",
            json={"text": "node up", "from": "fake"},
        )
        feed = await client.get(f"{private.host.management_url}/api/plugins/blackboard/http/feed")
        refused = await client.get(f"{public.host.management_url}/api/plugins/blackboard/http/feed")
    assert posted.status_code == 200
    assert posted.json()["peer_id"] == private.host.peer_id
    assert [item["text"] for item in feed.json()] == ["node up"]
    assert refused.status_code == 404


async def test_blackboard_posts_are_gossiped(make_node: MakeNode) -> None:
    """A post on one node's blackboard shows in another node's feed and search."""
    _, nodes = await start_mesh(make_node, [{"blackboard": True}, {"blackboard": True}])
    first, second = (node.host.management_url for node in nodes)
    base = "/api/plugins/blackboard/http"
    async with httpx.AsyncClient() as client:
        posted = await client.post(f"{first}{base}/post", json={"text": "offer: m1", "from": "a"})
        feed = await client.get(f"{second}{base}/feed")
        search = await client.get(f"{second}{base}/search", params={"q": "OFFER"})
    assert posted.status_code == 200
    assert [item["id"] for item in feed.json()] == [posted.json()["id"]]
    assert [item["text"] for item in search.json()] == ["offer: m1"]


# -- mesh: channel relay and peer events -------------------------------------------


async def start_mesh(
    make_node: MakeNode, specs: list[dict[str, Any]], links: list[tuple[int, int]] | None = None
) -> tuple[Mesh, list[Node]]:
    nodes = [await make_node(start=False, **spec) for spec in specs]
    mesh = Mesh([node.host for node in nodes], links)
    await asyncio.wait_for(mesh.start(), WAIT)
    return mesh, nodes


async def received(nodes: list[Node]) -> list[list[dict[str, Any]]]:
    for node in nodes:
        if node.host.state == "running":
            await node.barrier()
    return [node.observed("channel") for node in nodes]


async def test_mesh_snapshot_announces_direct_peers(make_node: MakeNode) -> None:
    """Each node's snapshot has PEER_UP for its direct peers, with their gossip."""
    _, nodes = await start_mesh(
        make_node, [{"serving_models": ["m1"]}, {}, {}], links=[(0, 1), (1, 2)]
    )
    for node in nodes:
        await node.barrier()
    ups = [
        sorted(e["peer_id"] for e in node.observed("event") if e["event_kind"] == Kind.KIND_PEER_UP)
        for node in nodes
    ]
    ids = [node.host.peer_id for node in nodes]
    assert ups == [[ids[1]], sorted([ids[0], ids[2]]), [ids[1]]]
    assert nodes[1].host.known_peers[ids[0]].serving_models == ["m1"]


async def test_broadcast_reaches_peers_not_sender(make_node: MakeNode) -> None:
    """A broadcast on a declared channel reaches every direct peer's plugin once, with
    request id 0 and the sender's peer id filled in; the sender does not get it back."""
    _, nodes = await start_mesh(make_node, [{}, {}, {}])
    await nodes[0].rpc("send_channel", channel="x402.v1", body="hi all")
    got = await received(nodes)
    assert got[0] == []
    for messages in got[1:]:
        (message,) = messages
        assert message["body"] == "hi all"
        assert message["source"] == nodes[0].host.peer_id
        assert message["request_id"] == 0
    assert nodes[0].host.channel_log[0].source_peer_id == nodes[0].host.peer_id


async def test_channels_must_be_declared_both_ways(make_node: MakeNode) -> None:
    """An undeclared channel leaves no node; a receiver that did not declare it gets nothing."""
    _, nodes = await start_mesh(make_node, [{}, {}, {"channels": "other.v1"}])
    await nodes[0].rpc("send_channel", channel="undeclared.v1", body="nope")
    await nodes[0].rpc("send_channel", channel="x402.v1", body="yes")
    got = await received(nodes)
    assert [m["body"] for m in got[1]] == ["yes"]
    assert got[2] == []
    assert "channel_dropped:undeclared" in nodes[0].host.event_names()
    assert "channel_dropped:undeclared" in nodes[2].host.event_names()


async def test_only_the_same_plugin_name_receives(make_node: MakeNode) -> None:
    """A node whose plugin has another name does not get the message."""
    _, nodes = await start_mesh(make_node, [{}, {}, {"plugin_name": "other"}])
    await nodes[0].rpc("send_channel", channel="x402.v1", body="for fake only")
    got = await received(nodes)
    assert [len(m) for m in got] == [0, 1, 0]
    assert "channel_dropped:other_plugin" in nodes[2].host.event_names()


async def test_target_filter_and_hops(make_node: MakeNode) -> None:
    """On a line A-B-C: a broadcast from A stops at B; a message targeted at C reaches
    only C (two hops); an uppercase target matches nobody."""
    _, nodes = await start_mesh(make_node, [{}, {}, {}], links=[(0, 1), (1, 2)])
    target = nodes[2].host.peer_id
    await nodes[0].rpc("send_channel", channel="x402.v1", body="broadcast")
    await nodes[0].rpc("send_channel", channel="x402.v1", body="to C", target=target)
    await nodes[0].rpc("send_channel", channel="x402.v1", body="upper", target=target.upper())
    got = await received(nodes)
    assert [m["body"] for m in got[1]] == ["broadcast"]
    assert [(m["body"], m["target"]) for m in got[2]] == [("to C", target)]


async def test_duplicate_paths_deliver_once(make_node: MakeNode) -> None:
    """A diamond gives a targeted message two paths; the target's plugin gets it once."""
    mesh, nodes = await start_mesh(
        make_node, [{}, {}, {}, {}], links=[(0, 1), (0, 3), (1, 2), (3, 2)]
    )
    await nodes[0].rpc("send_channel", channel="x402.v1", body="once", target=nodes[2].host.peer_id)
    got = await received(nodes)
    assert [len(m) for m in got] == [0, 0, 1, 0]
    assert (nodes[2].host.peer_id, "duplicate") in mesh.dropped


async def test_oversized_channel_frame_is_dropped(make_node: MakeNode) -> None:
    """A receiving node drops a channel frame over 10,000,000 bytes."""
    _, nodes = await start_mesh(make_node, [{}, {}])
    await nodes[0].rpc("send_channel", channel="x402.v1", body="x", repeat=10_000_001)
    await nodes[0].rpc("send_channel", channel="x402.v1", body="small")
    got = await received(nodes)
    assert [m["body"] for m in got[1]] == ["small"]


async def test_peer_events_on_link_changes_and_stop(make_node: MakeNode) -> None:
    """link/unlink/stop_host send PEER_UP and PEER_DOWN to the plugins concerned."""
    mesh, nodes = await start_mesh(make_node, [{}, {}, {}], links=[(0, 1)])
    ids = [node.host.peer_id for node in nodes]
    await mesh.link(1, 2)
    await mesh.unlink(0, 1)
    await mesh.stop_host(2)
    for node in nodes[:2]:
        await node.barrier()

    def peer_events(node: Node) -> list[tuple[int, str]]:
        return [
            (e["event_kind"], e["peer_id"])
            for e in node.observed("event")
            if e["event_kind"] in (Kind.KIND_PEER_UP, Kind.KIND_PEER_DOWN)
        ]

    assert peer_events(nodes[0]) == [(Kind.KIND_PEER_UP, ids[1]), (Kind.KIND_PEER_DOWN, ids[1])]
    assert peer_events(nodes[1]) == [
        (Kind.KIND_PEER_UP, ids[0]),
        (Kind.KIND_PEER_UP, ids[2]),
        (Kind.KIND_PEER_DOWN, ids[0]),
        (Kind.KIND_PEER_DOWN, ids[2]),
    ]
    assert nodes[2].host.state == "stopped"
