#!/usr/bin/env bash
# The dashboard's browser test, run by scripts/test: installs Debian's
# chromium where missing (apt-get update first) and playwright-core (npm ci,
# pinned by the committed package-lock.json), starts the real errand binary
# (ERRAND_BIN, default target/debug/errand) with tokens and two workers, and
# drives the UI. Screenshots of each page land in OUT (default
# target/ui-screenshots), the test's artifacts. Needs Go, as go/run-tests.sh
# does: the second worker is the Go SDK's example (go/examples/worker), whose
# `sleep` tool reports its progress every second.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
BIN="${ERRAND_BIN:-$REPO/target/debug/errand}"
OUT="${OUT:-$REPO/target/ui-screenshots}"
mkdir -p "$OUT"
missing=()
command -v chromium >/dev/null || missing+=(chromium)
command -v npm >/dev/null || missing+=(nodejs npm)
if (( ${#missing[@]} )); then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
# playwright-core as package-lock.json pins it (npm ci only when it differs).
want="$(cd "$HERE" && node -p 'require("./package-lock.json").packages["node_modules/playwright-core"].version')"
have="$(cd "$HERE" && node -p 'require("./node_modules/playwright-core/package.json").version' 2>/dev/null || true)"
if [[ "$want" != "$have" ]]; then
  (cd "$HERE" && npm ci --no-audit --no-fund --silent)
fi
WORK="$(mktemp -d)"
PIDS=()
cleanup() {
  local rc=$?
  if (( rc != 0 )); then
    echo "browser test failed ($rc): the server's and the worker's last lines:" >&2
    tail -n 20 "$WORK/serve.err" "$WORK/worker.out" "$WORK/go-worker.out" >&2 2>/dev/null || true
  fi
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT

command -v go >/dev/null || { echo "run.sh needs Go (as go/run-tests.sh does) for its progress worker" >&2; exit 1; }
(cd "$REPO/go" && GOTOOLCHAIN="${GOTOOLCHAIN:-local}" go build -o "$WORK/go-worker" ./examples/worker)

# One server with tokens: the browser logs in as an admin; the CLI submits
# as an agent; `errand worker` serves `job`, the Go example `sleep`.
TOKENS="$WORK/tokens"
ADMIN="$("$BIN" token new --role admin --tenant demo --append "$TOKENS" | head -1)"
AGENT="$("$BIN" token new --role agent --tenant demo --append "$TOKENS" | head -1)"
WORKER="$("$BIN" token new --role worker --tenant demo --append "$TOKENS" | head -1)"
"$BIN" serve --store memory --listen 127.0.0.1:0 --ui-listen 127.0.0.1:0 --tokens-file "$TOKENS" \
  >"$WORK/serve.out" 2>"$WORK/serve.err" &
PIDS+=($!)
for _ in $(seq 1 300); do
  grep -q "errand dashboard on" "$WORK/serve.out" 2>/dev/null && break
  sleep 0.1
done
grep -q "errand dashboard on" "$WORK/serve.out" || { cat "$WORK/serve.err"; exit 1; }
export ERRAND_SERVER="$(sed -n 's/^errand listening on //p' "$WORK/serve.out")"
UI_URL="$(sed -n 's/^errand dashboard on //p' "$WORK/serve.out")"

# The tool echoes its arguments; a call with "sleep" in them runs until
# cancelled.
ERRAND_TOKEN="$WORKER" "$BIN" worker --tool job --name worker-1 --concurrency 4 \
  --exec 'a="$(cat)"; case "$a" in *sleep*) sleep 300;; esac; printf %s "$a"' >"$WORK/worker.out" 2>&1 &
PIDS+=($!)
# Its `sleep` tool reports "slept N of S s" every second.
ERRAND_TOKEN="$WORKER" "$WORK/go-worker" -concurrency 2 >"$WORK/go-worker.out" 2>&1 &
PIDS+=($!)
export ERRAND_TOKEN="$AGENT"
for tool in job sleep; do
  for _ in $(seq 1 300); do
    "$BIN" tools 2>/dev/null | grep -q "^$tool" && break
    sleep 0.1
  done
done
# wait_for TASK STATUS: until `errand status` says so (30 s at most).
wait_for() {
  for _ in $(seq 1 300); do
    "$BIN" status "$1" --json | grep -q "\"$2\"" && return 0
    sleep 0.1
  done
  echo "task $1 never became $2" >&2; exit 1
}
"$BIN" submit job --args '{"city":"Lyon"}' --session demo --wait >/dev/null
"$BIN" submit job --args '{"city":"Oslo"}' --session demo --wait >/dev/null
BIG="$(head -c 6000 /dev/zero | tr '\0' 'x')"
BIG_TASK="$("$BIN" submit job --args "{\"text\":\"$BIG\"}" --session report)"
wait_for "$BIG_TASK" SUCCEEDED
LIVE_TASK="$("$BIN" submit job --args '{"sleep":600,"n":1}' --session demo)"
CLICK_TASK="$("$BIN" submit job --args '{"sleep":600,"n":2}' --session demo)"
PROGRESS_TASK="$("$BIN" submit sleep --args '{"seconds":600}' --session slow)"
wait_for "$LIVE_TASK" RUNNING
wait_for "$CLICK_TASK" RUNNING
# Its first progress report (the CLI shows it as `errand status` does).
wait_for "$PROGRESS_TASK" 'slept [0-9]* of 600 s'

cd "$HERE"
UI_URL="$UI_URL" ADMIN="$ADMIN" LIVE_TASK="$LIVE_TASK" CLICK_TASK="$CLICK_TASK" BIG_TASK="$BIG_TASK" \
  PROGRESS_TASK="$PROGRESS_TASK" OUT="$OUT" ERRAND="$BIN" node dashboard.test.mjs
