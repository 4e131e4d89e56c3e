"""What `serve` runs for settlement: the reconciler loop, the operator API, the blackboard.

Started after the host link is up (imports and the chain connection are
slow, and a plugin slow to answer initialize is disabled). None of it may
take the plugin down: an RPC that does not answer at start is retried with
back-off in the background (the operator API meanwhile serves the ledger),
an operator address that cannot be bound is logged, and the blackboard is
best effort.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Final

from mesh_x402 import __version__
from mesh_x402.chain.reconciler import DEFAULT_BACKOFF
from mesh_x402.commands._chain import connect_node
from mesh_x402.commands.reconcile import reconciler_for
from mesh_x402.config import NodeConfig
from mesh_x402.errors import ChainError, ConfigError, KeyFileError, RpcUnavailable
from mesh_x402.http.activity import Activity
from mesh_x402.keys import NodeKey
from mesh_x402.log import Event, get_logger
from mesh_x402.mesh.blackboard import BlackboardPoster
from mesh_x402.mesh.view import MeshView
from mesh_x402.rpc.server import OperatorServer, resolve_listen
from mesh_x402.rpc.service import NodeIdentity, OperatorService
from mesh_x402.state import load_identity
from mesh_x402.store.journal import Journal
from mesh_x402.store.receipts import ReceiptStore

__all__ = ["SettlementRuntime"]

_STOP_GRACE: Final = 1.0
_log = get_logger("chain")


class SettlementRuntime:
    """The reconciler loop, the operator gRPC server and the blackboard poster of one node.

    Args:
        config: the node config.
        key: the node key (its address is the operator API's `signer`).
        view: the mesh view under a host (peer id, mesh id); None standalone.
        private: whether the host said the mesh is private (the blackboard's condition).
        journal: the gate's journal, shared (and left open by `aclose`); None
            opens one. Sharing matters: the gate writes on its event loop, and
            a second connection's write transaction makes SQLite's busy
            handler sleep there (1 ms and more), where the shared one's lock
            is released the moment the reconciler's transaction ends.
        activity: the gate's, so a due pass waits for quiet moments
            (`settlement.idle_wait_seconds`, not in mode immediate); None:
            passes never wait.
    """

    def __init__(
        self,
        config: NodeConfig,
        key: NodeKey,
        *,
        view: MeshView | None,
        private: Callable[[], bool],
        journal: Journal | None = None,
        activity: Activity | None = None,
    ) -> None:
        self._config = config
        self._key = key
        self._view = view
        self._shared_journal = journal
        self._activity = activity
        self._private = private
        self._journal: Journal | None = None
        self._server: OperatorServer | None = None
        self._poster: BlackboardPoster | None = None
        self._loop: asyncio.Task[None] | None = None

    def _mesh(self) -> tuple[str | None, str | None]:
        view = self._view
        return (None, None) if view is None else (view.local_peer_id, view.mesh_id)

    async def start(self) -> None:
        """Open the ledger, serve the operator API, and start reconciling in the background."""
        config = self._config
        journal = self._shared_journal
        if journal is None:
            journal = await asyncio.to_thread(Journal.in_state_dir, config.state_path)
        self._journal = journal
        identity = await asyncio.to_thread(load_identity, config.state_path)
        registry = config.chain.identity_registry or ""
        registered = identity is not None and identity.identity_registry.lower() == registry.lower()
        service = OperatorService(
            identity=NodeIdentity(
                signer=await asyncio.to_thread(lambda: self._key.address),
                agent_id=identity.agent_id if identity is not None and registered else None,
                chain_id=config.chain.chain_id,
                identity_registry=registry,
                settlement=config.chain.settlement or "",
                token=config.chain.token or "",
                version=__version__,
            ),
            journal=journal,
            receipts=ReceiptStore(journal),
            reconciler=None,
            mesh=self._mesh,
        )
        if self._view is not None:
            view = self._view
            self._poster = BlackboardPoster(
                config.mesh.management_url,
                private=self._private,
                peer_id=lambda: view.local_peer_id,
            )
        try:
            address = resolve_listen(config.operator.listen, config.folder)
            server = OperatorServer(service, address)
            await server.start()
            self._server = server
        except (ConfigError, OSError) as exc:
            _log.error(Event.SERVE_FAILED, reason=f"operator API unavailable: {exc}")
        if config.chain.settlement is not None and config.chain.token is not None:
            self._loop = asyncio.create_task(self._reconcile_forever(service, journal))

    async def _reconcile_forever(self, service: OperatorService, journal: Journal) -> None:
        """Connect (retrying while the RPC is down), then reconcile every interval."""
        config = self._config
        delays = DEFAULT_BACKOFF.delays()
        while True:
            try:
                node = await asyncio.to_thread(connect_node, config.path)
                break
            except RpcUnavailable as exc:
                delay = next(delays)
                _log.warning(Event.RECONCILE_RETRY, reason=str(exc), delay=delay)
                await asyncio.sleep(delay)
            except (ConfigError, KeyFileError, ChainError) as exc:
                _log.error(Event.RECONCILE_FAILED, reason=f"reconciler not started: {exc}")
                return
        on_batch = self._poster.on_batch if self._poster is not None else None
        reconciler = reconciler_for(node, journal, on_batch=on_batch)
        service.reconciler = reconciler
        # Not in mode immediate: a pass holds the state folder's reconcile lock,
        # which the gate's own settlements (a client waiting) must not wait for.
        activity = None if config.settlement.mode == "immediate" else self._activity
        await reconciler.run_forever(
            config.settlement.interval_seconds,
            idle_seconds=None if activity is None else activity.idle_seconds,
            idle_wait=config.settlement.idle_wait_seconds,
        )

    async def aclose(self) -> None:
        """Stop the loop (a pass in a worker thread finishes on its own), the API, the ledger."""
        if self._loop is not None:
            self._loop.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop
        if self._server is not None:
            await self._server.stop(_STOP_GRACE)
        if self._poster is not None:
            await self._poster.aclose()
        if self._journal is not None and self._journal is not self._shared_journal:
            self._journal.close()
