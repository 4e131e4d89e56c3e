#!/usr/bin/env bash
# All the tests: tox runs the suite on Python 3.10, 3.11, 3.12 and 3.13, plus
# lint (ruff) and type (mypy --strict). Needs Python with pip and Node.js;
# tox, every Python package, anvil and solc are installed on the way.
# Arguments go to tox, e.g. ./test.sh -e py311 -- tests/unit -x
set -euo pipefail
cd "$(dirname "$0")"

# pyenv ships 3.10 .. 3.13 on these machines but puts only one on the path:
# make the others visible so tox never skips an interpreter.
if command -v pyenv >/dev/null 2>&1; then
  versions=""
  for v in 3.11 3.10 3.12 3.13; do
    full=$(pyenv versions --bare 2>/dev/null | grep -E "^${v}\.[0-9]+$" | sort -V | tail -n1 || true)
    [ -n "$full" ] && versions="${versions:+$versions:}$full"
  done
  [ -n "$versions" ] && export PYENV_VERSION="$versions"
fi

python3 -m pip install --quiet --upgrade "tox>=4.11"
if [ "$#" -gt 0 ]; then
  exec python3 -m tox "$@"
fi
# One environment at a time: the integration tests spawn plugins, hosts and
# anvil, and two suites at once on a 2-core machine only make them slower.
exec python3 -m tox run
