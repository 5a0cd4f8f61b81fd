#!/usr/bin/env bash
# Tests of the Python SDK: lint, types, stub check, then pytest against the real
# server binary ($ERRAND_BIN, default <repo>/target/debug/errand).
#
#   ERRAND_BIN=/path/to/errand python/run-tests.sh [pytest args...]
#
# Needs only python3 (3.9+) and PyPI; makes python/.venv on first use.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(dirname "$here")"
venv="$here/.venv"
python="${PYTHON:-python3}"

export ERRAND_BIN="${ERRAND_BIN:-$repo/target/debug/errand}"
if [[ ! -x "$ERRAND_BIN" ]]; then
    echo "run-tests.sh: no errand binary at $ERRAND_BIN (build it or set ERRAND_BIN)" >&2
    exit 1
fi

if [[ ! -x "$venv/bin/python" ]]; then
    echo "==> creating $venv"
    "$python" -m venv "$venv"
fi
echo "==> installing ./python[test]"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check "$here[test]"

cd "$here"
echo "==> generated stubs match the proto"
"$venv/bin/python" tools/gen_stubs.py --check
echo "==> ruff check"
"$venv/bin/ruff" check errand tools tests ../examples/python
echo "==> ruff format --check"
"$venv/bin/ruff" format --check errand tools tests
echo "==> mypy"
"$venv/bin/mypy"
echo "==> pytest (server: $ERRAND_BIN)"
exec "$venv/bin/python" -m pytest "$@"
