"""The public surface of the receipts, attribution, store and gossip modules, pinned."""

from __future__ import annotations

import importlib

import pytest

MODULES = [
    "mesh_x402.core.receipts",
    "mesh_x402.core.attribution",
    "mesh_x402.store.receipts",
    "mesh_x402.mesh.gossip",
    "mesh_x402.mesh.identities",
    "mesh_x402.mesh.receipting",
    "mesh_x402.mesh.peering",
]


@pytest.mark.parametrize("name", MODULES)
def test_all_lists_the_public_classes_and_functions(name: str) -> None:
    """Every public class and function the module defines is in `__all__`, and every
    name in `__all__` exists: a helper cannot become API by accident."""
    module = importlib.import_module(name)
    exported = set(module.__all__)
    assert {item for item in exported if not hasattr(module, item)} == set()
    own = {
        item
        for item, value in vars(module).items()
        if not item.startswith("_") and getattr(value, "__module__", None) == name
    }
    # Constants are annotated `Final` at module level.
    annotated = getattr(module, "__annotations__", {})
    constants = {item for item in annotated if not item.startswith("_")}
    assert (own | constants) - exported == set()
