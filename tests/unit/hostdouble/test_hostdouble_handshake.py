"""Handshake checks: what the host accepts as an answer to initialize."""

from __future__ import annotations

import json
import sys

import pytest
from mesh_x402._pb.meshllm.plugin.v1 import plugin_pb2 as pb
from mesh_x402.hostdouble import HostConfig, PluginStartError
from mesh_x402.hostdouble.handshake import initialize_request, validate_initialize

GOOD_INFO = {
    "protocolVersion": "2025-03-26",
    "capabilities": {"tools": {}},
    "serverInfo": {"name": "x", "version": "1"},
}


def make_reply(**overrides: object) -> pb.Envelope:
    fields: dict[str, object] = {
        "plugin_id": "x402",
        "plugin_protocol_version": 2,
        "server_info_json": json.dumps(GOOD_INFO),
    }
    fields.update(overrides)
    return pb.Envelope(request_id=1, initialize_response=pb.InitializeResponse(**fields))  # type: ignore[arg-type]


class TestValidate:
    def test_good_answer(self) -> None:
        """A matching id, protocol 2 and an MCP InitializeResult are accepted."""
        handshake = validate_initialize(make_reply(), "x402")
        assert handshake.response is not None
        assert handshake.response.plugin_id == "x402"
        assert not handshake.disabled
        assert handshake.extra_capabilities == ()

    @pytest.mark.parametrize(
        ("reply", "message"),
        [
            (make_reply(plugin_id="other"), "does not match"),
            (make_reply(plugin_id=""), "does not match"),
            (make_reply(plugin_protocol_version=1), "plugin_protocol_version"),
            (make_reply(server_info_json="{oops"), "not JSON"),
            (make_reply(server_info_json="[]"), "not a JSON object"),
            (
                make_reply(server_info_json=json.dumps({**GOOD_INFO, "protocolVersion": 3})),
                "protocolVersion",
            ),
            (
                make_reply(server_info_json=json.dumps({**GOOD_INFO, "capabilities": []})),
                "capabilities",
            ),
            (
                make_reply(server_info_json=json.dumps({**GOOD_INFO, "serverInfo": {"name": "x"}})),
                "serverInfo",
            ),
            (pb.Envelope(request_id=1, health_response=pb.HealthResponse()), "health_response"),
            (pb.Envelope(request_id=1), "empty envelope"),
            (
                pb.Envelope(
                    request_id=1, error_response=pb.ErrorResponse(code=-32603, message="boom")
                ),
                "-32603",
            ),
        ],
    )
    def test_refusals(self, reply: pb.Envelope, message: str) -> None:
        """Each broken answer fails the start with a message naming the problem."""
        with pytest.raises(PluginStartError, match=message):
            validate_initialize(reply, "x402")

    def test_opt_out(self) -> None:
        """ErrorResponse -32010 leaves the plugin disabled instead of failing."""
        reply = pb.Envelope(error_response=pb.ErrorResponse(code=-32010, message="off"))
        assert validate_initialize(reply, "x402").disabled

    def test_extra_capabilities_are_reported(self) -> None:
        """Capabilities beyond tools make a real host send RpcRequests; they are listed."""
        info = {**GOOD_INFO, "capabilities": {"tools": {}, "logging": {}, "tasks": {}}}
        handshake = validate_initialize(make_reply(server_info_json=json.dumps(info)), "x402")
        assert handshake.extra_capabilities == ("logging", "tasks")


class TestRequest:
    @pytest.mark.parametrize(
        ("visibility", "wire"),
        [("private", pb.MESH_VISIBILITY_PRIVATE), ("public", pb.MESH_VISIBILITY_PUBLIC)],
    )
    def test_initialize_request(self, visibility: str, wire: int) -> None:
        """Protocol 2, the host version and the mesh visibility go to the plugin."""
        config = HostConfig(
            plugin_name="x402",
            command=[sys.executable],
            generation="0.66",
            mesh_visibility=visibility,  # type: ignore[arg-type]
        )
        request = initialize_request(config)
        assert request.host_protocol_version == 2
        assert request.host_version == "0.66.0"
        assert request.mesh_visibility == wire
        assert json.loads(request.host_info_json)["version"] == "0.66.0"
