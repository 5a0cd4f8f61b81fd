#!/usr/bin/env python3
"""A/B of two builds on issue 20's end-to-end load, runs interleaved.

    bench/ab.py --a DIR --b DIR [--store durable|memory] [--count 60000]
                [--rounds 3] [--agents 64 --pipeline 4] [--env-a K=V] [--env-b K=V]

DIR holds an `errand` and an `errand-bench` binary (a build's `target/release`,
or copies kept from one). Each round runs A then B, each on a fresh server
with its own data dir and `errand-bench worker`, one `errand-bench e2e` each.
Prints one row per run (tasks/s; the server's CPU µs per task, split by
thread: tokio's workers / the store's writer / the rest; the worker's and the
load generator's; delivery p50 / p99), then each side's medians and B/A.

Single runs on this shared box differ by a fifth between neighbours, so
compare medians of interleaved rounds, and the split by thread, not one run.
`--env-a`/`--env-b` pass environment variables to that side's server (an
experiment's switch), so one binary can be both sides.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

WRITER = "errand-store-wr"
TOKIO = "tokio-rt-worker"


def start_server(bin_dir: Path, store: str, tmp: Path, env: dict[str, str]) -> tuple[subprocess.Popen[str], str]:
    cmd = [str(bin_dir / "errand"), "serve", "--listen", "127.0.0.1:0", "--max-pending-per-session", "1000000"]
    cmd += ["--store", "memory"] if store == "memory" else ["--data-dir", str(tmp / "data")]
    srv = subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env={**os.environ, "RUST_LOG": "warn", **env},
    )
    deadline = time.monotonic() + 30
    assert srv.stdout is not None
    while time.monotonic() < deadline:
        line = srv.stdout.readline()
        if not line:
            break
        if "errand listening on " in line:
            return srv, line.split()[-1]
    srv.kill()
    raise RuntimeError(f"{cmd[0]} did not start listening within 30 s")


def one_run(bin_dir: Path, args: argparse.Namespace, env: dict[str, str]) -> dict[str, Any]:
    """One fresh server and worker, one e2e run; its JSON result."""
    with tempfile.TemporaryDirectory(prefix="ab-") as tmp:
        srv, addr = start_server(bin_dir, args.store, Path(tmp), env)
        bench = str(bin_dir / "errand-bench")
        worker = subprocess.Popen(
            [bench, "worker", "--addr", addr, "--tools", "noop", "--concurrency", "256", "--max-secs", "900"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            out = subprocess.run(
                [
                    bench, "e2e", "--addr", addr, "--pids", f"{srv.pid},{worker.pid}",
                    "--count", str(args.count), "--agents", str(args.agents),
                    "--pipeline", str(args.pipeline), "--window", "64",
                ],
                capture_output=True, text=True, timeout=900, check=True,
            ).stdout  # fmt: skip
        finally:
            worker.kill()
            srv.kill()
            worker.wait()
            srv.wait()
    result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return result


def figures(r: dict[str, Any]) -> dict[str, float]:
    n = max(r["tasks"], 1)
    server, worker, gen = r["cpu_seconds"]
    threads = server.get("by_thread") or {}
    tok, wr = threads.get(TOKIO, 0.0), threads.get(WRITER, 0.0)
    return {
        "tasks_s": r["tasks_per_s"],
        "server": server["seconds"] * 1e6 / n,
        "tokio": tok * 1e6 / n,
        "writer": wr * 1e6 / n,
        "other": (server["seconds"] - tok - wr) * 1e6 / n,
        "worker": worker["seconds"] * 1e6 / n,
        "loadgen": gen["seconds"] * 1e6 / n,
        "p50_ms": r["delivery"]["p50_us"] / 1000,
        "p99_ms": r["delivery"]["p99_us"] / 1000,
    }


def row(label: str, f: dict[str, float]) -> str:
    return (
        f"{label:8s} {f['tasks_s']:8.0f}/s  server {f['server']:6.1f} µs "
        f"({f['tokio']:5.1f} / {f['writer']:5.1f} / {f['other']:4.1f})  worker {f['worker']:5.1f}  "
        f"loadgen {f['loadgen']:5.1f}  delivery {f['p50_ms']:6.2f} / {f['p99_ms']:6.2f} ms"
    )


def env_pairs(pairs: list[str]) -> dict[str, str]:
    return dict(p.split("=", 1) for p in pairs)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--a", type=Path, required=True)
    p.add_argument("--b", type=Path, required=True)
    p.add_argument("--store", choices=["durable", "memory"], default="durable")
    p.add_argument("--count", type=int, default=60_000)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--agents", type=int, default=64)
    p.add_argument("--pipeline", type=int, default=4)
    p.add_argument("--env-a", action="append", default=[])
    p.add_argument("--env-b", action="append", default=[])
    args = p.parse_args()
    sides = {"A": (args.a, env_pairs(args.env_a)), "B": (args.b, env_pairs(args.env_b))}
    runs: dict[str, list[dict[str, float]]] = {"A": [], "B": []}
    for rnd in range(args.rounds):
        for name, (bin_dir, env) in sides.items():
            f = figures(one_run(bin_dir, args, env))
            runs[name].append(f)
            print(row(f"{name}{rnd + 1}", f), flush=True)
    med = {name: {k: statistics.median(f[k] for f in fs) for k in fs[0]} for name, fs in runs.items()}
    for name, f in med.items():
        print(row(f"{name} med", f))
    ratio = {k: med["B"][k] / med["A"][k] if med["A"][k] else float("nan") for k in med["A"]}
    print(
        f"B/A      tasks/s {ratio['tasks_s']:.3f}  server CPU per task {ratio['server']:.3f} "
        f"(tokio {ratio['tokio']:.3f}, writer {ratio['writer']:.3f})"
    )


if __name__ == "__main__":
    main()
