#!/usr/bin/env bash
# The Go module's checks, in one command (from anywhere):
#
#   ERRAND_BIN=/path/to/errand bash go/run-tests.sh
#
# ERRAND_BIN defaults to <repo>/target/debug/errand. Needs Go, python3 (for
# protoc from grpcio-tools, installed into go/.venv by scripts/gen.sh) and
# gcc (for -race); everything else comes from the Go module proxy and PyPI.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
export GOTOOLCHAIN="${GOTOOLCHAIN:-local}"

echo "== go mod download"
go mod download
go mod verify >/dev/null

echo "== gofmt"
unformatted="$(find . -name '*.go' -not -path './.venv/*' -print0 | xargs -0 gofmt -l)"
if [[ -n "$unformatted" ]]; then
  echo "gofmt: these files need formatting (run gofmt -w):" >&2
  echo "$unformatted" >&2
  exit 1
fi

echo "== go vet"
go vet ./...

echo "== generated stubs"
scripts/check-gen.sh

bin="${ERRAND_BIN:-$(cd .. && pwd)/target/debug/errand}"
if [[ ! -x "$bin" ]]; then
  echo "run-tests: no errand server binary at $bin: build it (cargo build) or set ERRAND_BIN" >&2
  exit 1
fi
export ERRAND_BIN="$bin"
echo "== go test -race (server: $ERRAND_BIN)"
go test -race -count=1 ./...
