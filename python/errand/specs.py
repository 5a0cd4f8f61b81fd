"""Hand errand's tools to a model: `list_tools()` in each model API's tool format.

    tools = client.list_tools()
    openai.chat.completions.create(model=..., messages=..., tools=openai_tools(tools))
    openai.responses.create(model=..., input=..., tools=openai_responses_tools(tools, strict=True))
    anthropic.messages.create(model=..., messages=..., tools=anthropic_tools(tools))
    bedrock.converse(modelId=..., messages=..., toolConfig=bedrock_tool_config(tools))

The descriptions are the server's, with its notice that the tool is
asynchronous, so the model knows to wait for results rather than invent them.

`strict=True` (OpenAI's structured outputs for function calls) rewrites each
schema as strict mode demands: every property listed in `required` (the
optional ones made nullable, so the model passes null instead of leaving them
out), no `default`, and `additionalProperties: false` on every object. A
free-form map (`dict[str, T]`) cannot be expressed in strict mode and becomes
an object without properties: leave `strict` off for such tools.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from typing import Any

from errand.types import ToolInfo

__all__ = [
    "anthropic_tools",
    "bedrock_tool_config",
    "bedrock_tools",
    "openai_responses_tools",
    "openai_tools",
    "strict_schema",
]


def _schema(tool: ToolInfo) -> dict[str, Any]:
    schema = copy.deepcopy(tool.input_schema) if tool.input_schema else {}
    if not schema:
        return {"type": "object", "properties": {}}
    schema.setdefault("type", "object")
    if schema["type"] == "object":
        schema.setdefault("properties", {})
    return schema


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    kind = schema.get("type")
    if isinstance(kind, str) and kind != "null":
        out = {**schema, "type": [kind, "null"]}
    elif isinstance(kind, list):
        out = schema if "null" in kind else {**schema, "type": [*kind, "null"]}
    else:
        return {"anyOf": [schema, {"type": "null"}]}
    if "enum" in out and None not in out["enum"]:
        out["enum"] = [*out["enum"], None]
    return out


def strict_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """`schema` as OpenAI's strict mode wants it (see the module's doc); a new dict."""

    def walk(node: Any) -> Any:
        if isinstance(node, list):
            return [walk(n) for n in node]
        if not isinstance(node, dict):
            return node
        out = {k: walk(v) for k, v in node.items() if k != "default"}
        if out.get("type") == "object" or "properties" in out:
            props: dict[str, Any] = out.get("properties") or {}
            required = set(node.get("required") or [])
            out["properties"] = {
                name: prop if name in required else _nullable(prop) for name, prop in props.items()
            }
            out["required"] = list(props)
            out["additionalProperties"] = False
        return out

    result: dict[str, Any] = walk(copy.deepcopy(schema))
    return result


def _parameters(tool: ToolInfo, strict: bool) -> dict[str, Any]:
    return strict_schema(_schema(tool)) if strict else _schema(tool)


def openai_tools(tools: Iterable[ToolInfo], *, strict: bool = False) -> list[dict[str, Any]]:
    """The `tools` parameter of OpenAI-style chat completions (nested `function`)."""
    out = []
    for t in tools:
        function: dict[str, Any] = {
            "name": t.name,
            "description": t.description,
            "parameters": _parameters(t, strict),
        }
        if strict:
            function["strict"] = True
        out.append({"type": "function", "function": function})
    return out


def openai_responses_tools(
    tools: Iterable[ToolInfo], *, strict: bool = False
) -> list[dict[str, Any]]:
    """The `tools` parameter of OpenAI's Responses API: the flat function format."""
    return [
        {
            "type": "function",
            "name": t.name,
            "description": t.description,
            "parameters": _parameters(t, strict),
            "strict": strict,
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
