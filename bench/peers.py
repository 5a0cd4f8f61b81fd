"""The peers of errand's benchmark, each running the same workloads as errand.

    python peers.py seed   --sizes JSON           # the seed's ThreadPoolExecutor + callbacks
    python peers.py celery --sizes JSON --redis URL
    python peers.py ray    --sizes JSON

Prints one JSON object per workload on stdout; progress goes to stderr.
Latency samples (µs, one per line) go to --out. Every loop is bounded in
count and in time.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
import uuid
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, Optional

HERE = Path(__file__).resolve().parent


def log(msg: str) -> None:
    print(f"    [{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def sleeps(count: int, max_ms: int, seed: int) -> list[int]:
    """The same reproducible sleeps as errand-bench's (xorshift64*)."""
    mask = (1 << 64) - 1
    x = max(seed, 1)
    out = []
    for _ in range(count):
        x ^= x >> 12
        x ^= (x << 25) & mask
        x ^= x >> 27
        out.append((((x * 0x2545F4914F6CDD1D) & mask) >> 33) % (max_ms + 1))
    return out


def summarize(ns: list[int], path: Optional[Path] = None) -> dict[str, Any]:
    """Nearest-rank percentiles in µs, as errand-bench computes them."""
    ns = sorted(ns)
    if path is not None:
        path.write_text("".join(f"{v / 1e3:.1f}\n" for v in ns))

    def pct(q: float) -> float:
        if not ns:
            return 0.0
        rank = min(max(int(-(-q * len(ns) // 1)), 1), len(ns))
        return round(ns[rank - 1] / 1e3, 1)

    mean = sum(ns) / len(ns) / 1e3 if ns else 0.0
    return {
        "n": len(ns),
        "p50_us": pct(0.5),
        "p99_us": pct(0.99),
        "p999_us": pct(0.999),
        "max_us": round(ns[-1] / 1e3, 1) if ns else 0.0,
        "mean_us": round(mean, 1),
    }


def cpu_seconds(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2 :].split()
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def children(pid: int) -> list[int]:
    """A process and all its descendants (Celery's pool, Ray's workers)."""
    out = [pid]
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            kids = (task / "children").read_text().split()
            for k in kids:
                out.extend(children(int(k)))
    except OSError:
        pass
    return out


def emit(result: dict[str, Any]) -> None:
    print(json.dumps(result), flush=True)


def run_agents(agents: int, count: int, submit: Callable[[int], None], max_secs: float) -> tuple[list[int], float, int]:
    """`agents` threads calling `submit(k)` `count` times in all; latencies in ns."""
    latencies: list[list[int]] = [[] for _ in range(agents)]
    errors = [0]
    deadline = time.monotonic() + max_secs

    def agent(i: int) -> None:
        n = count // agents + (1 if i < count % agents else 0)
        for k in range(n):
            if time.monotonic() > deadline:
                return
            t = time.perf_counter_ns()
            try:
                submit(k)
            except Exception:
                errors[0] += 1
                continue
            latencies[i].append(time.perf_counter_ns() - t)

    threads = [threading.Thread(target=agent, args=(i,)) for i in range(agents)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join(max_secs + 10)
    secs = time.perf_counter() - start
    return [v for lat in latencies for v in lat], secs, errors[0]


# --------------------------------------------------------------------------
# The seed's design: AsyncToolManager = ThreadPoolExecutor + task tracking +
# completion callbacks, in process. No network: the floor for per-task overhead.
# --------------------------------------------------------------------------
class AsyncTaskResult:
    def __init__(self, task_id: str, tool_name: str, args: dict, result: Any, error: Optional[str], elapsed: float):
        self.task_id, self.tool_name, self.args = task_id, tool_name, args
        self.result, self.error, self.elapsed = result, error, elapsed


class AsyncToolManager:
    """As in the seed: submit returns a task ID at once; on_complete fires when done."""

    def __init__(self, max_workers: int, on_complete: Callable[[AsyncTaskResult], None]):
        self.executor = ThreadPoolExecutor(max_workers=max_workers)
        self.tasks: dict[str, Future] = {}
        self.lock = threading.Lock()
        self.on_complete = on_complete

    def submit(self, fn: Callable[..., Any], **kwargs: Any) -> str:
        task_id = str(uuid.uuid4())
        started = time.time()
        future = self.executor.submit(fn, **kwargs)
        with self.lock:
            self.tasks[task_id] = future

        def done(f: Future) -> None:
            with self.lock:
                self.tasks.pop(task_id, None)
            # A future cancelled at shutdown has no exception to ask for
            # (`exception()` raises CancelledError in the callback).
            exc = None if f.cancelled() else f.exception()
            self.on_complete(
                AsyncTaskResult(
                    task_id,
                    fn.__name__,
                    kwargs,
                    None if exc or f.cancelled() else f.result(),
                    "cancelled" if f.cancelled() else str(exc) if exc else None,
                    time.time() - started,
                )
            )

        future.add_done_callback(done)
        return task_id

    def shutdown(self) -> None:
        self.executor.shutdown(wait=True, cancel_futures=True)


def noop() -> int:
    return time.time_ns()


def sleep_tool(ms: int, id: int) -> dict[str, int]:
    time.sleep(ms / 1000)
    return {"id": id, "t": time.time_ns()}


def seed_main(sizes: dict[str, Any], out: Path) -> None:
    # 1. submit: N agent threads; the ack is the manager's immediate return.
    for agents in sizes["submit_agents"]:
        m = AsyncToolManager(4, lambda r: None)
        lat, secs, errors = run_agents(agents, sizes["submit_count"], lambda k, m=m: m.submit(noop), 120)
        m.shutdown()
        emit(
            {
                "system": "seed",
                "workload": "submit",
                "store": "memory",
                "agents": agents,
                "accepted": len(lat),
                "errors": errors,
                "acks_per_s": len(lat) / secs,
                "ack": summarize(lat, out / f"seed_submit_{agents}.txt"),
            }
        )
        log(f"seed submit agents={agents}: {len(lat) / secs:,.0f} acks/s")

    # 2 + 3 heavy. end to end, no-op tools; 4 workers as in the seed.
    n = sizes["e2e_count"]
    delivery: list[int] = []
    done = threading.Event()
    got = [0]

    def on_complete(r: AsyncTaskResult) -> None:
        delivery.append(time.time_ns() - r.result)
        got[0] += 1
        if got[0] == n:
            done.set()

    m = AsyncToolManager(4, on_complete)
    cpu0 = cpu_seconds([os.getpid()])
    start = time.perf_counter()
    for _ in range(n):
        m.submit(noop)
    done.wait(300)
    secs = time.perf_counter() - start
    cpu = cpu_seconds([os.getpid()]) - cpu0
    m.shutdown()
    emit(
        {
            "system": "seed",
            "workload": "e2e",
            "tool": "noop",
            "store": "memory",
            "tasks": got[0],
            "complete": got[0] == n,
            "tasks_per_s": got[0] / secs,
            "wall_us_per_task": secs * 1e6 / max(got[0], 1),
            "cpu_us_per_task": cpu * 1e6 / max(got[0], 1),
            "delivery": summarize(delivery, out / "seed_e2e_delivery.txt"),
        }
    )
    log(f"seed e2e: {got[0] / secs:,.0f} tasks/s")

    # 3 light: one at a time.
    lat = []
    box: list[AsyncTaskResult] = []
    ev = threading.Event()

    def one(r: AsyncTaskResult) -> None:
        box.append(r)
        ev.set()

    m = AsyncToolManager(4, lambda r: (lat.append(time.time_ns() - r.result), ev.set()))
    for _ in range(sizes["delivery_count"]):
        ev.clear()
        m.submit(noop)
        ev.wait(10)
    m.shutdown()
    emit({"system": "seed", "workload": "delivery", "delivery": summarize(lat, out / "seed_delivery_light.txt")})

    # 4. fan-out: 256 threads.
    fan = sleeps(sizes["fanout_count"], sizes["fanout_max_ms"], 42)
    results: dict[str, Any] = {}
    ids: dict[int, str] = {}
    fdone = threading.Event()
    lock = threading.Lock()
    last = [0.0]

    def fan_done(r: AsyncTaskResult) -> None:
        with lock:
            results[r.task_id] = r.result
            last[0] = time.perf_counter()
            if len(results) == len(fan):
                fdone.set()

    m = AsyncToolManager(256, fan_done)
    start = time.perf_counter()
    for i, ms in enumerate(fan):
        ids[i] = m.submit(sleep_tool, ms=ms, id=i)
    fdone.wait(120)
    m.shutdown()
    matched = sum(1 for i, tid in ids.items() if (results.get(tid) or {}).get("id") == i)
    makespan = last[0] - start
    ideal = sum(fan) / 1000 / 256
    emit(
        {
            "system": "seed",
            "workload": "fanout",
            "tasks": len(fan),
            "matched": matched,
            "complete": matched == len(fan),
            "makespan_s": makespan,
            "ideal_s": ideal,
            "ratio": makespan / ideal,
        }
    )
    log(f"seed fanout: {makespan:.2f} s (ideal {ideal:.2f} s)")

    # 5. the seed's claim: callbacks act on each result; gather waits for all.
    claim = sizes["seed_claim_ms"]
    actions: list[float] = []
    cdone = threading.Event()
    start = time.perf_counter()

    def act(r: AsyncTaskResult) -> None:
        actions.append(time.perf_counter() - start)
        if len(actions) == len(claim):
            cdone.set()

    m = AsyncToolManager(4, act)
    t = time.perf_counter()
    for i, ms in enumerate(claim):
        m.submit(sleep_tool, ms=ms, id=i)
    blocked = time.perf_counter() - t
    cdone.wait(max(claim) / 1000 + 30)
    m.shutdown()
    emit(
        {
            "system": "seed",
            "workload": "seed_claim",
            "errand": None,
            "callbacks": {"first_action_s": min(actions), "actions_s": sorted(actions), "idle_s": blocked},
        }
    )


# --------------------------------------------------------------------------
# Celery with a Redis broker and result backend.
# --------------------------------------------------------------------------
def celery_worker(redis_url: str, pool: str, concurrency: int) -> subprocess.Popen:
    env = dict(os.environ, BENCH_REDIS=redis_url, PYTHONPATH=str(HERE))
    cmd = [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "celery_app",
        "worker",
        "-P",
        pool,
        "-c",
        str(concurrency),
        "--without-gossip",
        "--without-mingle",
        "--without-heartbeat",
        "-l",
        "WARNING",
    ]
    proc = subprocess.Popen(cmd, env=env, cwd=HERE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return proc


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


def celery_main(sizes: dict[str, Any], out: Path, redis_url: str) -> None:
    os.environ["BENCH_REDIS"] = redis_url
    sys.path.insert(0, str(HERE))
    import redis

    import celery_app

    r = redis.Redis.from_url(redis_url)
    app = celery_app.app

    def wait_worker(timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if app.control.ping(timeout=0.5):
                return
        raise RuntimeError("the Celery worker did not answer a ping in 60 s")

    # 1. submit: apply_async into Redis with no worker consuming.
    for agents in sizes["submit_agents"]:
        r.flushall()
        lat, secs, errors = run_agents(agents, sizes["submit_count"], lambda k: celery_app.noop.apply_async(), 120)
        emit(
            {
                "system": "celery",
                "workload": "submit",
                "store": "redis",
                "agents": agents,
                "accepted": len(lat),
                "errors": errors,
                "acks_per_s": len(lat) / secs,
                "ack": summarize(lat, out / f"celery_submit_{agents}.txt"),
            }
        )
        log(f"celery submit agents={agents}: {len(lat) / secs:,.0f} acks/s")
    r.flushall()

    # 2 + 3: default prefork pool (one process per core), results via the Redis backend.
    worker = celery_worker(redis_url, "prefork", os.cpu_count() or 2)
    try:
        wait_worker()
        # 3 light: one at a time.
        lat = []
        for _ in range(sizes["delivery_count"]):
            sent = celery_app.noop.apply_async().get(timeout=10)
            lat.append(time.time_ns() - sent)
        emit(
            {"system": "celery", "workload": "delivery", "delivery": summarize(lat, out / "celery_delivery_light.txt")}
        )
        n = sizes["peer_e2e_count"]
        window = threading.Semaphore(512)
        pending: list[Any] = []
        cond = threading.Condition()
        delivery: list[int] = []
        pids = [*children(worker.pid), os.getpid()]
        cpu0 = cpu_seconds(pids)
        start = time.perf_counter()
        deadline = time.monotonic() + 300

        def producer() -> None:
            for _ in range(n):
                if not window.acquire(timeout=max(deadline - time.monotonic(), 0)):
                    return
                res = celery_app.noop.apply_async()
                with cond:
                    pending.append(res)
                    cond.notify()

        threading.Thread(target=producer, daemon=True).start()
        got = 0
        while got < n and time.monotonic() < deadline:
            with cond:
                while not pending and time.monotonic() < deadline:
                    cond.wait(0.2)
                if not pending:
                    break
                res = pending.pop(0)
            sent = res.get(timeout=60)
            delivery.append(time.time_ns() - sent)
            window.release()
            got += 1
        secs = time.perf_counter() - start
        cpu = cpu_seconds(pids) - cpu0
        emit(
            {
                "system": "celery",
                "workload": "e2e",
                "tool": "noop",
                "store": "redis",
                "tasks": got,
                "complete": got == n,
                "tasks_per_s": got / secs,
                "wall_us_per_task": secs * 1e6 / max(got, 1),
                "cpu_us_per_task": cpu * 1e6 / max(got, 1),
                "cpu_note": "worker pool + agent; redis not counted",
                "delivery": summarize(delivery, out / "celery_e2e_delivery.txt"),
            }
        )
        log(f"celery e2e: {got / secs:,.0f} tasks/s")
    finally:
        stop(worker)

    # 4. fan-out: a thread pool of 256 sleeping tasks.
    r.flushall()
    worker = celery_worker(redis_url, "threads", 256)
    try:
        wait_worker()
        fan = sleeps(sizes["fanout_count"], sizes["fanout_max_ms"], 42)
        start = time.perf_counter()
        results = [celery_app.sleep.apply_async(kwargs={"ms": ms, "id": i}) for i, ms in enumerate(fan)]
        matched = 0
        for i, res in enumerate(results):
            if res.get(timeout=120)["id"] == i:
                matched += 1
        makespan = time.perf_counter() - start
        ideal = sum(fan) / 1000 / 256
        emit(
            {
                "system": "celery",
                "workload": "fanout",
                "tasks": len(fan),
                "matched": matched,
                "complete": matched == len(fan),
                "makespan_s": makespan,
                "ideal_s": ideal,
                "ratio": makespan / ideal,
            }
        )
        log(f"celery fanout: {makespan:.2f} s (ideal {ideal:.2f} s)")
    finally:
        stop(worker)


# --------------------------------------------------------------------------
# Ray tasks with ray.wait for out-of-order results.
# --------------------------------------------------------------------------
def ray_main(sizes: dict[str, Any], out: Path) -> None:
    import ray

    ray.init(include_dashboard=False, logging_level="ERROR", log_to_driver=False)

    @ray.remote
    def noop_task() -> int:
        return time.time_ns()

    @ray.remote(max_concurrency=256)
    class Sleeper:
        def sleep(self, ms: int, id: int) -> dict[str, int]:
            time.sleep(ms / 1000)
            return {"id": id, "t": time.time_ns()}

    ray.get([noop_task.remote() for _ in range(100)])  # start the worker processes

    # 1. submit: .remote() returns an ObjectRef at once (not durable).
    for agents in sizes["submit_agents"]:
        refs: list[Any] = []
        lat, secs, errors = run_agents(
            agents, sizes["submit_count"], lambda k, refs=refs: refs.append(noop_task.remote()), 120
        )
        emit(
            {
                "system": "ray",
                "workload": "submit",
                "store": "memory",
                "agents": agents,
                "accepted": len(lat),
                "errors": errors,
                "acks_per_s": len(lat) / secs,
                "ack": summarize(lat, out / f"ray_submit_{agents}.txt"),
            }
        )
        log(f"ray submit agents={agents}: {len(lat) / secs:,.0f} acks/s")
        ray.get(refs, timeout=300)

    # 3 light.
    lat = []
    for _ in range(sizes["delivery_count"]):
        sent = ray.get(noop_task.remote(), timeout=10)
        lat.append(time.time_ns() - sent)
    emit({"system": "ray", "workload": "delivery", "delivery": summarize(lat, out / "ray_delivery_light.txt")})

    # 2. end to end with a window of 512, results taken with ray.wait as they land.
    n = sizes["peer_e2e_count"]
    pids = [os.getpid()] + [p for p in _ray_pids()]
    cpu0 = cpu_seconds(pids)
    delivery: list[int] = []
    start = time.perf_counter()
    deadline = time.monotonic() + 300
    pending: list[Any] = []
    submitted = got = 0
    while got < n and time.monotonic() < deadline:
        while submitted < n and len(pending) < 512:
            pending.append(noop_task.remote())
            submitted += 1
        ready, pending = ray.wait(pending, num_returns=min(len(pending), 32), timeout=1.0)
        now = time.time_ns()
        for sent in ray.get(ready):
            delivery.append(now - sent)
        got += len(ready)
    secs = time.perf_counter() - start
    cpu = cpu_seconds(pids) - cpu0
    emit(
        {
            "system": "ray",
            "workload": "e2e",
            "tool": "noop",
            "store": "memory",
            "tasks": got,
            "complete": got == n,
            "tasks_per_s": got / secs,
            "wall_us_per_task": secs * 1e6 / max(got, 1),
            "cpu_us_per_task": cpu * 1e6 / max(got, 1),
            "cpu_note": "driver + every Ray process",
            "delivery": summarize(delivery, out / "ray_e2e_delivery.txt"),
        }
    )
    log(f"ray e2e: {got / secs:,.0f} tasks/s")

    # 4. fan-out on a threaded actor with 256 slots, ray.wait for each landing result.
    fan = sleeps(sizes["fanout_count"], sizes["fanout_max_ms"], 42)
    actor = Sleeper.remote()
    ray.get(actor.sleep.remote(0, 0))
    start = time.perf_counter()
    refs = [actor.sleep.remote(ms, i) for i, ms in enumerate(fan)]
    index = {ref: i for i, ref in enumerate(refs)}
    pending = list(refs)
    matched = 0
    deadline = time.monotonic() + 120
    while pending and time.monotonic() < deadline:
        ready, pending = ray.wait(pending, num_returns=min(len(pending), 16), timeout=0.05)
        for ref, value in zip(ready, ray.get(ready)):
            if value["id"] == index[ref]:
                matched += 1
    makespan = time.perf_counter() - start
    ideal = sum(fan) / 1000 / 256
    emit(
        {
            "system": "ray",
            "workload": "fanout",
            "tasks": len(fan),
            "matched": matched,
            "complete": matched == len(fan),
            "makespan_s": makespan,
            "ideal_s": ideal,
            "ratio": makespan / ideal,
        }
    )
    log(f"ray fanout: {makespan:.2f} s (ideal {ideal:.2f} s)")
    ray.shutdown()


def _ray_pids() -> list[int]:
    """Every process whose command line names Ray (its raylet, GCS and workers)."""
    pids = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit() and int(d.name) != os.getpid():
            try:
                cmd = (d / "cmdline").read_bytes()
            except OSError:
                continue
            if b"ray" in cmd and (b"raylet" in cmd or b"gcs_server" in cmd or b"default_worker" in cmd):
                pids.append(int(d.name))
    return pids


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("system", choices=["seed", "celery", "ray"])
    parser.add_argument("--sizes", required=True, help="JSON object of workload sizes")
    parser.add_argument("--out", type=Path, default=HERE / "out")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379")
    args = parser.parse_args()
    sizes = json.loads(args.sizes)
    args.out.mkdir(parents=True, exist_ok=True)
    if args.system == "seed":
        seed_main(sizes, args.out)
    elif args.system == "celery":
        celery_main(sizes, args.out, args.redis)
    else:
        ray_main(sizes, args.out)


if __name__ == "__main__":
    main()
