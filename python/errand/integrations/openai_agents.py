"""errand tools in the OpenAI Agents SDK, and results fed back as new user input.

    from agents import Agent
    from errand import AsyncAgent, AsyncClient, Client
    from errand.integrations.openai_agents import OpenAIAgentsConversation, openai_agents_tools

    client = Client(session_id="chat-1")                  # submits the tool calls
    agent = Agent(name="assistant", tools=openai_agents_tools(client, [research_topic]))

    async with AsyncClient(session_id="chat-1") as aclient, \\
            AsyncAgent(OpenAIAgentsConversation(agent), aclient) as chat:
        await chat.send("Research tides for me.")         # the tool answers with its ack
        await chat.send("Meanwhile: what is the capital of France?")

Each tool is a `FunctionTool` whose `on_invoke_tool` submits through errand
and returns the acknowledgement text at once; a call errand could not make
(the server refused it, or is down or not answering) returns why as the tool's
output (the SDK's way to let the model correct itself or tell the user). A
result arrives later as a user message: the conversation runs `Runner.run`
with it as the next input, on the SDK `Session` you give (e.g.
`SQLiteSession`), or else on the input list `RunResult.to_input_list()`
carries from turn to turn.

Needs `pip install 'errand-sdk[openai-agents]'` (openai-agents, Python 3.10+).
"""

from __future__ import annotations

import json
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
from errand.specs import strict_schema

try:
    from agents import Agent, FunctionTool, RunConfig, Runner, TResponseInputItem
    from agents.memory import Session
    from agents.tool_context import ToolContext
except ImportError as exc:  # pragma: no cover - exercised without the extra
    raise missing("openai_agents", "openai-agents", "openai-agents", exc) from exc

__all__ = [
    "OpenAIAgentsConversation",
    "openai_agents_session_tools",
    "openai_agents_tool",
    "openai_agents_tools",
]


def openai_agents_tool(tool: ErrandTool, *, strict: bool = False) -> FunctionTool:
    """One `ErrandTool` as a `FunctionTool` whose call submits and returns the ack.

    By default the schema is errand's own (optional arguments stay optional)
    and is not sent in the SDK's strict mode. `strict=True` sends it as
    strict mode demands (`errand.specs.strict_schema`: every argument
    required, optional ones nullable); a null the model gives for an optional
    top-level argument is then left out of the call, so the tool's default
    applies.
    """
    schema = tool.schema()
    optional = set(schema.get("properties") or {}) - set(schema.get("required") or [])

    async def invoke(context: ToolContext[Any], arguments_json: str) -> str:
        try:
            arguments = json.loads(arguments_json) if arguments_json.strip() else {}
        except json.JSONDecodeError as exc:
            return f"{tool.name} was not started: its arguments are not JSON ({exc})"
        if not isinstance(arguments, dict):
            return f"{tool.name} was not started: its arguments must be a JSON object"
        if strict:
            arguments = {k: v for k, v in arguments.items() if v is not None or k not in optional}
        try:
            ack = await tool.asubmit(arguments)
        except NOT_MADE as exc:
            if for_developer(exc):
                raise
            return not_made(tool.name, exc)
        return ack.ack

    return FunctionTool(
        name=tool.name,
        description=tool.description,
        params_json_schema=strict_schema(schema) if strict else schema,
        on_invoke_tool=invoke,
        strict_json_schema=strict,
    )


def openai_agents_tools(
    client: Optional[AnyClient],
    tools: Optional[Iterable[ToolSource]] = None,
    *,
    session_id: Optional[str] = None,
    strict: bool = False,
) -> list[FunctionTool]:
    """errand tools as `FunctionTool`s, for `Agent(tools=...)`.

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
        strict: send the schemas in strict mode (see `openai_agents_tool`).
    """
    resolved = resolve_tools(client, tools, session_id=session_id)
    return [openai_agents_tool(t, strict=strict) for t in resolved]


def openai_agents_session_tools(
    client: AnyClient, *, session_id: Optional[str] = None, cancel: bool = True
) -> list[FunctionTool]:
    """`errand_read_result`, `errand_pending` and `errand_cancel` as `FunctionTool`s
    (not strict), for the conversation in `session_id` (default: the client's);
    see `errand.integrations.session_tools`. A refused call returns its reason."""
    return [_session_tool(t) for t in session_tools(client, session_id=session_id, cancel=cancel)]


def _session_tool(tool: SessionTool) -> FunctionTool:
    async def invoke(context: ToolContext[Any], arguments_json: str) -> str:
        try:
            arguments = json.loads(arguments_json) if arguments_json.strip() else {}
        except json.JSONDecodeError as exc:
            return f"the arguments of {tool.name} are not JSON ({exc})"
        return (await run_session_tool(tool, arguments))[1]

    return FunctionTool(
        name=tool.name,
        description=tool.description,
        params_json_schema=tool.schema(),
        on_invoke_tool=invoke,
        strict_json_schema=False,
    )


class OpenAIAgentsConversation(Conversation):
    """An OpenAI Agents SDK agent as the `send`/`is_idle` agent `errand.AsyncAgent` drives.

    Args:
        agent: the agent each turn starts with.
        session: an SDK `Session` that keeps the history (e.g.
            `SQLiteSession("chat-1")`); without one the conversation keeps
            the input list itself (`history`).
        run_config, context, max_turns: passed to every `Runner.run`.

    Each `send(message)` is one `Runner.run` with the message as a new user
    input item after the history, and returns the run's final output as text.
    """

    _wraps = (Agent, "an agents.Agent")

    def __init__(
        self,
        agent: Agent[Any],
        *,
        session: Optional[Session] = None,
        run_config: Optional[RunConfig] = None,
        context: Any = None,
        max_turns: Optional[int] = None,
    ) -> None:
        super().__init__(agent)
        self.agent = agent
        self.session = session
        self.run_config = run_config
        self.context = context
        self.max_turns = max_turns
        #: The input items so far, when no `session` keeps them.
        self.history: list[TResponseInputItem] = []

    async def _turn(self, message: str) -> str:
        """Run the agent with `message` as the user's next input; returns the final output."""
        extra: dict[str, Any] = {}
        if self.max_turns is not None:
            extra["max_turns"] = self.max_turns
        if self.session is not None:
            result = await Runner.run(
                self.agent,
                message,
                session=self.session,
                run_config=self.run_config,
                context=self.context,
                **extra,
            )
        else:
            user: TResponseInputItem = {"role": "user", "content": message}
            result = await Runner.run(
                self.agent,
                [*self.history, user],
                run_config=self.run_config,
                context=self.context,
                **extra,
            )
            self.history = result.to_input_list()
        return str(result.final_output)
