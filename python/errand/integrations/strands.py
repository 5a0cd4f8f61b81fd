"""errand tools in Strands Agents, and results fed back into the agent's conversation.

    from strands import Agent
    from errand import AsyncAgent, AsyncClient, Client
    from errand.integrations.strands import StrandsConversation, strands_tools

    client = Client(session_id="chat-1")                  # submits the tool calls
    agent = Agent(model=..., tools=strands_tools(client, [research_topic, "web_search"]))

    async with AsyncClient(session_id="chat-1") as aclient, \\
            AsyncAgent(StrandsConversation(agent), aclient) as chat:
        await chat.send("Research tides for me.")         # the tool answers with its ack
        await chat.send("Meanwhile: what is the capital of France?")
        # each result reaches the agent as a user message naming its task ID

A tool call returns a `ToolResult` whose text is errand's acknowledgement, at
once; a call errand could not make (arguments that fail the schema, a tool no
worker serves, the server down or not answering) returns an "error" result
saying why, so the model can correct itself or tell the user. Results arrive
later as user text messages in `agent.messages`, through `agent.invoke_async`,
which is how a Strands conversation takes new input.

Needs `pip install 'errand-sdk[strands]'` (strands-agents, Python 3.10+).
"""

from __future__ import annotations

from collections.abc import Iterable
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
    from strands import Agent
    from strands.hooks import AfterInvocationEvent, BeforeInvocationEvent
    from strands.tools.tools import PythonAgentTool
    from strands.types.tools import AgentTool, ToolResult, ToolSpec, ToolUse
except ImportError as exc:  # pragma: no cover - exercised without the extra
    raise missing("strands", "strands-agents", "strands", exc) from exc

__all__ = ["StrandsConversation", "strands_session_tools", "strands_tool", "strands_tools"]


def strands_tool(tool: ErrandTool) -> AgentTool:
    """One `ErrandTool` as a Strands tool whose call submits and returns the ack."""
    spec: ToolSpec = {
        "name": tool.name,
        "description": tool.description,
        "inputSchema": {"json": tool.schema()},
    }

    async def call(tool_use: ToolUse, **_invocation_state: Any) -> ToolResult:
        tool_use_id = tool_use["toolUseId"]
        arguments = tool_use.get("input") or {}
        if not isinstance(arguments, dict):
            return {
                "toolUseId": tool_use_id,
                "status": "error",
                "content": [{"text": f"arguments of {tool.name} must be a JSON object"}],
            }
        try:
            ack = await tool.asubmit(arguments)
        except NOT_MADE as exc:  # an "error" tool result, not a failed turn
            if for_developer(exc):
                raise
            return {
                "toolUseId": tool_use_id,
                "status": "error",
                "content": [{"text": not_made(tool.name, exc)}],
            }
        return {"toolUseId": tool_use_id, "status": "success", "content": [{"text": ack.ack}]}

    return PythonAgentTool(tool.name, spec, call)


def strands_tools(
    client: Optional[AnyClient],
    tools: Optional[Iterable[ToolSource]] = None,
    *,
    session_id: Optional[str] = None,
) -> list[AgentTool]:
    """errand tools as Strands tools, for `Agent(tools=...)`.

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
    return [strands_tool(t) for t in resolve_tools(client, tools, session_id=session_id)]


def strands_session_tools(
    client: AnyClient, *, session_id: Optional[str] = None, cancel: bool = True
) -> list[AgentTool]:
    """`errand_read_result`, `errand_pending` and `errand_cancel` as Strands tools,
    for the conversation in `session_id` (default: the client's); see
    `errand.integrations.session_tools`. A refused call is an "error" result."""
    return [_session_tool(t) for t in session_tools(client, session_id=session_id, cancel=cancel)]


def _session_tool(tool: SessionTool) -> AgentTool:
    spec: ToolSpec = {
        "name": tool.name,
        "description": tool.description,
        "inputSchema": {"json": tool.schema()},
    }

    async def call(tool_use: ToolUse, **_invocation_state: Any) -> ToolResult:
        ok, text = await run_session_tool(tool, tool_use.get("input") or {})
        return {
            "toolUseId": tool_use["toolUseId"],
            "status": "success" if ok else "error",
            "content": [{"text": text}],
        }

    return PythonAgentTool(tool.name, spec, call)


class StrandsConversation(Conversation):
    """A Strands `Agent` as the `send`/`is_idle` agent that `errand.AsyncAgent` drives.

    `send(message)` runs one invocation (`agent.invoke_async`), so the user's
    messages and delivered results both join `agent.messages` as user turns, in
    order. The agent is busy from each invocation's start to its end, also for
    invocations made directly on the agent (tracked with Strands hooks), so a
    result that arrives meanwhile waits for `AsyncAgent` to drain it.
    """

    _wraps = (Agent, "a strands.Agent")

    def __init__(self, agent: Agent) -> None:
        super().__init__(agent)
        self.agent = agent
        agent.add_hook(self._started, BeforeInvocationEvent)
        agent.add_hook(self._ended, AfterInvocationEvent)

    def _started(self, event: BeforeInvocationEvent) -> None:
        self._running += 1

    def _ended(self, event: AfterInvocationEvent) -> None:
        self._running = max(0, self._running - 1)

    async def _turn(self, message: str) -> str:
        """One invocation with `message` as the user's turn; returns the reply text."""
        result = await self.agent.invoke_async(message)
        return str(result).strip()
