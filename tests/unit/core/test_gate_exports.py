"""The public surface of the payment core, the journal and the gate, pinned.

A name that is public (no leading underscore) and defined in the module is
exported, and every export exists: a helper cannot become API by accident,
and an API cannot vanish without this test changing.
"""

from __future__ import annotations

import ast
import importlib
import inspect

import pytest

MODULES = [
    "mesh_x402.core.ports",
    "mesh_x402.core.money",
    "mesh_x402.core.pricing",
    "mesh_x402.core.requirements",
    "mesh_x402.core.headers",
    "mesh_x402.core.verify",
    "mesh_x402.core.payer",
    "mesh_x402.store.journal",
    "mesh_x402.http.app",
    "mesh_x402.http.paywall",
    "mesh_x402.http.context",
    "mesh_x402.http.balances",
    "mesh_x402.http.gate",
    "mesh_x402.http.activity",
    "mesh_x402.http.h1_client",
]


def _defined_here(module: object) -> set[str]:
    """Names bound at the module's top level by its own source (not imported)."""
    tree = ast.parse(inspect.getsource(module))  # type: ignore[arg-type]
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names.update(t.id for t in node.targets if isinstance(t, ast.Name))
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
    return names


@pytest.mark.parametrize("name", MODULES)
def test_all_is_exactly_the_public_names(name: str) -> None:
    """`__all__` lists every public class, function and constant defined in the module."""
    module = importlib.import_module(name)
    exported = set(module.__all__)
    assert all(hasattr(module, item) for item in exported)
    public = {item for item in _defined_here(module) if not item.startswith("_")}
    assert public <= exported, f"public but not exported: {sorted(public - exported)}"
