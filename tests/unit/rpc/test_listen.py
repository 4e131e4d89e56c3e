"""`[operator] listen`: a Unix socket or a loopback port, never a remote address."""

from __future__ import annotations

from pathlib import Path

import pytest
from mesh_x402.errors import ConfigError
from mesh_x402.rpc.server import resolve_listen


@pytest.mark.parametrize(
    ("listen", "expected"),
    [
        ("unix:state/operator.sock", "unix:/node/state/operator.sock"),
        ("unix:/run/x402.sock", "unix:/run/x402.sock"),
        ("127.0.0.1:0", "127.0.0.1:0"),
        ("127.8.9.1:7000", "127.8.9.1:7000"),
        ("localhost:7000", "localhost:7000"),
        ("[::1]:7000", "[::1]:7000"),
    ],
)
def test_accepted(listen: str, expected: str) -> None:
    """Unix paths resolve against the config's folder; loopback ports pass through."""
    assert resolve_listen(listen, Path("/node")) == expected


@pytest.mark.parametrize(
    ("listen", "message"),
    [
        ("0.0.0.0:7000", "0.0.0.0 is not a loopback address"),
        ("10.1.2.3:7000", "not a loopback address"),
        ("example.com:7000", "not a loopback address"),
        ("127.0.0.1", "expected HOST:PORT"),
        ("127.0.0.1:99999", "port must be"),
        ("unix:", "needs a path"),
    ],
)
def test_refused(listen: str, message: str) -> None:
    """Anything reachable from another machine, or malformed, is a config error."""
    with pytest.raises(ConfigError, match=message):
        resolve_listen(listen, Path("/node"))
