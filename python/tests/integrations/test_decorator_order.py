"""`@async_tool(manager)` with a framework's own decorator: the order, and contexts.

`@async_tool` takes a function. A framework's decorator over it makes the
framework's tool from errand's callable (the right order); `@async_tool`
over the framework's decorator would get the framework's tool object, which
is refused with a TypeError that gives the order. A run context parameter
(Pydantic AI's `RunContext`, OpenAI Agents' `RunContextWrapper`, LangChain's
`RunnableConfig` / `ToolRuntime`) cannot cross to the worker that runs the
tool: refused with what to do instead, whichever order the decorators are in.
"""

import dataclasses
import datetime
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from errand import AsyncToolManager, Worker, async_tool
from errand.tool import tool_def


@pytest.fixture
def manager() -> Iterator[AsyncToolManager]:
    # Never started: decorating only registers the tool.
    yield AsyncToolManager(max_workers=1, target="127.0.0.1:1")


def research(topic: str) -> str:
    """Research a topic."""
    return topic


def refuses_order(exc: pytest.ExceptionInfo[TypeError], framework: str) -> None:
    text = str(exc.value)
    assert framework in text, text
    assert "not a function" in text, text
    assert "apply @async_tool" in text and "on top" in text, text
    assert len(text) < 600, text


def framework_tools() -> list[tuple[str, Any]]:
    made: list[tuple[str, Any]] = []
    try:
        from langchain_core.tools import tool as lc_tool

        made.append(("LangChain", lc_tool(research)))
    except ImportError:
        pass
    try:
        from agents import function_tool

        made.append(("OpenAI Agents", function_tool(research)))
    except ImportError:
        pass
    try:
        from pydantic_ai import Tool

        made.append(("Pydantic AI", Tool(research)))
    except ImportError:
        pass
    try:
        from strands import tool as strands_tool

        made.append(("Strands", strands_tool(research)))
    except ImportError:
        pass
    return made


@pytest.mark.parametrize(("framework", "made"), framework_tools(), ids=lambda v: str(v)[:20])
def test_a_framework_tool_object_is_refused_with_the_order(
    manager: AsyncToolManager, framework: str, made: Any
) -> None:
    with pytest.raises(TypeError) as over_manager:
        async_tool(manager)(made)
    refuses_order(over_manager, framework)
    with pytest.raises(TypeError) as bare:
        async_tool(made)
    refuses_order(bare, framework)
    with pytest.raises(TypeError) as options:
        async_tool(name="research")(made)
    refuses_order(options, framework)
    with pytest.raises(TypeError) as served:
        Worker(tools=[made], target="127.0.0.1:1")
    refuses_order(served, framework)


def test_something_that_is_not_callable_is_refused() -> None:
    with pytest.raises(TypeError, match="not a function"):
        async_tool(42)  # type: ignore[call-overload]
    with pytest.raises(TypeError, match="not a function"):
        tool_def(42)  # type: ignore[arg-type]


def test_the_right_order_still_makes_framework_tools(manager: AsyncToolManager) -> None:
    lc = pytest.importorskip("langchain_core.tools", reason="needs the langchain extra")

    @lc.tool
    @async_tool(manager)
    def look_up(key: str) -> str:
        """Look a key up."""
        return key

    assert look_up.name == "look_up"


@dataclasses.dataclass
class Deps:
    api_key: str


def context_error(exc: pytest.ExceptionInfo[Exception], name: str) -> str:
    text = str(exc.value)
    assert name in text, text
    assert "cannot cross to the worker" in text, text
    assert "schema=" not in text, text
    assert len(text) < 600, text
    return text


def test_pydantic_ai_run_context_is_refused_in_either_order(manager: AsyncToolManager) -> None:
    pydantic_ai = pytest.importorskip("pydantic_ai", reason="needs the pydantic-ai extra")
    RunContext = pydantic_ai.RunContext
    agent = pydantic_ai.Agent("test", deps_type=Deps)

    def research_ctx(ctx: RunContext[Deps], topic: str) -> str:
        """Research a topic."""
        return topic

    with pytest.raises(TypeError) as first:
        agent.tool(async_tool(manager)(research_ctx))
    text = context_error(first, "RunContext")
    assert "tool_plain" in text, text

    def research_ctx_b(ctx: RunContext[Deps], topic: str) -> str:
        """Research a topic."""
        return topic

    with pytest.raises(TypeError) as second:
        async_tool(manager)(agent.tool(research_ctx_b))
    context_error(second, "RunContext")


def test_openai_agents_and_langchain_contexts_are_refused(manager: AsyncToolManager) -> None:
    agents = pytest.importorskip("agents", reason="needs the openai-agents extra")
    RunContextWrapper = agents.RunContextWrapper

    def oa(ctx: RunContextWrapper[Any], topic: str) -> str:
        return topic

    with pytest.raises(TypeError) as oa_exc:
        async_tool(manager)(oa)
    context_error(oa_exc, "RunContextWrapper")

    runnables = pytest.importorskip("langchain_core.runnables", reason="needs langchain")
    RunnableConfig = runnables.RunnableConfig

    def lc(topic: str, config: RunnableConfig) -> str:
        return topic

    with pytest.raises(TypeError) as lc_exc:
        async_tool(manager)(lc)
    context_error(lc_exc, "RunnableConfig")


@dataclasses.dataclass
class Span:
    start: "datetime.datetime"
    days: int = 1


def test_frameworks_make_tools_of_dates_and_dataclasses(manager: AsyncToolManager) -> None:
    # Refused before with "no JSON Schema for the type <class 'datetime.datetime'>".
    @async_tool(manager)
    def plan(when: datetime.datetime, span: Span, id: uuid.UUID) -> str:
        """Plan a trip."""
        return ""

    assert tool_def(plan).input_schema["properties"]["span"]["required"] == ["start"]
    made = 0
    try:
        from agents import function_tool

        assert "span" in function_tool(plan).params_json_schema["properties"]
        made += 1
    except ImportError:
        pass
    try:
        from pydantic_ai import Tool

        assert "when" in Tool(plan).tool_def.parameters_json_schema["properties"]
        made += 1
    except ImportError:
        pass
    try:
        from langchain_core.tools import tool as lc_tool

        assert "id" in lc_tool(plan).args
        made += 1
    except ImportError:
        pass
    if not made:
        pytest.skip("needs a framework extra")


# A project's own package named like a framework's root ("agents" is common in
# agent projects): its classes are not the framework's (review item 2: any
# class under `agents.*` was taken for OpenAI Agents').
@dataclasses.dataclass
class TripContext:
    city: str
    nights: int = 1


TripContext.__module__ = "agents.trip"


class Planner:
    def __call__(self, city: str) -> str:
        return city


Planner.__module__ = "agents.planner"


@dataclasses.dataclass
class SearchContext:
    query: str


SearchContext.__module__ = "strands.search"


def test_a_projects_own_agents_package_is_not_a_framework(manager: AsyncToolManager) -> None:
    @async_tool(manager)
    def book(trip: TripContext, search: SearchContext) -> str:
        """Book a trip."""
        return trip.city

    props = tool_def(book).input_schema["properties"]
    assert props["trip"]["required"] == ["city"]
    assert props["search"]["required"] == ["query"]
    schema = {"type": "object", "properties": {"city": {"type": "string"}}}
    planned = async_tool(name="plan", schema=schema)(Planner())
    assert tool_def(planned).name == "plan"


def test_each_frameworks_contexts_are_refused(manager: AsyncToolManager) -> None:
    """The exact classes, wherever the framework defines or re-exports them."""
    from typing import Annotated

    cases: list[tuple[Any, str]] = []
    try:
        from agents import RunContextWrapper
        from agents.tool_context import ToolContext as OAToolContext

        cases += [(RunContextWrapper[Any], "RunContextWrapper"), (OAToolContext, "ToolContext")]
    except ImportError:
        pass
    try:
        from langchain_core.callbacks import CallbackManagerForToolRun
        from langchain_core.tools import InjectedToolCallId

        cases += [
            (CallbackManagerForToolRun, "CallbackManagerForToolRun"),
            (Annotated[str, InjectedToolCallId], "InjectedToolCallId"),
        ]
    except ImportError:
        pass
    try:
        from langgraph.prebuilt import InjectedState, ToolRuntime
        from langgraph.store.base import BaseStore

        cases += [
            (ToolRuntime, "ToolRuntime"),
            (Annotated[dict, InjectedState], "InjectedState"),
            (BaseStore, "BaseStore"),
        ]
    except ImportError:
        pass
    try:
        from strands import Agent as StrandsAgent
        from strands import ToolContext as StrandsToolContext

        cases += [(StrandsToolContext, "ToolContext"), (StrandsAgent, "Agent")]
    except ImportError:
        pass
    if not cases:
        pytest.skip("needs a framework extra")
    for hint, name in cases:

        def fn(topic: str, ctx: Any = None) -> str:
            return topic

        fn.__annotations__ = {"topic": str, "ctx": hint, "return": str}
        with pytest.raises(TypeError) as exc:
            async_tool(manager)(fn)
        context_error(exc, name)
