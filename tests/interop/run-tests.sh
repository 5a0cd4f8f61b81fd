#!/usr/bin/env bash
# Interop tests: MCP and A2A clients from their registries, pinned, against the real
# errand binary ($ERRAND_BIN, default <repo>/target/debug/errand). The Python
# clients go into a fresh venv inside this folder, the TypeScript ones into
# ts/node_modules (`npm ci` from the committed package-lock.json); both are
# gitignored.
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

echo "==> A2A: Python a2a-sdk (gRPC and JSON-RPC) against errand serve --a2a-listen"
timeout 600 "$venv/bin/python" "$here/a2a_interop.py"

echo "==> Tokens, tenants, failed-auth throttling and TLS on the MCP and A2A listeners"
timeout 600 "$venv/bin/python" "$here/secure_interop.py"

echo "==> MCP Tasks: TypeScript client + ext-tasks against errand serve --mcp-listen"
node_major="$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)"
if (( node_major < 20 )); then
    echo "run-tests.sh: the TypeScript interop test needs Node 20 or later (found: ${node_major})" >&2
    exit 1
fi
(cd "$here/ts" && npm ci --no-audit --no-fund --loglevel=error)
timeout 600 node --test "$here/ts/ext_tasks.test.mjs"
