"""What a running tool sees of its task: `current_task()`, progress and resume.

A `Worker` sets the `TaskContext` of each call it runs (in the thread of a
plain function, in the asyncio task of an `async def` one), so that the tool
can poll for cancellation, `report_progress(...)` and read `resume_detail()`.

A long tool reports progress with `report_progress(progress, total, message,
detail)` (the module function, or the method of `current_task()`), from a
thread or a coroutine alike; the server passes the latest to the session
(at most one per interval) and hands the last `detail` of a lost run to the
next attempt as `resume_detail()`, so the tool can pick up where it was.
A tool that returns `Summarized(value, summary)` sends `summary` with its
result: the model sees it instead of a cut preview when the result is over
its budget.
"""

from __future__ import annotations

import contextvars
import dataclasses
import json
import threading
from typing import Any, Callable, Optional

from errand import _outgoing
from errand._outgoing import MAX_DETAIL_BYTES, MAX_PROGRESS_MESSAGE_BYTES
from errand.v1 import errand_pb2 as pb

__all__ = [
    "MAX_DETAIL_BYTES",
    "MAX_PROGRESS_MESSAGE_BYTES",
    "Summarized",
    "TaskContext",
    "current_task",
    "report_progress",
    "resume_detail",
]


@dataclasses.dataclass
class TaskContext:
    """The task a tool call is running for (see `current_task()`)."""

    task_id: str
    session_id: str
    tool: str
    attempt: int
    timeout_ms: int
    #: Set when the server cancels the task or times it out; poll it from
    #: long-running plain functions. `cancel_reason` then says which.
    cancelled: threading.Event = dataclasses.field(default_factory=threading.Event)
    cancel_reason: str = ""
    #: The detail_json the last run of this task reported before it was lost
    #: ("" on a first attempt or when none was reported); see `resume_detail`.
    resume_detail_json: str = ""
    #: Sends one WorkerMessage from any thread (set by the worker).
    _send: Optional[Callable[[pb.WorkerMessage], None]] = dataclasses.field(
        default=None, repr=False
    )
    #: The most bytes one message to the server may take (set by the worker
    #: from the server's Registered.max_message_bytes).
    _max_message: int = dataclasses.field(default=_outgoing.DEFAULT_MAX_MESSAGE_BYTES, repr=False)

    def is_cancelled(self) -> bool:
        return self.cancelled.is_set()

    @property
    def resume_detail(self) -> Any:
        """The parsed `resume_detail_json` (what an earlier attempt passed as
        `detail`), or None."""
        return json.loads(self.resume_detail_json) if self.resume_detail_json else None

    def report_progress(
        self,
        progress: float = 0.0,
        total: float = 0.0,
        message: str = "",
        detail: Any = None,
    ) -> None:
        """Report how far the task is (from the tool's thread or coroutine).

        Args:
            progress: work done, in the tool's own unit (0: unknown).
            total: total work in the same unit (0: unknown).
            message: a short status for people and the model; cut here at
                `MAX_PROGRESS_MESSAGE_BYTES` (1 KiB of UTF-8, on a character
                boundary), as the server would cut it (proto `Progress.message`).
            detail: JSON-serialisable state to resume from, encoded as
                results are (Enum keys and values as their values), at most
                `MAX_DETAIL_BYTES` (64 KiB) as JSON, the server's bound (proto
                `Progress.detail_json`): a later attempt gets it as
                `resume_detail`.

        Never blocks; a report after the task was cancelled is dropped.

        Raises:
            ValueError: a negative progress or total; a detail that is not
                JSON (NaN and infinities, keys JSON cannot carry or would write
                alike included) or is over
                `MAX_DETAIL_BYTES`; or a report larger than the server's
                message limit (`Registered.max_message_bytes`, its
                --max-message-bytes), which would otherwise end the worker's
                stream. Nothing is sent then; the task goes on.
        """
        msg = _outgoing.progress(
            self.task_id,
            self.attempt,
            progress,
            total,
            message,
            detail,
            self._max_message,
        )
        if self._send is not None and not self.cancelled.is_set():
            self._send(msg)


@dataclasses.dataclass(frozen=True)
class Summarized:
    """A tool's return value with a short `summary` for the model, which the
    server shows instead of a cut preview when the value is over the
    result budget (keep it within the budget)."""

    value: Any
    summary: str


_current: contextvars.ContextVar[Optional[TaskContext]] = contextvars.ContextVar(
    "errand_current_task", default=None
)


def current_task() -> Optional[TaskContext]:
    """The task of the tool call running in this thread or asyncio task, or None."""
    return _current.get()


def report_progress(
    progress: float = 0.0, total: float = 0.0, message: str = "", detail: Any = None
) -> None:
    """`current_task().report_progress(...)`; raises RuntimeError outside a tool call."""
    ctx = _current.get()
    if ctx is None:
        raise RuntimeError("report_progress() is for a tool call that a Worker runs")
    ctx.report_progress(progress, total, message, detail)


def resume_detail() -> Any:
    """What an earlier attempt of the running task reported as `detail` (None if nothing)."""
    ctx = _current.get()
    return ctx.resume_detail if ctx is not None else None
