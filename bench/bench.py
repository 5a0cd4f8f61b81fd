"""Runs every workload of errand's benchmark against errand and its peers,
prints a table, writes RESULTS.md and draws latency.png. Started by `bench/run`.

errand's own workloads need only the standard library and the release
binaries; the peers (bench/peers.py) need bench/.venv, which `bench/run`
builds. `--smoke` runs tiny sizes and fails (exit 1) when anything broke.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Optional

import efficiency
from tables import f0, f1, table, us

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
OUT = BENCH / "out"
RELEASE = REPO / "target" / "release"
ERRAND = RELEASE / "errand"
BENCHBIN = RELEASE / "errand-bench"
VENV_PY = BENCH / ".venv" / "bin" / "python"

FULL = {
    "submit_agents": [1, 16, 256],
    "submit_counts": {1: 5_000, 16: 100_000, 256: 50_000},
    "submit_count": 10_000,  # peers
    "e2e_count": 100_000,
    "e2e_rounds": 3,
    "py_e2e_count": 20_000,
    "peer_e2e_count": 20_000,
    "delivery_count": 2000,
    "peer_delivery_count": 500,
    "echo_count": 5000,
    "fsync_count": 1000,
    "fanout_count": 10_000,
    "fanout_max_ms": 50,
    "seed_claim_ms": [1000, 5000, 15000],
    "streams": 1000,
    "stream_tasks": 20_000,
    "stream_rate": 2000,
    "open_rates": [1000, 5000],
    "open_seconds": 10,
    "open_warmup_seconds": 1,
    "e2e16_count": 50_000,
    "half_peak_seconds": 10,
    "py_modes": ["sdk-thread", "sdk-async", "bare"],
    "py_rounds": 3,
    "restart_fill": 1_000_000,
    "restart_runs": 5,
}
SMOKE = {
    "submit_agents": [1, 16],
    "submit_counts": {1: 300, 16: 2000},
    "submit_count": 300,
    "e2e_count": 2000,
    "e2e_rounds": 1,
    "py_e2e_count": 200,
    "peer_e2e_count": 200,
    "delivery_count": 100,
    "peer_delivery_count": 50,
    "echo_count": 200,
    "fsync_count": 50,
    "fanout_count": 500,
    "fanout_max_ms": 20,
    "seed_claim_ms": [10, 50, 150],
    "streams": 50,
    "stream_tasks": 500,
    "stream_rate": 1000,
    "open_rates": [200, 500],
    "open_seconds": 1,
    "open_warmup_seconds": 0.2,
    "e2e16_count": 1000,
    "half_peak_seconds": 1,
    "py_modes": ["sdk-thread", "sdk-async", "bare"],
    "py_rounds": 1,
    "restart_fill": 5000,
    "restart_runs": 2,
}

# e2e shapes of issue 20: 256 submitters over 64 sessions, and 16 over 16.
E2E_256 = ["--agents", "64", "--pipeline", "4", "--window", "64"]
E2E_16 = ["--agents", "16", "--pipeline", "1", "--window", "64"]


def e2e_args(srv: Server, worker_pid: int, count: int, *more: str) -> list[str]:
    """`errand-bench e2e` of `count` tasks through `srv`, CPU read for it and the worker."""
    return ["e2e", "--addr", srv.addr, "--pids", f"{srv.pid},{worker_pid}", "--count", str(count), *more]


STARTED = time.monotonic()
FAILURES: list[str] = []
PROCS: list[subprocess.Popen] = []


def progress(msg: str) -> None:
    elapsed = time.monotonic() - STARTED
    print(f"[{int(elapsed) // 60:2d}:{int(elapsed) % 60:02d}] {msg}", file=sys.stderr, flush=True)


def spawn(cmd: list[str], **kw: Any) -> subprocess.Popen:
    proc = subprocess.Popen(cmd, **kw)
    PROCS.append(proc)
    return proc


def stop(proc: Optional[subprocess.Popen]) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


def wait_line(proc: subprocess.Popen, prefix: str, timeout: float = 30) -> str:
    """The first stdout line of `proc` that starts with `prefix`."""
    deadline = time.monotonic() + timeout
    assert proc.stdout is not None
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            raise RuntimeError(f"{proc.args[0]} exited (code {proc.wait()}) before printing {prefix!r}")
        if line.startswith(prefix):
            return line.strip()
    raise RuntimeError(f"{proc.args[0]} printed no {prefix!r} in {timeout} s")


class Server:
    """One errand server on a free loopback port, with its own data dir."""

    def __init__(self, store: str, tmp: Path) -> None:
        self.store = store
        cmd = [str(ERRAND), "serve", "--listen", "127.0.0.1:0", "--max-pending-per-session", "1000000"]
        if store == "memory":
            cmd += ["--store", "memory"]
        else:
            cmd += ["--data-dir", tempfile.mkdtemp(prefix="data-", dir=tmp)]
        self.log = open(OUT / "server.log", "a")  # noqa: SIM115 - closed in close()
        self.proc = spawn(
            cmd, stdout=subprocess.PIPE, stderr=self.log, text=True, env=dict(os.environ, RUST_LOG="warn")
        )
        self.addr = wait_line(self.proc, "errand listening on ").split()[-1]
        self.pid = self.proc.pid
        self.workers: list[subprocess.Popen] = []

    def rust_worker(self, tools: str, concurrency: int) -> subprocess.Popen:
        w = spawn(
            [
                str(BENCHBIN),
                "worker",
                "--addr",
                self.addr,
                "--tools",
                tools,
                "--concurrency",
                str(concurrency),
                "--max-secs",
                "1800",
            ],
            stdout=subprocess.DEVNULL,
            stderr=self.log,
        )
        self.workers.append(w)
        return w

    def py_worker(self, python: str, concurrency: int, mode: str = "sdk-thread") -> subprocess.Popen:
        env = dict(os.environ, PYTHONPATH=str(REPO / "python"))
        w = spawn(
            [
                python,
                str(BENCH / "pyworker.py"),
                "--addr",
                self.addr,
                "--concurrency",
                str(concurrency),
                "--max-secs",
                "1800",
                "--mode",
                mode,
            ],
            stdout=subprocess.DEVNULL,
            stderr=self.log,
            env=env,
        )
        self.workers.append(w)
        return w

    def close(self) -> None:
        for w in self.workers:
            stop(w)
        stop(self.proc)
        self.log.close()


def bench(args: list[str], timeout: float) -> dict[str, Any]:
    """Runs one errand-bench workload; its JSON summary."""
    cmd = [str(BENCHBIN), *args]
    try:
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"{shlex.join(cmd)} took over {timeout} s") from None
    if res.returncode != 0:
        raise RuntimeError(f"{shlex.join(cmd)} failed: {res.stderr.strip()[-600:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def check(result: dict[str, Any], what: str) -> dict[str, Any]:
    if result.get("complete") is False:
        FAILURES.append(f"{what}: incomplete ({json.dumps({k: v for k, v in result.items() if k != 'delivery'})})")
    return result


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def sample(name: str) -> str:
    return str(OUT / f"{name}.txt")


# ---------------------------------------------------------------------------
def run_errand(sz: dict[str, Any], tmp: Path, python: Optional[str], R: dict[str, Any]) -> None:
    # The floors: one fdatasync on the data dirs' file system, one tonic unary round trip.
    progress("floor: fdatasync of a small append, where the durable store keeps its data")
    R["fsync"] = bench(["fsync", "--dir", str(tmp), "--count", str(sz["fsync_count"])], 60)
    progress(f"  fdatasync p50 {R['fsync']['fdatasync']['p50_us']} µs, p99 {R['fsync']['fdatasync']['p99_us']} µs")
    # The floors under an open-loop p99, over as long as an open-loop run: the
    # disk's and the cores' own stalls come every second or so, which a
    # back-to-back run of a few hundred ms misses.
    rate, secs = sz["open_rates"][0], sz["open_seconds"]
    progress(f"floor: fdatasync of an 8 KiB append paced at {rate}/s for {secs} s")
    R["fsync_paced"] = bench(
        ["fsync", "--dir", str(tmp), "--count", str(rate * secs), "--rate", str(rate), "--bytes", "8192"], 60
    )
    f = R["fsync_paced"]
    progress(
        f"  p50 {f['fdatasync']['p50_us']} µs, p99 {f['fdatasync']['p99_us']} µs, "
        f"p99.9 {f['fdatasync']['p999_us']} µs, {f['over_1ms']:.2%} over 1 ms; from its slot "
        f"p99 {f['from_slot']['p99_us']} µs, {f['from_slot_over_1ms']:.2%} over 1 ms"
    )
    progress(f"floor: a sleeping thread's wake-up lateness at {rate} slots/s for {secs} s")
    R["wake"] = bench(["wake", "--rate", str(rate), "--seconds", str(secs)], 60)
    w = R["wake"]
    progress(
        f"  p99 {w['lateness']['p99_us']} µs, p99.9 {w['lateness']['p999_us']} µs, {w['late_over_1ms']:.2%} over 1 ms"
    )
    progress("tonic echo: sequential unary round trips")
    echo = spawn([str(BENCHBIN), "echo-server"], stdout=subprocess.PIPE, text=True)
    try:
        addr = wait_line(echo, "echo listening on ").split()[-1]
        R["echo"] = bench(
            ["echo", "--addr", addr, "--count", str(sz["echo_count"]), "--samples", sample("echo_rtt")], 120
        )
    finally:
        stop(echo)
    progress(f"  echo RTT p50 {R['echo']['rtt']['p50_us']} µs, p99 {R['echo']['rtt']['p99_us']} µs")

    for store in ("durable", "memory"):
        # 1. Submit, with a stalled worker so that tasks stay queued; RSS per queued task.
        for agents in sz["submit_agents"]:
            count = sz["submit_counts"][agents]
            progress(f"[{store}] 1. submit: {agents} agent(s), {count:,} submits")
            srv = Server(store, tmp)
            try:
                srv.rust_worker("stall", 1)
                r = bench(
                    [
                        "submit",
                        "--addr",
                        srv.addr,
                        "--server-pid",
                        str(srv.pid),
                        "--agents",
                        str(agents),
                        "--count",
                        str(count),
                        "--samples",
                        sample(f"errand_{store}_submit_{agents}"),
                    ],
                    300,
                )
                R[f"submit/{store}/{agents}"] = check(r, f"submit {store} {agents}")
                progress(
                    f"  {r['acks_per_s']:,.0f} acks/s, p99 {r['ack']['p99_us']} µs, "
                    f"{(r['bytes_per_task'] or 0):,.0f} B/queued task"
                )
            finally:
                srv.close()
        # 1b. Open loop: ack latency from each submit's scheduled time, server CPU per submit.
        for rate in sz["open_rates"]:
            progress(f"[{store}] 1b. open-loop submits at {rate}/s for {sz['open_seconds']} s (16 connections)")
            srv = Server(store, tmp)
            try:
                srv.rust_worker("stall", 1)
                r = bench(
                    [
                        "open-loop",
                        "--addr",
                        srv.addr,
                        "--server-pid",
                        str(srv.pid),
                        "--agents",
                        "16",
                        "--rate",
                        str(rate),
                        "--seconds",
                        str(sz["open_seconds"]),
                        "--warmup-seconds",
                        str(sz["open_warmup_seconds"]),
                        "--samples",
                        sample(f"errand_{store}_open_{rate}"),
                    ],
                    120,
                )
                R[f"open/{store}/{rate}"] = check(r, f"open loop {store} {rate}")
                progress(
                    f"  ack p50 {r['ack']['p50_us']} µs, p99 {r['ack']['p99_us']} µs "
                    f"(warm-up p99 {r['warmup']['ack']['p99_us']} µs), "
                    f"server {r['server_cpu_us_per_submit']:.0f} µs CPU/submit, "
                    f"generator lateness p50 {r['lateness']['p50_us']} µs, p99 {r['lateness']['p99_us']} µs"
                )
            finally:
                srv.close()
        # 2 + 3. End to end through the Rust worker; delivery at light load first.
        progress(f"[{store}] 3. delivery, light load ({sz['delivery_count']} tasks one at a time)")
        srv = Server(store, tmp)
        try:
            w = srv.rust_worker("noop", 256)
            r = bench(
                [
                    "delivery",
                    "--addr",
                    srv.addr,
                    "--count",
                    str(sz["delivery_count"]),
                    "--samples",
                    sample(f"errand_{store}_delivery_light"),
                ],
                120,
            )
            R[f"delivery/{store}"] = r
            progress(f"  delivery p50 {r['delivery']['p50_us']} µs, p99 {r['delivery']['p99_us']} µs")
            roles = {srv.pid: "server", w.pid: "worker"}

            # The figure the targets read, so the median of a few runs: on these shared
            # cores single runs of the same binary differ by a third.
            runs = []
            for rnd in range(sz["e2e_rounds"]):
                progress(
                    f"[{store}] 2. end to end: {sz['e2e_count']:,} no-op tasks, Rust worker, "
                    f"256 submitters / 64 sessions, run {rnd + 1} of {sz['e2e_rounds']}"
                )
                r = bench(
                    e2e_args(
                        srv, w.pid, sz["e2e_count"], *E2E_256, "--samples", sample(f"errand_{store}_e2e_delivery_{rnd}")
                    ),
                    600,
                )
                r = efficiency.cpu_split(check(r, f"e2e {store} rust"), roles)
                r["round"] = rnd
                runs.append(r)
                progress(
                    f"  {r['tasks_per_s']:,.0f} tasks/s, {r['cpu_us_per_task']:.0f} µs CPU/task "
                    f"(server {r['server_cpu_us_per_task']:.0f} µs, {r['server_cores']:.2f} cores; "
                    f"box: stolen / memory load ns / wake µs {efficiency.host(r)})"
                )
            mid = efficiency.median_run(runs)
            for rnd in range(sz["e2e_rounds"]):
                kept = Path(sample(f"errand_{store}_e2e_delivery_{rnd}"))
                if rnd == mid["round"]:
                    kept.replace(sample(f"errand_{store}_e2e_delivery"))
                else:
                    kept.unlink(missing_ok=True)
            R[f"e2e/{store}/rust"] = mid
            progress(f"[{store}] 2. end to end: {sz['e2e16_count']:,} no-op tasks, 16 submitters / 16 sessions")
            r = bench(e2e_args(srv, w.pid, sz["e2e16_count"], *E2E_16), 600)
            R[f"e2e16/{store}/rust"] = efficiency.cpu_split(check(r, f"e2e16 {store} rust"), roles)
            progress(f"  {r['tasks_per_s']:,.0f} tasks/s, server {r['server_cpu_us_per_task']:.0f} µs CPU/task")
            half = round(R[f"e2e/{store}/rust"]["tasks_per_s"] / 2)
            count = max(half * sz["half_peak_seconds"], 100)
            progress(f"[{store}] 3. delivery at 50 % of peak: {half:,} tasks/s open loop, {count:,} tasks")
            r = bench(
                e2e_args(
                    srv,
                    w.pid,
                    count,
                    *E2E_256,
                    "--rate",
                    str(half),
                    "--samples",
                    sample(f"errand_{store}_half_peak_delivery"),
                ),
                600,
            )
            R[f"half/{store}/rust"] = efficiency.cpu_split(check(r, f"half peak {store}"), roles)
            progress(f"  delivery p50 {r['delivery']['p50_us']} µs, p99 {r['delivery']['p99_us']} µs")
        finally:
            srv.close()
    # 2. The Python worker three ways on the memory store (the server is not the bound),
    # in rounds that take the modes in turn, so that a burst of other load on the
    # box falls on every mode alike; each mode's median run is the one reported.
    py_runs: dict[str, list[dict[str, Any]]] = {}
    for rnd in range(sz["py_rounds"]) if python else []:
        for mode in sz["py_modes"]:
            progress(
                f"[memory] 2. end to end: {sz['py_e2e_count']:,} no-op tasks, Python worker {mode}, "
                f"round {rnd + 1} of {sz['py_rounds']}"
            )
            srv = Server("memory", tmp)
            try:
                w = srv.py_worker(python, 64, mode)
                r = bench(
                    [
                        "e2e",
                        "--addr",
                        srv.addr,
                        "--pids",
                        f"{srv.pid},{w.pid}",
                        "--count",
                        str(sz["py_e2e_count"]),
                        "--window",
                        "256",
                    ],
                    400,
                )
                r = efficiency.cpu_split(check(r, f"python {mode}"), {srv.pid: "server", w.pid: "worker"})
                py_runs.setdefault(mode, []).append(r)
                progress(f"  {r['tasks_per_s']:,.0f} tasks/s, worker {r['worker_cpu_us_per_task']:.0f} µs CPU/task")
            finally:
                srv.close()
    for mode, runs in py_runs.items():
        R[f"py/{mode}"] = efficiency.median_run(runs)

    # 4 + 5. Fan-out and the seed's claim, durable store.
    srv = Server("durable", tmp)
    try:
        srv.rust_worker("sleep", 256)
        progress(
            f"[durable] 4. fan-out: {sz['fanout_count']:,} tasks sleeping 0-{sz['fanout_max_ms']} ms, concurrency 256"
        )
        r = bench(
            [
                "fanout",
                "--addr",
                srv.addr,
                "--count",
                str(sz["fanout_count"]),
                "--max-sleep-ms",
                str(sz["fanout_max_ms"]),
            ],
            200,
        )
        R["fanout"] = check(r, "fanout")
        progress(
            f"  last completion at {r['makespan_s']:.2f} s, ideal {r['ideal_s']:.2f} s, "
            f"{r['matched']:,}/{r['tasks']:,} matched"
        )
        ms = ",".join(map(str, sz["seed_claim_ms"]))
        progress(f"[durable] 5. the seed's claim: tools of {ms} ms, gather against errand")
        r = bench(["seed-claim", "--addr", srv.addr, "--sleeps-ms", ms], max(sz["seed_claim_ms"]) / 1000 + 60)
        R["seed_claim"] = r
        progress(
            f"  first action: gather {r['gather']['first_action_s']:.2f} s, "
            f"errand {r['errand']['first_action_s']:.2f} s"
        )
    finally:
        srv.close()

    # 6. Many sessions with open streams.
    progress(
        f"[durable] 6. {sz['streams']:,} sessions with open Completions streams, "
        f"{sz['stream_tasks']:,} tasks at {sz['stream_rate']}/s"
    )
    srv = Server("durable", tmp)
    try:
        srv.rust_worker("noop", 256)
        r = bench(
            [
                "sessions",
                "--addr",
                srv.addr,
                "--server-pid",
                str(srv.pid),
                "--streams",
                str(sz["streams"]),
                "--tasks",
                str(sz["stream_tasks"]),
                "--rate",
                str(sz["stream_rate"]),
                "--samples",
                sample("errand_durable_sessions_delivery"),
            ],
            200,
        )
        R["sessions"] = check(r, "sessions")
        progress(
            f"  RSS {r['rss_idle_kib'] / 1024:.1f} -> {r['rss_streams_open_kib'] / 1024:.1f} MiB with streams, "
            f"delivery p99 {r['delivery']['p99_us']} µs"
        )
    finally:
        srv.close()

    # Restart time: an empty store, then a large one.
    progress("[durable] restart: an empty store")
    R["restart_empty"] = bench(
        ["restart", "--errand", str(ERRAND), "--data-dir", str(tmp / "restart-empty"), "--fill", "0", "--queued", "0"],
        300,
    )
    n = sz["restart_fill"]
    progress(f"[durable] restart: fill a data dir with {n:,} retained tasks, time {sz['restart_runs']} starts")
    r = bench(
        [
            "restart",
            "--errand",
            str(ERRAND),
            "--data-dir",
            str(tmp / "restart"),
            "--fill",
            str(n),
            "--runs",
            str(sz["restart_runs"]),
        ],
        1200,
    )
    R["restart"] = r
    progress(
        f"  start to serving p50 {r['serving']['p50_us'] / 1000:.1f} ms, max {r['serving']['max_us'] / 1000:.1f} ms "
        f"({r['db_bytes'] / 2**20:,.0f} MiB); after a crash {r['after_crash_serving_ms']:.1f} ms"
    )


def run_peers(sz: dict[str, Any], R: dict[str, Any], skip: list[str]) -> None:
    sizes = json.dumps(
        {
            "submit_agents": sz["submit_agents"],
            "submit_count": sz["submit_count"],
            "e2e_count": sz["e2e_count"],
            "peer_e2e_count": sz["peer_e2e_count"],
            "delivery_count": sz["peer_delivery_count"],
            "fanout_count": sz["fanout_count"],
            "fanout_max_ms": sz["fanout_max_ms"],
            "seed_claim_ms": sz["seed_claim_ms"],
        }
    )
    for system in ("seed", "celery", "ray"):
        if system in skip:
            R.setdefault("skipped", {})[system] = "skipped on request (--skip)"
            continue
        progress(f"peer {system}: every workload")
        redis = None
        extra: list[str] = []
        if system == "celery":
            if not shutil.which("redis-server"):
                R.setdefault("skipped", {})[system] = "redis-server is not installed"
                continue
            port = free_port()
            redis = spawn(
                ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            time.sleep(0.5)
            extra = ["--redis", f"redis://127.0.0.1:{port}"]
        try:
            proc = subprocess.run(
                [str(VENV_PY), str(BENCH / "peers.py"), system, "--sizes", sizes, "--out", str(OUT), *extra],
                stdout=subprocess.PIPE,
                text=True,
                timeout=1200,
            )
            for line in proc.stdout.splitlines():
                if line.startswith("{"):
                    r = json.loads(line)
                    R[f"peer/{r['system']}/{r['workload']}" + (f"/{r['agents']}" if "agents" in r else "")] = r
            if proc.returncode != 0:
                R.setdefault("skipped", {})[system] = f"exited with code {proc.returncode} (partial results kept)"
        except subprocess.TimeoutExpired:
            R.setdefault("skipped", {})[system] = "took over 20 minutes"
        finally:
            stop(redis)


# ---------------------------------------------------------------------------
def report(R: dict[str, Any], sz: dict[str, Any]) -> tuple[str, list[tuple[str, str, str, bool]]]:
    sz = {**sz, "submit_counts": {int(k): v for k, v in sz["submit_counts"].items()}}
    parts = []
    g = R.get
    # 1. Submit.
    rows = []
    for store in ("durable", "memory"):
        for a in sz["submit_agents"]:
            r = g(f"submit/{store}/{a}")
            if r:
                rows.append(
                    [
                        f"errand ({store})",
                        str(a),
                        f0(r["acks_per_s"]),
                        us(r["ack"]["p50_us"]),
                        us(r["ack"]["p99_us"]),
                        us(r["ack"]["p999_us"]),
                    ]
                )
    for peer, label in (("seed", "seed ThreadPoolExecutor (in process)"), ("celery", "Celery + Redis"), ("ray", "Ray")):
        for a in sz["submit_agents"]:
            r = g(f"peer/{peer}/submit/{a}")
            if r:
                rows.append(
                    [
                        label,
                        str(a),
                        f0(r["acks_per_s"]),
                        us(r["ack"]["p50_us"]),
                        us(r["ack"]["p99_us"]),
                        us(r["ack"]["p999_us"]),
                    ]
                )
    parts.append(
        "### 1. Submit (ack = the call returned; errand's ack is after the commit)\n\n"
        + table(["system", "agents", "acks/s", "p50", "p99", "p99.9"], rows)
    )
    # 2. End to end.
    rows = []
    for store in ("durable", "memory"):
        for w in ("rust",):
            r = g(f"e2e/{store}/{w}")
            if r:
                rows.append(
                    [
                        f"errand ({store}), Rust worker, 256 submitters / 64 sessions",
                        f0(r["tasks"]),
                        f0(r["tasks_per_s"]),
                        f1(r["wall_us_per_task"]),
                        f1(r["cpu_us_per_task"]),
                    ]
                )
    for peer, label in (
        ("seed", "seed ThreadPoolExecutor, 4 threads"),
        ("celery", "Celery + Redis (prefork, 2)"),
        ("ray", "Ray tasks + ray.wait"),
    ):
        r = g(f"peer/{peer}/e2e")
        if r:
            rows.append(
                [label, f0(r["tasks"]), f0(r["tasks_per_s"]), f1(r["wall_us_per_task"]), f1(r["cpu_us_per_task"])]
            )
    parts.append(
        "### 2. End to end, no-op tools\n\n"
        + table(["system", "tasks", "tasks/s", "wall µs/task", "CPU µs/task"], rows)
        + "\n\nCPU per task counts errand's server, worker and agent; Celery's worker pool and agent "
        "(not Redis); Ray's driver and every Ray process; the seed's one process."
    )
    # 3. Delivery.
    rows = []
    e = g("echo")
    if e:
        rows.append(
            [
                "tonic unary echo (round trip)",
                "sequential",
                us(e["rtt"]["p50_us"]),
                us(e["rtt"]["p99_us"]),
                us(e["rtt"]["p999_us"]),
            ]
        )
    for store in ("durable", "memory"):
        r = g(f"delivery/{store}")
        if r:
            d = r["delivery"]
            rows.append(
                [f"errand ({store})", "light: one at a time", us(d["p50_us"]), us(d["p99_us"]), us(d["p999_us"])]
            )
        r = g(f"e2e/{store}/rust")
        if r:
            d = r["delivery"]
            rows.append(
                [f"errand ({store})", "heavy: during workload 2", us(d["p50_us"]), us(d["p99_us"]), us(d["p999_us"])]
            )
    r = g("sessions")
    if r:
        d = r["delivery"]
        rows.append(
            [
                "errand (durable)",
                f"{sz['streams']:,} open streams, {sz['stream_rate']}/s",
                us(d["p50_us"]),
                us(d["p99_us"]),
                us(d["p999_us"]),
            ]
        )
    for peer, label in (("seed", "seed ThreadPoolExecutor"), ("celery", "Celery + Redis"), ("ray", "Ray")):
        for key, load in (("delivery", "light: one at a time"), ("e2e", "heavy: during workload 2")):
            r = g(f"peer/{peer}/{key}")
            if r and "delivery" in r:
                d = r["delivery"]
                rows.append([label, load, us(d["p50_us"]), us(d["p99_us"]), us(d["p999_us"])])
    parts.append(
        "### 3. Delivery latency (worker sends its result → agent receives it)\n\n"
        + table(["system", "load", "p50", "p99", "p99.9"], rows)
    )
    # 4. Fan-out.
    rows = []
    for key, label in (
        ("fanout", "errand (durable)"),
        ("peer/seed/fanout", "seed ThreadPoolExecutor"),
        ("peer/celery/fanout", "Celery + Redis (threads, 256)"),
        ("peer/ray/fanout", "Ray (threaded actor, 256) + ray.wait"),
    ):
        r = g(key)
        if r:
            rows.append(
                [
                    label,
                    f0(r["tasks"]),
                    f"{r['makespan_s']:.2f} s",
                    f"{r['ideal_s']:.2f} s",
                    f"{r['ratio']:.2f}×",
                    f"{r['matched']:,}/{r['tasks']:,}",
                ]
            )
    parts.append(
        f"### 4. Out-of-order fan-out: sleeps 0–{sz['fanout_max_ms']} ms, concurrency 256\n\n"
        + table(
            ["system", "tasks", "last completion", "ideal (Σsleep/256)", "ratio", "results matched to task IDs"], rows
        )
    )
    # 5. Seed claim.
    rows = []
    r = g("seed_claim")
    if r:
        for mode, label in (
            ("gather", "gather-style (wait for all) over errand"),
            ("errand", "errand: act on each completion"),
        ):
            m = r[mode]
            rows.append(
                [
                    label,
                    f"{m['first_action_s']:.3f} s",
                    ", ".join(f"{a:.3f}" for a in m["actions_s"]),
                    f"{m['idle_s']:.3f} s",
                ]
            )
    r = g("peer/seed/seed_claim")
    if r:
        m = r["callbacks"]
        rows.append(
            [
                "seed ThreadPoolExecutor callbacks",
                f"{m['first_action_s']:.3f} s",
                ", ".join(f"{a:.3f}" for a in m["actions_s"]),
                f"{m['idle_s']:.3f} s",
            ]
        )
    ms = ", ".join(f"{v / 1000:g} s" for v in sz["seed_claim_ms"])
    parts.append(
        f"### 5. The seed's claim: tools of {ms}\n\n"
        + table(["agent", "time to first action", "actions at (s)", "idle (blocked) time"], rows)
        + "\n\nIdle time is the time the agent is blocked and can neither act nor talk to its user: "
        "for gather, dispatch until the slowest tool returns; for errand, the three submit calls."
    )
    # 6. Sessions and memory.
    rows = []
    r = g("sessions")
    if r:
        rows.append(
            [
                f"{r['streams']:,} open Completions streams",
                f"{r['rss_idle_kib'] / 1024:.1f} MiB",
                f"{r['rss_streams_open_kib'] / 1024:.1f} MiB",
                f"{(r['rss_streams_open_kib'] - r['rss_idle_kib']) / 1024:.1f} MiB "
                f"({f0(r['bytes_per_stream'])} B/stream)",
            ]
        )
    for store in ("durable", "memory"):
        a = max(sz["submit_agents"], key=lambda k: sz["submit_counts"][k])
        r = g(f"submit/{store}/{a}")
        if r and r.get("rss_before_kib"):
            rows.append(
                [
                    f"{r['accepted']:,} queued tasks, {store} store",
                    f"{r['rss_before_kib'] / 1024:.1f} MiB",
                    f"{r['rss_after_kib'] / 1024:.1f} MiB",
                    f"{f0(r['bytes_per_task'])} B/task",
                ]
            )
    parts.append(
        "### 6. Scale of sessions and server memory (VmRSS of the server)\n\n"
        + table(["what", "RSS before", "RSS after", "cost"], rows)
    )
    if R.get("skipped"):
        parts.append("### Peers not run\n\n" + "\n".join(f"- {k}: {v}" for k, v in R["skipped"].items()))
    parts.append(efficiency.report(R, sz))
    return "\n\n".join(parts), efficiency.targets(R, sz) + targets(R, sz)


def targets(R: dict[str, Any], sz: dict[str, Any]) -> list[tuple[str, str, str, bool]]:
    """(target, measured, bound, holds) for every target of issue 6 that was measured."""
    sz = {**sz, "submit_counts": {int(k): v for k, v in sz["submit_counts"].items()}}
    out = []
    g = R.get
    e2e = g("e2e/durable/rust")
    for peer, factor in (("celery", 10), ("ray", 3)):
        p = g(f"peer/{peer}/e2e")
        if e2e and p:
            ratio = e2e["tasks_per_s"] / p["tasks_per_s"]
            out.append(
                (
                    f"end to end, Rust worker, durable: ≥ {factor}× {peer.capitalize()}'s tasks/s",
                    f"{ratio:.1f}× ({f0(e2e['tasks_per_s'])} vs {f0(p['tasks_per_s'])})",
                    "",
                    ratio >= factor,
                )
            )
    e = g("echo")
    for store in ("durable", "memory"):
        d = g(f"delivery/{store}")
        if e and d:
            lim = 2 * e["rtt"]["p99_us"]
            out.append(
                (
                    f"delivery p99 ≤ 2× echo round-trip p99 ({store}, light load)",
                    f"{us(d['delivery']['p99_us'])} vs 2 × {us(e['rtt']['p99_us'])}",
                    "",
                    d["delivery"]["p99_us"] <= lim,
                )
            )
    c = g("seed_claim")
    if c:
        fastest = min(sz["seed_claim_ms"]) / 1000
        first = c["errand"]["first_action_s"]
        out.append(
            (
                "seed's claim: first action ≈ fastest tool",
                f"{first:.3f} s (fastest tool {fastest:g} s; gather {c['gather']['first_action_s']:.3f} s)",
                "",
                first <= fastest * 1.1 + 0.05,
            )
        )
    for store in ("durable", "memory"):
        a = max(sz["submit_agents"], key=lambda k: sz["submit_counts"][k])
        r = g(f"submit/{store}/{a}")
        if r and r.get("bytes_per_task") is not None:
            out.append(
                (
                    f"≤ 2 KiB server memory per queued task ({store})",
                    f"{f0(r['bytes_per_task'])} B",
                    "",
                    r["bytes_per_task"] <= 2048,
                )
            )
    s = g("sessions")
    if s and s.get("rss_streams_open_kib"):
        mib = (s["rss_streams_open_kib"] - s["rss_idle_kib"]) / 1024 * 1000 / s["streams"]
        out.append(("1,000 open streams < 100 MiB", f"{mib:.1f} MiB (scaled to 1,000)", "", mib < 100))
    return out


def machine() -> list[str]:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    mem = next(
        line.split(":", 1)[1].strip()
        for line in Path("/proc/meminfo").read_text().splitlines()
        if line.startswith("MemTotal")
    )

    def cmd(*c: str) -> str:
        try:
            return subprocess.run(c, capture_output=True, text=True, timeout=10).stdout.strip()
        except OSError:
            return "?"

    return [
        f"CPU: {cpu}, {os.cpu_count()} cores (shared with other builds while this ran: see load)",
        f"memory: {mem}; kernel {platform.release()}",
        f"load average at the start: {' '.join(Path('/proc/loadavg').read_text().split()[:3])}",
        f"{cmd('rustc', '--version')}; Python {platform.python_version()}",
        f"errand at commit {cmd('git', '-C', str(REPO), 'rev-parse', '--short', 'HEAD')}",
        f"date: {time.strftime('%Y-%m-%d %H:%M %Z')}",
    ]


def plot(R: dict[str, Any]) -> Optional[str]:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib is not installed (bench/run installs it into bench/.venv)"

    def load(name: str) -> list[float]:
        p = OUT / f"{name}.txt"
        return [float(x) for x in p.read_text().split()] if p.exists() else []

    panels = [
        (
            "Ack latency, 16 agents as fast as possible",
            [
                ("errand durable", "errand_durable_submit_16"),
                ("errand memory", "errand_memory_submit_16"),
                ("seed TPE", "seed_submit_16"),
                ("Celery+Redis", "celery_submit_16"),
                ("Ray", "ray_submit_16"),
            ],
        ),
        (
            "Ack latency, open loop at 5,000 and 1,000 submits/s",
            [
                ("errand durable 5,000/s", "errand_durable_open_5000"),
                ("errand memory 5,000/s", "errand_memory_open_5000"),
                ("errand durable 1,000/s", "errand_durable_open_1000"),
                ("errand memory 1,000/s", "errand_memory_open_1000"),
            ],
        ),
        (
            "Delivery latency, light load",
            [
                ("tonic echo RTT", "echo_rtt"),
                ("errand durable", "errand_durable_delivery_light"),
                ("errand memory", "errand_memory_delivery_light"),
                ("seed TPE", "seed_delivery_light"),
                ("Celery+Redis", "celery_delivery_light"),
                ("Ray", "ray_delivery_light"),
            ],
        ),
        (
            "Delivery latency, heavy load (end to end run)",
            [
                ("errand durable", "errand_durable_e2e_delivery"),
                ("errand memory", "errand_memory_e2e_delivery"),
                ("errand durable, 50 % of peak", "errand_durable_half_peak_delivery"),
                ("errand, 1,000 streams", "errand_durable_sessions_delivery"),
                ("seed TPE", "seed_e2e_delivery"),
                ("Celery+Redis", "celery_e2e_delivery"),
                ("Ray", "ray_e2e_delivery"),
            ],
        ),
    ]
    colors = {
        "errand durable": "C0",
        "errand memory": "C1",
        "seed TPE": "C2",
        "Celery+Redis": "C3",
        "Ray": "C4",
        "tonic echo RTT": "k",
        "errand, 1,000 streams": "C5",
    }
    fig, axes = plt.subplots(2, 2, figsize=(13, 9))
    for ax, (title, series) in zip(axes.flat, panels):
        for label, name in series:
            v = sorted(load(name))
            if v:
                ys = [(i + 1) / len(v) for i in range(len(v))]
                ax.plot([max(x, 0.1) for x in v], ys, label=f"{label} (n={len(v):,})", color=colors.get(label))
        ax.set_xscale("log")
        ax.set_xlabel("latency (µs, log scale)")
        ax.set_ylabel("fraction ≤ x (CDF)")
        ax.set_title(title)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle("errand benchmark: latency distributions")
    fig.tight_layout()
    fig.savefig(BENCH / "latency.png", dpi=110)
    return None


def main() -> int:
    global OUT
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes; exit 1 if anything broke")
    parser.add_argument("--no-peers", action="store_true", help="errand only")
    parser.add_argument("--skip", default="", help="comma-separated peers not to run: seed,celery,ray")
    parser.add_argument("--command", default="bench/run", help="the command line to record in RESULTS.md")
    parser.add_argument(
        "--report-only",
        action="store_true",
        help="re-render RESULTS.md and latency.png from bench/out (after editing ANALYSIS.md)",
    )
    args = parser.parse_args()
    if args.report_only:
        saved = json.loads((OUT / "results.json").read_text())
        body, tgts = report(saved["results"], saved["sizes"])
        tgt_table = table(
            ["target (issues 6 and 20)", "measured", "holds"],
            [[t, m, "yes" if ok else "**no**"] for t, m, _, ok in tgts],
        )
        write_results(body, tgt_table, saved["machine"], saved["command"], plot(saved["results"]))
        return 0
    sz = SMOKE if args.smoke else FULL
    if args.smoke:  # keep a full run's samples and results.json for --report-only
        OUT = OUT / "smoke"
    OUT.mkdir(parents=True, exist_ok=True)
    for old in OUT.glob("*.txt"):
        old.unlink()
    (OUT / "server.log").write_text("")
    facts = machine()
    python = None
    for cand in (VENV_PY, REPO / "python" / ".venv" / "bin" / "python"):
        if (
            cand.exists()
            and subprocess.run(
                [str(cand), "-c", "import grpc, google.protobuf"],
                env=dict(os.environ, PYTHONPATH=str(REPO / "python")),
                capture_output=True,
            ).returncode
            == 0
        ):
            python = str(cand)
            break
    R: dict[str, Any] = {}
    if python is None:
        R.setdefault("skipped", {})["errand Python worker"] = (
            "no interpreter with grpcio (bench/run builds bench/.venv)"
        )
    peers = not args.no_peers and not args.smoke and VENV_PY.exists()
    if not peers and not args.no_peers and not args.smoke:
        R.setdefault("skipped", {})["peers"] = "bench/.venv is missing (bench/run installs the peers)"
    with tempfile.TemporaryDirectory(prefix="errand-bench-") as tmp:
        try:
            run_errand(sz, Path(tmp), python, R)
        except Exception as exc:
            FAILURES.append(f"errand workloads: {exc}")
            progress(f"FAILED: {exc}")
        finally:
            for p in PROCS:
                stop(p)
    if peers:
        try:
            run_peers(sz, R, [s for s in args.skip.split(",") if s])
        finally:
            for p in PROCS:
                stop(p)
    sizes = {**sz, "submit_counts": {str(k): v for k, v in sz["submit_counts"].items()}}
    (OUT / "results.json").write_text(
        json.dumps({"results": R, "sizes": sizes, "machine": facts, "command": args.command}, indent=1)
    )
    body, tgts = report(R, sz)
    tgt_table = table(
        ["target (issues 6 and 20)", "measured", "holds"], [[t, m, "yes" if ok else "**no**"] for t, m, _, ok in tgts]
    )
    print("\n" + body + "\n\n### Targets\n\n" + tgt_table + "\n")
    plot_note = plot(R) if not args.smoke else "not drawn in smoke mode"
    if not args.smoke:
        write_results(body, tgt_table, facts, args.command, plot_note)
        progress("wrote bench/RESULTS.md" + ("" if plot_note else " and bench/latency.png"))
    if FAILURES:
        for f in FAILURES:
            print(f"FAILED: {f}", file=sys.stderr)
        return 1
    progress("done")
    return 0


def write_results(body: str, tgt_table: str, facts: list[str], command: str, plot_note: Optional[str]) -> None:
    analysis = BENCH / "ANALYSIS.md"
    text = [
        "# errand benchmark results",
        "",
        "Produced by:",
        "",
        "```sh",
        command,
        "```",
        "",
        "Machine:",
        "",
        *[f"- {f}" for f in facts],
        "",
        "Everything runs on loopback on this one machine, in one run; figures move with other load on the "
        "two cores, so compare ratios within a run. Raw numbers: `bench/out/results.json`; "
        "latency samples: `bench/out/*.txt`.",
        "",
        "![latency distributions](latency.png)" if plot_note is None else f"(No plot: {plot_note}.)",
        "",
        "## Results",
        "",
        body,
        "",
        "## Targets",
        "",
        tgt_table,
        "",
    ]
    if analysis.exists():
        text += [analysis.read_text().strip(), ""]
    (BENCH / "RESULTS.md").write_text("\n".join(text))


if __name__ == "__main__":
    sys.exit(main())
