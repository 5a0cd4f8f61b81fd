"""A private event loop on a thread, for code without asyncio (not public)."""

from __future__ import annotations

import asyncio
import sys
import threading
from collections.abc import AsyncGenerator, Awaitable, Coroutine
from typing import Any, Callable, Optional, TypeVar

T = TypeVar("T")


class LoopThread:
    """A private event loop on a daemon thread, for callers without asyncio."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="errand-agent")
        self._thread.daemon = True
        self._thread.start()

    def call(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result()

    def close(self, timeout: float = 5.0) -> None:
        """Cancel the tasks still on the loop and wait for them (at most
        `timeout` seconds), then stop the loop and join its thread (as long
        again). A loop closed with tasks pending has them print "Task was
        destroyed but it is pending!" when collected."""
        if self.loop.is_closed():
            return
        if self._thread.is_alive():
            try:
                asyncio.run_coroutine_threadsafe(_end_tasks(timeout), self.loop).result(timeout + 1)
            except Exception:  # the loop stopped meanwhile, or the wait ran out
                pass
            try:  # what waits for the loop's end (see `LoopEnd`), as asyncio.run does
                asyncio.run_coroutine_threadsafe(self.loop.shutdown_asyncgens(), self.loop).result(
                    timeout + 1
                )
            except Exception:
                pass
            try:  # the threads of `asyncio.to_thread` end with it, as asyncio.run's do
                asyncio.run_coroutine_threadsafe(
                    self.loop.shutdown_default_executor(), self.loop
                ).result(timeout + 1)
            except Exception:
                pass
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(timeout)
        if not self._thread.is_alive():
            self.loop.close()


async def _end_tasks(timeout: float) -> None:
    tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    for task in tasks:
        task.cancel()
    if tasks:
        await asyncio.wait(tasks, timeout=timeout)
    for task in tasks:
        if task.done() and not task.cancelled():
            task.exception()  # retrieved: nothing is reported unseen


def running_loop() -> Optional[asyncio.AbstractEventLoop]:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


class LoopEnd:
    """Has the running event loop await `end()` as it shuts down, while it
    still runs: so that what belongs to it (a gRPC aio channel and its calls)
    ends with it rather than after, when gRPC would hand their last events
    to a closed loop ("RuntimeError: Event loop is closed").

    asyncio has no hook for a loop's end, but a loop closes the async
    generators begun on it in `shutdown_asyncgens()`, which `asyncio.run`,
    `asyncio.Runner` (and `LoopThread.close`) await before closing it: this
    begins one that awaits `end()` when closed. A loop closed without that
    call never runs `end()`. Keep the `LoopEnd` (the loop holds its
    generator weakly); `forget()` it once `end()` is no longer wanted.
    """

    def __init__(self, end: Callable[[], Awaitable[None]]) -> None:
        self._end: Optional[Callable[[], Awaitable[None]]] = end
        self._gen: Optional[AsyncGenerator[None, None]] = None
        if sys.get_asyncgen_hooks().firstiter is None:
            return  # a loop that does not follow its async generators
        gen = self._watch()
        _step(gen.__anext__())  # the loop's first-iteration hook notes it here
        self._gen = gen

    async def _watch(self) -> AsyncGenerator[None, None]:
        try:
            yield
        finally:
            end, self._end = self._end, None
            if end is not None:
                await end()

    def forget(self) -> None:
        """Never run `end()`; the generator is closed here (at once), so the
        loop, closed or not, has nothing left of it to finalize. Call it on
        the loop's thread, or once the loop has closed."""
        self._end = None
        gen, self._gen = self._gen, None
        if gen is not None:
            try:
                _step(gen.aclose())
            except RuntimeError:
                pass  # running its `end()` now (the loop is ending): it ends by itself


def _step(step: Awaitable[Any]) -> None:
    """Run an async generator's step that does not suspend (reaches its next
    `yield` or its end), outside any loop."""
    try:
        step.__await__().send(None)
    except (StopIteration, StopAsyncIteration):
        pass
