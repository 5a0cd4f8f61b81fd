"""Strands Agents: errand tools answer at once, results join the conversation by task ID."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncGenerator, AsyncIterable
from typing import Any

import pytest

pytest.importorskip("strands", reason="needs the strands extra")

from strands import Agent
from strands.models import Model
from strands.types.content import Messages
from strands.types.streaming import StreamEvent
from strands.types.tools import ToolSpec

from errand import AsyncClient, Client
from errand.integrations.strands import StrandsConversation, strands_tools

from ..conftest import unique
from . import scenario
from .scenario import Gates, ModelLog


def view_of(messages: Messages) -> list[tuple[str, str]]:
    """The conversation as the scenario reads it, from Strands' Bedrock-style messages."""
    out: list[tuple[str, str]] = []
    for message in messages:
        for block in message["content"]:
            if "text" in block:
                out.append((message["role"], block["text"]))
            elif "toolResult" in block:
                texts = [c.get("text", "") for c in block["toolResult"]["content"]]
                out.append(("tool", "".join(texts)))
    return out


class ScriptedModel(Model):
    """A Strands model provider that answers by the scenario's script, streaming
    the events a real provider would (text, or toolUse blocks and stop reason)."""

    def __init__(self, log: ModelLog) -> None:
        self.log = log
        self.tool_names: list[str] = []

    def update_config(self, **model_config: Any) -> None:
        pass

    def get_config(self) -> Any:
        return {}

    def structured_output(self, *args: Any, **kwargs: Any) -> AsyncGenerator[Any, None]:
        raise NotImplementedError("the scenario needs no structured output")

    async def stream(  # type: ignore[override]
        self,
        messages: Messages,
        tool_specs: list[ToolSpec] | None = None,
        system_prompt: str | None = None,
        **kwargs: Any,
    ) -> AsyncIterable[StreamEvent]:
        self.tool_names = [spec["name"] for spec in tool_specs or []]
        answer = self.log.respond(view_of(messages))
        yield {"messageStart": {"role": "assistant"}}
        if isinstance(answer, str):
            yield {"contentBlockDelta": {"delta": {"text": answer}}}
            yield {"contentBlockStop": {}}
            yield {"messageStop": {"stopReason": "end_turn"}}
            return
        for call in answer:
            start = {"toolUse": {"name": call.tool, "toolUseId": call.call_id}}
            yield {"contentBlockStart": {"start": start}}  # type: ignore[typeddict-item]
            delta = {"toolUse": {"input": json.dumps(call.arguments)}}
            yield {"contentBlockDelta": {"delta": delta}}  # type: ignore[typeddict-item]
            yield {"contentBlockStop": {}}
        yield {"messageStop": {"stopReason": "tool_use"}}


def test_strands_agent_with_errand_tools(server: str, gates: Gates) -> None:
    session = unique("session")
    log = ModelLog(gates)
    model = ScriptedModel(log)
    with Client(server, session_id=session) as client:
        tools = strands_tools(client, gates.tools())
        assert [t.tool_name for t in tools] == [gates.research_name, gates.lookup_name]
        spec = tools[0].tool_spec
        assert spec["description"].startswith("Research a topic thoroughly")
        assert "asynchronous" in spec["description"]
        assert spec["inputSchema"]["json"]["required"] == ["topic"]
        agent = Agent(model=model, tools=tools, callback_handler=None)

        async def main() -> None:
            async with AsyncClient(server, session_id=session) as aclient:
                await scenario.run(aclient, StrandsConversation(agent), log)

        asyncio.run(main())
    assert model.tool_names == [gates.research_name, gates.lookup_name]
    # Strands' own history holds the whole conversation, results included.
    history = view_of(agent.messages)
    assert sum("Async result for task" in text for _, text in history) == 3


def test_a_refused_call_is_an_error_result_for_the_model(server: str, gates: Gates) -> None:
    with Client(server, session_id=unique("session")) as client:
        (tool,) = strands_tools(client, [gates.research])

        async def call() -> Any:
            use = {"toolUseId": "t1", "name": tool.tool_name, "input": {"topic": 7}}
            events = [event async for event in tool.stream(use, {})]  # type: ignore[arg-type]
            return events[-1].tool_result

        result = asyncio.run(call())
    assert result["status"] == "error"
    assert "was not started" in result["content"][0]["text"]
