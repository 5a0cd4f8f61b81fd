"""errand: asynchronous tools for AI agents, over gRPC.

Layout:
- `errand.client`  — `Client`, the blocking client (submit, completions, session events, ...).
- `errand.streams` — its reconnecting streams (`CompletionStream`, `SessionEventStream`).
- `errand.aio`     — `AsyncClient`, the same for asyncio.
- `errand._core`   — what both share, without I/O: settings, requests, the stream cursors,
                     the result pager.
- `errand._stream` — what the blocking and asyncio streams share: the call, the cursor's
                     counters, what a failed call means.
- `errand._common` — connection settings from arguments and ERRAND_* (TLS, token), backoff.
- `errand._connect` — failing fast, with a clear message, when no server answers.
- `errand.tool`    — `@async_tool`: a function's name, docstring and type hints as a tool.
- `errand.worker`  — `Worker`: serves tools.
- `errand.context` — what a running tool sees: `current_task()`, `report_progress`,
                     `resume_detail`, `Summarized`.
- `errand.manager` — the seed's `AsyncToolManager`: serves `@async_tool(manager)` functions,
                     whose calls submit through errand and answer at once; completion callbacks.
- `errand.callables` — tools as plain functions for agent frameworks (`client.tool(name)`).
- `errand.agent`   — `AsyncAgent`: delivers results to an agent, the user first, queueing
                     while it is busy (its turn loop: `errand._turns`; its event loops:
                     `errand._agent_loops`; results arriving: `errand._agent_intake`).
- `errand.sync_agent` — `SyncAgent`: the same for blocking code (on `errand._loop`).
- `errand.history` — `prune_history`: drop delivered results from a message history.
- `errand.specs`   — tools in the formats of OpenAI, Anthropic and Bedrock Converse.
- `errand.errors`  — every exception the SDK raises.
- `errand.types`   — the dataclasses the calls return.
- `errand.v1`      — the generated protobuf/gRPC stubs (not edited by hand).
"""

from __future__ import annotations

from errand import errors
from errand.agent import (
    Agent,
    AsyncAgent,
    default_batch_text,
    default_user_text,
    prune_history,
)
from errand.aio import AsyncClient, AsyncCompletionStream, AsyncSessionEventStream
from errand.client import Client, CompletionStream, SessionEventStream
from errand.errors import (
    AlreadyExists,
    Cancelled,
    ClosedError,
    DeadlineExceeded,
    ErrandError,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    OutOfRange,
    PermissionDenied,
    ResourceExhausted,
    RpcError,
    TaskFailed,
    ToolFailure,
    Unauthenticated,
    Unavailable,
    Unimplemented,
)
from errand.manager import AsyncTaskResult, AsyncToolManager
from errand.specs import (
    anthropic_tools,
    bedrock_tool_config,
    bedrock_tools,
    openai_responses_tools,
    openai_tools,
    strict_schema,
)
from errand.sync_agent import SyncAgent
from errand.tool import ToolDef, async_tool, schema_for_function, schema_for_type
from errand.types import (
    Ack,
    Completion,
    DedupPolicy,
    DeliveryPolicy,
    Fallback,
    FallbackUsed,
    PendingDigest,
    Progress,
    ResultChunk,
    SessionEvent,
    Task,
    TaskStatus,
    ToolError,
    ToolInfo,
)
from errand.worker import (
    Summarized,
    TaskContext,
    Worker,
    current_task,
    report_progress,
    resume_detail,
)

__version__ = "0.1.0"

__all__ = [
    "Ack",
    "Agent",
    "AlreadyExists",
    "AsyncAgent",
    "AsyncClient",
    "AsyncCompletionStream",
    "AsyncSessionEventStream",
    "AsyncTaskResult",
    "AsyncToolManager",
    "Cancelled",
    "Client",
    "ClosedError",
    "Completion",
    "CompletionStream",
    "DeadlineExceeded",
    "DedupPolicy",
    "DeliveryPolicy",
    "ErrandError",
    "FailedPrecondition",
    "Fallback",
    "FallbackUsed",
    "InvalidArgument",
    "NotFound",
    "OutOfRange",
    "PendingDigest",
    "PermissionDenied",
    "Progress",
    "ResourceExhausted",
    "ResultChunk",
    "RpcError",
    "SessionEvent",
    "SessionEventStream",
    "Summarized",
    "SyncAgent",
    "Task",
    "TaskContext",
    "TaskFailed",
    "TaskStatus",
    "ToolDef",
    "ToolError",
    "ToolFailure",
    "ToolInfo",
    "Unauthenticated",
    "Unavailable",
    "Unimplemented",
    "Worker",
    "anthropic_tools",
    "async_tool",
    "bedrock_tool_config",
    "bedrock_tools",
    "current_task",
    "default_batch_text",
    "default_user_text",
    "errors",
    "openai_responses_tools",
    "openai_tools",
    "prune_history",
    "report_progress",
    "resume_detail",
    "schema_for_function",
    "schema_for_type",
    "strict_schema",
]
