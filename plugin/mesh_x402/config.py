"""The per-node config file (`node.toml`), validated with pydantic.

One file per node. Relative paths inside it are relative to the file's own
folder, so a node folder can be moved as a whole. Every error names the
file, the key and the problem, so an operator can fix it without reading
code. Money is in the token's atomic units (USDC: 6 decimals), as integers.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from mesh_x402.errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

__all__ = [
    "ChainConfig",
    "GatewayConfig",
    "MeshConfig",
    "NodeConfig",
    "NodeSection",
    "OperatorConfig",
    "Price",
    "PricingConfig",
    "ReceiptsConfig",
    "SettlementConfig",
    "UpstreamConfig",
    "load_config",
    "parse_host_port",
]

_ADDRESS = re.compile(r"^0x[0-9a-fA-F]{40}$")
Amount = Annotated[int, Field(ge=0)]


class _Section(BaseModel):
    """Every section refuses unknown keys: a typo is an error, not a silent default."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def parse_host_port(value: str) -> tuple[str, int]:
    """Split `HOST:PORT` (IPv6 as `[::1]:PORT`); raise ValueError naming the problem."""
    host, sep, port_text = value.rpartition(":")
    if not sep or not host:
        raise ValueError(f"expected HOST:PORT, got {value!r}")
    if not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise ValueError(f"port must be a number from 0 to 65535, got {port_text!r}")
    return host.strip("[]"), int(port_text)


class NodeSection(_Section):
    """The node itself: its signing key and where it keeps state."""

    key_file: Path = Field(
        default=Path("node.key"),
        description="EVM private key (hex), mode 0600; relative to this file's folder.",
    )
    state_dir: Path = Field(
        default=Path("state"),
        description="SQLite journal and the kept mesh view; relative to this file's folder.",
    )
    log_level: Literal["debug", "info", "warning", "error"] = "info"


class GatewayConfig(_Section):
    """The plugin's own HTTP port, the entry for clients not on this machine."""

    listen: str = Field(
        default="127.0.0.1:9402",
        description="HOST:PORT of the paid gateway; loopback unless you mean to expose it.",
    )
    max_body_bytes: int = Field(default=8 * 1024 * 1024, gt=0)

    @field_validator("listen")
    @classmethod
    def _valid_listen(cls, value: str) -> str:
        parse_host_port(value)
        return value


class UpstreamConfig(_Section):
    """mesh-llm's OpenAI-compatible API, where paid requests go."""

    url: str = Field(default="http://127.0.0.1:9337", description="Base URL of mesh-llm's API.")
    timeout_seconds: float = Field(default=300.0, gt=0)

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError(f"must start with http:// or https://, got {value!r}")
        return value.rstrip("/")


def _check_address(value: str | None) -> str | None:
    if value is not None and not _ADDRESS.match(value):
        raise ValueError(f"not a 0x-prefixed 20-byte hex address: {value!r}")
    return value


class ChainConfig(_Section):
    """The chain the mesh settles on and the contracts it uses."""

    rpc: str = Field(default="http://127.0.0.1:8545", description="JSON-RPC URL.")
    chain_id: int = Field(default=31337, gt=0)
    token: str | None = Field(default=None, description="EIP-3009 token (USDC) address.")
    settlement: str | None = Field(default=None, description="MeshSettlement address (payTo).")
    settlement_block: int = Field(
        default=0,
        ge=0,
        description="Block the settlement contract was deployed in; its event scans "
        "(settled payments, withdrawals) start there.",
    )
    identity_registry: str | None = Field(default=None, description="ERC-8004 IdentityRegistry.")
    confirmations: int = Field(default=1, ge=0)

    @field_validator("token", "settlement", "identity_registry")
    @classmethod
    def _valid_address(cls, value: str | None) -> str | None:
        return _check_address(value)


class Price(_Section):
    """What one request costs: a base plus prices per 1,000 tokens."""

    base: Amount = 0
    prompt_per_1k: Amount = 0
    completion_per_1k: Amount = 0


class PricingConfig(_Section):
    """The node's price sheet."""

    version: int = Field(default=1, ge=1, description="Bumped on every price change.")
    unknown_models: Literal["default", "refuse"] = "default"
    default: Price = Price(base=1000, prompt_per_1k=500, completion_per_1k=2000)
    models: dict[str, Price] = Field(default_factory=dict)
    max_completion_tokens: int = Field(
        default=4096,
        gt=0,
        description="Completion ceiling quoted when a request sets no max_tokens.",
    )


class SettlementConfig(_Section):
    """When accepted payments reach the chain."""

    mode: Literal["deferred", "immediate"] = "deferred"
    batch_size: int = Field(default=50, gt=0, le=500)
    interval_seconds: float = Field(default=10.0, gt=0)
    idle_wait_seconds: float = Field(
        default=60.0,
        ge=0,
        description="A pass that falls due while paid requests are being served, and each "
        "of its batches, waits until the gate has been idle for 0.5 s; for at most this long "
        "in all (0: never waits). Not in mode immediate.",
    )


class ReceiptsConfig(_Section):
    """How a charge is split among the nodes that did the work."""

    policy: Literal["vram-proportional"] = "vram-proportional"
    routing_share_bps: int = Field(default=1000, ge=0, le=10_000)


class OperatorConfig(_Section):
    """The gRPC operator API for obol-stack and other sidecars."""

    listen: str = Field(
        default="unix:state/operator.sock",
        description="`unix:PATH` (relative to this file's folder) or HOST:PORT on loopback.",
    )


class MeshConfig(_Section):
    """The local mesh-llm node as a plugin reaches it (besides the plugin socket)."""

    management_url: str = Field(
        default="http://127.0.0.1:3131",
        description="mesh-llm's management API (loopback), for the blackboard.",
    )

    @field_validator("management_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError(f"must start with http:// or https://, got {value!r}")
        return value.rstrip("/")


class NodeConfig(_Section):
    """A whole node config file. `path` is where it was read from."""

    node: NodeSection = NodeSection()
    gateway: GatewayConfig = GatewayConfig()
    upstream: UpstreamConfig = UpstreamConfig()
    chain: ChainConfig = ChainConfig()
    pricing: PricingConfig = PricingConfig()
    settlement: SettlementConfig = SettlementConfig()
    receipts: ReceiptsConfig = ReceiptsConfig()
    operator: OperatorConfig = OperatorConfig()
    mesh: MeshConfig = MeshConfig()
    path: Path = Field(default=Path("node.toml"), exclude=True)

    @property
    def folder(self) -> Path:
        return self.path.parent

    def resolve(self, relative: Path) -> Path:
        """A path from the file, made absolute against the file's folder."""
        return relative if relative.is_absolute() else (self.folder / relative)

    @property
    def key_path(self) -> Path:
        return self.resolve(self.node.key_file)

    @property
    def state_path(self) -> Path:
        return self.resolve(self.node.state_dir)


def _describe(error: ValidationError) -> str:
    parts = []
    for item in error.errors():
        key = ".".join(str(p) for p in item["loc"]) or "(top level)"
        message = item["msg"]
        if item["type"] == "extra_forbidden":
            message = "unknown key"
        parts.append(f"{key}: {message}")
    return "; ".join(parts)


def load_config(path: Path | str) -> NodeConfig:
    """Read and validate a node config file.

    Raises:
        ConfigError: the file is missing, not TOML, or fails validation; the
            message names the file, each bad key and its problem.
    """
    file = Path(path)
    try:
        raw: dict[str, Any] = tomllib.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{file}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{file}: cannot read: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{file}: not valid TOML: {exc}") from None
    if "path" in raw:
        raise ConfigError(f"{file}: path: unknown key")
    try:
        return NodeConfig.model_validate({**raw, "path": Path(os.path.abspath(file))})
    except ValidationError as exc:
        raise ConfigError(f"{file}: {_describe(exc)}") from None
