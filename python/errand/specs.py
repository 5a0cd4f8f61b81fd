"""Hand errand's tools to a model: `list_tools()` in each model API's tool format.

    tools = client.list_tools()
    openai.chat.completions.create(model=..., messages=..., tools=openai_tools(tools))
    anthropic.messages.create(model=..., messages=..., tools=anthropic_tools(tools))
    bedrock.converse(modelId=..., messages=..., toolConfig=bedrock_tool_config(tools))

The descriptions are the server's, with its notice that the tool is
asynchronous, so the model knows to wait for results rather than invent them.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from typing import Any

from errand.types import ToolInfo

__all__ = ["anthropic_tools", "bedrock_tool_config", "bedrock_tools", "openai_tools"]


def _schema(tool: ToolInfo) -> dict[str, Any]:
    schema = copy.deepcopy(tool.input_schema) if tool.input_schema else {}
    if not schema:
        return {"type": "object", "properties": {}}
    schema.setdefault("type", "object")
    if schema["type"] == "object":
        schema.setdefault("properties", {})
    return schema


def openai_tools(tools: Iterable[ToolInfo]) -> list[dict[str, Any]]:
    """The `tools` parameter of OpenAI-style chat completions."""
    return [
        {
            "type": "function",
            "function": {
                "name": t.name,
                "description": t.description,
                "parameters": _schema(t),
            },
        }
        for t in tools
    ]


def anthropic_tools(tools: Iterable[ToolInfo]) -> list[dict[str, Any]]:
    """The `tools` parameter of the Anthropic Messages API."""
    return [
        {"name": t.name, "description": t.description, "input_schema": _schema(t)} for t in tools
    ]


def bedrock_tools(tools: Iterable[ToolInfo]) -> list[dict[str, Any]]:
    """The `tools` list of a Bedrock Converse `toolConfig`."""
    return [
        {
            "toolSpec": {
                "name": t.name,
                "description": t.description,
                "inputSchema": {"json": _schema(t)},
            }
        }
        for t in tools
    ]


def bedrock_tool_config(tools: Iterable[ToolInfo]) -> dict[str, Any]:
    """The whole `toolConfig` argument of Bedrock's `converse`."""
    return {"tools": bedrock_tools(tools)}
