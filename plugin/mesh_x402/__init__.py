"""mesh-x402: x402 payments for mesh-llm, as a plugin every node runs."""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
