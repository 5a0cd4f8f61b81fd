#!/usr/bin/env bash
# Interop tests: MCP clients from their registries, pinned, against the real
# errand binary ($ERRAND_BIN, default <repo>/target/debug/errand). The
# clients go into a fresh venv inside this folder (gitignored).
#
#   ERRAND_BIN=/path/to/errand tests/interop/run-tests.sh
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
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
echo "==> installing the pinned clients"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$here/requirements.txt"

echo "==> MCP: Python mcp against errand serve --mcp-listen"
timeout 600 "$venv/bin/python" "$here/mcp_interop.py"
