"""The gate's activity: what the reconciler's loop waits on before a pass."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from mesh_x402.chain.reconciler import QUIET_SECONDS, Reconciler
from mesh_x402.core.payer import encode_header, sign_payment
from mesh_x402.core.requirements import build_requirements
from mesh_x402.devnet.fake_upstream import FakeModel, FakeUpstream
from mesh_x402.http.activity import Activity
from mesh_x402.http.server import Message
from mesh_x402.store.journal import Journal
from paywall_kit import PAY_TO, PAYER, TOKEN, call_app, paywall_app

BODY = {"model": "slow", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 8}


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_idle_counts_from_the_last_request_that_ended() -> None:
    clock = Clock()
    activity = Activity(clock)
    clock.now = 103.0
    assert activity.idle_seconds() == 3.0
    activity.started()
    activity.started()
    clock.now = 110.0
    activity.finished()
    assert activity.idle_seconds() == 0.0, "one request is still in flight"
    clock.now = 111.0
    activity.finished()
    clock.now = 111.5
    assert activity.idle_seconds() == 0.5


@pytest.fixture
def upstream() -> Iterator[FakeUpstream]:
    with FakeUpstream([FakeModel("slow", completion_tokens=8, first_byte_delay=0.3)]) as fake:
        yield fake


async def test_a_paid_request_is_activity_until_it_is_answered(
    tmp_path: Path, upstream: FakeUpstream
) -> None:
    journal = Journal(tmp_path / "state" / "journal.sqlite3")
    app = paywall_app(tmp_path, journal, upstream)
    try:
        quoted: list[Message] = []
        await call_app(app, BODY, {}, quoted)
        amount = int(json.loads(quoted[-1]["body"])["accepts"][0]["maxAmountRequired"])
        requirements = build_requirements(TOKEN, PAY_TO, amount)
        header = encode_header(sign_payment(PAYER, requirements, TOKEN, now=int(time.time())))
        sent: list[Message] = []
        paying = asyncio.ensure_future(call_app(app, BODY, {"payment-signature": header}, sent))
        for _ in range(500):  # bounded: until the fake upstream has the request
            if upstream.requests:
                break
            await asyncio.sleep(0.01)
        assert app.activity.idle_seconds() == 0.0
        await paying
        assert sent[0]["status"] == 200
        assert app.activity.idle_seconds() > 0.0
    finally:
        await app.aclose()


class CountingPasses(Reconciler):
    """Only `run_forever`'s pacing: each pass records how idle the gate was."""

    def __init__(self, activity: Activity) -> None:  # no chain, no journal
        self.activity = activity
        self.idle_at_passes: list[float] = []

    async def run_once(self, *, pacer: object = None) -> None:  # type: ignore[override]
        self.idle_at_passes.append(self.activity.idle_seconds())


async def _passes(reconciler: CountingPasses, *, idle_wait: float, count: int) -> None:
    task = asyncio.ensure_future(
        reconciler.run_forever(
            0.01, idle_seconds=reconciler.activity.idle_seconds, idle_wait=idle_wait
        )
    )
    try:
        for _ in range(1000):  # bounded
            if len(reconciler.idle_at_passes) >= count:
                return
            await asyncio.sleep(0.01)
        raise AssertionError("the passes never came")
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_a_due_pass_waits_for_a_quiet_moment() -> None:
    """While a request is in flight no pass runs; once the gate has been idle for
    QUIET_SECONDS, passes run."""
    activity = Activity()
    reconciler = CountingPasses(activity)
    activity.started()
    task = asyncio.ensure_future(_passes(reconciler, idle_wait=60, count=1))
    await asyncio.sleep(2 * QUIET_SECONDS)
    assert reconciler.idle_at_passes == []
    activity.finished()
    await task
    assert reconciler.idle_at_passes[0] >= QUIET_SECONDS


async def test_a_pass_waits_no_longer_than_idle_wait() -> None:
    """A gate that is never idle does not keep settlement from happening."""
    activity = Activity()
    activity.started()
    reconciler = CountingPasses(activity)
    await _passes(reconciler, idle_wait=0.05, count=3)
    assert reconciler.idle_at_passes[:3] == [0.0, 0.0, 0.0]
