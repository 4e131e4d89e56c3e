"""Write the README's configuration reference from the pydantic models.

Usage: python tools/gen_config_docs.py [--check]

The table between the `config-reference` markers in README.md is generated
from `mesh_x402.config.NodeConfig` (keys, types, defaults, descriptions), so
the docs cannot drift from what `load_config` accepts. `--check` exits 1
when README.md is stale; tests/unit/test_config_docs.py runs it.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from typing import get_args

from mesh_x402.config import NodeConfig
from pydantic import BaseModel
from pydantic.fields import FieldInfo

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
START = "<!-- config-reference:start -->"
END = "<!-- config-reference:end -->"


def _type_name(field: FieldInfo) -> str:
    annotation = field.annotation
    # A parametrized generic (`dict[str, Price]`) passes isinstance(..., type) on 3.10.
    if isinstance(annotation, type) and not get_args(annotation):
        return annotation.__name__
    text = str(annotation) if annotation is not None else "any"
    text = text.replace(
        "Annotated[int, FieldInfo(annotation=NoneType, required=True, metadata=[Ge(ge=0)])]", "int"
    )
    # Drop module paths ("typing.", "pathlib._local.", "mesh_x402.config."),
    # which differ between Python versions, and keep the bare type names.
    return re.sub(r"\b(?:[A-Za-z_]\w*\.)+(?=[A-Za-z_])", "", text)


def _default(value: object) -> str:
    if value is None:
        return "(unset)"
    if isinstance(value, dict) and not value:
        return "(none)"
    return f"`{value}`"


def _rows(model: BaseModel, prefix: str) -> list[str]:
    """One row per leaf key; nested sections show the values of their default instance."""
    rows = []
    for name, field in type(model).model_fields.items():
        if field.exclude:
            continue
        key = f"{prefix}{name}"
        value = getattr(model, name)
        if isinstance(value, BaseModel):
            rows.extend(_rows(value, f"{key}."))
            continue
        cells = [f"`{key}`", _type_name(field), _default(value), field.description or ""]
        rows.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return rows


def render_reference() -> str:
    """The markdown table of every key `node.toml` accepts."""
    header = [
        "Every key of `node.toml`, generated from `mesh_x402.config` by",
        "`tools/gen_config_docs.py`. Unknown keys are errors; relative paths are",
        "relative to the file's folder; money is in the token's atomic units.",
        '`[pricing.models."NAME"]` tables take the same keys as `[pricing.default]`.',
        "",
        "| key | type | default | meaning |",
        "|---|---|---|---|",
    ]
    return "\n".join([*header, *_rows(NodeConfig(), "")]) + "\n"


def updated(text: str) -> str:
    head, _, rest = text.partition(START)
    _, _, tail = rest.partition(END)
    return f"{head}{START}\n{render_reference()}{END}{tail}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if README.md is stale")
    args = parser.parse_args()
    text = README.read_text(encoding="utf-8")
    if START not in text or END not in text:
        sys.exit(f"{README}: the config-reference markers are missing")
    new = updated(text)
    if args.check:
        if new != text:
            sys.exit("README.md's configuration reference is stale: run tools/gen_config_docs.py")
        return
    README.write_text(new, encoding="utf-8")


if __name__ == "__main__":
    main()
