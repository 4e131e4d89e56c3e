"""The README's configuration reference is generated, so it matches the code."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_readme_config_reference_is_current() -> None:
    """A key added to (or described in) mesh_x402.config shows up in the README."""
    result = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "gen_config_docs.py"), "--check"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr


def test_reference_lists_every_section_key() -> None:
    """Each leaf key of NodeConfig appears once, with its default."""
    sys.path.insert(0, str(ROOT / "tools"))
    try:
        import gen_config_docs
    finally:
        sys.path.pop(0)
    table = gen_config_docs.render_reference()
    assert "| `gateway.listen` | str | `127.0.0.1:9402` |" in table
    assert "| `pricing.default.completion_per_1k` | int | `2000` |" in table
    assert "`path`" not in table
