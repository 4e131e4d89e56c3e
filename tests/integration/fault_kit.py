"""Kit for the fault and abuse tests: a hosted, paying, settling node on anvil, and log checks.

`paying_node` starts `mesh-x402 serve` under the host double (private mesh,
gateway on a free loopback port) in front of the fake mesh-llm API, on the
contracts of a `settlement_kit` world, so payments get signed receipts and
are settleable. Clients pay with `pay_once`, signing with the SDK-free payer
of `mesh_x402.core.payer`. `Reconciling` runs `mesh-x402 reconcile` as its
own process. Every plugin's and reconciler's output goes to a file under the
test's folder; `assert_no_secrets` reads them all at the end.
"""

from __future__ import annotations

import asyncio
import base64
import json
import signal
import socket
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from eth_account.signers.local import LocalAccount
from mesh_x402.chain.anvil import Anvil
from mesh_x402.core.payer import encode_header, sign_payment
from mesh_x402.core.ports import TokenDomain
from mesh_x402.devnet.fake_upstream import FakeModel, FakeUpstream
from mesh_x402.hostdouble import Host, HostConfig
from mesh_x402.store.journal import Journal, PaymentRecord, PaymentState
from settlement_kit import SettleWorld, make_world
from x402.schemas import PaymentRequirements

__all__ = [
    "BODY",
    "PaidNode",
    "Payment",
    "Reconciling",
    "assert_no_secrets",
    "free_port",
    "paying_node",
    "until",
]

WAIT_SECONDS = 120.0  # a bound on hangs, never a speed assertion
BODY: dict[str, Any] = {
    "model": "fake-model",
    "messages": [{"role": "user", "content": "hello"}],
    "max_tokens": 16,
}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


async def until(check: Callable[[], bool], what: str, seconds: float = WAIT_SECONDS) -> None:
    """Poll `check()` (in a thread: it may read SQLite or the chain) until true."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while not await asyncio.to_thread(check):
        assert loop.time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.1)


@dataclass(frozen=True)
class Payment:
    """What a client sent and what it was told."""

    header: str
    signature: str
    status: int
    receipt_id: str | None

    @property
    def accepted(self) -> bool:
        """The payer got a 2xx carrying a successful PAYMENT-RESPONSE."""
        return self.status // 100 == 2 and self.receipt_id is not None


@dataclass
class PaidNode:
    world: SettleWorld
    host: Host
    gateway: str
    domain: TokenDomain
    logs: list[Path] = field(default_factory=list)

    def journal(self) -> Journal:
        return Journal.in_state_dir(self.world.state_dir)

    def records(self, receipt_ids: Iterable[str]) -> list[PaymentRecord]:
        """The journal's records of accepted payments, in order (each must be there)."""
        with self.journal() as journal:
            found = [(rid, journal.get(rid)) for rid in receipt_ids]
        records = []
        for rid, record in found:
            assert record is not None, f"accepted payment {rid} is not in the journal"
            records.append(record)
        return records

    def record(self, receipt_id: str) -> PaymentRecord:
        (record,) = self.records([receipt_id])
        return record

    def states(self, receipt_ids: Iterable[str]) -> dict[str, tuple[PaymentState, str | None]]:
        return {r.receipt_id: (r.state, r.reason) for r in self.records(receipt_ids)}

    async def requirements(
        self, client: httpx.AsyncClient, body: dict[str, Any] | None = None
    ) -> PaymentRequirements:
        """The gate's v2 requirements for `body` (default `BODY`), from its 402
        (retried while the gate starts)."""
        for _ in range(600):
            try:
                response = await client.post(
                    f"{self.gateway}/v1/chat/completions", json=BODY if body is None else body
                )
            except httpx.TransportError:
                await asyncio.sleep(0.1)
                continue
            if response.status_code == 402:
                required = json.loads(base64.b64decode(response.headers["payment-required"]))
                return PaymentRequirements.model_validate(required["accepts"][0])
            await asyncio.sleep(0.1)
        raise AssertionError("the gate never answered 402")

    def sign(self, payer: LocalAccount, requirements: PaymentRequirements) -> tuple[str, str]:
        """A fresh payment header and its signature."""
        payload = sign_payment(payer, requirements, self.domain, now=int(time.time()))
        return encode_header(payload), payload["payload"]["signature"]

    async def pay_once(self, client: httpx.AsyncClient, header: str, signature: str) -> Payment:
        """One paid, non-streamed request; a connection lost to a kill is status 0."""
        try:
            response = await client.post(
                f"{self.gateway}/v1/chat/completions",
                json=BODY,
                headers={"payment-signature": header},
            )
        except httpx.TransportError:
            return Payment(header, signature, 0, None)
        receipt_id = None
        answer = response.headers.get("payment-response")
        if answer is not None:
            settle = json.loads(base64.b64decode(answer))
            if settle.get("success"):
                receipt_id = settle["extra"]["receiptId"]
        return Payment(header, signature, response.status_code, receipt_id)


class Reconciling:
    """`mesh-x402 reconcile` (its loop) as a separate process, killable and restartable."""

    def __init__(self, config: Path, log: Path) -> None:
        self._config = config
        self._log = log
        self._process: asyncio.subprocess.Process | None = None

    async def _spawn(self, *extra: str) -> asyncio.subprocess.Process:
        with self._log.open("ab") as stderr:
            return await asyncio.create_subprocess_exec(
                *(sys.executable, "-m", "mesh_x402", "reconcile", "--config", str(self._config)),
                *extra,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=stderr,
                stderr=stderr,
            )

    async def start(self) -> None:
        self._process = await self._spawn()

    async def kill(self) -> None:
        if self._process is not None and self._process.returncode is None:
            self._process.send_signal(signal.SIGKILL)
            await self._process.wait()

    async def once(self) -> int:
        """One `reconcile --once` pass to the end; its exit code."""
        return await (await self._spawn("--once")).wait()


def _write_gateway(
    world: SettleWorld, port: int, upstream: str, interval: float, settlement: str = ""
) -> None:
    """Append settlement keys, the gateway and the upstream to the world's node.toml.

    The world's file ends inside `[settlement]`, so `settlement` (more keys of
    that table) and the pace land there.
    """
    with world.config_path.open("a", encoding="utf-8") as handle:
        handle.write(
            f"{settlement}interval_seconds = {interval}\n"
            "[gateway]\n"
            f'listen = "127.0.0.1:{port}"\n'
            "[upstream]\n"
            f'url = "{upstream}"\n'
            "timeout_seconds = 30\n"
        )


@asynccontextmanager
async def paying_node(
    anvil: Anvil,
    folder: Path,
    *,
    batch_size: int = 4,
    interval: float = 0.3,
    rpc: str | None = None,
    models: Iterable[FakeModel] = (FakeModel("fake-model", completion_tokens=8, chunks=2),),
    settlement: str = "",
) -> AsyncIterator[tuple[PaidNode, FakeUpstream]]:
    """A settling node under the host double; `rpc` replaces the chain URL the plugin uses,
    `settlement` adds `[settlement]` keys (lines, e.g. `mode = "immediate"\\n`)."""
    with FakeUpstream(list(models)) as upstream:
        world = await asyncio.to_thread(make_world, anvil, folder / "node", batch_size=batch_size)
        if rpc is not None:
            text = world.config_path.read_text(encoding="utf-8")
            world.config_path.write_text(text.replace(anvil.url, rpc), encoding="utf-8")
        port = free_port()
        _write_gateway(world, port, upstream.url, interval, settlement)
        log = folder / "plugin.log"
        host = Host(
            HostConfig(
                plugin_name="x402",
                command=[
                    sys.executable,
                    "-m",
                    "mesh_x402",
                    "serve",
                    "--config",
                    str(world.config_path),
                ],
                home=folder / "home",
                mesh_visibility="private",
                stderr_path=log,
            )
        )
        await host.start()
        try:
            yield PaidNode(world, host, f"http://127.0.0.1:{port}", world.domain, [log]), upstream
        finally:
            await host.stop()


def assert_no_secrets(logs: Iterable[Path], secrets: Iterable[str]) -> None:
    """No log holds a secret: keys (hex with or without 0x), signatures, payment headers."""
    needles: set[str] = set()
    for secret in secrets:
        text = secret.lower()
        needles.add(text)
        needles.add(text.removeprefix("0x"))
    checked = 0
    for path in logs:
        if not path.exists():
            continue
        content = path.read_text(encoding="utf-8", errors="replace")
        checked += len(content)
        lowered = content.lower()
        leaked = sorted(n for n in needles if len(n) >= 16 and n in lowered)
        assert not leaked, f"{path} holds secrets: {[n[:10] + '...' for n in leaked]}"
    assert checked > 0, "no plugin log was written: the check would prove nothing"
