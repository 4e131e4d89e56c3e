"""The real `mesh-x402 serve` process under the mesh-llm host double.

Every test spawns the plugin as mesh-llm would (socket, environment, SIGKILL)
and looks at what a node operator or a client would see: the handshake the
host stores, the HTTP answer through the management port, the mesh view the
plugin keeps on disk, its channel traffic, and its exit code.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import struct
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from mesh_x402._pb.meshllm.plugin.v1 import plugin_pb2 as pb
from mesh_x402.commands.init import write_node_config
from mesh_x402.commands.serve import socket_path
from mesh_x402.hostdouble import Host, HostConfig, Mesh
from mesh_x402.keys import create_key_file
from mesh_x402.mesh.framing import FrameDecoder, encode_frame

pytestmark = pytest.mark.integration

WAIT = 20.0  # a bound on hangs, never a speed assertion
GENERATIONS = ["0.76", "0.66"]
Kind = pb.MeshEvent


# -- helpers -------------------------------------------------------------------


def make_node(folder: Path) -> Path:
    """A node folder as `mesh-x402 init` makes it; returns node.toml."""
    folder.mkdir(parents=True)
    create_key_file(folder / "node.key")
    return write_node_config(folder)


def serve_command(config: Path) -> list[str]:
    # port 0: several nodes share this machine
    return [
        sys.executable, "-m", "mesh_x402", "serve",
        "--config", str(config), "--gateway", "127.0.0.1:0",
    ]  # fmt: skip


def host_config(tmp_path: Path, name: str, **overrides: Any) -> HostConfig:
    folder = tmp_path / name
    config = make_node(folder)
    fields: dict[str, Any] = {
        "plugin_name": "x402",
        "command": serve_command(config),
        "home": folder / "home",
        "stderr_path": folder / "plugin.log",
        "health_interval": 15.0,
    }
    fields.update(overrides)
    return HostConfig(**fields)


def view_file(host: Host) -> Path:
    return Path(host.config.stderr_path).parent / "state" / "mesh-view.json"


def read_view(host: Host) -> dict[str, Any] | None:
    try:
        return json.loads(view_file(host).read_text())
    except (FileNotFoundError, ValueError):
        return None


def log_events(host: Host) -> list[dict[str, Any]]:
    """The plugin's JSON log lines (stderr), oldest first."""
    path = Path(host.config.stderr_path)
    if not path.exists():
        return []
    events = []
    for line in path.read_text().splitlines():
        try:
            events.append(json.loads(line))
        except ValueError:
            continue
    return events


async def eventually(predicate: Callable[[], Any], what: str) -> Any:
    """Wait until `predicate()` is truthy (bounded, so a bug fails instead of hanging)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WAIT
    while True:
        result = predicate()
        if result:
            return result
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


def fake_peer(seed: str, **overrides: Any) -> pb.MeshPeer:
    fields: dict[str, Any] = {
        "peer_id": seed * 64,
        "role": "host",
        "vram_bytes": 48 * 2**30,
        "serving_models": [f"model-{seed}"],
        "hosted_models": [f"model-{seed}"],
    }
    fields.update(overrides)
    return pb.MeshPeer(**fields)


@pytest.fixture
async def hosts() -> AsyncIterator[list[Host]]:
    """Hosts a test starts are stopped (plugin killed) afterwards, whatever happens."""
    started: list[Host] = []
    yield started
    await asyncio.gather(*(host.stop() for host in started), return_exceptions=True)


# -- handshake, manifest, a streamed binding -----------------------------------


@pytest.mark.parametrize("generation", GENERATIONS)
async def test_handshake_manifest_and_streamed_binding(tmp_path, hosts, generation):
    host = Host(host_config(tmp_path, "a", generation=generation))
    hosts.append(host)
    await host.start()

    names = host.event_names()
    assert "initialized" in names
    times = dict((name, t) for t, name in reversed(host.events))
    print(f"spawn -> initialize answered: {times['initialized'] - times['spawned']:.3f} s")

    init = host.initialize_response
    assert init is not None
    assert init.plugin_id == "x402"
    assert init.plugin_protocol_version == 2
    info = json.loads(init.server_info_json)
    assert info["capabilities"] == {"tools": {}}
    assert set(info) == {"protocolVersion", "capabilities", "serverInfo"}
    assert info["serverInfo"]["name"] == "mesh-x402"

    manifest = host.manifest
    assert list(manifest.capabilities) == ["x402.v1"]
    assert [c.name for c in manifest.mesh_channels] == ["x402.v1"]
    assert {s.kind for s in manifest.mesh_event_subscriptions} == {
        Kind.KIND_PEER_UP,
        Kind.KIND_PEER_DOWN,
        Kind.KIND_PEER_UPDATED,
        Kind.KIND_LOCAL_ACCEPTING,
        Kind.KIND_LOCAL_STANDBY,
        Kind.KIND_MESH_ID_UPDATED,
    }
    bindings = {(b.binding_id, b.method, b.path) for b in manifest.http_bindings}
    assert bindings == {
        ("chat-completions", pb.HTTP_METHOD_POST, "/v1/chat/completions"),
        ("completions", pb.HTTP_METHOD_POST, "/v1/completions"),
        ("models", pb.HTTP_METHOD_GET, "/v1/models"),
        # The Payments page's JSON (http/operator_pages.py).
        ("x402-node", pb.HTTP_METHOD_GET, "/x402/node"),
        ("x402-balances", pb.HTTP_METHOD_GET, "/x402/balances"),
        ("x402-receipts", pb.HTTP_METHOD_GET, "/x402/receipts"),
        ("x402-batches", pb.HTTP_METHOD_GET, "/x402/batches"),
        ("x402-earnings", pb.HTTP_METHOD_GET, "/x402/earnings"),
    }
    for binding in manifest.http_bindings:
        assert binding.request_body_mode == pb.HTTP_BODY_MODE_STREAMED
        assert binding.response_body_mode == pb.HTTP_BODY_MODE_STREAMED

    base = f"{host.management_url}/api/plugins/x402/http"
    async with httpx.AsyncClient(timeout=WAIT) as client:
        chat = await client.post(
            f"{base}/v1/chat/completions",
            json={"model": "m", "messages": [{"role": "user", "content": "hi"}]},
        )
        models = await client.get(f"{base}/v1/models")
    for response in (chat, models):
        assert response.status_code == 501
        assert response.headers["content-type"] == "application/json"
        assert response.json() == {
            "error": {"message": "payment gate not yet available", "type": "not_implemented"}
        }
    opened = [e for e in log_events(host) if e["event"] == "stream.opened"]
    assert len(opened) == 2


async def test_plugin_id_follows_the_configured_name(tmp_path, hosts):
    """The `[[plugin]] name` is the id: the plugin answers with it, bindings live under it."""
    host = Host(host_config(tmp_path, "a", plugin_name="pay-gate"))
    hosts.append(host)
    await host.start()
    assert host.initialize_response.plugin_id == "pay-gate"
    async with httpx.AsyncClient(timeout=WAIT) as client:
        response = await client.get(f"{host.management_url}/api/plugins/pay-gate/http/v1/models")
    assert response.status_code == 501


async def test_twenty_concurrent_health_checks(tmp_path, hosts):
    host = Host(host_config(tmp_path, "a"))
    hosts.append(host)
    await host.start()
    replies = await asyncio.gather(*(host.health() for _ in range(20)))
    assert [r.status for r in replies] == [pb.HealthResponse.STATUS_OK] * 20
    assert host.spawn_count == 1


async def test_health_answers_while_http_streams_are_busy(tmp_path, hosts):
    """Stalled HTTP exchanges on the binding socket do not hold up the host link."""
    host = Host(host_config(tmp_path, "a"))
    hosts.append(host)
    await host.start()
    path = socket_path(Path(host.config.stderr_path).parent / "state")
    await eventually(path.exists, "the binding socket")  # bound just after initialize
    writers = []
    for _ in range(10):
        _, writer = await asyncio.open_unix_connection(str(path))
        writer.write(
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Content-Length: 1000\r\n\r\n{"
        )  # the app now waits for a body that does not come
        await writer.drain()
        writers.append(writer)
    loop = asyncio.get_running_loop()
    latencies = []
    try:
        for _ in range(20):
            started = loop.time()
            reply = await host.health()
            latencies.append(loop.time() - started)
            assert reply.status == pb.HealthResponse.STATUS_OK
    finally:
        for writer in writers:
            writer.close()
    print("health with 10 busy streams (ms):", [round(x * 1000, 1) for x in latencies])
    assert host.spawn_count == 1


# -- mesh view and channel -------------------------------------------------------


async def test_snapshot_reaches_the_mesh_view(tmp_path, hosts):
    host = Host(host_config(tmp_path, "a"))
    host.add_known_peer(fake_peer("b"))
    host.add_known_peer(fake_peer("c", role="worker", vram_bytes=8 * 2**30, hosted_models=[]))
    hosts.append(host)
    await host.start()

    def complete() -> dict[str, Any] | None:
        view = read_view(host)
        return view if view is not None and len(view["peers"]) == 2 else None

    view = await eventually(complete, "the snapshot in mesh-view.json")
    assert view["local_peer_id"] == host.peer_id
    assert view["mesh_id"] == host.mesh_id
    assert view["local_state"] == "accepting"
    b = view["peers"]["b" * 64]
    assert (b["role"], b["vram_bytes"], b["serving_models"], b["hosted_models"]) == (
        "host",
        48 * 2**30,
        ["model-b"],
        ["model-b"],
    )
    assert view["peers"]["c" * 64]["role"] == "worker"

    await host.peer_down("c" * 64)
    await eventually(lambda: set(read_view(host)["peers"]) == {"b" * 64}, "PEER_DOWN applied")


async def test_channel_message_reaches_its_target_only(tmp_path, hosts):
    """A's plugin says hello to B on PEER_UP: B's plugin gets it; A and C do not."""
    a, b, c = (Host(host_config(tmp_path, name)) for name in "abc")
    hosts.extend([a, b, c])
    mesh = Mesh([a, b, c])
    await mesh.start()

    def hello_from_a(message: pb.ChannelMessage) -> bool:
        return message.source_peer_id == a.peer_id and message.message_kind == "hello"

    before = len(b.received_channel)
    await a.peer_up(b.local_peer())  # a gossip-learned PEER_UP: A's plugin greets B
    await eventually(
        lambda: any(hello_from_a(m) for m in b.received_channel[before:]), "A's hello at B"
    )
    sent = [m for m in a.channel_log if m.target_peer_id == b.peer_id]
    assert sent
    assert all(m.channel == "x402.v1" for m in sent)
    assert json.loads(sent[-1].body) == {"peer_id": a.peer_id, "version": "0.1.0"}

    # B's plugin (not just its host) received it.
    await eventually(
        lambda: any(
            e["event"] == "channel.received" and e["source"] == a.peer_id for e in log_events(b)
        ),
        "channel.received in B's log",
    )
    # Nothing addressed to B ever reached A (the sender) or C.
    assert not any(m.target_peer_id == b.peer_id for m in c.received_channel)
    assert not any(m.source_peer_id == a.peer_id for m in a.received_channel)
    assert not any(
        e["event"] == "channel.received" and e["source"] == a.peer_id for e in log_events(a)
    )


# -- kill, respawn, idle ------------------------------------------------------------


async def test_sigkill_and_respawn_keeps_the_mesh_view(tmp_path, hosts):
    """After SIGKILL the host sends no snapshot; the new process still knows the mesh."""
    host = Host(host_config(tmp_path, "a"))
    host.add_known_peer(fake_peer("b"))
    host.add_known_peer(fake_peer("c"))
    hosts.append(host)
    await host.start()
    await eventually(lambda: len((read_view(host) or {"peers": {}})["peers"]) == 2, "snapshot")

    first_pid = host.plugin_pid
    spawns = host.spawn_count
    await host.kill()
    await host.wait_respawned(spawns, timeout=WAIT)
    assert host.plugin_pid != first_pid
    assert host.event_names().count("snapshot") == 1

    # One later event (no snapshot): if the new process had forgotten the
    # view, the file would now hold only this peer and no mesh id.
    await host.peer_updated(fake_peer("b", serving_models=["model-b2"]))
    await eventually(
        lambda: read_view(host)["peers"]["b" * 64]["serving_models"] == ["model-b2"],
        "PEER_UPDATED after the respawn",
    )
    view = read_view(host)
    assert view["local_peer_id"] == host.peer_id
    assert view["mesh_id"] == host.mesh_id
    assert set(view["peers"]) == {"b" * 64, "c" * 64}
    restored = [e for e in log_events(host) if e["event"] == "mesh.view_restored"]
    assert restored[-1]["peers"] == 2

    # And the respawned plugin serves the binding again.
    async with httpx.AsyncClient(timeout=WAIT) as client:
        response = await client.get(f"{host.management_url}/api/plugins/x402/http/v1/models")
    assert response.status_code == 501
    assert (await host.health()).status == pb.HealthResponse.STATUS_OK


async def test_quiet_plugin_outlives_a_ten_second_idle_timeout(tmp_path, hosts):
    """The 2026-07 hosts drop a plugin silent for 10 s; keepalives prevent it."""
    host = Host(host_config(tmp_path, "a", idle_timeout=10.0, health_interval=15.0))
    hosts.append(host)
    await host.start()
    await asyncio.sleep(12.0)  # past the idle timeout, before the second health check
    assert host.spawn_count == 1
    assert not any(name.startswith("killed") for name in host.event_names())
    assert host.keepalives > 0
    assert (await host.health()).status == pb.HealthResponse.STATUS_OK


# -- the process on its own: bad input, end of stream, standalone ---------------------


def _run_serve(config: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        serve_command(config),
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=WAIT,
        check=False,
    )


@pytest.mark.parametrize(
    ("damage", "expected"),
    [
        (lambda f: (f / "node.toml").write_text("[gateway]\nport = 1\n"), "gateway.port"),
        (lambda f: os.chmod(f / "node.key", 0o644), "mode 0644"),
        (lambda f: (f / "node.key").unlink(), "no such key file"),
        (lambda f: (f / "node.key").write_text("0x1234\n"), "64 hex digits"),
    ],
    ids=["unknown-config-key", "key-readable-by-others", "key-missing", "key-malformed"],
)
def test_bad_config_or_key_exits_2_with_one_line(tmp_path, damage, expected):
    folder = tmp_path / "a"
    config = make_node(folder)
    damage(folder)
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(tmp_path / "host.sock"))
    listener.listen()
    try:
        result = _run_serve(config, {"MESH_LLM_PLUGIN_ENDPOINT": str(tmp_path / "host.sock")})
    finally:
        listener.close()
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert expected in lines[0]
    assert lines[0].startswith("mesh-x402 serve: ")


@pytest.fixture
def raw_host(tmp_path) -> Iterator[tuple[socket.socket, Path]]:
    """A listening socket playing the host by hand, for frames the double never sends."""
    path = tmp_path / "h.sock"
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(path))
    listener.listen()
    listener.settimeout(WAIT)
    yield listener, path
    listener.close()


def _spawn_under(path: Path, config: Path) -> subprocess.Popen[str]:
    env = {**os.environ, "MESH_LLM_PLUGIN_ENDPOINT": str(path), "MESH_LLM_PLUGIN_NAME": "x402"}
    return subprocess.Popen(
        serve_command(config), env=env, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL,
        text=True,
    )  # fmt: skip


def _initialize(conn: socket.socket) -> pb.Envelope:
    request = pb.Envelope(
        protocol_version=2,
        plugin_id="x402",
        request_id=1,
        initialize_request=pb.InitializeRequest(host_protocol_version=2, host_version="0.76.0"),
    )
    conn.sendall(encode_frame(request))
    decoder = FrameDecoder()
    while True:
        data = conn.recv(65536)
        assert data, "plugin closed before answering initialize"
        for envelope in decoder.feed(data):
            if envelope.request_id == 1:
                return envelope


@pytest.mark.parametrize(
    ("tail", "code", "event"),
    [
        (b"", 0, "serve.stopped"),
        (struct.pack("<I", 16 * 1024 * 1024 + 1), 1, "host.bad_frame"),
        (struct.pack("<I", 100) + b"\x08\x02", 1, "host.bad_frame"),
        (struct.pack("<I", 4) + b"\x0a\xff\xff\xff", 1, "host.bad_frame"),
    ],
    ids=["eof", "oversized", "truncated", "undecodable"],
)
def test_end_of_stream_and_bad_frames_end_the_process(tmp_path, raw_host, tail, code, event):
    """EOF: the host is gone, exit 0. A broken frame: one clear log line, exit 1."""
    listener, path = raw_host
    process = _spawn_under(path, make_node(tmp_path / "a"))
    try:
        conn, _ = listener.accept()
        with conn:
            conn.settimeout(WAIT)
            reply = _initialize(conn)
            assert reply.initialize_response.plugin_id == "x402"
            conn.sendall(tail)
            conn.shutdown(socket.SHUT_WR)
            _, stderr = process.communicate(timeout=WAIT)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == code
    events = [json.loads(line) for line in stderr.splitlines()]
    assert [e["event"] for e in events].count(event) == 1
    if code:
        (bad,) = [e for e in events if e["event"] == "host.bad_frame"]
        assert bad["reason"]


def test_standalone_serves_the_gateway_only(tmp_path):
    config = make_node(tmp_path / "a")
    env = {k: v for k, v in os.environ.items() if not k.startswith("MESH_LLM_PLUGIN")}
    process = subprocess.Popen(
        serve_command(config), env=env, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL,
        text=True,
    )  # fmt: skip
    try:
        assert process.stderr is not None
        address = None
        for line in process.stderr:
            entry = json.loads(line)
            if entry["event"] == "http.listening":
                assert "unix" not in entry
                address = entry["tcp"]
            if entry["event"] == "serve.started":
                break
        assert address is not None
        response = httpx.get(f"http://{address}/v1/chat/completions", timeout=WAIT)
        assert response.status_code == 501
        assert not (tmp_path / "a" / "state" / "http.sock").exists()
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=WAIT)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        process.stderr.close()
    assert process.returncode == 0
