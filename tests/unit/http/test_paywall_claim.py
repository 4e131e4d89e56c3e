"""The claim's commit runs while the request goes upstream, and the answer waits for it.

The journal decides a claim (replay and balance checks) before its commit's
fsync; the gate forwards on the decision and holds the response head until
the commit is done. These tests slow the commit down, or make it fail, on a
real SQLite journal in front of the real fake upstream.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sqlite3
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
from paywall_kit import PAY_TO, PAYER, TOKEN, paywall_app

BODY = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 8}


class HeldCommits(Journal):
    """A journal whose next write transaction waits, before committing, until the
    upstream has seen a request, and then commits or fails as told."""

    def __init__(self, path: Path, upstream: FakeUpstream) -> None:
        super().__init__(path)
        self.upstream = upstream
        self.hold = False
        self.fail = False
        self.seen_before_commit: bool | None = None

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        hold, self.hold = self.hold, False
        with super().transaction() as db:
            yield db
            if hold:
                deadline = time.monotonic() + 5
                while not self.upstream.requests and time.monotonic() < deadline:
                    time.sleep(0.005)
                self.seen_before_commit = bool(self.upstream.requests)
                if self.fail:
                    raise sqlite3.OperationalError("disk I/O error")  # rolls the claim back


@pytest.fixture
def upstream() -> Iterator[FakeUpstream]:
    with FakeUpstream([FakeModel("m", completion_tokens=8)]) as fake:
        yield fake


@pytest.fixture
async def gate(
    tmp_path: Path, upstream: FakeUpstream
) -> AsyncIterator[tuple[GateApp, HeldCommits]]:
    journal = HeldCommits(tmp_path / "state" / "journal.sqlite3", upstream)
    app = paywall_app(tmp_path, journal, upstream)
    yield app, journal
    await app.aclose()


async def _call(
    app: GateApp, body: dict[str, object], headers: dict[str, str], sent: list[Message]
) -> None:
    """One request straight through the ASGI app, recording in `sent` every message
    the app sent (also when the app raises)."""
    content = json.dumps(body).encode()
    scope = {
        "type": "http",
        "method": "POST",
        "path": "/v1/chat/completions",
        "query_string": b"",
        "scheme": "http",
        "headers": [
            (b"host", b"node"),
            (b"content-type", b"application/json"),
            *((name.encode(), value.encode()) for name, value in headers.items()),
        ],
    }
    inbound = [{"type": "http.request", "body": content, "more_body": False}]
    done = asyncio.Event()

    async def receive() -> Message:
        if inbound:
            return inbound.pop()
        await done.wait()
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        sent.append(message)

    try:
        await app(scope, receive, send)
    finally:
        done.set()


async def _pay(
    app: GateApp, journal: HeldCommits, body: dict[str, object], nonce: str, sent: list[Message]
) -> None:
    """Pay for `body` with a fresh authorization; the journal holds the claim's commit."""
    quoted: list[Message] = []
    await _call(app, body, {}, quoted)
    required = json.loads(quoted[-1]["body"])
    amount = int(required["accepts"][0]["maxAmountRequired"])
    requirements = build_requirements(TOKEN, PAY_TO, amount)
    payload = sign_payment(PAYER, requirements, TOKEN, now=int(time.time()), nonce=nonce)
    journal.hold = True
    await _call(app, body, {"payment-signature": encode_header(payload)}, sent)


async def test_the_request_goes_upstream_while_the_claim_commits(
    gate: tuple[GateApp, HeldCommits],
) -> None:
    """The upstream sees the request before the claim's commit ends, and the client
    gets its answer, with the payment journalled, once it has."""
    app, journal = gate
    nonce = "0x" + os.urandom(32).hex()
    sent: list[Message] = []
    await _pay(app, journal, BODY, nonce, sent)
    assert sent[0]["status"] == 200, sent
    assert journal.seen_before_commit is True
    record = journal.find(PAYER.address, nonce)
    assert record is not None
    assert record.state is PaymentState.CHARGEABLE


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
async def test_a_claim_whose_commit_fails_gets_no_answer_and_no_payment(
    gate: tuple[GateApp, HeldCommits], stream: bool
) -> None:
    """The claim was decided, the request went upstream, then the commit failed: the
    client hears no status (not even a stream's head) and nothing is journalled."""
    app, journal = gate
    journal.fail = True
    sent: list[Message] = []
    with pytest.raises(sqlite3.OperationalError, match="disk I/O error"):
        await _pay(app, journal, {**BODY, "stream": stream}, "0x" + os.urandom(32).hex(), sent)
    assert journal.seen_before_commit is True
    assert sent == []
    with journal.connection() as db:
        assert db.execute("SELECT COUNT(*) FROM payments").fetchone()[0] == 0
