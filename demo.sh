#!/usr/bin/env bash
# The main job on embedded defaults: a whole paid mesh on this machine.
# Creates .venv on first use (Python >= 3.10, pip and Node.js are all it
# needs; anvil comes from npm on first run), then runs `mesh-x402 devnet`.
# Flags go to devnet: ./demo.sh --nodes 4 --requests 40 --keep-running
set -euo pipefail
cd "$(dirname "$0")"

venv=.venv
stamp="$venv/.installed"
if [ ! -x "$venv/bin/mesh-x402" ] || [ pyproject.toml -nt "$stamp" ]; then
  echo "demo: installing mesh-x402 into $venv (first run only)" >&2
  python3 -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet --upgrade pip >&2
  "$venv/bin/python" -m pip install --quiet -e . >&2
  touch "$stamp"
fi
exec "$venv/bin/mesh-x402" devnet "$@"
