"""Abuse: hostile bytes on both HTTP entry points, replayed payments, hostile peers.

- Raw requests (garbage, huge heads, lying or malformed Content-Length) go
  to the gate app behind the real `HttpServer` on a Unix socket (the
  binding's door) and a loopback TCP port (the gateway): each connection
  gets a 4xx or is closed, never a 5xx or a hang, and the server keeps serving.
- Replays, on three `serve` processes under linked host doubles with
  registered identities (the mesh of `test_receipts_mesh`): 100 concurrent
  copies of one payment at one node serve once; once the reservation has
  spread the other two refuse it; it is settled once.
- Hostile peers on that mesh: a spoofed sender peer id, a bad signature, a
  claim to another node's agentId, unverified senders, a flood: all dropped
  with their reason logged, and receipts, reservations and settlement unchanged.
- The plugins' logs hold no key, signature or payment header.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from eth_account import Account
from fault_kit import Reconciling, assert_no_secrets
from hypothesis import given
from hypothesis import strategies as st
from mesh_x402._pb.mesh_x402.v1 import gossip_pb2 as gpb
from mesh_x402.chain.bindings import SettlementBinding, TokenBinding
from mesh_x402.config import NodeConfig
from mesh_x402.core.payer import encode_header, sign_payment
from mesh_x402.core.ports import TokenDomain
from mesh_x402.core.receipts import Credit, Receipt, ReceiptDomain, receipt_digest, sign_digest
from mesh_x402.http.app import GateContext, build_app
from mesh_x402.http.server import HttpServer
from mesh_x402.http.upstream import UpstreamClient
from mesh_x402.keys import load_key_file
from mesh_x402.mesh.receipting import receipt_to_pb
from mesh_x402.store.journal import Journal, PaymentState
from test_receipts_mesh import (  # the three-node mesh and its helpers, reused
    MODEL,
    Chain,
    Node,
    chain,
    chat,
    eventually,
    forged_gossip,
    funded_payer,
    mesh,
    requirements_for,
)

pytestmark = pytest.mark.integration

__all__ = ["chain", "mesh"]  # fixtures imported for this module's tests

WAIT = 30.0  # a bound on hangs, not a speed assertion
TOKEN = TokenDomain("USD Coin", "2", 31337, "0x5FbDB2315678afecb367f032d93F642f64180aa3")


class _RichPayers:
    def cached_balance(self, payer: str) -> int | None:
        return 10**30


@pytest.fixture
async def doors(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[tuple[Path, int]]:
    """The gate app (no chain needed to refuse) served on a Unix socket and a TCP port."""
    folder = tmp_path_factory.mktemp("doors")
    app = build_app(
        GateContext(
            config=NodeConfig(path=folder / "node.toml"),
            journal=Journal.in_state_dir(folder / "state"),
            token=TOKEN,
            pay_to="0xe7f1725E7734CE288F8367e1Bb143E90bb3F0512",
            balances=_RichPayers(),
            upstream=UpstreamClient("http://127.0.0.1:9", timeout=1.0),
        )
    )
    server = HttpServer(app)
    unix = Path(f"/tmp/mx-abuse-{os.getpid()}.sock")  # short: AF_UNIX paths are limited
    server.listen_unix(unix)
    _, port = server.listen_tcp("127.0.0.1", 0)
    await server.start()
    try:
        yield unix, port
    finally:
        await server.stop()
        await app.aclose()


_TOKEN_CHARS = st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=126), max_size=12)
_NAMES = st.text(alphabet="abcdefghijklmnopqrstuvwxyz-ABC", min_size=1, max_size=12)
_PRINTABLE = st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=60)
_LATIN1 = st.text(alphabet=st.characters(min_codepoint=0, max_codepoint=255), max_size=40)


def _mostly(good: st.SearchStrategy[str], bad: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    return st.one_of(good, good, good, good, bad)


@st.composite
def _request(draw: st.DrawFn) -> bytes:
    """Raw request bytes: garbage, or a request with hostile parts. Always asks to close."""
    kind = draw(st.sampled_from(["garbage", "request", "request", "huge"]))
    if kind == "garbage":
        return draw(st.binary(max_size=600))
    # Mostly plausible parts, one hostile now and then, so requests reach the gate.
    method = draw(_mostly(st.sampled_from(["POST", "POST", "GET", "PUT"]), _TOKEN_CHARS))
    target = draw(
        _mostly(
            st.sampled_from(["/v1/chat/completions", "/api/plugins/x402/http/v1/completions"]),
            _LATIN1,
        )
    )
    version = draw(_mostly(st.just("HTTP/1.1"), _TOKEN_CHARS))
    names = _mostly(st.sampled_from(["Payment-Signature", "X-Payment", "Content-Type"]), _NAMES)
    headers = draw(st.lists(st.tuples(names, _mostly(_PRINTABLE, _LATIN1)), max_size=4))
    if kind == "huge":
        headers.append(("X-Big", "a" * draw(st.integers(10_000, 300_000))))
    body = draw(
        st.binary(max_size=200)
        | st.sampled_from(
            [b'{"model":"m","messages":[{"role":"user","content":"hi"}]}', b"{}", b"[]", b"{"]
        )
        | st.sampled_from(
            [b'{"model":"m","messages":[{"role":"user","content":"hi"}]}', b"{}", b"[]", b"{"]
        )
    )
    length = draw(
        st.sampled_from(
            ["ok"] * 8 + ["short", "long", "-1", "abc", "1e3", "99999999999999999999", "dup"]
        )
    )
    lengths = {
        "ok": [str(len(body))],
        "short": [str(max(0, len(body) - 3))],
        "long": [str(len(body) + 50)],
        "dup": [str(len(body)), str(len(body) + 1)],
    }.get(length, [length])
    head = f"{method} {target} {version}\r\nHost: node\r\n" + "".join(
        f"{n}: {v}\r\n" for n, v in headers
    )
    head += "".join(f"Content-Length: {v}\r\n" for v in lengths) + "Connection: close\r\n\r\n"
    return head.encode("latin-1") + body


async def _send(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, data: bytes) -> bytes:
    try:
        writer.write(data)
        await writer.drain()
        writer.write_eof()
    except OSError:
        pass  # the server may refuse and close before reading everything
    try:
        return await asyncio.wait_for(reader.read(), WAIT)
    except ConnectionError:
        return b""
    finally:
        writer.close()


def _status(response: bytes) -> int | None:
    if not response:
        return None
    line = response.split(b"\r\n", 1)[0].decode("latin-1")
    assert line.startswith("HTTP/1.1 "), line
    return int(line.split()[1])


@given(data=_request(), door=st.sampled_from(["unix", "tcp"]))
async def test_raw_requests_get_a_4xx_or_a_close(
    doors: tuple[Path, int], data: bytes, door: str
) -> None:
    """Each hostile request is answered below 500 (with a body saying why) or closed."""
    unix, port = doors
    if door == "unix":
        reader, writer = await asyncio.open_unix_connection(str(unix))
    else:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
    response = await _send(reader, writer, data)
    status = _status(response)
    if status is not None:
        assert status < 500 or status == 502, response[:300]
        if status == 502:  # only a request the gate forwarded meets the missing upstream
            assert b"upstream_unreachable" in response
        if status >= 400:
            assert response.partition(b"\r\n\r\n")[2], response[:300]


async def test_doors_still_serve_after_abuse(doors: tuple[Path, int]) -> None:
    """After hostile bytes, a plain request on each door gets its normal answer."""
    unix, port = doors
    junk = b"\x00\xff" * 5000 + b"\r\n\r\n"
    plain = b"GET /x402/receipts/none HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    for opened in (
        lambda: asyncio.open_unix_connection(str(unix)),
        lambda: asyncio.open_connection("127.0.0.1", port),
    ):
        reader, writer = await opened()
        assert _status(await _send(reader, writer, junk)) == 400
        reader, writer = await opened()
        assert _status(await _send(reader, writer, plain)) == 404


def _credited(chain: Chain, nodes: list[Node]) -> int:
    settlement = SettlementBinding(chain.client, chain.deployment.settlement)
    return sum(settlement.balance_of(node.agent_id) for node in nodes)


async def test_replays_serve_once_on_one_node_and_across_three(
    chain: Chain, mesh: list[Node]
) -> None:
    """100 concurrent copies of one payment at node 0: one is served. Once the reservation
    has spread, nodes 1 and 2 refuse it; after every node reconciles it is credited once,
    and hostile channel messages delivered meanwhile change nothing."""
    entry, worker, bystander = mesh
    payer = funded_payer(chain)
    body = chat(MODEL)
    requirements = await requirements_for(entry, body)
    payload = sign_payment(payer, requirements, chain.domain, now=int(time.time()))
    header = encode_header(payload)
    nonce = payload["payload"]["authorization"]["nonce"]

    async with httpx.AsyncClient(timeout=120, limits=httpx.Limits(max_connections=100)) as client:
        answers = await asyncio.gather(
            *(
                client.post(entry.paid_url, json=body, headers={"PAYMENT-SIGNATURE": header})
                for _ in range(100)
            )
        )
    statuses = sorted(a.status_code for a in answers)
    assert statuses == [200] + [402] * 99, statuses
    for refused in (a for a in answers if a.status_code == 402):
        assert json.loads(refused.content)["error"] == "invalid_exact_evm_nonce_already_used"
    (served,) = (a for a in answers if a.status_code == 200)
    charge = int(json.loads(base64.b64decode(served.headers["payment-response"]))["amount"])

    for node in (worker, bystander):
        await eventually(
            lambda node=node: node.read(lambda s: s.reservation(payer.address, nonce)) is not None,
            "the reservation to reach every node",
        )
    async with httpx.AsyncClient(timeout=60) as client:
        for node in (worker, bystander, entry):
            again = await client.post(
                node.paid_url, json=body, headers={"PAYMENT-SIGNATURE": header}
            )
            assert again.status_code == 402, again.text
            assert json.loads(again.content)["error"] == "invalid_exact_evm_nonce_already_used"

    receipts_before = [len(n.read(lambda s: s.receipts())) for n in mesh]
    await _hostile_peers(chain, mesh, payer.address)
    assert [len(n.read(lambda s: s.receipts())) for n in mesh] == receipts_before

    for index, node in enumerate(mesh):
        config = node.state.parent / "node.toml"
        await Reconciling(config, node.log.with_name(f"reconcile{index}.log")).once()
    # Credited once: the agents together hold exactly the one charge, and the payer
    # paid exactly that (the refund of the difference came back).
    assert await asyncio.to_thread(_credited, chain, mesh) == charge
    token = TokenBinding(chain.client, chain.deployment.token)
    assert token.balance_of(payer.address) == 10**9 - charge
    journals = [Journal.in_state_dir(n.state) for n in mesh]
    try:
        found = [j.find(payer.address, nonce) for j in journals]
    finally:
        for journal in journals:
            journal.close()
    assert found[0] is not None
    assert found[0].state is PaymentState.SETTLED
    assert found[1:] == [None, None]  # the others never took it
    stored = entry.read(lambda s: s.for_payment(found[0].receipt_id))
    assert stored is not None
    settlement = SettlementBinding(chain.client, chain.deployment.settlement)
    raw_nonce = bytes.fromhex(nonce[2:])
    settled_in = settlement.settlement_of(stored.receipt_hash, payer.address, raw_nonce)
    assert settled_in == found[0].transaction

    keys = [load_key_file(n.state.parent / "node.key") for n in mesh]
    assert_no_secrets(
        [
            *(n.log for n in mesh),
            *(n.log.with_name(f"reconcile{i}.log") for i, n in enumerate(mesh)),
        ],
        [
            *(bytes(k.secret).hex() for k in keys),
            bytes(payer.key).hex(),
            header,
            payload["payload"]["signature"],
        ],
    )


async def _hostile_peers(chain: Chain, mesh: list[Node], payer: str) -> None:
    """Deliver hostile messages to node 1 and wait until each is dropped for its reason."""
    entry, worker, bystander = mesh
    domain = ReceiptDomain(31337, chain.deployment.settlement)
    intruder = Account.create()
    bystander_key = bytes(load_key_file(bystander.state.parent / "node.key").secret)
    fake = Receipt(
        payer=payer, nonce=os.urandom(32), value=10**6, request_id="forged", model=MODEL,
        prompt_tokens=1, completion_tokens=1, price_version=1, timestamp=int(time.time()),
        charge=10**6, refund=0, entry_agent_id=entry.agent_id,
        credits=(Credit(worker.agent_id, 10**6),), policy="vram-proportional",
    )  # fmt: skip
    signed_fake = receipt_to_pb(fake, sign_digest(intruder.key, receipt_digest(fake, domain)))
    reservation = gpb.NonceReservation(
        payer=bytes.fromhex(payer[2:]), nonce=b"\x02" * 32, value="1"
    )
    hostile = [
        # A claim to another node's agentId: the entry's agent, signed by an intruder.
        forged_gossip(entry.agent_id, entry.host.peer_id, intruder.key, receipt=signed_fake),
        # A spoofed sender: node 2's real key, claiming node 0's peer id.
        forged_gossip(
            bystander.agent_id, entry.host.peer_id, bystander_key, nonce_reservation=reservation
        ),
        # A bad signature: one no token would accept (s in the upper half).
        _with_bad_signature(
            forged_gossip(
                bystander.agent_id,
                bystander.host.peer_id,
                intruder.key,
                nonce_reservation=reservation,
            )
        ),
    ]
    # A flood from senders nobody verified.
    hostile += [
        forged_gossip(
            10_000 + n,
            f"{n:064x}",
            intruder.key,
            nonce_reservation=gpb.NonceReservation(
                payer=bytes.fromhex(payer[2:]), nonce=n.to_bytes(32, "big"), value="1"
            ),
        )
        for n in range(300)
    ]
    for message in hostile:
        assert await worker.host.deliver_channel(message, "x402")
    await eventually(
        lambda: all(
            worker.logged("gossip.dropped", reason=reason)
            for reason in ("signer_mismatch", "peer_mismatch", "bad_signature", "unverified_sender")
        ),
        "node 1 to drop each hostile message with its reason",
    )
    for nonce in (b"\x02" * 32, (299).to_bytes(32, "big")):
        assert worker.read(lambda s, n=nonce: s.reservation(payer, "0x" + n.hex())) is None
    async with httpx.AsyncClient(timeout=30) as client:  # still serving
        response = await client.post(worker.paid_url, json=chat(MODEL))
    assert response.status_code == 402


def _with_bad_signature(message: object) -> object:
    signed = gpb.SignedMessage()
    signed.ParseFromString(message.body)  # type: ignore[attr-defined]
    signed.signature = b"\x01" * 32 + b"\xff" * 32 + b"\x1b"  # s above half the order
    message.body = signed.SerializeToString()  # type: ignore[attr-defined]
    return message
