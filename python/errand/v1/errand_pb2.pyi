import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class DeliveryPolicy(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DELIVERY_POLICY_UNSPECIFIED: _ClassVar[DeliveryPolicy]
    DELIVERY_POLICY_WHEN_IDLE: _ClassVar[DeliveryPolicy]
    DELIVERY_POLICY_INTERRUPT: _ClassVar[DeliveryPolicy]
    DELIVERY_POLICY_SILENT: _ClassVar[DeliveryPolicy]

class DedupPolicy(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DEDUP_POLICY_UNSPECIFIED: _ClassVar[DedupPolicy]
    DEDUP_POLICY_OFF: _ClassVar[DedupPolicy]
    DEDUP_POLICY_JOIN_IN_FLIGHT: _ClassVar[DedupPolicy]

class TaskStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TASK_STATUS_UNSPECIFIED: _ClassVar[TaskStatus]
    TASK_STATUS_QUEUED: _ClassVar[TaskStatus]
    TASK_STATUS_RUNNING: _ClassVar[TaskStatus]
    TASK_STATUS_SUCCEEDED: _ClassVar[TaskStatus]
    TASK_STATUS_FAILED: _ClassVar[TaskStatus]
    TASK_STATUS_CANCELLED: _ClassVar[TaskStatus]
    TASK_STATUS_TIMED_OUT: _ClassVar[TaskStatus]
DELIVERY_POLICY_UNSPECIFIED: DeliveryPolicy
DELIVERY_POLICY_WHEN_IDLE: DeliveryPolicy
DELIVERY_POLICY_INTERRUPT: DeliveryPolicy
DELIVERY_POLICY_SILENT: DeliveryPolicy
DEDUP_POLICY_UNSPECIFIED: DedupPolicy
DEDUP_POLICY_OFF: DedupPolicy
DEDUP_POLICY_JOIN_IN_FLIGHT: DedupPolicy
TASK_STATUS_UNSPECIFIED: TaskStatus
TASK_STATUS_QUEUED: TaskStatus
TASK_STATUS_RUNNING: TaskStatus
TASK_STATUS_SUCCEEDED: TaskStatus
TASK_STATUS_FAILED: TaskStatus
TASK_STATUS_CANCELLED: TaskStatus
TASK_STATUS_TIMED_OUT: TaskStatus

class Tool(_message.Message):
    __slots__ = ("name", "description", "input_schema_json", "timeout_ms", "workers", "queued", "running", "queue_timeout_ms", "delivery", "dedup", "result_budget_bytes", "fallback", "cancellable_by_model")
    NAME_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    INPUT_SCHEMA_JSON_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_MS_FIELD_NUMBER: _ClassVar[int]
    WORKERS_FIELD_NUMBER: _ClassVar[int]
    QUEUED_FIELD_NUMBER: _ClassVar[int]
    RUNNING_FIELD_NUMBER: _ClassVar[int]
    QUEUE_TIMEOUT_MS_FIELD_NUMBER: _ClassVar[int]
    DELIVERY_FIELD_NUMBER: _ClassVar[int]
    DEDUP_FIELD_NUMBER: _ClassVar[int]
    RESULT_BUDGET_BYTES_FIELD_NUMBER: _ClassVar[int]
    FALLBACK_FIELD_NUMBER: _ClassVar[int]
    CANCELLABLE_BY_MODEL_FIELD_NUMBER: _ClassVar[int]
    name: str
    description: str
    input_schema_json: str
    timeout_ms: int
    workers: int
    queued: int
    running: int
    queue_timeout_ms: int
    delivery: DeliveryPolicy
    dedup: DedupPolicy
    result_budget_bytes: int
    fallback: Fallback
    cancellable_by_model: bool
    def __init__(self, name: _Optional[str] = ..., description: _Optional[str] = ..., input_schema_json: _Optional[str] = ..., timeout_ms: _Optional[int] = ..., workers: _Optional[int] = ..., queued: _Optional[int] = ..., running: _Optional[int] = ..., queue_timeout_ms: _Optional[int] = ..., delivery: _Optional[_Union[DeliveryPolicy, str]] = ..., dedup: _Optional[_Union[DedupPolicy, str]] = ..., result_budget_bytes: _Optional[int] = ..., fallback: _Optional[_Union[Fallback, _Mapping]] = ..., cancellable_by_model: bool = ...) -> None: ...

class Fallback(_message.Message):
    __slots__ = ("tool", "last_good_max_age_ms")
    TOOL_FIELD_NUMBER: _ClassVar[int]
    LAST_GOOD_MAX_AGE_MS_FIELD_NUMBER: _ClassVar[int]
    tool: str
    last_good_max_age_ms: int
    def __init__(self, tool: _Optional[str] = ..., last_good_max_age_ms: _Optional[int] = ...) -> None: ...

class FallbackUsed(_message.Message):
    __slots__ = ("primary_status", "primary_error", "tool", "last_good_age_ms", "task_id")
    PRIMARY_STATUS_FIELD_NUMBER: _ClassVar[int]
    PRIMARY_ERROR_FIELD_NUMBER: _ClassVar[int]
    TOOL_FIELD_NUMBER: _ClassVar[int]
    LAST_GOOD_AGE_MS_FIELD_NUMBER: _ClassVar[int]
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    primary_status: TaskStatus
    primary_error: ToolError
    tool: str
    last_good_age_ms: int
    task_id: str
    def __init__(self, primary_status: _Optional[_Union[TaskStatus, str]] = ..., primary_error: _Optional[_Union[ToolError, _Mapping]] = ..., tool: _Optional[str] = ..., last_good_age_ms: _Optional[int] = ..., task_id: _Optional[str] = ...) -> None: ...

class Progress(_message.Message):
    __slots__ = ("task_id", "tool", "index", "progress", "total", "message", "detail_json", "elapsed_ms", "session_id", "attempt")
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    TOOL_FIELD_NUMBER: _ClassVar[int]
    INDEX_FIELD_NUMBER: _ClassVar[int]
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    DETAIL_JSON_FIELD_NUMBER: _ClassVar[int]
    ELAPSED_MS_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    tool: str
    index: int
    progress: float
    total: float
    message: str
    detail_json: str
    elapsed_ms: int
    session_id: str
    attempt: int
    def __init__(self, task_id: _Optional[str] = ..., tool: _Optional[str] = ..., index: _Optional[int] = ..., progress: _Optional[float] = ..., total: _Optional[float] = ..., message: _Optional[str] = ..., detail_json: _Optional[str] = ..., elapsed_ms: _Optional[int] = ..., session_id: _Optional[str] = ..., attempt: _Optional[int] = ...) -> None: ...

class ListToolsRequest(_message.Message):
    __slots__ = ("page_size", "page_token", "only_served")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    ONLY_SERVED_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    only_served: bool
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., only_served: bool = ...) -> None: ...

class ListToolsResponse(_message.Message):
    __slots__ = ("tools", "next_page_token")
    TOOLS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    tools: _containers.RepeatedCompositeFieldContainer[Tool]
    next_page_token: str
    def __init__(self, tools: _Optional[_Iterable[_Union[Tool, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class SubmitToolRequest(_message.Message):
    __slots__ = ("session_id", "tool", "arguments_json", "timeout_ms", "idempotency_key", "queue_timeout_ms", "delivery", "dedup", "result_budget_bytes", "fallback")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    TOOL_FIELD_NUMBER: _ClassVar[int]
    ARGUMENTS_JSON_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_MS_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    QUEUE_TIMEOUT_MS_FIELD_NUMBER: _ClassVar[int]
    DELIVERY_FIELD_NUMBER: _ClassVar[int]
    DEDUP_FIELD_NUMBER: _ClassVar[int]
    RESULT_BUDGET_BYTES_FIELD_NUMBER: _ClassVar[int]
    FALLBACK_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    tool: str
    arguments_json: str
    timeout_ms: int
    idempotency_key: str
    queue_timeout_ms: int
    delivery: DeliveryPolicy
    dedup: DedupPolicy
    result_budget_bytes: int
    fallback: Fallback
    def __init__(self, session_id: _Optional[str] = ..., tool: _Optional[str] = ..., arguments_json: _Optional[str] = ..., timeout_ms: _Optional[int] = ..., idempotency_key: _Optional[str] = ..., queue_timeout_ms: _Optional[int] = ..., delivery: _Optional[_Union[DeliveryPolicy, str]] = ..., dedup: _Optional[_Union[DedupPolicy, str]] = ..., result_budget_bytes: _Optional[int] = ..., fallback: _Optional[_Union[Fallback, _Mapping]] = ...) -> None: ...

class SubmitToolResponse(_message.Message):
    __slots__ = ("task_id", "ack", "task", "deduplicated", "joined")
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    ACK_FIELD_NUMBER: _ClassVar[int]
    TASK_FIELD_NUMBER: _ClassVar[int]
    DEDUPLICATED_FIELD_NUMBER: _ClassVar[int]
    JOINED_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    ack: str
    task: Task
    deduplicated: bool
    joined: bool
    def __init__(self, task_id: _Optional[str] = ..., ack: _Optional[str] = ..., task: _Optional[_Union[Task, _Mapping]] = ..., deduplicated: bool = ..., joined: bool = ...) -> None: ...

class CompletionsRequest(_message.Message):
    __slots__ = ("session_id", "after_seq")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    AFTER_SEQ_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    after_seq: int
    def __init__(self, session_id: _Optional[str] = ..., after_seq: _Optional[int] = ...) -> None: ...

class Completion(_message.Message):
    __slots__ = ("seq", "task_id", "session_id", "tool", "arguments_json", "status", "result_json", "error", "elapsed_ms", "attempts", "message", "completed_at", "delivery", "result_truncated", "result_bytes", "result_preview", "fallback")
    SEQ_FIELD_NUMBER: _ClassVar[int]
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    TOOL_FIELD_NUMBER: _ClassVar[int]
    ARGUMENTS_JSON_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    RESULT_JSON_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    ELAPSED_MS_FIELD_NUMBER: _ClassVar[int]
    ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    COMPLETED_AT_FIELD_NUMBER: _ClassVar[int]
    DELIVERY_FIELD_NUMBER: _ClassVar[int]
    RESULT_TRUNCATED_FIELD_NUMBER: _ClassVar[int]
    RESULT_BYTES_FIELD_NUMBER: _ClassVar[int]
    RESULT_PREVIEW_FIELD_NUMBER: _ClassVar[int]
    FALLBACK_FIELD_NUMBER: _ClassVar[int]
    seq: int
    task_id: str
    session_id: str
    tool: str
    arguments_json: str
    status: TaskStatus
    result_json: str
    error: ToolError
    elapsed_ms: int
    attempts: int
    message: str
    completed_at: _timestamp_pb2.Timestamp
    delivery: DeliveryPolicy
    result_truncated: bool
    result_bytes: int
    result_preview: str
    fallback: FallbackUsed
    def __init__(self, seq: _Optional[int] = ..., task_id: _Optional[str] = ..., session_id: _Optional[str] = ..., tool: _Optional[str] = ..., arguments_json: _Optional[str] = ..., status: _Optional[_Union[TaskStatus, str]] = ..., result_json: _Optional[str] = ..., error: _Optional[_Union[ToolError, _Mapping]] = ..., elapsed_ms: _Optional[int] = ..., attempts: _Optional[int] = ..., message: _Optional[str] = ..., completed_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., delivery: _Optional[_Union[DeliveryPolicy, str]] = ..., result_truncated: bool = ..., result_bytes: _Optional[int] = ..., result_preview: _Optional[str] = ..., fallback: _Optional[_Union[FallbackUsed, _Mapping]] = ...) -> None: ...

class SessionEventsRequest(_message.Message):
    __slots__ = ("session_id", "after_seq", "include_progress", "results_by_reference")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    AFTER_SEQ_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_PROGRESS_FIELD_NUMBER: _ClassVar[int]
    RESULTS_BY_REFERENCE_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    after_seq: int
    include_progress: bool
    results_by_reference: bool
    def __init__(self, session_id: _Optional[str] = ..., after_seq: _Optional[int] = ..., include_progress: bool = ..., results_by_reference: bool = ...) -> None: ...

class SessionEvent(_message.Message):
    __slots__ = ("completion", "progress")
    COMPLETION_FIELD_NUMBER: _ClassVar[int]
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    completion: Completion
    progress: Progress
    def __init__(self, completion: _Optional[_Union[Completion, _Mapping]] = ..., progress: _Optional[_Union[Progress, _Mapping]] = ...) -> None: ...

class PendingDigestRequest(_message.Message):
    __slots__ = ("session_id", "max_bytes")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    MAX_BYTES_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    max_bytes: int
    def __init__(self, session_id: _Optional[str] = ..., max_bytes: _Optional[int] = ...) -> None: ...

class PendingDigestResponse(_message.Message):
    __slots__ = ("pending", "last_seq", "acked_seq", "text", "unacknowledged", "pending_count")
    PENDING_FIELD_NUMBER: _ClassVar[int]
    LAST_SEQ_FIELD_NUMBER: _ClassVar[int]
    ACKED_SEQ_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    UNACKNOWLEDGED_FIELD_NUMBER: _ClassVar[int]
    PENDING_COUNT_FIELD_NUMBER: _ClassVar[int]
    pending: _containers.RepeatedCompositeFieldContainer[Task]
    last_seq: int
    acked_seq: int
    text: str
    unacknowledged: int
    pending_count: int
    def __init__(self, pending: _Optional[_Iterable[_Union[Task, _Mapping]]] = ..., last_seq: _Optional[int] = ..., acked_seq: _Optional[int] = ..., text: _Optional[str] = ..., unacknowledged: _Optional[int] = ..., pending_count: _Optional[int] = ...) -> None: ...

class ReadResultRequest(_message.Message):
    __slots__ = ("task_id", "offset", "max_bytes")
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    MAX_BYTES_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    offset: int
    max_bytes: int
    def __init__(self, task_id: _Optional[str] = ..., offset: _Optional[int] = ..., max_bytes: _Optional[int] = ...) -> None: ...

class ResultChunk(_message.Message):
    __slots__ = ("data", "offset", "total_bytes", "eof")
    DATA_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    TOTAL_BYTES_FIELD_NUMBER: _ClassVar[int]
    EOF_FIELD_NUMBER: _ClassVar[int]
    data: str
    offset: int
    total_bytes: int
    eof: bool
    def __init__(self, data: _Optional[str] = ..., offset: _Optional[int] = ..., total_bytes: _Optional[int] = ..., eof: bool = ...) -> None: ...

class GetTaskRequest(_message.Message):
    __slots__ = ("task_id",)
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    def __init__(self, task_id: _Optional[str] = ...) -> None: ...

class CancelTaskRequest(_message.Message):
    __slots__ = ("task_id", "reason")
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    reason: str
    def __init__(self, task_id: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class AckCompletionsRequest(_message.Message):
    __slots__ = ("session_id", "up_to_seq")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    UP_TO_SEQ_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    up_to_seq: int
    def __init__(self, session_id: _Optional[str] = ..., up_to_seq: _Optional[int] = ...) -> None: ...

class AckCompletionsResponse(_message.Message):
    __slots__ = ("removed", "acked_seq")
    REMOVED_FIELD_NUMBER: _ClassVar[int]
    ACKED_SEQ_FIELD_NUMBER: _ClassVar[int]
    removed: int
    acked_seq: int
    def __init__(self, removed: _Optional[int] = ..., acked_seq: _Optional[int] = ...) -> None: ...

class Task(_message.Message):
    __slots__ = ("task_id", "session_id", "tool", "arguments_json", "status", "result_json", "error", "attempts", "created_at", "started_at", "finished_at", "timeout_ms", "seq", "elapsed_ms", "idempotency_key", "worker_id", "worker_name", "retry_of", "delivery", "progress", "fallback")
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    TOOL_FIELD_NUMBER: _ClassVar[int]
    ARGUMENTS_JSON_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    RESULT_JSON_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    STARTED_AT_FIELD_NUMBER: _ClassVar[int]
    FINISHED_AT_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_MS_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    ELAPSED_MS_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    WORKER_NAME_FIELD_NUMBER: _ClassVar[int]
    RETRY_OF_FIELD_NUMBER: _ClassVar[int]
    DELIVERY_FIELD_NUMBER: _ClassVar[int]
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    FALLBACK_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    session_id: str
    tool: str
    arguments_json: str
    status: TaskStatus
    result_json: str
    error: ToolError
    attempts: int
    created_at: _timestamp_pb2.Timestamp
    started_at: _timestamp_pb2.Timestamp
    finished_at: _timestamp_pb2.Timestamp
    timeout_ms: int
    seq: int
    elapsed_ms: int
    idempotency_key: str
    worker_id: str
    worker_name: str
    retry_of: str
    delivery: DeliveryPolicy
    progress: Progress
    fallback: FallbackUsed
    def __init__(self, task_id: _Optional[str] = ..., session_id: _Optional[str] = ..., tool: _Optional[str] = ..., arguments_json: _Optional[str] = ..., status: _Optional[_Union[TaskStatus, str]] = ..., result_json: _Optional[str] = ..., error: _Optional[_Union[ToolError, _Mapping]] = ..., attempts: _Optional[int] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., started_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., finished_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., timeout_ms: _Optional[int] = ..., seq: _Optional[int] = ..., elapsed_ms: _Optional[int] = ..., idempotency_key: _Optional[str] = ..., worker_id: _Optional[str] = ..., worker_name: _Optional[str] = ..., retry_of: _Optional[str] = ..., delivery: _Optional[_Union[DeliveryPolicy, str]] = ..., progress: _Optional[_Union[Progress, _Mapping]] = ..., fallback: _Optional[_Union[FallbackUsed, _Mapping]] = ...) -> None: ...

class ListTasksRequest(_message.Message):
    __slots__ = ("session_id", "statuses", "tool", "page_size", "page_token", "newest_first")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    STATUSES_FIELD_NUMBER: _ClassVar[int]
    TOOL_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    NEWEST_FIRST_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    statuses: _containers.RepeatedScalarFieldContainer[TaskStatus]
    tool: str
    page_size: int
    page_token: str
    newest_first: bool
    def __init__(self, session_id: _Optional[str] = ..., statuses: _Optional[_Iterable[_Union[TaskStatus, str]]] = ..., tool: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., newest_first: bool = ...) -> None: ...

class ListTasksResponse(_message.Message):
    __slots__ = ("tasks", "next_page_token", "total_size")
    TASKS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    TOTAL_SIZE_FIELD_NUMBER: _ClassVar[int]
    tasks: _containers.RepeatedCompositeFieldContainer[Task]
    next_page_token: str
    total_size: int
    def __init__(self, tasks: _Optional[_Iterable[_Union[Task, _Mapping]]] = ..., next_page_token: _Optional[str] = ..., total_size: _Optional[int] = ...) -> None: ...

class ListWorkersRequest(_message.Message):
    __slots__ = ("tool", "page_size", "page_token")
    TOOL_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    tool: str
    page_size: int
    page_token: str
    def __init__(self, tool: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListWorkersResponse(_message.Message):
    __slots__ = ("workers", "next_page_token")
    WORKERS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    workers: _containers.RepeatedCompositeFieldContainer[WorkerInfo]
    next_page_token: str
    def __init__(self, workers: _Optional[_Iterable[_Union[WorkerInfo, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class WorkerInfo(_message.Message):
    __slots__ = ("worker_id", "worker_name", "tools", "max_concurrency", "running", "connected_at", "last_seen", "server")
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    WORKER_NAME_FIELD_NUMBER: _ClassVar[int]
    TOOLS_FIELD_NUMBER: _ClassVar[int]
    MAX_CONCURRENCY_FIELD_NUMBER: _ClassVar[int]
    RUNNING_FIELD_NUMBER: _ClassVar[int]
    CONNECTED_AT_FIELD_NUMBER: _ClassVar[int]
    LAST_SEEN_FIELD_NUMBER: _ClassVar[int]
    SERVER_FIELD_NUMBER: _ClassVar[int]
    worker_id: str
    worker_name: str
    tools: _containers.RepeatedScalarFieldContainer[str]
    max_concurrency: int
    running: int
    connected_at: _timestamp_pb2.Timestamp
    last_seen: _timestamp_pb2.Timestamp
    server: str
    def __init__(self, worker_id: _Optional[str] = ..., worker_name: _Optional[str] = ..., tools: _Optional[_Iterable[str]] = ..., max_concurrency: _Optional[int] = ..., running: _Optional[int] = ..., connected_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., last_seen: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., server: _Optional[str] = ...) -> None: ...

class CancelTasksRequest(_message.Message):
    __slots__ = ("session_id", "statuses", "tool", "reason")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    STATUSES_FIELD_NUMBER: _ClassVar[int]
    TOOL_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    statuses: _containers.RepeatedScalarFieldContainer[TaskStatus]
    tool: str
    reason: str
    def __init__(self, session_id: _Optional[str] = ..., statuses: _Optional[_Iterable[_Union[TaskStatus, str]]] = ..., tool: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class CancelTasksResponse(_message.Message):
    __slots__ = ("cancelled",)
    CANCELLED_FIELD_NUMBER: _ClassVar[int]
    cancelled: int
    def __init__(self, cancelled: _Optional[int] = ...) -> None: ...

class RetryTaskRequest(_message.Message):
    __slots__ = ("task_id",)
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    def __init__(self, task_id: _Optional[str] = ...) -> None: ...

class ToolError(_message.Message):
    __slots__ = ("code", "message")
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    code: str
    message: str
    def __init__(self, code: _Optional[str] = ..., message: _Optional[str] = ...) -> None: ...

class WorkerMessage(_message.Message):
    __slots__ = ("register", "result", "heartbeat", "progress")
    REGISTER_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_FIELD_NUMBER: _ClassVar[int]
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    register: Register
    result: TaskResult
    heartbeat: Heartbeat
    progress: Progress
    def __init__(self, register: _Optional[_Union[Register, _Mapping]] = ..., result: _Optional[_Union[TaskResult, _Mapping]] = ..., heartbeat: _Optional[_Union[Heartbeat, _Mapping]] = ..., progress: _Optional[_Union[Progress, _Mapping]] = ...) -> None: ...

class Register(_message.Message):
    __slots__ = ("worker_name", "tools", "max_concurrency")
    WORKER_NAME_FIELD_NUMBER: _ClassVar[int]
    TOOLS_FIELD_NUMBER: _ClassVar[int]
    MAX_CONCURRENCY_FIELD_NUMBER: _ClassVar[int]
    worker_name: str
    tools: _containers.RepeatedCompositeFieldContainer[Tool]
    max_concurrency: int
    def __init__(self, worker_name: _Optional[str] = ..., tools: _Optional[_Iterable[_Union[Tool, _Mapping]]] = ..., max_concurrency: _Optional[int] = ...) -> None: ...

class TaskResult(_message.Message):
    __slots__ = ("task_id", "result_json", "error", "attempt", "summary")
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    RESULT_JSON_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    SUMMARY_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    result_json: str
    error: ToolError
    attempt: int
    summary: str
    def __init__(self, task_id: _Optional[str] = ..., result_json: _Optional[str] = ..., error: _Optional[_Union[ToolError, _Mapping]] = ..., attempt: _Optional[int] = ..., summary: _Optional[str] = ...) -> None: ...

class Heartbeat(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class WorkerCommand(_message.Message):
    __slots__ = ("registered", "assignment", "cancel", "register_refused")
    REGISTERED_FIELD_NUMBER: _ClassVar[int]
    ASSIGNMENT_FIELD_NUMBER: _ClassVar[int]
    CANCEL_FIELD_NUMBER: _ClassVar[int]
    REGISTER_REFUSED_FIELD_NUMBER: _ClassVar[int]
    registered: Registered
    assignment: Assignment
    cancel: CancelAssignment
    register_refused: RegisterRefused
    def __init__(self, registered: _Optional[_Union[Registered, _Mapping]] = ..., assignment: _Optional[_Union[Assignment, _Mapping]] = ..., cancel: _Optional[_Union[CancelAssignment, _Mapping]] = ..., register_refused: _Optional[_Union[RegisterRefused, _Mapping]] = ...) -> None: ...

class RegisterRefused(_message.Message):
    __slots__ = ("code", "message")
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    code: int
    message: str
    def __init__(self, code: _Optional[int] = ..., message: _Optional[str] = ...) -> None: ...

class Registered(_message.Message):
    __slots__ = ("worker_id", "max_message_bytes")
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    MAX_MESSAGE_BYTES_FIELD_NUMBER: _ClassVar[int]
    worker_id: str
    max_message_bytes: int
    def __init__(self, worker_id: _Optional[str] = ..., max_message_bytes: _Optional[int] = ...) -> None: ...

class Assignment(_message.Message):
    __slots__ = ("task_id", "session_id", "tool", "arguments_json", "attempt", "timeout_ms", "resume_detail_json")
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    TOOL_FIELD_NUMBER: _ClassVar[int]
    ARGUMENTS_JSON_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_MS_FIELD_NUMBER: _ClassVar[int]
    RESUME_DETAIL_JSON_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    session_id: str
    tool: str
    arguments_json: str
    attempt: int
    timeout_ms: int
    resume_detail_json: str
    def __init__(self, task_id: _Optional[str] = ..., session_id: _Optional[str] = ..., tool: _Optional[str] = ..., arguments_json: _Optional[str] = ..., attempt: _Optional[int] = ..., timeout_ms: _Optional[int] = ..., resume_detail_json: _Optional[str] = ...) -> None: ...

class CancelAssignment(_message.Message):
    __slots__ = ("task_id", "reason")
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    reason: str
    def __init__(self, task_id: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...
