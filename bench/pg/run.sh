#!/usr/bin/env bash
# End-to-end no-op tasks/s and ack latency: embedded stores, and 1, 2 and 3
# servers on one PostgreSQL database (a throwaway durable cluster started
# from Debian's postgresql package). Writes bench/pg/RESULTS-table.md; the
# commentary is in bench/pg/RESULTS.md.
#
#   bench/pg/run.sh                 # 20,000 tasks per setup
#   BENCH_TASKS=50000 bench/pg/run.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
cargo build --release --locked -p errand-cli --bin errand
export ERRAND_BIN="$PWD/target/release/errand"
RUST_LOG=${RUST_LOG:-error} cargo run --release --locked -p errand-bench --bin errand-bench-pg -- bench/pg/RESULTS-table.md
