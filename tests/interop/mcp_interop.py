"""MCP interop: the pinned Python `mcp` client against the real errand binary.

errand serves MCP on its own listener; `errand worker --exec` serves
`sleep_echo`. Python `mcp` 2.3.0 has no Tasks client, so this test declares
the `io.modelcontextprotocol/tasks` extension itself: a `ResultClaim` for
`resultType: "task"` and `tasks/get` / `tasks/cancel` requests whose
`Mcp-Name` is their `taskId`.

Every wait is bounded and awaits the server's answer; nothing sleeps on a
guess. Prints `mcp-interop: N passed, N failed` and exits non-zero on a
failure.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from typing import Any, Literal

import httpx2
import mcp_types as types
from mcp import Client, StdioServerParameters
from mcp.client.extension import ClaimContext, ClientExtension, ResultClaim
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError
from pydantic import ConfigDict

ERRAND = os.environ["ERRAND_BIN"]
TASKS = "io.modelcontextprotocol/tasks"
DEADLINE_S = 60.0
SLEEP_ECHO = (
    "python3 -c 'import json,sys,time; a=json.load(sys.stdin); "
    'time.sleep(a["seconds"]); print(json.dumps({"echo": a["text"]}))\''
)
SCHEMA = {
    "type": "object",
    "properties": {"seconds": {"type": "number"}, "text": {"type": "string"}},
    "required": ["seconds", "text"],
}


class CreateTask(types.Result):
    """`CreateTaskResult`: the task, flattened."""

    model_config = ConfigDict(extra="allow")
    result_type: Literal["task"] = "task"
    task_id: str
    status: str
    status_message: str | None = None
    poll_interval_ms: int | None = None
    ttl_ms: int | None = None


class TaskIdParams(types.RequestParams):
    task_id: str


class GetTask(types.Request[TaskIdParams, Literal["tasks/get"]]):
    method: Literal["tasks/get"] = "tasks/get"
    params: TaskIdParams
    name_param = "taskId"


class CancelTask(types.Request[TaskIdParams, Literal["tasks/cancel"]]):
    method: Literal["tasks/cancel"] = "tasks/cancel"
    params: TaskIdParams
    name_param = "taskId"


class TaskState(types.Result):
    model_config = ConfigDict(extra="allow")
    task_id: str
    status: str
    status_message: str | None = None
    result: dict[str, Any] | None = None
    poll_interval_ms: int | None = None


class Ack(types.Result):
    model_config = ConfigDict(extra="allow")


async def get_task(session: Any, task_id: str) -> TaskState:
    return await session.send_request(GetTask(params=TaskIdParams(task_id=task_id)), TaskState)


async def settle(session: Any, task_id: str) -> TaskState:
    """Polls `tasks/get` at the server's `pollIntervalMs` until terminal."""
    end = time.monotonic() + DEADLINE_S
    while True:
        state = await get_task(session, task_id)
        if state.status in ("completed", "failed", "cancelled"):
            return state
        if time.monotonic() > end:
            raise TimeoutError(f"task {task_id} still {state.status}")
        await asyncio.sleep((state.poll_interval_ms or 100) / 1000)


class Tasks(ClientExtension):
    identifier = TASKS

    def claims(self) -> list[ResultClaim[Any]]:
        async def resolve(created: CreateTask, ctx: ClaimContext) -> types.CallToolResult:
            state = await settle(ctx.session, created.task_id)
            return types.CallToolResult.model_validate(state.result or {"content": [], "isError": True})

        return [ResultClaim(result_type="task", model=CreateTask, resolve=resolve)]


def client(url: str, session: str, tasks: bool = True, legacy: bool = False) -> Client:
    http = httpx2.AsyncClient(headers={"Errand-Session": session}, timeout=30)
    return Client(
        streamable_http_client(url, http_client=http),  # type: ignore[arg-type]
        extensions=[Tasks()] if tasks else None,
        read_timeout_seconds=DEADLINE_S,
        mode="legacy" if legacy else "auto",
    )


class Server:
    def __init__(self, data_dir: str, poll_ms: int = 100) -> None:
        self.proc = subprocess.Popen(
            [ERRAND, "serve", "--listen", "127.0.0.1:0", "--mcp-listen", "127.0.0.1:0",
             "--data-dir", data_dir, "--mcp-poll-interval-ms", str(poll_ms)],
            stdout=subprocess.PIPE, text=True,
        )
        self.mcp_url = self.addr = ""
        assert self.proc.stdout is not None
        for line in self.proc.stdout:  # ends when the server exits
            if line.startswith("errand mcp on "):
                self.mcp_url = line.split()[-1]
            if line.startswith("errand listening on "):
                self.addr = line.split()[-1]
                break
        assert self.mcp_url and self.addr, "the server printed its addresses"

    def kill(self) -> None:
        self.proc.kill()  # SIGKILL: no drain, no goodbye
        self.proc.wait(timeout=30)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=30)


async def wait_for_tool(url: str) -> types.ListToolsResult:
    end = time.monotonic() + DEADLINE_S
    async with client(url, "probe") as c:
        while True:
            listed = await c.list_tools()
            if any(t.name == "sleep_echo" for t in listed.tools):
                return listed
            assert time.monotonic() < end, "the worker registered sleep_echo"
            await asyncio.sleep(0.05)


def start_worker(addr: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [ERRAND, "worker", "--server", addr, "--tool", "sleep_echo", "--concurrency", "4",
         "--description", "Sleeps, then echoes.", "--schema", json.dumps(SCHEMA), "--exec", SLEEP_ECHO],
        start_new_session=True,  # its own process group, so the test can end the tool's processes too
    )


def end_worker(worker: subprocess.Popen[bytes]) -> None:
    os.killpg(worker.pid, 9)
    worker.wait(timeout=30)


async def task_survives_a_server_kill() -> None:
    """kill -9 mid-task, a restart on the same data dir: the task ID still answers, then with the result."""
    data = tempfile.mkdtemp(prefix="errand-mcp-restart-")
    server = Server(data)
    worker = start_worker(server.addr)
    try:
        await wait_for_tool(server.mcp_url)
        async with client(server.mcp_url, "restart") as c:
            created = await c.session.call_tool(
                "sleep_echo", {"seconds": 3, "text": "durable"}, allow_claimed=True
            )
            assert isinstance(created, CreateTask), created
            end = time.monotonic() + DEADLINE_S
            while ((await get_task(c.session, created.task_id)).meta or {})["errand/task"]["status"] != "RUNNING":
                assert time.monotonic() < end, "the task was dispatched"
                await asyncio.sleep(0.05)
        server.kill()
        end_worker(worker)
        server = Server(data)
        worker = start_worker(server.addr)
        await wait_for_tool(server.mcp_url)
        async with client(server.mcp_url, "restart") as c:
            state = await settle(c.session, created.task_id)
            assert state.status == "completed", state
            assert state.result and state.result["structuredContent"] == {"echo": "durable"}, state
    finally:
        end_worker(worker)
        server.stop()
        shutil.rmtree(data, ignore_errors=True)


async def run(results: dict[str, str]) -> None:
    data = tempfile.mkdtemp(prefix="errand-mcp-")
    server = Server(data)
    worker = start_worker(server.addr)
    url = server.mcp_url

    async def check(name: str, body: Any) -> None:
        try:
            await body()
            results[name] = "passed"
        except Exception:  # noqa: BLE001 - every failure is reported by name
            results[name] = "failed"
            traceback.print_exc()

    try:
        listed = await wait_for_tool(url)

        async def tools_show_schemas() -> None:
            tool = next(t for t in listed.tools if t.name == "sleep_echo")
            assert tool.input_schema["required"] == ["seconds", "text"], tool.input_schema
            assert tool.description == "Sleeps, then echoes.", tool.description

        async def tasks_finish_in_completion_order() -> None:
            async with client(url, "order") as c:
                ids = {}
                for secs in (3, 1, 2):
                    created = await c.session.call_tool(
                        "sleep_echo", {"seconds": secs, "text": f"t{secs}"}, allow_claimed=True
                    )
                    assert isinstance(created, CreateTask), created
                    assert created.status == "working" and created.status_message, created
                    assert created.poll_interval_ms == 100, created
                    ids[secs] = created.task_id
                seqs = {}
                for secs, tid in ids.items():
                    state = await settle(c.session, tid)
                    assert state.status == "completed", state
                    assert state.result and state.result["structuredContent"] == {"echo": f"t{secs}"}, state
                    seqs[secs] = state.result["_meta"]["errand/task"]["seq"]
                assert seqs == {1: 1, 2: 2, 3: 3}, seqs
            watched = subprocess.run(
                [ERRAND, "watch", "--server", server.addr, "--session", "order", "--json", "--count", "3"],
                capture_output=True, text=True, timeout=DEADLINE_S, check=True,
            )
            lines = [json.loads(line) for line in watched.stdout.splitlines()]
            assert [(c["seq"], c["task_id"]) for c in lines] == [(1, ids[1]), (2, ids[2]), (3, ids[3])], lines

        async def claim_settles_call_tool() -> None:
            async with client(url, "claim") as c:
                result = await c.call_tool("sleep_echo", {"seconds": 0, "text": "hi"})
                assert result.structured_content == {"echo": "hi"}, result

        async def no_extension_gets_a_synchronous_result() -> None:
            async with client(url, "sync", tasks=False) as c:
                result = await c.call_tool("sleep_echo", {"seconds": 0.2, "text": "sync"})
                assert not result.is_error and result.structured_content == {"echo": "sync"}, result

        async def legacy_client_gets_a_synchronous_result() -> None:
            async with client(url, "legacy", tasks=False, legacy=True) as c:
                assert c.protocol_version == "2025-11-25", c.protocol_version
                result = await c.call_tool("sleep_echo", {"seconds": 0.2, "text": "old"})
                assert not result.is_error and result.structured_content == {"echo": "old"}, result

        async def stdio_adapter_over_a_running_server() -> None:
            params = StdioServerParameters(
                command=ERRAND,
                args=["mcp", "--stdio", "--server", server.addr, "--session", "stdio",
                      "--poll-interval-ms", "50"],
            )
            async with Client(params, extensions=[Tasks()], read_timeout_seconds=DEADLINE_S) as c:
                listed = await c.list_tools()
                assert [t.name for t in listed.tools] == ["sleep_echo"], listed
                result = await c.call_tool("sleep_echo", {"seconds": 0.2, "text": "piped"})
                assert result.structured_content == {"echo": "piped"}, result
            async with Client(params, read_timeout_seconds=DEADLINE_S) as c:
                result = await c.call_tool("sleep_echo", {"seconds": 0.2, "text": "waited"})
                assert result.structured_content == {"echo": "waited"}, result

        async def cancel_reaches_the_task() -> None:
            async with client(url, "cancel") as c:
                created = await c.session.call_tool(
                    "sleep_echo", {"seconds": 30, "text": "never"}, allow_claimed=True
                )
                assert isinstance(created, CreateTask), created
                await c.session.send_request(CancelTask(params=TaskIdParams(task_id=created.task_id)), Ack)
                state = await settle(c.session, created.task_id)
                assert state.status == "cancelled", state

        async def unknown_tool_is_invalid_params() -> None:
            async with client(url, "bad") as c:
                try:
                    await c.session.call_tool("nope", {}, allow_claimed=True)
                except MCPError as e:
                    assert e.code == -32602 and "sleep_echo" in e.message, (e.code, e.message)
                else:
                    raise AssertionError("an unknown tool was accepted")

        async def schema_failure_is_an_error_result() -> None:
            async with client(url, "bad") as c:
                result = await c.session.call_tool("sleep_echo", {"seconds": "x"}, allow_claimed=True)
                assert isinstance(result, types.CallToolResult) and result.is_error, result
                text = result.content[0].text  # type: ignore[union-attr]
                assert "text" in text or "seconds" in text, text

        async def unknown_task_is_invalid_params() -> None:
            async with client(url, "bad") as c:
                try:
                    await get_task(c.session, "00000000-0000-4000-8000-000000000000")
                except MCPError as e:
                    assert e.code == -32602 and e.message.startswith("no task "), (e.code, e.message)
                else:
                    raise AssertionError("an unknown task was found")

        async def tasks_need_the_extension() -> None:
            async with client(url, "bad", tasks=False) as c:
                try:
                    await get_task(c.session, "00000000-0000-4000-8000-000000000000")
                except MCPError as e:
                    assert e.code == -32021, (e.code, e.message)
                else:
                    raise AssertionError("tasks/get without the extension was served")

        async def tasks_need_mcp_name() -> None:
            meta = {
                "io.modelcontextprotocol/protocolVersion": "2026-07-28",
                "io.modelcontextprotocol/clientCapabilities": {"extensions": {TASKS: {}}},
            }
            body = {"jsonrpc": "2.0", "id": 1, "method": "tasks/get",
                    "params": {"taskId": "00000000-0000-4000-8000-000000000000", "_meta": meta}}
            headers = {"MCP-Protocol-Version": "2026-07-28", "Mcp-Method": "tasks/get",
                       "Accept": "application/json, text/event-stream"}
            async with httpx2.AsyncClient(timeout=30) as http:
                r = await http.post(url, json=body, headers=headers)
            assert '"code":-32020' in r.text.replace(" ", ""), (r.status_code, r.text)
            assert "mcp-name" in r.text.lower(), r.text

        for body in (
            tools_show_schemas,
            tasks_finish_in_completion_order,
            claim_settles_call_tool,
            no_extension_gets_a_synchronous_result,
            legacy_client_gets_a_synchronous_result,
            stdio_adapter_over_a_running_server,
            cancel_reaches_the_task,
            unknown_tool_is_invalid_params,
            schema_failure_is_an_error_result,
            unknown_task_is_invalid_params,
            tasks_need_the_extension,
            tasks_need_mcp_name,
        ):
            await check(body.__name__, body)
    finally:
        end_worker(worker)
        server.stop()
        shutil.rmtree(data, ignore_errors=True)
    await check(task_survives_a_server_kill.__name__, task_survives_a_server_kill)


def main() -> int:
    results: dict[str, str] = {}
    asyncio.run(asyncio.wait_for(run(results), timeout=300))
    for name, outcome in results.items():
        print(f"{outcome:6} {name}")
    failed = sum(1 for o in results.values() if o == "failed")
    print(f"mcp-interop: {len(results) - failed} passed, {failed} failed")
    return 1 if failed or not results else 0


if __name__ == "__main__":
    sys.exit(main())
