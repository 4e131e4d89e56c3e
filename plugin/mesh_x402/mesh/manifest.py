"""What the plugin tells the host about itself in the initialize reply.

The host stores the manifest from this reply: it decides which channel
frames reach us, which mesh events we get, and which HTTP routes on the
management port are streamed to us. The bindings are STREAMED both ways
because only a streamed binding passes the method, headers and status
through, which x402 needs (a buffered binding always answers 200).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Final

from mesh_x402._pb.meshllm.plugin.v1 import plugin_pb2 as pb
from mesh_x402.mesh.framing import PROTOCOL_VERSION

__all__ = [
    "BINDINGS",
    "CAPABILITY",
    "CHANNEL",
    "SUBSCRIBED_EVENTS",
    "Binding",
    "build_manifest",
    "initialize_response",
    "server_info_json",
]

CAPABILITY: Final = "x402.v1"
CHANNEL: Final = "x402.v1"
# The MCP protocol revision named in server_info_json. The host parses the
# JSON as an MCP InitializeResult; the revision itself is not negotiated.
_MCP_PROTOCOL_VERSION: Final = "2025-06-18"

SUBSCRIBED_EVENTS: Final = (
    pb.MeshEvent.KIND_PEER_UP,
    pb.MeshEvent.KIND_PEER_DOWN,
    pb.MeshEvent.KIND_PEER_UPDATED,
    pb.MeshEvent.KIND_LOCAL_ACCEPTING,
    pb.MeshEvent.KIND_LOCAL_STANDBY,
    pb.MeshEvent.KIND_MESH_ID_UPDATED,
)


@dataclass(frozen=True)
class Binding:
    """One streamed HTTP binding: an exact method and path on the management port."""

    binding_id: str
    method: pb.HttpMethod
    path: str

    def to_pb(self) -> pb.HttpBindingManifest:
        return pb.HttpBindingManifest(
            binding_id=self.binding_id,
            method=self.method,
            path=self.path,
            request_body_mode=pb.HTTP_BODY_MODE_STREAMED,
            response_body_mode=pb.HTTP_BODY_MODE_STREAMED,
        )


BINDINGS: Final = (
    Binding("chat-completions", pb.HTTP_METHOD_POST, "/v1/chat/completions"),
    Binding("completions", pb.HTTP_METHOD_POST, "/v1/completions"),
    Binding("models", pb.HTTP_METHOD_GET, "/v1/models"),
    # The Payments page's JSON (http/operator_pages.py); the host admits
    # only trusted local callers to these, as to every plugin route.
    Binding("x402-node", pb.HTTP_METHOD_GET, "/x402/node"),
    Binding("x402-balances", pb.HTTP_METHOD_GET, "/x402/balances"),
    Binding("x402-receipts", pb.HTTP_METHOD_GET, "/x402/receipts"),
    Binding("x402-batches", pb.HTTP_METHOD_GET, "/x402/batches"),
    Binding("x402-earnings", pb.HTTP_METHOD_GET, "/x402/earnings"),
)


def server_info_json(name: str, version: str) -> str:
    """The MCP InitializeResult the host parses.

    Only the `tools` capability is declared: every other MCP capability
    makes the host send matching RpcRequests we have no use for.
    """
    return json.dumps(
        {
            "protocolVersion": _MCP_PROTOCOL_VERSION,
            "capabilities": {"tools": {}},
            "serverInfo": {"name": name, "version": version},
        },
        separators=(",", ":"),
    )


def build_manifest() -> pb.PluginManifest:
    """The plugin's manifest: capability, channel, event subscriptions, bindings."""
    return pb.PluginManifest(
        http_bindings=[binding.to_pb() for binding in BINDINGS],
        capabilities=[CAPABILITY],
        mesh_channels=[pb.MeshChannelManifest(name=CHANNEL)],
        mesh_event_subscriptions=[
            pb.MeshEventSubscription(kind=kind) for kind in SUBSCRIBED_EVENTS
        ],
    )


def initialize_response(plugin_id: str, version: str) -> pb.InitializeResponse:
    """The reply to the host's InitializeRequest.

    Args:
        plugin_id: the configured `[[plugin]] name` ($MESH_LLM_PLUGIN_NAME);
            the host refuses any other id.
        version: this package's version.
    """
    return pb.InitializeResponse(
        plugin_id=plugin_id,
        plugin_protocol_version=PROTOCOL_VERSION,
        plugin_version=version,
        server_info_json=server_info_json("mesh-x402", version),
        capabilities=[CAPABILITY],
        manifest=build_manifest(),
    )
