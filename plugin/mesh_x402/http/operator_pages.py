"""JSON for the operator's Payments page: identity, balances, receipts, batches, earnings.

Routes (GET only, JSON, amounts as decimal strings of atomic units):

    /x402/node               agentId, signer, wallet, peer id binding, chain, registry
    /x402/balances           credited, withdrawn, pending settlement, refunds owed
    /x402/receipts?limit=N   this node's newest payments with their receipts
    /x402/batches?limit=N    settlement batches: items, total, gas, tx, confirmations
    /x402/earnings           this agent's earnings over time (buckets and running total)

They are served on both doors of the plugin's HTTP app: as streamed
bindings through the host's management port (which admits only trusted
local callers itself), and on the gateway port, where this module applies
the same rule (a loopback peer; `Host` and `Origin`, when present, naming a
loopback host) and refuses anyone else with 403: the gateway is public.

Nothing here waits on the chain. A `ChainWatcher` reads the chain in a
worker thread every few seconds and the routes serve its last snapshot;
when the chain cannot be read, `chain.connected` is false and `chain.error`
says why, and the ledger figures are still served.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, Final
from urllib.parse import parse_qs, urlsplit

from mesh_x402.chain.bindings import PEER_ID_KEY, IdentityRegistryBinding, SettlementBinding
from mesh_x402.chain.client import ChainClient
from mesh_x402.chain.registration import agent_registry_id
from mesh_x402.config import NodeConfig
from mesh_x402.errors import PluginError
from mesh_x402.hostdouble.management import is_trusted_local as host_rule
from mesh_x402.http.app import strip_binding_prefix
from mesh_x402.http.paywall import json_response
from mesh_x402.http.server import ASGIApp, Receive, Scope, Send
from mesh_x402.log import Event, get_logger
from mesh_x402.state import load_identity
from mesh_x402.store.journal import Journal, PaymentRecord
from mesh_x402.store.receipts import ReceiptStore
from mesh_x402.store.settlements import Batch, SettlementStore

__all__ = [
    "ROUTES",
    "ChainFacts",
    "ChainWatcher",
    "OperatorApp",
    "OperatorPages",
    "is_trusted_local",
]

ROUTES: Final = (
    "/x402/node",
    "/x402/balances",
    "/x402/receipts",
    "/x402/batches",
    "/x402/earnings",
)
DEFAULT_LIMIT: Final = 20
MAX_LIMIT: Final = 500
# Earnings bucket widths (seconds), the narrowest giving at most _MAX_BUCKETS points.
_BUCKETS: Final = (60, 300, 900, 3600, 6 * 3600, 86400, 7 * 86400)
_MAX_BUCKETS: Final = 48
_MIN_BUCKETS: Final = 12
# A read that hangs must not hold the plugin's exit (asyncio.run joins worker threads).
_READ_TIMEOUT_SECONDS: Final = 5.0
_MAX_RETRY_SECONDS: Final = 60.0

_log = get_logger("http")


def is_trusted_local(scope: Scope) -> bool:
    """mesh-llm's "trusted local caller" rule, for a request on the gateway port.

    The rule itself is the one the host double applies for the host
    (`hostdouble.management.is_trusted_local`). A request on the binding's
    Unix socket (no client address) came through the host, which applied it
    already.
    """
    client = scope.get("client")
    if client is None:
        return True
    host = origin = None
    for name, value in scope.get("headers", ()):
        key = name.lower()
        if key == b"host":
            host = value.decode("latin-1")
        elif key == b"origin":
            origin = value.decode("latin-1")
    return host_rule(str(client[0]), host, origin)


def _without_secrets(text: str, rpc: str) -> str:
    """`text` with the RPC URL cut to scheme://host[:port]: provider URLs often
    carry an API key in their path or query, and the page may be screenshotted."""
    parts = urlsplit(rpc)
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    return text.replace(rpc, f"{parts.scheme}://{host}") if rpc else text


@dataclass(frozen=True)
class ChainFacts:
    """What the chain said at the last successful read (or why it could not be read)."""

    connected: bool = False
    error: str | None = "not read yet"
    checked_at: float | None = None
    block: int | None = None
    wallet: str | None = None
    peer_id_on_chain: str | None = None
    registered: bool | None = None
    credited: int | None = None
    withdrawn: int | None = None
    gas: dict[str, tuple[int, int]] = field(default_factory=dict)
    """tx hash -> (gas used, block number) of settle transactions already mined."""


class ChainWatcher:
    """Reads this node's on-chain facts in a worker thread, every `interval` seconds.

    Args:
        config: the node config (`[chain]`).
        agent_id: returns this node's agentId (it may appear after start).
        tx_hashes: returns the settle transactions whose gas to look up.
        interval: seconds between reads.
    """

    def __init__(
        self,
        config: NodeConfig,
        agent_id: Callable[[], int | None],
        tx_hashes: Callable[[], list[str]],
        *,
        interval: float = 3.0,
    ) -> None:
        self._config = config
        self._agent_id = agent_id
        self._tx_hashes = tx_hashes
        self._interval = interval
        self._client: ChainClient | None = None
        self.facts = ChainFacts()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start reading in the background (in the running loop)."""
        self._task = asyncio.get_running_loop().create_task(self._loop())

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _loop(self) -> None:
        delay = self._interval
        while True:
            try:
                self.facts = await asyncio.to_thread(self.read)
                delay = self._interval
            except (PluginError, OSError, ValueError) as exc:
                error = _without_secrets(str(exc), self._config.chain.rpc)
                # Logged once per outage, not on every read while it lasts.
                if self.facts.connected or self.facts.checked_at is None:
                    _log.warning(Event.OPERATOR_CHAIN_UNAVAILABLE, reason=error)
                self._client = None
                self.facts = replace(
                    self.facts, connected=False, error=error, checked_at=time.time()
                )
                # Back off while the chain is down: each failed read also logs in the client.
                delay = min(delay * 2, _MAX_RETRY_SECONDS)
            await asyncio.sleep(delay)

    def read(self) -> ChainFacts:
        """One read of everything (blocking).

        Raises:
            ChainError: the chain is unreachable or another chain.
        """
        chain = self._config.chain
        if self._client is None:
            self._client = ChainClient.connect(
                chain.rpc,
                chain_id=chain.chain_id,
                confirmations=chain.confirmations,
                request_timeout=_READ_TIMEOUT_SECONDS,
            )
        client = self._client
        facts = ChainFacts(connected=True, error=None, checked_at=time.time())
        facts = replace(facts, block=client.block_number())
        agent_id = self._agent_id()
        if agent_id is not None and chain.identity_registry is not None:
            registry = IdentityRegistryBinding(client, chain.identity_registry)
            exists = registry.exists(agent_id)
            facts = replace(facts, registered=exists)
            if exists:
                on_chain = registry.get_metadata(agent_id, PEER_ID_KEY)
                facts = replace(
                    facts,
                    wallet=registry.get_agent_wallet(agent_id),
                    peer_id_on_chain=on_chain.hex() if on_chain else None,
                )
        if agent_id is not None and chain.settlement is not None:
            settlement = SettlementBinding(
                client, chain.settlement, from_block=chain.settlement_block
            )
            facts = replace(
                facts,
                credited=settlement.balance_of(agent_id),
                withdrawn=settlement.withdrawn(agent_id),
            )
        gas = dict(self.facts.gas)
        for tx_hash in self._tx_hashes():
            if tx_hash in gas:
                continue
            receipt = client.receipt_of(tx_hash)
            if receipt is not None:
                gas[tx_hash] = (int(receipt["gasUsed"]), int(receipt["blockNumber"]))
        return replace(facts, gas=gas)


def _amount(value: int | None) -> str | None:
    return None if value is None else str(value)


def _limit(query: dict[str, list[str]]) -> int:
    values = query.get("limit")
    if not values:
        return DEFAULT_LIMIT
    try:
        limit = int(values[-1])
    except ValueError:
        raise _BadQueryError(f"limit must be an integer, got {values[-1]!r}") from None
    if not 1 <= limit <= MAX_LIMIT:
        raise _BadQueryError(f"limit must be between 1 and {MAX_LIMIT}, got {limit}")
    return limit


class _BadQueryError(Exception):
    """A query parameter the routes cannot use (answered 400)."""


class OperatorPages:
    """The five routes over this node's ledger and the watcher's chain snapshot.

    Args:
        config: the node config.
        signer: this node's EVM address.
        local_peer_id: returns the mesh peer id the plugin has seen for itself.
        watcher: the chain snapshot; None when the node has no chain configured.
        clock: unix seconds.
    """

    def __init__(
        self,
        config: NodeConfig,
        signer: str,
        local_peer_id: Callable[[], str | None],
        *,
        chain_interval: float = 3.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._config = config
        self._signer = signer
        self._local_peer_id = local_peer_id
        self._clock = clock
        self._journal = Journal.in_state_dir(config.state_path)
        self._receipts = ReceiptStore(self._journal)
        self._settlements = SettlementStore(self._journal)
        self._agent_id: int | None = None
        self.watcher = ChainWatcher(
            config, self._current_agent_id, self._open_tx_hashes, interval=chain_interval
        )

    def start(self) -> None:
        self.watcher.start()

    async def aclose(self) -> None:
        await self.watcher.aclose()
        self._journal.close()

    def _current_agent_id(self) -> int | None:
        """The agentId from the node state (read again until there is one: `register`
        may run while the plugin is up)."""
        if self._agent_id is None:
            identity = load_identity(self._config.state_path)
            chain = self._config.chain
            if identity is not None and identity.chain_id == chain.chain_id:
                self._agent_id = identity.agent_id
        return self._agent_id

    def _open_tx_hashes(self) -> list[str]:
        return [b.tx_hash for b in self._settlements.recent(MAX_LIMIT) if b.tx_hash]

    def _chain_json(self) -> dict[str, Any]:
        facts = self.watcher.facts
        return {
            "connected": facts.connected,
            "error": facts.error,
            "chainId": self._config.chain.chain_id,
            "block": facts.block,
            "checkedAt": facts.checked_at,
        }

    # -- the routes (blocking: run in a worker thread) -------------------------

    def node(self) -> dict[str, Any]:
        chain = self._config.chain
        facts = self.watcher.facts
        local = self._local_peer_id()
        on_chain = facts.peer_id_on_chain
        if not facts.connected or facts.registered is None:
            binding = "unknown"
        elif on_chain is None:
            binding = "unset"
        elif local is None:
            binding = "unknown"
        else:
            binding = "match" if on_chain == local.lower() else "mismatch"
        registry = chain.identity_registry
        return {
            "agentId": self._current_agent_id(),
            "registered": facts.registered,
            "signer": self._signer,
            "wallet": facts.wallet,
            "peerId": {"local": local, "onChain": on_chain},
            "peerIdBinding": binding,
            "identityRegistry": registry,
            "agentRegistry": None
            if registry is None
            else agent_registry_id(chain.chain_id, registry),
            "settlement": chain.settlement,
            "token": chain.token,
            "chain": self._chain_json(),
        }

    def balances(self) -> dict[str, Any]:
        with self._journal.connection() as db:
            pending, refunds, count = db.execute(
                "SELECT COALESCE(SUM(charge), 0), COALESCE(SUM(value - charge), 0), COUNT(*) "
                "FROM payments WHERE state = 'chargeable'"
            ).fetchone()
            settled, settled_count = db.execute(
                "SELECT COALESCE(SUM(charge), 0), COUNT(*) FROM payments WHERE state = 'settled'"
            ).fetchone()
        facts = self.watcher.facts
        return {
            "agentId": self._current_agent_id(),
            "credited": _amount(facts.credited),
            "withdrawn": _amount(facts.withdrawn),
            "pendingSettlement": str(pending),
            "pendingPayments": int(count),
            "refundsOwed": str(refunds),
            "settled": str(settled),
            "settledPayments": int(settled_count),
            "chain": self._chain_json(),
        }

    def _receipt_row(self, record: PaymentRecord) -> dict[str, Any]:
        stored = self._receipts.for_payment(record.receipt_id)
        shares = None
        receipt_hash = None
        if stored is not None:
            receipt_hash = "0x" + stored.receipt_hash.hex()
            shares = [
                {"agentId": c.agent_id, "amount": str(c.amount)} for c in stored.receipt.credits
            ]
        tokens = None
        if record.prompt_tokens is not None and record.completion_tokens is not None:
            tokens = {"prompt": record.prompt_tokens, "completion": record.completion_tokens}
        charge = record.charge
        return {
            "receiptId": record.receipt_id,
            "receiptHash": receipt_hash,
            "model": record.model,
            "payer": record.payer,
            "tokens": tokens,
            "authorized": str(record.value),
            "charge": _amount(charge),
            "refund": None if charge is None else str(record.value - charge),
            "shares": shares,
            "state": record.state.value,
            "transaction": record.transaction,
            "createdAt": record.created_at,
        }

    def receipts(self, limit: int) -> dict[str, Any]:
        with self._journal.connection() as db:
            ids = [
                str(row[0])
                for row in db.execute(
                    "SELECT receipt_id FROM payments ORDER BY created_at DESC, receipt_id LIMIT ?",
                    (limit,),
                )
            ]
            total = int(db.execute("SELECT COUNT(*) FROM payments").fetchone()[0])
        rows = []
        for receipt_id in ids:
            record = self._journal.get(receipt_id)
            if record is not None:
                rows.append(self._receipt_row(record))
        return {"total": total, "receipts": rows, "chain": self._chain_json()}

    def _batch_json(self, batch: Batch) -> dict[str, Any]:
        facts = self.watcher.facts
        mined = facts.gas.get(batch.tx_hash)
        block = batch.block_number if batch.block_number is not None else (mined or (0, None))[1]
        confirmations = None
        if facts.block is not None and block is not None:
            confirmations = max(0, facts.block - block + 1)
        return {
            "id": batch.id,
            "state": batch.state.value,
            "txHash": batch.tx_hash,
            "items": len(batch.entries),
            "total": str(sum(e.charge for e in batch.entries)),
            "value": str(sum(e.value for e in batch.entries)),
            "gasUsed": None if mined is None else mined[0],
            "blockNumber": block,
            "confirmations": confirmations,
            "reason": batch.reason,
            "createdAt": batch.created_at,
        }

    def batches(self, limit: int) -> dict[str, Any]:
        summary = self._settlements.summary()
        return {
            "count": sum(summary.batches.values()),
            "byState": dict(summary.batches),
            "batches": [self._batch_json(b) for b in self._settlements.recent(limit)],
            "chain": self._chain_json(),
        }

    def earnings(self) -> dict[str, Any]:
        """This agent's credits in the receipts it holds, by receipt time; or, before
        the node has an agentId or receipts, the charges of its own payments."""
        agent_id = self._current_agent_id()
        points: list[tuple[float, int]] = []
        source = "receipts"
        if agent_id is not None:
            after = 0.0
            while True:
                page = self._receipts.receipts(limit=MAX_LIMIT, after=after)
                for stored in page:
                    amount = sum(c.amount for c in stored.receipt.credits if c.agent_id == agent_id)
                    if amount:
                        points.append((float(stored.receipt.timestamp), amount))
                if len(page) < MAX_LIMIT:
                    break
                after = page[-1].created_at
        if not points:
            source = "payments"
            with self._journal.connection() as db:
                points = [
                    (float(t), int(c))
                    for t, c in db.execute(
                        "SELECT updated_at, charge FROM payments "
                        "WHERE state IN ('chargeable', 'settled') AND charge IS NOT NULL"
                    )
                ]
        return {"agentId": agent_id, "source": source, **_bucketed(points, self._clock())}


def _bucketed(points: list[tuple[float, int]], now: float) -> dict[str, Any]:
    """Sum `points` into equal time buckets from the first one to `now`."""
    if not points:
        return {"bucketSeconds": _BUCKETS[0], "total": "0", "series": []}
    first = min(t for t, _ in points)
    span = max(now, *(t for t, _ in points)) - first
    width = next((w for w in _BUCKETS if span / w < _MAX_BUCKETS), _BUCKETS[-1])
    # At least _MIN_BUCKETS points up to now, so a young node's chart still has a line.
    last = int(max(now, first) // width) * width
    start = min(int(first // width) * width, last - (_MIN_BUCKETS - 1) * width)
    count = (last - start) // width + 1
    sums = [0] * count
    tallies = [0] * count
    for t, amount in points:
        index = min(count - 1, int((t - start) // width))
        sums[index] += amount
        tallies[index] += 1
    series = []
    running = 0
    for index, amount in enumerate(sums):
        running += amount
        series.append(
            {
                "start": start + index * width,
                "earned": str(amount),
                "count": tallies[index],
                "cumulative": str(running),
            }
        )
    return {"bucketSeconds": width, "total": str(running), "series": series}


class OperatorApp:
    """Serves `ROUTES` in front of another app (the gate or the placeholder)."""

    def __init__(self, pages: OperatorPages, inner: ASGIApp) -> None:
        self._pages = pages
        self._inner = inner

    async def aclose(self) -> None:
        """Stop the chain reads, close the ledger, then the inner app (if it closes)."""
        await self._pages.aclose()
        inner_close = getattr(self._inner, "aclose", None)
        if inner_close is not None:
            await inner_close()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._inner(scope, receive, send)
            return
        path = strip_binding_prefix(scope.get("path", "/"))
        if path not in ROUTES:
            await self._inner(scope, receive, send)
            return
        if not is_trusted_local(scope):
            await json_response(
                send,
                403,
                {
                    "error": {
                        "message": "operator routes answer local callers only",
                        "type": "forbidden",
                    }
                },
            )
            return
        if scope.get("method") != "GET":
            await json_response(
                send,
                405,
                {"error": {"message": "use GET", "type": "invalid_request_error"}},
                [(b"allow", b"GET")],
            )
            return
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        try:
            body = await asyncio.to_thread(self._answer, path, query)
        except _BadQueryError as exc:
            await json_response(
                send, 400, {"error": {"message": str(exc), "type": "invalid_request_error"}}
            )
            return
        await json_response(send, 200, body, [(b"cache-control", b"no-store")])

    def _answer(self, path: str, query: dict[str, list[str]]) -> dict[str, Any]:
        pages = self._pages
        if path == "/x402/node":
            return pages.node()
        if path == "/x402/balances":
            return pages.balances()
        if path == "/x402/receipts":
            return pages.receipts(_limit(query))
        if path == "/x402/batches":
            return pages.batches(_limit(query))
        return pages.earnings()
