"""`python -m mesh_x402` is the `mesh-x402` command."""

from __future__ import annotations

from mesh_x402.cli import main

if __name__ == "__main__":
    main()
