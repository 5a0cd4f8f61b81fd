"""errand tools as plain Python callables for agent frameworks.

An agent framework turns a Python function into a tool from its name,
signature and docstring, and calls it when the model calls the tool. The
functions made here look like that and answer at once: calling one submits
the call through errand and returns the server's acknowledgement text (task
ID, tool, arguments, "the result will follow"); the result arrives later on
the session's completion stream (see `AsyncAgent`).

    research = client.tool("research_topic")       # Client: a plain function
    research.__name__, research.__doc__, inspect.signature(research)
    research(topic="tides")                         # -> "Task 7f3e... submitted: ..."

    tools = await aclient.tools()                   # AsyncClient: `async def` functions
    await tools[0](topic="tides")

Every such function (and every `@async_tool(manager)` function) carries:

- `__name__`: the tool name; `__doc__`: its description with the async notice;
- `__signature__` / `__annotations__`: parameters built from the JSON Schema
  (`str`, `int`, `float`, `bool`, `list`, `dict`, else `Any`; optional ones
  default to their schema default, else None, and None is not sent);
- `tool_info`: the `ToolInfo` (name, description, input_schema, timeout_ms);
- `submit(*args, **kwargs)`: the same call, returning the whole `Ack`.
"""

from __future__ import annotations

import inspect
import keyword
import re
from collections.abc import Awaitable, Mapping
from typing import TYPE_CHECKING, Any, Callable, Optional

from errand.types import Ack, ToolInfo

if TYPE_CHECKING:
    from errand.aio import AsyncClient
    from errand.client import Client

__all__ = ["ASYNC_NOTICE", "async_remote_tool", "remote_tool", "signature_from_schema"]

#: The notice errand appends to every tool description (the server's words).
ASYNC_NOTICE = (
    "This tool is asynchronous: calling it returns a task ID at once, and the result "
    "arrives later in a separate message that carries the same task ID. Do not guess or "
    "fabricate the result while waiting; continue with other work."
)

_TYPES: dict[str, Any] = {
    "string": str,
    "integer": int,
    "number": float,
    "boolean": bool,
    "array": list,
    "object": dict,
}


# Where a docstring's sections begin: the frameworks' docstring parsers (griffe
# for OpenAI Agents and Pydantic AI, LangChain's parse_docstring) keep only the
# text before the first one as the tool's description. At the start of a line:
# a Google section or admonition ("Args:", "Note: ...") over an indented line,
# a NumPy header over its dashes, a Sphinx field (":param x:", ":returns:").
_SECTION = re.compile(
    r"^(?:[A-Za-z][\w \t-]*:(?:[ \t]+\S.*)?\n[ \t]+\S"
    r"|[A-Za-z][\w \t]*\n[ \t]*-{3,}[ \t]*$"
    r"|:[A-Za-z]+(?:[ \t]+[^:\n]*)?:)",
    re.MULTILINE,
)


def with_notice(description: str) -> str:
    """`description` with the async notice (once): after its own paragraphs,
    before its first docstring section (Google `Args:`/`Returns:`..., NumPy
    `Parameters` over `----------`, Sphinx `:param x:`), where every
    framework's docstring parser keeps it in the tool's description; at the
    end when it has no section. A notice at the end (as the server lists a
    tool) is moved there."""
    text = description.strip()
    if text.endswith(ASYNC_NOTICE):
        text = text[: -len(ASYNC_NOTICE)].strip()
    if ASYNC_NOTICE in text:
        return text
    if not text:
        return ASYNC_NOTICE
    section = _SECTION.search(text)
    if section is None:
        return f"{text}\n\n{ASYNC_NOTICE}"
    head, rest = text[: section.start()].strip(), text[section.start() :]
    return f"{head}\n\n{ASYNC_NOTICE}\n\n{rest}" if head else f"{ASYNC_NOTICE}\n\n{rest}"


def _annotation(prop: Mapping[str, Any]) -> Any:
    kind = prop.get("type")
    if isinstance(kind, list):
        kinds = [k for k in kind if k != "null"]
        kind = kinds[0] if len(kinds) == 1 else None
    return _TYPES.get(kind, Any) if isinstance(kind, str) else Any


def signature_from_schema(schema: Mapping[str, Any]) -> inspect.Signature:
    """A keyword-callable signature from an object JSON Schema.

    Required properties come first, without defaults; optional ones default to
    the schema's `default`, else None. Property names that are not Python
    identifiers are left out of the signature (pass them to `submit` in a
    mapping). The return annotation is `str`: the acknowledgement text.
    """
    props: Mapping[str, Any] = schema.get("properties") or {}
    required = [n for n in schema.get("required") or [] if n in props]
    params: list[inspect.Parameter] = []
    for name in [*required, *[n for n in props if n not in required]]:
        if not name.isidentifier() or keyword.iskeyword(name):
            continue
        prop = props[name] if isinstance(props[name], Mapping) else {}
        annotation = _annotation(prop)
        if name in required:
            default: Any = inspect.Parameter.empty
        else:
            default = prop.get("default")
            if default is None:
                annotation = Optional[annotation] if annotation is not Any else Any
        kind = inspect.Parameter.POSITIONAL_OR_KEYWORD
        params.append(inspect.Parameter(name, kind, default=default, annotation=annotation))
    return inspect.Signature(params, return_annotation=str)


def call_arguments(
    sig: inspect.Signature,
    args: tuple[Any, ...],
    kwargs: Mapping[str, Any],
    name: str = "",
) -> dict[str, Any]:
    """The arguments object for one call: what was passed, except None where None
    is the default anyway (frameworks pass every parameter).

    Raises TypeError, as a Python call would, for unknown or missing arguments;
    an unknown keyword is named as Python names it (`name()` got an unexpected
    keyword argument 'x'), before any parameter it leaves missing.
    """
    params = sig.parameters
    if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        for key in kwargs:
            if key not in params:
                # Signature.bind would first say that a required one is missing.
                raise TypeError(f"{name or 'tool'}() got an unexpected keyword argument '{key}'")
    bound = sig.bind(*args, **kwargs)
    return {
        k: v
        for k, v in bound.arguments.items()
        if not (v is None and k in params and params[k].default is None)
    }


def _decorate(fn: Callable[..., Any], info: ToolInfo, sig: inspect.Signature) -> None:
    fn.__name__ = info.name
    fn.__qualname__ = info.name
    fn.__doc__ = with_notice(info.description)
    fn.__signature__ = sig  # type: ignore[attr-defined]
    fn.__annotations__ = {
        **{p.name: p.annotation for p in sig.parameters.values()},
        "return": sig.return_annotation,
    }
    fn.tool_info = info  # type: ignore[attr-defined]


def remote_tool(client: Client, info: ToolInfo) -> Callable[..., str]:
    """A plain function that submits `info`'s tool through `client` and returns the ack text."""
    sig = signature_from_schema(info.input_schema)

    def submit(*args: Any, **kwargs: Any) -> Ack:
        return client.submit(info.name, call_arguments(sig, args, kwargs, info.name))

    def call(*args: Any, **kwargs: Any) -> str:
        return submit(*args, **kwargs).ack

    _decorate(call, info, sig)
    call.submit = submit  # type: ignore[attr-defined]
    return call


def async_remote_tool(client: AsyncClient, info: ToolInfo) -> Callable[..., Awaitable[str]]:
    """`remote_tool` for an `AsyncClient`: an `async def` function."""
    sig = signature_from_schema(info.input_schema)

    async def submit(*args: Any, **kwargs: Any) -> Ack:
        return await client.submit(info.name, call_arguments(sig, args, kwargs, info.name))

    async def call(*args: Any, **kwargs: Any) -> str:
        return (await submit(*args, **kwargs)).ack

    _decorate(call, info, sig)
    call.submit = submit  # type: ignore[attr-defined]
    return call
