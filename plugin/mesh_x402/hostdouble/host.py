"""Host: one mesh-llm node as its plugin sees it, following the spec sheet to the letter.

The host binds the plugin socket, spawns the plugin, validates the
initialize handshake, sends the node-start snapshot once, ticks health
checks, drops a plugin that goes quiet, and on any failure SIGKILLs and
respawns it with no back-off (the snapshot is never sent again). Request ids
count up from 1 per plugin and survive restarts. A timed-out request kills
and respawns the plugin and is retried once on the fresh process.

Start failure differs by generation: 0.66 raises from `start()` (the node
would not start); 0.76 keeps running with the plugin in state "error" and
never retries it.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import time
from collections.abc import Callable, Coroutine
from typing import Any, Final, Protocol

from google.protobuf.message import Message

from mesh_x402._pb.meshllm.plugin.v1 import plugin_pb2 as pb
from mesh_x402.hostdouble.bindings import find_binding
from mesh_x402.hostdouble.blackboard import Blackboard, BoardItem
from mesh_x402.hostdouble.config import HostConfig
from mesh_x402.hostdouble.errors import (
    HostDoubleError,
    PluginStartError,
    PluginUnavailableError,
    RequestTimeoutError,
)
from mesh_x402.hostdouble.handshake import Handshake, initialize_request, validate_initialize
from mesh_x402.hostdouble.management import ManagementServer
from mesh_x402.hostdouble.process import (
    PluginProcess,
    accept_plugin,
    bind_plugin_socket,
    plugin_env,
    socket_path,
)
from mesh_x402.hostdouble.session import END_BAD_FRAME, END_EOF, END_IDLE, Session
from mesh_x402.log import get_logger
from mesh_x402.mesh.framing import PROTOCOL_VERSION

__all__ = ["DOWN_STATES", "Host", "MeshLink"]

# States in which no plugin will come back without a new Host.
DOWN_STATES: Final = frozenset({"error", "disabled", "stopped"})
# A plugin that closes its socket and exits within this time "exited"; one
# that closes it and stays alive "disconnected".
_EXIT_GRACE: Final = 1.0
_PAYLOADS: Final = frozenset(
    field.name for field in pb.Envelope.DESCRIPTOR.oneofs_by_name["payload"].fields
)
_NO_MCP_BRIDGE: Final = -32603
# Bound on waiting for the host's own tasks to wind down in stop().
_STOP_GRACE: Final = 5.0

_log = get_logger("hostdouble")


class MeshLink(Protocol):
    """What a host asks of the mesh it belongs to (implemented by `Mesh`)."""

    async def relay(self, sender: Host, message: pb.ChannelMessage, plugin_name: str) -> None:
        """Carry a channel message the sender's plugin sent to the sender's peers."""

    def board_posted(self, origin: Host, item: BoardItem) -> None:
        """Gossip a blackboard post to the other boards."""


class Host:
    """One node of the double with its one plugin. See INTERFACES.md §1.

    `state` is one of new, starting, running, restarting, error (failed to
    start or respawn; never retried), disabled (answered -32010), stopped.

    `events` holds (monotonic time, name) for assertions; the names are:
    spawned, connected, initialized, snapshot, respawned, start_failed,
    respawn_failed, disabled, stopped, exited (the plugin exited on its
    own), killed:<why> with why in manual, health, idle, timeout, bad_frame,
    disconnected; capability:<name> for an MCP capability besides tools;
    channel_dropped:<why> with why in undeclared, other_plugin, not_running;
    violation:split_frame (a length prefix written apart from its body) and
    violation:foreign_plugin_id (a frame naming another plugin): habits a
    real host does not forgive; task_failed:<exception> (a bug in the double).
    """

    def __init__(self, config: HostConfig) -> None:
        self.config = config
        self.state = "new"
        self.error: str | None = None
        self.spawn_count = 0
        self.initialize_response: pb.InitializeResponse | None = None
        self.events: list[tuple[float, str]] = []
        self.channel_log: list[pb.ChannelMessage] = []
        self.received_channel: list[pb.ChannelMessage] = []
        self.sent_events: list[pb.MeshEvent] = []
        self.notifications: list[pb.RpcNotification] = []
        self.bulk_log: list[pb.BulkTransferMessage] = []
        self.known_peers: dict[str, pb.MeshPeer] = {}
        self.health_checks = 0
        self.mesh: MeshLink | None = None
        self.blackboard = Blackboard() if config.blackboard else None
        self._request_ids = itertools.count(1)
        self._stream_ids = itertools.count(1)
        self._process: PluginProcess | None = None
        self._session: Session | None = None
        self._changed = asyncio.Event()
        self._restart_lock = asyncio.Lock()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._stopping = False
        self._management = ManagementServer(self)

    # -- identity and views -------------------------------------------------

    @property
    def plugin_name(self) -> str:
        """The configured plugin name (also its id)."""
        return self.config.plugin_name

    @property
    def peer_id(self) -> str:
        """This node's peer id (64 lowercase hex)."""
        return self.config.peer_id

    @property
    def mesh_id(self) -> str:
        """This node's mesh id."""
        return self.config.mesh_id

    @property
    def manifest(self) -> pb.PluginManifest | None:
        """The manifest from the last successful initialize."""
        if self.initialize_response is None:
            return None
        return self.initialize_response.manifest

    @property
    def plugin_pid(self) -> int | None:
        """The current plugin process id, if one is running."""
        return self._process.pid if self._process is not None else None

    @property
    def management_url(self) -> str:
        """`http://127.0.0.1:<port>` of the management listener."""
        return self._management.url

    @property
    def trusted_local_only(self) -> bool:
        """0.76 serves `/api/plugins*` to trusted local callers only."""
        return self.config.is_076

    @property
    def rewrite_streams(self) -> bool:
        """0.76 rewrites side-stream requests and checks response heads."""
        return self.config.is_076

    @property
    def keepalives(self) -> int:
        """Empty request-id-0 envelopes seen on the current connection."""
        return self._session.keepalives if self._session is not None else 0

    def event_names(self) -> list[str]:
        """The names in `events`, in order (convenient for assertions)."""
        return [name for _, name in self.events]

    def local_peer(self) -> pb.MeshPeer:
        """This node as a MeshPeer, the way its peers' plugins see it."""
        return pb.MeshPeer(
            peer_id=self.peer_id,
            version=self.config.host_version,
            role=self.config.role,
            vram_bytes=self.config.vram_bytes,
            models=list(self.config.serving_models),
            serving_models=list(self.config.serving_models),
            hosted_models=list(self.config.hosted_models),
            hosted_models_known=True,
        )

    def add_known_peer(self, peer: pb.MeshPeer) -> None:
        """Know a peer before start, so the snapshot announces it."""
        self.known_peers[peer.peer_id] = peer

    # -- lifecycle ---------------------------------------------------------

    async def start(self) -> None:
        """Open the management listener, spawn the plugin, handshake, send the snapshot.

        Raises:
            PluginStartError: (0.66 only) the plugin failed to start.
            HostDoubleError: the host was already started.
        """
        if self.state != "new":
            raise HostDoubleError(f"host already started (state {self.state!r})")
        self._set_state("starting")
        await self._management.start(self.config.management_port)
        try:
            handshake = await self._launch()
        except PluginStartError as exc:
            self.error = str(exc)
            self._record("start_failed")
            _log.warning("hostdouble.start_failed", plugin=self.plugin_name, reason=str(exc))
            if not self.config.is_076:
                await self.stop()
                raise
            self._set_state("error")
            return
        if handshake.disabled:
            return
        await self._send_snapshot()
        self._spawn(self._health_loop())

    async def stop(self) -> None:
        """SIGKILL the plugin and close everything (the host never sends ShutdownRequest)."""
        if self._stopping:
            return
        self._stopping = True
        # SIGKILL first: the plugin must not see its socket close while alive.
        if self._process is not None:
            await self._process.kill()
        # Tasks are cancelled without holding the restart lock: one may be
        # waiting for it, and before 3.12 wait_for can swallow a cancellation.
        current = asyncio.current_task()
        tasks = [task for task in self._tasks if task is not current]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=_STOP_GRACE)
        async with self._restart_lock:
            await self._teardown()
            self._record("stopped")
            self._set_state("stopped")
        await self._management.stop()

    async def __aenter__(self) -> Host:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    async def kill(self) -> None:
        """SIGKILL the plugin as mesh-llm does on a failure; the host respawns it.

        Returns once the process is dead; the respawn goes on in the background
        (see `wait_respawned`).

        Raises:
            PluginUnavailableError: no plugin is running.
        """
        session, process = self._session, self._process
        if session is None or process is None or self.state != "running":
            raise PluginUnavailableError(f"no running plugin to kill (state {self.state!r})")
        self._schedule_restart("manual", session)
        await process.wait()

    async def wait_respawned(self, previous_spawn_count: int, timeout: float = 60.0) -> None:
        """Wait until a plugin spawned after `previous_spawn_count` is initialized.

        Raises:
            PluginUnavailableError: the plugin went down for good, or `timeout` passed.
        """
        await self._wait_for(
            lambda: self.spawn_count > previous_spawn_count and self.state == "running",
            timeout,
        )

    # -- requests ----------------------------------------------------------

    async def request(self, payload_name: str, message: Message) -> pb.Envelope:
        """Send a host request (`payload_name` is the Envelope field) and await its reply.

        A timeout kills and respawns the plugin and retries once on the fresh
        process. A connection that ends before the reply fails the request
        (the host respawns the plugin on its own).

        Raises:
            HostDoubleError: `payload_name` is not an Envelope payload or the
                message has the wrong type.
            RequestTimeoutError: no reply on the first try nor on the retry.
            PluginUnavailableError: the plugin is down (stopped, "error",
                disabled) or its connection ended before the reply.
        """
        reply, _ = await self._request(payload_name, message, retry=True)
        return reply

    async def health(self) -> pb.HealthResponse:
        """Send one HealthRequest and return the plugin's HealthResponse.

        Raises:
            HostDoubleError: the plugin answered something else.
        """
        reply = await self.request("health_request", pb.HealthRequest())
        if reply.WhichOneof("payload") != "health_response":
            raise HostDoubleError(f"health answered with {reply.WhichOneof('payload')}")
        return reply.health_response

    async def send_event(self, kind: pb.MeshEvent.Kind, peer: pb.MeshPeer | None = None) -> bool:
        """Emit a MeshEvent, if the plugin subscribed to its kind.

        Returns:
            True if it was sent, False if the plugin did not subscribe or is not running.
        """
        if not self._subscribed(kind) or self._session is None:
            return False
        event = pb.MeshEvent(kind=kind, local_peer_id=self.peer_id)
        if peer is not None:
            event.peer.CopyFrom(peer)
        if kind == pb.MeshEvent.KIND_MESH_ID_UPDATED:
            event.mesh_id = self.mesh_id
        try:
            await self._session.send(self._envelope(mesh_event=event))
        except PluginUnavailableError:
            return False
        self.sent_events.append(event)
        return True

    async def peer_up(self, peer: pb.MeshPeer) -> bool:
        """A peer joined (or came back): remember it and tell the plugin."""
        self.known_peers[peer.peer_id] = peer
        return await self.send_event(pb.MeshEvent.KIND_PEER_UP, peer)

    async def peer_down(self, peer_id: str) -> bool:
        """A peer left: forget it and tell the plugin."""
        peer = self.known_peers.pop(peer_id, None) or pb.MeshPeer(peer_id=peer_id)
        return await self.send_event(pb.MeshEvent.KIND_PEER_DOWN, peer)

    async def peer_updated(self, peer: pb.MeshPeer) -> bool:
        """A peer's gossip (models, VRAM) or RTT changed."""
        self.known_peers[peer.peer_id] = peer
        return await self.send_event(pb.MeshEvent.KIND_PEER_UPDATED, peer)

    # -- channel traffic ---------------------------------------------------

    def declared_channels(self) -> frozenset[str]:
        """The channel names the loaded plugin declared."""
        manifest = self.manifest
        if manifest is None:
            return frozenset()
        return frozenset(channel.name for channel in manifest.mesh_channels)

    async def deliver_channel(self, message: pb.ChannelMessage, plugin_name: str) -> bool:
        """Hand a channel message from a peer to this node's plugin.

        Only to the plugin with the sender plugin's name, only on a channel it
        declared, unchanged and with request id 0.
        """
        if plugin_name != self.plugin_name:
            self._record("channel_dropped:other_plugin")
            return False
        if message.channel not in self.declared_channels():
            self._record("channel_dropped:undeclared")
            return False
        session = self._session
        if session is None:
            self._record("channel_dropped:not_running")
            return False
        envelope = self._envelope(channel_message=message)
        envelope.plugin_id = plugin_name
        try:
            await session.send(envelope)
        except PluginUnavailableError:
            self._record("channel_dropped:not_running")
            return False
        self.received_channel.append(message)
        return True

    # -- management backend ------------------------------------------------

    def binding(self, method: str, path: str) -> pb.HttpBindingManifest | None:
        """The loaded plugin's binding for exactly this method and path."""
        manifest = self.manifest
        if manifest is None or self.state in DOWN_STATES:
            return None
        return find_binding(manifest, method, path)

    def next_stream_id(self) -> str:
        """`http-<pid>-<n>`, as the host names binding streams."""
        return f"http-{os.getpid()}-{next(self._stream_ids)}"

    def board_posted(self, item: BoardItem) -> None:
        """Pass a local blackboard post on to the mesh."""
        if self.mesh is not None:
            self.mesh.board_posted(self, item)

    @property
    def board(self) -> Blackboard | None:
        """The blackboard the routes serve: only with one configured, on a private mesh."""
        return self.blackboard if self.config.mesh_visibility == "private" else None

    # -- internals -----------------------------------------------------------

    def _record(self, name: str) -> None:
        self.events.append((time.monotonic(), name))

    def _violation(self, name: str) -> None:
        self._record(f"violation:{name}")
        _log.warning("hostdouble.plugin_violation", plugin=self.plugin_name, violation=name)

    def _set_state(self, state: str) -> None:
        self.state = state
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    async def _wait_for(self, predicate: Callable[[], bool], timeout: float) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not predicate():
            if self.state in DOWN_STATES or self._stopping:
                state = "stopping" if self._stopping else self.state
                raise PluginUnavailableError(f"plugin is {state}: {self.error or 'no detail'}")
            changed = self._changed
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise PluginUnavailableError(f"plugin not ready within {timeout:g} s")
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(changed.wait(), remaining)

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            self._record(f"task_failed:{type(exc).__name__}")
            _log.error("hostdouble.task_failed", plugin=self.plugin_name, error=repr(exc))

    def _envelope(self, request_id: int = 0, **payload: Message) -> pb.Envelope:
        envelope = pb.Envelope(
            protocol_version=PROTOCOL_VERSION, plugin_id=self.plugin_name, request_id=request_id
        )
        for name, message in payload.items():
            if name not in _PAYLOADS:
                raise HostDoubleError(f"{name!r} is not an Envelope payload")
            try:
                getattr(envelope, name).CopyFrom(message)
            except TypeError:
                raise HostDoubleError(
                    f"{name!r} takes a {getattr(envelope, name).DESCRIPTOR.name}, "
                    f"not a {type(message).__name__}"
                ) from None
        return envelope

    def _subscribed(self, kind: int) -> bool:
        manifest = self.manifest
        if manifest is None:
            return False
        return any(sub.kind == kind for sub in manifest.mesh_event_subscriptions)

    async def _launch(self) -> Handshake:
        """Bind, spawn, accept, initialize. The new session becomes current on success."""
        config = self.config
        path = socket_path(config.home, config.plugin_name)
        sock = bind_plugin_socket(path)
        try:
            process = await PluginProcess.spawn(config, plugin_env(config, path))
        except PluginStartError:
            sock.close()
            path.unlink(missing_ok=True)
            raise
        self._process = process
        self.spawn_count += 1
        self._record("spawned")
        session: Session | None = None
        try:
            reader, writer = await accept_plugin(sock, path, process, config.connect_timeout)
            self._record("connected")
            session = Session(
                reader,
                writer,
                on_message=self._on_message,
                idle_timeout=config.effective_idle_timeout,
                body_timeout=config.frame_body_timeout,
                accepts_mesh_streams=config.is_076,
                plugin_name=config.plugin_name,
                on_violation=self._violation,
            )
            self._spawn(self._watch_session(session, process))
            request = self._envelope(
                next(self._request_ids), initialize_request=initialize_request(config)
            )
            try:
                reply = await session.call(request, config.init_timeout)
            except asyncio.TimeoutError:
                raise PluginStartError(
                    f"plugin did not answer initialize within {config.init_timeout:g} s"
                ) from None
            except PluginUnavailableError:
                raise PluginStartError("plugin closed the connection during initialize") from None
            handshake = validate_initialize(reply, config.plugin_name)
        except PluginStartError:
            await process.kill()
            if session is not None:
                await session.close()
            raise
        if handshake.disabled:
            self._record("disabled")
            await process.kill()
            await session.close()
            self._set_state("disabled")
            return handshake
        self.initialize_response = handshake.response
        for capability in handshake.extra_capabilities:
            self._record(f"capability:{capability}")
        self._session = session
        self._spawn(self._watch_process(process, session))
        self._record("initialized")
        self._set_state("running")
        return handshake

    async def _teardown(self) -> None:
        session, process = self._session, self._process
        self._session = None
        if process is not None:
            await process.kill()
        if session is not None:
            await session.close()

    def _schedule_restart(self, reason: str, session: Session) -> asyncio.Task[None]:
        return self._spawn(self._restart(reason, session))

    async def _restart(self, reason: str, session: Session) -> None:
        """Kill and respawn, unless `session` is no longer the current one."""
        async with self._restart_lock:
            if self._stopping or self._session is not session:
                return
            self._set_state("restarting")
            self._record("exited" if reason == "exited" else f"killed:{reason}")
            _log.info("hostdouble.restart", plugin=self.plugin_name, reason=reason)
            await self._teardown()
            try:
                handshake = await self._launch()
            except PluginStartError as exc:
                self.error = str(exc)
                self._record("respawn_failed")
                _log.warning("hostdouble.respawn_failed", plugin=self.plugin_name, reason=str(exc))
                self._set_state("error")
                return
            if not handshake.disabled:
                self._record("respawned")

    async def _watch_session(self, session: Session, process: PluginProcess) -> None:
        reason = await session.run()
        if reason == END_EOF:
            try:
                await asyncio.wait_for(process.wait(), _EXIT_GRACE)
            except asyncio.TimeoutError:
                reason = "disconnected"
            else:
                reason = "exited"
        elif reason == END_BAD_FRAME:
            _log.warning("hostdouble.bad_frame", plugin=self.plugin_name, detail=session.end_detail)
        elif reason == END_IDLE:
            reason = "idle"
        await self._restart(reason, session)

    async def _watch_process(self, process: PluginProcess, session: Session) -> None:
        await process.wait()
        if not process.killed_by_host:
            await self._restart("exited", session)

    async def _wait_ready(self) -> Session:
        config = self.config
        await self._wait_for(
            lambda: self.state == "running" and self._session is not None,
            config.connect_timeout + config.init_timeout + config.request_timeout,
        )
        assert self._session is not None  # the predicate just checked it
        return self._session

    async def _request(
        self, payload_name: str, message: Message, *, retry: bool
    ) -> tuple[pb.Envelope, Session]:
        session = await self._wait_ready()
        envelope = self._envelope(next(self._request_ids), **{payload_name: message})
        try:
            return await session.call(envelope, self.config.request_timeout), session
        except asyncio.TimeoutError:
            await asyncio.shield(self._schedule_restart("timeout", session))
            if not retry:
                raise RequestTimeoutError(
                    f"{payload_name} unanswered within {self.config.request_timeout:g} s, twice"
                ) from None
        return await self._request(payload_name, message, retry=False)

    async def _health_loop(self) -> None:
        while self.state not in DOWN_STATES and not self._stopping:
            if self.state == "running":
                await self._health_tick()
            await asyncio.sleep(self.config.health_interval)

    async def _health_tick(self) -> None:
        try:
            reply, session = await self._request("health_request", pb.HealthRequest(), retry=True)
        except (RequestTimeoutError, PluginUnavailableError):
            return  # the request path already killed and respawned it
        self.health_checks += 1
        healthy = (
            reply.WhichOneof("payload") == "health_response"
            and reply.health_response.status == pb.HealthResponse.STATUS_OK
        )
        if not healthy:
            await asyncio.shield(self._schedule_restart("health", session))

    async def _send_snapshot(self) -> None:
        accepting = pb.MeshEvent.KIND_LOCAL_ACCEPTING
        standby = pb.MeshEvent.KIND_LOCAL_STANDBY
        await self.send_event(accepting if self.config.accepting else standby)
        if self.mesh_id:
            await self.send_event(pb.MeshEvent.KIND_MESH_ID_UPDATED)
        for peer in list(self.known_peers.values()):
            await self.send_event(pb.MeshEvent.KIND_PEER_UP, peer)
        self._record("snapshot")

    async def _on_message(self, session: Session, envelope: pb.Envelope) -> None:
        payload = envelope.WhichOneof("payload")
        if payload == "channel_message":
            await self._on_channel(envelope)
        elif payload == "bulk_transfer_message":
            self.bulk_log.append(envelope.bulk_transfer_message)
        elif payload == "rpc_notification":
            self.notifications.append(envelope.rpc_notification)
        elif payload == "rpc_request":
            # Normal serve mode has no MCP bridge for plugin-initiated requests.
            error = pb.ErrorResponse(code=_NO_MCP_BRIDGE, message="No active MCP bridge")
            await session.send(self._envelope(envelope.request_id, error_response=error))
        elif payload == "open_mesh_stream_request":
            request = envelope.open_mesh_stream_request
            refusal = pb.OpenMeshStreamResponse(
                stream_id=request.stream_id,
                accepted=False,
                message="mesh streams are not supported by the host double",
            )
            await session.send(
                self._envelope(envelope.request_id, open_mesh_stream_response=refusal)
            )

    async def _on_channel(self, envelope: pb.Envelope) -> None:
        message = pb.ChannelMessage()
        message.CopyFrom(envelope.channel_message)
        if not message.source_peer_id:
            message.source_peer_id = self.peer_id
        self.channel_log.append(message)
        if message.channel not in self.declared_channels():
            self._record("channel_dropped:undeclared")
            return
        sender_name = envelope.plugin_id or self.plugin_name
        if self.mesh is not None:
            await self.mesh.relay(self, message, sender_name)
