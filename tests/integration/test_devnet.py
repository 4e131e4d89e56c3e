"""`mesh-x402 devnet` and `mesh-x402 pay` as a user runs them: real processes end to end.

The devnet starts anvil, the contracts, the plugins under host doubles and
the fake mesh-llm APIs itself; these tests only run the commands and read
what they print (the JSON report, the exit code), then check that nothing
the devnet started is left running.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

pytestmark = pytest.mark.integration

INVARIANTS = {
    "all_requests_paid",
    "charge_within_authorization",
    "credits_plus_refund_equal_authorized",
    "every_accepted_payment_settled_once",
    "released_payments_never_executed",
    "no_payment_left_in_flight",
    "agent_credits_match_chain",
    "acknowledged_credits_on_chain",
    "withdrawals_reached_agent_wallets",
    "payer_balances_match",
}
# eth-tester's own chain id: the keep-running test runs on the embedded EVM.
EMBEDDED_NETWORK = "eip155:131277322940537"
# Only a hang guard: the devnet with 2 nodes takes ~20 s here.
HANG_GUARD = 240


def _command(*args: str | Path) -> list[str]:
    return [sys.executable, "-m", "mesh_x402", *map(str, args)]


def _listening(url: str) -> bool:
    parts = urlsplit(url)
    with socket.socket() as sock:
        sock.settimeout(2.0)
        return sock.connect_ex((parts.hostname or "", parts.port or 80)) == 0


def _processes_mentioning(text: str) -> list[int]:
    """Pids whose command line contains `text` (the devnet's plugins name their config)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if text in cmdline:
            found.append(int(entry.name))
    return found


def _assert_all_stopped(report: dict[str, Any], workdir: Path) -> None:
    assert not _listening(report["chain"]["rpc"]), "anvil still answers"
    for node in report["nodes"]:
        assert not _listening(node["gateway_url"]), f"{node['name']} gateway still open"
        assert not _listening(node["management_url"]), f"{node['name']} host still open"
    assert _processes_mentioning(str(workdir)) == []


def _check_report(report: dict[str, Any], *, nodes: int, requests: int) -> None:
    assert report["invariants"] == dict.fromkeys(INVARIANTS, True), report["checks"]
    assert report["ok"] is True
    summary = report["summary"]
    assert summary["requests"] == requests
    assert summary["paid"] == requests
    assert 0 < summary["streamed"] < requests
    assert len(report["requests"]) == requests
    assert len(report["nodes"]) == nodes
    assert {r["entry"] for r in report["requests"]} == {n["name"] for n in report["nodes"]}
    for line in report["requests"]:
        assert line["status"] == 200
        assert line["error"] is None
        assert 0 < line["charged"] <= line["authorized"]
        assert line["completion_tokens"] > 0
    charged = sum(r["charged"] for r in report["requests"])
    authorized = sum(r["authorized"] for r in report["requests"])
    assert summary["charged"] == charged
    assert summary["refunded"] == authorized - charged
    # Every unit charged was credited to an agent on chain and withdrawn to its wallet.
    assert sum(a["credited"] for a in report["agents"]) == charged
    assert sum(a["wallet_balance"] for a in report["agents"]) == charged
    assert all(a["remaining"] == 0 for a in report["agents"])
    # Each node signed or countersigned receipts crediting it (a countersignature still
    # in flight when the audit ran may leave one out, never add one).
    assert all(0 < a["acknowledged"] <= a["credited"] for a in report["agents"])
    assert report["settlement"]["settled"] == requests
    for client in report["clients"]:
        assert client["balance_after"] == client["funded"] - client["charged"]
    kinds = {g["kind"] for g in report["gas"]}
    assert {"settlement settle", "settlement withdraw", "token mint"} <= kinds


class TestDevnetRun:
    def test_json_report_every_invariant_holds_and_exit_zero(self, tmp_path: Path) -> None:
        """Two nodes, six requests: the JSON report's invariants all hold, its figures add
        up, progress went to stderr, and nothing the devnet started outlives it."""
        workdir = tmp_path / "devnet"
        done = subprocess.run(
            _command("devnet", "--nodes", "2", "--requests", "6", "--json", "--workdir", workdir),
            capture_output=True,
            text=True,
            timeout=HANG_GUARD,
            check=False,
        )
        assert done.returncode == 0, done.stderr[-3000:]
        report = json.loads(done.stdout)
        _check_report(report, nodes=2, requests=6)
        assert "[1/10] starting the local chain (anvil" in done.stderr
        assert "stopping every process the devnet started" in done.stderr
        _assert_all_stopped(report, workdir)


class _Lines:
    """stderr of a running process, line by line, without blocking the test forever."""

    def __init__(self, stream: Any) -> None:
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.seen: list[str] = []
        self._thread = threading.Thread(target=self._pump, args=(stream,), daemon=True)
        self._thread.start()

    def _pump(self, stream: Any) -> None:
        for line in stream:
            self.lines.put(line)
        self.lines.put(None)

    def until(self, text: str) -> None:
        while True:
            line = self.lines.get(timeout=HANG_GUARD)
            assert line is not None, "the devnet exited early:\n" + "".join(self.seen[-40:])
            self.seen.append(line)
            if text in line:
                return

    def rest(self) -> str:
        self._thread.join(timeout=HANG_GUARD)
        while not self.lines.empty():
            line = self.lines.get()
            if line is not None:
                self.seen.append(line)
        return "".join(self.seen)


class TestKeepRunningAndPay:
    def test_pay_by_hand_then_ctrl_c_stops_everything(self, tmp_path: Path) -> None:
        """Where anvil cannot run the embedded EVM takes its place; --keep-running leaves the
        mesh up and says how to pay; `mesh-x402 pay` shows the quote, the answer and the
        receipt (streamed and as JSON); SIGINT then stops every process and exits 130."""
        workdir = tmp_path / "devnet"
        process = subprocess.Popen(
            _command(
                "devnet",
                "--nodes",
                "2",
                "--requests",
                "2",
                "--json",
                "--keep-running",
                "--workdir",
                workdir,
            ),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "MESH_X402_ANVIL": str(tmp_path / "no-anvil-here")},
        )
        stdout, stderr = _Lines(process.stdout), _Lines(process.stderr)
        try:
            stderr.until("Press Ctrl-C to stop everything.")
            text = "".join(stderr.seen)
            assert "is not an executable file); using the embedded EVM (eth-tester)" in text
            key_file = workdir / "clients" / "alice.key"
            assert f"--key-file {key_file}" in text
            assert key_file.stat().st_mode & 0o777 == 0o600
            pages = [line.split()[1] for line in stderr.seen if "/plugins/x402/payments" in line]
            assert len(pages) == 2  # one Payments page per node
            for page_url in pages:
                page = httpx.get(page_url, timeout=HANG_GUARD)
                assert page.status_code == 200
                assert "registerMeshPluginUi" in page.text  # the console's host contract mounts it
            node_line = next(line for line in stderr.seen if "mesh-x402 pay --url" in line)
            url = node_line.split("--url ")[1].split()[0]
            model = node_line.split("--model ")[1].split()[0]

            streamed = subprocess.run(
                _command(
                    "pay",
                    "--url",
                    url,
                    "--key-file",
                    key_file,
                    "--model",
                    model,
                    "--stream",
                    "--max-tokens",
                    "32",
                    "Say hello to the mesh",
                ),
                capture_output=True,
                text=True,
                timeout=HANG_GUARD,
                check=False,
            )
            assert streamed.returncode == 0, streamed.stderr
            assert streamed.stdout.strip()  # the answer's text
            assert "quote: " in streamed.stderr
            assert f"on {EMBEDDED_NETWORK} (exact), payTo 0x" in streamed.stderr
            assert "receipt: state chargeable" in streamed.stderr
            assert "tokens " in streamed.stderr

            as_json = subprocess.run(
                _command(
                    "pay",
                    "--url",
                    url,
                    "--key-file",
                    key_file,
                    "--model",
                    model,
                    "--max-tokens",
                    "16",
                    "--json",
                    "How many nodes are there?",
                ),
                capture_output=True,
                text=True,
                timeout=HANG_GUARD,
                check=False,
            )
            assert as_json.returncode == 0, as_json.stderr
            document = json.loads(as_json.stdout)
            assert document["status"] == 200
            assert document["answer"]
            quote = int(document["quote"]["amount"])
            assert document["quote"]["network"] == EMBEDDED_NETWORK
            assert int(document["authorized"]) == quote
            response = document["paymentResponse"]
            assert response["success"] is True
            receipt = document["receipt"]
            assert receipt["receiptId"] == response["extra"]["receiptId"]
            assert receipt["state"] == "chargeable"
            assert 0 < int(receipt["charge"]) == int(response["amount"]) <= quote
            assert receipt["usage"]["completion_tokens"] == document["usage"]["completion_tokens"]
        finally:
            process.send_signal(signal.SIGINT)
            process.wait(timeout=HANG_GUARD)
            printed, progress = stdout.rest(), stderr.rest()
            for pipe in (process.stdout, process.stderr):
                if pipe is not None:
                    pipe.close()
        assert process.returncode == 130
        report = json.loads(printed)
        assert report["ok"] is True
        assert report["chain"]["kind"] == "embedded EVM (eth-tester)"
        assert "stopping every process the devnet started" in progress
        _assert_all_stopped(report, workdir)
