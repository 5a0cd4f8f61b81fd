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

from errand import AsyncAgent, AsyncClient, AsyncToolManager, Client
from errand.integrations.strands import StrandsConversation, strands_tools

from ..conftest import EVENT_TIMEOUT, unique
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


class HeldModel(ScriptedModel):
    """Holds its answer to "hold" until the test releases it."""

    def __init__(self, log: ModelLog) -> None:
        super().__init__(log)
        self.holding = asyncio.Event()
        self.release = asyncio.Event()

    async def stream(  # type: ignore[override]
        self, messages: Messages, tool_specs: list[ToolSpec] | None = None, *a: Any, **kw: Any
    ) -> AsyncIterable[StreamEvent]:
        if view_of(messages)[-1] == ("user", "hold"):
            self.holding.set()
            await self.release.wait()
        async for event in super().stream(messages, tool_specs, *a, **kw):
            yield event


def test_a_result_waits_while_the_agent_is_invoked_elsewhere(server: str, gates: Gates) -> None:
    """The hooks tell AsyncAgent that the agent is busy even when the app invokes it itself."""
    session = unique("session")
    log = ModelLog(gates)

    async def main() -> None:
        model = HeldModel(log)
        with Client(server, session_id=session) as client:
            agent = Agent(
                model=model, tools=strands_tools(client, gates.tools()), callback_handler=None
            )
            conversation = StrandsConversation(agent)
            statuses: asyncio.Queue[tuple[str, list[str]]] = asyncio.Queue()

            def on_status(status: str, completions: Any) -> None:
                statuses.put_nowait((status, [c.task_id for c in completions]))

            async with (
                AsyncClient(server, session_id=session) as aclient,
                AsyncAgent(conversation, aclient, on_status=on_status) as async_agent,
            ):
                ack = await aclient.submit(gates.research_name, topic="a")
                direct = asyncio.ensure_future(agent.invoke_async("hold"))  # not through AsyncAgent
                await asyncio.wait_for(model.holding.wait(), EVENT_TIMEOUT)
                assert not conversation.is_idle()
                gates.open("a")
                assert await asyncio.wait_for(statuses.get(), EVENT_TIMEOUT) == (
                    "queued",
                    [ack.task_id],
                )
                model.release.set()
                await asyncio.wait_for(direct, EVENT_TIMEOUT)
                assert conversation.is_idle()
                await async_agent.drain()
                got = [await asyncio.wait_for(statuses.get(), EVENT_TIMEOUT) for _ in range(2)]
                assert got == [("draining", [ack.task_id]), ("delivered", [ack.task_id])]
        users = [text for kind, text in view_of(agent.messages) if kind == "user"]
        assert users[0] == "hold" and ack.task_id in users[1]

    asyncio.run(main())


def test_the_seeds_manager_and_decorator_with_a_strands_agent(server: str) -> None:
    """The seed's own parts: AsyncToolManager, @async_tool(manager), AsyncAgent(agent, manager)."""
    manager = AsyncToolManager(max_workers=4, server=server, session_id=unique("session"))
    gates = Gates(manager)  # @async_tool(manager) functions: calling one submits it
    log = ModelLog(gates)
    with manager:
        try:
            # No client: each decorated function submits through its manager;
            # the other tool is found by name through the manager.
            tools = strands_tools(manager, gates.tools())
            assert [t.tool_name for t in tools] == [gates.research_name, gates.lookup_name]
            agent = Agent(model=ScriptedModel(log), tools=tools, callback_handler=None)
            asyncio.run(scenario.run(manager, StrandsConversation(agent), log))
            assert strands_tools(None, [gates.research])[0].tool_name == gates.research_name
        finally:
            gates.open_all()
