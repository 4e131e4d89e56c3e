"""The claim's sync runs while the request goes upstream, and the answer waits for it.

The gate commits a claim (replay and balance checks) on its event loop and
forwards at once, while the journal's `sync` (the fsync) runs on the writer
thread; the response head waits for the sync. These tests hold the sync
back, or make it fail, on a real SQLite journal in front of the real fake
upstream.
"""

from __future__ import annotations

import errno
import json
import os
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from mesh_x402.core.payer import encode_header, sign_payment
from mesh_x402.core.requirements import build_requirements
from mesh_x402.devnet.fake_upstream import FakeModel, FakeUpstream
from mesh_x402.http.app import GateApp
from mesh_x402.http.server import Message
from mesh_x402.store.journal import Journal, PaymentState
from paywall_kit import PAY_TO, PAYER, TOKEN, call_app, paywall_app

BODY = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 8}


class HeldSyncs(Journal):
    """A journal whose next sync waits until the upstream has seen a request, and
    then syncs or fails as told."""

    def __init__(self, path: Path, upstream: FakeUpstream) -> None:
        self.upstream = upstream
        self.hold = False
        self.fail = False
        self.seen_before_sync: bool | None = None
        super().__init__(path)

    def sync(self) -> None:
        hold, self.hold = self.hold, False
        if hold:
            deadline = time.monotonic() + 5
            while not self.upstream.requests and time.monotonic() < deadline:
                time.sleep(0.005)
            self.seen_before_sync = bool(self.upstream.requests)
            if self.fail:
                raise OSError(errno.EIO, "disk I/O error")
        super().sync()


@pytest.fixture
def upstream() -> Iterator[FakeUpstream]:
    with FakeUpstream([FakeModel("m", completion_tokens=8)]) as fake:
        yield fake


@pytest.fixture
async def gate(tmp_path: Path, upstream: FakeUpstream) -> AsyncIterator[tuple[GateApp, HeldSyncs]]:
    journal = HeldSyncs(tmp_path / "state" / "journal.sqlite3", upstream)
    app = paywall_app(tmp_path, journal, upstream)
    yield app, journal
    await app.aclose()


async def _pay(
    app: GateApp, journal: HeldSyncs, body: dict[str, object], nonce: str, sent: list[Message]
) -> None:
    """Pay for `body` with a fresh authorization; the journal holds the claim's commit."""
    quoted: list[Message] = []
    await call_app(app, body, {}, quoted)
    required = json.loads(quoted[-1]["body"])
    amount = int(required["accepts"][0]["maxAmountRequired"])
    requirements = build_requirements(TOKEN, PAY_TO, amount)
    payload = sign_payment(PAYER, requirements, TOKEN, now=int(time.time()), nonce=nonce)
    journal.hold = True
    await call_app(app, body, {"payment-signature": encode_header(payload)}, sent)


async def test_the_request_goes_upstream_while_the_claim_syncs(
    gate: tuple[GateApp, HeldSyncs],
) -> None:
    """The upstream sees the request before the claim's sync ends, and the client
    gets its answer, with the payment journalled, once it has."""
    app, journal = gate
    nonce = "0x" + os.urandom(32).hex()
    sent: list[Message] = []
    await _pay(app, journal, BODY, nonce, sent)
    assert sent[0]["status"] == 200, sent
    assert journal.seen_before_sync is True
    record = journal.find(PAYER.address, nonce)
    assert record is not None
    assert record.state is PaymentState.CHARGEABLE


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
async def test_a_claim_whose_sync_fails_gets_no_answer_and_is_released(
    gate: tuple[GateApp, HeldSyncs], stream: bool
) -> None:
    """The claim was committed, the request went upstream, then the sync failed: the
    client hears no status (not even a stream's head), and the payment is released,
    never charged."""
    app, journal = gate
    journal.fail = True
    sent: list[Message] = []
    nonce = "0x" + os.urandom(32).hex()
    with pytest.raises(OSError, match="disk I/O error"):
        await _pay(app, journal, {**BODY, "stream": stream}, nonce, sent)
    assert journal.seen_before_sync is True
    assert sent == []
    record = journal.find(PAYER.address, nonce)
    assert record is not None
    assert (record.state, record.reason) == (PaymentState.RELEASED, "journal_sync_failed")
    assert record.charge is None
