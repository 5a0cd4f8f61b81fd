"""What every framework adapter shares: errand tools as name/description/schema/submit.

An `ErrandTool` is one errand tool as an agent framework needs it: the name,
the description the model reads (ending with errand's async notice), the JSON
Schema of its arguments, and a call that submits through errand and returns
the server's acknowledgement text (task ID, tool, arguments, "the result
follows") at once. Each adapter wraps these in its framework's tool type.

Tools come from three places, and `resolve_tools` takes any mix:

- a local function decorated with `@async_tool` (served by a `Worker` or
  `AsyncToolManager` elsewhere): name, docstring and schema from the function;
- a `ToolInfo` from `client.list_tools()`: the registered schema and description;
- a tool name (str): looked up with `client.list_tools()`.
"""

from __future__ import annotations

import asyncio
import copy
import inspect
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Callable, Optional, Union

from errand.aio import AsyncClient
from errand.client import Client
from errand.tool import tool_def
from errand.types import Ack, ToolInfo

__all__ = [
    "ASYNC_NOTICE",
    "ErrandTool",
    "ToolSource",
    "missing",
    "resolve_tools",
]

#: The notice errand's server appends to every description in ListTools
#: (server/src/text.rs); local tools get the same words.
ASYNC_NOTICE = (
    "This tool is asynchronous: calling it returns a task ID at once, "
    "and the result arrives later in a separate message that carries the same task ID. "
    "Do not guess or fabricate the result while waiting; continue with other work."
)

#: One entry of a tool list: a local `@async_tool` function, a `ToolInfo`, or a name.
ToolSource = Union[Callable[..., Any], ToolInfo, str]
AnyClient = Union[Client, AsyncClient]


def missing(adapter: str, package: str, extra: str, exc: ImportError) -> ImportError:
    """The error an adapter raises when its framework is not installed.

    The message names the package and the `pip install` line of the extra
    that brings it, e.g. `pip install 'errand[strands]'`.
    """
    return ImportError(
        f"errand.integrations.{adapter} needs the {package!r} package, which is not "
        f"installed ({exc}): pip install 'errand[{extra}]' (from a checkout of errand: "
        f"pip install './python[{extra}]')"
    )


@dataclass(frozen=True)
class ErrandTool:
    """One errand tool, framework-neutral.

    Attributes:
        name: the tool's registered name.
        description: what the model reads, ending with `ASYNC_NOTICE`.
        input_schema: JSON Schema of the arguments object (an "object" schema).
        client: submits the calls (a `Client` or an `AsyncClient`).
        session_id: the session the calls go to, so that an `AsyncAgent`
            following that session delivers their results.
    """

    name: str
    description: str
    input_schema: dict[str, Any]
    client: AnyClient
    session_id: str

    def schema(self) -> dict[str, Any]:
        """A copy of `input_schema`, always an object schema with `properties`."""
        schema = copy.deepcopy(self.input_schema) or {}
        schema.setdefault("type", "object")
        if schema["type"] == "object":
            schema.setdefault("properties", {})
        return schema

    def submit(self, arguments: Optional[Mapping[str, Any]] = None) -> Ack:
        """Submit one call and return the server's `Ack` (blocking; `Client` only).

        Raises:
            TypeError: the tool was made with an `AsyncClient`; use `asubmit`.
            errand.errors.RpcError: the server refused the call (InvalidArgument
                for arguments that fail the schema, NotFound for a tool no
                worker serves, ...).
        """
        if not isinstance(self.client, Client):
            raise TypeError(
                f"tool {self.name!r} submits through an AsyncClient: await asubmit(...) "
                "instead, or make the tools with a blocking errand.Client"
            )
        return self.client.submit(self.name, dict(arguments or {}), session_id=self.session_id)

    async def asubmit(self, arguments: Optional[Mapping[str, Any]] = None) -> Ack:
        """Submit one call from a coroutine; returns the server's `Ack`.

        A blocking `Client` submits on a worker thread, so the calling event
        loop keeps running; an `AsyncClient` must belong to the running loop.
        """
        args = dict(arguments or {})
        if isinstance(self.client, AsyncClient):
            return await self.client.submit(self.name, args, session_id=self.session_id)
        return await asyncio.to_thread(
            self.client.submit, self.name, args, session_id=self.session_id
        )


def _with_notice(description: str) -> str:
    description = description.strip()
    if ASYNC_NOTICE in description:
        return description
    return f"{description}\n\n{ASYNC_NOTICE}" if description else ASYNC_NOTICE


def _from_function(fn: Callable[..., Any], client: AnyClient, session_id: str) -> ErrandTool:
    spec = tool_def(fn)
    return ErrandTool(
        name=spec.name,
        description=_with_notice(spec.description),
        input_schema=spec.input_schema,
        client=client,
        session_id=session_id,
    )


def _from_info(info: ToolInfo, client: AnyClient, session_id: str) -> ErrandTool:
    return ErrandTool(
        name=info.name,
        description=_with_notice(info.description),
        input_schema=info.input_schema,
        client=client,
        session_id=session_id,
    )


def resolve_tools(
    client: AnyClient,
    tools: Optional[Iterable[ToolSource]] = None,
    *,
    session_id: Optional[str] = None,
) -> list[ErrandTool]:
    """Turn local functions, `ToolInfo`s and tool names into `ErrandTool`s.

    Args:
        client: submits the calls. A blocking `Client` works from any thread
            and event loop (frameworks often run tools on loops of their own);
            an `AsyncClient` only from the loop it was made in.
        tools: the tools, in order; None means every tool registered now.
        session_id: the session the calls go to (default: the client's).

    Raises:
        TypeError: an entry is none of the three kinds, or names must be looked
            up with an `AsyncClient` (pass `await client.list_tools()` instead).
        LookupError: a name that no worker has registered.
    """
    session = session_id or client.session_id
    items: Sequence[ToolSource] = list(tools) if tools is not None else []
    needs_lookup = tools is None or any(isinstance(item, str) for item in items)
    registered: dict[str, ToolInfo] = {}
    if needs_lookup:
        if not isinstance(client, Client):
            raise TypeError(
                "tool names (or tools=None) are looked up with ListTools, which needs a "
                "blocking errand.Client here; with an AsyncClient pass the ToolInfo objects "
                "from `await client.list_tools()` instead"
            )
        registered = {info.name: info for info in client.list_tools()}
    if tools is None:
        return [_from_info(info, client, session) for info in registered.values()]
    out: list[ErrandTool] = []
    for item in items:
        if isinstance(item, ToolInfo):
            out.append(_from_info(item, client, session))
        elif isinstance(item, str):
            info = registered.get(item)
            if info is None:
                known = ", ".join(sorted(registered)) or "none"
                raise LookupError(
                    f"no worker has registered the tool {item!r} (registered: {known}); "
                    "start a worker that serves it first"
                )
            out.append(_from_info(info, client, session))
        elif callable(item) and not inspect.isclass(item):
            out.append(_from_function(item, client, session))
        else:
            raise TypeError(
                f"cannot make an errand tool from {item!r}: pass an @async_tool function, "
                "a ToolInfo from client.list_tools(), or a tool name"
            )
    return out
