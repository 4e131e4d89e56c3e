"""`mesh-x402 receipts`: the usage receipts this node holds, from its ledger.

    mesh-x402 receipts --config node.toml [--json] [--limit N]

Reads the node's SQLite ledger only (no chain, no running plugin needed):
receipts this node signed as the entry node, with their payment's state and
settle transaction, and receipts peers sent it. Oldest first, as the
operator API's `ListReceipts` pages them; `--json` prints the same records
the API returns (camelCase, amounts as decimal strings).
"""

from __future__ import annotations

import argparse
import datetime
import json
from pathlib import Path

from google.protobuf.json_format import MessageToDict

from mesh_x402._pb.mesh_x402.v1 import operator_pb2 as pb
from mesh_x402.commands._chain import quiet_logs
from mesh_x402.config import load_config
from mesh_x402.errors import ConfigError
from mesh_x402.rpc.service import MAX_PAGE_SIZE, receipt_record
from mesh_x402.store.journal import FILE_NAME, Journal
from mesh_x402.store.receipts import ReceiptStore

__all__ = ["configure", "run"]


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, type=Path, help="the node's node.toml")
    parser.add_argument("--json", action="store_true", help="print a JSON array")
    parser.add_argument(
        "--limit", type=int, default=100, help=f"at most N receipts (1..{MAX_PAGE_SIZE})"
    )


def _short(text: str) -> str:
    return text if len(text) <= 14 else f"{text[:8]}…{text[-4:]}"


def _row(record: pb.ReceiptRecord) -> str:
    created = datetime.datetime.fromtimestamp(record.created_at, datetime.timezone.utc)
    credits = ",".join(f"{c.agent_id}:{c.amount}" for c in record.credits)
    return (
        f"{created:%Y-%m-%d %H:%M:%S}  {_short(record.receipt_hash):14}  "
        f"{_short(record.payer):14}  {record.model[:16]:16}  {record.charge:>10}  "
        f"{record.refund:>10}  {record.payment_state or 'peer':10}  "
        f"{_short(record.transaction) or '-':14}  {credits}"
    )


def run(args: argparse.Namespace) -> int:
    quiet_logs()
    if not 1 <= args.limit <= MAX_PAGE_SIZE:
        raise ConfigError(f"--limit must be from 1 to {MAX_PAGE_SIZE}, got {args.limit}")
    config = load_config(args.config)
    if not (config.state_path / FILE_NAME).exists():
        raise ConfigError(f"{config.state_path / FILE_NAME}: no ledger yet (has this node run?)")
    with Journal.in_state_dir(config.state_path) as journal:
        stored = ReceiptStore(journal).receipts(limit=args.limit)
        records = [receipt_record(s, journal) for s in stored]
    if args.json:
        rows = [MessageToDict(r, always_print_fields_with_no_presence=True) for r in records]
        print(json.dumps(rows, indent=2))
        return 0
    if not records:
        print("no receipts")
        return 0
    print(
        f"{'created (UTC)':19}  {'receipt':14}  {'payer':14}  {'model':16}  {'charge':>10}  "
        f"{'refund':>10}  {'state':10}  {'tx':14}  credits (agentId:amount)"
    )
    for record in records:
        print(_row(record))
    return 0
