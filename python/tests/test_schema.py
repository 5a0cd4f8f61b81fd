"""@async_tool: names, descriptions and JSON Schemas from plain functions (no server)."""

from __future__ import annotations

import enum
from typing import Annotated, Any, Literal, Optional, Union

import pydantic
import pytest

from errand import (
    AsyncToolManager,
    ToolDef,
    Worker,
    anthropic_tools,
    async_tool,
    bedrock_tool_config,
    openai_responses_tools,
    openai_tools,
    schema_for_function,
    schema_for_type,
    strict_schema,
)
from errand.tool import tool_def
from errand.types import ToolInfo


class Color(enum.Enum):
    RED = "red"
    BLUE = "blue"


class Opaque:
    pass


class Address(pydantic.BaseModel):
    city: str


class Person(pydantic.BaseModel):
    name: str
    age: int = 0
    address: Optional[Address] = None


def test_bare_decorator_keeps_the_function_and_attaches_metadata() -> None:
    @async_tool
    def research_topic(topic: str) -> str:
        """Research a topic thoroughly and return detailed findings."""
        return f"Findings about {topic}..."

    assert research_topic("tides") == "Findings about tides..."
    spec = tool_def(research_topic)
    assert isinstance(spec, ToolDef)
    assert spec.name == "research_topic"
    assert spec.description == "Research a topic thoroughly and return detailed findings."
    assert spec.input_schema == {
        "type": "object",
        "properties": {"topic": {"type": "string"}},
        "required": ["topic"],
        "additionalProperties": False,
    }
    assert not spec.is_async


def test_decorator_with_options_and_async_functions() -> None:
    @async_tool(name="web-search", description="Search the web.", timeout_ms=5000)
    async def search(query: str, limit: int = 5) -> list[str]:
        return [query] * limit

    spec = tool_def(search)
    assert (spec.name, spec.description, spec.timeout_ms) == ("web-search", "Search the web.", 5000)
    assert spec.is_async
    assert spec.input_schema["properties"]["limit"] == {"type": "integer", "default": 5}
    assert spec.input_schema["required"] == ["query"]

    @async_tool()
    def empty_parens() -> None:
        """Nothing."""

    assert tool_def(empty_parens).name == "empty_parens"


def test_explicit_schema_wins() -> None:
    schema = {"type": "object", "properties": {"x": {"type": "number", "minimum": 0}}}

    @async_tool(schema=schema)
    def f(x: float) -> float:
        return x

    assert tool_def(f).input_schema == schema


def test_type_hints_become_json_schema() -> None:
    def everything(
        text: str,
        count: int,
        ratio: float,
        flag: bool,
        tags: list[str],
        scores: dict[str, float],
        maybe: Optional[str],
        mode: Literal["fast", "slow"],
        color: Color,
        pair: tuple[int, str],
        many: tuple[int, ...],
        either: Union[int, str],
        nested: list[dict[str, int]],
        anything: Any,
        untyped,  # type: ignore[no-untyped-def]
        noted: Annotated[str, "what to look for"],
        opt_default: Optional[int] = None,
        lit_num: Literal[1, 2, 3] = 1,
    ) -> None:
        pass

    props = schema_for_function(everything)["properties"]
    assert props["text"] == {"type": "string"}
    assert props["count"] == {"type": "integer"}
    assert props["ratio"] == {"type": "number"}
    assert props["flag"] == {"type": "boolean"}
    assert props["tags"] == {"type": "array", "items": {"type": "string"}}
    assert props["scores"] == {"type": "object", "additionalProperties": {"type": "number"}}
    assert props["maybe"] == {"type": ["string", "null"]}
    assert props["mode"] == {"type": "string", "enum": ["fast", "slow"]}
    assert props["color"] == {"type": "string", "enum": ["red", "blue"]}
    # Issue 14 item 7: no `prefixItems` (providers reject it); bounds and order instead.
    assert props["pair"] == {
        "type": "array",
        "items": {"type": ["integer", "string"]},
        "minItems": 2,
        "maxItems": 2,
        "description": "a tuple, in this order: integer, string",
    }
    assert props["many"] == {"type": "array", "items": {"type": "integer"}}
    assert props["either"] == {"type": ["integer", "string"]}
    assert props["nested"] == {
        "type": "array",
        "items": {"type": "object", "additionalProperties": {"type": "integer"}},
    }
    assert props["anything"] == {}
    assert props["untyped"] == {}
    assert props["noted"] == {"type": "string", "description": "what to look for"}
    assert props["opt_default"] == {"type": ["integer", "null"], "default": None}
    assert props["lit_num"] == {"type": "integer", "enum": [1, 2, 3], "default": 1}
    required = schema_for_function(everything)["required"]
    assert "opt_default" not in required and "lit_num" not in required
    assert "maybe" in required  # Optional without a default is still required


def test_kwargs_allow_extra_properties() -> None:
    def f(a: int, **rest: Any) -> None:
        pass

    schema = schema_for_function(f)
    assert "additionalProperties" not in schema
    assert list(schema["properties"]) == ["a"]


def test_pydantic_models_are_used_and_validated() -> None:
    @async_tool
    def greet(person: Person, others: Optional[list[Person]] = None) -> str:
        """Greet someone."""
        return f"hello {person.name} from {person.address.city if person.address else '?'}"

    spec = tool_def(greet)
    person = spec.input_schema["properties"]["person"]
    assert person["type"] == "object"
    assert set(person["properties"]) == {"name", "age", "address"}
    assert "Address" in spec.input_schema["$defs"]  # hoisted to the root
    args, kwargs = spec.bind({"person": {"name": "Ada", "address": {"city": "London"}}})
    assert isinstance(kwargs["person"], Person)
    assert greet(*args, **kwargs) == "hello Ada from London"
    with pytest.raises(pydantic.ValidationError):
        spec.bind({"person": {"age": "not a number"}})


def test_bind_rejects_unknown_arguments() -> None:
    def f(a: int) -> int:
        return a

    spec = tool_def(f)
    args, kwargs = spec.bind({"a": 1})
    assert f(*args, **kwargs) == 1
    with pytest.raises(TypeError, match="unexpected argument 'b'"):
        spec.bind({"a": 1, "b": 2})
    with pytest.raises(TypeError):
        spec.bind({})


def test_bad_names_and_unsupported_types_are_refused() -> None:
    with pytest.raises(ValueError, match="tool name"):
        async_tool(name="has space")(lambda: None)

    def f(x: Opaque) -> None:
        pass

    with pytest.raises(ValueError, match="no JSON Schema"):
        schema_for_function(f)
    assert schema_for_type(Optional[list[int]]) == {
        "anyOf": [{"type": "array", "items": {"type": "integer"}}, {"type": "null"}]
    }


def test_decorator_registers_with_a_manager_as_in_the_seed() -> None:
    manager = AsyncToolManager(max_workers=4, target="127.0.0.1:1")

    @async_tool(manager)
    def research_topic(topic: str) -> str:
        """Research a topic thoroughly and return detailed findings."""
        return topic

    assert isinstance(manager, Worker)
    assert manager.max_concurrency == 4
    assert list(manager.tools) == ["research_topic"]
    # Issue 14: calling it submits through errand (tests/test_seed.py); .run() is the function.
    assert research_topic.run("x") == "x"  # type: ignore[attr-defined]
    assert research_topic.__doc__ is not None and "asynchronous" in research_topic.__doc__


def test_model_tool_specs() -> None:
    schema = {"type": "object", "properties": {"topic": {"type": "string"}}}
    tools = [
        ToolInfo("research_topic", "Research. (async)", schema, 0, 1),
        ToolInfo("free", "Anything.", {}, 0, 1),
    ]
    assert openai_tools(tools) == [
        {
            "type": "function",
            "function": {
                "name": "research_topic",
                "description": "Research. (async)",
                "parameters": schema,
            },
        },
        {
            "type": "function",
            "function": {
                "name": "free",
                "description": "Anything.",
                "parameters": {"type": "object", "properties": {}},
            },
        },
    ]
    assert anthropic_tools(tools)[0] == {
        "name": "research_topic",
        "description": "Research. (async)",
        "input_schema": schema,
    }
    assert bedrock_tool_config(tools)["tools"][1] == {
        "toolSpec": {
            "name": "free",
            "description": "Anything.",
            "inputSchema": {"json": {"type": "object", "properties": {}}},
        }
    }


def test_openai_responses_format_and_strict_mode() -> None:
    schema = {
        "type": "object",
        "properties": {
            "topic": {"type": "string"},
            "depth": {"type": "integer", "default": 1},
            "mode": {"type": "string", "enum": ["fast", "slow"]},
            "filters": {
                "type": "object",
                "properties": {"lang": {"type": "string"}},
                "additionalProperties": {"type": "string"},
            },
            "tags": {"anyOf": [{"type": "string"}, {"type": "array"}]},
        },
        "required": ["topic"],
        "additionalProperties": False,
    }
    tool = ToolInfo("research_topic", "Research. (async)", schema, 0, 1)
    (flat,) = openai_responses_tools([tool])
    assert flat == {
        "type": "function",
        "name": "research_topic",
        "description": "Research. (async)",
        "parameters": schema,
        "strict": False,
    }
    (strict,) = openai_responses_tools([tool], strict=True)
    params = strict["parameters"]
    assert strict["strict"] is True
    assert params["required"] == ["topic", "depth", "mode", "filters", "tags"]
    assert params["additionalProperties"] is False
    props = params["properties"]
    assert props["topic"] == {"type": "string"}  # required already: unchanged
    assert props["depth"] == {"type": ["integer", "null"]}  # optional: nullable, no default
    assert props["mode"] == {"type": ["string", "null"], "enum": ["fast", "slow", None]}
    assert props["filters"]["additionalProperties"] is False
    assert props["filters"]["required"] == ["lang"]
    assert props["filters"]["properties"]["lang"] == {"type": ["string", "null"]}
    assert props["tags"] == {"anyOf": [schema["properties"]["tags"], {"type": "null"}]}
    assert schema["properties"]["depth"] == {"type": "integer", "default": 1}  # not mutated
    (chat,) = openai_tools([tool], strict=True)
    assert chat["function"]["strict"] is True
    assert chat["function"]["parameters"] == params
    assert strict_schema({"type": "object"}) == {
        "type": "object",
        "properties": {},
        "required": [],
        "additionalProperties": False,
    }
