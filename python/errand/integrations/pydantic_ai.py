"""errand tools in Pydantic AI, and results fed back as the next user prompt.

    from pydantic_ai import Agent
    from errand import AsyncAgent, AsyncClient, Client
    from errand.integrations.pydantic_ai import PydanticAIConversation, pydantic_ai_tools

    client = Client(session_id="chat-1")                  # submits the tool calls
    agent = Agent(model, tools=pydantic_ai_tools(client, [research_topic, "web_search"]))

    async with AsyncClient(session_id="chat-1") as aclient, \\
            AsyncAgent(PydanticAIConversation(agent), aclient) as chat:
        await chat.send("Research tides for me.")         # the tool answers with its ack
        await chat.send("Meanwhile: what is the capital of France?")

Each tool is a `Tool.from_schema` with errand's JSON Schema; its call submits
through errand and returns the acknowledgement text at once. Arguments the
server rejects raise `ModelRetry` (the model corrects them and calls again); a
tool no worker serves, a full queue, or a server down or not answering, raises
`ToolFailed` (the model sees the failure and adapts). A result arrives later
as the user prompt of the next run, continuing `message_history`, which is how
a Pydantic AI conversation goes on.

Needs `pip install 'errand-sdk[pydantic-ai]'` (pydantic-ai-slim, Python 3.11+).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Optional

from errand.errors import InvalidArgument
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
    from pydantic_ai import Agent, ModelRetry, Tool, ToolFailed
    from pydantic_ai.messages import ModelMessage
except ImportError as exc:  # pragma: no cover - exercised without the extra
    raise missing("pydantic_ai", "pydantic-ai-slim", "pydantic-ai", exc) from exc

__all__ = [
    "PydanticAIConversation",
    "pydantic_ai_session_tools",
    "pydantic_ai_tool",
    "pydantic_ai_tools",
]


def pydantic_ai_tool(tool: ErrandTool) -> Tool[Any]:
    """One `ErrandTool` as a Pydantic AI `Tool` whose call submits and returns the ack."""

    async def call(**arguments: Any) -> str:
        try:
            return (await tool.asubmit(arguments)).ack
        except InvalidArgument as exc:
            raise ModelRetry(f"{tool.name} was not started: {exc}") from exc
        except NOT_MADE as exc:
            if for_developer(exc):
                raise
            raise ToolFailed(not_made(tool.name, exc)) from exc

    return Tool.from_schema(
        call, name=tool.name, description=tool.description, json_schema=tool.schema()
    )


def pydantic_ai_tools(
    client: Optional[AnyClient],
    tools: Optional[Iterable[ToolSource]] = None,
    *,
    session_id: Optional[str] = None,
) -> list[Tool[Any]]:
    """errand tools as Pydantic AI `Tool`s, for `Agent(tools=...)`.

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
    return [pydantic_ai_tool(t) for t in resolve_tools(client, tools, session_id=session_id)]


def pydantic_ai_session_tools(
    client: AnyClient, *, session_id: Optional[str] = None, cancel: bool = True
) -> list[Tool[Any]]:
    """`errand_read_result`, `errand_pending` and `errand_cancel` as Pydantic AI
    `Tool`s, for the conversation in `session_id` (default: the client's); see
    `errand.integrations.session_tools`. A refused call raises `ModelRetry`."""
    return [_session_tool(t) for t in session_tools(client, session_id=session_id, cancel=cancel)]


def _session_tool(tool: SessionTool) -> Tool[Any]:
    async def call(**arguments: Any) -> str:
        ok, text = await run_session_tool(tool, arguments)
        if not ok:
            raise ModelRetry(text)
        return text

    return Tool.from_schema(
        call, name=tool.name, description=tool.description, json_schema=tool.schema()
    )


class PydanticAIConversation(Conversation):
    """A Pydantic AI `Agent` as the `send`/`is_idle` agent `errand.AsyncAgent` drives.

    Args:
        agent: the agent.
        deps: the dependencies passed to every run.
        message_history: a history to continue (e.g. one loaded from storage).

    Each `send(message)` is one `agent.run(message, message_history=...)`; the
    run's `all_messages()` become the history of the next.
    """

    _wraps = (Agent, "a pydantic_ai.Agent")

    def __init__(
        self,
        agent: Agent[Any, Any],
        *,
        deps: Any = None,
        message_history: Optional[list[ModelMessage]] = None,
    ) -> None:
        super().__init__(agent)
        self.agent = agent
        self.deps = deps
        #: The conversation so far, as Pydantic AI messages.
        self.messages: list[ModelMessage] = list(message_history or [])

    async def _turn(self, message: str) -> str:
        """Run the agent with `message` as the next user prompt; returns the output as text."""
        result = await self.agent.run(
            message, message_history=self.messages or None, deps=self.deps
        )
        self.messages = result.all_messages()
        return str(result.output)
