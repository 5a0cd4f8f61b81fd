"""The one rule for what a worker sends the server (not public).

The server's transport refuses a message over its limit (the
`Registered.max_message_bytes` it answers a worker with) and ends the
worker's stream: the worker's tasks go to another attempt, which fails the
same way, and their callers wait. So nothing a worker sends may be over it,
and what the server would refuse or cut anyway is settled here, before
sending, where the tool can still be told:

- a progress report (`progress`): its message is cut at
  `MAX_PROGRESS_MESSAGE_BYTES`, as the server cuts it; a detail over
  `MAX_DETAIL_BYTES` (the server's bound: it would ignore the report) or a
  report that does not fit in one message raises ValueError to the tool.
- every message, as it goes out (`fit`): a result whose JSON does not fit
  fails its task with "invalid_result" saying its size and the message
  limit, and naming the server's own result limit (--max-result-bytes),
  which the worker is not told (`too_large`); a
  failure's message and a result's summary, texts the server cuts to its
  own bounds anyway, are cut to fit; a progress report that does not fit
  (only if the limit shrank since it was checked) is dropped and logged.
"""

from __future__ import annotations

import logging
from typing import Any, Optional

from errand._jsonable import encode
from errand.v1 import errand_pb2 as pb

log = logging.getLogger("errand.worker")

#: gRPC's default message limit, assumed when the server does not say its own.
DEFAULT_MAX_MESSAGE_BYTES = 4 * 1024 * 1024
#: Most bytes of a progress message the server keeps (proto `Progress.message`:
#: "at most 1 KiB (longer is cut)"); the worker cuts it so before sending.
MAX_PROGRESS_MESSAGE_BYTES = 1024
#: Most bytes of a progress detail as JSON (proto `Progress.detail_json`: "at
#: most 64 KiB"); the server ignores a report with a larger one.
MAX_DETAIL_BYTES = 64 * 1024

# Room for a field's tag and length prefix when a text is cut to fit.
_FIELD_OVERHEAD = 16


def progress(
    task_id: str,
    attempt: int,
    progress: float,
    total: float,
    message: str,
    detail: Any,
    limit: int,
) -> pb.WorkerMessage:
    """A progress report as the server takes it: `message` cut at
    `MAX_PROGRESS_MESSAGE_BYTES` bytes of UTF-8, `detail` as JSON text.

    Raises ValueError for a negative progress or total, a detail that is not
    JSON (NaN and infinities included) or is over `MAX_DETAIL_BYTES` bytes,
    or a report over `limit` bytes (the server's message limit)."""
    if progress < 0 or total < 0:
        raise ValueError("progress and total must be >= 0 (0: unknown)")
    detail_json = ""
    if detail is not None:
        try:
            detail_json = encode(detail, "progress", "detail")  # as results and arguments
        except TypeError as exc:
            raise ValueError(f"a progress detail must be JSON-serialisable: {exc}") from None
        size = len(detail_json.encode())
        if size > MAX_DETAIL_BYTES:
            raise ValueError(
                f"a progress detail is at most {MAX_DETAIL_BYTES} bytes as JSON "
                f"(the server's bound); got {size}"
            )
    msg = pb.WorkerMessage(
        progress=pb.Progress(
            task_id=task_id,
            attempt=attempt,
            progress=float(progress),
            total=float(total),
            message=cut_utf8(message, MAX_PROGRESS_MESSAGE_BYTES),
            detail_json=detail_json,
        )
    )
    size = msg.ByteSize()
    if size > limit:
        raise ValueError(
            f"a progress report of {size} bytes does not fit the server's message limit of "
            f"{limit} bytes (its --max-message-bytes): send a smaller detail"
        )
    return msg


def fit(msg: pb.WorkerMessage, limit: int) -> Optional[pb.WorkerMessage]:
    """`msg` made to fit in `limit` bytes by the rule above; None: do not send it."""
    kind = msg.WhichOneof("kind")
    if kind not in ("result", "progress"):
        return msg  # Register goes out before the limit is known; the rest are small
    size = msg.ByteSize()
    if size <= limit:
        return msg
    if kind == "progress":
        log.warning(
            "task %s: progress report of %d bytes over the server's limit of %d; not sent",
            msg.progress.task_id,
            size,
            limit,
        )
        return None
    result = msg.result
    over = size - limit + _FIELD_OVERHEAD
    if result.WhichOneof("outcome") == "error":
        note = f" [cut to fit the server's message limit of {limit} bytes]"
        text = result.error.message
        room = len(text.encode()) - over - len(note.encode())
        cut = (cut_utf8(text, room) if room > 0 else "") + note
        error = pb.ToolError(code=result.error.code, message=cut)
        return _result(result, error=error)
    room = len(result.summary.encode()) - over
    if room >= 0:
        return _result(
            result, result_json=result.result_json, summary=cut_utf8(result.summary, room)
        )
    log.warning(
        "task %s: result message of %d bytes over the server's message limit of %d; "
        "failing the task",
        result.task_id,
        size,
        limit,
    )
    message = too_large(len(result.result_json.encode()), limit)
    return _result(result, error=pb.ToolError(code="invalid_result", message=message))


def too_large(result_bytes: int, limit: int) -> str:
    """Why a result that does not fit in one message to the server fails its task.

    The worker knows the server's message limit (Registered.max_message_bytes)
    but not its limit on a result (--max-result-bytes, lower: 4 MiB by
    default), so the text gives the result's size and the bound it broke,
    names both flags, and does not pass the message limit off as the
    limit on a result.
    """
    return (
        f"the tool's result is {result_bytes} bytes of JSON, too large to send: one message "
        f"to the server is at most {limit} bytes (its --max-message-bytes), and a result "
        "must also be within the server's --max-result-bytes (4 MiB unless configured)"
    )


def _result(result: pb.TaskResult, **outcome: Any) -> pb.WorkerMessage:
    return pb.WorkerMessage(
        result=pb.TaskResult(task_id=result.task_id, attempt=result.attempt, **outcome)
    )


def cut_utf8(text: str, max_bytes: int) -> str:
    """`text` cut to at most `max_bytes` bytes of UTF-8, on a character boundary."""
    if 4 * len(text) <= max_bytes:  # UTF-8 takes at most 4 bytes a code point
        return text
    data = text.encode("utf-8", "replace")
    if len(data) <= max_bytes:
        return text
    # "ignore" drops the bytes of a character the cut split.
    return data[: max(max_bytes, 0)].decode("utf-8", "ignore")
