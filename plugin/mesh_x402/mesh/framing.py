"""mesh-llm's plugin framing, sans-I/O.

Each frame is a 4-byte little-endian length followed by one protobuf
`Envelope`. Either side refuses a frame over 16 MiB. `FrameDecoder` takes
bytes as they arrive and yields whole envelopes; `encode_frame` returns the
prefix and body as one buffer, because the host's reader is not safe against
a frame arriving in pieces, so the caller must write it in one call.
"""

from __future__ import annotations

import struct
from typing import Final

from google.protobuf.message import DecodeError

from mesh_x402._pb.meshllm.plugin.v1 import plugin_pb2 as pb
from mesh_x402.errors import FrameError

__all__ = ["MAX_FRAME_BYTES", "PROTOCOL_VERSION", "FrameDecoder", "encode_frame"]

MAX_FRAME_BYTES: Final = 16 * 1024 * 1024
PROTOCOL_VERSION: Final = 2
_PREFIX: Final = struct.Struct("<I")


def encode_frame(envelope: pb.Envelope) -> bytes:
    """Serialize one envelope with its length prefix.

    Raises:
        FrameError: the encoded envelope is over the 16 MiB limit.
    """
    body = envelope.SerializeToString()
    if len(body) > MAX_FRAME_BYTES:
        raise FrameError(f"frame of {len(body)} bytes exceeds the {MAX_FRAME_BYTES}-byte limit")
    return _PREFIX.pack(len(body)) + body


class FrameDecoder:
    """Reassembles envelopes from a byte stream.

    Feed it whatever the socket returned; it keeps partial frames until they
    complete. A declared length over the limit is refused as soon as the
    prefix is seen, before any of the body is buffered.
    """

    def __init__(self, max_frame_bytes: int = MAX_FRAME_BYTES) -> None:
        self._buffer = bytearray()
        self._max = max_frame_bytes

    @property
    def pending_bytes(self) -> int:
        """Bytes held for a frame that has not completed (nonzero at EOF = truncated)."""
        return len(self._buffer)

    def feed(self, data: bytes) -> list[pb.Envelope]:
        """Add received bytes; return every envelope they complete.

        Raises:
            FrameError: a declared length is over the limit, or a body does
                not decode as an Envelope.
        """
        self._buffer += data
        envelopes: list[pb.Envelope] = []
        while len(self._buffer) >= _PREFIX.size:
            (length,) = _PREFIX.unpack_from(self._buffer)
            if length > self._max:
                raise FrameError(f"frame declares {length} bytes, over the {self._max}-byte limit")
            end = _PREFIX.size + length
            if len(self._buffer) < end:
                break
            body = bytes(self._buffer[_PREFIX.size : end])
            del self._buffer[:end]
            envelope = pb.Envelope()
            try:
                envelope.ParseFromString(body)
            except DecodeError as exc:
                raise FrameError(f"frame of {length} bytes is not an Envelope: {exc}") from None
            envelopes.append(envelope)
        return envelopes

    def check_eof(self) -> None:
        """Call at end of stream.

        Raises:
            FrameError: the stream ended inside a frame.
        """
        if self._buffer:
            raise FrameError(f"stream ended inside a frame ({len(self._buffer)} bytes pending)")
