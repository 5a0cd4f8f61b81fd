#!/usr/bin/env bash
# Fails when the committed stubs in go/errandv1 differ from what
# go/scripts/gen.sh generates from the current proto/ (stale after a proto change).
set -euo pipefail
GO_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT

"$GO_DIR/scripts/gen.sh" "$TMP" 2>"$TMP/gen.log" || { cat "$TMP/gen.log" >&2; exit 1; }
status=0
for f in "$TMP"/errandv1/*.pb.go; do
  name="errandv1/$(basename "$f")"
  if [[ ! -f "$GO_DIR/$name" ]]; then
    echo "check-gen: go/$name is missing" >&2; status=1
  elif ! diff -u "$GO_DIR/$name" "$f" >"$TMP/diff" ; then
    echo "check-gen: go/$name is stale:" >&2; head -40 "$TMP/diff" >&2; status=1
  fi
done
for f in "$GO_DIR"/errandv1/*.pb.go; do
  [[ -f "$TMP/errandv1/$(basename "$f")" ]] || { echo "check-gen: go/errandv1/$(basename "$f") is no longer generated" >&2; status=1; }
done
if [[ $status -ne 0 ]]; then
  echo "check-gen: the committed Go stubs do not match proto/ (the proto changed, or the stubs were edited by hand). Run go/scripts/gen.sh and commit go/errandv1." >&2
  exit 1
fi
echo "check-gen: go/errandv1 matches proto/"
