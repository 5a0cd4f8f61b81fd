"""Pieces shared by the sync and asyncio clients and the worker (not public)."""

from __future__ import annotations

import json
import os
import random
import uuid
from collections.abc import Mapping
from typing import Any, Optional

import grpc

from errand.errors import InvalidArgument
from errand.v1 import errand_pb2 as pb

#: Used when neither `target=` nor the ERRAND_SERVER environment variable is given.
DEFAULT_TARGET = "127.0.0.1:7466"

#: ToolService calls that fail with UNAVAILABLE (the connection broke under
#: them) are retried by gRPC itself. That is safe for SubmitTool too: every
#: submit carries an idempotency key (a random one unless the caller gives
#: one), so a retried submit returns the first task instead of a second one.
SERVICE_CONFIG = json.dumps(
    {
        "methodConfig": [
            {
                "name": [{"service": "errand.v1.ToolService"}],
                "retryPolicy": {
                    "maxAttempts": 5,
                    "initialBackoff": "0.05s",
                    "maxBackoff": "1s",
                    "backoffMultiplier": 2,
                    "retryableStatusCodes": ["UNAVAILABLE"],
                },
            }
        ]
    }
)

#: Channel settings: reconnect quickly after a server restart (gRPC's default
#: backoff grows to two minutes), retry calls cut by a broken connection,
#: notice dead connections through keepalive, and allow the server's largest
#: message.
CHANNEL_OPTIONS: list[tuple[str, Any]] = [
    ("grpc.enable_retries", 1),
    ("grpc.service_config", SERVICE_CONFIG),
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 2000),
    ("grpc.keepalive_time_ms", 20_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.max_pings_without_data", 0),
    ("grpc.max_receive_message_length", 16 * 1024 * 1024),
    ("grpc.max_send_message_length", 16 * 1024 * 1024),
]

#: Status codes after which a long-lived stream is opened again: the server
#: went away or the connection broke. Anything else is the caller's to handle.
RETRYABLE = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.INTERNAL,
        grpc.StatusCode.UNKNOWN,
        grpc.StatusCode.ABORTED,
        grpc.StatusCode.CANCELLED,
    }
)


def resolve_target(target: Optional[str]) -> str:
    """HOST:PORT from `target`, else $ERRAND_SERVER (as the `errand` CLI reads it)."""
    value = target or os.environ.get("ERRAND_SERVER") or DEFAULT_TARGET
    for scheme in ("http://", "grpc://"):
        if value.startswith(scheme):
            value = value[len(scheme) :]
    return value.rstrip("/")


def new_session_id() -> str:
    return uuid.uuid4().hex


class Backoff:
    """Exponential backoff with full jitter: delays grow from `initial` to `maximum`."""

    def __init__(self, initial: float = 0.05, maximum: float = 2.0, factor: float = 2.0) -> None:
        if initial <= 0 or maximum < initial or factor < 1:
            raise ValueError("backoff needs 0 < initial <= maximum and factor >= 1")
        self.initial = initial
        self.maximum = maximum
        self.factor = factor
        self._next = initial

    def next(self) -> float:
        """The delay before the next attempt."""
        delay = self._next
        self._next = min(self.maximum, self._next * self.factor)
        return delay / 2 + random.uniform(0, delay / 2)

    def reset(self) -> None:
        self._next = self.initial


def encode_arguments(
    arguments: Optional[Mapping[str, Any]], extra: Mapping[str, Any], method: str
) -> str:
    merged: dict[str, Any] = dict(arguments or {})
    overlap = set(merged) & set(extra)
    if overlap:
        raise InvalidArgument(
            grpc.StatusCode.INVALID_ARGUMENT,
            f"argument(s) {sorted(overlap)} given both in the mapping and as keywords",
            method,
        )
    merged.update(extra)
    try:
        return json.dumps(merged, ensure_ascii=False, separators=(",", ":"))
    except (TypeError, ValueError) as exc:
        raise InvalidArgument(
            grpc.StatusCode.INVALID_ARGUMENT,
            f"arguments are not JSON serialisable: {exc}",
            method,
        ) from exc


def submit_request(
    session_id: str,
    tool: str,
    arguments: Optional[Mapping[str, Any]],
    extra: Mapping[str, Any],
    timeout_ms: int,
    idempotency_key: str,
) -> pb.SubmitToolRequest:
    if timeout_ms < 0:
        raise InvalidArgument(
            grpc.StatusCode.INVALID_ARGUMENT, "timeout_ms must be >= 0", "SubmitTool"
        )
    return pb.SubmitToolRequest(
        session_id=session_id,
        tool=tool,
        arguments_json=encode_arguments(arguments, extra, "SubmitTool"),
        timeout_ms=timeout_ms,
        idempotency_key=idempotency_key or uuid.uuid4().hex,
    )
