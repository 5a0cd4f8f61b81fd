"""Pydantic AI: errand tools answer at once, results join the message history by task ID."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import pytest

pytest.importorskip("pydantic_ai", reason="needs the pydantic-ai extra")

from pydantic_ai import Agent
from pydantic_ai.messages import (
    ModelMessage,
    ModelRequest,
    ModelResponse,
    RetryPromptPart,
    TextPart,
    ToolCallPart,
    ToolReturnPart,
    UserPromptPart,
)
from pydantic_ai.models.function import AgentInfo, FunctionModel

from errand import AsyncClient, Client
from errand.integrations.pydantic_ai import PydanticAIConversation, pydantic_ai_tools

from ..conftest import unique
from . import scenario
from .scenario import Gates, ModelLog


def view_of(messages: Sequence[ModelMessage]) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    for message in messages:
        for part in message.parts:
            if isinstance(part, UserPromptPart) and isinstance(part.content, str):
                out.append(("user", part.content))
            elif isinstance(part, ToolReturnPart):
                out.append(("tool", str(part.content)))
            elif isinstance(part, RetryPromptPart):
                out.append(("tool", part.model_response()))
            elif isinstance(part, TextPart):
                out.append(("assistant", part.content))
    return out


def scripted_model(log: ModelLog, offered: list[Any]) -> FunctionModel:
    """Pydantic AI's own FunctionModel, answering by the scenario's script."""

    def respond(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        offered[:] = info.function_tools
        answer = log.respond(view_of(messages))
        if isinstance(answer, str):
            return ModelResponse(parts=[TextPart(answer)])
        return ModelResponse(
            parts=[ToolCallPart(c.tool, c.arguments, tool_call_id=c.call_id) for c in answer]
        )

    return FunctionModel(respond)


def test_pydantic_ai_agent_with_errand_tools(server: str, gates: Gates) -> None:
    session = unique("session")
    log = ModelLog(gates)
    offered: list[Any] = []
    with Client(server, session_id=session) as client:
        tools = pydantic_ai_tools(client, gates.tools())
        agent = Agent(scripted_model(log, offered), tools=tools)
        conversation = PydanticAIConversation(agent)

        async def main() -> None:
            async with AsyncClient(server, session_id=session) as aclient:
                await scenario.run(aclient, conversation, log)

        asyncio.run(main())
    assert [t.name for t in offered] == [gates.research_name, gates.lookup_name]
    assert offered[1].parameters_json_schema["required"] == ["key"]
    assert "asynchronous" in (offered[0].description or "")
    history = view_of(conversation.messages)
    assert sum("Async result for task" in text for _, text in history) == 3


def test_bad_arguments_go_back_to_the_model_as_a_retry(server: str, gates: Gates) -> None:
    calls = []

    def respond(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        calls.append(messages[-1])
        if len(calls) == 1:
            return ModelResponse(parts=[ToolCallPart(gates.lookup_name, {"key": 7}, "k1")])
        return ModelResponse(parts=[TextPart("I will fix the key.")])

    with Client(server, session_id=unique("session")) as client:
        agent = Agent(FunctionModel(respond), tools=pydantic_ai_tools(client, [gates.lookup]))
        result = agent.run_sync("look up 7")
    assert result.output == "I will fix the key."
    assert isinstance(calls[1], ModelRequest)
    (retry,) = calls[1].parts
    assert isinstance(retry, ToolReturnPart)
    assert retry.outcome == "retried"  # ModelRetry: the model is asked to call again
    assert f"{gates.lookup_name} was not started" in str(retry.content)
