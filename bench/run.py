"""The benchmark: the gate against plain x402 (the official SDK), side by side, in one run.

    .venv/bin/python bench/run.py [--reps 5] [--quick] [--json out.json]

Starts a real anvil with the contracts deployed, a counting JSON-RPC proxy
in front of it, the fake mesh-llm API (JSON, and SSE of 20 chunks 10 ms
apart), and three servers, each in its own process:

- direct:    the fake API itself, no payment;
- gate:      `mesh-x402 serve` standalone, on its gateway port;
- reference: the x402 SDK's FastAPI payment middleware with its in-process
             exact-EVM facilitator settling on the same anvil.

Payments are signed before each phase (fresh nonce each, each server's own
quote), so the client's signing cost is in no figure. Every figure is the
median of one repetition; the table shows min / median / max over the
repetitions, the differences and ratios against direct from the same run,
and the issue's targets. See bench/README.md for what each figure means.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import bisect
import importlib.util
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gas
import httpx
import load
import settle
from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_utils.crypto import keccak
from mesh_x402.chain.anvil import Anvil, dev_account
from mesh_x402.chain.bindings import TokenBinding
from mesh_x402.chain.client import ChainClient
from mesh_x402.chain.deployment import Deployment, deploy
from mesh_x402.commands._chain import quiet_logs
from mesh_x402.core.headers import decode_payment_header
from mesh_x402.core.payer import encode_header, sign_payment
from mesh_x402.core.ports import TokenDomain
from mesh_x402.core.verify import verify_payment
from procs import Proc, free_port
from x402.schemas import PaymentRequirements

BENCH = Path(__file__).resolve().parent
PYTHON = sys.executable
SERVERS = ("direct", "gate", "reference")
CONCURRENCY = 16
FUNDS = 10**15
BODY = {
    "model": "bench",
    "messages": [{"role": "user", "content": "hello " * 50}],
    "max_tokens": 20,
}
STREAM_BODY = {**BODY, "stream": True}
# Targets from issue 7, checked against the same run's direct figures.
TARGETS = {
    "latency_ms_over_direct": 2.0,
    "throughput_of_direct": 0.5,
    "first_byte_ms_over_direct": 3.0,
    "rpc_on_request_path": 0.0,
}


@dataclass(frozen=True)
class Sizes:
    """How many requests each phase sends."""

    reps: int
    sequential: int
    throughput: int  # per rep, direct and gate
    throughput_reference: int
    streams: int
    idle_probes: int
    loaded_probes: int
    pool: int  # payments available to the paying clients while probing
    verify_seconds: float
    settle_payments: int
    stall_gate: int  # paid requests sent while every chain call is delayed
    stall_reference: int

    @classmethod
    def full(cls, reps: int) -> Sizes:
        return cls(reps, 200, 800, 200, 20, 30, 20, 1000, 1.0, 10_000, 20, 3)

    @classmethod
    def quick(cls, reps: int) -> Sizes:
        return cls(reps, 20, 64, 32, 3, 5, 3, 400, 0.2, 100, 5, 1)


def _json_bytes(body: dict[str, Any]) -> bytes:
    return json.dumps(body, separators=(",", ":")).encode()


def summary(values: Sequence[float]) -> dict[str, float]:
    return {"min": min(values), "median": statistics.median(values), "max": max(values)}


# -- the world: chain, proxy, upstream, servers -------------------------------------------


@dataclass
class World:
    folder: Path
    anvil: Anvil
    chain: ChainClient
    deployment: Deployment
    domain: TokenDomain
    proxy: Proc
    upstream: Proc
    gate: Proc
    reference: Proc
    payers: dict[str, LocalAccount]
    facilitator: str
    gate_runner: str
    gate_folder: Path
    procs: list[Proc] = field(default_factory=list)

    def url(self, server: str) -> str:
        return {"direct": self.upstream, "gate": self.gate, "reference": self.reference}[server].url

    def rpc_delay(self, seconds: float) -> None:
        httpx.post(f"{self.proxy.url}/delay", content=str(seconds), trust_env=False, timeout=30)

    def rpc_stats(self, since: int = 0) -> dict[str, Any]:
        response = httpx.get(f"{self.proxy.url}/stats?since={since}", trust_env=False, timeout=30)
        stats: dict[str, Any] = response.json()
        return stats


def _gate_config(
    folder: Path,
    port: int,
    upstream: str,
    rpc: str,
    deployment: Deployment,
    *,
    settle_interval: float | None,
) -> Path:
    folder.mkdir(parents=True)
    key = folder / "node.key"
    fd = os.open(key, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(bytes(dev_account(1).key).hex() + "\n")
    path = folder / "node.toml"
    path.write_text(
        f'[gateway]\nlisten = "127.0.0.1:{port}"\n'
        f'[upstream]\nurl = "{upstream}"\ntimeout_seconds = 60\n'
        f'[chain]\nrpc = "{rpc}"\nchain_id = 31337\n'
        f'token = "{deployment.token}"\nsettlement = "{deployment.settlement}"\n'
        f'identity_registry = "{deployment.identity_registry}"\n'
        '[pricing]\nunknown_models = "refuse"\nmax_completion_tokens = 64\n'
        "[pricing.models.bench]\nbase = 1000\nprompt_per_1k = 500\ncompletion_per_1k = 2000\n"
        + (
            ""
            if settle_interval is None
            else f"[settlement]\ninterval_seconds = {settle_interval}\n"
        ),
        encoding="utf-8",
    )
    return path


def start_world(
    folder: Path, gate_runner: str, gate_state: Path | None, settle_interval: float | None
) -> World:
    anvil = Anvil().start()
    procs: list[Proc] = []
    try:
        proxy = Proc(
            "rpc-proxy", [PYTHON, str(BENCH / "rpc_proxy.py"), "--upstream", anvil.url], folder
        )
        procs.append(proxy)
        proxy.wait_ready()
        chain = ChainClient.connect(anvil.url, chain_id=31337)
        deployer = dev_account(0)
        deployment = deploy(chain, deployer, with_test_token=True, with_identity_registry=True)
        token = TokenBinding(chain, deployment.token)
        domain = TokenDomain(token.name(), token.version(), chain.chain_id, token.address)
        payers = {}
        for server in ("gate", "reference"):
            account: LocalAccount = Account.from_key(keccak(f"bench-payer-{server}".encode()))
            token.mint(deployer, account.address, FUNDS)
            payers[server] = account
        upstream = Proc("fake-api", [PYTHON, str(BENCH / "fake_api.py")], folder)
        procs.append(upstream)
        upstream.wait_ready()
        port = free_port()
        gate_folder = Path(tempfile.mkdtemp(prefix="gate-", dir=gate_state or folder))
        config = _gate_config(
            gate_folder / "node",
            port,
            upstream.url,
            proxy.url,
            deployment,
            settle_interval=settle_interval,
        )
        if gate_runner == "serve":
            argv = [str(Path(PYTHON).parent / "mesh-x402"), "serve", "--config", str(config)]
        else:
            argv = [PYTHON, str(BENCH / "gate_server.py"), "--config", str(config)]
        gate = Proc("gate", argv, folder)
        procs.append(gate)
        if gate_runner == "serve":
            gate.wait_http(f"http://127.0.0.1:{port}", load.FREE_PATH)
        else:
            gate.wait_ready()
        facilitator = dev_account(2)
        key_file = folder / "facilitator.key"
        key_file.write_text(bytes(facilitator.key).hex())
        key_file.chmod(0o600)
        reference = Proc(
            "reference",
            [
                PYTHON,
                str(BENCH / "reference_server.py"),
                *("--rpc", proxy.url, "--upstream", upstream.url, "--token", token.address),
                *("--token-name", domain.name, "--token-version", domain.version),
                *("--pay-to", dev_account(3).address, "--amount", "1100"),
                *("--key-file", str(key_file)),
            ],
            folder,
        )
        procs.append(reference)
        reference.wait_ready()
    except BaseException:
        for proc in reversed(procs):
            proc.stop()
        anvil.stop()
        raise
    return World(
        folder,
        anvil,
        chain,
        deployment,
        domain,
        proxy,
        upstream,
        gate,
        reference,
        payers,
        facilitator.address,
        gate_runner,
        gate_folder,
        procs,
    )


def stop_world(world: World) -> None:
    if world.gate_runner == "serve":
        world.gate.terminate()  # SIGTERM, as an operator stops it
    else:
        world.gate.stop()
    for proc in (world.reference, world.upstream, world.proxy):
        proc.stop()
    world.anvil.stop()
    shutil.rmtree(world.gate_folder, ignore_errors=True)


# -- payments -----------------------------------------------------------------------------


def requirements_of(url: str, body: bytes) -> PaymentRequirements:
    """The server's quote for `body`: the first entry of its 402's PAYMENT-REQUIRED."""
    response = httpx.post(
        url + load.PAID_PATH,
        content=body,
        headers={"content-type": "application/json"},
        trust_env=False,
        timeout=60,
    )
    if response.status_code != 402 or "payment-required" not in response.headers:
        raise load.BenchError(
            f"{url}: expected a 402 with PAYMENT-REQUIRED, got {response.status_code}"
        )
    required = json.loads(base64.b64decode(response.headers["payment-required"]))
    return PaymentRequirements.model_validate(required["accepts"][0])


class Payments:
    """Signs payment headers ahead of the phases that spend them."""

    def __init__(self, world: World) -> None:
        self._world = world
        self._quotes: dict[tuple[str, bool], PaymentRequirements] = {}

    def headers(self, server: str, count: int, *, stream: bool = False) -> list[str | None]:
        if server == "direct":
            return [None] * count
        key = (server, stream)
        if key not in self._quotes:
            body = STREAM_BODY if stream else BODY
            self._quotes[key] = requirements_of(self._world.url(server), _json_bytes(body))
        requirements = self._quotes[key]
        payer = self._world.payers[server]
        now = int(time.time())
        return [
            encode_header(sign_payment(payer, requirements, self._world.domain, now=now))
            for _ in range(count)
        ]

    def quote(self, server: str) -> int:
        return int(self._quotes[(server, False)].amount)


# -- phases -------------------------------------------------------------------------------


def _in_windows(arrivals: list[list[Any]], windows: list[tuple[float, float]]) -> int:
    """How many calls arrived inside one of the (sorted, disjoint) request windows."""
    starts = [start for start, _ in windows]
    inside = 0
    for stamp, _ in arrivals:
        i = bisect.bisect_right(starts, stamp) - 1
        if i >= 0 and stamp <= windows[i][1]:
            inside += 1
    return inside


@dataclass
class Rep:
    """One repetition's figures for one server (each the median over its requests)."""

    latency_ms: float = 0.0
    throughput_rps: float = 0.0
    first_byte_ms: float = 0.0
    stream_total_ms: float = 0.0
    free_idle_ms: float = 0.0
    free_loaded_ms: float = 0.0
    rpc_in_windows: float = 0.0
    rpc_serving: float = 0.0
    rpc_methods: Counter[str] = field(default_factory=Counter)


async def run_rep(world: World, payments: Payments, server: str, sizes: Sizes) -> Rep:
    url = world.url(server)
    body, stream_body = _json_bytes(BODY), _json_bytes(STREAM_BODY)
    rep = Rep()
    async with load.client() as http:
        # 1. sequential paid requests, with the chain calls they caused
        headers = payments.headers(server, sizes.sequential)
        mark = world.rpc_stats(10**12)["total"]
        seq = await load.sequential(http, url, body, headers)
        arrivals = world.rpc_stats(since=mark)["arrivals"]
        rep.latency_ms = statistics.median(seq.latencies) * 1000
        rep.rpc_in_windows = _in_windows(arrivals, seq.windows) / sizes.sequential
        rep.rpc_serving = len(arrivals) / sizes.sequential
        rep.rpc_methods = Counter(method for _, method in arrivals)
        # 2. throughput at concurrency 16
        count = sizes.throughput_reference if server == "reference" else sizes.throughput
        headers = payments.headers(server, count)
        rep.throughput_rps = await load.throughput(http, url, body, headers, CONCURRENCY)
        # 3. streamed requests, one at a time
        firsts, totals = [], []
        for header in payments.headers(server, sizes.streams, stream=True):
            first, total = await load.streamed(http, url, stream_body, header)
            firsts.append(first)
            totals.append(total)
        rep.first_byte_ms = statistics.median(firsts) * 1000
        rep.stream_total_ms = statistics.median(totals) * 1000
        # 4. the free route, idle and while 16 clients pay
        rep.free_idle_ms = (
            statistics.median([await load.free(http, url) for _ in range(sizes.idle_probes)]) * 1000
        )
        pool = payments.headers(server, sizes.pool)
        rep.free_loaded_ms = (
            await load.free_under_load(
                http,
                url=url,
                body=body,
                payments=pool,
                workers=CONCURRENCY,
                probes=sizes.loaded_probes,
            )
            * 1000
        )
    return rep


STALL_SECONDS = 0.3


async def stall_probe(world: World, payments: Payments, server: str, count: int) -> dict[str, Any]:
    """Which chain calls a paid request waits for: the proxy delays every call by
    STALL_SECONDS; a request that takes that long waited on the chain, and the calls
    that arrived during it are on its path. A call in the background (a balance
    refresh) delays no request, however long it takes."""
    headers = payments.headers(server, count)
    world.rpc_delay(STALL_SECONDS)
    try:
        mark = world.rpc_stats(10**12)["total"]
        async with load.client() as http:
            seq = await load.sequential(http, world.url(server), _json_bytes(BODY), headers)
        arrivals = world.rpc_stats(since=mark)["arrivals"]
    finally:
        world.rpc_delay(0)
    waited = [w for w, t in zip(seq.windows, seq.latencies, strict=True) if t >= STALL_SECONDS]
    return {
        "requests": count,
        "rpc_delay_s": STALL_SECONDS,
        "requests_that_waited": len(waited),
        "calls_per_request": _in_windows(arrivals, waited) / count,
        "calls_during_probe": len(arrivals),
    }


async def warm_up(world: World, payments: Payments) -> None:
    """A few requests per server: connections, imports, the gate's first balance read."""
    async with load.client() as http:
        for server in SERVERS:
            url = world.url(server)
            for header in payments.headers(server, 5):
                await load.paid(http, url, _json_bytes(BODY), header)
            for header in payments.headers(server, 2, stream=True):
                await load.streamed(http, url, _json_bytes(STREAM_BODY), header)
            await load.free(http, url)


def reference_gas(world: World, first_block: int) -> list[int]:
    """gasUsed of every settlement the reference's facilitator sent since `first_block`."""
    w3 = world.chain.w3
    used = []
    for number in range(first_block, int(w3.eth.block_number) + 1):
        block = w3.eth.get_block(number, full_transactions=True)
        for tx in block["transactions"]:
            if tx["from"].lower() == world.facilitator.lower():  # type: ignore[index]
                used.append(int(w3.eth.get_transaction_receipt(tx["hash"])["gasUsed"]))  # type: ignore[index]
    return used


def verify_rate(world: World, payments: Payments, seconds: float) -> float:
    """core/verify.py's verify_payment in a tight loop on this process's one thread."""
    requirements = payments._quotes[("gate", False)]
    decoded = [decode_payment_header(h) for h in payments.headers("gate", 500) if h]
    now = int(time.time())
    done = 0
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        for item in decoded:
            if not verify_payment(item, requirements, world.domain, now=now, spendable=None).ok:
                raise load.BenchError("a pre-signed payment did not verify")
        done += len(decoded)
    return done / (time.perf_counter() - start)


def gate_gas() -> dict[str, Any]:
    """bench/gas.py's split+refund rows (py-evm, the anvil gas schedule)."""
    bench = gas.Bench()
    rows = {}
    for payers in ("distinct", "one"):
        rows[payers] = {
            str(n): round(bench.per_payment(n, "split+refund", payers)) for n in gas.BATCH_SIZES
        }
    rows["plain_transfer_with_authorization"] = bench.plain_transfer()
    return rows


# -- the run ------------------------------------------------------------------------------


def measure(
    sizes: Sizes,
    gate_runner: str,
    gate_state: Path | None,
    settle_interval: float | None,
    progress: Callable[[str], None],
) -> dict[str, Any]:
    load_start = os.getloadavg()[0]
    # py-evm gas figures need no servers: computed in a child process while the world
    # starts (mostly waiting on processes), and awaited before any timed phase.
    gas_pool = ProcessPoolExecutor(max_workers=1)
    gas_job = gas_pool.submit(gate_gas)
    with tempfile.TemporaryDirectory(prefix="mesh-x402-bench-") as tmp:
        folder = Path(tmp)
        progress("starting anvil, RPC proxy, fake API, gate and reference")
        world = start_world(folder, gate_runner, gate_state, settle_interval)
        try:
            payments = Payments(world)
            asyncio.run(warm_up(world, payments))
            progress("gas per payment (bench/gas.py, py-evm), computed during start-up")
            gate_rows = gas_job.result()
            gas_pool.shutdown()
            first_block = int(world.chain.w3.eth.block_number) + 1
            reps: dict[str, list[Rep]] = {server: [] for server in SERVERS}
            for i in range(sizes.reps):
                for server in SERVERS:
                    progress(f"rep {i + 1}/{sizes.reps}: {server}")
                    reps[server].append(asyncio.run(run_rep(world, payments, server, sizes)))
            progress("chain calls on the request path (RPC delayed)")
            stall = {
                server: asyncio.run(stall_probe(world, payments, server, count))
                for server, count in (
                    ("gate", sizes.stall_gate),
                    ("reference", sizes.stall_reference),
                )
            }
            progress("reference gas from its settlement receipts")
            ref_gas = reference_gas(world, first_block)
            progress("verifications per second")
            rates = [verify_rate(world, payments, sizes.verify_seconds) for _ in range(sizes.reps)]
            progress(f"reconciliation: settling {sizes.settle_payments} payments")
            figures = settle.settle_payments(
                world.proxy.url,
                sizes.settle_payments,
                lambda: int(world.rpc_stats(10**12)["total"]),
            )
            quote = payments.quote("gate")
        except BaseException:
            # The folder with the servers' logs goes with the run: show their ends.
            for proc in world.procs:
                progress(f"--- the end of {proc.name}'s log ---\n{proc.log_tail()}")
            raise
        finally:
            stop_world(world)
    result = build_result(
        sizes=sizes,
        reps=reps,
        ref_gas=ref_gas,
        rates=rates,
        stall=stall,
        recon=figures,
        gate_rows=gate_rows,
        quote=quote,
        load_start=load_start,
    )
    result["meta"]["gate_runner"] = gate_runner
    result["meta"]["gate_state"] = str(gate_state or tempfile.gettempdir())
    result["meta"]["settle_interval"] = settle_interval
    return result


def build_result(
    *,
    sizes: Sizes,
    reps: dict[str, list[Rep]],
    ref_gas: list[int],
    rates: list[float],
    stall: dict[str, dict[str, Any]],
    recon: settle.SettleFigures,
    gate_rows: dict[str, Any],
    quote: int,
    load_start: float,
) -> dict[str, Any]:
    def per_server(attr: str, servers: Sequence[str] = SERVERS) -> dict[str, dict[str, float]]:
        return {s: summary([getattr(r, attr) for r in reps[s]]) for s in servers}

    settle_calls = recon.rpc_calls / recon.payments
    rpc: dict[str, Any] = {}
    for server in ("gate", "reference"):
        methods: Counter[str] = Counter()
        for rep in reps[server]:
            methods.update(rep.rpc_methods)
        serving = summary([r.rpc_serving for r in reps[server]])
        settlement = settle_calls if server == "gate" else 0.0
        rpc[server] = {
            "request_path": stall[server],
            "during_requests": summary([r.rpc_in_windows for r in reps[server]]),
            "serving": serving,
            "settlement": settlement,
            "total": serving["median"] + settlement,
            "methods_per_request": {
                m: n / (sizes.sequential * sizes.reps) for m, n in methods.most_common()
            },
        }
    figures: dict[str, Any] = {
        "paid_latency_ms": per_server("latency_ms"),
        "paid_throughput_rps": per_server("throughput_rps"),
        "stream_first_byte_ms": per_server("first_byte_ms"),
        "stream_total_ms": per_server("stream_total_ms"),
        "free_route_idle_ms": per_server("free_idle_ms"),
        "free_route_while_16_pay_ms": per_server("free_loaded_ms"),
        "rpc_calls_per_paid_request": rpc,
        "gas_per_payment": {
            "gate_split_refund_distinct_payers": gate_rows["distinct"],
            "gate_split_refund_one_payer": gate_rows["one"],
            "gate_anvil_reconciler_batch_50": recon.gas_per_payment,
            "plain_transfer_with_authorization": gate_rows["plain_transfer_with_authorization"],
            "reference": summary(ref_gas),
        },
        "verifications_per_second": summary(rates),
        "reconciliation": {
            "payments": recon.payments,
            "seconds": recon.seconds,
            "payments_per_second": recon.payments / recon.seconds,
            "batches": recon.batches,
            "rpc_calls": recon.rpc_calls,
        },
    }
    med = {k: {s: v["median"] for s, v in figures[k].items()} for k in (
        "paid_latency_ms", "paid_throughput_rps", "stream_first_byte_ms"
    )}  # fmt: skip
    gas_50 = recon.gas_per_payment  # the reconciler's own batches of 50, on anvil
    targets = [
        _target(
            "paid latency: gate - direct (ms)",
            med["paid_latency_ms"]["gate"] - med["paid_latency_ms"]["direct"],
            "<=",
            TARGETS["latency_ms_over_direct"],
        ),
        _target(
            "paid throughput: gate / direct",
            med["paid_throughput_rps"]["gate"] / med["paid_throughput_rps"]["direct"],
            ">=",
            TARGETS["throughput_of_direct"],
        ),
        _target(
            "stream first byte: gate - direct (ms)",
            med["stream_first_byte_ms"]["gate"] - med["stream_first_byte_ms"]["direct"],
            "<=",
            TARGETS["first_byte_ms_over_direct"],
        ),
        _target(
            "chain calls a paid request waits for (gate, RPC delayed 0.3 s)",
            rpc["gate"]["request_path"]["calls_per_request"],
            "<=",
            TARGETS["rpc_on_request_path"],
        ),
        _target(
            "gas per payment, batch 50, split+refund, reconciler on anvil (gate <= reference)",
            gas_50,
            "<=",
            figures["gas_per_payment"]["reference"]["median"],
        ),
    ]
    return {
        "meta": {
            "reps": sizes.reps,
            "quick": sizes.sequential < 200,
            "sizes": sizes.__dict__,
            "gate_quote": quote,
            "reference_price": 1100,
            "python": platform.python_version(),
            "load_start": load_start,
            "load_end": os.getloadavg()[0],
            "cpus": os.cpu_count(),
            "x402": _version("x402"),
        },
        "figures": figures,
        "targets": targets,
    }


def _version(package: str) -> str:
    from importlib.metadata import version  # noqa: PLC0415

    return version(package)


def _target(name: str, value: float, op: str, limit: float) -> dict[str, Any]:
    met = value <= limit if op == "<=" else value >= limit
    return {"name": name, "value": value, "op": op, "target": limit, "met": met}


# -- printing -----------------------------------------------------------------------------


def _mmm(values: dict[str, float], fmt: str) -> str:
    return "/".join(format(values[k], fmt) for k in ("min", "median", "max"))


def render(result: dict[str, Any]) -> str:
    f = result["figures"]
    meta = result["meta"]
    lines = [
        f"mesh-x402 benchmark: {meta['reps']} rep(s), python {meta['python']}, "
        f"{meta['cpus']} cpus, x402 {meta['x402']}, gate run by {meta['gate_runner']}"
        + (
            ""
            if meta.get("settle_interval") is None
            else f", gate reconciler every {meta['settle_interval']:g} s"
        )
        + (" (QUICK: smoke figures)" if meta["quick"] else ""),
        f"load average (1 min) at start {meta['load_start']:.2f}, at end {meta['load_end']:.2f} "
        "(other work on this machine skews every figure)",
        "min/median/max over repetitions (each repetition: the median over its requests)",
        "",
        f"{'figure':<30}{'direct':>24}{'gate':>24}{'reference':>24}"
        "  gate vs direct   ref vs direct",
    ]

    def row(label: str, key: str, fmt: str, higher_better: bool = False) -> None:
        values = f[key]
        d, g, r = (values[s]["median"] for s in SERVERS)
        if higher_better:
            vs_g, vs_r = f"x{g / d:.2f}", f"x{r / d:.2f}"
        else:
            vs_g, vs_r = f"{g - d:+.2f} ms", f"{r - d:+.2f} ms"
        cells = "".join(f"{_mmm(values[s], fmt):>24}" for s in SERVERS)
        lines.append(f"{label:<30}{cells}  {vs_g:>14}  {vs_r:>14}")

    row("paid latency, sequential (ms)", "paid_latency_ms", ".2f")
    row("paid throughput, c=16 (req/s)", "paid_throughput_rps", ".0f", higher_better=True)
    row("stream first byte (ms)", "stream_first_byte_ms", ".2f")
    row("stream total (ms)", "stream_total_ms", ".1f")
    row("free route, idle (ms)", "free_route_idle_ms", ".2f")
    row("free route, 16 paying (ms)", "free_route_while_16_pay_ms", ".2f")
    lines.append("")
    rpc = f["rpc_calls_per_paid_request"]
    lines.append(
        "JSON-RPC calls per paid request   on the path   during requests   while serving"
        "   settlement    total"
    )
    lines.append("                                  (RPC +0.3 s)   (min/med/max)        (median)")
    for server in ("gate", "reference"):
        r = rpc[server]
        path = r["request_path"]
        lines.append(
            f"  {server:<30}{path['calls_per_request']:>13.3f}"
            f"{_mmm(r['during_requests'], '.3f'):>22}{r['serving']['median']:>14.3f}"
            f"{r['settlement']:>13.3f}{r['total']:>9.3f}"
        )
        lines.append(
            f"    {path['requests_that_waited']} of {path['requests']} paid requests waited "
            f"while every chain call took +{path['rpc_delay_s']} s"
        )
        top = ", ".join(f"{m} {n:.2f}" for m, n in list(r["methods_per_request"].items())[:6])
        lines.append(f"    methods while serving: {top or 'none'}")
    g = f["gas_per_payment"]
    lines.append("")
    lines.append("gas per settled payment (2-way split + refund)   batch 1   batch 10   batch 50")
    for label, key in (("gate, distinct payers (py-evm)", "gate_split_refund_distinct_payers"),
                       ("gate, one payer (py-evm)", "gate_split_refund_one_payer")):  # fmt: skip
        cells = "".join(f"{g[key][n]:>10,}" for n in ("1", "10", "50"))
        lines.append(f"  {label:<46}{cells}")
    anvil_50 = g["gate_anvil_reconciler_batch_50"]
    lines.append(f"  {'gate, reconciler on anvil, batch 50, 20 payers':<66}{anvil_50:>10,.0f}")
    ref = _mmm(g["reference"], ",.0f")
    lines.append(f"  {'reference, its settlement receipts (min/med/max)':<52}{ref:>24}")
    plain = g["plain_transfer_with_authorization"]
    lines.append(f"  {'plain transferWithAuthorization (py-evm)':<66}{plain:>10,}")
    v = f["verifications_per_second"]
    lines.append("")
    lines.append(f"payment verifications per second, one core (core/verify.py): {_mmm(v, ',.0f')}")
    rec = f["reconciliation"]
    lines.append(
        f"reconciliation: {rec['payments']:,} payments settled in {rec['seconds']:.1f} s "
        f"({rec['payments_per_second']:.0f}/s, {rec['batches']} batches, "
        f"{rec['rpc_calls']:,} RPC calls)"
    )
    lines.append("")
    lines.append("targets (issue 7), medians of this run:")
    for t in result["targets"]:
        mark = "MET " if t["met"] else "MISS"
        lines.append(
            f"  [{mark}] {t['name']}: {t['value']:,.3f} (target {t['op']} {t['target']:,.3f})"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, help="repetitions (default 5; --quick: 1)")
    parser.add_argument("--quick", action="store_true", help="a smoke run: few requests, 1 rep")
    parser.add_argument("--json", metavar="PATH", type=Path, help="also write the figures as JSON")
    parser.add_argument(
        "--gate",
        choices=("serve", "uvicorn"),
        default="serve",
        help="serve: `mesh-x402 serve` standalone (default); "
        "uvicorn: the same app under plain uvicorn (bench/gate_server.py)",
    )
    parser.add_argument(
        "--gate-state",
        metavar="DIR",
        type=Path,
        help="where the gate's node folder (its SQLite journal) goes; default: the temp "
        "folder. Each paid request commits twice with fsync: this disk's fsync time shows",
    )
    parser.add_argument(
        "--settle-interval",
        metavar="SECONDS",
        type=float,
        help="the gate's [settlement] interval_seconds (default: the product's, 10). "
        "A long one keeps its reconciler idle during the timed phases, which shows what "
        "settling the previous phases' payments in the background costs the requests",
    )
    args = parser.parse_args()
    if importlib.util.find_spec("fastapi") is None:
        parser.error(
            "the reference server needs FastAPI, from the bench extra: "
            ".venv/bin/pip install -e '.[bench]' (./demo.sh installs the plugin alone)"
        )
    if args.settle_interval is not None and args.settle_interval <= 0:
        parser.error("--settle-interval must be above 0")
    reps = args.reps if args.reps is not None else (1 if args.quick else 5)
    if reps < 1:
        parser.error("--reps must be at least 1")
    sizes = Sizes.quick(reps) if args.quick else Sizes.full(reps)
    started = time.monotonic()

    def progress(message: str) -> None:
        print(f"[{time.monotonic() - started:6.1f} s] {message}", file=sys.stderr, flush=True)

    quiet_logs()  # the reconciliation phase runs in this process: keep its log off the table
    result = measure(sizes, args.gate, args.gate_state, args.settle_interval, progress)
    result["meta"]["seconds"] = time.monotonic() - started
    print(render(result))
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
