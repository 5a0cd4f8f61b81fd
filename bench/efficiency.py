"""Issue 20's figures: open-loop ack latency, server CPU per task apart from the
load generator's, delivery at half of peak, the Python worker three ways, and
restart time with a large store; their tables and targets. Pure functions of
the results dict that `bench.py` fills."""

from __future__ import annotations

from typing import Any

from tables import f0, f1, table, us

Target = tuple[str, str, str, bool]


def cpu_split(r: dict[str, Any], roles: dict[int, str]) -> dict[str, Any]:
    """Adds `<role>_cpu_us_per_task` for each pid of an e2e result's
    `cpu_seconds` (`roles` names them; the last entry is the load generator),
    `<role>_wait_us_per_task` (its threads' run-queue wait, when reported),
    `server_cores` (server CPU seconds per wall second) and
    `server_threads_us_per_task` (the server's CPU µs per task by thread
    name, when reported)."""
    n = max(r.get("tasks") or 0, 1)
    per_pid = r.get("cpu_seconds") or []
    for i, e in enumerate(per_pid):
        role = "loadgen" if i == len(per_pid) - 1 else roles.get(e["pid"], f"pid{e['pid']}")
        r[f"{role}_cpu_us_per_task"] = e["seconds"] * 1e6 / n
        if e.get("run_queue_wait_seconds") is not None:
            r[f"{role}_wait_us_per_task"] = e["run_queue_wait_seconds"] * 1e6 / n
        if role == "server":
            r["server_cores"] = e["seconds"] / max(r["seconds"], 1e-9)
            if e.get("by_thread"):
                r["server_threads_us_per_task"] = {k: v * 1e6 / n for k, v in e["by_thread"].items()}
    return r


def waits(r: dict[str, Any]) -> str:
    """Run-queue wait per task of server / worker / load generator, µs."""
    roles = ("server", "worker", "loadgen")
    if not any(f"{role}_wait_us_per_task" in r for role in roles):
        return "–"
    return " / ".join(f1(r.get(f"{role}_wait_us_per_task")) for role in roles)


#: Server threads by the name the kernel keeps (15 bytes): tokio's workers,
#: the SQLite store's writer; every other thread (checkpoint, start check,
#: the main thread) is "other".
SERVER_THREADS = (("tokio-rt-worker", "tokio"), ("errand-store-wr", "store writer"))


def server_threads(r: dict[str, Any]) -> str:
    """The server's CPU µs per task: tokio's workers / the store's writer /
    the other threads ("–" for a thread the store does not have)."""
    t = r.get("server_threads_us_per_task")
    if not t:
        return "–"
    named = [t.get(name) for name, _ in SERVER_THREADS]
    other = sum(v for k, v in t.items() if k not in dict(SERVER_THREADS))
    return " / ".join([*(f1(v) for v in named), f1(other)])


def host(r: dict[str, Any]) -> str:
    """The box during an e2e run: CPU stolen by other guests (% of all CPU
    time), one dependent load from memory (ns) and a thread wake round trip
    (µs), the last two measured just before the run (`bench/src/host.rs`)."""
    h = r.get("host")
    if not h or h.get("steal_share") is None:
        return "–"
    return f"{h['steal_share'] * 100:.1f} % / {f0(h.get('memory_access_ns'))} / {f1(h.get('wake_round_trip_us'))}"


def lateness(r: dict[str, Any]) -> str:
    """The open-loop generator's own lateness (send − scheduled), p50 / p99."""
    late = r.get("lateness")
    return f"{us(late['p50_us'])} / {us(late['p99_us'])}" if late else "–"


def warmup_p99(r: dict[str, Any]) -> str:
    """The open-loop warm-up's ack p99 (its submits are not in the run's figures)."""
    w = r.get("warmup")
    return f"{us(w['ack']['p99_us'])} ({w['scheduled']:,})" if w and w.get("scheduled") else "–"


def floors(R: dict[str, Any]) -> str:
    """The machine's own floors under an open-loop p99, measured in this run."""
    f, w = R.get("fsync_paced"), R.get("wake")
    if not f or not w:
        return ""
    fd, late = f["fdatasync"], w["lateness"]
    slot = f.get("from_slot") or {}
    per_slot = (
        f"; counted from its slot, as an ack is: p99 {us(slot['p99_us'])}, p99.9 {us(slot['p999_us'])}, "
        f"{f['from_slot_over_1ms']:.2%} over 1 ms"
        if slot
        else ""
    )
    return (
        f"\n\nThe machine's floors in this run, at {f['rate']:,.0f}/s for as long as a run above "
        f"(errand not involved): `fdatasync` after an append of {f['bytes']:,} B, where the durable "
        f"store keeps its data, p50 {us(fd['p50_us'])}, p99 {us(fd['p99_us'])}, p99.9 "
        f"{us(fd['p999_us'])}, max {us(fd['max_us'])}, {f['over_1ms']:.2%} over 1 ms{per_slot}; a "
        f"sleeping thread's wake-up lateness p99 {us(late['p99_us'])}, p99.9 {us(late['p999_us'])}, "
        f"max {us(late['max_us'])}, {w['late_over_1ms']:.2%} over 1 ms. A stall of either holds every "
        "submit that arrives during it."
    )


def rounds_note(R: dict[str, Any]) -> str:
    """Which run of several the 256-submitter rows are, with every run's tasks/s."""
    notes = []
    for store in ("durable", "memory"):
        r = R.get(f"e2e/{store}/rust")
        rounds = r.get("rounds_tasks_per_s", []) if r else []
        if len(rounds) > 1:
            each = ", ".join(f0(v) for v in rounds)
            notes.append(f"{store}: the median of {len(rounds)} runs on one server ({each} tasks/s)")
        elif r:
            notes.append(f"{store}: one run")
    return f" The 256-submitter rows: {'; '.join(notes)}." if notes else ""


def median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The run with the median tasks/s (the lower middle of an even count),
    with every run's tasks/s in `rounds_tasks_per_s`, in the order run."""
    ranked = sorted(runs, key=lambda r: r["tasks_per_s"])
    mid = dict(ranked[(len(ranked) - 1) // 2])
    mid["rounds_tasks_per_s"] = [r["tasks_per_s"] for r in runs]
    return mid


def report(R: dict[str, Any], sz: dict[str, Any]) -> str:
    g = R.get
    parts = []
    rows = []
    for store in ("durable", "memory"):
        for rate in sz["open_rates"]:
            r = g(f"open/{store}/{rate}")
            if r:
                a = r["ack"]
                rows.append(
                    [
                        f"errand ({store})",
                        f"{rate:,}/s × {sz['open_seconds']} s, 16 connections",
                        us(a["p50_us"]),
                        us(a["p99_us"]),
                        us(a["p999_us"]),
                        warmup_p99(r),
                        f1(r["server_cpu_us_per_submit"]),
                        f1(r["loadgen_cpu_us_per_submit"]),
                        lateness(r),
                    ]
                )
    parts.append(
        "### 1b. Open-loop submits (latency from each submit's scheduled time)\n\n"
        + table(
            [
                "system",
                "load",
                "p50",
                "p99",
                "p99.9",
                "warm-up p99",
                "server CPU µs/submit",
                "load generator CPU µs/submit",
                "generator lateness p50 / p99",
            ],
            rows,
        )
        + "\n\nGenerator lateness: each submit's send time minus its scheduled time, the load "
        "generator's own error, which the ack latency includes. Warm-up: each run first sends "
        "at the same rate for a while on its fresh server and connections "
        "(`--warmup-seconds`) and reports those submits apart; the other columns leave them out." + floors(R)
    )
    rows = []
    for key, label in (
        ("e2e/durable/rust", "durable, 256 submitters / 64 sessions"),
        ("e2e/memory/rust", "memory, 256 submitters / 64 sessions"),
        ("e2e16/durable/rust", "durable, 16 submitters / 16 sessions"),
        ("e2e16/memory/rust", "memory, 16 submitters / 16 sessions"),
        ("half/durable/rust", "durable, open loop at 50 % of peak"),
        ("half/memory/rust", "memory, open loop at 50 % of peak"),
    ):
        r = g(key)
        if r:
            d = r["delivery"]
            rows.append(
                [
                    label,
                    f0(r["tasks"]),
                    f0(r["tasks_per_s"]),
                    f1(r.get("server_cpu_us_per_task")),
                    f"{r.get('server_cores', 0):.2f}",
                    server_threads(r),
                    f1(r.get("worker_cpu_us_per_task")),
                    f1(r.get("loadgen_cpu_us_per_task")),
                    waits(r),
                    host(r),
                    us(d["p50_us"]),
                    us(d["p99_us"]),
                ]
            )
    parts.append(
        "### 2b. End to end, Rust worker: where the CPU goes (from /proc)\n\n"
        + table(
            [
                "errand store, load",
                "tasks",
                "tasks/s",
                "server CPU µs/task",
                "server cores",
                "server CPU µs/task by thread: tokio / store writer / other",
                "worker CPU µs/task",
                "load generator CPU µs/task",
                "run-queue wait µs/task: server / worker / load generator",
                "box: CPU stolen / memory load ns / wake round trip µs",
                "delivery p50",
                "delivery p99",
            ],
            rows,
        )
        + "\n\nServer CPU by thread (`/proc/PID/task/TID/stat`): tokio's workers run the"
        " gRPC front, the scheduler and the sessions; the SQLite store's writer applies and"
        " commits every change, so its share is what the durable store adds."
        " Run-queue wait: time the process's threads were ready to run but waited for a"
        " core (`/proc/PID/task/TID/schedstat`), per task; beside the CPU per task it shows"
        " how full the two cores were. Box: how fast the machine was at the time, for"
        " comparing runs (within a run, compare ratios): the share of all CPU time the"
        " hypervisor gave other guests, and, measured just before the run, one dependent"
        " load from memory (a random walk over 64 MiB) and one thread waking another and"
        " being woken back (two futex wakes). On a VM an idle core's wake-up and a page"
        " walk cost far more than on bare metal, and they vary with the host's load." + rounds_note(R)
    )
    rows = []
    bare = g("py/bare")
    for mode, label in (
        ("sdk-thread", "SDK `Worker`, plain function (thread pool)"),
        ("sdk-async", "SDK `Worker`, `async def` tool"),
        ("bare", "bare `grpc.aio` bidi loop"),
    ):
        r = g(f"py/{mode}")
        if r:
            rows.append(
                [
                    label,
                    f0(r["tasks"]),
                    f0(r["tasks_per_s"]),
                    ", ".join(f0(v) for v in r.get("rounds_tasks_per_s", [r["tasks_per_s"]])),
                    f1(r.get("worker_cpu_us_per_task")),
                    f1(r.get("server_cpu_us_per_task")),
                    f"{bare['tasks_per_s'] / r['tasks_per_s']:.2f}×" if bare else "–",
                ]
            )
    parts.append(
        "### 2c. Python workers, memory store, no-op tool, 64 slots\n\n"
        + table(
            [
                "worker",
                "tasks per run",
                "tasks/s (median run)",
                "tasks/s, each round",
                "worker CPU µs/task",
                "server CPU µs/task",
                "bare ÷ this",
            ],
            rows,
        )
        + "\n\nThe modes run in turn, round after round; each row is its median run. The bare loop "
        "overlaps its reads and writes as the SDK does (`bench/pyworker.py`)."
    )
    rows = []
    for key in ("restart_empty", "restart"):
        r = g(key)
        if not r:
            continue
        s, lst = r["serving"], r["listening"]
        what = (
            f"{f0(r['retained_tasks'])} retained + {f0(r['queued_tasks'])} queued tasks"
            if r["retained_tasks"]
            else "empty"
        )
        rows += [
            [
                f"{what}, {r['db_bytes'] / 2**20:,.1f} MiB",
                f"{r['runs']} after clean stops",
                us(lst["p50_us"]),
                us(s["p50_us"]),
                us(s["max_us"]),
                us(r["stop"]["p50_us"]),
            ],
            [
                f"{what}, after SIGKILL (file checked beside serving)",
                "1 after a crash",
                us(r["after_crash_listening_ms"] * 1000),
                us(r["after_crash_serving_ms"] * 1000),
                "",
                "",
            ],
        ]
    if rows:
        parts.append(
            "### 7. Restart: spawn of `errand serve` → first answered RPC\n\n"
            + table(["store", "starts", "listening p50", "serving p50", "serving max", "stop p50"], rows)
        )
    return "\n\n".join(parts)


def targets(R: dict[str, Any], sz: dict[str, Any]) -> list[Target]:
    """(target, measured, bound, holds) for each of issue 20's targets measured."""
    g = R.get
    out: list[Target] = []
    d, m = g("e2e/durable/rust"), g("e2e/memory/rust")
    if d and m:
        ratio = d["tasks_per_s"] / m["tasks_per_s"]
        out.append(
            (
                "durable end to end ≥ 0.9× the memory store's tasks/s",
                f"{ratio:.2f}× ({f0(d['tasks_per_s'])} vs {f0(m['tasks_per_s'])})",
                "",
                ratio >= 0.9,
            )
        )
    if d:
        out.append(("durable end to end ≥ 20,000 tasks/s", f0(d["tasks_per_s"]), "", d["tasks_per_s"] >= 20_000))
        v = d.get("server_cpu_us_per_task")
        if v is not None:
            out.append(("server CPU ≤ 60 µs per durable task, 256 submitters", f"{v:.1f} µs", "", v <= 60))
            cores = d.get("server_cores", 0)
            out.append(("the server uses both cores when the load needs them", f"{cores:.2f} cores", "", cores > 1.0))
    d16 = g("e2e16/durable/rust")
    if d16 and d16.get("server_cpu_us_per_task") is not None:
        v = d16["server_cpu_us_per_task"]
        out.append(("server CPU ≤ 100 µs per durable task, 16 submitters", f"{v:.1f} µs", "", v <= 100))
    for rate, p50, p99 in ((5000, 600, 2000), (1000, None, 1500)):
        r = g(f"open/durable/{rate}")
        if not r:
            continue
        a = r["ack"]
        out.append((f"ack p99 ≤ {us(p99)} at open-loop {rate:,}/s, durable", us(a["p99_us"]), "", a["p99_us"] <= p99))
        if p50:
            out.append(
                (f"ack p50 ≤ {us(p50)} at open-loop {rate:,}/s, durable", us(a["p50_us"]), "", a["p50_us"] <= p50)
            )
    h = g("half/durable/rust")
    if h:
        p99 = h["delivery"]["p99_us"]
        out.append(("delivery p99 ≤ 2 ms at 50 % of peak, durable", us(p99), "", p99 <= 2000))
    bare = g("py/bare")
    for mode in ("sdk-async", "sdk-thread"):
        r = g(f"py/{mode}")
        if bare and r:
            ratio = bare["tasks_per_s"] / r["tasks_per_s"]
            out.append(
                (
                    f"Python SDK `Worker` ({mode}) within 1.5× of a bare grpc.aio loop",
                    f"{ratio:.2f}× ({f0(r['tasks_per_s'])} vs {f0(bare['tasks_per_s'])} tasks/s)",
                    "",
                    ratio <= 1.5,
                )
            )
    a = max(sz["submit_agents"], key=lambda k: sz["submit_counts"][k])
    for store in ("durable", "memory"):
        r = g(f"submit/{store}/{a}")
        if r and r.get("bytes_per_task") is not None:
            b = r["bytes_per_task"]
            out.append((f"≤ 1 KiB server memory per queued task ({store})", f"{f0(b)} B", "", b <= 1024))
    s = g("sessions")
    if s and s.get("bytes_per_stream") is not None:
        b = s["bytes_per_stream"]
        out.append(("≤ 16 KiB server memory per idle stream", f"{f0(b)} B", "", b <= 16384))
    r = g("restart")
    if r:
        worst = r["serving"]["max_us"]
        out.append(
            (
                f"restart < 100 ms to serving with {f0(r['retained_tasks'])} retained tasks (clean stop)",
                f"{us(worst)} (max of {r['runs']})",
                "",
                worst < 100_000,
            )
        )
        crash = r["after_crash_serving_ms"]
        out.append(
            (
                f"restart < 100 ms to serving with {f0(r['retained_tasks'])} retained tasks (after SIGKILL)",
                us(crash * 1000),
                "",
                crash < 100,
            )
        )
    return out
