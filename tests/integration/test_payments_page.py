"""The Payments page in a real browser, against a paid and settled mesh on anvil.

A two-node devnet (anvil, contracts, registered agents, `mesh-x402 serve`
under linked host doubles) takes a few paid requests and settles them. The
console double then serves a page implementing mesh-llm's host contract
over node-0's management listener; headless Chromium mounts the plugin's
own bundle in it, and what the page shows (balances, receipt rows, their
transaction hashes, the settlement batches) must equal node-0's journal and
the chain. A screenshot of each console theme is saved under the artifacts
folder ($MESH_X402_ARTIFACTS, else ./artifacts).
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import socket
import sys
from pathlib import Path
from typing import Any

import pytest
from chromium import Browser
from mesh_x402.chain.bindings import SettlementBinding
from mesh_x402.devnet.progress import Progress
from mesh_x402.devnet.runner import Devnet, DevnetNode, DevnetOptions
from mesh_x402.hostdouble import Host, HostConfig
from mesh_x402.hostdouble.console import ConsoleDouble
from mesh_x402.keys import create_key_file
from mesh_x402.store.journal import Journal
from mesh_x402.store.settlements import SettlementStore
from mesh_x402.store_archive import package_manifest

pytestmark = pytest.mark.integration

WEB_DIR = Path(__file__).resolve().parents[2] / "plugin" / "mesh_x402" / "web"
ARTIFACTS = Path(os.environ.get("MESH_X402_ARTIFACTS") or "artifacts")

# Waits (in the page) until the figures are loaded, the chain is connected and
# the on-chain balances the test read are shown, then returns what is on screen.
_READ_PAGE = """
(async (expected) => {
  const text = (sel) => { const e = document.querySelector(sel); return e ? e.textContent : null; };
  for (let i = 0; i < 1200; i++) {
    const error = document.body.getAttribute('data-mount-error');
    if (error) return { error };
    const notice = document.querySelector('[data-field="chain-notice"]');
    const ready = document.querySelector('[data-loaded]')
      && notice && notice.style.display === 'none'
      && text('[data-field="credited"]') === expected.credited
      && text('[data-field="withdrawn"]') === expected.withdrawn
      && document.querySelectorAll('tr[data-receipt-id]').length === expected.rows;
    if (ready) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  return {
    credited: text('[data-field="credited"]'),
    withdrawn: text('[data-field="withdrawn"]'),
    pending: text('[data-field="pending"]'),
    settled: text('[data-field="settled"]'),
    refunds: text('[data-field="refunds"]'),
    agentId: text('[data-field="agent-id"]'),
    chainNotice: text('[data-field="chain-notice"]'),
    chart: !!document.querySelector('[data-field="earnings-chart"] polyline'),
    receipts: [...document.querySelectorAll('tr[data-receipt-id]')].map((tr) => ({
      id: tr.getAttribute('data-receipt-id'),
      charge: tr.querySelector('[data-col="charge"]').textContent,
      refund: tr.querySelector('[data-col="refund"]').textContent,
      state: tr.children[6].textContent,
      tx: (tr.querySelector('[data-tx]') || { getAttribute: () => null }).getAttribute('data-tx'),
    })),
    batches: [...document.querySelectorAll('tr[data-batch-id] [data-tx]')]
      .map((c) => c.getAttribute('data-tx')),
    background: getComputedStyle(document.querySelector('.x402p')).backgroundColor,
  };
})
"""


def _ledger(devnet: Devnet, node: DevnetNode) -> dict[str, Any]:
    """What the page must show: node-0's journal and its agent's balances on chain."""
    assert devnet.deployment is not None
    assert devnet.chain is not None
    settlement = SettlementBinding(devnet.chain, devnet.deployment.settlement)
    journal = Journal.in_state_dir(node.state_dir)
    try:
        with journal.connection() as db:
            ids = [
                str(r[0])
                for r in db.execute("SELECT receipt_id FROM payments ORDER BY created_at DESC")
            ]
        records = [journal.get(i) for i in ids]
        batches = [b.tx_hash for b in SettlementStore(journal).recent(20)]
    finally:
        journal.close()
    receipts = []
    for record in records:
        assert record is not None
        charge = record.charge
        receipts.append(
            {
                "id": record.receipt_id,
                "charge": "—" if charge is None else str(charge),
                "refund": "—" if charge is None else str(record.value - charge),
                "state": record.state.value,
                "tx": record.transaction,
            }
        )
    settled = sum(r.charge or 0 for r in records if r.state.value == "settled")
    pending = sum(r.charge or 0 for r in records if r.state.value == "chargeable")
    return {
        "credited": str(settlement.balance_of(node.agent_id)),
        "withdrawn": str(settlement.withdrawn(node.agent_id)),
        "settled": str(settled),
        "pending": str(pending),
        "receipts": receipts,
        "batches": batches,
    }


def _show(console: ConsoleDouble, expected: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Open the page in each theme, read it, save a screenshot (blocking)."""
    seen = {}
    args = json.dumps(
        {
            "credited": expected["credited"],
            "withdrawn": expected["withdrawn"],
            "rows": len(expected["receipts"]),
        }
    )
    with Browser() as browser:
        for theme in ("light", "dark"):
            browser.open(console.page_url(theme))
            seen[theme] = browser.evaluate(f"{_READ_PAGE}({args})")
            browser.screenshot(ARTIFACTS / f"payments-page-{theme}.png")
    return seen


async def test_payments_page_shows_the_ledger(tmp_path: Path) -> None:
    """Balances, receipt rows, their settlement tx hashes and the batches on screen equal
    node-0's journal and the chain, in the console's light and dark themes."""
    devnet = Devnet(
        DevnetOptions(nodes=2, requests=4, clients=1, workdir=tmp_path / "devnet"),
        Progress(10, stream=io.StringIO(), interactive=False),
    )
    console: ConsoleDouble | None = None
    try:
        await devnet.start()
        assert devnet.local is not None
        assert devnet.local.kind == "anvil"  # never the eth-tester fallback here
        await devnet.pay()
        await devnet.settle()
        node = devnet.nodes[0]
        expected = await asyncio.to_thread(_ledger, devnet, node)
        assert expected["receipts"], "node-0 took no payment: nothing to show"
        assert expected["batches"], "node-0 sent no settlement batch"
        (page,) = package_manifest("x402")["web_ui"]["pages"]
        console = ConsoleDouble("x402", node.management_url, WEB_DIR, page)
        console.start()
        seen = await asyncio.to_thread(_show, console, expected)
    finally:
        if console is not None:
            console.stop()
        await devnet.stop()

    for theme, shown in seen.items():
        assert "error" not in shown, shown
        assert shown["chainNotice"] == "", theme
        assert shown["credited"] == expected["credited"]
        assert shown["withdrawn"] == expected["withdrawn"]
        assert shown["settled"] == expected["settled"]
        assert shown["pending"] == expected["pending"]
        assert shown["agentId"] == str(node.agent_id)
        assert shown["receipts"] == expected["receipts"][:20]
        assert all(r["tx"] for r in shown["receipts"] if r["state"] == "settled")
        assert shown["batches"] == expected["batches"]
        assert shown["chart"]
    # The page takes its colours from the host's theme tokens.
    assert seen["light"]["background"] == "rgb(255, 255, 255)"
    assert seen["dark"]["background"] == "rgb(11, 13, 18)"
    assert (ARTIFACTS / "payments-page-light.png").stat().st_size > 0
    assert (ARTIFACTS / "payments-page-dark.png").stat().st_size > 0


_READ_EMPTY_PAGE = """
(async () => {
  for (let i = 0; i < 1200; i++) {
    const error = document.body.getAttribute('data-mount-error');
    if (error) return { error };
    if (document.querySelector('[data-loaded]')) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  const notice = document.querySelector('[data-field="chain-notice"]');
  const shown = {
    notice: notice.style.display === 'none' ? null : notice.textContent,
    noReceipts: !!document.querySelector('[data-field="no-receipts"]'),
    noBatches: !!document.querySelector('[data-field="no-batches"]'),
    credited: document.querySelector('[data-field="credited"]').textContent,
  };
  return shown;
})()
"""
_UNMOUNT = """
(() => {
  window.__meshPluginHandle.unmount();
  return document.getElementById('mount').childElementCount;
})()
"""


async def test_payments_page_without_chain_or_receipts(tmp_path: Path) -> None:
    """A node whose chain does not answer and that took no payment: the page says both
    plainly (no error page), shows unknown on-chain balances as such, and unmounts clean."""
    folder = tmp_path / "node"
    folder.mkdir()
    create_key_file(folder / "node.key")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = sock.getsockname()[1]
    config = folder / "node.toml"
    config.write_text(
        f'[gateway]\nlisten = "127.0.0.1:0"\n\n[chain]\nrpc = "http://127.0.0.1:{closed}"\n',
        encoding="utf-8",
    )
    host = Host(
        HostConfig(
            plugin_name="x402",
            command=[sys.executable, "-m", "mesh_x402", "serve", "--config", str(config)],
            home=tmp_path / "home",
            env={"PATH": os.environ.get("PATH", "")},
            stderr_path=tmp_path / "plugin.log",
        )
    )
    await host.start()
    try:
        (page,) = package_manifest("x402")["web_ui"]["pages"]
        with ConsoleDouble("x402", host.management_url, WEB_DIR, page) as console:

            def show() -> dict[str, Any]:
                with Browser() as browser:
                    browser.open(console.page_url("light"))
                    shown: dict[str, Any] = browser.evaluate(_READ_EMPTY_PAGE)
                    browser.screenshot(ARTIFACTS / "payments-page-no-chain.png")
                    shown["afterUnmount"] = browser.evaluate(_UNMOUNT)
                    return shown

            shown = await asyncio.to_thread(show)
    finally:
        await host.stop()
    assert "error" not in shown, shown
    assert shown["notice"] is not None
    assert shown["notice"].startswith("No chain connection")
    assert shown["noReceipts"]
    assert shown["noBatches"]
    assert shown["credited"] == "—"
    assert shown["afterUnmount"] == 0
