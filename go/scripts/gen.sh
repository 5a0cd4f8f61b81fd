#!/usr/bin/env bash
# Regenerates the Go stubs in go/errandv1 from proto/errand/v1/*.proto.
#
# Usage: go/scripts/gen.sh [OUT_DIR]
#   OUT_DIR defaults to the module root (go/); the stubs land in OUT_DIR/errandv1.
#
# Every tool is pinned so that regeneration is byte-for-byte reproducible:
#   protoc            bundled in grpcio-tools (PyPI), installed into go/.venv
#   protoc-gen-go     google.golang.org/protobuf, installed into go/.venv/gobin
#   protoc-gen-go-grpc google.golang.org/grpc/cmd/protoc-gen-go-grpc, same place
# Nothing outside go/.venv (gitignored) is installed or changed.
set -euo pipefail

GRPCIO_TOOLS_VERSION=1.75.1
PROTOC_GEN_GO_VERSION=v1.36.11
PROTOC_GEN_GO_GRPC_VERSION=v1.5.1

GO_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
REPO_DIR="$(cd "$GO_DIR/.." && pwd)"
OUT_DIR="${1:-$GO_DIR}"
VENV="$GO_DIR/.venv"
GOBIN_DIR="$VENV/gobin"
PY="${PYTHON:-python3}"

log() { echo "gen.sh: $*" >&2; }

# protoc, from grpcio-tools, in a venv of our own.
if ! "$VENV/bin/python" -c "import grpc_tools, importlib.metadata as m; assert m.version('grpcio-tools') == '$GRPCIO_TOOLS_VERSION'" 2>/dev/null; then
  log "installing grpcio-tools==$GRPCIO_TOOLS_VERSION into $VENV"
  "$PY" -m venv "$VENV"
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "grpcio-tools==$GRPCIO_TOOLS_VERSION"
fi

# The protoc plugins, from the Go module proxy, at pinned versions.
install_plugin() { # name module version
  local stamp="$GOBIN_DIR/.$1.version"
  if [[ ! -x "$GOBIN_DIR/$1" || "$(cat "$stamp" 2>/dev/null)" != "$3" ]]; then
    log "installing $2@$3 into $GOBIN_DIR"
    mkdir -p "$GOBIN_DIR"
    (cd "$GO_DIR" && GOBIN="$GOBIN_DIR" GOFLAGS=-mod=mod go install "$2@$3")
    echo "$3" >"$stamp"
  fi
}
install_plugin protoc-gen-go google.golang.org/protobuf/cmd/protoc-gen-go "$PROTOC_GEN_GO_VERSION"
install_plugin protoc-gen-go-grpc google.golang.org/grpc/cmd/protoc-gen-go-grpc "$PROTOC_GEN_GO_GRPC_VERSION"

# The well-known types (google/protobuf/timestamp.proto) ship inside grpc_tools.
WKT_DIR="$("$VENV/bin/python" -c 'import grpc_tools, os; print(os.path.join(os.path.dirname(grpc_tools.__file__), "_proto"))')"

mkdir -p "$OUT_DIR"
cd "$REPO_DIR/proto"
PATH="$GOBIN_DIR:$PATH" "$VENV/bin/python" -m grpc_tools.protoc \
  -I . -I "$WKT_DIR" \
  --go_out="$OUT_DIR" --go_opt=module=github.com/errand-dev/errand/go \
  --go-grpc_out="$OUT_DIR" --go-grpc_opt=module=github.com/errand-dev/errand/go \
  errand/v1/*.proto
log "generated $(cd "$OUT_DIR" && ls errandv1/*.pb.go | tr '\n' ' ')in $OUT_DIR"
