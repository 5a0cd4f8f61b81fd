"""Each framework's wrapping of the session tools, called through the framework's own
tool interface (a scripted client; no server, no model)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from .test_session_tools import ScriptedClient

GOOD = {"task_id": "t1", "reason": "not needed any more"}
REFUSED = {"task_id": "t2", "reason": "r"}  # its tool is not cancellable_by_model


def by_name(tools: list[Any], attr: str = "name") -> dict[str, Any]:
    return {getattr(t, attr): t for t in tools}


def test_strands() -> None:
    pytest.importorskip("strands")
    from errand.integrations.strands import strands_session_tools

    async def call(tool: Any, arguments: dict[str, Any]) -> dict[str, Any]:
        events = [e async for e in tool.stream({"toolUseId": "u1", "input": arguments}, {})]
        result: dict[str, Any] = events[-1]["tool_result"]
        return result

    async def scenario() -> None:
        client = ScriptedClient()
        tools = by_name(strands_session_tools(client), "tool_name")
        assert set(tools) == {"errand_read_result", "errand_pending", "errand_cancel"}
        ok = await call(tools["errand_cancel"], GOOD)
        assert ok["status"] == "success"
        assert json.loads(ok["content"][0]["text"])["status"] == "CANCELLED"
        refused = await call(tools["errand_cancel"], REFUSED)
        assert (
            refused["status"] == "error" and "cancellable_by_model" in refused["content"][0]["text"]
        )
        page = await call(tools["errand_read_result"], {"task_id": "t1", "max_bytes": 100})
        assert json.loads(page["content"][0]["text"])["next_offset"] <= 100
        assert client.cancelled == [("t1", GOOD["reason"])]

    asyncio.run(scenario())


def test_openai_agents() -> None:
    pytest.importorskip("agents")
    from errand.integrations.openai_agents import openai_agents_session_tools

    async def scenario() -> None:
        client = ScriptedClient()
        tools = by_name(openai_agents_session_tools(client, cancel=False))
        assert set(tools) == {"errand_read_result", "errand_pending"}
        pending = await tools["errand_pending"].on_invoke_tool(None, "")
        assert json.loads(pending) == {"pending": 0, "unacknowledged": 0}
        cancel = by_name(openai_agents_session_tools(client))["errand_cancel"]
        assert "cancellable_by_model" in await cancel.on_invoke_tool(None, json.dumps(REFUSED))
        done = json.loads(await cancel.on_invoke_tool(None, json.dumps(GOOD)))
        assert done == {"task_id": "t1", "status": "CANCELLED"}

    asyncio.run(scenario())


def test_langchain() -> None:
    pytest.importorskip("langchain_core")
    from errand.integrations.langchain import langchain_session_tools

    async def scenario() -> None:
        client = ScriptedClient()
        tools = by_name(langchain_session_tools(client))
        cancel = tools["errand_cancel"]
        assert "cancellable_by_model" in await cancel.ainvoke(REFUSED)
        assert json.loads(await cancel.ainvoke(GOOD))["status"] == "CANCELLED"
        page = json.loads(await tools["errand_read_result"].ainvoke({"task_id": "t1"}))
        assert page["offset"] == 0 and page["total_bytes"] > 0

    asyncio.run(scenario())


def test_pydantic_ai() -> None:
    pytest.importorskip("pydantic_ai")
    from pydantic_ai import ModelRetry

    from errand.integrations.pydantic_ai import pydantic_ai_session_tools

    async def scenario() -> None:
        client = ScriptedClient()
        tools = by_name(pydantic_ai_session_tools(client))
        cancel = tools["errand_cancel"].function
        with pytest.raises(ModelRetry, match="cancellable_by_model"):
            await cancel(**REFUSED)
        assert json.loads(await cancel(**GOOD))["status"] == "CANCELLED"
        assert json.loads(await tools["errand_pending"].function())["pending"] == 0

    asyncio.run(scenario())
