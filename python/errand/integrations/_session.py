"""The model-callable session tools every adapter offers, written once.

`errand_read_result(task_id, offset, max_bytes)` pages through a result that
arrived truncated (or by reference); `errand_pending()` answers with the
server's digest of what the conversation still waits for, its count of
results made those the model has not been shown by the rule of the digest
`AsyncAgent` prepends to turns (`errand._digest.digest_text`);
`errand_cancel(task_id, reason)` cancels one of the conversation's calls,
refused unless its tool is registered `cancellable_by_model` (looked up with
ListTools). The adapters wrap these `SessionTool`s in their framework's tool
type; what a tool returns is JSON or the server's own text (that count aside).
"""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Awaitable, Mapping
from dataclasses import dataclass
from typing import Any, Callable, Optional, TypeVar

from errand._digest import session_digest
from errand._jsonable import dumps
from errand.aio import AsyncClient
from errand.client import Client
from errand.errors import (
    ErrandError,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    OutOfRange,
    RpcError,
)
from errand.integrations._tools import NOT_MADE, AnyClient, for_developer, not_made
from errand.manager import AsyncToolManager

__all__ = ["Refused", "SessionTool", "SessionTools", "run_session_tool", "session_tools"]

T = TypeVar("T")

#: Largest page `errand_read_result` returns, so that one page cannot flood
#: the model's context (about 4 bytes per token).
MAX_PAGE_BYTES = 16 * 1024


class Refused(ErrandError):
    """A session tool declined the model's call; the message says why."""


@dataclass(frozen=True)
class SessionTool:
    """One model-callable tool: name, description, JSON Schema and a coroutine body
    that takes the arguments object and returns the text the model reads.

    The body raises `Refused` or an `errand.errors.RpcError` for a call the
    model can correct; the adapters hand those messages to the model.
    """

    name: str
    description: str
    input_schema: dict[str, Any]
    call: Callable[[Mapping[str, Any]], Awaitable[str]]

    def schema(self) -> dict[str, Any]:
        return copy.deepcopy(self.input_schema)  # a copy frameworks may edit


class SessionTools:
    """The session tools' bodies, over any errand client.

    Args:
        client: a `Client`, an `AsyncToolManager` (both work from any loop or
            thread) or an `AsyncClient` (from its own loop only).
        session_id: the conversation's session (default: the client's).
    """

    def __init__(self, client: AnyClient, session_id: Optional[str] = None) -> None:
        if not isinstance(client, (Client, AsyncClient, AsyncToolManager)):
            raise TypeError(
                "session tools need a Client, an AsyncClient or an AsyncToolManager, "
                f"not {type(client).__name__}"
            )
        self.client = client
        self.session_id = session_id or client.session_id

    async def _call(self, name: str, *args: Any, **kwargs: Any) -> Any:
        client = self.client
        if isinstance(client, AsyncToolManager):
            client = client.client
        method = getattr(client, name)
        if isinstance(client, AsyncClient):
            return await method(*args, **kwargs)
        return await asyncio.to_thread(method, *args, **kwargs)

    async def read_result(self, task_id: str, offset: int = 0, max_bytes: int = 0) -> str:
        """One page of a task's full result, as JSON: data, offset,
        next_offset, total_bytes, eof. Pages are at most 16 KiB."""
        await self._own_task(task_id)
        size = MAX_PAGE_BYTES if max_bytes <= 0 else min(max_bytes, MAX_PAGE_BYTES)
        chunk = await self._call("read_result", task_id, offset=max(0, offset), max_bytes=size)
        return dumps(
            {
                "task_id": task_id,
                "offset": chunk.offset,
                "next_offset": chunk.offset + len(chunk.data.encode()),
                "total_bytes": chunk.total_bytes,
                "eof": chunk.eof,
                "data": chunk.data,
            },
            "errand_read_result's answer",
            ensure_ascii=False,
        )

    async def pending(self) -> str:
        """The session's digest text, as the digest that leads a turn words it;
        JSON counts when there is nothing to say.

        The server's count of unacknowledged results is made the number the
        model has not been shown, by the rule of the digest `AsyncAgent`
        prepends (`errand._digest.digest_text`), with what the agent that
        drives this session in this process has shown its model (the message
        in its hands included): a result the model is handling is not called
        unacknowledged, and SILENT ones are said to come with the next user
        message. With no such agent, the server's count.
        """
        digest = await self._call("pending_digest", self.session_id)
        text, count = await session_digest(self.session_id, digest)
        if text:
            return text
        return dumps(
            {"pending": digest.pending_count, "unacknowledged": count},
            "errand_pending's answer",
        )

    async def cancel(self, task_id: str, reason: str = "") -> str:
        """Cancel one of the session's tasks whose tool is `cancellable_by_model`."""
        task = await self._own_task(task_id)
        tools = {t.name: t for t in await self._call("list_tools")}
        info = tools.get(task.tool)
        if info is None or not info.cancellable_by_model:
            raise Refused(
                f"errand_cancel refused: tool `{task.tool}` (task {task_id}) is not "
                "cancellable_by_model"
            )
        done = await self._call("cancel", task_id, reason=reason)
        answer = {"task_id": done.task_id, "status": done.status.name}
        return dumps(answer, "errand_cancel's answer")

    async def _own_task(self, task_id: str) -> Any:
        task = await self._call("get_task", task_id)
        if task.session_id != self.session_id:
            raise Refused(f"task {task_id} is not one of this conversation's tasks")
        return task

    def tools(self, *, cancel: bool = True) -> list[SessionTool]:
        """The tools for the model: read_result and pending, and cancel unless told not to."""

        async def read(args: Mapping[str, Any]) -> str:
            return await self.read_result(
                str(args.get("task_id", "")),
                _int(args.get("offset"), "offset"),
                _int(args.get("max_bytes"), "max_bytes"),
            )

        async def pending(args: Mapping[str, Any]) -> str:
            return await self.pending()

        async def cancel_one(args: Mapping[str, Any]) -> str:
            return await self.cancel(str(args.get("task_id", "")), str(args.get("reason") or ""))

        task_id = {"type": "string", "description": "the task ID from the acknowledgement"}
        out = [
            SessionTool(
                "errand_read_result",
                "Read the full result of an async task whose result arrived truncated, one "
                "page at a time. Returns JSON with data, next_offset, total_bytes and eof; "
                "call again with offset=next_offset until eof is true.",
                {
                    "type": "object",
                    "properties": {
                        "task_id": task_id,
                        "offset": {"type": "integer", "minimum": 0, "default": 0},
                        "max_bytes": {
                            "type": "integer",
                            "minimum": 0,
                            "maximum": MAX_PAGE_BYTES,
                            "default": 0,
                        },
                    },
                    "required": ["task_id"],
                    "additionalProperties": False,
                },
                read,
            ),
            SessionTool(
                "errand_pending",
                "List the async tasks of this conversation that are still running, with "
                "their progress, and how many results of earlier calls you have not been "
                "shown yet.",
                {"type": "object", "properties": {}, "additionalProperties": False},
                pending,
            ),
        ]
        if cancel:
            out.append(
                SessionTool(
                    "errand_cancel",
                    "Cancel a running async task of this conversation, giving a short reason. "
                    "Only tools that allow it can be cancelled.",
                    {
                        "type": "object",
                        "properties": {
                            "task_id": task_id,
                            "reason": {"type": "string", "maxLength": 1024},
                        },
                        "required": ["task_id", "reason"],
                        "additionalProperties": False,
                    },
                    cancel_one,
                )
            )
        return out


#: Errors of a session tool that the model can act on (another task ID, an
#: offset within the result, a tool that may not be cancelled).
MODEL_VISIBLE = (Refused, InvalidArgument, NotFound, FailedPrecondition, OutOfRange)


async def run_session_tool(tool: SessionTool, arguments: Any) -> tuple[bool, str]:
    """Run `tool` for a framework: (True, its text) or (False, why it failed).

    Every errand error comes back as text for the model, never raised into
    the framework (a LangGraph checkpoint would keep a tool call no
    ToolMessage answers): a refusal with the server's message, a server down
    or not answering with what that means (`_tools.not_made`).
    """
    if not isinstance(arguments, Mapping):
        return False, f"arguments of {tool.name} must be a JSON object"
    try:
        return True, await tool.call(arguments)
    except MODEL_VISIBLE as exc:
        return False, exc.message if isinstance(exc, RpcError) else str(exc)
    except NOT_MADE as exc:
        if for_developer(exc):
            raise
        return False, not_made(tool.name, exc, submit=False)


def _int(value: Any, name: str) -> int:
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise Refused(f"{name} must be a non-negative integer, not {value!r}")
    return int(value)


def session_tools(
    client: AnyClient, *, session_id: Optional[str] = None, cancel: bool = True
) -> list[SessionTool]:
    """`errand_read_result`, `errand_pending` and (with `cancel`) `errand_cancel`
    for the conversation in `session_id` (default: the client's)."""
    return SessionTools(client, session_id).tools(cancel=cancel)
