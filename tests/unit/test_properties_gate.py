"""Property tests: the gate's ASGI app, driven in-process with arbitrary requests.

Bodies (bytes, JSON, a valid chat body with a field replaced) and payment
headers (text, base64 JSON, a correctly signed payment with one field
replaced) arrive on every route. Whatever comes in, the answer is a 4xx
with a reason (an `error.code`, or the x402 `error` with `PAYMENT-REQUIRED`)
or a success; a 5xx only where the fault is not the client's (the upstream,
which here does not exist, after a payment was accepted and released).
"""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from eth_account import Account
from hypothesis import given
from hypothesis import strategies as st
from mesh_x402.config import NodeConfig
from mesh_x402.core.payer import encode_header, sign_payment
from mesh_x402.core.ports import TokenDomain
from mesh_x402.core.pricing import Quote, quote_request
from mesh_x402.core.requirements import build_requirements
from mesh_x402.http.app import GateApp, GateContext, build_app
from mesh_x402.http.upstream import UpstreamClient
from mesh_x402.store.journal import Journal, PaymentState

TOKEN = TokenDomain("USD Coin", "2", 31337, "0x5FbDB2315678afecb367f032d93F642f64180aa3")
PAY_TO = "0xe7f1725E7734CE288F8367e1Bb143E90bb3F0512"
PAYER = Account.from_key("0x" + "3d" * 32)
BODY: dict[str, Any] = {
    "model": "m",
    "messages": [{"role": "user", "content": "hi"}],
    "max_tokens": 16,
}
PATHS = (
    "/v1/chat/completions",
    "/v1/completions",
    "/api/plugins/x402/http/v1/chat/completions",
    "/v1/models",
    "/x402/receipts/abc",
    "/.well-known/agent-registration.json",
)


class RichPayers:
    """Every payer's cached balance covers any quote, so refusals come from the payment."""

    def cached_balance(self, payer: str) -> int | None:
        return 10**30


@pytest.fixture(scope="module")
def state(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("gate-properties")


def _app(folder: Path) -> GateApp:
    config = NodeConfig(path=folder / "node.toml")
    return build_app(
        GateContext(
            config=config,
            journal=Journal.in_state_dir(folder / "state"),
            token=TOKEN,
            pay_to=PAY_TO,
            balances=RichPayers(),
            # Nothing listens on the discard port: an accepted payment meets a dead upstream.
            upstream=UpstreamClient("http://127.0.0.1:9", timeout=1.0),
        )
    )


def _signed_payment(version: int) -> dict[str, Any]:
    raw = json.dumps(BODY, separators=(",", ":")).encode()
    quote = quote_request(NodeConfig().pricing, BODY, len(raw))
    assert isinstance(quote, Quote)
    requirements = build_requirements(TOKEN, PAY_TO, quote.amount)
    return sign_payment(PAYER, requirements, TOKEN, now=int(time.time()), version=version)


SIGNED = {2: _signed_payment(2), 1: _signed_payment(1)}

_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=10,
)


def _leaf_paths(value: Any, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    if not isinstance(value, dict):
        return [prefix]
    found: list[tuple[str, ...]] = [prefix] if prefix else []
    for key, child in value.items():
        found += _leaf_paths(child, (*prefix, key))
    return found


def _replace(value: dict[str, Any], path: tuple[str, ...], new: Any) -> dict[str, Any]:
    copy = dict(value)
    copy[path[0]] = new if len(path) == 1 else _replace(copy[path[0]], path[1:], new)
    return copy


@st.composite
def _payment_header(draw: st.DrawFn) -> str | None:
    kind = draw(st.sampled_from(["none", "text", "json", "mutated", "mutated", "mutated"]))
    if kind == "none":
        return None
    if kind == "text":
        return draw(st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126)))
    if kind == "json":
        return base64.b64encode(json.dumps(draw(_JSON)).encode()).decode()
    payload = SIGNED[draw(st.sampled_from([1, 2]))]
    path = draw(st.sampled_from(_leaf_paths(payload)))
    return encode_header(_replace(payload, path, draw(_JSON)))


@st.composite
def _body(draw: st.DrawFn) -> bytes:
    kind = draw(st.sampled_from(["bytes", "json", "field"]))
    if kind == "bytes":
        return draw(st.binary(max_size=200))
    if kind == "json":
        return json.dumps(draw(_JSON)).encode()
    key = draw(st.sampled_from(["model", "messages", "max_tokens", "stream", "prompt", "n"]))
    return json.dumps({**BODY, key: draw(_JSON)}).encode()


def _has_reason(response: httpx.Response) -> bool:
    """A refusal names its reason: the x402 `error` (402) or an OpenAI-style error code."""
    try:
        body = response.json()
    except ValueError:
        return False
    if response.status_code == 402:
        return bool(body.get("error")) and "payment-required" in response.headers
    error = body.get("error") if isinstance(body, dict) else None
    return isinstance(error, dict) and bool(error.get("message")) and bool(error.get("type"))


@given(
    method=st.sampled_from(["POST", "POST", "POST", "GET", "PUT"]),
    path=st.sampled_from(PATHS),
    body=_body(),
    header=_payment_header(),
    header_name=st.sampled_from(["payment-signature", "x-payment"]),
)
async def test_any_request_gets_an_answer_with_a_reason(  # noqa: PLR0917 - hypothesis args
    state: Path, method: str, path: str, body: bytes, header: str | None, header_name: str
) -> None:
    """No exception escapes the app, no 5xx for a client fault, each refusal says why."""
    app = _app(state)
    headers = {"content-type": "application/json"}
    if header is not None:
        headers[header_name] = header
    transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://node") as client:
            response = await client.request(method, path, content=body, headers=headers)
    finally:
        await app.aclose()
    status = response.status_code
    if status >= 500:
        # Not the client's fault: the upstream does not exist. A payment that got
        # this far (it passed every check) is released, never charged.
        assert status == 502, response.text
        assert response.json()["error"]["code"] == "upstream_unreachable", response.text
        answer = response.headers.get(
            "payment-response", response.headers.get("x-payment-response")
        )
        assert answer is None or json.loads(base64.b64decode(answer))["success"] is False
    elif status >= 400:
        assert _has_reason(response), (status, response.text)


async def test_the_unmutated_payment_reaches_the_upstream_and_is_released(
    state: Path,
) -> None:
    """The mutation base is a payment the gate accepts: it goes as far as the (dead)
    upstream, then is released, so the property explores next to real acceptance."""
    app = _app(state)
    transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
    header = encode_header(_signed_payment(2))
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://node") as client:
            response = await client.post(
                "/v1/chat/completions",
                content=json.dumps(BODY, separators=(",", ":")).encode(),
                headers={"payment-signature": header},
            )
    finally:
        await app.aclose()
    assert response.status_code == 502
    journal = Journal.in_state_dir(state / "state")
    try:
        assert journal.count(PaymentState.RELEASED) >= 1
        assert journal.count(PaymentState.ACCEPTED) == 0
    finally:
        journal.close()
