"""The ERC-8004 registration file: what an agentURI points at.

A client that finds a node's agent on chain follows its agentURI to this
file to learn how to reach and pay the node: its x402 endpoints
(`services`), `x402Support: true`, and `registrations` tying the file back
to the agent (`eip155:<chainId>:<registry>`), so a copied file cannot claim
another agent's identity. With no web host of its own, a node embeds the
file in the URI itself as `data:application/json;base64,...`.

The JSON is serialised with sorted keys and no spaces, so the same inputs
give the same URI byte for byte and `register` can tell "nothing changed"
by comparing strings.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any, Final

from eth_utils.address import to_checksum_address

from mesh_x402.config import parse_host_port

__all__ = [
    "DATA_URI_PREFIX",
    "REGISTRATION_TYPE",
    "X402_PATHS",
    "agent_registry_id",
    "build_registration",
    "decode_data_uri",
    "encode_data_uri",
    "gateway_endpoints",
]

REGISTRATION_TYPE: Final = "https://eips.ethereum.org/EIPS/eip-8004#registration-v1"
DATA_URI_PREFIX: Final = "data:application/json;base64,"
# The paid routes of the gateway (the plugin's streamed bindings serve the same paths).
X402_PATHS: Final = ("/v1/chat/completions", "/v1/completions")
_UNSPECIFIED_HOSTS: Final = frozenset({"0.0.0.0", "::", ""})  # noqa: S104 - names, not binds


def agent_registry_id(chain_id: int, registry: str) -> str:
    """The CAIP-10-style registry id `eip155:<chainId>:<registry>`."""
    return f"eip155:{chain_id}:{to_checksum_address(registry)}"


def gateway_endpoints(listen: str, base_url: str | None = None) -> list[str]:
    """The node's x402 endpoints from its gateway `HOST:PORT` (or a public base URL).

    Raises:
        ValueError: `listen` binds every interface (0.0.0.0 / ::), which is not an
            address a client can use, and no `base_url` was given.
    """
    if base_url is None:
        host, port = parse_host_port(listen)
        if host in _UNSPECIFIED_HOSTS:
            raise ValueError(
                f"gateway.listen {listen} is not an address clients can reach; "
                "pass the public URL of the gateway"
            )
        base_url = f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"
    base = base_url.rstrip("/")
    if not base.startswith(("http://", "https://")):
        raise ValueError(f"endpoint base {base_url!r} must start with http:// or https://")
    return [base + path for path in X402_PATHS]


def build_registration(
    *,
    name: str,
    description: str,
    endpoints: list[str],
    chain_id: int,
    registry: str,
    agent_id: int | None,
    image: str = "",
    active: bool = True,
) -> dict[str, Any]:
    """The registration file as a JSON object.

    `agent_id` is None before the first registration (the id is only known
    from the `Registered` event); the file is then rewritten with it.
    """
    registrations: list[dict[str, Any]] = []
    if agent_id is not None:
        registrations.append(
            {"agentId": agent_id, "agentRegistry": agent_registry_id(chain_id, registry)}
        )
    return {
        "type": REGISTRATION_TYPE,
        "name": name,
        "description": description,
        "image": image,
        "services": [{"name": "x402", "endpoint": url, "version": "2"} for url in endpoints],
        "x402Support": True,
        "active": active,
        "registrations": registrations,
    }


def encode_data_uri(registration: dict[str, Any]) -> str:
    """`data:application/json;base64,<canonical JSON>`."""
    text = json.dumps(registration, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return DATA_URI_PREFIX + base64.b64encode(text.encode()).decode("ascii")


def decode_data_uri(uri: str) -> dict[str, Any]:
    """The registration object inside a base64 JSON `data:` URI.

    Raises:
        ValueError: not such a URI, or its payload is not a JSON object.
    """
    if not uri.startswith(DATA_URI_PREFIX):
        raise ValueError(f"not a {DATA_URI_PREFIX}... URI")
    try:
        value = json.loads(base64.b64decode(uri[len(DATA_URI_PREFIX) :], validate=True))
    except (binascii.Error, ValueError) as exc:
        raise ValueError(f"data: URI payload is not base64 JSON: {exc}") from None
    if not isinstance(value, dict):
        raise ValueError("data: URI payload is not a JSON object")  # noqa: TRY004 - bad input, not a bug
    return value
