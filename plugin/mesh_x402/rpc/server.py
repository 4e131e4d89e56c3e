"""The operator API on a `grpc.aio` server: a Unix socket or a loopback port.

`[operator] listen` is `unix:PATH` (relative to the config file's folder)
or `HOST:PORT` on a loopback address: the API shows money and receipts and
can trigger transactions, and it has no authentication of its own, so it is
never offered beyond this machine (a sidecar that needs it remotely tunnels
it). The adapter maps `OperatorError` codes to gRPC status codes; stop() is
graceful (in-flight calls get `grace` seconds, streams are cancelled).
"""

from __future__ import annotations

import ipaddress
from collections.abc import AsyncIterator, Awaitable
from pathlib import Path
from typing import Any, Final, TypeVar

import grpc
from grpc import aio

from mesh_x402._pb.mesh_x402.v1 import operator_pb2 as pb
from mesh_x402._pb.mesh_x402.v1 import operator_pb2_grpc as pb_grpc
from mesh_x402.config import parse_host_port
from mesh_x402.errors import ConfigError
from mesh_x402.log import Event, get_logger
from mesh_x402.rpc.service import OperatorError, OperatorService

__all__ = ["OperatorServer", "resolve_listen"]

_T = TypeVar("_T")
_Context = aio.ServicerContext[Any, Any]
_STATUS: Final = {
    "not_found": grpc.StatusCode.NOT_FOUND,
    "invalid_argument": grpc.StatusCode.INVALID_ARGUMENT,
    "failed_precondition": grpc.StatusCode.FAILED_PRECONDITION,
    "unavailable": grpc.StatusCode.UNAVAILABLE,
}
_log = get_logger("rpc")


def resolve_listen(listen: str, folder: Path) -> str:
    """The gRPC address for `[operator] listen`: `unix:/abs/path` or `HOST:PORT` on loopback.

    Raises:
        ConfigError: not `unix:PATH` or a loopback `HOST:PORT`.
    """
    if listen.startswith("unix:"):
        raw = listen.removeprefix("unix:")
        if not raw:
            raise ConfigError("operator.listen: unix: needs a path")
        path = Path(raw)
        return f"unix:{path if path.is_absolute() else (folder / path).absolute()}"
    try:
        host, port = parse_host_port(listen)
    except ValueError as exc:
        raise ConfigError(f"operator.listen: {exc}") from None
    loopback = host == "localhost"
    if not loopback:
        try:
            loopback = ipaddress.ip_address(host).is_loopback
        except ValueError:
            loopback = False
    if not loopback:
        raise ConfigError(f"operator.listen: {host} is not a loopback address (no remote access)")
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _clear_socket(path: Path) -> None:
    """Make the socket's folder, and remove a socket a killed process left behind."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)


# The method names are the proto's (PascalCase), as the generated base class expects.
class _Adapter(pb_grpc.OperatorServicer):
    """gRPC method names onto the transport-free service."""

    def __init__(self, service: OperatorService) -> None:
        self._service = service

    @staticmethod
    async def _answer(context: _Context, call: Awaitable[_T]) -> _T:
        try:
            return await call
        except OperatorError as exc:
            await context.abort(_STATUS[exc.code], str(exc))
            raise  # abort raises; this keeps type checkers satisfied

    async def GetIdentity(self, request: pb.GetIdentityRequest, context: _Context) -> pb.Identity:  # noqa: N802
        return await self._answer(context, self._service.get_identity(request))

    async def GetBalances(self, request: pb.GetBalancesRequest, context: _Context) -> pb.Balances:  # noqa: N802
        return await self._answer(context, self._service.get_balances(request))

    async def ListReceipts(  # noqa: N802
        self, request: pb.ListReceiptsRequest, context: _Context
    ) -> pb.ListReceiptsResponse:
        return await self._answer(context, self._service.list_receipts(request))

    async def GetReceipt(  # noqa: N802
        self, request: pb.GetReceiptRequest, context: _Context
    ) -> pb.ReceiptRecord:
        return await self._answer(context, self._service.get_receipt(request))

    async def StreamReceipts(  # noqa: N802
        self, request: pb.StreamReceiptsRequest, context: _Context
    ) -> AsyncIterator[pb.ReceiptRecord]:
        async for record in self._service.stream_receipts(request):
            yield record

    async def GetSettlementStatus(  # noqa: N802
        self, request: pb.GetSettlementStatusRequest, context: _Context
    ) -> pb.SettlementStatus:
        return await self._answer(context, self._service.get_settlement_status(request))

    async def Reconcile(  # noqa: N802
        self, request: pb.ReconcileRequest, context: _Context
    ) -> pb.ReconcileResponse:
        return await self._answer(context, self._service.reconcile(request))


class OperatorServer:
    """The operator API served by `grpc.aio` on one address.

    Args:
        service: the transport-free service.
        address: from `resolve_listen` (`unix:/abs/path` or loopback `HOST:PORT`).
    """

    def __init__(self, service: OperatorService, address: str) -> None:
        self._server = aio.server()
        # The generated module has no type stubs.
        pb_grpc.add_OperatorServicer_to_server(_Adapter(service), self._server)  # type: ignore[no-untyped-call]
        self._address = address
        self.port: int | None = None

    @property
    def address(self) -> str:
        """Where clients connect (`unix:...`, or `HOST:PORT` with the bound port)."""
        if self._address.startswith("unix:") or self.port is None:
            return self._address
        host = self._address.rpartition(":")[0]
        return f"{host}:{self.port}"

    async def start(self) -> None:
        """Bind and start serving.

        Raises:
            OSError: the address cannot be bound.
        """
        if self._address.startswith("unix:"):
            _clear_socket(Path(self._address.removeprefix("unix:")))
        try:
            self.port = self._server.add_insecure_port(self._address)
        except RuntimeError as exc:
            raise OSError(f"cannot listen on {self._address}: {exc}") from None
        await self._server.start()
        _log.info(Event.OPERATOR_LISTENING, address=self.address)

    async def stop(self, grace: float = 2.0) -> None:
        """Stop accepting calls; give running ones `grace` seconds, then cancel them."""
        await self._server.stop(grace)
        _log.info(Event.OPERATOR_STOPPED)
