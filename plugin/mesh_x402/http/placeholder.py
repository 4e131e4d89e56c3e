"""The app `serve` runs until the payment gate exists: every route answers 501.

It lets the whole path (host binding -> stream negotiation -> Unix socket ->
HTTP response) be exercised before any payment code is written, and tells a
client plainly that nothing is served yet.
"""

from __future__ import annotations

import json
from typing import Final

from mesh_x402.http.server import Receive, Scope, Send

__all__ = ["NOT_IMPLEMENTED_BODY", "placeholder_app"]

NOT_IMPLEMENTED_BODY: Final = json.dumps(
    {"error": {"message": "payment gate not yet available", "type": "not_implemented"}},
    separators=(",", ":"),
).encode()


async def placeholder_app(scope: Scope, receive: Receive, send: Send) -> None:
    """Answer every HTTP request with 501 and an OpenAI-style error body."""
    if scope["type"] != "http":
        return
    # Read the request to its end first, so the client is never cut off mid-body.
    while (await receive()).get("more_body", False):
        pass
    await send(
        {
            "type": "http.response.start",
            "status": 501,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(NOT_IMPLEMENTED_BODY)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": NOT_IMPLEMENTED_BODY})
