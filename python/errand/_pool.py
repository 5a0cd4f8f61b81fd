"""The threads that run a worker's plain (blocking) tool calls (not public).

`concurrent.futures.ThreadPoolExecutor` wakes a thread for every call it is
given. Under the GIL that costs a futex wake-up and GIL hand-offs per call,
which for a short tool is most of what the worker spends (bench section 2c:
~60 µs of CPU per no-op call). `CallPool` wakes as few threads as it can:

- a thread that ends a call takes the next queued one before it sleeps;
- a call queued while no thread is awake wakes one (the most recently used)
  at the event loop's next turn;
- a call queued while a thread is awake waits for it, unless the queue makes
  no progress for `stuck_after` seconds while every awake thread is inside a
  call (a blocking tool): then each waiting call gets a thread of its own;
- a thread found stuck so stays "stalled" until its call ends: it is not
  counted on to take the next call, so calls queued later wake a thread at
  once instead of each waiting `stuck_after` again;
- if the queue moves, but calls that were already waiting when the check was
  set still wait `stuck_after` later (calls that each wait a few ms on I/O),
  as many threads wake again as are awake and not stalled (at least one),
  window after window, so such calls are not run one at a time.

So at most `max_threads` calls (not abandoned, below) run at once, and a blocking call holds the
others up for about `stuck_after` seconds once, never until it ends.

A running call can be abandoned (`Call.abandon`: its task was cancelled and
the server gave its slot to another): it then no longer counts against
`max_threads`, so the next call need not wait for a tool that ignores the
cancellation. Threads are bounded all the same, at twice `max_threads`.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import deque
from typing import Any, Callable, Optional

log = logging.getLogger("errand.worker")

#: Seconds the queue may stand still, with calls waiting and every awake
#: thread inside a call, before more threads wake. Above the GIL's switch
#: interval (5 ms), so a thread that only waits for the GIL is not taken
#: for a blocked one.
STUCK_AFTER = 0.008


class Call:
    """A call submitted to a `CallPool`; its state is guarded by the pool's lock."""

    __slots__ = ("_pool", "abandoned", "args", "fn", "thread")

    def __init__(self, pool: CallPool, fn: Callable[..., object], args: tuple[Any, ...]) -> None:
        self._pool = pool
        self.fn = fn
        self.args = args
        self.thread: Optional[_Thread] = None  # the thread that took it
        self.abandoned = False  # running, and no longer counted against the most

    def abandon(self) -> None:
        """On the loop: if the call is running, it stops counting against
        `max_threads` (it ends when it returns). A queued call is left to
        its function, which sees why it should not start."""
        self._pool._abandon(self)


class _Thread:
    """A pool thread's state, guarded by the pool's lock."""

    __slots__ = ("call", "stalled", "wake")

    def __init__(self) -> None:
        # Held while the thread sleeps: releasing it wakes the thread.
        self.wake = threading.Lock()
        self.wake.acquire()
        self.call: Optional[Call] = None  # the call it is inside
        self.stalled = False  # seen stuck in its current call


class CallPool:
    """Runs calls on at most `max_threads` threads (twice as many while some
    run abandoned calls), started as needed: daemons, so that a call that
    never returns does not keep the process from exiting.

    `submit` and `shutdown` are called on `loop`'s thread (the stuck check
    is a timer on it); the calls run on the pool's threads, in their own
    contexts (no contextvars are copied), in the order submitted when one
    thread takes them in turn. An exception a call raises is logged.
    """

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        max_threads: int,
        name: str,
        stuck_after: float = STUCK_AFTER,
    ) -> None:
        if max_threads < 1:
            raise ValueError("max_threads must be at least 1")
        self._loop = loop
        self._max = max_threads
        self._name = name
        self._stuck_after = stuck_after
        self._lock = threading.Lock()  # guards everything below, and each Call's state
        self._queue: deque[Call] = deque()
        # Sleeping threads, the most recently used last: it is woken first,
        # as its stack is warm.
        self._idle: list[_Thread] = []
        self._all: list[_Thread] = []  # started and not ended
        self._threads = 0  # started (or starting) and not ended
        self._awake = 0  # threads not sleeping: in a call or about to take one
        self._in_call = 0  # threads inside a call
        self._stalled = 0  # threads in a call the stuck check found them stuck in
        self._abandoned = 0  # threads in an abandoned call
        self._taken = 0  # calls taken off the queue, ever (the progress mark)
        self._closed = False
        self._flush_soon = False  # a `_flush` is on the loop's ready queue
        # The stuck check's timer; the progress mark when it was set, and
        # what it will be once every call then queued has been taken.
        self._check: Optional[asyncio.TimerHandle] = None
        self._taken_at_check = 0
        self._due_at_check = 0

    @property
    def threads(self) -> int:
        """Threads started and not ended."""
        with self._lock:
            return self._threads

    def submit(self, fn: Callable[..., object], *args: Any) -> Call:
        """Queues `fn(*args)` to run on a pool thread. On the loop's thread;
        raises RuntimeError after `shutdown()`."""
        call = Call(self, fn, args)
        with self._lock:
            if self._closed:
                raise RuntimeError("the call pool is shut down")
            self._queue.append(call)
            if self._awake > self._stalled:
                # An awake thread takes it when its call ends, unless that call blocks.
                self._arm_check()
            elif not self._flush_soon:
                # Wake one at the loop's next turn, not now: woken now, it would
                # only wait for the GIL that this thread holds; and the calls
                # queued meanwhile go to it together.
                self._flush_soon = True
                self._loop.call_soon(self._flush)
        return call

    def _abandon(self, call: Call) -> None:
        """`Call.abandon`, on the loop."""
        starts: list[_Thread] = []
        with self._lock:
            thread = call.thread
            if self._closed or call.abandoned or thread is None or thread.call is not call:
                return  # queued, ended, or already abandoned
            call.abandoned = True
            self._abandoned += 1
            if self._queue:
                if self._awake == self._stalled:
                    starts = self._wake(1)  # every awake thread is stuck: no need to look
                else:
                    self._arm_check()  # it may well return now, and take the next
        self._start(starts)

    def shutdown(self) -> None:
        """Drops the calls not started and ends idle threads at once; threads
        inside a call end when it returns. On the loop's thread; idempotent."""
        with self._lock:
            if self._check is not None:
                self._check.cancel()
                self._check = None
            self._closed = True
            self._queue.clear()
            idle, self._idle = self._idle, []
            self._awake += len(idle)
        for thread in idle:
            thread.wake.release()

    def _flush(self) -> None:
        """On the loop: wakes a thread for the calls queued while none was
        awake (but stalled ones)."""
        with self._lock:
            self._flush_soon = False
            if not self._queue:
                return
            if self._awake == self._stalled:
                starts = self._wake(1)
                if len(self._queue) > 1:
                    self._arm_check()
            else:
                self._arm_check()
                starts = []
        self._start(starts)

    def _arm_check(self) -> None:
        """Sets the stuck check's timer unless it is set. With `_lock` held, on the loop."""
        if self._check is None:
            self._taken_at_check = self._taken
            self._due_at_check = self._taken + len(self._queue)
            self._check = self._loop.call_later(self._stuck_after, self._check_stuck)

    def _check_stuck(self) -> None:
        """On the loop, `stuck_after` seconds after a call queued behind awake threads."""
        starts: list[_Thread] = []
        with self._lock:
            self._check = None
            if self._closed or not self._queue:
                return
            if self._taken == self._taken_at_check and self._in_call == self._awake:
                # Every awake thread sat in one call all along: mark them
                # stalled (not to be waited for again) and give each waiting
                # call a thread (as many as there are left).
                for thread in self._all:
                    if thread.call is not None and not thread.stalled:
                        thread.stalled = True
                        self._stalled += 1
                starts = self._wake(len(self._queue))
            elif self._taken < self._due_at_check and self._in_call == self._awake:
                # Moving, but too slowly: double the live threads, no more
                # (calls that hold the GIL would gain nothing from many).
                live = self._awake - self._stalled
                starts = self._wake(min(max(live, 1), len(self._queue)))
                self._arm_check()
            else:
                # Keeping up, or a woken thread has yet to take its call: look again.
                self._arm_check()
        self._start(starts)

    def _wake(self, n: int) -> list[_Thread]:
        """Wakes up to `n` sleeping threads, then counts in new ones up to the
        most, which the caller passes to `_start` once it let go of `_lock`
        (starting a thread waits for it: the lock would hold up the others)."""
        while n > 0 and self._idle:
            self._awake += 1
            self._idle.pop().wake.release()
            n -= 1
        starts: list[_Thread] = []
        # Threads in abandoned calls do not count, up to as many again.
        most = min(self._max + self._abandoned, 2 * self._max)
        while n > 0 and self._threads < most:
            self._threads += 1
            self._awake += 1
            starts.append(_Thread())
            n -= 1
        return starts

    def _start(self, starts: list[_Thread]) -> None:
        """Starts the threads `_wake` counted in. Without `_lock`."""
        for i, state in enumerate(starts):
            with self._lock:
                name = f"{self._name}_{len(self._all)}"
                self._all.append(state)
            try:
                threading.Thread(target=self._work, args=(state,), name=name, daemon=True).start()
            except RuntimeError as exc:  # "can't start new thread": those started go on
                with self._lock:
                    self._all.remove(state)  # the later ones were never added
                    self._threads -= len(starts) - i
                    self._awake -= len(starts) - i
                log.error("errand worker: cannot start a pool thread: %s", exc)
                return

    def _work(self, state: _Thread) -> None:
        """A pool thread: takes calls until the queue is empty, then sleeps
        on `state.wake` until `_wake` or `shutdown` releases it."""
        lock, queue, wake = self._lock, self._queue, state.wake
        call: Optional[Call] = None
        while True:
            with lock:
                if call is not None:
                    self._in_call -= 1
                    state.call = None
                    call.args = ()  # its handle may outlive it: keep no arguments
                    if call.abandoned:
                        self._abandoned -= 1
                    if state.stalled:
                        state.stalled = False
                        self._stalled -= 1
                    call = None
                if self._closed:
                    self._awake -= 1
                    self._threads -= 1
                    self._all.remove(state)
                    return
                if queue:
                    call = queue.popleft()
                    call.thread = state
                    state.call = call
                    self._taken += 1
                    self._in_call += 1
                else:
                    self._awake -= 1
                    self._idle.append(state)
            if call is None:
                wake.acquire()  # sleeps until released; held again for the next sleep
                continue
            fn, args = call.fn, call.args
            try:
                fn(*args)
            except BaseException:
                log.exception("errand worker: a pool thread's call raised")
            del fn, args  # drop the call's references while the thread sleeps
