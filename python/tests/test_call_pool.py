"""CallPool, the threads of a worker's plain tool calls: how many run, and when."""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import Any, Callable

import pytest

from errand._pool import CallPool

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
