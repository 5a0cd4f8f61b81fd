"""The session tools' shared bodies (errand_read_result, errand_pending, errand_cancel),
with a scripted client (no server)."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from typing import Any, Optional

import grpc
import pytest

from errand import PendingDigest, ResultChunk, Task, TaskStatus, ToolInfo
from errand.errors import NotFound
from errand.integrations import Refused, session_tools
from errand.integrations._session import run_session_tool

from ..fakes import FakeSession

RESULT = "ünïcode " * 5000  # 50 000 bytes in UTF-8: four pages of at most 16 KiB


def task(task_id: str, tool: str, session: str = "s1") -> Task:
    return Task(
        task_id,
        session,
        tool,
        "{}",
        TaskStatus.RUNNING,
        None,
        None,
        1,
        None,
        None,
        None,
        0,
        0,
        0,
        "",
    )


class ScriptedClient(FakeSession):
    def __init__(self) -> None:
        super().__init__()
        self.tasks = {
            "t1": task("t1", "crawl"),
            "t2": task("t2", "search"),
            "x9": task("x9", "crawl", session="someone-else"),
        }
        self.cancelled: list[tuple[str, str]] = []
        self.digest = PendingDigest([], 4, 4, "", 0, 0)

    async def get_task(self, task_id: str) -> Task:
        if task_id not in self.tasks:
            raise NotFound(grpc.StatusCode.NOT_FOUND, f"no task {task_id}", "GetTask")
        return self.tasks[task_id]

    async def list_tools(self) -> list[ToolInfo]:
        return [
            ToolInfo("crawl", "", {}, 0, 1, cancellable_by_model=True),
            ToolInfo("search", "", {}, 0, 1),
        ]

    async def cancel(self, task_id: str, *, reason: str = "") -> Task:
        self.cancelled.append((task_id, reason))
        return dataclasses.replace(self.tasks[task_id], status=TaskStatus.CANCELLED)

    async def pending_digest(
        self, session_id: Optional[str] = None, *, max_bytes: int = 0
    ) -> PendingDigest:
        return self.digest

    async def read_result(
        self, task_id: str, *, offset: int = 0, max_bytes: int = 0
    ) -> ResultChunk:
        raw = RESULT.encode()
        end = min(len(raw), offset + max_bytes)
        while end < len(raw) and (raw[end] & 0xC0) == 0x80:
            end -= 1
        return ResultChunk(raw[offset:end].decode(), offset, len(raw), end == len(raw))


def tools(client: Any) -> dict[str, Any]:
    return {t.name: t for t in session_tools(client)}


def test_read_result_pages_rebuild_the_result_within_16_kib_each() -> None:
    async def scenario() -> None:
        read = tools(ScriptedClient())["errand_read_result"]
        parts, offset, pages = [], 0, 0
        while True:
            ok, text = await run_session_tool(read, {"task_id": "t1", "offset": offset})
            assert ok
            page = json.loads(text)
            assert len(page["data"].encode()) <= 16 * 1024
            parts.append(page["data"])
            offset, pages = page["next_offset"], pages + 1
            if page["eof"]:
                break
        assert "".join(parts) == RESULT and pages == 4

    asyncio.run(scenario())


def test_cancel_needs_a_cancellable_tool_and_a_task_of_this_session() -> None:
    async def scenario() -> None:
        client = ScriptedClient()
        cancel = tools(client)["errand_cancel"]
        ok, text = await run_session_tool(cancel, {"task_id": "t1", "reason": "not needed"})
        assert ok and json.loads(text) == {"task_id": "t1", "status": "CANCELLED"}
        assert client.cancelled == [("t1", "not needed")]
        ok, text = await run_session_tool(cancel, {"task_id": "t2", "reason": "r"})
        assert not ok and "`search`" in text and "cancellable_by_model" in text
        ok, text = await run_session_tool(cancel, {"task_id": "x9", "reason": "r"})
        assert not ok and "not one of this conversation's tasks" in text
        ok, text = await run_session_tool(cancel, {"task_id": "nope", "reason": "r"})
        assert not ok and text == "no task nope"
        assert client.cancelled == [("t1", "not needed")]
        with pytest.raises(Refused):
            await cancel.call({"task_id": "t2", "reason": "r"})

    asyncio.run(scenario())


def test_pending_is_the_server_text_verbatim_else_counts() -> None:
    async def scenario() -> None:
        client = ScriptedClient()
        pending = tools(client)["errand_pending"]
        assert await pending.call({}) == '{"pending": 0, "unacknowledged": 0}'
        client.digest = PendingDigest([], 5, 4, "<the server's digest>", 1, 2)
        assert await pending.call({}) == "<the server's digest>"

    asyncio.run(scenario())


def test_schemas_and_the_cancel_switch() -> None:
    client = ScriptedClient()
    names = [t.name for t in session_tools(client, cancel=False)]
    assert names == ["errand_read_result", "errand_pending"]
    cancel = tools(client)["errand_cancel"].schema()
    assert cancel["required"] == ["task_id", "reason"]
    assert cancel["properties"]["reason"]["maxLength"] == 1024
