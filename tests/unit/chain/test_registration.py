"""The ERC-8004 registration file and its data: URI."""

from __future__ import annotations

import base64
import json

import pytest
from mesh_x402.chain.registration import (
    REGISTRATION_TYPE,
    agent_registry_id,
    build_registration,
    decode_data_uri,
    encode_data_uri,
    gateway_endpoints,
)

REGISTRY = "0xe7f1725e7734ce288f8367e1bb143e90bb3f0512"


def make_registration(**overrides: object) -> dict[str, object]:
    fields: dict[str, object] = {
        "name": "mesh-llm node",
        "description": "inference paid with x402",
        "endpoints": gateway_endpoints("127.0.0.1:9402"),
        "chain_id": 31337,
        "registry": REGISTRY,
        "agent_id": 0,
    }
    fields.update(overrides)
    return build_registration(**fields)  # type: ignore[arg-type]


class TestBuild:
    def test_fields_of_the_standard(self) -> None:
        """The file has the ERC-8004 shape, x402Support and a registration back-reference."""
        reg = make_registration()
        assert reg["type"] == REGISTRATION_TYPE
        assert reg["x402Support"] is True
        assert reg["active"] is True
        assert reg["image"] == ""
        assert reg["registrations"] == [
            {
                "agentId": 0,
                "agentRegistry": "eip155:31337:0xe7f1725E7734CE288F8367e1Bb143E90bb3F0512",
            }
        ]
        assert reg["services"] == [
            {
                "name": "x402",
                "endpoint": "http://127.0.0.1:9402/v1/chat/completions",
                "version": "2",
            },
            {"name": "x402", "endpoint": "http://127.0.0.1:9402/v1/completions", "version": "2"},
        ]

    def test_agent_id_zero_is_a_registration(self) -> None:
        """agentId 0 is valid: only None means not registered yet."""
        assert make_registration(agent_id=0)["registrations"] != []
        assert make_registration(agent_id=None)["registrations"] == []

    def test_registry_id_is_caip10(self) -> None:
        assert agent_registry_id(8453, REGISTRY) == (
            "eip155:8453:0xe7f1725E7734CE288F8367e1Bb143E90bb3F0512"
        )


class TestEndpoints:
    def test_ipv6_listen(self) -> None:
        assert gateway_endpoints("[::1]:9402")[0] == "http://[::1]:9402/v1/chat/completions"

    @pytest.mark.parametrize("listen", ["0.0.0.0:9402", "[::]:9402"])
    def test_wildcard_listen_needs_a_public_url(self, listen: str) -> None:
        """A bind-all address is not something a client can dial."""
        with pytest.raises(ValueError, match="not an address clients can reach"):
            gateway_endpoints(listen)
        assert gateway_endpoints(listen, "https://node.example/")[1] == (
            "https://node.example/v1/completions"
        )

    def test_base_url_must_be_http(self) -> None:
        with pytest.raises(ValueError, match="must start with http"):
            gateway_endpoints("127.0.0.1:1", "ftp://x")


class TestDataUri:
    def test_round_trip(self) -> None:
        """The URI carries the file as base64 JSON and decodes back to it."""
        reg = make_registration()
        uri = encode_data_uri(reg)
        assert uri.startswith("data:application/json;base64,")
        assert json.loads(base64.b64decode(uri.split(",", 1)[1])) == reg
        assert decode_data_uri(uri) == reg

    def test_deterministic(self) -> None:
        """Equal files give equal URIs, whatever the key order: re-registering compares strings."""
        reg = make_registration()
        shuffled = dict(reversed(list(reg.items())))
        assert encode_data_uri(reg) == encode_data_uri(shuffled)

    @pytest.mark.parametrize(
        "uri",
        [
            "https://example.com/agent.json",
            "data:application/json;base64,!!!",
            "data:application/json;base64," + base64.b64encode(b"[1]").decode(),
        ],
    )
    def test_bad_uris(self, uri: str) -> None:
        with pytest.raises(ValueError, match="data"):
            decode_data_uri(uri)
