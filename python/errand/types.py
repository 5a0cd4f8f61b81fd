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
from typing import Any, Optional, TypeVar, Union

from errand.v1 import errand_pb2 as pb

E = TypeVar("E", bound=enum.IntEnum)

__all__ = [
    "Ack",
    "Completion",
    "DedupPolicy",
    "DeliveryPolicy",
    "Fallback",
    "FallbackUsed",
    "PendingDigest",
    "Progress",
    "ResultChunk",
    "SessionEvent",
    "Task",
    "TaskStatus",
    "ToolError",
    "ToolInfo",
]


class _NamedIntEnum(enum.IntEnum):
    """An IntEnum that prints as its name (`str`, `format`, "%s": "RUNNING",
    not "2") and still is its number everywhere else: comparisons, hashing,
    `int()`, JSON, and a numeric format spec (f"{status:d}")."""

    def __str__(self) -> str:
        return self.name

    def __format__(self, format_spec: str) -> str:
        if format_spec and format_spec[-1] in "bcdeEfFgGnoxX%":
            return int.__format__(int(self), format_spec)
        return format(self.name, format_spec)


class TaskStatus(_NamedIntEnum):
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


class DeliveryPolicy(_NamedIntEnum):
    """How a completion reaches the model (resolved by the server at submit).

    UNSPECIFIED on a submit means the tool's policy, on a tool the server's
    default (WHEN_IDLE unless configured).
    """

    UNSPECIFIED = 0
    WHEN_IDLE = 1  # between turns, coalesced with results arriving together
    INTERRUPT = 2  # at once: through the agent's interrupt() hook when busy
    SILENT = 3  # never starts a turn: leads the next user message


class DedupPolicy(_NamedIntEnum):
    """Whether identical calls in flight share one run."""

    UNSPECIFIED = 0
    OFF = 1
    JOIN_IN_FLIGHT = 2


def to_enum(cls: type[E], value: Union[E, str, int, None], what: str) -> E:
    """`value` as a member of `cls`: a member, its name (any case) or its number."""
    if value is None:
        return cls(0)
    if isinstance(value, cls):
        return value
    if isinstance(value, str):
        member = cls.__members__.get(value.strip().upper())
        if member is not None:
            return member
    elif isinstance(value, int) and not isinstance(value, bool):
        try:
            return cls(value)
        except ValueError:
            pass
    names = ", ".join(m.name.lower() for m in cls)
    raise ValueError(f"{what} must be one of {names}; got {value!r}")


@dataclass(frozen=True)
class Fallback:
    """What answers a call that ends FAILED or TIMED_OUT after its retries.

    Exactly one of: `tool` (run that tool with the same arguments) or
    `last_good_max_age_ms` (answer with the session's last SUCCEEDED result
    of the same call if at most this many milliseconds old).
    """

    tool: str = ""
    last_good_max_age_ms: int = 0

    def __post_init__(self) -> None:
        if bool(self.tool) == bool(self.last_good_max_age_ms):
            raise ValueError("a Fallback takes exactly one of tool= or last_good_max_age_ms= (> 0)")
        if self.last_good_max_age_ms < 0:
            raise ValueError("last_good_max_age_ms must be > 0 (milliseconds)")

    def to_pb(self) -> pb.Fallback:
        if self.tool:
            return pb.Fallback(tool=self.tool)
        return pb.Fallback(last_good_max_age_ms=self.last_good_max_age_ms)


def fallback_from_pb(msg: Any) -> Optional[Fallback]:
    kind = msg.WhichOneof("kind")
    if kind == "tool":
        return Fallback(tool=msg.tool)
    if kind == "last_good_max_age_ms" and msg.last_good_max_age_ms:
        return Fallback(last_good_max_age_ms=msg.last_good_max_age_ms)
    return None


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
    delivery: DeliveryPolicy = DeliveryPolicy.UNSPECIFIED
    dedup: DedupPolicy = DedupPolicy.UNSPECIFIED
    #: Most bytes of a result delivered inline; 0 means the server's default.
    result_budget_bytes: int = 0
    fallback: Optional[Fallback] = None
    #: Whether a model may cancel the tool's calls (the `errand_cancel` tool).
    cancellable_by_model: bool = False
    #: Default queue timeout of a call in milliseconds from its submit (no
    #: worker took it by then: TIMED_OUT, "queue_timeout"); 0 means the
    #: server's default (--default-queue-timeout-ms). `timeout_ms` bounds a
    #: run, from dispatch; 0 there too means the server's default.
    queue_timeout_ms: int = 0
    #: Tasks of the tool waiting for a worker on this server. With several
    #: servers on one database, tasks waiting in the shared store are not
    #: counted until a server claims them.
    queued: int = 0
    #: Tasks of the tool running on this server's workers.
    running: int = 0


@dataclass(frozen=True)
class Progress:
    """A running task's progress, as its worker reported it (not durable).

    `progress` and `total` are in the tool's own unit (0: unknown); `index`
    rises with each report of the task; `elapsed_ms` is from submit.
    """

    task_id: str
    tool: str
    index: int
    progress: float
    total: float
    message: str
    detail_json: str
    elapsed_ms: int
    session_id: str

    @property
    def detail(self) -> Any:
        """The parsed `detail_json`, or None."""
        return _loads(self.detail_json, None)

    @property
    def fraction(self) -> Optional[float]:
        """progress / total, or None when the total is unknown."""
        return self.progress / self.total if self.total > 0 else None


#: Most bytes of a result a completion's server message repeats (the
#: server's 64 KiB); a longer one travels only in `result_json`.
MESSAGE_QUOTES_AT_MOST = 64 * 1024


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
    delivery: DeliveryPolicy = DeliveryPolicy.UNSPECIFIED
    #: The latest progress of the current run; None when none (not durable).
    progress: Optional[Progress] = None
    #: Set when a fallback answered (the outcome is then the fallback's), as
    #: on its completion: how the call itself ended and what answered.
    fallback: Optional[FallbackUsed] = None
    #: The server-chosen ID of the worker connection running the task (as
    #: the worker's registration gives it); empty unless RUNNING on a worker
    #: of this server.
    worker_id: str = ""
    #: That worker's name; empty when `worker_id` is.
    worker_name: str = ""
    #: The task this one retries (RetryTask); empty for a submitted task.
    retry_of: str = ""

    @property
    def arguments(self) -> Any:
        return _loads(self.arguments_json, {})

    @property
    def result(self) -> Any:
        """The parsed result when SUCCEEDED and carried here, else None.

        None too for a SUCCEEDED result over its task's budget
        (`result_truncated`, or sent by reference): the completion carries
        only `result_preview` and `result_bytes`. Read it whole with
        `client.completion_result(completion)` (the parsed value, from
        `Client` or `AsyncClient`), `client.read_full_result(task_id)` (its
        JSON text) or `client.result(task_id)`; a page with `read_result`.
        """
        return _loads(self.result_json, None)


@dataclass(frozen=True)
class Ack:
    """SubmitTool's answer: the task id and the text to hand the model at once."""

    task_id: str
    ack: str
    task: Task
    deduplicated: bool
    #: True when the call joined an identical call in flight (JOIN_IN_FLIGHT):
    #: `task_id` is that call's.
    joined: bool = False

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
    delivery: DeliveryPolicy = DeliveryPolicy.UNSPECIFIED
    #: True when the result exceeded the task's budget: `result_json` is then
    #: None and `result_preview` holds a preview; read the whole with
    #: `read_result`/`read_full_result`.
    result_truncated: bool = False
    #: Size of the full result_json in bytes (also when not truncated).
    result_bytes: int = 0
    result_preview: str = ""
    #: Set when a fallback answered (the outcome is then the fallback's).
    fallback: Optional[FallbackUsed] = None

    @property
    def ok(self) -> bool:
        return self.status == TaskStatus.SUCCEEDED

    @property
    def arguments(self) -> Any:
        return _loads(self.arguments_json, {})

    @property
    def result(self) -> Any:
        """The parsed result when SUCCEEDED and carried here, else None.

        None too for a SUCCEEDED result over its task's budget
        (`result_truncated`, or sent by reference): the completion carries
        only `result_preview` and `result_bytes`. Read it whole with
        `client.completion_result(completion)` (the parsed value, from
        `Client` or `AsyncClient`), `client.read_full_result(task_id)` (its
        JSON text) or `client.result(task_id)`; a page with `read_result`.
        """
        return _loads(self.result_json, None)

    def text(self) -> str:
        """The model-facing text: the server's message, or one made here if it is empty.

        A result within the call's budget that the server's message does not
        repeat (over 64 KiB) follows the message, so that the model sees what
        the budget allows; a result sent by reference is read with ReadResult,
        as the message says.
        """
        if self.message:
            inline = self.result_json or ""
            if self.ok and len(inline) > MESSAGE_QUOTES_AT_MOST and inline not in self.message:
                return f"{self.message}\nResult: {inline}"
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


@dataclass(frozen=True)
class FallbackUsed:
    """On a completion a fallback answered: how the call itself ended, and what answered."""

    primary_status: TaskStatus
    primary_error: Optional[ToolError]
    #: The fallback tool that ran; "" when a last-good result answered.
    tool: str
    #: Age of the last-good result in ms; 0 when a fallback tool answered.
    last_good_age_ms: int
    #: The task whose result answered.
    task_id: str


#: One event of `session_events`: a completion or a progress report.
SessionEvent = Union[Completion, Progress]


@dataclass(frozen=True)
class PendingDigest:
    """What a session waits for (PendingDigest).

    `text` is for the model, verbatim; it is "" when nothing is pending and
    every completion is acknowledged.
    """

    pending: list[Task]
    last_seq: int
    acked_seq: int
    text: str
    unacknowledged: int
    pending_count: int


@dataclass(frozen=True)
class ResultChunk:
    """The bytes [offset, offset + len(data.encode())) of a task's result text."""

    data: str
    offset: int
    total_bytes: int
    eof: bool


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
        delivery=_member(DeliveryPolicy, msg.delivery),
        dedup=_member(DedupPolicy, msg.dedup),
        result_budget_bytes=msg.result_budget_bytes,
        fallback=fallback_from_pb(msg.fallback) if msg.HasField("fallback") else None,
        cancellable_by_model=msg.cancellable_by_model,
        queue_timeout_ms=msg.queue_timeout_ms,
        queued=msg.queued,
        running=msg.running,
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
        delivery=_member(DeliveryPolicy, msg.delivery),
        progress=progress_from_pb(msg.progress) if msg.HasField("progress") else None,
        fallback=_fallback_used(msg.fallback) if msg.HasField("fallback") else None,
        worker_id=msg.worker_id,
        worker_name=msg.worker_name,
        retry_of=msg.retry_of,
    )


def ack_from_pb(msg: pb.SubmitToolResponse) -> Ack:
    return Ack(
        task_id=msg.task_id,
        ack=msg.ack,
        task=task_from_pb(msg.task),
        deduplicated=msg.deduplicated,
        joined=msg.joined,
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
        delivery=_member(DeliveryPolicy, msg.delivery),
        result_truncated=msg.result_truncated,
        result_bytes=msg.result_bytes,
        result_preview=msg.result_preview,
        fallback=_fallback_used(msg.fallback) if msg.HasField("fallback") else None,
    )


def _member(cls: type[E], value: int) -> E:
    try:
        return cls(value)
    except ValueError:
        return cls(0)


def _fallback_used(msg: pb.FallbackUsed) -> FallbackUsed:
    error = None
    if msg.HasField("primary_error"):
        error = ToolError(code=msg.primary_error.code, message=msg.primary_error.message)
    return FallbackUsed(
        primary_status=_status(msg.primary_status),
        primary_error=error,
        tool=msg.tool,
        last_good_age_ms=msg.last_good_age_ms,
        task_id=msg.task_id,
    )


def progress_from_pb(msg: pb.Progress) -> Progress:
    return Progress(
        task_id=msg.task_id,
        tool=msg.tool,
        index=msg.index,
        progress=msg.progress,
        total=msg.total,
        message=msg.message,
        detail_json=msg.detail_json,
        elapsed_ms=msg.elapsed_ms,
        session_id=msg.session_id,
    )


def event_from_pb(msg: pb.SessionEvent) -> Optional[SessionEvent]:
    """The completion or progress a SessionEvent carries (None for an unknown kind)."""
    kind = msg.WhichOneof("event")
    if kind == "completion":
        return completion_from_pb(msg.completion)
    if kind == "progress":
        return progress_from_pb(msg.progress)
    return None


def digest_from_pb(msg: pb.PendingDigestResponse) -> PendingDigest:
    return PendingDigest(
        pending=[task_from_pb(t) for t in msg.pending],
        last_seq=msg.last_seq,
        acked_seq=msg.acked_seq,
        text=msg.text,
        unacknowledged=msg.unacknowledged,
        pending_count=msg.pending_count,
    )


def chunk_from_pb(msg: pb.ResultChunk) -> ResultChunk:
    return ResultChunk(data=msg.data, offset=msg.offset, total_bytes=msg.total_bytes, eof=msg.eof)
