"""Plain Python values for what the server returns: tools, tasks, acks, completions.

The client converts every protobuf message into one of these frozen
dataclasses, so callers never touch generated code. JSON text fields are kept
as sent (`result_json`, `arguments_json`) and parsed on demand (`result`,
`arguments`).
"""

from __future__ import annotations

import datetime as _dt
import enum
import json
from dataclasses import dataclass
from typing import Any, Optional

from errand.v1 import errand_pb2 as pb

__all__ = ["Ack", "Completion", "Task", "TaskStatus", "ToolError", "ToolInfo"]


class TaskStatus(enum.IntEnum):
    """Where a task is: QUEUED → RUNNING → SUCCEEDED | FAILED | CANCELLED | TIMED_OUT."""

    UNSPECIFIED = 0
    QUEUED = 1
    RUNNING = 2
    SUCCEEDED = 3
    FAILED = 4
    CANCELLED = 5
    TIMED_OUT = 6

    @property
    def finished(self) -> bool:
        """True for the four final states."""
        return self >= TaskStatus.SUCCEEDED


@dataclass(frozen=True)
class ToolError:
    """Why a task did not succeed: a machine-readable code and a message."""

    code: str
    message: str


@dataclass(frozen=True)
class ToolInfo:
    """A tool as ListTools returns it (the description ends with the async notice)."""

    name: str
    description: str
    input_schema: dict[str, Any]
    timeout_ms: int
    workers: int


@dataclass(frozen=True)
class Task:
    """One tool call and its state, as GetTask and CancelTask return it."""

    task_id: str
    session_id: str
    tool: str
    arguments_json: str
    status: TaskStatus
    result_json: Optional[str]
    error: Optional[ToolError]
    attempts: int
    created_at: Optional[_dt.datetime]
    started_at: Optional[_dt.datetime]
    finished_at: Optional[_dt.datetime]
    timeout_ms: int
    seq: int
    elapsed_ms: int
    idempotency_key: str

    @property
    def arguments(self) -> Any:
        return _loads(self.arguments_json, {})

    @property
    def result(self) -> Any:
        """The parsed result when SUCCEEDED, else None."""
        return _loads(self.result_json, None)


@dataclass(frozen=True)
class Ack:
    """SubmitTool's answer: the task id and the text to hand the model at once."""

    task_id: str
    ack: str
    task: Task
    deduplicated: bool

    def __str__(self) -> str:
        return self.ack


@dataclass(frozen=True)
class Completion:
    """One finished task on a session's completion stream."""

    seq: int
    task_id: str
    session_id: str
    tool: str
    arguments_json: str
    status: TaskStatus
    result_json: Optional[str]
    error: Optional[ToolError]
    elapsed_ms: int
    attempts: int
    message: str
    completed_at: Optional[_dt.datetime]

    @property
    def ok(self) -> bool:
        return self.status == TaskStatus.SUCCEEDED

    @property
    def arguments(self) -> Any:
        return _loads(self.arguments_json, {})

    @property
    def result(self) -> Any:
        """The parsed result when SUCCEEDED, else None."""
        return _loads(self.result_json, None)

    def text(self) -> str:
        """The model-facing text: the server's message, or one made here if it is empty."""
        if self.message:
            return self.message
        if self.ok:
            body = f"result: {self.result_json}"
        elif self.error is not None:
            body = f"error ({self.error.code}): {self.error.message}"
        else:
            body = "no result"
        return (
            f"Async tool result for task {self.task_id} ({self.tool}), "
            f"status {self.status.name}: {body}"
        )


def _loads(text: Optional[str], default: Any) -> Any:
    if not text:
        return default
    return json.loads(text)


def _ts(msg: Any, field: str) -> Optional[_dt.datetime]:
    if not msg.HasField(field):
        return None
    value: _dt.datetime = getattr(msg, field).ToDatetime(tzinfo=_dt.timezone.utc)
    return value


def _error(msg: Any) -> Optional[ToolError]:
    if msg.WhichOneof("outcome") != "error":
        return None
    return ToolError(code=msg.error.code, message=msg.error.message)


def _result(msg: Any) -> Optional[str]:
    if msg.WhichOneof("outcome") != "result_json":
        return None
    value: str = msg.result_json
    return value


def _status(value: int) -> TaskStatus:
    try:
        return TaskStatus(value)
    except ValueError:
        return TaskStatus.UNSPECIFIED


def tool_from_pb(msg: pb.Tool) -> ToolInfo:
    schema: dict[str, Any] = json.loads(msg.input_schema_json) if msg.input_schema_json else {}
    return ToolInfo(
        name=msg.name,
        description=msg.description,
        input_schema=schema,
        timeout_ms=msg.timeout_ms,
        workers=msg.workers,
    )


def task_from_pb(msg: pb.Task) -> Task:
    return Task(
        task_id=msg.task_id,
        session_id=msg.session_id,
        tool=msg.tool,
        arguments_json=msg.arguments_json,
        status=_status(msg.status),
        result_json=_result(msg),
        error=_error(msg),
        attempts=msg.attempts,
        created_at=_ts(msg, "created_at"),
        started_at=_ts(msg, "started_at"),
        finished_at=_ts(msg, "finished_at"),
        timeout_ms=msg.timeout_ms,
        seq=msg.seq,
        elapsed_ms=msg.elapsed_ms,
        idempotency_key=msg.idempotency_key,
    )


def ack_from_pb(msg: pb.SubmitToolResponse) -> Ack:
    return Ack(
        task_id=msg.task_id,
        ack=msg.ack,
        task=task_from_pb(msg.task),
        deduplicated=msg.deduplicated,
    )


def completion_from_pb(msg: pb.Completion) -> Completion:
    return Completion(
        seq=msg.seq,
        task_id=msg.task_id,
        session_id=msg.session_id,
        tool=msg.tool,
        arguments_json=msg.arguments_json,
        status=_status(msg.status),
        result_json=_result(msg),
        error=_error(msg),
        elapsed_ms=msg.elapsed_ms,
        attempts=msg.attempts,
        message=msg.message,
        completed_at=_ts(msg, "completed_at"),
    )
