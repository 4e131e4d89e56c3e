"""The devnet: a whole paid mesh on one machine, from contracts to withdrawals.

`Devnet` brings the pieces up in the order a real deployment needs them:

1. a local chain (anvil, installed from npm on first use);
2. the mesh's contracts (TestUSDC, the ERC-8004 registry, MeshSettlement);
3. N node folders (the files `mesh-x402 init` writes: node.toml, a key),
   each with a payout wallet and gas money;
4. each node registered as an ERC-8004 agent bound to its mesh-llm peer id
   (before its plugin starts, so peers can verify its identity claims);
5. a fake mesh-llm API per node and N host doubles linked as one mesh, each
   running the real `mesh-x402 serve` plugin process, whose snapshots say
   who serves which model (see `topology`);
6. clients minted test tokens, paying with the official x402 SDK through
   different entry nodes, streamed and not;
7. each node's reconciler settles its payments; each agent withdraws to
   its agentWallet;
8. the audit: the report's figures and invariants from the chain's events
   and the nodes' journals.

`stop()` ends every process the run started (plugins through their hosts,
the fake upstreams, anvil) and removes the temporary folders; the caller
runs it in a `finally`, so Ctrl-C and SIGTERM clean up too.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import secrets
import shutil
import socket
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, TypeVar

import httpx
from eth_account import Account
from eth_account.signers.local import LocalAccount

from mesh_x402.chain.bindings import TokenBinding
from mesh_x402.chain.client import ChainClient
from mesh_x402.chain.deployment import Deployment, deploy, save_deployment
from mesh_x402.chain.reconciler import CreditCheck
from mesh_x402.commands._chain import NodeChain, connect_node
from mesh_x402.commands.init import CONFIG_FILE, KEY_FILE, write_node_config
from mesh_x402.commands.reconcile import reconciler_for
from mesh_x402.commands.register import ensure_registered
from mesh_x402.devnet.audit import AuditClient, AuditNode, audit
from mesh_x402.devnet.chains import LocalChain, start_local_chain
from mesh_x402.devnet.clients import Exchange, PayingClient
from mesh_x402.devnet.fake_upstream import FakeUpstream
from mesh_x402.devnet.progress import Progress
from mesh_x402.devnet.report import ChainInfo, DevnetReport, NodeLine, SettlementInfo
from mesh_x402.devnet.topology import (
    GIB,
    ModelSpec,
    NodeLayout,
    PlannedRequest,
    mesh_layout,
    plan_requests,
)
from mesh_x402.devnet.transactions import gas_by_kind, scan_transactions
from mesh_x402.errors import ChainError, PluginError
from mesh_x402.hostdouble import Host, HostConfig, HostDoubleError, Mesh
from mesh_x402.hostdouble.console import ConsoleDouble
from mesh_x402.hostdouble.host import DOWN_STATES
from mesh_x402.keys import create_key_file
from mesh_x402.store.journal import Journal, PaymentState
from mesh_x402.store.receipts import ReceiptStore
from mesh_x402.store_archive import package_manifest

__all__ = [
    "CLIENT_FUNDS",
    "CLIENT_NAMES",
    "NODE_GAS",
    "PLUGIN_NAME",
    "STEPS",
    "WALLET_KEY",
    "Devnet",
    "DevnetError",
    "DevnetNode",
    "DevnetOptions",
]

_T = TypeVar("_T")

PLUGIN_NAME: Final = "x402"
CLIENT_NAMES: Final = ("alice", "bob", "carol", "dave")
CLIENT_FUNDS: Final = 50_000_000  # 50 test USDC each
NODE_GAS: Final = 10**20  # 100 ETH of gas money per node key
WALLET_KEY: Final = "wallet.key"
STEPS: Final = 10
_READY_TIMEOUT: Final = 60.0
_IDENTITY_TIMEOUT: Final = 20.0
_SETTLE_WAIT: Final = 20.0


class DevnetError(PluginError):
    """The devnet could not be brought up or run; the message says which part and why."""


@dataclass(frozen=True)
class DevnetOptions:
    """What `mesh-x402 devnet` was asked for."""

    nodes: int = 3
    requests: int = 24
    clients: int = 2
    workdir: Path | None = None

    def __post_init__(self) -> None:
        if self.nodes < 2:
            raise DevnetError(f"--nodes {self.nodes}: a mesh needs at least 2 nodes")
        if self.nodes > 16:
            raise DevnetError(f"--nodes {self.nodes}: at most 16 on one machine")
        if self.requests < 1:
            raise DevnetError(f"--requests {self.requests}: at least 1")
        if not 1 <= self.clients <= len(CLIENT_NAMES):
            raise DevnetError(f"clients {self.clients}: between 1 and {len(CLIENT_NAMES)}")


@dataclass
class DevnetNode:
    """One node of the devnet and its processes."""

    index: int
    folder: Path
    peer_id: str
    layout: NodeLayout
    gateway_port: int
    signer: LocalAccount
    wallet: LocalAccount
    agent_id: int = -1
    upstream: FakeUpstream | None = None
    host: Host | None = None

    @property
    def name(self) -> str:
        return f"node-{self.index}"

    @property
    def config_path(self) -> Path:
        return self.folder / CONFIG_FILE

    @property
    def state_dir(self) -> Path:
        return self.folder / "state"

    @property
    def gateway_url(self) -> str:
        return f"http://127.0.0.1:{self.gateway_port}"

    @property
    def management_url(self) -> str:
        return self.host.management_url if self.host is not None else ""


@dataclass
class _Clients:
    accounts: list[LocalAccount] = field(default_factory=list)
    key_files: list[Path] = field(default_factory=list)


def _free_port() -> int:
    # The plugin takes its gateway address on the command line; the kernel
    # picks a free port here and the plugin binds it a moment later.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _price_tables(models: list[ModelSpec]) -> str:
    lines = ["", "# Per-model prices of the devnet's mesh (the same on every node)."]
    for model in models:
        lines += [
            f'[pricing.models."{model.id}"]',
            f"base = {model.price.base}",
            f"prompt_per_1k = {model.price.prompt_per_1k}",
            f"completion_per_1k = {model.price.completion_per_1k}",
            "",
        ]
    return "\n".join(lines)


def _log_tail(node: DevnetNode, lines: int = 5) -> str:
    """The end of a node's plugin log, for an error message (the temporary work
    folder, and the log with it, is gone once the devnet has stopped)."""
    path = node.folder / "plugin.log"
    try:
        tail = path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:]
    except OSError:
        return ""
    shown = "\n".join(f"    {line[:300]}" for line in tail)
    return f"\n  {node.name} {path.name}, last lines:\n{shown}" if tail else ""


def _account(path: Path) -> LocalAccount:
    account: LocalAccount = Account.from_key(create_key_file(path).secret)
    return account


class Devnet:
    """One devnet run; `start`, `pay`, `settle`, `report`, then always `stop`.

    Args:
        options: sizes and the work folder.
        progress: where steps are reported.
    """

    def __init__(self, options: DevnetOptions, progress: Progress) -> None:
        self.options = options
        self.progress = progress
        self.models, self.layout = mesh_layout(options.nodes)
        self.plan = plan_requests(options.requests, options.nodes, options.clients, self.models)
        self.nodes: list[DevnetNode] = []
        self.clients = _Clients()
        self.exchanges: list[tuple[PlannedRequest, Exchange]] = []
        self.settlement = SettlementInfo(status="not run")
        self.local: LocalChain | None = None
        self.chain: ChainClient | None = None
        self.deployment: Deployment | None = None
        self.mesh: Mesh | None = None
        self._temp_dirs: list[Path] = []
        self._threads: set[asyncio.Future[Any]] = set()
        self._consoles: list[tuple[DevnetNode, ConsoleDouble]] = []
        self._started = time.monotonic()
        self.workdir = self._workdir(options.workdir)

    def _workdir(self, given: Path | None) -> Path:
        if given is None:
            path = Path(tempfile.mkdtemp(prefix="mesh-x402-devnet-"))
            self._temp_dirs.append(path)
            return path
        if given.exists() and (not given.is_dir() or any(given.iterdir())):
            raise DevnetError(f"--workdir {given}: exists and is not an empty folder")
        try:
            given.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise DevnetError(f"--workdir {given}: cannot create: {exc.strerror}") from None
        return given.absolute()

    async def _in_thread(self, fn: Callable[..., _T], *args: object) -> _T:
        """Run blocking work (chain calls, process starts) in a thread.

        A thread cannot be cancelled: on Ctrl-C the awaiting task stops at
        once, but the thread runs on (it may be starting anvil), so `stop`
        waits for every such thread before it tears down what they started.
        """
        future = asyncio.ensure_future(asyncio.to_thread(fn, *args))
        self._threads.add(future)
        future.add_done_callback(self._threads.discard)
        return await asyncio.shield(future)

    # -- bring-up --------------------------------------------------------------

    async def start(self) -> None:
        """Chain, contracts, node folders, agents, fake APIs, hosts and plugins."""
        self.progress.step("starting the local chain (anvil, installed from npm on first use)")
        await self._in_thread(self._start_chain)
        self.progress.step("deploying TestUSDC, IdentityRegistry, MeshSettlement")
        await self._in_thread(self._deploy)
        self.progress.step(f"creating {self.options.nodes} node folders (init)")
        await self._in_thread(self._make_nodes)
        self.progress.step("registering each node as an ERC-8004 agent bound to its peer id")
        await self._in_thread(self._register)
        self.progress.step(f"starting {self.options.nodes} host doubles running `mesh-x402 serve`")
        await self._start_mesh()

    def _start_chain(self) -> None:
        try:
            self.local = start_local_chain(self.progress.note)
        except ChainError as exc:
            raise DevnetError(f"no local chain: {exc}") from None
        self.chain = ChainClient.connect(self.local.url)

    def _deploy(self) -> None:
        assert self.chain is not None
        assert self.local is not None
        # force: the embedded EVM's chain id is not one of the well-known local ones.
        self.deployment = deploy(
            self.chain,
            self.local.deployer(),
            with_test_token=True,
            with_identity_registry=True,
            force=True,
        )
        save_deployment(self.workdir / "deployment.json", self.deployment)

    def _make_nodes(self) -> None:
        assert self.local is not None
        assert self.chain is not None
        deployment = self.deployment
        assert deployment is not None
        chain: dict[str, str | int] = {
            "rpc": self.local.url,
            "chain_id": deployment.chain_id,
            "token": deployment.token,
            "settlement": deployment.settlement,
            "settlement_block": deployment.deployed_at,
            "identity_registry": deployment.identity_registry,
        }
        prices = _price_tables(self.models)
        for layout in self.layout:
            folder = self.workdir / f"node-{layout.index}"
            folder.mkdir()
            signer = _account(folder / KEY_FILE)
            config = write_node_config(folder, chain)
            with config.open("a", encoding="utf-8") as handle:
                handle.write(prices)
            node = DevnetNode(
                index=layout.index,
                folder=folder,
                peer_id=secrets.token_hex(32),
                layout=layout,
                gateway_port=_free_port(),
                signer=signer,
                wallet=_account(folder / WALLET_KEY),
            )
            self.local.fund_gas(self.chain, signer.address, NODE_GAS)
            self.nodes.append(node)

    def _register(self) -> None:
        for node in self.nodes:
            chain = connect_node(node.config_path)
            registration = ensure_registered(
                chain,
                peer_id=bytes.fromhex(node.peer_id),
                wallet=node.wallet,
                endpoint_url=node.gateway_url,
            )
            node.agent_id = registration.agent_id

    async def _start_mesh(self) -> None:
        mesh_id = secrets.token_hex(16)
        hosts = []
        for node in self.nodes:
            upstream = FakeUpstream([model.fake(self.options.nodes) for model in self.models])
            node.upstream = upstream  # before it starts: `stop` must find it
            await self._in_thread(upstream.start)
            home = Path(tempfile.mkdtemp(prefix="mx402-home-"))
            self._temp_dirs.append(home)
            command = [
                sys.executable,
                "-m",
                "mesh_x402",
                "serve",
                "--config",
                str(node.config_path),
                "--gateway",
                f"127.0.0.1:{node.gateway_port}",
                "--upstream",
                upstream.url,
            ]
            node.host = Host(
                HostConfig(
                    plugin_name=PLUGIN_NAME,
                    command=command,
                    peer_id=node.peer_id,
                    mesh_id=mesh_id,
                    home=home,
                    stderr_path=node.folder / "plugin.log",
                    vram_bytes=node.layout.vram_bytes,
                    serving_models=node.layout.serving_models,
                    hosted_models=node.layout.hosted_models,
                )
            )
            hosts.append(node.host)
        # Linked only once every plugin is up, as peers that join a running
        # mesh: PEER_UP reaches a plugin that can answer with its identity
        # claim, and a claim reaches a plugin that can check it.
        self.mesh = Mesh(hosts, links=())
        try:
            await self.mesh.start()
        except HostDoubleError as exc:
            tails = "".join(_log_tail(node) for node in self.nodes)
            raise DevnetError(f"the plugins did not start: {exc}{tails}") from None
        await asyncio.gather(*(self._wait_gateway(node) for node in self.nodes))
        for a, b in itertools.combinations(range(len(hosts)), 2):
            await self.mesh.link(a, b)
        await self._wait_identities()

    async def _wait_gateway(self, node: DevnetNode) -> None:
        """Until the node's gate answers `GET /v1/models` (it has read the chain)."""
        deadline = time.monotonic() + _READY_TIMEOUT
        last = "no answer"
        async with httpx.AsyncClient(timeout=5.0) as http:
            while time.monotonic() < deadline:
                if node.host is not None and node.host.state in DOWN_STATES:
                    # A 0.76 host gives up on a plugin that failed to start.
                    raise DevnetError(
                        f"{node.name}: its host gave up on the plugin (state "
                        f"{node.host.state!r}){_log_tail(node)}"
                    )
                try:
                    response = await http.get(f"{node.gateway_url}/v1/models")
                except httpx.HTTPError as exc:
                    last = f"{type(exc).__name__}"
                else:
                    if response.status_code == 200:
                        return
                    last = f"HTTP {response.status_code} {response.text[:200]}"
                    if response.status_code == 501:
                        raise DevnetError(
                            f"{node.name}: the plugin answers 501 on its gateway: `mesh-x402 "
                            f"serve` does not run the payment gate{_log_tail(node)}"
                        )
                await asyncio.sleep(0.2)
        raise DevnetError(
            f"{node.name}: gateway {node.gateway_url} not ready within {_READY_TIMEOUT:.0f} s "
            f"({last}){_log_tail(node)}"
        )

    async def _wait_identities(self) -> None:
        """Until every node has verified its peers' identity claims (or a timeout).

        Before that, a peer's share of a charge goes to the entry node (it
        cannot be credited on chain), so the run waits; a timeout is noted,
        not fatal: the invariants hold either way.
        """
        want = self.options.nodes - 1
        deadline = time.monotonic() + _IDENTITY_TIMEOUT
        counts: list[int] = []
        while time.monotonic() < deadline:
            counts = await self._in_thread(self._verified_peers)
            if all(count >= want for count in counts):
                return
            await asyncio.sleep(0.3)
        self.progress.note(
            f"not every node verified its peers within {_IDENTITY_TIMEOUT:.0f} s "
            f"(verified per node: {counts}); their shares go to the entry nodes"
        )

    def _verified_peers(self) -> list[int]:
        counts = []
        for node in self.nodes:
            with Journal.in_state_dir(node.state_dir) as journal:
                counts.append(len(ReceiptStore(journal).identities(now=time.time())))
        return counts

    # -- traffic ---------------------------------------------------------------

    async def pay(self) -> None:
        """Mint tokens to the clients and run their requests (clients in parallel)."""
        self.progress.step(f"funding {self.options.clients} client wallets with test USDC")
        await self._in_thread(self._fund_clients)
        total = len(self.plan)
        self.progress.step(f"paying {total} requests with the x402 SDK through every node")
        results: dict[int, Exchange] = {}

        async def one_client(index: int) -> None:
            async with PayingClient(self.clients.accounts[index]) as client:
                for planned in (p for p in self.plan if p.client == index):
                    node = self.nodes[planned.entry]
                    results[planned.index] = await client.chat(
                        node.gateway_url,
                        planned.model,
                        planned.prompt,
                        stream=planned.stream,
                        max_tokens=planned.max_tokens,
                    )
                    exchange = results[planned.index]
                    detail = f"{CLIENT_NAMES[index]} -> {node.name} {planned.model}"
                    if exchange.error:
                        detail += f" FAILED: {exchange.error}"
                    self.progress.tick(len(results), total, detail)

        await asyncio.gather(*(one_client(i) for i in range(self.options.clients)))
        self.exchanges = [(p, results[p.index]) for p in self.plan]

    def _fund_clients(self) -> None:
        assert self.chain is not None
        assert self.local is not None
        assert self.deployment is not None
        token = TokenBinding(self.chain, self.deployment.token)
        folder = self.workdir / "clients"
        folder.mkdir()
        for name in CLIENT_NAMES[: self.options.clients]:
            path = folder / f"{name}.key"
            account = _account(path)
            token.mint(self.local.deployer(), account.address, CLIENT_FUNDS)
            self.clients.accounts.append(account)
            self.clients.key_files.append(path)

    # -- settlement --------------------------------------------------------------

    async def settle(self) -> None:
        """Reconcile every node, then withdraw every agent's credits."""
        self.progress.step("reconciling: each node settles its payments on chain")
        await self._wait_charged()
        failed, errors = 0, []
        for node in self.nodes:
            chain = await self._in_thread(connect_node, node.config_path)
            with Journal.in_state_dir(node.state_dir) as journal:
                report = await reconciler_for(chain, journal).run_once()
            if report.error is not None:
                errors.append(f"{node.name}: {report.error}")
                self.progress.note(f"{node.name}: reconcile stopped: {report.error}")
            failed += sum(report.failed.values())
        status = "settled" if not errors else "incomplete: " + "; ".join(errors)
        self.settlement = SettlementInfo(status=status, failed=failed)
        self.progress.step("withdrawing each agent's credits to its agentWallet")
        for node in self.nodes:
            await self._in_thread(self._withdraw, node)

    async def _wait_charged(self) -> None:
        """Until no journal holds a payment still in flight (streams finish metering
        a moment after the client has read the last byte)."""
        deadline = time.monotonic() + _SETTLE_WAIT
        while time.monotonic() < deadline:
            if await self._in_thread(self._in_flight) == 0:
                return
            await asyncio.sleep(0.1)

    def _in_flight(self) -> int:
        total = 0
        for node in self.nodes:
            with Journal.in_state_dir(node.state_dir) as journal:
                total += journal.count(PaymentState.ACCEPTED)
        return total

    @staticmethod
    def _withdraw(node: DevnetNode) -> None:
        chain: NodeChain = connect_node(node.config_path)
        if chain.settlement.balance_of(node.agent_id) > 0:
            chain.settlement.withdraw(chain.account, node.agent_id)

    # -- report ------------------------------------------------------------------

    async def report(self) -> DevnetReport:
        """Audit the run from the chain and the journals."""
        return await self._in_thread(self._report)

    def _report(self) -> DevnetReport:
        assert self.chain is not None
        assert self.deployment is not None
        assert self.local is not None
        chain = connect_node(self.nodes[0].config_path)
        found = audit(
            settlement=chain.settlement,
            token=chain.token,
            nodes=[
                AuditNode(n.name, n.agent_id, n.wallet.address, n.state_dir, self._credit_check(n))
                for n in self.nodes
            ],
            clients=[
                AuditClient(CLIENT_NAMES[i], account.address, CLIENT_FUNDS)
                for i, account in enumerate(self.clients.accounts)
            ],
            exchanges=self.exchanges,
        )
        transactions = scan_transactions(self.chain, chain.token, chain.registry, chain.settlement)
        settle_txs = [t for t in transactions if t.kind == "settlement settle"]
        settled = len(found.settled_events)
        # Counted on chain, not from the reconcile passes: `serve` runs its own
        # reconciler too, and either may have settled a given payment.
        settlement = self.settlement.model_copy(
            update={
                "batches": len(settle_txs),
                "settled": settled,
                "settle_gas_per_payment": (
                    sum(t.gas_used for t in settle_txs) // settled if settled else None
                ),
            }
        )
        d = self.deployment
        return DevnetReport(
            chain=ChainInfo(
                kind=self.local.kind,
                rpc=self.local.url,
                chain_id=d.chain_id,
                token=d.token,
                settlement=d.settlement,
                identity_registry=d.identity_registry,
                deployed_at=d.deployed_at,
            ),
            nodes=[
                NodeLine(
                    name=n.name,
                    peer_id=n.peer_id,
                    agent_id=n.agent_id,
                    signer=n.signer.address,
                    wallet=n.wallet.address,
                    gateway_url=n.gateway_url,
                    management_url=n.management_url,
                    vram_gib=n.layout.vram_bytes // GIB,
                    serving_models=list(n.layout.serving_models),
                    hosted_models=list(n.layout.hosted_models),
                    folder=str(n.folder),
                )
                for n in self.nodes
            ],
            requests=found.requests,
            clients=found.clients,
            agents=found.agents,
            settlement=settlement,
            transactions=transactions,
            gas=gas_by_kind(transactions),
            checks=found.checks,
            workdir=str(self.workdir),
            seconds=round(time.monotonic() - self._started, 1),
        )

    @staticmethod
    def _credit_check(node: DevnetNode) -> CreditCheck | None:
        """The node's own reconciler compares its credits on chain with its receipts."""
        chain = connect_node(node.config_path)
        with Journal.in_state_dir(node.state_dir) as journal:
            return reconciler_for(chain, journal).check_credits()

    # -- by hand -------------------------------------------------------------------

    def open_consoles(self) -> None:
        """Serve each node's Payments page as mesh-llm's console would mount it.

        A stand-in for the console (the host-contract page, the bundle, and a
        relay to the node's management listener), so a person can open every
        node's page in a browser while the mesh keeps running.
        """
        (page,) = package_manifest(PLUGIN_NAME)["web_ui"]["pages"]
        bundle = Path(__file__).resolve().parent.parent / "web"
        for node in self.nodes:
            console = ConsoleDouble(PLUGIN_NAME, node.management_url, bundle, page)
            console.start()
            self._consoles.append((node, console))

    def pay_by_hand(self) -> str:
        """How to pay the running mesh from another terminal."""
        key = self.clients.key_files[0] if self.clients.key_files else Path("KEY_FILE")
        model = self.models[-1].id
        lines = ["", "The mesh keeps running. Pay it by hand from another terminal:", ""]
        for node in self.nodes:
            lines.append(
                f"  mesh-x402 pay --url {node.gateway_url} --key-file {key} "
                f'--model {model} --stream "Say hello to the mesh"'
            )
        lines += ["", "nodes:"]
        for node in self.nodes:
            lines.append(
                f"  {node.name}  gateway {node.gateway_url}  management "
                f"{node.management_url}/api/plugins/{PLUGIN_NAME}/http/v1/chat/completions"
            )
        if self._consoles:
            lines += [
                "",
                "Payments pages (mesh-llm's console page for this plugin; add ?theme=dark):",
            ]
            for node, console in self._consoles:
                lines.append(f"  {node.name}  {console.page_url()}")
        lines += [
            "",
            f"models: {', '.join(m.id for m in self.models)}",
            f"work folder: {self.workdir} (node-N/plugin.log: each plugin's log)",
            "Press Ctrl-C to stop everything.",
        ]
        return "\n".join(lines) + "\n"

    # -- teardown --------------------------------------------------------------------

    async def stop(self) -> None:
        """End every process the run started and remove its temporary folders."""
        await asyncio.gather(*self._threads, return_exceptions=True)
        for _, console in self._consoles:
            await asyncio.to_thread(console.stop)
        self._consoles.clear()
        if self.mesh is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.mesh.stop(), timeout=30)
        else:
            for node in self.nodes:
                if node.host is not None:
                    with contextlib.suppress(Exception):
                        await node.host.stop()
        upstreams = [node.upstream for node in self.nodes if node.upstream is not None]
        await asyncio.gather(*(asyncio.to_thread(upstream.stop) for upstream in upstreams))
        for node in self.nodes:
            node.upstream = None
        if self.local is not None:
            await asyncio.to_thread(self.local.stop)
            self.local = None
        for folder in self._temp_dirs:
            shutil.rmtree(folder, ignore_errors=True)
        self._temp_dirs.clear()
