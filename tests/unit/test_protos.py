"""The checked-in protobuf modules are exactly what protos/ generates."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CHECKED_IN = ROOT / "plugin" / "mesh_x402" / "_pb"


def _files(folder: Path) -> dict[str, bytes]:
    return {
        path.relative_to(folder).as_posix(): path.read_bytes()
        for path in sorted(folder.rglob("*"))
        if path.is_file() and "__pycache__" not in path.parts
    }


def test_generated_modules_match_protos(tmp_path: Path) -> None:
    """Regenerating from protos/ gives the checked-in files byte for byte."""
    subprocess.run(
        [sys.executable, str(ROOT / "tools" / "gen_protos.py"), "--out", str(tmp_path)],
        check=True,
    )
    generated = _files(tmp_path)
    checked_in = _files(CHECKED_IN)
    assert sorted(generated) == sorted(checked_in)
    differing = [name for name in generated if generated[name] != checked_in[name]]
    assert differing == [], f"regenerate with tools/gen_protos.py: {differing}"
