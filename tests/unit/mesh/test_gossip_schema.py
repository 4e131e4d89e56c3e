"""The channel schema shares the package `mesh_x402.v1` with the operator API."""

from __future__ import annotations

import subprocess
import sys

import pytest

GOSSIP = "mesh_x402._pb.mesh_x402.v1.gossip_pb2"
OPERATOR = "mesh_x402._pb.mesh_x402.v1.operator_pb2"


@pytest.mark.parametrize("order", [(GOSSIP, OPERATOR), (OPERATOR, GOSSIP)])
def test_both_schemas_load_in_one_process(order: tuple[str, str]) -> None:
    """No message name repeats in the package: serve imports both (gossip and gRPC)."""
    code = "import importlib\n" + "".join(f"importlib.import_module({m!r})\n" for m in order)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
