#!/usr/bin/env bash
# The dashboard's browser test: installs Debian's chromium where missing
# (apt-get) and playwright-core (npm, pinned in package.json), starts the
# real errand binary (ERRAND_BIN, default target/debug/errand) with
# workers, and drives the UI. Screenshots land in OUT (default
# target/ui-screenshots).
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
BIN="${ERRAND_BIN:-$REPO/target/debug/errand}"
OUT="${OUT:-$REPO/target/ui-screenshots}"
mkdir -p "$OUT"
if ! command -v chromium >/dev/null; then
  apt-get update -qq && apt-get install -y -qq chromium >/dev/null
fi
(cd "$HERE" && npm install --no-audit --no-fund --silent)
WORK="$(mktemp -d)"
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$WORK"; }
trap cleanup EXIT

# start NAME ARGS...: runs errand in the background, waits for its line.
start_server() { # name, extra args...
  local name="$1"; shift
  "$BIN" serve --store memory --listen 127.0.0.1:0 --ui-listen 127.0.0.1:0 "$@" >"$WORK/$name.out" 2>"$WORK/$name.err" &
  PIDS+=($!)
  for _ in $(seq 1 300); do
    grep -q "errand listening on" "$WORK/$name.out" 2>/dev/null && break
    sleep 0.1
  done
  grep -q "errand listening on" "$WORK/$name.out" || { cat "$WORK/$name.err"; exit 1; }
}
start_server open
ADDR="$(sed -n 's/^errand listening on //p' "$WORK/open.out")"
UI_URL="$(sed -n 's/^errand dashboard on //p' "$WORK/open.out")"
export ERRAND_SERVER="$ADDR"
"$BIN" worker --tool sleepy --name sleepy --exec 'sleep 600' --concurrency 1 >"$WORK/w1.out" 2>&1 &
PIDS+=($!)
"$BIN" worker --tool echo --name echo --exec cat >"$WORK/w2.out" 2>&1 &
PIDS+=($!)
for _ in $(seq 1 300); do
  [[ "$(grep -c registered "$WORK/w1.out" "$WORK/w2.out" | grep -c ':1')" == 2 ]] && break
  sleep 0.1
done
"$BIN" submit echo --args '{"city":"Lyon"}' --session demo --wait >/dev/null
"$BIN" submit echo --args '{"city":"Oslo"}' --session demo --wait >/dev/null
RUNNING_TASK="$("$BIN" submit sleepy --args '{"seconds":600}' --session demo)"
"$BIN" submit sleepy --args '{"seconds":1}' --session other >/dev/null
# Wait until the worker holds it.
for _ in $(seq 1 300); do
  "$BIN" status "$RUNNING_TASK" --json | grep -q '"RUNNING"' && break
  sleep 0.1
done

TOKENS="$WORK/tokens"
TOKEN="$("$BIN" token new --role agent --tenant demo --append "$TOKENS")"
start_server auth --tokens-file "$TOKENS"
UI_AUTH_URL="$(sed -n 's/^errand dashboard on //p' "$WORK/auth.out")"

cd "$HERE"
UI_URL="$UI_URL" UI_AUTH_URL="$UI_AUTH_URL" TOKEN="$TOKEN" RUNNING_TASK="$RUNNING_TASK" OUT="$OUT" \
  node dashboard.test.mjs
