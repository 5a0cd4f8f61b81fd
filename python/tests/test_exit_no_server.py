"""With no server, a failed first use leaves nothing that keeps the process alive.

Each case runs in a fresh interpreter (`sys.executable -c`) that fails with
Unavailable, uncaught and without any close(), as a new user's first script
does when they forgot to start the server. The event awaited is the
subprocess's exit: it must come within `EXIT_BOUND` seconds, with the error.
Before the fix an `AsyncAgent` on an `AsyncToolManager` (and the manager's
own failed start, and a blocking stream's) hung at interpreter exit: gRPC's
connectivity poller was still watching the channel that the "no server"
check had subscribed to, and the channel's finalizer waited for it after
the poller's (daemon) thread was frozen.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from .conftest import free_port

EXIT_BOUND = 20.0

PRELUDE = """
import asyncio, sys
from errand import (AsyncAgent, AsyncClient, AsyncToolManager, Client, SyncAgent,
                    Worker, async_tool)
addr = sys.argv[1]
class Ag:
    def send(self, message: str) -> str:
        return "ok"
"""

CASES = {
    # The trial's repro: a blocking AsyncAgent on a manager, nothing closed.
    "asyncagent_manager": 'AsyncAgent(Ag(), AsyncToolManager(1, server=addr)).send("hi")',
    "asyncagent_manager_start": "AsyncAgent(Ag(), AsyncToolManager(1, server=addr)).start()",
    "manager_ensure_started": "AsyncToolManager(max_workers=1, server=addr).ensure_started()",
    "manager_start": "AsyncToolManager(max_workers=1, server=addr).start()",
    "manager_tool_call": textwrap.dedent(
        """
        m = AsyncToolManager(max_workers=1, server=addr)
        @async_tool(m)
        def tt(a: int) -> int:
            '''t'''
            return a
        tt(a=1)
        """
    ),
    "client_session_events": "next(Client(addr).session_events())",
    "client_completions": "next(Client(addr).completions())",
    "client_submit": 'Client(addr).submit("x", a=1)',
    "syncagent_client": 'SyncAgent(Ag(), Client(addr)).send("hi")',
    "asyncagent_client": 'AsyncAgent(Ag(), AsyncClient(addr)).send("hi")',
    "asyncclient_stream": textwrap.dedent(
        """
        async def main():
            async for _ in AsyncClient(addr).session_events():
                pass
        asyncio.run(main())
        """
    ),
    "worker_start": textwrap.dedent(
        """
        @async_tool
        def tt(a: int) -> int:
            '''t'''
            return a
        Worker(addr, tools=[tt]).start()
        """
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_process_exits_after_a_failed_first_use(case: str) -> None:
    address = f"127.0.0.1:{free_port()}"  # nothing listens there
    code = PRELUDE + textwrap.dedent(CASES[case])
    proc = subprocess.Popen(
        [sys.executable, "-c", code, address],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        out, err = proc.communicate(timeout=EXIT_BOUND)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        pytest.fail(f"{case}: the process did not exit within {EXIT_BOUND}s\n{err[-2000:]}")
    assert proc.returncode == 1, (proc.returncode, out, err[-2000:])
    assert "Unavailable" in err and f"no errand server at {address}" in err, err[-2000:]
