"""What `@async_tool` refuses from agent frameworks (not public), told by the
frameworks' exact classes, found without importing any framework.

- A framework's tool object (LangChain's `BaseTool`, OpenAI Agents'
  `FunctionTool`, Pydantic AI's `Tool`, a Strands `@tool`): `@async_tool` was
  put over the framework's decorator; the order is the other way round
  (`not_a_tool_function`).
- A run context parameter (Pydantic AI's `RunContext`, OpenAI Agents'
  `RunContextWrapper`/`ToolContext`, LangChain's `RunnableConfig`/`ToolRuntime`
  or an `Injected...` argument, Strands' `ToolContext`/`Agent`): the framework
  fills it in-process, and it cannot cross to the worker that runs the tool
  (`context_parameters`).

A class is the framework's when it (or a base) has the qualified name where the
framework defines it, or is the object the framework's public module exports
under that name (a class moved between versions). Not by module root alone:
`agents`, `strands` are common names of a project's own packages.
"""

from __future__ import annotations

import functools
import inspect
import sys
import typing
from typing import Any, Callable, NamedTuple, Optional

__all__ = ["context_parameters", "not_a_tool_function"]


class _Known(NamedTuple):
    framework: str
    #: Where the framework defines the class: "module.QualName".
    defined: str
    #: Where it exports it: (module, name).
    public: tuple[str, str]


_TOOLS = (
    _Known("LangChain", "langchain_core.tools.base.BaseTool", ("langchain_core.tools", "BaseTool")),
    _Known("OpenAI Agents", "agents.tool.FunctionTool", ("agents", "FunctionTool")),
    _Known("Pydantic AI", "pydantic_ai.tools.Tool", ("pydantic_ai", "Tool")),
    _Known("Strands", "strands.types.tools.AgentTool", ("strands.types.tools", "AgentTool")),
)

#: In lookup order: a subclass before its base (LangGraph's InjectedState is
#: LangChain's InjectedToolArg).
_CONTEXTS = (
    _Known(
        "OpenAI Agents",
        "agents.run_context.RunContextWrapper",
        ("agents", "RunContextWrapper"),
    ),
    _Known("Pydantic AI", "pydantic_ai._run_context.RunContext", ("pydantic_ai", "RunContext")),
    _Known(
        "LangGraph",
        "langgraph.prebuilt.tool_node.ToolRuntime",
        ("langgraph.prebuilt", "ToolRuntime"),
    ),
    _Known(
        "LangGraph",
        "langgraph.prebuilt.tool_node.InjectedState",
        ("langgraph.prebuilt", "InjectedState"),
    ),
    _Known(
        "LangGraph",
        "langgraph.prebuilt.tool_node.InjectedStore",
        ("langgraph.prebuilt", "InjectedStore"),
    ),
    _Known("LangGraph", "langgraph.store.base.BaseStore", ("langgraph.store.base", "BaseStore")),
    _Known(
        "LangChain",
        "langchain_core.runnables.config.RunnableConfig",
        ("langchain_core.runnables", "RunnableConfig"),
    ),
    _Known(
        "LangChain",
        "langchain_core.callbacks.manager.CallbackManagerForToolRun",
        ("langchain_core.callbacks", "CallbackManagerForToolRun"),
    ),
    _Known(
        "LangChain",
        "langchain_core.callbacks.manager.AsyncCallbackManagerForToolRun",
        ("langchain_core.callbacks", "AsyncCallbackManagerForToolRun"),
    ),
    _Known(
        "LangChain",
        "langchain_core.tools.base.InjectedToolArg",
        ("langchain_core.tools", "InjectedToolArg"),
    ),
    _Known(
        "LangChain",
        "langchain_core.tools.base._DirectlyInjectedToolArg",
        ("langchain_core.tools.base", "_DirectlyInjectedToolArg"),
    ),
    _Known("Strands", "strands.types.tools.ToolContext", ("strands", "ToolContext")),
    _Known("Strands", "strands.agent.agent.Agent", ("strands", "Agent")),
)

#: The right order, per framework.
_ORDER = {
    "LangChain": "@tool over @async_tool(manager)",
    "LangGraph": "@tool over @async_tool(manager)",
    "OpenAI Agents": "function_tool(fn) of the @async_tool(manager) function",
    "Pydantic AI": "Tool(fn) or @agent.tool_plain over @async_tool(manager)",
    "Strands": "@tool over @async_tool(manager)",
}

#: How to register a tool without the context, per framework.
_PLAIN = {
    "LangChain": "with @tool and no config/runtime parameter",
    "LangGraph": "with @tool and no injected parameter",
    "OpenAI Agents": "with function_tool and no context parameter",
    "Pydantic AI": "with @agent.tool_plain (or Tool(fn, takes_ctx=False))",
    "Strands": "with @tool (not context=True)",
}


def _is(klass: Any, known: _Known) -> bool:
    name = f"{getattr(klass, '__module__', '')}.{getattr(klass, '__qualname__', '')}"
    if name == known.defined:
        return True
    # Only a module already loaded: the class's framework is, if it is one.
    module = sys.modules.get(known.public[0])
    return module is not None and getattr(module, known.public[1], None) is klass


def _framework(cls: Any, table: tuple[_Known, ...]) -> Optional[str]:
    """The framework whose class in `table` `cls` is (or derives from), or None."""
    for klass in getattr(cls, "__mro__", (cls,)):
        for known in table:
            if _is(klass, known):
                return known.framework
    return None


def not_a_tool_function(fn: Any) -> Optional[str]:
    """Why `fn` cannot be a tool's function, for a TypeError; None when it can
    (a function, a method, a partial, or another callable that is not a
    framework's tool object)."""
    if inspect.isfunction(fn) or inspect.ismethod(fn) or isinstance(fn, functools.partial):
        return None
    framework = _framework(type(fn), _TOOLS)
    if framework is not None:
        name = getattr(fn, "name", None) or getattr(fn, "__name__", None) or ""
        shown = f" {str(name)[:64]!r}" if name else ""
        return (
            f"@async_tool was given {_article(framework)} tool object "
            f"({type(fn).__name__}{shown}), not a function: apply @async_tool to the "
            "function first and put the framework's decorator on top "
            f"({_ORDER[framework]})"
        )
    if not callable(fn):
        return (
            f"@async_tool takes a function; {type(fn).__name__} {str(fn)[:64]!r} is not a "
            "function (nor callable)"
        )
    return None


def _article(framework: str) -> str:
    return f"an {framework}" if framework[0] in "AEIOU" else f"a {framework}"


def _owned(framework: str) -> str:
    return f"{framework}'" if framework.endswith("s") else f"{framework}'s"


def _context_of(hint: Any) -> Optional[tuple[str, str]]:
    """(framework, type name) when `hint` is, or holds, a framework's run context."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin is typing.Annotated:
        for meta in args[1:]:  # Annotated[str, InjectedToolCallId]
            kind = meta if isinstance(meta, type) else type(meta)
            framework = _framework(kind, _CONTEXTS)
            if framework is not None:
                return framework, kind.__name__.lstrip("_")
        return _context_of(args[0])
    if origin is not None:
        for arg in args:  # Optional[RunContext[...]], list[...], ...
            found = _context_of(arg)
            if found is not None:
                return found
    cls = origin if isinstance(origin, type) else hint
    if not isinstance(cls, type):
        return None
    framework = _framework(cls, _CONTEXTS)
    return None if framework is None else (framework, cls.__name__)


def context_parameters(fn: Callable[..., Any], hints: dict[str, Any]) -> Optional[str]:
    """Why `fn` cannot be an errand tool when one of its parameters is a
    framework's run context, for a TypeError; None when none is."""
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return None
    for pname in params:
        found = _context_of(hints.get(pname))
        if found is None:
            continue
        framework, name = found
        return (
            f"parameter {pname!r} of {getattr(fn, '__name__', 'the tool')!r} is "
            f"{_owned(framework)} {name}: a run's context cannot cross to the worker that "
            "runs an errand tool (another process, maybe another machine). Leave it out: "
            "take what the tool "
            "needs as ordinary arguments, or let the worker read it (its environment, a "
            f"module-level client), and register the tool {_PLAIN[framework]}"
        )
    return None
