"""Property tests: the parsers that see outside bytes refuse with a reason, never crash.

Payment headers (the client's), frames and envelopes (the host's) and config
files (the operator's) are generated at random and as mutations of valid
input. Every outcome is either a parsed value or the parser's own error
carrying a message; nothing else escapes, and the host session either keeps
answering or ends with a `FrameError`.
"""

from __future__ import annotations

import asyncio
import base64
import json
import socket
import struct
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from mesh_x402._pb.meshllm.plugin.v1 import plugin_pb2 as pb
from mesh_x402.config import NodeConfig, load_config
from mesh_x402.core.headers import (
    MAX_HEADER_BYTES,
    DecodedPayment,
    PaymentHeaderError,
    decode_payment_header,
)
from mesh_x402.errors import ConfigError, FrameError
from mesh_x402.mesh.framing import FrameDecoder, encode_frame
from mesh_x402.mesh.manifest import initialize_response
from mesh_x402.mesh.session import HostSession

WAIT = 10.0  # a bound on hangs, not a speed assertion

_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=12,
)

_VALID: dict[str, Any] = {
    "x402Version": 2,
    "accepted": {
        "scheme": "exact",
        "network": "eip155:31337",
        "asset": "0x5FbDB2315678afecb367f032d93F642f64180aa3",
        "amount": "1000",
        "payTo": "0xe7f1725E7734CE288F8367e1Bb143E90bb3F0512",
        "maxTimeoutSeconds": 60,
        "extra": {"name": "USD Coin", "version": "2"},
    },
    "payload": {
        "authorization": {
            "from": "0x" + "ab" * 20,
            "to": "0xe7f1725E7734CE288F8367e1Bb143E90bb3F0512",
            "value": "1000",
            "validAfter": "0",
            "validBefore": "99999999999",
            "nonce": "0x" + "11" * 32,
        },
        "signature": "0x" + "22" * 65,
    },
}


def _paths(value: Any, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    if not isinstance(value, dict):
        return [prefix]
    found = [prefix] if prefix else []
    for key, child in value.items():
        found += _paths(child, (*prefix, key))
    return found


_VALID_PATHS = _paths(_VALID)


def _replace(value: Any, path: tuple[str, ...], new: Any) -> Any:
    if not path:
        return new
    copy = dict(value)
    copy[path[0]] = _replace(copy[path[0]], path[1:], new)
    return copy


@st.composite
def _mutated_payload(draw: st.DrawFn) -> str:
    """The valid payload with one field replaced by arbitrary JSON (or dropped)."""
    path = draw(st.sampled_from(_VALID_PATHS))
    payload = _replace(_VALID, path, draw(_JSON)) if draw(st.booleans()) else _drop(_VALID, path)
    return base64.b64encode(json.dumps(payload).encode()).decode()


def _drop(value: dict[str, Any], path: tuple[str, ...]) -> dict[str, Any]:
    copy = dict(value)
    if len(path) == 1:
        copy.pop(path[0], None)
    else:
        copy[path[0]] = _drop(copy[path[0]], path[1:])
    return copy


_HEADERS = st.one_of(
    st.text(max_size=200),
    st.binary(max_size=300).map(lambda raw: base64.b64encode(raw).decode()),
    _JSON.map(lambda value: base64.b64encode(json.dumps(value).encode()).decode()),
    _mutated_payload(),
    st.integers(0, 40).map(lambda depth: base64.b64encode(b"[" * depth * 1000).decode()),
    st.just("A" * (MAX_HEADER_BYTES + 4)),
)


@given(value=_HEADERS)
def test_payment_header_parses_or_refuses_with_a_reason(value: str) -> None:
    """A header is a decoded payment, or a 400/402 refusal with an x402 reason and a message."""
    try:
        decoded: DecodedPayment | PaymentHeaderError = decode_payment_header(value)
    except PaymentHeaderError as exc:
        decoded = exc
    if isinstance(decoded, PaymentHeaderError):
        assert decoded.status in (400, 402)
        assert decoded.reason in ("invalid_payload", "invalid_x402_version")
        assert str(decoded)
    else:
        assert decoded.version in (1, 2)


def test_the_unmutated_payload_decodes() -> None:
    """The mutation base is valid, so mutations explore near a real payment."""
    value = base64.b64encode(json.dumps(_VALID).encode()).decode()
    assert decode_payment_header(value).exact.authorization.value == "1000"


_CHUNKS = st.lists(st.binary(max_size=64), max_size=8)


@st.composite
def _frame_stream(draw: st.DrawFn) -> bytes:
    """Length-prefixed bodies: valid envelopes, random bytes, or lying prefixes."""
    parts: list[bytes] = []
    for _ in range(draw(st.integers(1, 5))):
        kind = draw(st.sampled_from(["envelope", "body", "prefix"]))
        if kind == "envelope":
            envelope = pb.Envelope(
                request_id=draw(st.integers(0, 2**63 - 1)),
                plugin_id=draw(st.text(max_size=8)),
            )
            parts.append(encode_frame(envelope))
        elif kind == "body":
            body = draw(st.binary(max_size=80))
            parts.append(struct.pack("<I", len(body)) + body)
        else:
            parts.append(struct.pack("<I", draw(st.integers(0, 2**32 - 1))) + draw(st.binary()))
    return b"".join(parts)


@given(data=st.one_of(_frame_stream(), st.binary(max_size=400)), cuts=_CHUNKS)
def test_frame_decoder_yields_envelopes_or_frame_error(data: bytes, cuts: list[bytes]) -> None:
    """However the bytes are split, the decoder returns envelopes or raises FrameError,
    and never holds a body larger than the limit it was given."""
    decoder = FrameDecoder(max_frame_bytes=4096)
    sizes = [len(cut) + 1 for cut in cuts] or [len(data) + 1]
    offset = 0
    refusal = ""
    try:
        while offset < len(data):
            for size in sizes:
                envelopes = decoder.feed(data[offset : offset + size])
                assert all(isinstance(e, pb.Envelope) for e in envelopes)
                assert decoder.pending_bytes <= 4096 + 4 + size
                offset += size
        decoder.check_eof()
    except FrameError as exc:
        refusal = str(exc) or "(empty)"
    assert refusal != "(empty)"


async def _session_answers_after(data: bytes) -> None:
    """Send `data`, a health request, then EOF: the session answers the health request
    (the bytes before it were whole frames) or ends with a FrameError (they were not)."""
    session = HostSession(initialize_response("x402", "0.1.0"), keepalive_seconds=3600)
    plugin_sock, host_sock = socket.socketpair()
    plugin_reader, plugin_writer = await asyncio.open_connection(sock=plugin_sock)
    reader, writer = await asyncio.open_connection(sock=host_sock)
    task = asyncio.create_task(session.run(plugin_reader, plugin_writer))
    health = pb.Envelope(
        protocol_version=2, plugin_id="x402", request_id=2**62, health_request=pb.HealthRequest()
    )
    writer.write(data + encode_frame(health))
    writer.write_eof()
    decoder = FrameDecoder()

    async def answered() -> bool:
        seen = False
        while chunk := await reader.read(65536):
            seen = seen or any(frame.request_id == 2**62 for frame in decoder.feed(chunk))
        return seen

    try:
        was_answered = await asyncio.wait_for(answered(), WAIT)
        (ended,) = await asyncio.wait_for(asyncio.gather(task, return_exceptions=True), WAIT)
    finally:
        writer.close()
    assert ended is None or isinstance(ended, FrameError), repr(ended)
    assert was_answered or isinstance(ended, FrameError)


@given(data=_frame_stream())
async def test_host_session_survives_or_ends_with_a_frame_error(data: bytes) -> None:
    """Arbitrary frames from the host: health is still answered after them, or the
    session ends with a FrameError (oversized, undecodable); never another exception."""
    await _session_answers_after(data)


_TOML_KEYS = st.sampled_from(
    [
        "listen",
        "url",
        "rpc",
        "chain_id",
        "token",
        "settlement",
        "batch_size",
        "base",
        "prompt_per_1k",
        "max_body_bytes",
        "timeout_seconds",
        "unknown_models",
        "confirmations",
        "state_dir",
        "key_file",
        "x",
    ]
)
_TOML_VALUES = st.one_of(
    st.integers(-(2**70), 2**70).map(str),
    st.text(max_size=20).map(json.dumps),
    st.sampled_from(
        [
            '"127.0.0.1:0"',
            '"http://127.0.0.1:9337"',
            "true",
            "1.5",
            "[]",
            "{}",
            '"0x' + "1" * 40 + '"',
        ]
    ),
    st.text(max_size=10),
)
_TOML_SECTIONS = st.sampled_from(
    [
        "node",
        "gateway",
        "upstream",
        "chain",
        "pricing",
        "pricing.default",
        'pricing.models."m"',
        "settlement",
        "receipts",
        "operator",
        "nope",
    ]
)


@st.composite
def _tomlish(draw: st.DrawFn) -> str:
    lines: list[str] = []
    for _ in range(draw(st.integers(0, 6))):
        if draw(st.booleans()):
            lines.append(f"[{draw(_TOML_SECTIONS)}]")
        lines.append(f"{draw(_TOML_KEYS)} = {draw(_TOML_VALUES)}")
    return "\n".join(lines) if draw(st.booleans()) else draw(st.text(max_size=200))


@given(text=_tomlish())
def test_config_loads_or_names_the_problem(
    tmp_path_factory: pytest.TempPathFactory, text: str
) -> None:
    """A config file is a NodeConfig, or a ConfigError naming the file."""
    path = tmp_path_factory.getbasetemp() / "properties-node.toml"
    path.write_text(text, encoding="utf-8")
    try:
        config: NodeConfig | ConfigError = load_config(path)
    except ConfigError as exc:
        config = exc
    if isinstance(config, ConfigError):
        assert str(path) in str(config)
        return
    assert config.path == Path(path).absolute()
