"""errand tools as LangChain tools, and results fed back into a LangGraph conversation.

    from errand import AsyncAgent, AsyncClient, Client
    from errand.integrations.langchain import LangGraphConversation, langchain_tools

    client = Client(session_id="chat-1")                  # submits the tool calls
    tools = langchain_tools(client, [research_topic, "web_search"])
    graph = create_agent(model, tools, checkpointer=InMemorySaver())   # any messages graph
    config = {"configurable": {"thread_id": "chat-1"}}

    async with AsyncClient(session_id="chat-1") as aclient, \\
            AsyncAgent(LangGraphConversation(graph, config), aclient) as chat:
        await chat.send("Research tides for me.")         # the tool answers with its ack
        await chat.send("Meanwhile: what is the capital of France?")

Each tool is a `StructuredTool` with errand's JSON Schema as `args_schema`; its
call submits through errand and returns the acknowledgement text at once (the
`ToolMessage` the model reads). A call errand could not make (refused, or the
server down or not answering) raises `ToolException`, which the tool turns
into the message the model reads (`handle_tool_error=True`): nothing raises
out of the graph, so a checkpointed thread never keeps a tool call without
its `ToolMessage`. A result arrives later as a `HumanMessage` on the
graph's `messages` state: the conversation invokes the graph with it, on the
checkpointer's thread when the graph has one, or else with the history it
carries from turn to turn. Any compiled LangGraph graph whose state has
`messages` works: `langchain.agents.create_agent`, `create_react_agent`, or
your own `StateGraph` with a `ToolNode`.

Needs `pip install 'errand-sdk[langchain]'` (langchain-core and langgraph, Python 3.11+).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Optional

from errand.integrations._conversation import Conversation
from errand.integrations._session import SessionTool, run_session_tool, session_tools
from errand.integrations._tools import (
    NOT_MADE,
    AnyClient,
    ErrandTool,
    ToolSource,
    for_developer,
    missing,
    not_made,
    resolve_tools,
)

try:
    from langchain_core.messages import AnyMessage, BaseMessage, HumanMessage
    from langchain_core.runnables import Runnable, RunnableConfig
    from langchain_core.tools import StructuredTool, ToolException
except ImportError as exc:  # pragma: no cover - exercised without the extra
    raise missing("langchain", "langchain-core", "langchain", exc) from exc

__all__ = [
    "LangGraphConversation",
    "langchain_session_tools",
    "langchain_tool",
    "langchain_tools",
]


def langchain_tool(tool: ErrandTool) -> StructuredTool:
    """One `ErrandTool` as a `StructuredTool` whose call submits and returns the ack.

    The tool runs both ways (`invoke` and `ainvoke`), except through an
    `AsyncClient`: then only `ainvoke`.
    """

    async def acall(**arguments: Any) -> str:
        try:
            return (await tool.asubmit(arguments)).ack
        except NOT_MADE as exc:
            if for_developer(exc):
                raise
            raise ToolException(not_made(tool.name, exc)) from exc

    def call(**arguments: Any) -> str:
        try:
            return tool.submit(arguments).ack
        except NOT_MADE as exc:
            if for_developer(exc):
                raise
            raise ToolException(not_made(tool.name, exc)) from exc

    return StructuredTool.from_function(
        func=call if tool.blocking else None,
        coroutine=acall,
        name=tool.name,
        description=tool.description,
        args_schema=tool.schema(),
        infer_schema=False,
        handle_tool_error=True,
    )


def langchain_tools(
    client: Optional[AnyClient],
    tools: Optional[Iterable[ToolSource]] = None,
    *,
    session_id: Optional[str] = None,
) -> list[StructuredTool]:
    """errand tools as LangChain `StructuredTool`s, for `bind_tools`, `ToolNode` or agents.

    Args:
        client: submits the calls: an `AsyncToolManager` or a blocking
            `errand.Client` (either works from any thread and event loop, as
            frameworks run tools on loops of their own), or an `AsyncClient`
            (only from its own loop). None: each `@async_tool(manager)`
            function submits through its manager, each `client.tool()`
            callable through its client.
        tools: `@async_tool` functions, `client.tool()` callables, `ToolInfo`s
            or tool names (None: every registered tool); see
            `errand.integrations.resolve_tools`.
        session_id: the errand session the calls go to (default: the
            client's or manager's); the `AsyncAgent` delivering the results
            follows it.
    """
    return [langchain_tool(t) for t in resolve_tools(client, tools, session_id=session_id)]


def langchain_session_tools(
    client: AnyClient, *, session_id: Optional[str] = None, cancel: bool = True
) -> list[StructuredTool]:
    """`errand_read_result`, `errand_pending` and `errand_cancel` as
    `StructuredTool`s (async: `ainvoke`), for the conversation in `session_id`
    (default: the client's); see `errand.integrations.session_tools`. A
    refused call becomes the message the model reads (`ToolException`)."""
    return [_session_tool(t) for t in session_tools(client, session_id=session_id, cancel=cancel)]


def _session_tool(tool: SessionTool) -> StructuredTool:
    async def acall(**arguments: Any) -> str:
        ok, text = await run_session_tool(tool, arguments)
        if not ok:
            raise ToolException(text)
        return text

    return StructuredTool.from_function(
        coroutine=acall,
        name=tool.name,
        description=tool.description,
        args_schema=tool.schema(),
        infer_schema=False,
        handle_tool_error=True,
    )


def _text(message: BaseMessage) -> str:
    content = message.content
    if isinstance(content, str):
        return content
    parts = [
        p if isinstance(p, str) else str(p.get("text", ""))
        for p in content
        if isinstance(p, (str, Mapping))
    ]
    return "".join(parts)


class LangGraphConversation(Conversation):
    """A LangGraph graph with `messages` state as the agent `errand.AsyncAgent` drives.

    Args:
        graph: a compiled graph (or any Runnable) that takes and returns
            `{"messages": [...]}`.
        config: the `RunnableConfig` of every invocation. When the graph has a
            checkpointer, give the thread: `{"configurable": {"thread_id": ...}}`;
            each turn then sends only its new message and the checkpointer
            keeps the history. Without one, the conversation keeps `messages`.

    Raises:
        ValueError: the graph has a checkpointer but `config` names no thread_id.
    """

    _wraps = (Runnable, "a compiled LangGraph graph")

    def __init__(self, graph: Runnable[Any, Any], config: Optional[RunnableConfig] = None) -> None:
        super().__init__(graph)
        self.graph = graph
        self.config = config
        self.checkpointed = getattr(graph, "checkpointer", None) not in (None, False)
        if self.checkpointed and not (config or {}).get("configurable", {}).get("thread_id"):
            raise ValueError(
                "the graph has a checkpointer: pass config={'configurable': {'thread_id': ...}} "
                "so that every turn joins the same thread"
            )
        #: The history so far, when no checkpointer keeps it.
        self.messages: list[AnyMessage] = []

    async def _turn(self, message: str) -> str:
        """Invoke the graph with `message` as a new human message; returns the last reply's text."""
        new = HumanMessage(content=message)
        history: Sequence[AnyMessage] = [] if self.checkpointed else self.messages
        state = await self.graph.ainvoke({"messages": [*history, new]}, self.config)
        messages: list[AnyMessage] = list(state["messages"])
        if not self.checkpointed:
            self.messages = messages
        return _text(messages[-1]) if messages else ""
