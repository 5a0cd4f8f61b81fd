"""A2A interop: the pinned Python `a2a-sdk` client, over gRPC and over
JSON-RPC, against the real errand binary serving `--a2a-listen`, with
`errand worker --exec` serving `sleep_echo`.

Every wait is bounded and awaits the server's answer (a reply or a stream
event); the only polls are `GetTask` calls until a task is dispatched.
Prints `a2a-interop: N passed, N failed` and exits non-zero on a failure.
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
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
import httpx
from a2a.client import ClientConfig, ClientFactory
from a2a.client.client import Client
from a2a.types.a2a_pb2 import (
    CancelTaskRequest,
    GetTaskRequest,
    ListTasksRequest,
    Message,
    Part,
    Role,
    SendMessageConfiguration,
    SendMessageRequest,
    StreamResponse,
    SubscribeToTaskRequest,
    Task,
    TaskState,
)
from a2a.utils.errors import (
    ContentTypeNotSupportedError,
    InvalidParamsError,
    TaskNotCancelableError,
    TaskNotFoundError,
    UnsupportedOperationError,
)
from google.protobuf import json_format, struct_pb2

ERRAND = os.environ["ERRAND_BIN"]
DEADLINE_S = 60.0
SKILL = "sleep_echo"
# With "big" (a decimal string), the result also holds it as an integer:
# a 64-bit ID, which A2A's data parts (protobuf Structs, doubles) cannot hold.
SLEEP_ECHO = (
    "python3 -c 'import json,sys,time; a=json.load(sys.stdin); "
    'time.sleep(a["seconds"]); r={"echo": a["text"]}; '
    'r.update({"id": int(a["big"])} if "big" in a else {}); print(json.dumps(r))\''
)
SCHEMA = {
    "type": "object",
    "properties": {"seconds": {"type": "number"}, "text": {"type": "string"}},
    "required": ["seconds", "text"],
}
TERMINAL = (TaskState.TASK_STATE_COMPLETED, TaskState.TASK_STATE_FAILED, TaskState.TASK_STATE_CANCELED)
UNKNOWN_TASK = "00000000-0000-4000-8000-000000000000"


class Server:
    def __init__(self, data_dir: str) -> None:
        self.proc = subprocess.Popen(
            [ERRAND, "serve", "--listen", "127.0.0.1:0", "--a2a-listen", "127.0.0.1:0",
             "--data-dir", data_dir],
            stdout=subprocess.PIPE, text=True,
        )
        self.base = self.addr = ""
        assert self.proc.stdout is not None
        for line in self.proc.stdout:  # ends when the server exits
            if line.startswith("errand a2a on "):
                self.base = line.split()[-1].removesuffix("/.well-known/agent-card.json")
            if line.startswith("errand listening on "):
                self.addr = line.split()[-1]
                break
        assert self.base and self.addr, "the server printed its addresses"

    def kill(self) -> None:
        self.proc.kill()  # SIGKILL: no drain, no goodbye
        self.proc.wait(timeout=30)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=30)


def start_worker(addr: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [ERRAND, "worker", "--server", addr, "--tool", SKILL, "--concurrency", "4",
         "--description", "Sleeps, then echoes.", "--schema", json.dumps(SCHEMA), "--exec", SLEEP_ECHO],
        start_new_session=True,  # its own process group, so the test can end the tool's processes too
    )


def end_worker(worker: subprocess.Popen[bytes]) -> None:
    os.killpg(worker.pid, 9)
    worker.wait(timeout=30)


async def card_json(base: str) -> dict[str, Any]:
    async with httpx.AsyncClient(timeout=30) as http:
        r = await http.get(f"{base}/.well-known/agent-card.json")
        r.raise_for_status()
        return r.json()  # type: ignore[no-any-return]


async def wait_for_skill(base: str) -> dict[str, Any]:
    end = time.monotonic() + DEADLINE_S
    while True:
        card = await card_json(base)
        if any(s["id"] == SKILL for s in card.get("skills", [])):
            return card
        assert time.monotonic() < end, "the worker registered sleep_echo"
        await asyncio.sleep(0.05)


async def connect(base: str, binding: str, streaming: bool) -> Client:
    config = ClientConfig(
        streaming=streaming,
        supported_protocol_bindings=[binding],
        grpc_channel_factory=grpc.aio.insecure_channel,
    )
    return await ClientFactory(config).create_from_url(base)


def message(args: dict[str, Any] | None = None, *, skill: str | None = SKILL, context: str = "",
            message_id: str | None = None, text: str | None = None) -> Message:
    m = Message(message_id=message_id or uuid.uuid4().hex, role=Role.ROLE_USER, context_id=context)
    if text is not None:
        m.parts.append(Part(text=text))
    else:
        m.parts.append(Part(data=json_format.ParseDict(args or {}, struct_pb2.Value())))
    if skill:
        m.metadata.update({"skill": skill})
    return m


def send(m: Message, immediately: bool = False) -> SendMessageRequest:
    return SendMessageRequest(message=m, configuration=SendMessageConfiguration(return_immediately=immediately))


async def one_task(client: Client, request: SendMessageRequest) -> Task:
    """The Task of a unary SendMessage."""
    async for event in client.send_message(request):
        assert event.HasField("task"), event
        return event.task
    raise AssertionError("SendMessage answered nothing")


async def events(stream: Any) -> list[StreamResponse]:
    """Every event of a stream, until the server closes it."""
    out = []
    async with asyncio.timeout(DEADLINE_S):
        async for event in stream:
            out.append(event)
    return out


def result_of(task: Task) -> Any:
    assert len(task.artifacts) == 1, task
    artifact = task.artifacts[0]
    assert artifact.name == "result", artifact
    return json_format.MessageToDict(artifact.parts[0].data)


def check_stream(got: list[StreamResponse], task_id: str, echo: str) -> None:
    """The Task first, its result artifact, then the terminal status; nothing after."""
    kinds = [e.WhichOneof("payload") for e in got]
    assert kinds == ["task", "artifact_update", "status_update"], kinds
    assert got[0].task.id == task_id, got[0]
    assert json_format.MessageToDict(got[1].artifact_update.artifact.parts[0].data) == {"echo": echo}, got[1]
    assert got[2].status_update.status.state == TaskState.TASK_STATE_COMPLETED, got[2]


async def until_working(client: Client, task_id: str) -> None:
    end = time.monotonic() + DEADLINE_S
    while (await client.get_task(GetTaskRequest(id=task_id))).status.state != TaskState.TASK_STATE_WORKING:
        assert time.monotonic() < end, f"task {task_id} was dispatched"
        await asyncio.sleep(0.05)


async def raises(kind: type[Exception], call: Callable[[], Awaitable[Any]], *needles: str) -> None:
    try:
        await call()
    except kind as e:
        text = str(e)
        for needle in needles:
            assert needle in text, (needle, text)
        return
    raise AssertionError(f"expected {kind.__name__}")


def suite(base: str, binding: str) -> list[tuple[str, Callable[[], Awaitable[None]]]]:
    """The proof list over one binding."""
    ctx = f"a2a-{binding.lower()}-{uuid.uuid4().hex[:8]}"

    async def card_lists_skills_and_bindings() -> None:
        card = await card_json(base)
        skill = next(s for s in card["skills"] if s["id"] == SKILL)
        assert skill["description"] == "Sleeps, then echoes.", skill
        bindings = {i["protocolBinding"] for i in card["supportedInterfaces"]}
        assert bindings == {"JSONRPC", "HTTP+JSON", "GRPC"}, card["supportedInterfaces"]
        assert card["capabilities"]["streaming"] is True, card["capabilities"]
        assert card["capabilities"].get("pushNotifications") is False, card["capabilities"]
        ext = next(e for e in card["capabilities"]["extensions"] if e["uri"] == "urn:errand:tool-schemas:v1")
        assert ext["params"][SKILL]["required"] == ["seconds", "text"], ext

    async def return_immediately_is_submitted_with_the_ack() -> None:
        async with await connect(base, binding, streaming=False) as c:
            task = await one_task(c, send(message({"seconds": 0.5, "text": "quick"}, context=ctx), True))
            assert task.status.state == TaskState.TASK_STATE_SUBMITTED, task
            assert task.context_id == ctx, task
            ack = task.status.message.parts[0].text
            assert task.id in ack and SKILL in ack, ack

    async def get_task_is_completed_with_the_artifact() -> None:
        async with await connect(base, binding, streaming=False) as c:
            done = await one_task(c, send(message({"seconds": 0.2, "text": "got"}, context=ctx)))
            assert done.status.state == TaskState.TASK_STATE_COMPLETED, done
            got = await c.get_task(GetTaskRequest(id=done.id))
            assert got.status.state == TaskState.TASK_STATE_COMPLETED, got
            assert result_of(got) == {"echo": "got"}, got
            assert json_format.MessageToDict(got.metadata)["errand"]["status"] == "SUCCEEDED", got.metadata

    async def a_64_bit_id_in_a_result_arrives_exactly() -> None:
        big = 9007199254740993  # 2^53 + 1: a double would make it ...992
        async with await connect(base, binding, streaming=False) as c:
            done = await one_task(c, send(message({"seconds": 0, "text": "id", "big": str(big)}, context=ctx)))
            assert done.status.state == TaskState.TASK_STATE_COMPLETED, done
            got = await c.get_task(GetTaskRequest(id=done.id))
            part = got.artifacts[0].parts[0]
            assert part.WhichOneof("content") == "text", part
            assert part.media_type == "application/json", part
            assert json.loads(part.text) == {"echo": "id", "id": big}, part.text

    async def streaming_send_gives_task_artifact_then_final() -> None:
        async with await connect(base, binding, streaming=True) as c:
            got = await events(c.send_message(send(message({"seconds": 0.3, "text": "streamed"}, context=ctx))))
            check_stream(got, got[0].task.id, "streamed")

    async def subscribe_gives_the_task_then_terminal_then_close() -> None:
        async with await connect(base, binding, streaming=False) as unary:
            task = await one_task(unary, send(message({"seconds": 1, "text": "sub"}, context=ctx), True))
        async with await connect(base, binding, streaming=True) as c:
            got = await events(c.subscribe(SubscribeToTaskRequest(id=task.id)))
            check_stream(got, task.id, "sub")

    async def cancelling_a_running_task_cancels_it() -> None:
        async with await connect(base, binding, streaming=False) as c:
            task = await one_task(c, send(message({"seconds": 30, "text": "never"}, context=ctx), True))
            await until_working(c, task.id)
            cancelled = await c.cancel_task(CancelTaskRequest(id=task.id))
            assert cancelled.status.state == TaskState.TASK_STATE_CANCELED, cancelled
            got = await c.get_task(GetTaskRequest(id=task.id))
            assert got.status.state == TaskState.TASK_STATE_CANCELED, got

    async def the_same_message_id_is_one_task() -> None:
        async with await connect(base, binding, streaming=False) as c:
            mid = uuid.uuid4().hex
            first = await one_task(c, send(message({"seconds": 0, "text": "once"}, context=ctx, message_id=mid), True))
            second = await one_task(c, send(message({"seconds": 0, "text": "once"}, context=ctx, message_id=mid), True))
            assert first.id == second.id, (first.id, second.id)
            listed = await c.list_tasks(ListTasksRequest(context_id=ctx, page_size=100))
            assert sum(1 for t in listed.tasks if t.id == first.id) == 1, listed

    async def bad_input_is_refused_with_what_to_fix() -> None:
        async with await connect(base, binding, streaming=True) as c:
            await raises(InvalidParamsError, lambda: one_task(c, send(message({}, skill=None), True)),
                         "skill", SKILL)
            await raises(ContentTypeNotSupportedError,
                         lambda: one_task(c, send(message(text="echo hi"), True)), "text part")
            await raises(InvalidParamsError,
                         lambda: one_task(c, send(message({"seconds": "x", "text": "t"}, context=ctx), True)),
                         "input schema", "/seconds")
            await raises(TaskNotFoundError, lambda: c.get_task(GetTaskRequest(id=UNKNOWN_TASK)), UNKNOWN_TASK)
            async with await connect(base, binding, streaming=False) as unary:
                done = await one_task(unary, send(message({"seconds": 0, "text": "fin"}, context=ctx)))
            assert done.status.state == TaskState.TASK_STATE_COMPLETED, done
            await raises(TaskNotCancelableError, lambda: c.cancel_task(CancelTaskRequest(id=done.id)),
                         "COMPLETED")
            await raises(UnsupportedOperationError,
                         lambda: events(c.subscribe(SubscribeToTaskRequest(id=done.id))), "GetTask")
            await raises(InvalidParamsError, lambda: c.list_tasks(ListTasksRequest()), "context_id")

    return [(f"{binding}: {body.__name__}", body) for body in (
        card_lists_skills_and_bindings,
        return_immediately_is_submitted_with_the_ack,
        get_task_is_completed_with_the_artifact,
        a_64_bit_id_in_a_result_arrives_exactly,
        streaming_send_gives_task_artifact_then_final,
        subscribe_gives_the_task_then_terminal_then_close,
        cancelling_a_running_task_cancels_it,
        the_same_message_id_is_one_task,
        bad_input_is_refused_with_what_to_fix,
    )]


async def jsonrpc(base: str, method: str, params: dict[str, Any], version: str = "1.0") -> dict[str, Any]:
    body = {"jsonrpc": "2.0", "id": 1, "method": method, "params": params}
    async with httpx.AsyncClient(timeout=30) as http:
        r = await http.post(f"{base}/jsonrpc", json=body, headers={"A2A-Version": version})
    return r.json()  # type: ignore[no-any-return]


def wire_codes(base: str) -> list[tuple[str, Callable[[], Awaitable[None]]]]:
    """The bad-input list again on the wire, asserting the JSON-RPC codes."""

    def msg(**kw: Any) -> dict[str, Any]:
        m = {"messageId": uuid.uuid4().hex, "role": "ROLE_USER", "parts": [{"data": {}}]}
        m.update(kw)
        return {"message": m}

    async def error_codes_on_the_wire() -> None:
        cases = [
            ("SendMessage", msg(), "1.0", -32602, "skill"),
            ("SendMessage", msg(parts=[{"text": "hi"}], metadata={"skill": SKILL}), "1.0", -32005, "text part"),
            ("GetTask", {"id": UNKNOWN_TASK}, "1.0", -32001, UNKNOWN_TASK),
            ("ListTasks", {}, "1.0", -32602, "context_id"),
            ("GetTask", {"id": UNKNOWN_TASK}, "0.3", -32009, "0.3"),
            ("GetTask", {"id": UNKNOWN_TASK}, "1.1", -32009, "1.0"),
            ("CreateTaskPushNotificationConfig", {"taskId": UNKNOWN_TASK, "url": "https://x.example"}, "1.0",
             -32003, "push"),
        ]
        for method, params, version, code, needle in cases:
            answer = await jsonrpc(base, method, params, version)
            error = answer.get("error") or {}
            assert error.get("code") == code and needle in error.get("message", ""), (method, version, answer)

    async def finished_tasks_refuse_cancel_and_subscribe_on_the_wire() -> None:
        answer = await jsonrpc(base, "SendMessage", msg(
            parts=[{"data": {"seconds": 0, "text": "w"}}], metadata={"skill": SKILL}))
        task = answer["result"]["task"]
        assert task["status"]["state"] == "TASK_STATE_COMPLETED", answer
        cancel = await jsonrpc(base, "CancelTask", {"id": task["id"]})
        assert cancel["error"]["code"] == -32002, cancel
        async with httpx.AsyncClient(timeout=30) as http:
            r = await http.post(f"{base}/jsonrpc", headers={"A2A-Version": "1.0"}, json={
                "jsonrpc": "2.0", "id": 2, "method": "SubscribeToTask", "params": {"id": task["id"]}})
        assert "-32004" in r.text, r.text

    async def a_body_over_the_message_limit_is_refused() -> None:
        big = msg(parts=[{"data": {"seconds": 0, "text": "x" * (9 * 1024 * 1024)}}], metadata={"skill": SKILL})
        async with httpx.AsyncClient(timeout=30) as http:
            r = await http.post(f"{base}/jsonrpc", headers={"A2A-Version": "1.0"},
                                json={"jsonrpc": "2.0", "id": 3, "method": "SendMessage", "params": big})
        assert r.status_code == 413, (r.status_code, r.text[:200])

    return [("JSONRPC wire: " + b.__name__, b) for b in (
        error_codes_on_the_wire, finished_tasks_refuse_cancel_and_subscribe_on_the_wire,
        a_body_over_the_message_limit_is_refused)]


async def restart_mid_task(binding: str) -> None:
    """kill -9 mid-task and a restart on the same data dir: subscribe gives the Task, then its terminal state."""
    data = tempfile.mkdtemp(prefix="errand-a2a-restart-")
    server = Server(data)
    worker = start_worker(server.addr)
    try:
        await wait_for_skill(server.base)
        async with await connect(server.base, binding, streaming=False) as c:
            task = await one_task(c, send(message({"seconds": 3, "text": "durable"}, context="restart"), True))
            await until_working(c, task.id)
        server.kill()
        end_worker(worker)
        server = Server(data)
        worker = start_worker(server.addr)
        await wait_for_skill(server.base)
        async with await connect(server.base, binding, streaming=True) as c:
            got = await events(c.subscribe(SubscribeToTaskRequest(id=task.id)))
            check_stream(got, task.id, "durable")
    finally:
        end_worker(worker)
        server.stop()
        shutil.rmtree(data, ignore_errors=True)


async def run(results: dict[str, str]) -> None:
    async def check(name: str, body: Callable[[], Awaitable[None]]) -> None:
        try:
            await body()
            results[name] = "passed"
        except Exception:  # noqa: BLE001 - every failure is reported by name
            results[name] = "failed"
            print(f"--- {name}", file=sys.stderr)
            traceback.print_exc()

    data = tempfile.mkdtemp(prefix="errand-a2a-")
    server = Server(data)
    worker = start_worker(server.addr)
    try:
        await wait_for_skill(server.base)
        for binding in ("GRPC", "JSONRPC"):
            for name, body in suite(server.base, binding):
                await check(name, body)
        for name, body in wire_codes(server.base):
            await check(name, body)
    finally:
        end_worker(worker)
        server.stop()
        shutil.rmtree(data, ignore_errors=True)
    for binding in ("GRPC", "JSONRPC"):
        await check(f"{binding}: restart_mid_task", lambda b=binding: restart_mid_task(b))  # type: ignore[misc]


def main() -> int:
    results: dict[str, str] = {}
    asyncio.run(asyncio.wait_for(run(results), timeout=300))
    for name, outcome in results.items():
        print(f"{outcome:6} {name}")
    failed = sum(1 for o in results.values() if o == "failed")
    print(f"a2a-interop: {len(results) - failed} passed, {failed} failed")
    return 1 if failed or not results else 0


if __name__ == "__main__":
    sys.exit(main())
