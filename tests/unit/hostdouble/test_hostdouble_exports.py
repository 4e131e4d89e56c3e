"""The public surface of mesh_x402.hostdouble, pinned."""

from __future__ import annotations

from mesh_x402 import hostdouble


def test_public_names() -> None:
    """Integration tests and the devnet import these names; removing one is a breaking change."""
    assert sorted(hostdouble.__all__) == [
        "EntryError",
        "Host",
        "HostConfig",
        "HostConfigError",
        "HostDoubleError",
        "Mesh",
        "PluginEntry",
        "PluginStartError",
        "PluginUnavailableError",
        "RequestTimeoutError",
        "load_plugin_entries",
    ]
    for name in hostdouble.__all__:
        assert getattr(hostdouble, name) is not None
