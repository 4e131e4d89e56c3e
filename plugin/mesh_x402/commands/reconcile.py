"""`mesh-x402 reconcile`: settle this node's chargeable payments now.

    mesh-x402 reconcile --config node.toml --once [--json]
    mesh-x402 reconcile --config node.toml          (a pass every [settlement] interval_seconds)

One pass of the same reconciler `serve` runs in the background: batches
left `sent` by a killed process are resolved first, then settleable receipts
go on chain in batches of `[settlement] batch_size`, and this node's credits
are compared with its acknowledged receipts. Safe to run while `serve` is
running (a lock file serialises them) and safe to kill at any instant.
Exit code 1 when the chain stopped the pass (e.g. the RPC stayed down).
"""

from __future__ import annotations

import argparse
import asyncio
import json
from collections.abc import Callable
from pathlib import Path

from mesh_x402.chain.reconciler import (
    DEFAULT_BACKOFF,
    Backoff,
    BatchReport,
    Reconciler,
    ReconcileReport,
)
from mesh_x402.commands._chain import NodeChain, connect_node, quiet_logs
from mesh_x402.state import load_identity
from mesh_x402.store.journal import Journal
from mesh_x402.store.receipts import ReceiptStore

__all__ = ["configure", "reconciler_for", "run"]


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, type=Path, help="the node's node.toml")
    parser.add_argument("--once", action="store_true", help="one pass, then exit")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")


def reconciler_for(
    node: NodeChain,
    journal: Journal,
    *,
    on_batch: Callable[[BatchReport], None] | None = None,
    backoff: Backoff = DEFAULT_BACKOFF,
) -> Reconciler:
    """The node's reconciler: its key, contracts, journal and (if registered) agentId."""
    identity = load_identity(node.state_dir)
    agent_id = None
    if identity is not None and identity.identity_registry.lower() == node.registry.address.lower():
        agent_id = identity.agent_id
    return Reconciler(
        client=node.client,
        settlement=node.settlement,
        token=node.token,
        account=node.account,
        journal=journal,
        receipts=ReceiptStore(journal),
        state_dir=node.state_dir,
        batch_size=node.config.settlement.batch_size,
        agent_id=agent_id,
        backoff=backoff,
        on_batch=on_batch,
    )


def _print(report: ReconcileReport) -> None:
    if report.resumed:
        print(f"resumed {report.resumed} interrupted batch(es)")
    for batch in report.batches:
        print(
            f"batch {batch.batch_id} {batch.state}: {batch.settled} settled, "
            f"{batch.failed} failed, total {batch.total}, tx {batch.tx_hash}"
        )
    print(f"settled {report.settled} payment(s)")
    for reason, count in sorted(report.failed.items()):
        print(f"failed {count}: {reason}")
    for reason, count in sorted(report.retrying.items()):
        print(f"waiting {count}: {reason}")
    credit = report.credit
    if credit is not None:
        print(
            f"agentId {credit.agent_id}: on chain {credit.on_chain} "
            f"(balance {credit.balance} + withdrawn {credit.withdrawn}), "
            f"acknowledged {credit.acknowledged}, pending {credit.pending}, "
            f"shortfall {credit.shortfall}"
        )
    if report.error is not None:
        print(f"stopped: {report.error}")


def run(args: argparse.Namespace) -> int:
    quiet_logs()
    node = connect_node(args.config)
    with Journal.in_state_dir(node.state_dir) as journal:
        reconciler = reconciler_for(node, journal)
        if not args.once:
            asyncio.run(reconciler.run_forever(node.config.settlement.interval_seconds))
        report = asyncio.run(reconciler.run_once())
    if args.json:
        print(json.dumps(report.to_json(), indent=2))
    else:
        _print(report)
    return 0 if report.ok else 1
