"""CallPool, the threads of a worker's plain tool calls: how many run, and when."""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import Any, Callable

import pytest

from errand._pool import Call, CallPool

from .conftest import EVENT_TIMEOUT


def on_loop(loop: asyncio.AbstractEventLoop, fut: asyncio.Future[Any]) -> Callable[[], None]:
    """A function a pool thread calls to resolve `fut` on `loop`."""

    def resolve() -> None:
        if not fut.done():
            fut.set_result(None)

    return lambda: loop.call_soon_threadsafe(resolve)


def test_one_awake_thread_takes_a_burst_of_short_calls_in_order() -> None:
    async def scenario() -> tuple[list[int], set[int], int]:
        loop = asyncio.get_running_loop()
        # The stuck check never fires here: only the thread already awake runs calls.
        pool = CallPool(loop, 8, "burst", stuck_after=EVENT_TIMEOUT)
        order: list[int] = []
        idents: set[int] = set()
        all_done = loop.create_future()
        finish = on_loop(loop, all_done)

        def call(i: int) -> None:
            order.append(i)
            idents.add(threading.get_ident())
            if i == 49:
                finish()

        try:
            for i in range(50):
                pool.submit(call, i)
            await asyncio.wait_for(all_done, EVENT_TIMEOUT)
            return order, idents, pool.threads
        finally:
            pool.shutdown()

    order, idents, threads = asyncio.run(scenario())
    assert order == list(range(50))
    assert len(idents) == 1 and threads == 1


def test_a_blocking_call_does_not_hold_up_the_others() -> None:
    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        pool = CallPool(loop, 4, "blocking")
        release = threading.Event()
        blocker_done = loop.create_future()
        others_done = loop.create_future()
        done_blocker = on_loop(loop, blocker_done)
        done_others = on_loop(loop, others_done)
        count = 0
        lock = threading.Lock()

        def blocker() -> None:
            release.wait(EVENT_TIMEOUT)
            done_blocker()

        def quick() -> None:
            nonlocal count
            with lock:
                count += 1
                if count == 5:
                    done_others()

        try:
            pool.submit(blocker)
            for _ in range(5):
                pool.submit(quick)
            await asyncio.wait_for(others_done, EVENT_TIMEOUT)
            assert not blocker_done.done()
            release.set()
            await asyncio.wait_for(blocker_done, EVENT_TIMEOUT)
        finally:
            release.set()
            pool.shutdown()

    asyncio.run(scenario())


def test_at_most_max_threads_calls_run_at_once() -> None:
    async def scenario() -> tuple[int, int]:
        loop = asyncio.get_running_loop()
        pool = CallPool(loop, 3, "bounded", stuck_after=0.001)
        release = threading.Event()
        lock = threading.Lock()
        running = peak = ended = 0
        three_running = loop.create_future()
        all_done = loop.create_future()
        on_three = on_loop(loop, three_running)
        on_all = on_loop(loop, all_done)

        def slow() -> None:
            nonlocal running, peak, ended
            with lock:
                running += 1
                peak = max(peak, running)
                if running == 3:
                    on_three()
            release.wait(EVENT_TIMEOUT)
            with lock:
                running -= 1
                ended += 1
                if ended == 8:
                    on_all()

        try:
            for _ in range(8):
                pool.submit(slow)
            await asyncio.wait_for(three_running, EVENT_TIMEOUT)
            threads = pool.threads
            release.set()
            await asyncio.wait_for(all_done, EVENT_TIMEOUT)
            return peak, threads
        finally:
            release.set()
            pool.shutdown()

    peak, threads = asyncio.run(scenario())
    assert (peak, threads) == (3, 3)


def test_shutdown_drops_queued_calls_and_ends_the_threads() -> None:
    ran: list[str] = []

    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        pool = CallPool(loop, 1, "closing")
        release = threading.Event()
        started = loop.create_future()
        on_started = on_loop(loop, started)

        def blocker() -> None:
            ran.append("blocker")
            on_started()
            release.wait(EVENT_TIMEOUT)

        pool.submit(blocker)
        pool.submit(ran.append, "queued")
        await asyncio.wait_for(started, EVENT_TIMEOUT)
        pool.shutdown()
        with pytest.raises(RuntimeError, match="shut down"):
            pool.submit(ran.append, "late")
        release.set()
        (thread,) = [t for t in threading.enumerate() if t.name == "closing_0"]
        await asyncio.to_thread(thread.join, EVENT_TIMEOUT)
        assert not thread.is_alive() and pool.threads == 0

    asyncio.run(scenario())
    assert ran == ["blocker"]


def test_a_call_that_raises_is_logged_and_the_thread_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        pool = CallPool(loop, 1, "raising", stuck_after=EVENT_TIMEOUT)
        after = loop.create_future()

        def explode() -> None:
            raise ValueError("boom")

        try:
            pool.submit(explode)
            pool.submit(on_loop(loop, after))
            await asyncio.wait_for(after, EVENT_TIMEOUT)
        finally:
            pool.shutdown()

    with caplog.at_level(logging.ERROR, logger="errand.worker"):
        asyncio.run(scenario())
    errors = [r.exc_info[1] for r in caplog.records if r.exc_info]
    assert [str(e) for e in errors if isinstance(e, ValueError)] == ["boom"]


def test_calls_after_a_blocking_one_do_not_each_wait_for_the_stuck_check() -> None:
    """Once the check has seen a thread stuck in one call, that thread no longer
    counts as the awake one that will take the next call: a call queued later
    wakes a thread at once, not after another `stuck_after`."""
    stuck_after = 0.5  # long, so that waiting for it even twice is unmistakable

    async def scenario() -> float:
        loop = asyncio.get_running_loop()
        pool = CallPool(loop, 4, "stalled", stuck_after=stuck_after)
        release = threading.Event()
        started = loop.create_future()
        on_started = on_loop(loop, started)

        def blocker() -> None:
            on_started()
            release.wait(EVENT_TIMEOUT)

        try:
            pool.submit(blocker)
            await asyncio.wait_for(started, EVENT_TIMEOUT)
            t0 = loop.time()
            # One at a time, as an agent that waits for each result.
            for _ in range(10):
                one_done = loop.create_future()
                pool.submit(on_loop(loop, one_done))
                await asyncio.wait_for(one_done, EVENT_TIMEOUT)
            return loop.time() - t0
        finally:
            release.set()
            pool.shutdown()

    elapsed = asyncio.run(scenario())
    # The first pays the stuck check once; the other nine none of it.
    assert elapsed < 3 * stuck_after, elapsed


def test_more_blocking_calls_than_threads_all_run_at_most_max_at_once() -> None:
    async def scenario() -> tuple[list[int], int, int]:
        loop = asyncio.get_running_loop()
        pool = CallPool(loop, 3, "overfull", stuck_after=0.001)
        lock = threading.Lock()
        gates = [threading.Event() for _ in range(10)]
        started: list[int] = []
        running = peak = 0
        started_futs = [loop.create_future() for _ in range(10)]
        ended = loop.create_future()
        on_started = [on_loop(loop, f) for f in started_futs]
        on_ended = on_loop(loop, ended)

        def blocking(i: int) -> None:
            nonlocal running, peak
            with lock:
                started.append(i)
                running += 1
                peak = max(peak, running)
            on_started[i]()
            gates[i].wait(EVENT_TIMEOUT)
            with lock:
                running -= 1
                if len(started) == 10 and running == 0:
                    on_ended()

        try:
            for i in range(10):
                pool.submit(blocking, i)
            for i in range(10):
                # Three run; each released one lets exactly one more start.
                await asyncio.wait_for(asyncio.shield(started_futs[i]), EVENT_TIMEOUT)
                if i >= 2:
                    with lock:
                        assert running <= 3
                    gates[i - 2].set()
            for gate in gates:
                gate.set()
            await asyncio.wait_for(ended, EVENT_TIMEOUT)
            return sorted(started), peak, pool.threads
        finally:
            for gate in gates:
                gate.set()
            pool.shutdown()

    started, peak, threads = asyncio.run(scenario())
    assert started == list(range(10))
    assert peak == 3 and threads == 3


def test_short_calls_beside_long_blocking_ones_are_not_held_up() -> None:
    stuck_after = 0.1

    async def scenario() -> float:
        loop = asyncio.get_running_loop()
        pool = CallPool(loop, 6, "mixed", stuck_after=stuck_after)
        release = threading.Event()
        lock = threading.Lock()
        blocked = 0
        all_blocked = loop.create_future()
        on_blocked = on_loop(loop, all_blocked)

        def long_call() -> None:
            nonlocal blocked
            with lock:
                blocked += 1
                if blocked == 3:
                    on_blocked()
            release.wait(EVENT_TIMEOUT)

        try:
            for _ in range(3):
                pool.submit(long_call)
            await asyncio.wait_for(all_blocked, EVENT_TIMEOUT)
            t0 = loop.time()
            # Bursts and single calls, awaited in turn.
            for burst in (1, 20, 1, 1, 50, 1, 1, 1):
                count = 0
                burst_done = loop.create_future()
                on_burst = on_loop(loop, burst_done)

                def short(n: int = burst, on_burst: Callable[[], None] = on_burst) -> None:
                    nonlocal count
                    with lock:
                        count += 1
                        if count == n:
                            on_burst()

                for _ in range(burst):
                    pool.submit(short)
                await asyncio.wait_for(burst_done, EVENT_TIMEOUT)
            return loop.time() - t0
        finally:
            release.set()
            pool.shutdown()

    elapsed = asyncio.run(scenario())
    # Eight rounds: each waiting for the stuck check would take 8 * 100 ms.
    assert elapsed < 4 * stuck_after, elapsed


def test_base_exceptions_in_calls_leave_the_thread_and_counts_right(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def scenario() -> tuple[int, int, int]:
        loop = asyncio.get_running_loop()
        pool = CallPool(loop, 1, "base-exc", stuck_after=EVENT_TIMEOUT)
        after = loop.create_future()

        def raise_(exc: BaseException) -> None:
            raise exc

        try:
            for exc in (KeyboardInterrupt(), SystemExit(3), GeneratorExit()):
                pool.submit(raise_, exc)
            pool.submit(on_loop(loop, after))
            await asyncio.wait_for(after, EVENT_TIMEOUT)
            return pool.threads, len(threading.enumerate()), 0
        finally:
            pool.shutdown()

    with caplog.at_level(logging.ERROR, logger="errand.worker"):
        threads, _, _ = asyncio.run(scenario())
    assert threads == 1
    kinds = [type(r.exc_info[1]) for r in caplog.records if r.exc_info]
    assert kinds == [KeyboardInterrupt, SystemExit, GeneratorExit]


@pytest.mark.parametrize("abandon", [False, True])
def test_stress_random_short_and_blocking_calls_keep_the_invariants(abandon: bool) -> None:
    """Without abandoned calls at most `most` run at once; with some, at most
    twice as many threads. Every count returns to zero."""
    import random

    rng = random.Random(20261130)
    n, most = 3000, 5

    pool: CallPool

    async def scenario() -> tuple[int, int, int, list[threading.Thread]]:
        nonlocal pool
        loop = asyncio.get_running_loop()
        pool = CallPool(loop, most, "stress", stuck_after=0.002)
        lock = threading.Lock()
        running = peak = ended = 0
        all_done = loop.create_future()
        on_all = on_loop(loop, all_done)
        gates: list[threading.Event] = []
        handles: list[Call] = []
        abandoned_most = 0

        def call(gate: threading.Event | None, spin: int) -> None:
            nonlocal running, peak, ended
            with lock:
                running += 1
                peak = max(peak, running)
            if gate is not None:
                gate.wait(EVENT_TIMEOUT)
            for _ in range(spin):
                pass
            with lock:
                running -= 1
                ended += 1
                if ended == n:
                    on_all()

        try:
            first = threading.Event()
            if abandon:
                # One surely running when abandoned; released halfway.
                first_started = loop.create_future()
                pool.submit(lambda: (on_loop(loop, first_started)(), first.wait(EVENT_TIMEOUT)))
                await asyncio.wait_for(first_started, EVENT_TIMEOUT)
                handle = pool._all[0].call
                assert handle is not None
                handle.abandon()
                abandoned_most = pool._abandoned
            for k in range(n):
                if k == n // 2:
                    first.set()
                gate = None
                if rng.random() < 0.02:
                    gate = threading.Event()
                    gates.append(gate)
                handle = pool.submit(call, gate, rng.randrange(2000))
                if gate is not None:
                    handles.append(handle)
                if rng.random() < 0.1:
                    await asyncio.sleep(0)  # let the loop turn: flushes, checks
                if gates and rng.random() < 0.05:
                    # A blocked call is abandoned (cancelled) before it returns.
                    i = rng.randrange(len(gates))
                    if abandon:
                        handles[i].abandon()
                        abandoned_most = max(abandoned_most, pool._abandoned)
                    handles.pop(i)
                    gates.pop(i).set()
            for gate in gates:
                gate.set()
            await asyncio.wait_for(all_done, EVENT_TIMEOUT)
            threads = [t for t in threading.enumerate() if t.name.startswith("stress_")]
            assert (abandoned_most > 0) == abandon  # some running calls were abandoned
            return peak, pool.threads, ended, threads
        finally:
            first.set()
            for gate in gates:
                gate.set()
            pool.shutdown()

    peak, threads_seen, ended, threads = asyncio.run(scenario())
    bound = 2 * most if abandon else most
    assert ended == n and 1 <= peak <= bound and threads_seen <= bound
    for thread in threads:
        thread.join(EVENT_TIMEOUT)
        assert not thread.is_alive()
    # Every count is back to zero once the threads ended.
    counts = (pool.threads, pool._awake, pool._in_call, pool._stalled, pool._abandoned)
    assert counts == (0, 0, 0, 0, 0) and not pool._all


def test_a_thread_that_cannot_start_leaves_the_counts_right(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    real_start = threading.Thread.start

    def refuse(self: threading.Thread) -> None:
        if self.name.startswith("nostart_"):
            raise RuntimeError("can't start new thread")
        real_start(self)

    async def scenario() -> int:
        loop = asyncio.get_running_loop()
        pool = CallPool(loop, 2, "nostart")
        ran = loop.create_future()
        try:
            monkeypatch.setattr(threading.Thread, "start", refuse)
            pool.submit(on_loop(loop, ran))
            refused = loop.create_future()
            loop.call_soon(refused.set_result, None)  # after the pool's flush
            await refused
            assert (pool.threads, pool._awake, len(pool._all)) == (0, 0, 0)
            monkeypatch.setattr(threading.Thread, "start", real_start)
            pool.submit(lambda: None)  # wakes a thread, which takes both calls
            await asyncio.wait_for(ran, EVENT_TIMEOUT)
            return pool.threads
        finally:
            pool.shutdown()

    with caplog.at_level(logging.ERROR, logger="errand.worker"):
        assert asyncio.run(scenario()) == 1
    assert any("cannot start a pool thread" in r.getMessage() for r in caplog.records)


def test_calls_that_wait_briefly_do_not_all_queue_behind_one_thread() -> None:
    """Calls that wait (I/O) for less than `stuck_after` each still make the
    queue move; but when calls queued a whole `stuck_after` ago still wait,
    more threads wake, as a thread pool would run them."""
    stuck_after = 0.2
    wait = 0.15  # each call's own I/O: shorter than `stuck_after`
    n = 8

    async def scenario() -> tuple[float, int]:
        loop = asyncio.get_running_loop()
        pool = CallPool(loop, 4, "io", stuck_after=stuck_after)
        lock = threading.Lock()
        ended = 0
        all_done = loop.create_future()
        on_all = on_loop(loop, all_done)

        def io_call() -> None:
            nonlocal ended
            threading.Event().wait(wait)  # stands for a short network call
            with lock:
                ended += 1
                if ended == n:
                    on_all()

        try:
            t0 = loop.time()
            for _ in range(n):
                pool.submit(io_call)
            await asyncio.wait_for(all_done, EVENT_TIMEOUT)
            return loop.time() - t0, pool.threads
        finally:
            pool.shutdown()

    elapsed, threads = asyncio.run(scenario())
    # On one thread they take n * wait = 1.2 s; with more woken ~0.55 s.
    assert elapsed < n * wait * 0.75, elapsed
    assert threads > 1


def test_an_abandoned_call_frees_its_slot_up_to_twice_the_threads() -> None:
    """A running call abandoned (its task cancelled, the server has given the
    slot to another) no longer counts against `max_threads`; threads stuck in
    abandoned calls are bounded all the same, at twice as many."""

    async def scenario() -> tuple[list[str], int]:
        loop = asyncio.get_running_loop()
        pool = CallPool(loop, 1, "abandon")
        gates = {k: threading.Event() for k in "ABC"}
        started = {k: loop.create_future() for k in "ABCD"}
        on_started = {k: on_loop(loop, f) for k, f in started.items()}
        order: list[str] = []
        most = 0

        def call(key: str) -> None:
            nonlocal most
            order.append(key)
            most = max(most, pool.threads)
            on_started[key]()
            if key in gates:
                gates[key].wait(EVENT_TIMEOUT)  # ignores the cancellation

        try:
            a = pool.submit(call, "A")
            await asyncio.wait_for(asyncio.shield(started["A"]), EVENT_TIMEOUT)
            b = pool.submit(call, "B")
            a.abandon()  # B starts beside A, which still blocks
            await asyncio.wait_for(asyncio.shield(started["B"]), EVENT_TIMEOUT)
            assert not gates["A"].is_set()
            pool.submit(call, "C")
            b.abandon()  # two threads already: C waits for one of them
            pool.submit(call, "D")
            gates["A"].set()
            await asyncio.wait_for(asyncio.shield(started["C"]), EVENT_TIMEOUT)
            for gate in gates.values():
                gate.set()
            await asyncio.wait_for(asyncio.shield(started["D"]), EVENT_TIMEOUT)
            return order, most
        finally:
            for gate in gates.values():
                gate.set()
            pool.shutdown()

    order, most = asyncio.run(scenario())
    assert order == ["A", "B", "C", "D"] and most == 2
