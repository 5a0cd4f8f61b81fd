"""LangChain tools in a LangGraph agent: errand tools answer at once, results arrive by task ID."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any, Optional

import pytest

pytest.importorskip("langchain_core", reason="needs the langchain extra")
pytest.importorskip("langgraph", reason="needs the langchain extra")

from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, ToolMessage
from langchain_core.outputs import ChatResult
from langchain_core.runnables import Runnable
from langchain_core.utils.function_calling import convert_to_openai_tool
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import START, MessagesState, StateGraph
from langgraph.prebuilt import ToolNode, tools_condition

from errand import AsyncClient, Client
from errand.integrations.langchain import LangGraphConversation, langchain_tools

from ..conftest import unique
from . import scenario
from .scenario import Gates, ModelLog


def view_of(messages: Sequence[BaseMessage]) -> list[tuple[str, str]]:
    kinds = {HumanMessage: "user", ToolMessage: "tool", AIMessage: "assistant"}
    return [(kinds[type(m)], str(m.content)) for m in messages if type(m) in kinds]


class ScriptedChatModel(GenericFakeChatModel):
    """LangChain's fake chat model, fed each answer by the scenario's script."""

    log: Any = None
    offered: Optional[list[dict[str, Any]]] = None

    def bind_tools(self, tools: Sequence[Any], **kwargs: Any) -> Runnable[Any, Any]:
        self.offered = [convert_to_openai_tool(t) for t in tools]
        return self

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: Optional[list[str]] = None,
        run_manager: Any = None,
        **kwargs: Any,
    ) -> ChatResult:
        answer = self.log.respond(view_of(messages))
        if isinstance(answer, str):
            reply = AIMessage(content=answer)
        else:
            calls = [{"name": c.tool, "args": c.arguments, "id": c.call_id} for c in answer]
            reply = AIMessage(content="", tool_calls=calls)
        self.messages = iter([reply])
        return super()._generate(messages, stop=stop, run_manager=run_manager, **kwargs)


def agent_graph(model: ScriptedChatModel, tools: Sequence[Any], checkpointed: bool) -> Any:
    """The usual tool-calling agent: model -> tools -> model, until no tool call."""
    bound = model.bind_tools(tools)

    async def call_model(state: MessagesState) -> dict[str, Any]:
        return {"messages": [await bound.ainvoke(state["messages"])]}

    builder = StateGraph(MessagesState)
    builder.add_node("model", call_model)
    builder.add_node("tools", ToolNode(tools))
    builder.add_edge(START, "model")
    builder.add_conditional_edges("model", tools_condition)
    builder.add_edge("tools", "model")
    return builder.compile(checkpointer=InMemorySaver() if checkpointed else None)


@pytest.mark.parametrize("checkpointed", [False, True], ids=["carried-history", "checkpointer"])
def test_langgraph_agent_with_errand_tools(server: str, gates: Gates, checkpointed: bool) -> None:
    session = unique("session")
    log = ModelLog(gates)
    model = ScriptedChatModel(messages=iter([]), log=log)
    with Client(server, session_id=session) as client:
        tools = langchain_tools(client, gates.tools())
        assert [t.name for t in tools] == [gates.research_name, gates.lookup_name]
        graph = agent_graph(model, tools, checkpointed)
        config: Any = {"configurable": {"thread_id": session}} if checkpointed else None
        conversation = LangGraphConversation(graph, config)

        async def main() -> None:
            async with AsyncClient(server, session_id=session) as aclient:
                await scenario.run(aclient, conversation, log)

        asyncio.run(main())
    # The model was offered errand's tools, with their schemas and the async notice.
    assert model.offered is not None
    names = [t["function"]["name"] for t in model.offered]
    assert names == [gates.research_name, gates.lookup_name]
    research = model.offered[0]["function"]
    assert research["parameters"]["required"] == ["topic"]
    assert "asynchronous" in research["description"]
    state = graph.get_state(config).values if checkpointed else {"messages": conversation.messages}
    messages = state["messages"]
    assert sum("Async result for task" in text for _, text in view_of(messages)) == 3


def test_tools_run_sync_and_refusals_reach_the_model(server: str, gates: Gates) -> None:
    with Client(server, session_id=unique("session")) as client:
        tool = langchain_tools(client, [gates.research])[0]
        ack = tool.invoke({"topic": "a"})  # the blocking path: returns at once
        assert "submitted" in ack and gates.research_name in ack
        refused = tool.invoke({"topic": 7})
        assert str(refused).startswith(f"{tool.name} was not started:")


def test_a_checkpointed_graph_needs_a_thread() -> None:
    graph = agent_graph(ScriptedChatModel(messages=iter([])), [], checkpointed=True)
    with pytest.raises(ValueError, match="thread_id"):
        LangGraphConversation(graph)
