"""Ctrl-C and an error before stop(): what a script prints at its end.

Each case runs in a fresh interpreter against the shared server; the event
awaited is a line the script prints, then its exit.

- Ctrl-C of `Worker.run()`: KeyboardInterrupt, as Python's own, without
  the chained CancelledError traceback of asyncio's runner (it printed both,
  "During handling of the above exception, another exception occurred").
- A script that raises after its manager has started, without `stop()`:
  its error and nothing else; no WARNING of a stream "broke ... Channel
  closed" from the manager's own streams as the interpreter ends.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap

from .conftest import EVENT_TIMEOUT, unique


def script(body: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(body), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_ctrl_c_of_a_worker_is_one_keyboard_interrupt(server: str) -> None:
    proc = script(
        """
        import faulthandler, signal, sys, threading
        from errand import Worker, async_tool

        faulthandler.register(signal.SIGUSR1, all_threads=True)  # the test's view of a hang

        # As in a terminal: a process started in the background of a
        # non-interactive shell inherits SIGINT ignored.
        signal.signal(signal.SIGINT, signal.default_int_handler)

        @async_tool(name=sys.argv[2])
        def tool(n: int) -> int:
            return n

        worker = Worker(sys.argv[1], tools=[tool])
        def ready() -> None:
            worker.wait_registered(30)
            print("registered", flush=True)
        threading.Thread(target=ready, daemon=True).start()
        worker.run()
        """,
        server,
        unique("interrupted"),
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "registered"
    proc.send_signal(signal.SIGINT)
    try:
        _, err = proc.communicate(timeout=EVENT_TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGUSR1)
        try:
            proc.communicate(timeout=3)  # the dump
        except subprocess.TimeoutExpired:
            proc.kill()
        _, err = proc.communicate()
        raise AssertionError(f"the worker did not end at Ctrl-C:\n{err}") from None
    assert proc.returncode != 0
    assert err.rstrip().endswith("KeyboardInterrupt"), err
    assert "CancelledError" not in err and "During handling" not in err, err


def test_an_error_before_stop_prints_the_error_only(server: str) -> None:
    proc = script(
        """
        import sys
        from errand import AsyncToolManager, async_tool

        manager = AsyncToolManager(max_workers=1, server=sys.argv[1])

        @async_tool(manager)
        def job(tag: str) -> str:
            '''A job.'''
            return tag

        job(tag="one")
        print("submitted", flush=True)
        raise RuntimeError("the script's own mistake")
        """,
        server,
    )
    out, err = proc.communicate(timeout=EVENT_TIMEOUT)
    assert out.strip() == "submitted"
    assert "RuntimeError: the script's own mistake" in err
    assert "broke" not in err and "Channel closed" not in err, err
