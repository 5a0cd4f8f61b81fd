"""Which errors of a tool call the model reads, and which the developer gets.

The model reads what it, or time, can fix: a refusal of its arguments, an
unknown tool, a limit, a server down or not answering ("was not started",
"may have started, or not"), and the server's own failures (INTERNAL,
UNKNOWN: "may or may not have started", as the store write may have
happened). What only the developer can fix raises out of the framework as
before: a wrong or missing token (Unauthenticated, PermissionDenied), a
server without the call (Unimplemented), an address that answers HTTP. Told
to the model, a wrong token was never seen by the developer, and the model
kept retrying (review item 4).
"""

from __future__ import annotations

import asyncio
from typing import Any, Callable

import grpc
import pytest

from errand.errors import (
    InvalidArgument,
    PermissionDenied,
    RpcError,
    Unauthenticated,
    Unimplemented,
    from_grpc,
)
from errand.integrations._session import SessionTool, run_session_tool
from errand.integrations._tools import ErrandTool

SCHEMA = {"type": "object", "properties": {"topic": {"type": "string"}}}

#: The developer's errors: they raise, as themselves.
RAISED: list[RpcError] = [
    Unauthenticated(grpc.StatusCode.UNAUTHENTICATED, "missing token", "SubmitTool"),
    PermissionDenied(grpc.StatusCode.PERMISSION_DENIED, "a worker token", "SubmitTool"),
    Unimplemented(grpc.StatusCode.UNIMPLEMENTED, "no such method", "SubmitTool"),
    RpcError(
        grpc.StatusCode.UNKNOWN,
        "127.0.0.1:8080 answered HTTP, not errand's gRPC (HTTP status 405): is this the "
        "MCP, A2A or dashboard port? ...",
        "SubmitTool",
    ),
]

#: What the model reads for the others.
TOLD: list[tuple[RpcError, str]] = [
    (RpcError(grpc.StatusCode.INTERNAL, "store write failed", "SubmitTool"), "may or may not"),
    (RpcError(grpc.StatusCode.UNKNOWN, "stream reset", "SubmitTool"), "may or may not"),
    (InvalidArgument(grpc.StatusCode.INVALID_ARGUMENT, "topic: required"), "was not started"),
]


class ProxyAnswer(grpc.RpcError):
    """What grpcio raises when a proxy in front of errand (nginx grpc_pass, an
    ingress) answered HTTP 429/502/503/504 itself: UNAVAILABLE, by gRPC's
    HTTP-to-status mapping."""

    def __init__(self, http_status: int) -> None:
        self.http_status = http_status

    def code(self) -> grpc.StatusCode:
        return grpc.StatusCode.UNAVAILABLE

    def details(self) -> str:
        return f"Received http2 header with status: {self.http_status}"


#: errand restarting (or NOT_SERVING) behind a proxy is an outage, the model's
#: to read: raised, it left a LangGraph thread with an unanswered tool call.
TOLD += [
    (from_grpc(ProxyAnswer(status), "SubmitTool", "proxy:443"), "was not started")
    for status in (429, 502, 503, 504)
]


def failing(exc: BaseException) -> ErrandTool:
    def submit(**_: Any) -> Any:
        raise exc

    return ErrandTool("research", "Research a topic.", SCHEMA, submit, None)


def langchain_call(tool: ErrandTool) -> str:
    from errand.integrations.langchain import langchain_tool

    return str(langchain_tool(tool).invoke({"topic": "a"}))


def langchain_acall(tool: ErrandTool) -> str:
    from errand.integrations.langchain import langchain_tool

    return str(asyncio.run(langchain_tool(tool).ainvoke({"topic": "a"})))


def openai_agents_call(tool: ErrandTool) -> str:
    from agents.tool_context import ToolContext

    from errand.integrations.openai_agents import openai_agents_tool

    made = openai_agents_tool(tool)
    args = '{"topic": "a"}'
    ctx = ToolContext(context=None, tool_name=made.name, tool_call_id="c1", tool_arguments=args)
    return str(asyncio.run(made.on_invoke_tool(ctx, args)))


def pydantic_ai_call(tool: ErrandTool) -> str:
    from pydantic_ai import ModelRetry, ToolFailed

    from errand.integrations.pydantic_ai import pydantic_ai_tool

    try:
        asyncio.run(pydantic_ai_tool(tool).function(topic="a"))  # type: ignore[call-arg]
    except (ToolFailed, ModelRetry) as failed:  # ModelRetry: arguments to fix
        return failed.message
    raise AssertionError("no ToolFailed")


def strands_call(tool: ErrandTool) -> str:
    from errand.integrations.strands import strands_tool

    made = strands_tool(tool)

    async def call() -> Any:
        use = {"toolUseId": "t1", "name": made.tool_name, "input": {"topic": "a"}}
        events = [event async for event in made.stream(use, {})]  # type: ignore[arg-type]
        return events[-1].tool_result

    result = asyncio.run(call())
    assert result["status"] == "error"
    return str(result["content"][0]["text"])


ADAPTERS: list[tuple[str, str, Callable[[ErrandTool], str]]] = [
    ("langchain", "langchain_core", langchain_call),
    ("langchain-async", "langchain_core", langchain_acall),
    ("openai-agents", "agents", openai_agents_call),
    ("pydantic-ai", "pydantic_ai", pydantic_ai_call),
    ("strands", "strands", strands_call),
]


@pytest.mark.parametrize(("name", "package", "call"), ADAPTERS, ids=[a[0] for a in ADAPTERS])
def test_the_developers_errors_raise(
    name: str, package: str, call: Callable[[ErrandTool], str]
) -> None:
    pytest.importorskip(package)
    for exc in RAISED:
        with pytest.raises(type(exc)) as caught:
            call(failing(exc))
        assert caught.value is exc, (name, caught.value)


@pytest.mark.parametrize(("name", "package", "call"), ADAPTERS, ids=[a[0] for a in ADAPTERS])
def test_the_model_reads_the_rest(
    name: str, package: str, call: Callable[[ErrandTool], str]
) -> None:
    pytest.importorskip(package)
    for exc, words in TOLD:
        text = call(failing(exc))
        assert words in text and exc.message in text, (name, text)
        if words == "may or may not":
            assert "not started" not in text, text
        assert "MCP, A2A" not in text, (name, text)


def test_session_tools_the_same() -> None:
    def failing_session(exc: BaseException) -> SessionTool:
        async def call(_: Any) -> str:
            raise exc

        return SessionTool("errand_pending", "What is pending.", {"type": "object"}, call)

    for exc in RAISED:
        with pytest.raises(type(exc)):
            asyncio.run(run_session_tool(failing_session(exc), {}))
    ok, text = asyncio.run(run_session_tool(failing_session(TOLD[0][0]), {}))
    assert not ok and "store write failed" in text, text
