"""What every framework adapter shares: errand tools as name/description/schema/submit.

An `ErrandTool` is one errand tool as an agent framework needs it: the name,
the description the model reads (ending with errand's async notice), the JSON
Schema of its arguments, and a call that submits through errand and returns
the server's acknowledgement (task ID, tool, arguments, "the result follows")
at once. Each adapter wraps these in its framework's tool type.

`resolve_tools` takes any mix of:

- a function decorated with `@async_tool(manager)` (the seed's style): it
  submits through its `AsyncToolManager`, in the manager's session;
- a callable from `client.tool(name)` / `client.tools()`: the registered
  schema and description;
- a function decorated with bare `@async_tool` (served by a `Worker`
  elsewhere): name, docstring and schema from the function;
- a `ToolInfo` from `client.list_tools()`;
- a tool name (str), looked up with `list_tools()`.
"""

from __future__ import annotations

import asyncio
import copy
import inspect
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Callable, Optional, Union

from errand._connect import MAY_BE_DOWN
from errand.aio import AsyncClient
from errand.callables import ASYNC_NOTICE, with_notice
from errand.client import Client
from errand.errors import (
    ANSWERED_HTTP,
    AlreadyExists,
    ClosedError,
    DeadlineExceeded,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    OutOfRange,
    PermissionDenied,
    ResourceExhausted,
    RpcError,
    Unauthenticated,
    Unavailable,
    Unimplemented,
)
from errand.manager import AsyncToolManager
from errand.tool import tool_def
from errand.types import Ack, ToolInfo

__all__ = [
    "ASYNC_NOTICE",
    "AnyClient",
    "ErrandTool",
    "NOT_MADE",
    "ToolSource",
    "for_developer",
    "missing",
    "not_made",
    "resolve_tools",
]

#: One entry of a tool list: a function or callable, a `ToolInfo`, or a name.
ToolSource = Union[Callable[..., Any], ToolInfo, str]
#: What submits the calls.
AnyClient = Union[Client, AsyncClient, AsyncToolManager]


#: What a tool call may raise that the model must read as the tool's error
#: (`not_made`), never as an exception out of the framework: one raised out of
#: a LangGraph ToolNode, say, leaves the checkpointed thread with a tool call no
#: ToolMessage answers, and every later turn fails. The server's refusals
#: (bad arguments, unknown tool, a limit), a server down or not answering,
#: its own failures; except what `for_developer` says the model cannot fix.
NOT_MADE = (RpcError, ClosedError)

#: The refusals after which the call certainly was not started.
_REFUSED = (
    InvalidArgument,
    NotFound,
    AlreadyExists,
    ResourceExhausted,
    FailedPrecondition,
    OutOfRange,
    Unavailable,
)


def for_developer(exc: BaseException) -> bool:
    """Whether `exc` is the developer's to fix, not the model's: a missing or
    wrong token (Unauthenticated, PermissionDenied), a server without the
    call (Unimplemented: an older server), an address that answers HTTP
    (another port: a 404, or another 4xx). The adapters raise it out of the
    tool as before, so the developer sees it; told to the model, it would only
    be retried. A proxy's 429/502/503/504 (errand behind it restarting) is an
    outage, the model's: `errors.from_grpc` words it without ANSWERED_HTTP,
    and its codes are excluded here whatever the words."""
    if isinstance(exc, (Unauthenticated, PermissionDenied, Unimplemented)):
        return True
    if isinstance(exc, (Unavailable, DeadlineExceeded, ResourceExhausted)):
        return False
    return isinstance(exc, RpcError) and ANSWERED_HTTP in exc.message


def not_made(tool: str, exc: BaseException, *, submit: bool = True) -> str:
    """The text the model reads for a call of `tool` that errand could not make.

    What is true differs: UNAVAILABLE (the server could not be reached, or
    would not take the call now) and every refusal mean the call was not
    started; DEADLINE_EXCEEDED (no answer in time) means it may have been: a
    submit that reached the server before it stopped answering runs, and its
    result arrives later as usual; so may INTERNAL, UNKNOWN and the other
    failures of the server's own (the store write may have been made). With
    `submit=False` (a session tool: a read, or a cancel) only what failed.
    Not for `for_developer` errors, which the adapters raise.
    """
    said = exc.message if isinstance(exc, RpcError) else str(exc)
    end = said.find(MAY_BE_DOWN)
    if end >= 0:  # the developer's advice (timeout=, idempotency keys) is not the model's
        said = said[: end + len(MAY_BE_DOWN)]
    if not submit and isinstance(exc, (DeadlineExceeded, Unavailable)):
        return f"{tool} failed: {said}. Try again later."
    if not submit and isinstance(exc, RpcError) and not isinstance(exc, _REFUSED):
        return f"{tool} failed: {exc}"
    if isinstance(exc, DeadlineExceeded):
        return (
            f"{tool} may have started, or not: {said}. If it started, its result "
            "arrives later as usual. Tell the user; try again later if no result comes."
        )
    if isinstance(exc, Unavailable):
        return f"{tool} was not started: {said}. Tell the user; try again later."
    if isinstance(exc, RpcError) and not isinstance(exc, _REFUSED):
        return (
            f"{tool} may or may not have started: the server failed ({exc}). If it "
            "started, its result arrives later as usual. Tell the user; try again later "
            "if no result comes."
        )
    return f"{tool} was not started: {exc}"


def missing(adapter: str, package: str, extra: str, exc: ImportError) -> ImportError:
    """The error an adapter raises when its framework is not installed.

    The message names the package and the `pip install` line of the extra
    that brings it, e.g. `pip install 'errand-sdk[strands]'`.
    """
    return ImportError(
        f"errand.integrations.{adapter} needs the {package!r} package, which is not "
        f"installed ({exc}): pip install 'errand-sdk[{extra}]' (from a checkout of errand: "
        f"pip install './python[{extra}]')"
    )


@dataclass(frozen=True)
class ErrandTool:
    """One errand tool, framework-neutral.

    Attributes:
        name: the tool's registered name.
        description: what the model reads, with `ASYNC_NOTICE` (see `with_notice`).
        input_schema: JSON Schema of the arguments object (an "object" schema).
        client: submits the calls: a `Client`, an `AsyncClient`, an
            `AsyncToolManager`, or the `submit` of a `client.tool()` callable.
        session_id: the session the calls go to, which the `AsyncAgent`
            delivering their results must follow; None when a callable's own
            `submit` decides.
    """

    name: str
    description: str
    input_schema: dict[str, Any]
    client: Union[AnyClient, Callable[..., Any]]
    session_id: Optional[str]

    def schema(self) -> dict[str, Any]:
        """A copy of `input_schema`, always an object schema with `properties`."""
        schema = copy.deepcopy(self.input_schema) or {}
        schema.setdefault("type", "object")
        if schema["type"] == "object":
            schema.setdefault("properties", {})
        return schema

    @property
    def blocking(self) -> bool:
        """True when `submit` works (not an `AsyncClient` or an async callable)."""
        return not (
            isinstance(self.client, AsyncClient) or inspect.iscoroutinefunction(self.client)
        )

    def submit(self, arguments: Optional[Mapping[str, Any]] = None) -> Ack:
        """Submit one call and return the server's `Ack` (blocking).

        Raises:
            TypeError: the tool submits through an `AsyncClient` (or an async
                callable); use `asubmit`.
            errand.errors.RpcError: the server refused the call (InvalidArgument
                for arguments that fail the schema, NotFound for a tool no
                worker serves, ...).
        """
        args = dict(arguments or {})
        sender = self.client
        if isinstance(sender, AsyncToolManager):
            sender.ensure_started()  # the manager also serves its own tools
            return sender.client.submit(self.name, args, session_id=self.session_id)
        if isinstance(sender, Client):
            return sender.submit(self.name, args, session_id=self.session_id)
        if isinstance(sender, AsyncClient) or not self.blocking:
            raise TypeError(
                f"tool {self.name!r} submits through an AsyncClient: await asubmit(...) "
                "instead, or make the tools with a blocking errand.Client"
            )
        ack: Ack = sender(**args)
        return ack

    async def asubmit(self, arguments: Optional[Mapping[str, Any]] = None) -> Ack:
        """Submit one call from a coroutine; returns the server's `Ack`.

        A blocking `Client` (or a manager) submits on a worker thread, so the
        calling event loop keeps running; an `AsyncClient` must belong to the
        running loop.
        """
        args = dict(arguments or {})
        sender = self.client
        if isinstance(sender, AsyncClient):
            return await sender.submit(self.name, args, session_id=self.session_id)
        if inspect.iscoroutinefunction(sender):
            ack: Ack = await sender(**args)
            return ack
        return await asyncio.to_thread(self.submit, args)


def _lookup(client: Optional[AnyClient]) -> dict[str, ToolInfo]:
    if isinstance(client, AsyncToolManager):
        client.ensure_started()  # its own tools are among the registered ones
        client = client.client
    if not isinstance(client, Client):
        raise TypeError(
            "tool names (or tools=None) are looked up with ListTools, which needs a "
            "blocking errand.Client or an AsyncToolManager here; with an AsyncClient pass "
            "the ToolInfo objects from `await client.list_tools()` instead"
        )
    return {info.name: info for info in client.list_tools()}


def _resolve(
    item: ToolSource,
    client: Optional[AnyClient],
    session_id: Optional[str],
    registered: Mapping[str, ToolInfo],
) -> ErrandTool:
    sender: Union[AnyClient, Callable[..., Any], None] = client
    if isinstance(item, ToolInfo):
        info = item
    elif isinstance(item, str):
        found = registered.get(item)
        if found is None:
            known = ", ".join(sorted(registered)) or "none"
            raise LookupError(
                f"no worker has registered the tool {item!r} (registered: {known}); "
                "start a worker that serves it first"
            )
        info = found
    elif callable(item) and not inspect.isclass(item):
        own = getattr(item, "tool_info", None)
        if isinstance(own, ToolInfo):  # client.tool() or @async_tool(manager)
            info = own
            if sender is None:
                manager = getattr(item, "manager", None)
                own_submit = getattr(item, "submit", None)
                sender = manager if isinstance(manager, AsyncToolManager) else own_submit
        else:  # bare @async_tool (or a plain function), served elsewhere
            spec = tool_def(item)
            info = ToolInfo(
                spec.name,
                spec.description,
                spec.input_schema,
                spec.timeout_ms,
                0,
                queue_timeout_ms=spec.queue_timeout_ms,
            )
    else:
        raise TypeError(
            f"cannot make an errand tool from {item!r}: pass an @async_tool function, "
            "a client.tool() callable, a ToolInfo from list_tools(), or a tool name"
        )
    clients = (Client, AsyncClient, AsyncToolManager)
    if sender is None or not (isinstance(sender, clients) or callable(sender)):
        raise TypeError(
            f"nothing to submit {info.name!r} through: pass a Client, an AsyncClient or "
            "an AsyncToolManager as the client"
        )
    session: Optional[str] = None
    if isinstance(sender, clients):
        session = session_id or sender.session_id
    return ErrandTool(
        name=info.name,
        description=with_notice(info.description),
        input_schema=info.input_schema,
        client=sender,
        session_id=session,
    )


def resolve_tools(
    client: Optional[AnyClient] = None,
    tools: Optional[Iterable[ToolSource]] = None,
    *,
    session_id: Optional[str] = None,
) -> list[ErrandTool]:
    """Turn `@async_tool` functions, `client.tool()` callables, `ToolInfo`s and
    tool names into `ErrandTool`s.

    Args:
        client: submits every call. A blocking `Client` or an
            `AsyncToolManager` works from any thread and event loop
            (frameworks often run tools on loops of their own); an
            `AsyncClient` only from the loop it was made in. None: each tool
            submits the way it was made (`@async_tool(manager)` functions
            through their manager, `client.tool()` callables through their
            client); other entries then need a client.
        tools: the tools, in order; None means every tool registered now.
        session_id: the session the calls go to (default: the client's or
            the manager's).

    Raises:
        TypeError: an entry is none of the kinds above, has nothing to submit
            through, or names must be looked up with an `AsyncClient` (pass
            `await client.list_tools()` instead).
        LookupError: a name that no worker has registered.
    """
    items: Sequence[ToolSource] = list(tools) if tools is not None else []
    registered: dict[str, ToolInfo] = {}
    if tools is None or any(isinstance(item, str) for item in items):
        registered = _lookup(client)
    if tools is None:
        items = list(registered.values())
    return [_resolve(item, client, session_id, registered) for item in items]
