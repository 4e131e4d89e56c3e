"""`mesh-x402 plugin-install`: build the store archive and install it into mesh-llm.

    mesh-x402 plugin-install [--name x402] [--config node.toml]
    mesh-x402 plugin-install --archive-only --out DIR [--name x402] [--config node.toml]

Builds `<name>-<version>-<triple>.tar.gz` (see `mesh_x402.store_archive`),
then runs `mesh-llm plugins install --archive FILE --name NAME` when
`mesh-llm` is on the PATH, or prints that command. The install takes effect
on mesh-llm's next start: the host resolves its plugins only then.
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

from mesh_x402.store_archive import CONFIG_ENV, DEFAULT_NAME, build_archive

__all__ = ["configure", "run"]


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--name", default=DEFAULT_NAME, help="the install name (also the plugin id); default x402"
    )
    parser.add_argument(
        "--config",
        type=Path,
        help=f"the node.toml the plugin serves with (else ${CONFIG_ENV} when it starts)",
    )
    parser.add_argument(
        "--archive-only", action="store_true", help="build the archive, do not run mesh-llm"
    )
    parser.add_argument(
        "--out", type=Path, default=Path(), help="folder for the archive (default: here)"
    )


def run(args: argparse.Namespace) -> int:
    built = build_archive(args.out, name=args.name, config=args.config, python=sys.executable)
    print(f"archive   {built.path}")
    if args.config is None:
        print(
            f"note      no --config: the plugin will need ${CONFIG_ENV} in mesh-llm's environment"
        )
    command = built.install_command()
    if args.archive_only:
        print(f"install   {shlex.join(command)}")
        return 0
    mesh_llm = shutil.which("mesh-llm")
    if mesh_llm is None:
        print("mesh-llm is not on the PATH; install the archive with:")
        print(f"  {shlex.join(command)}")
        return 0
    print(f"running   {shlex.join(command)}", flush=True)
    completed = subprocess.run([mesh_llm, *command[1:]], check=False, env=os.environ.copy())
    if completed.returncode != 0:
        print(f"mesh-llm plugins install exited {completed.returncode}", file=sys.stderr)
        return 1
    print("installed: restart mesh-llm to start the plugin and show its Payments page")
    return 0
