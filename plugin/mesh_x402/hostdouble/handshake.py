"""The initialize handshake: what the host sends and what it accepts back.

The host parses `server_info_json` as an MCP `InitializeResult`; a parse
failure means the plugin fails to load. Capabilities other than `tools`
make a real host send matching RpcRequests, so they are reported back for
the caller to note.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Final

from mesh_x402._pb.meshllm.plugin.v1 import plugin_pb2 as pb
from mesh_x402.hostdouble.config import HostConfig
from mesh_x402.hostdouble.errors import PluginStartError
from mesh_x402.mesh.framing import PROTOCOL_VERSION

__all__ = ["STARTUP_DISABLED", "Handshake", "initialize_request", "validate_initialize"]

# ErrorResponse code with which a plugin opts out at startup.
STARTUP_DISABLED: Final = -32010

_VISIBILITY: Final = {
    "private": pb.MESH_VISIBILITY_PRIVATE,
    "public": pb.MESH_VISIBILITY_PUBLIC,
}


@dataclass(frozen=True)
class Handshake:
    """The outcome of a successful initialize.

    Attributes:
        response: the plugin's InitializeResponse (manifest included), or
            None when the plugin opted out with -32010.
        extra_capabilities: MCP capabilities declared besides `tools`.
    """

    response: pb.InitializeResponse | None
    extra_capabilities: tuple[str, ...] = ()

    @property
    def disabled(self) -> bool:
        """The plugin answered -32010 and is left disabled."""
        return self.response is None


def initialize_request(config: HostConfig) -> pb.InitializeRequest:
    """The InitializeRequest this node sends."""
    host_info = {
        "name": "mesh-llm",
        "version": config.host_version,
        "peer_id": config.peer_id,
    }
    return pb.InitializeRequest(
        host_protocol_version=PROTOCOL_VERSION,
        host_version=config.host_version,
        host_info_json=json.dumps(host_info),
        mesh_visibility=_VISIBILITY[config.mesh_visibility],
    )


def validate_initialize(reply: pb.Envelope, name: str) -> Handshake:
    """Check the plugin's answer to initialize the way the host does.

    Raises:
        PluginStartError: an error other than -32010, another payload, a
            wrong plugin id or protocol version, or a server_info_json that
            is not an MCP InitializeResult.
    """
    payload = reply.WhichOneof("payload")
    if payload == "error_response":
        error = reply.error_response
        if error.code == STARTUP_DISABLED:
            return Handshake(response=None)
        raise PluginStartError(f"initialize failed: error {error.code} {error.message!r}")
    if payload != "initialize_response":
        raise PluginStartError(f"initialize answered with {payload or 'an empty envelope'}")
    response = reply.initialize_response
    if response.plugin_id != name:
        raise PluginStartError(
            f"plugin_id {response.plugin_id!r} does not match the configured name {name!r}"
        )
    if response.plugin_protocol_version != PROTOCOL_VERSION:
        raise PluginStartError(
            f"plugin_protocol_version {response.plugin_protocol_version} is not {PROTOCOL_VERSION}"
        )
    capabilities = _parse_server_info(response.server_info_json)
    extra = tuple(sorted(key for key in capabilities if key != "tools"))
    return Handshake(response=response, extra_capabilities=extra)


def _parse_server_info(text: str) -> dict[str, object]:
    try:
        info = json.loads(text)
    except ValueError as exc:
        raise PluginStartError(f"server_info_json is not JSON: {exc}") from None
    if not isinstance(info, dict):
        raise PluginStartError("server_info_json is not a JSON object")
    if not isinstance(info.get("protocolVersion"), str):
        raise PluginStartError("server_info_json lacks a string protocolVersion")
    capabilities = info.get("capabilities")
    if not isinstance(capabilities, dict):
        raise PluginStartError("server_info_json lacks a capabilities object")
    server = info.get("serverInfo")
    if not (
        isinstance(server, dict)
        and isinstance(server.get("name"), str)
        and isinstance(server.get("version"), str)
    ):
        raise PluginStartError("server_info_json lacks serverInfo{name, version}")
    return capabilities
