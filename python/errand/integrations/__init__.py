"""Adapters that hand errand's tools to agent frameworks.

Each adapter is a module of its own, imported only when used, and needs its
framework installed (an optional extra of the errand package):

- `errand.integrations.strands`       Strands Agents      `pip install 'errand-sdk[strands]'`
- `errand.integrations.openai_agents` OpenAI Agents SDK   `pip install 'errand-sdk[openai-agents]'`
- `errand.integrations.langchain`     LangChain/LangGraph `pip install 'errand-sdk[langchain]'`
- `errand.integrations.pydantic_ai`   Pydantic AI         `pip install 'errand-sdk[pydantic-ai]'`

Every adapter does three things:

1. **Tools.** It turns errand tools (the seed's `@async_tool(manager)`
   functions, `client.tool()` callables, bare `@async_tool` functions served
   elsewhere, `ToolInfo`s, or tool names) into the framework's tool objects. When
   the model calls one, the call is submitted through errand and the tool
   returns the server's acknowledgement at once (task ID, tool, arguments, and
   "the result arrives later"), while a worker runs the tool.
2. **Conversation.** It wraps the framework's agent in an object with
   `send(message)` (and `is_idle()`), the protocol `errand.AsyncAgent` drives:
   `AsyncAgent` follows the session's completions and hands each result (a
   text naming its task ID, tool and result) to the agent as a new user message
   in the framework's own conversation (history, session or thread), when the
   agent is idle, or with or after the turn it is busy with.
3. **Session tools.** `<framework>_session_tools(client)` gives the model
   `errand_read_result(task_id, offset, max_bytes)` (page through a result
   delivered truncated), `errand_pending()` (the session's digest of what is
   still running, worded by the rule of the digest `AsyncAgent` prepends) and
   `errand_cancel(task_id, reason)` (refused unless the tool is registered
   `cancellable_by_model`); their bodies are shared, in
   `errand.integrations._session`.

    manager = AsyncToolManager(max_workers=4)

    @async_tool(manager)
    def research_topic(topic: str) -> str: ...

    agent = strands.Agent(model=..., tools=strands_tools(manager, [research_topic]))
    async with AsyncAgent(StrandsConversation(agent), manager) as chat:
        await chat.send("Research tides for me.")

Without the framework, importing its adapter raises ImportError naming the
extra to install. This package itself imports no framework.
"""

from __future__ import annotations

from errand.integrations._session import Refused, SessionTool, SessionTools, session_tools
from errand.integrations._tools import ASYNC_NOTICE, ErrandTool, ToolSource, resolve_tools

__all__ = [
    "ASYNC_NOTICE",
    "ErrandTool",
    "Refused",
    "SessionTool",
    "SessionTools",
    "ToolSource",
    "resolve_tools",
    "session_tools",
]
