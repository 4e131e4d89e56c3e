"""`mesh-x402 serve`: run the plugin, under mesh-llm or standalone.

Under mesh-llm ($MESH_LLM_PLUGIN_ENDPOINT set) the order matters: a plugin
that has not connected within 10 s, or is slow to answer initialize, is
disabled for the node's lifetime (0.76) or stops the node (0.66). So this
module imports only the standard library, protobuf, pydantic and the host
link; it reads the config and key file (a bad one exits 2 at once), connects,
answers initialize, and only then imports and starts the HTTP stack.

Without the endpoint, the same HTTP app runs on the gateway port only.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import importlib
import os
import signal
import sys
import tempfile
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from pydantic import ValidationError

from mesh_x402 import __version__, log
from mesh_x402._pb.meshllm.plugin.v1 import plugin_pb2 as pb
from mesh_x402.config import NodeConfig, UpstreamConfig, load_config, parse_host_port
from mesh_x402.errors import ConfigError, FrameError
from mesh_x402.keys import NodeKey, load_key_file
from mesh_x402.log import Event, get_logger
from mesh_x402.mesh.channels import Channel
from mesh_x402.mesh.manifest import initialize_response
from mesh_x402.mesh.presence import Presence
from mesh_x402.mesh.session import HostSession
from mesh_x402.mesh.streams import StreamNegotiator
from mesh_x402.mesh.view import MeshView

if TYPE_CHECKING:
    from mesh_x402.commands._settlement import SettlementRuntime
    from mesh_x402.core.ports import Settler
    from mesh_x402.http.activity import Activity
    from mesh_x402.http.server import ASGIApp, HttpServer
    from mesh_x402.mesh.channels import ChannelMessage
    from mesh_x402.mesh.peering import Peering
    from mesh_x402.store.journal import Journal

__all__ = ["configure", "effective_config", "run", "socket_path"]

ENDPOINT_ENV: Final = "MESH_LLM_PLUGIN_ENDPOINT"
TRANSPORT_ENV: Final = "MESH_LLM_PLUGIN_TRANSPORT"
NAME_ENV: Final = "MESH_LLM_PLUGIN_NAME"
DEFAULT_PLUGIN_NAME: Final = "x402"
# sun_path holds 108 bytes on Linux (104 on macOS) including the final NUL.
_MAX_SOCKET_PATH: Final = 100
_GIL_SWITCH_SECONDS: Final = 0.0005

_log = get_logger("host")


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, type=Path, help="the node's node.toml")
    parser.add_argument(
        "--gateway", metavar="HOST:PORT", help="listen here instead of [gateway] listen"
    )
    parser.add_argument("--upstream", metavar="URL", help="mesh-llm's API instead of [upstream]")


def effective_config(args: argparse.Namespace) -> NodeConfig:
    """The config file with the command-line overrides applied.

    Raises:
        ConfigError: the file is unusable, or an override is malformed.
    """
    config = load_config(args.config)
    update: dict[str, object] = {}
    if args.gateway is not None:
        try:
            parse_host_port(args.gateway)
        except ValueError as exc:
            raise ConfigError(f"--gateway: {exc}") from None
        update["gateway"] = config.gateway.model_copy(update={"listen": args.gateway})
    if args.upstream is not None:
        try:
            upstream = UpstreamConfig(
                url=args.upstream, timeout_seconds=config.upstream.timeout_seconds
            )
        except ValidationError as exc:
            raise ConfigError(f"--upstream: {exc.errors()[0]['msg']}") from None
        update["upstream"] = upstream
    return config.model_copy(update=update)


def socket_path(state_dir: Path) -> Path:
    """Where the HTTP app listens for host streams.

    `<state_dir>/http.sock` when that path is short enough for a Unix
    socket, else a name in the temp folder derived from the state folder, so
    a respawned plugin reuses (and replaces) its predecessor's socket.
    """
    candidate = state_dir.absolute() / "http.sock"
    if len(os.fsencode(candidate)) < _MAX_SOCKET_PATH:
        return candidate
    digest = hashlib.sha256(os.fsencode(state_dir.absolute())).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / f"mesh-x402-{digest}.sock"


def run(args: argparse.Namespace) -> int:
    config = effective_config(args)
    key = load_key_file(config.key_path)
    log.configure(config.node.log_level)
    # The event loop shares the GIL with worker threads that compute (the
    # reconciler's encoding and signing, the journal writer). With CPython's
    # default 5 ms switch interval, each wake-up of the loop can wait that
    # long for a busy thread; measured in-process with one CPU-bound thread
    # beside the gate, a paid request took 57 ms at 5 ms and 8.7 ms at 0.5 ms.
    sys.setswitchinterval(_GIL_SWITCH_SECONDS)
    endpoint = os.environ.get(ENDPOINT_ENV)
    if not endpoint:
        return _run_loop(_standalone(config, key))
    transport = os.environ.get(TRANSPORT_ENV, "unix")
    if transport != "unix":
        raise ConfigError(f"${TRANSPORT_ENV}: transport {transport!r} is not supported (unix only)")
    plugin_id = os.environ.get(NAME_ENV) or DEFAULT_PLUGIN_NAME
    return _run_loop(_hosted(config, key, endpoint, plugin_id))


def _run_loop(main: Coroutine[Any, Any, int]) -> int:
    """Run `main` on uvloop where it is installed (Linux, macOS), else asyncio's loop.

    Every paid request crosses the event loop a dozen times (sockets, timers,
    the journal thread's answers); libuv's loop, in C, does that for about a
    tenth less CPU per request than asyncio's selector loop in Python.
    """
    try:
        import uvloop  # noqa: PLC0415 - optional: no wheels for Windows
    except ImportError:
        return asyncio.run(main)
    return uvloop.run(main)


async def _hosted(  # noqa: PLR0915 - the session's wiring reads best in one place
    config: NodeConfig, key: NodeKey, endpoint: str, plugin_id: str
) -> int:
    """Connect to the host, answer it, then bring up HTTP; return when the host is gone."""
    try:
        reader, writer = await asyncio.open_unix_connection(endpoint)
    except OSError as exc:
        _log.error(Event.SERVE_FAILED, reason=f"cannot connect to {endpoint}: {exc.strerror}")
        return 1
    _log.info(Event.HOST_CONNECTED, endpoint=endpoint, plugin_id=plugin_id)

    view = MeshView(config.state_path)
    view.restore()
    session = HostSession(initialize_response(plugin_id, __version__))
    channel = Channel(session.send)
    presence = Presence(channel, view, __version__)
    negotiator = StreamNegotiator()
    stack = _AppStack(config, key)

    async def on_event(envelope: pb.Envelope) -> None:
        event = envelope.mesh_event
        _log.info(Event.MESH_EVENT, kind=event.kind, peer=event.peer.peer_id or None)
        view.apply(event)
        await presence.on_event(event)
        await stack.on_event(event)

    async def on_channel(envelope: pb.Envelope) -> None:
        await channel.deliver(envelope.channel_message)

    async def on_open_stream(envelope: pb.Envelope) -> pb.Envelope:
        response = await negotiator.open(envelope.open_stream_request)
        return pb.Envelope(open_stream_response=response)

    session.on_message("mesh_event", on_event)
    session.on_message("channel_message", on_channel)
    session.on_request("open_stream_request", on_open_stream)

    link = asyncio.create_task(session.run(reader, writer))
    initialized = asyncio.create_task(session.initialized.wait())
    await asyncio.wait({link, initialized}, return_when=asyncio.FIRST_COMPLETED)
    initialized.cancel()
    http: HttpServer | None = None
    settlement: SettlementRuntime | None = None
    try:
        if not link.done():
            unix_path = socket_path(config.state_path)
            try:
                http = await _start_http(config, unix_path, await stack.open(channel, view))
            except OSError as exc:
                _log.error(Event.SERVE_FAILED, reason=f"cannot listen on {unix_path}: {exc}")
                link.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await link
                return 1
            negotiator.set_endpoint(str(unix_path))
            address = await asyncio.to_thread(lambda: key.address)  # imports the curve code
            _log.info(Event.SERVE_STARTED, mode="hosted", address=address)
            settlement = await _start_settlement(
                config,
                key,
                view,
                lambda: (
                    session.initialize_request is not None
                    and session.initialize_request.mesh_visibility == pb.MESH_VISIBILITY_PRIVATE
                ),
                journal=stack.journal,
                activity=stack.activity,
            )
        await link
    except FrameError as exc:
        _log.error(Event.HOST_BAD_FRAME, reason=str(exc))
        return 1
    finally:
        if settlement is not None:
            await settlement.aclose()
        if http is not None:
            await http.stop()
        await stack.aclose()
    _log.info(Event.SERVE_STOPPED, reason="host closed the connection")
    return 0


async def _no_mesh(_envelope: pb.Envelope) -> None:
    """Standalone there is no host to carry channel messages: they go nowhere."""


async def _standalone(config: NodeConfig, key: NodeKey) -> int:
    """Serve the HTTP app on the gateway port until SIGINT or SIGTERM.

    The peer layer still runs, on a channel to nowhere and an empty mesh
    view: every paid exchange gets a signed receipt crediting this node alone
    (as a solo local model would), so the reconciler can settle it.
    """
    stack = _AppStack(config, key)
    try:
        app = await stack.open(Channel(_no_mesh), MeshView(config.state_path))
        http = await _start_http(config, None, app)
    except OSError as exc:
        _log.error(Event.SERVE_FAILED, reason=f"cannot listen on {config.gateway.listen}: {exc}")
        return 1
    _log.info(Event.SERVE_STARTED, mode="standalone", address=key.address)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    settlement = await _start_settlement(
        config, key, None, lambda: False, journal=stack.journal, activity=stack.activity
    )
    await stop.wait()
    await settlement.aclose()
    await http.stop()
    await stack.aclose()
    _log.info(Event.SERVE_STOPPED, reason="signal")
    return 0


class _AppStack:
    """The HTTP app and, under a host, the peer layer (identities, gossip, receipts).

    Built before the handshake (nothing here blocks); `open` runs after it.
    Mesh events and channel messages pass by until the peer layer is up.
    """

    def __init__(self, config: NodeConfig, key: NodeKey) -> None:
        self._config = config
        self._key = key
        self._app: ASGIApp | None = None
        self._peering: Peering | None = None
        self.journal: Journal | None = None  # the gate's, once it is up
        self.activity: Activity | None = None  # likewise

    async def on_event(self, event: pb.MeshEvent) -> None:
        if self._peering is not None:
            await self._peering.on_event(event)

    async def _receive(self, message: ChannelMessage) -> None:
        if self._peering is not None:
            await self._peering.receive(message)

    async def open(self, channel: Channel | None, view: MeshView | None) -> ASGIApp:
        """`_open_app`'s app behind the operator's JSON routes (`http.operator_pages`).

        Those routes read the ledger and a background chain snapshot, so
        they answer even when the gate could not start.
        """
        inner = await self._open_app(channel, view)
        await asyncio.to_thread(importlib.import_module, "mesh_x402.http.operator_pages")
        from mesh_x402.http.operator_pages import OperatorApp, OperatorPages  # noqa: PLC0415

        signer = await asyncio.to_thread(lambda: self._key.address)  # imports the curve code
        pages = OperatorPages(
            self._config, signer, (lambda: None) if view is None else (lambda: view.local_peer_id)
        )
        pages.start()
        self._app = OperatorApp(pages, inner)
        return self._app

    async def _open_app(self, channel: Channel | None, view: MeshView | None) -> ASGIApp:
        """The x402 gate when `[chain] token` and `settlement` are set, else the placeholder.

        A chain that cannot be reached at start leaves the placeholder (501
        answers) rather than no plugin: the host link must stay up.
        """
        # The first import takes a few hundred ms: done in a thread so the host
        # link keeps answering health checks meanwhile.
        await asyncio.to_thread(importlib.import_module, "mesh_x402.http.server")
        from mesh_x402.http.placeholder import placeholder_app  # noqa: PLC0415

        self._app = placeholder_app
        config = self._config
        if config.chain.token is None or config.chain.settlement is None:
            return self._app
        await asyncio.to_thread(importlib.import_module, "mesh_x402.mesh.peering")
        from mesh_x402.errors import ChainError, KeyFileError  # noqa: PLC0415
        from mesh_x402.http.gate import open_gate  # noqa: PLC0415
        from mesh_x402.mesh.peering import Peering  # noqa: PLC0415
        from mesh_x402.state import load_identity  # noqa: PLC0415

        layer = None
        if channel is not None and view is not None:
            layer = Peering(config, self._key, channel, view)
            await layer.prepare()
            channel.subscribe(self._receive)
        try:
            identity = load_identity(config.state_path)
            gate = await open_gate(
                config,
                agent_id=None if identity is None else identity.agent_id,
                receipts=None if layer is None else layer.attach,
                settler=await self._settler(),
            )
        except (ConfigError, KeyFileError, ChainError) as exc:
            _log.error(Event.SERVE_FAILED, reason=f"payment gate unavailable: {exc}")
            return self._app
        self._app = gate
        self.journal = gate.journal
        self.activity = gate.activity
        self._peering = layer
        return self._app

    async def _settler(self) -> Callable[[Journal], Settler] | None:
        """In settlement mode `immediate`, the gate's settler: a reconciler of its own
        on the gate's journal (the state folder's lock file keeps its transactions
        and the loop's apart); None in mode `deferred`.

        Raises:
            ConfigError, KeyFileError, ChainError: as `connect_node`.
        """
        if self._config.settlement.mode != "immediate":
            return None
        await asyncio.to_thread(importlib.import_module, "mesh_x402.commands.reconcile")
        from mesh_x402.commands._chain import connect_node  # noqa: PLC0415
        from mesh_x402.commands.reconcile import reconciler_for  # noqa: PLC0415

        node = await asyncio.to_thread(connect_node, self._config.path)
        return lambda journal: reconciler_for(node, journal)

    async def aclose(self) -> None:
        """Close the peer layer, then the gate (journal, upstream pool); after the servers."""
        if self._peering is not None:
            await self._peering.aclose()
        aclose = getattr(self._app, "aclose", None)  # the gate has one, the placeholder none
        if aclose is not None:
            await aclose()


async def _start_settlement(
    config: NodeConfig,
    key: NodeKey,
    view: MeshView | None,
    private: Callable[[], bool],
    *,
    journal: Journal | None,
    activity: Activity | None,
) -> SettlementRuntime:
    """The reconciler loop, operator API and blackboard (imported now, in a thread: grpc
    and web3 are slow to import and the host link must keep answering), on the
    gate's journal and pacing itself by the gate's activity when there is a gate."""
    await asyncio.to_thread(importlib.import_module, "mesh_x402.commands._settlement")
    from mesh_x402.commands._settlement import SettlementRuntime  # noqa: PLC0415

    runtime = SettlementRuntime(
        config, key, view=view, private=private, journal=journal, activity=activity
    )
    await runtime.start()
    return runtime


async def _start_http(config: NodeConfig, unix_path: Path | None, app: ASGIApp) -> HttpServer:
    """Import the HTTP stack (only now: it is the slow part) and start it.

    Under a host the gateway port is a second door: if it cannot be bound
    the binding socket still serves this machine's clients, so that is
    logged, not fatal. Standalone, the gateway is the only door.

    Raises:
        OSError: a socket that must exist cannot be bound.
    """
    from mesh_x402.http.server import HttpServer  # noqa: PLC0415

    server = HttpServer(app)
    if unix_path is not None:
        server.listen_unix(unix_path)
    host, port = parse_host_port(config.gateway.listen)
    try:
        server.listen_tcp(host, port)
    except OSError as exc:
        if unix_path is None:
            raise
        _log.warning(Event.HTTP_GATEWAY_UNAVAILABLE, listen=config.gateway.listen, reason=str(exc))
    await server.start()
    return server
