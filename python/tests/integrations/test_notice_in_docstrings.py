"""The async notice survives each framework's own docstring parser.

`@async_tool(manager)` adds errand's notice to the function's docstring, and
an agent framework's own decorator (OpenAI Agents' `function_tool`, Pydantic
AI's `Tool` / `agent.tool_plain`, LangChain's `tool(parse_docstring=True)`)
reads the tool description from that docstring. Each keeps only the text
before the first section (Google `Args:`, NumPy `Parameters` / `----------`,
Sphinx `:param`), so the notice must sit there, or the model never reads it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Callable

import pytest

from errand import AsyncToolManager, async_tool
from errand.callables import ASYNC_NOTICE, with_notice

GOOGLE = """Research a topic thoroughly.

It reads several sources.

Args:
    topic: what to research
    depth: how deep to go

Returns:
    the findings
"""

NUMPY = """Research a topic thoroughly.

It reads several sources.

Parameters
----------
topic : str
    what to research
depth : int
    how deep to go

Returns
-------
str
    the findings
"""

SPHINX = """Research a topic thoroughly.

It reads several sources.

:param topic: what to research
:param depth: how deep to go
:returns: the findings
"""

STYLES = {"google": GOOGLE, "numpy": NUMPY, "sphinx": SPHINX}


@pytest.fixture
def manager() -> Iterator[AsyncToolManager]:
    # Never started: decorating only registers the tool.
    manager = AsyncToolManager(max_workers=1, target="127.0.0.1:1")
    yield manager


def decorated(manager: AsyncToolManager, doc: str) -> Callable[..., Any]:
    def research_topic(topic: str, depth: int = 1) -> str:
        return topic

    research_topic.__doc__ = doc
    return async_tool(manager)(research_topic)


def sees_notice(description: str) -> None:
    assert "Research a topic thoroughly." in description, description
    assert "It reads several sources." in description, description
    assert ASYNC_NOTICE in description, description


@pytest.mark.parametrize("style", sorted(STYLES))
def test_the_docstring_keeps_its_sections_after_the_notice(style: str) -> None:
    text = with_notice(STYLES[style])
    assert text.count(ASYNC_NOTICE) == 1
    before, after = text.split(ASYNC_NOTICE)
    assert "It reads several sources." in before
    assert "what to research" in after and "what to research" not in before
    # Once: as the server lists it (the notice last) or as made here.
    assert with_notice(text) == text
    assert with_notice(STYLES[style].strip() + "\n\n" + ASYNC_NOTICE) == text


def test_a_docstring_without_sections_ends_with_the_notice() -> None:
    assert with_notice("Look a key up.") == "Look a key up.\n\n" + ASYNC_NOTICE
    assert with_notice("") == ASYNC_NOTICE
    only_args = with_notice("Args:\n    key: the key")
    assert only_args == ASYNC_NOTICE + "\n\nArgs:\n    key: the key"


@pytest.mark.parametrize("style", sorted(STYLES))
def test_openai_agents_function_tool_sees_the_notice(manager: AsyncToolManager, style: str) -> None:
    agents = pytest.importorskip("agents", reason="needs the openai-agents extra")
    tool = agents.function_tool(decorated(manager, STYLES[style]))
    sees_notice(tool.description)
    props = tool.params_json_schema["properties"]
    assert props["topic"].get("description") == "what to research"


@pytest.mark.parametrize("style", sorted(STYLES))
def test_pydantic_ai_tool_sees_the_notice(manager: AsyncToolManager, style: str) -> None:
    pydantic_ai = pytest.importorskip("pydantic_ai", reason="needs the pydantic-ai extra")
    fn = decorated(manager, STYLES[style])
    tool = pydantic_ai.Tool(fn)
    sees_notice(tool.tool_def.description or "")
    assert tool.tool_def.parameters_json_schema["properties"]["topic"]["description"] == (
        "what to research"
    )

    agent = pydantic_ai.Agent("test")
    agent.tool_plain(fn)
    (plain,) = agent._function_toolset.tools.values()
    sees_notice(plain.tool_def.description or "")


def test_langchain_parse_docstring_sees_the_notice(manager: AsyncToolManager) -> None:
    tools = pytest.importorskip("langchain_core.tools", reason="needs the langchain extra")
    # LangChain parses Google-style docstrings only.
    tool = tools.tool(decorated(manager, GOOGLE), parse_docstring=True)
    sees_notice(tool.description)
    assert tool.args["topic"]["description"] == "what to research"
