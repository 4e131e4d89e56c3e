"""HostConfig: validation that names the field, and the generation's defaults."""

from __future__ import annotations

import sys

import pytest
from mesh_x402.hostdouble import HostConfig, HostConfigError

COMMAND = [sys.executable, "-c", "pass"]


def make(**overrides: object) -> HostConfig:
    fields: dict[str, object] = {"plugin_name": "x402", "command": COMMAND}
    fields.update(overrides)
    return HostConfig(**fields)  # type: ignore[arg-type]


class TestDefaults:
    def test_random_identity_is_well_formed(self) -> None:
        """A node gets a 64-hex peer id and a 32-hex mesh id unless told otherwise."""
        config = make()
        assert len(config.peer_id) == 64
        assert config.peer_id == config.peer_id.lower()
        int(config.peer_id, 16)
        assert len(config.mesh_id) == 32
        assert make().peer_id != config.peer_id

    def test_idle_timeout_follows_the_generation(self) -> None:
        """0.76 drops a plugin after 90 s without a frame; 0.66 has no idle timeout."""
        assert make().effective_idle_timeout == 90.0
        assert make(generation="0.66").effective_idle_timeout is None
        assert make(idle_timeout=10.0).effective_idle_timeout == 10.0
        assert make(generation="0.66", idle_timeout=10.0).effective_idle_timeout == 10.0

    def test_host_defaults(self) -> None:
        """Health every 15 s, 30 s per request, 10 s to connect, 30 s to initialize."""
        config = make()
        assert (config.health_interval, config.request_timeout) == (15.0, 30.0)
        assert (config.connect_timeout, config.init_timeout) == (10.0, 30.0)
        assert config.generation == "0.76"
        assert config.host_version == "0.76.0"


class TestValidation:
    @pytest.mark.parametrize(
        ("overrides", "field"),
        [
            ({"plugin_name": "X402"}, "plugin_name"),
            ({"plugin_name": "x402_pay"}, "plugin_name"),
            ({"plugin_name": ""}, "plugin_name"),
            ({"command": []}, "command"),
            ({"command": "mesh-x402 serve"}, "command"),
            ({"peer_id": "ab" * 31}, "peer_id"),
            ({"peer_id": "AB" * 32}, "peer_id"),
            ({"generation": "0.70"}, "generation"),
            ({"mesh_visibility": "secret"}, "mesh_visibility"),
            ({"role": "boss"}, "role"),
            ({"health_interval": 0}, "health_interval"),
            ({"request_timeout": -1.0}, "request_timeout"),
            ({"idle_timeout": 0}, "idle_timeout"),
            ({"management_port": 70000}, "management_port"),
            ({"vram_bytes": -1}, "vram_bytes"),
        ],
    )
    def test_bad_field_is_named(self, overrides: dict[str, object], field: str) -> None:
        """A bad value raises HostConfigError whose message starts with the field name."""
        with pytest.raises(HostConfigError, match=f"^{field}:"):
            make(**overrides)

    @pytest.mark.parametrize("name", ["blackboard", "telemetry", "openai-endpoint", "flash-moe"])
    def test_066_reserved_ids(self, name: str) -> None:
        """0.66 keeps these ids for built-in plugins; 0.76 only keeps blobstore."""
        with pytest.raises(HostConfigError, match="reserved"):
            make(plugin_name=name, generation="0.66")
        assert make(plugin_name=name).plugin_name == name

    def test_blobstore_is_reserved_on_both(self) -> None:
        """blobstore is reserved on both generations."""
        for generation in ("0.76", "0.66"):
            with pytest.raises(HostConfigError, match="reserved"):
                make(plugin_name="blobstore", generation=generation)
