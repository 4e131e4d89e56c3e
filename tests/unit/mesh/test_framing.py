"""Framing: bytes in, envelopes out, including the inputs that must end the link."""

from __future__ import annotations

import struct

import pytest
from mesh_x402._pb.meshllm.plugin.v1 import plugin_pb2 as pb
from mesh_x402.errors import FrameError
from mesh_x402.mesh.framing import MAX_FRAME_BYTES, FrameDecoder, encode_frame


def make_envelope(**overrides: object) -> pb.Envelope:
    fields: dict[str, object] = {
        "protocol_version": 2,
        "plugin_id": "x402",
        "request_id": 7,
        "health_request": pb.HealthRequest(),
    }
    fields.update(overrides)
    return pb.Envelope(**fields)


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


class TestEncode:
    def test_prefix_is_little_endian_body_length(self):
        """The 4-byte prefix is the body's length, little-endian, in the same buffer."""
        envelope = make_envelope()
        frame = encode_frame(envelope)
        body = envelope.SerializeToString()
        assert frame[:4] == struct.pack("<I", len(body))
        assert frame[4:] == body

    def test_refuses_an_envelope_over_the_limit(self):
        """We never send a frame the host would refuse."""
        big = make_envelope(
            channel_message=pb.ChannelMessage(channel="x402.v1", body=b"\0" * MAX_FRAME_BYTES)
        )
        with pytest.raises(FrameError, match="exceeds"):
            encode_frame(big)


class TestDecode:
    def test_byte_by_byte(self):
        """A frame that arrives one byte at a time comes out whole, once."""
        envelope = make_envelope(request_id=42)
        decoder = FrameDecoder()
        out: list[pb.Envelope] = []
        for byte in encode_frame(envelope):
            out += decoder.feed(bytes([byte]))
        assert out == [envelope]
        assert decoder.pending_bytes == 0
        decoder.check_eof()

    def test_several_frames_in_one_chunk(self):
        """Every frame in one read comes out, in order; a trailing part waits."""
        first = make_envelope(request_id=1)
        second = make_envelope(request_id=2, mesh_event=pb.MeshEvent(kind=1))
        third = make_envelope(request_id=3)
        third_frame = encode_frame(third)
        decoder = FrameDecoder()
        chunk = encode_frame(first) + encode_frame(second) + third_frame[:5]
        assert decoder.feed(chunk) == [first, second]
        assert decoder.pending_bytes == 5
        assert decoder.feed(third_frame[5:]) == [third]

    def test_empty_envelope_is_a_frame(self):
        """A zero-length body (an empty envelope, the keepalive) decodes."""
        assert FrameDecoder().feed(b"\0\0\0\0") == [pb.Envelope()]

    def test_oversized_length_refused_before_buffering(self):
        """A declared length over 16 MiB is refused as soon as the prefix is in."""
        decoder = FrameDecoder()
        with pytest.raises(FrameError, match="over the"):
            decoder.feed(struct.pack("<I", MAX_FRAME_BYTES + 1))

    def test_frame_of_exactly_the_limit_is_accepted_in_principle(self):
        """The limit is inclusive: a prefix of exactly 16 MiB only waits for its body."""
        decoder = FrameDecoder()
        assert decoder.feed(struct.pack("<I", MAX_FRAME_BYTES) + b"\0" * 10) == []
        assert decoder.pending_bytes == 14

    def test_truncated_at_eof(self):
        """End of stream inside a frame is an error naming the pending bytes."""
        decoder = FrameDecoder()
        decoder.feed(encode_frame(make_envelope())[:-1])
        with pytest.raises(FrameError, match="ended inside a frame"):
            decoder.check_eof()

    def test_truncated_prefix_at_eof(self):
        """Even a partial length prefix at EOF is a truncated frame."""
        decoder = FrameDecoder()
        decoder.feed(b"\x05\0")
        with pytest.raises(FrameError):
            decoder.check_eof()

    def test_undecodable_body(self):
        """A body that is not an Envelope is a FrameError, not a crash."""
        body = b"\x0a\xff\xff\xff"  # field 1, length-delimited, length runs past the end
        with pytest.raises(FrameError, match="not an Envelope"):
            FrameDecoder().feed(struct.pack("<I", len(body)) + body)

    def test_unknown_fields_are_ignored(self):
        """Fields a newer host adds (unknown numbers, top level and nested) are skipped."""
        known = make_envelope(request_id=9).SerializeToString()
        # field 99 as a varint, field 100 as a length-delimited string
        extra = _varint(99 << 3 | 0) + _varint(12345) + _varint(100 << 3 | 2) + b"\x03abc"
        body = known + extra
        (decoded,) = FrameDecoder().feed(struct.pack("<I", len(body)) + body)
        assert decoded.request_id == 9
        assert decoded.WhichOneof("payload") == "health_request"

    def test_unknown_payload_number_decodes_as_no_payload(self):
        """A payload only a newer host knows (oneof field 40) leaves the payload unset."""
        body = _varint(3 << 3 | 0) + _varint(5) + _varint(40 << 3 | 2) + b"\x00"
        (decoded,) = FrameDecoder().feed(struct.pack("<I", len(body)) + body)
        assert decoded.request_id == 5
        assert decoded.WhichOneof("payload") is None
