"""The gate with a receipt issuer: reserve before forwarding, charge through the issuer,
and a nonce a verified peer reserved is refused before anything reaches the upstream."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from mesh_x402.core.payer import encode_header, sign_payment
from mesh_x402.core.requirements import build_requirements
from mesh_x402.devnet.fake_upstream import FakeModel, FakeUpstream
from mesh_x402.http.app import GateApp
from mesh_x402.store.journal import Journal, PaymentState
from mesh_x402.store.receipts import ReceiptStore
from paywall_kit import PAY_TO, PAYER, TOKEN, paywall_app


class Issuer:
    """A receipt issuer that records what the gate asked, and charges through the journal."""

    def __init__(self, journal: Journal, upstream: FakeUpstream) -> None:
        self.journal = journal
        self.upstream = upstream
        self.calls: list[tuple[str, dict[str, Any]]] = []

    async def reserve(self, *, payer: str, nonce: str, value: int, valid_before: int) -> None:
        seen = len(self.upstream.app.requests)
        self.calls.append(("reserve", {"payer": payer, "nonce": nonce, "upstream_seen": seen}))

    async def charge(self, payment_id: str, **fields: Any) -> None:
        self.calls.append(("charge", {"payment_id": payment_id, **fields}))
        self.journal.mark_chargeable(
            payment_id,
            charge=fields["charge"],
            prompt_tokens=fields["prompt_tokens"],
            completion_tokens=fields["completion_tokens"],
        )


@pytest.fixture(scope="module")
def upstream() -> Iterator[FakeUpstream]:
    with FakeUpstream([FakeModel("m", completion_tokens=8)]) as fake:
        yield fake


@pytest.fixture
async def gate(tmp_path: Path, upstream: FakeUpstream) -> AsyncIterator[tuple[GateApp, Issuer]]:
    journal = Journal.in_state_dir(tmp_path / "state")
    issuer = Issuer(journal, upstream)
    app = paywall_app(tmp_path, journal, upstream, receipts=issuer)
    yield app, issuer
    await app.aclose()


async def paid(app: GateApp, nonce: str) -> httpx.Response:
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 8}
    transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=transport, base_url="http://node") as client:
        quoted = await client.post("/v1/chat/completions", json=body)
        amount = int(quoted.json()["accepts"][0]["maxAmountRequired"])
        requirements = build_requirements(TOKEN, PAY_TO, amount)
        payload = sign_payment(PAYER, requirements, TOKEN, now=int(time.time()), nonce=nonce)
        return await client.post(
            "/v1/chat/completions", json=body, headers={"PAYMENT-SIGNATURE": encode_header(payload)}
        )


async def test_reserved_before_forwarding_and_charged_through_the_issuer(
    gate: tuple[GateApp, Issuer], upstream: FakeUpstream
) -> None:
    """The reservation goes out before the upstream sees the request; the charge goes
    through the issuer with the exchange's figures."""
    app, issuer = gate
    before = len(upstream.app.requests)
    nonce = "0x" + "a1" * 32
    response = await paid(app, nonce)
    assert response.status_code == 200, response.text
    (reserve, reserved), (charge, charged) = issuer.calls
    assert (reserve, reserved["payer"], reserved["nonce"]) == ("reserve", PAYER.address, nonce)
    assert reserved["upstream_seen"] == before
    assert charge == "charge"
    record = issuer.journal.get(charged["payment_id"])
    assert record is not None
    assert (record.state, record.charge) == (PaymentState.CHARGEABLE, charged["charge"])
    assert (charged["model"], charged["nonce"], charged["value"]) == ("m", nonce, record.value)


async def test_peer_reserved_nonce_is_refused(
    gate: tuple[GateApp, Issuer], upstream: FakeUpstream
) -> None:
    """A nonce a verified peer reserved first is refused as used: not served, not reserved."""
    app, issuer = gate
    nonce = "0x" + "b2" * 32
    ReceiptStore(issuer.journal).reserve(PAYER.address, nonce, agent_id=4, reserved_at=1.0)
    before = len(upstream.app.requests)
    response = await paid(app, nonce)
    assert response.status_code == 402
    assert response.json()["error"] == "invalid_exact_evm_nonce_already_used"
    assert issuer.calls == []
    assert len(upstream.app.requests) == before
    assert issuer.journal.find(PAYER.address, nonce) is None
