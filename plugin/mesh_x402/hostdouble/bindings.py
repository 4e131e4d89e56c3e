"""HTTP bindings of a plugin manifest: exact lookup, and the buffered kind.

Lookup is an exact match on method and path (no path parameters). A
binding is streamed when either body mode is streamed. A buffered binding
becomes an InvokeServiceRequest whose input_json is the query parameters
merged with the keys of a JSON-object body; headers, method and path are not
passed, and the answer is 200 with output_json (502 when is_error).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Final
from urllib.parse import parse_qsl

from google.protobuf.message import Message

from mesh_x402._pb.meshllm.plugin.v1 import plugin_pb2 as pb
from mesh_x402.hostdouble._http import HttpError, RequestHead, json_response, render_head
from mesh_x402.hostdouble.errors import HostDoubleError

__all__ = ["METHOD_NAMES", "buffered_input", "find_binding", "is_streamed", "serve_buffered"]

METHOD_NAMES: Final = {
    pb.HTTP_METHOD_GET: "GET",
    pb.HTTP_METHOD_POST: "POST",
    pb.HTTP_METHOD_PUT: "PUT",
    pb.HTTP_METHOD_PATCH: "PATCH",
    pb.HTTP_METHOD_DELETE: "DELETE",
}

HostRequest = Callable[[str, Message], Awaitable[pb.Envelope]]


def find_binding(
    manifest: pb.PluginManifest, method: str, path: str
) -> pb.HttpBindingManifest | None:
    """The binding with exactly this method and path, or None."""
    for binding in manifest.http_bindings:
        if METHOD_NAMES.get(binding.method) == method and binding.path == path:
            return binding
    return None


def is_streamed(binding: pb.HttpBindingManifest) -> bool:
    """Either body mode streamed makes the whole binding a side-stream binding."""
    streamed = pb.HTTP_BODY_MODE_STREAMED
    return streamed in (binding.request_body_mode, binding.response_body_mode)


def buffered_input(query: str, body: bytes) -> str:
    """input_json: query parameters, then the keys of a JSON-object body.

    Raises:
        HttpError: 400 when the body is not JSON.
    """
    merged: dict[str, object] = dict(parse_qsl(query, keep_blank_values=True))
    if body.strip():
        try:
            parsed = json.loads(body)
        except ValueError as exc:
            raise HttpError(400, f"the request body is not JSON: {exc}") from None
        if isinstance(parsed, dict):
            merged.update(parsed)
    return json.dumps(merged)


async def serve_buffered(
    request: HostRequest, binding: pb.HttpBindingManifest, head: RequestHead, body: bytes
) -> bytes:
    """Invoke the binding's operation; return the whole HTTP response."""
    invoke = pb.InvokeServiceRequest(
        kind=pb.SERVICE_KIND_OPERATION,
        service_name=binding.operation_name,
        input_json=buffered_input(head.query, body),
    )
    try:
        reply = await request("invoke_service_request", invoke)
    except HostDoubleError as exc:
        return json_response(502, {"error": str(exc)})
    payload = reply.WhichOneof("payload")
    if payload == "error_response":
        return json_response(502, {"error": reply.error_response.message})
    if payload != "invoke_service_response":
        return json_response(502, {"error": f"plugin answered {payload} to invoke_service"})
    output = reply.invoke_service_response.output_json.encode()
    status = "502 Bad Gateway" if reply.invoke_service_response.is_error else "200 OK"
    head_bytes = render_head(
        f"HTTP/1.1 {status}",
        (
            ("Content-Type", "application/json"),
            ("Content-Length", str(len(output))),
            ("Connection", "close"),
        ),
    )
    return head_bytes + output
