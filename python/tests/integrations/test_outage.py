"""A call errand could not make (the server down or not answering) reaches the
model as the framework's tool error, in every adapter: a tool call that raised
out of the framework instead broke the turn, and a checkpointed LangGraph thread
for good (its AI message kept tool calls no ToolMessage answered).

The server is killed after the client has connected: with `wait_for_ready`
(the default) a call waits for it until the client's `timeout` and fails with
DEADLINE_EXCEEDED (the call may have reached a server: "may have started");
without it, at once with UNAVAILABLE ("was not started").
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any, Callable

import pytest

from errand import Client, async_tool
from errand.integrations import session_tools
from errand.integrations._session import run_session_tool
from errand.integrations._tools import resolve_tools

from ..conftest import ServerProcess, unique


@async_tool
def research(topic: str) -> str:
    """Research a topic."""
    return topic


DEADLINE = 1.0
DOWN = "could not be reached"
SLOW = "did not answer within"


@pytest.fixture(params=["deadline", "unavailable"])
def dead(
    request: Any, server_factory: Callable[..., ServerProcess]
) -> Iterator[tuple[Client, str]]:
    """A client that reached a server which has since been killed, and the words
    the model must read about it."""
    proc = server_factory("--listen", "127.0.0.1:0", "--store", "memory")
    address = proc.start()
    waits = request.param == "deadline"
    with Client(
        address, session_id=unique("session"), timeout=DEADLINE, wait_for_ready=waits
    ) as client:
        client.list_tools()  # connected: from now on calls wait out a restart
        proc.kill()
        yield client, SLOW if waits else DOWN


def test_the_shared_tool_text_says_what_is_true(dead: tuple[Client, str]) -> None:
    from errand.errors import RpcError
    from errand.integrations._tools import not_made

    client, words = dead
    (tool,) = resolve_tools(client, [research])
    with pytest.raises(RpcError) as caught:
        tool.submit({"topic": "a"})
    text = not_made(tool.name, caught.value)
    assert words in text and client.target in text
    if words == SLOW:  # the call may have reached the server before it died
        assert "may have started" in text and "not started" not in text
    else:
        assert "was not started" in text
    assert "try again later" in text.lower()


def test_langchain_tool_answers_the_model(dead: tuple[Client, str]) -> None:
    pytest.importorskip("langchain_core", reason="needs the langchain extra")
    from errand.integrations.langchain import langchain_session_tools, langchain_tools

    client, words = dead
    (tool,) = langchain_tools(client, [research])
    assert words in str(tool.invoke({"topic": "a"}))
    assert words in str(asyncio.run(tool.ainvoke({"topic": "a"})))
    pending = next(t for t in langchain_session_tools(client) if t.name == "errand_pending")
    assert words in str(asyncio.run(pending.ainvoke({})))  # a session tool too


def test_openai_agents_tool_answers_the_model(dead: tuple[Client, str]) -> None:
    pytest.importorskip("agents", reason="needs the openai-agents extra")
    from agents.tool_context import ToolContext

    from errand.integrations.openai_agents import openai_agents_tools

    client, words = dead
    (tool,) = openai_agents_tools(client, [research])
    args = '{"topic": "a"}'
    ctx = ToolContext(context=None, tool_name=tool.name, tool_call_id="c1", tool_arguments=args)
    assert words in str(asyncio.run(tool.on_invoke_tool(ctx, args)))


def test_pydantic_ai_tool_answers_the_model(dead: tuple[Client, str]) -> None:
    pytest.importorskip("pydantic_ai", reason="needs the pydantic-ai extra")
    from pydantic_ai import ToolFailed

    from errand.integrations.pydantic_ai import pydantic_ai_tools

    client, words = dead
    (tool,) = pydantic_ai_tools(client, [research])
    with pytest.raises(ToolFailed) as caught:
        asyncio.run(tool.function(topic="a"))  # type: ignore[call-arg]
    assert words in caught.value.message


def test_strands_tool_answers_the_model(dead: tuple[Client, str]) -> None:
    pytest.importorskip("strands", reason="needs the strands extra")
    from errand.integrations.strands import strands_tools

    client, words = dead
    (tool,) = strands_tools(client, [research])

    async def call() -> Any:
        use = {"toolUseId": "t1", "name": tool.tool_name, "input": {"topic": "a"}}
        events = [event async for event in tool.stream(use, {})]  # type: ignore[arg-type]
        return events[-1].tool_result

    result = asyncio.run(call())
    assert result["status"] == "error"
    assert words in result["content"][0]["text"]


def test_session_tools_answer_the_model(dead: tuple[Client, str]) -> None:
    client, words = dead
    for tool in session_tools(client):
        ok, text = asyncio.run(run_session_tool(tool, {"task_id": "t-1", "reason": "r"}))
        assert not ok and words in text, (tool.name, text)


def test_a_checkpointed_langgraph_thread_survives_an_outage(
    server_factory: Callable[..., ServerProcess],
) -> None:
    """The trial's defect: with the server down, the tool call raised out of the
    graph; the checkpoint kept the AI message's tool call with no ToolMessage,
    and every later turn raised ValueError, the server back or not."""
    pytest.importorskip("langgraph", reason="needs the langchain extra")
    from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
    from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, ToolMessage
    from langchain_core.outputs import ChatGeneration, ChatResult
    from langgraph.checkpoint.memory import InMemorySaver
    from langgraph.graph import START, MessagesState, StateGraph
    from langgraph.prebuilt import ToolNode, tools_condition

    from errand.integrations.langchain import LangGraphConversation, langchain_tools

    class Model(GenericFakeChatModel):
        def bind_tools(self, tools: Any, **kwargs: Any) -> Any:
            return self

        def _generate(self, messages: list[BaseMessage], *a: Any, **kw: Any) -> ChatResult:
            last = messages[-1]
            if isinstance(last, HumanMessage) and "Research" in str(last.content):
                call = {"name": "research", "args": {"topic": "tides"}, "id": "c1"}
                reply = AIMessage(content="", tool_calls=[call])
            else:
                reply = AIMessage(content=f"seen: {last.content}")
            return ChatResult(generations=[ChatGeneration(message=reply)])

    proc = server_factory("--listen", "127.0.0.1:0", "--store", "memory")
    address = proc.start()
    with Client(address, session_id=unique("session"), timeout=DEADLINE) as client:
        client.list_tools()
        tools = langchain_tools(client, [research])
        model = Model(messages=iter([]))

        async def call_model(state: MessagesState) -> dict[str, Any]:
            return {"messages": [await model.ainvoke(state["messages"])]}

        builder = StateGraph(MessagesState)
        builder.add_node("model", call_model)
        builder.add_node("tools", ToolNode(tools))
        builder.add_edge(START, "model")
        builder.add_conditional_edges("model", tools_condition)
        builder.add_edge("tools", "model")
        graph = builder.compile(checkpointer=InMemorySaver())
        config: Any = {"configurable": {"thread_id": "t"}}
        chat = LangGraphConversation(graph, config)
        proc.kill()

        async def main() -> tuple[str, str]:
            first = await chat.send("Research tides")
            return first, await chat.send("hello again")

        first, second = asyncio.run(main())
    assert SLOW in first  # the model read the tool's error and answered with it
    assert second == "seen: hello again"
    messages = graph.get_state(config).values["messages"]
    (answer,) = [m for m in messages if isinstance(m, ToolMessage)]
    assert answer.tool_call_id == "c1" and SLOW in str(answer.content)
