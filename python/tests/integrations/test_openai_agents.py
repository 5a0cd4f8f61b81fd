"""OpenAI Agents SDK: errand tools answer at once, results join the conversation by task ID."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any, Callable

import pytest

pytest.importorskip("agents", reason="needs the openai-agents extra")

from agents import Agent, RunConfig, SQLiteSession
from agents.testing import ModelCall, ModelStep, ScriptedModel, assistant_message, function_call
from agents.tool_context import ToolContext

from errand import AsyncClient, Client, Worker, async_tool
from errand.integrations.openai_agents import OpenAIAgentsConversation, openai_agents_tools

from ..conftest import unique
from . import scenario
from .scenario import Gates, ModelLog


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    return "".join(part.get("text", "") for part in content if isinstance(part, Mapping))


def view_of(items: Any) -> list[tuple[str, str]]:
    """The conversation as the scenario reads it, from Responses-API input items."""
    if isinstance(items, str):
        return [("user", items)]
    out: list[tuple[str, str]] = []
    for item in items:
        item = item if isinstance(item, Mapping) else item.model_dump()
        if item.get("type") == "function_call_output":
            out.append(("tool", _text(item["output"])))
        elif item.get("role") in ("user", "assistant"):
            out.append((item["role"], _text(item["content"])))
    return out


def scripted_model(log: ModelLog, steps: int = 20) -> ScriptedModel:
    """The SDK's own test model, each step answering by the scenario's script."""

    def respond(call: ModelCall) -> Any:
        answer = log.respond(view_of(call.input))
        if isinstance(answer, str):
            return [assistant_message(answer)]
        return [function_call(c.tool, c.arguments, call_id=c.call_id) for c in answer]

    return ScriptedModel([ModelStep.respond(respond) for _ in range(steps)])


@pytest.mark.parametrize("with_session", [False, True], ids=["input-list", "sdk-session"])
def test_openai_agent_with_errand_tools(server: str, gates: Gates, with_session: bool) -> None:
    session = unique("session")
    log = ModelLog(gates)
    model = scripted_model(log)
    with Client(server, session_id=session) as client:
        tools = openai_agents_tools(client, gates.tools())
        assert [t.name for t in tools] == [gates.research_name, gates.lookup_name]
        assert tools[0].description.startswith("Research a topic thoroughly")
        assert "asynchronous" in tools[0].description
        assert tools[1].params_json_schema["required"] == ["key"]
        agent = Agent(name="assistant", instructions="Help the user.", model=model, tools=tools)
        sdk_session = SQLiteSession(session) if with_session else None
        conversation = OpenAIAgentsConversation(
            agent, session=sdk_session, run_config=RunConfig(tracing_disabled=True)
        )

        async def main() -> None:
            async with AsyncClient(server, session_id=session) as aclient:
                await scenario.run(aclient, conversation, log)

        asyncio.run(main())
    # The tools the model was offered are errand's, with their descriptions.
    offered = model.calls[0].tools
    assert [t.name for t in offered] == [gates.research_name, gates.lookup_name]
    if sdk_session is None:
        history = view_of(conversation.history)
    else:
        history = view_of(asyncio.run(sdk_session.get_items()))
    assert sum("Async result for task" in text for _, text in history) == 3


def test_a_refused_call_is_an_error_output_for_the_model(server: str, gates: Gates) -> None:
    with Client(server, session_id=unique("session")) as client:
        (tool,) = openai_agents_tools(client, [gates.lookup_name])
        ctx = ToolContext(
            context=None, tool_name=tool.name, tool_call_id="c1", tool_arguments='{"key": 7}'
        )
        output = asyncio.run(tool.on_invoke_tool(ctx, '{"key": 7}'))
    assert str(output).startswith(f"{tool.name} was not started:")


def test_strict_mode_schema_and_null_optional_arguments(
    server: str, start_worker: Callable[..., Worker]
) -> None:
    @async_tool(name=unique("depth"))
    def research_depth(topic: str, depth: int = 1) -> str:
        """Research a topic to some depth."""
        return f"{topic} at {depth}"

    start_worker(research_depth)
    with Client(server, session_id=unique("session")) as client:
        (tool,) = openai_agents_tools(client, [research_depth], strict=True)
        assert tool.strict_json_schema
        schema = tool.params_json_schema
        assert schema["required"] == ["topic", "depth"]
        assert schema["additionalProperties"] is False
        assert schema["properties"]["depth"]["type"] == ["integer", "null"]
        args = '{"topic": "tides", "depth": null}'  # strict mode: the model sends null
        ctx = ToolContext(context=None, tool_name=tool.name, tool_call_id="c1", tool_arguments=args)
        ack = str(asyncio.run(tool.on_invoke_tool(ctx, args)))
        match = scenario.ACK.search(ack)
        assert match, ack
        assert client.result(match.group(1), timeout=30) == "tides at 1"  # the default applied
