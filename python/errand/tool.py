"""`@async_tool`: turn a plain function into a tool that a `Worker` serves.

    @async_tool
    def research_topic(topic: str, depth: Literal["quick", "deep"] = "quick") -> str:
        \"\"\"Research a topic thoroughly and return detailed findings.\"\"\"
        ...

The decorator only attaches a `ToolDef` (name, description, JSON Schema of the
input, timeout) to the function and returns the function unchanged: calling it
still runs it in place. The name comes from the function, the description from
its docstring, the schema from its type hints: str, int, float, bool, None,
list[...], tuple[...], set[...], dict[str, ...], Optional/Union, Literal, Enum,
Annotated[..., "description"], Any, datetime/date/time, timedelta, UUID,
Decimal and Path (their JSON forms: errand._formats), dataclasses,
TypedDicts, and pydantic models when pydantic is installed (errand._schema).

It works bare (`@async_tool`), with options (`@async_tool(name=..., timeout_ms=...,
queue_timeout_ms=...)`),
with a `Worker` to add the tool to, and, as in the seed text, with an
`AsyncToolManager` (`@async_tool(manager)`): then calling the function submits
it through errand and returns the acknowledgement at once (see `errand.manager`).
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import re
import typing
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Callable, Optional, TypeVar, Union, overload

from errand._coerce import coerce, plain
from errand._foreign import context_parameters, not_a_tool_function
from errand._jsonable import dumps
from errand._schema import _accepts_var_keyword, schema_for_function, schema_for_type
from errand._schema import _hints as _hints  # errand.manager takes it from here
from errand.types import DedupPolicy, DeliveryPolicy, Fallback, to_enum

if TYPE_CHECKING:
    from errand._typing import ManagerDecorator
    from errand.manager import AsyncToolManager
    from errand.worker import Worker

__all__ = ["ToolDef", "async_tool", "schema_for_function", "schema_for_type", "tool_def"]

F = TypeVar("F", bound=Callable[..., Any])

_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_ATTR = "__errand_tool__"


@dataclasses.dataclass(frozen=True)
class ToolDef:
    """What a worker registers for one tool, and the function that runs it."""

    name: str
    description: str
    input_schema: dict[str, Any]
    fn: Callable[..., Any]
    timeout_ms: int = 0
    queue_timeout_ms: int = 0
    delivery: DeliveryPolicy = DeliveryPolicy.UNSPECIFIED
    dedup: DedupPolicy = DedupPolicy.UNSPECIFIED
    result_budget_bytes: int = 0
    fallback: Optional[Fallback] = None
    cancellable_by_model: bool = False

    @functools.cached_property
    def is_async(self) -> bool:
        return inspect.iscoroutinefunction(self.fn)

    @property
    def input_schema_json(self) -> str:
        """The input schema as JSON text (ValueError for a NaN or an infinity in it)."""
        return dumps(self.input_schema, f"tool {self.name!r}:", "schema", separators=(",", ":"))

    def bind(self, arguments: Mapping[str, Any]) -> tuple[list[Any], dict[str, Any]]:
        """Turn a JSON arguments object into call arguments (validating pydantic models)."""
        b = self._binding
        kwargs: dict[str, Any] = {}
        for key, value in arguments.items():
            param = b.sig.parameters.get(key)
            if param is None or param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
                if b.var_keyword:
                    kwargs[key] = value
                    continue
                raise TypeError(f"{self.name}() got an unexpected argument {key!r}")
            kwargs[key] = value if key in b.plain else coerce(b.hints.get(key, Any), value)
        if b.positional_only or not b.required.issubset(kwargs):
            b.sig.bind(**kwargs)  # raises TypeError for missing arguments
        return [], kwargs

    @functools.cached_property
    def _binding(self) -> _Binding:
        # Worked out once per tool: a worker binds every call with it.
        sig = inspect.signature(self.fn)
        hints = _hints(self.fn)
        params = sig.parameters.values()
        return _Binding(
            sig=sig,
            hints=hints,
            var_keyword=_accepts_var_keyword(sig),
            plain=frozenset(p.name for p in params if plain(hints.get(p.name, Any))),
            required=frozenset(
                p.name
                for p in params
                if p.default is p.empty and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
            ),
            positional_only=any(p.kind == p.POSITIONAL_ONLY for p in params),
        )


@dataclasses.dataclass(frozen=True)
class _Binding:
    """A tool function's signature as `ToolDef.bind` uses it."""

    sig: inspect.Signature
    hints: dict[str, Any]
    var_keyword: bool
    #: Parameters whose values `coerce` would return unchanged.
    plain: frozenset[str]
    #: Parameters without a default that a call must name.
    required: frozenset[str]
    positional_only: bool


@overload
def async_tool(fn: F, /) -> F: ...


# A manager is a Worker too: this narrower overload comes first, on purpose.
@overload
def async_tool(  # type: ignore[overload-overlap]
    target: AsyncToolManager,
    /,
    *,
    name: Optional[str] = None,
    description: Optional[str] = None,
    schema: Optional[Mapping[str, Any]] = None,
    timeout_ms: int = 0,
    queue_timeout_ms: int = 0,
    delivery: Union[DeliveryPolicy, str, None] = None,
    dedup: Union[DedupPolicy, str, None] = None,
    result_budget_bytes: int = 0,
    fallback: Union[Fallback, str, None] = None,
    cancellable_by_model: bool = False,
) -> ManagerDecorator: ...


@overload
def async_tool(
    target: Union[Worker, None] = None,
    /,
    *,
    name: Optional[str] = None,
    description: Optional[str] = None,
    schema: Optional[Mapping[str, Any]] = None,
    timeout_ms: int = 0,
    queue_timeout_ms: int = 0,
    delivery: Union[DeliveryPolicy, str, None] = None,
    dedup: Union[DedupPolicy, str, None] = None,
    result_budget_bytes: int = 0,
    fallback: Union[Fallback, str, None] = None,
    cancellable_by_model: bool = False,
) -> Callable[[F], F]: ...


def async_tool(
    target: Any = None,
    /,
    *,
    name: Optional[str] = None,
    description: Optional[str] = None,
    schema: Optional[Mapping[str, Any]] = None,
    timeout_ms: int = 0,
    queue_timeout_ms: int = 0,
    delivery: Union[DeliveryPolicy, str, None] = None,
    dedup: Union[DedupPolicy, str, None] = None,
    result_budget_bytes: int = 0,
    fallback: Union[Fallback, str, None] = None,
    cancellable_by_model: bool = False,
) -> Any:
    """Mark a function (sync or `async def`) as an errand tool.

    With an `AsyncToolManager` (the seed's `@async_tool(manager)`), the
    decorator returns the agent-side callable instead of the function:
    calling it submits the call through errand and returns the
    acknowledgement text at once, its docstring gains the async notice, and
    `.run(...)` calls the plain function (see `errand.manager`).

    Args:
        target: an `AsyncToolManager`, or a `Worker` to add the tool to. Omit
            it and pass the function to `Worker(tools=[...])` instead.
        name: tool name (default: the function's name); 1-64 of [A-Za-z0-9_-].
        description: for the model (default: the docstring).
        schema: JSON Schema of the arguments object (default: from type hints).
        timeout_ms: default timeout of one run, in milliseconds from dispatch
            to a worker; 0 leaves it to the server (--default-timeout-ms).
        queue_timeout_ms: default queue timeout of a call, in milliseconds
            from its submit: a call no worker has taken by then ends
            TIMED_OUT with error code "queue_timeout". 0 leaves it to the
            server (--default-queue-timeout-ms, 5 minutes unless configured);
            a submit's `queue_timeout_ms` wins over it.
        delivery: how its results reach the model unless a submit says:
            "when_idle", "interrupt" or "silent" (a `DeliveryPolicy`); unset
            leaves it to the server's default (when_idle).
        dedup: "join_in_flight" joins an identical call still running
            (one run, one completion); "off" (the default) runs each call.
        result_budget_bytes: most bytes of a result delivered inline (about 4
            per token); 0 leaves it to the server (16384 by default). A larger
            result arrives as a preview (the function's `Summarized.summary`
            when it gives one) and is read with `read_result`.
        fallback: what answers a call that fails or times out: a tool name,
            or `Fallback(last_good_max_age_ms=...)` for the session's last
            good result of the same call.
        cancellable_by_model: let a model cancel its calls with the
            `errand_cancel` tool of the framework adapters.

    The function can report progress and resume through `current_task()`:
    `report_progress(progress, total, message, detail)` and `resume_detail`.
    """

    def decorate(fn: F) -> F:
        spec = tool_def(
            fn,
            name=name,
            description=description,
            schema=schema,
            timeout_ms=timeout_ms,
            queue_timeout_ms=queue_timeout_ms,
            delivery=delivery,
            dedup=dedup,
            result_budget_bytes=result_budget_bytes,
            fallback=fallback,
            cancellable_by_model=cancellable_by_model,
        )
        setattr(fn, _ATTR, spec)
        wrap = getattr(target, "wrap_tool", None)
        if callable(wrap):  # an AsyncToolManager: calls submit through errand
            return typing.cast(F, wrap(fn))
        if target is not None:
            target.add_tool(fn)
        return fn

    if target is not None and not hasattr(target, "add_tool"):
        # A function (bare @async_tool), or what a framework's decorator made.
        fn, target = target, None
        return decorate(fn)
    return decorate


def tool_def(
    fn: Callable[..., Any],
    *,
    name: Optional[str] = None,
    description: Optional[str] = None,
    schema: Optional[Mapping[str, Any]] = None,
    timeout_ms: int = 0,
    queue_timeout_ms: int = 0,
    delivery: Union[DeliveryPolicy, str, None] = None,
    dedup: Union[DedupPolicy, str, None] = None,
    result_budget_bytes: int = 0,
    fallback: Union[Fallback, str, None] = None,
    cancellable_by_model: bool = False,
) -> ToolDef:
    """The `ToolDef` of a function: the one `@async_tool` attached, or a new one.

    Raises ValueError for a bad name, option or schema, and TypeError for a
    generator function (see `_not_a_generator`), for what is not a function
    (a framework's tool object: the framework's decorator goes on top of
    @async_tool, not under it), or for a parameter that is a framework's run
    context (Pydantic AI's RunContext, ...: it cannot cross to a worker).
    """
    refused = not_a_tool_function(fn)
    if refused is not None:
        raise TypeError(refused)
    _not_a_generator(fn)
    existing = getattr(fn, _ATTR, None)
    options: tuple[Any, ...] = (delivery, dedup, result_budget_bytes, fallback)
    options += (queue_timeout_ms, cancellable_by_model)
    given = any(o not in (None, 0, False) for o in options)
    if isinstance(existing, ToolDef) and not (name or description or schema or timeout_ms or given):
        return existing
    tool_name: str = name or str(getattr(fn, "__name__", ""))
    if not _NAME.match(tool_name):
        raise ValueError(
            f"tool name {tool_name!r} must be 1-64 characters of [A-Za-z0-9_-]; "
            "pass name= to @async_tool"
        )
    if timeout_ms < 0 or queue_timeout_ms < 0:
        raise ValueError(
            "timeout_ms and queue_timeout_ms must be >= 0 (milliseconds; 0: the server's default)"
        )
    if result_budget_bytes < 0:
        raise ValueError("result_budget_bytes must be >= 0 (0: the server's default)")
    if isinstance(fallback, str):
        fallback = Fallback(tool=fallback)
    if fallback is not None and fallback.tool == tool_name:
        raise ValueError(f"tool {tool_name!r} cannot be its own fallback")
    try:
        hints = typing.get_type_hints(fn, include_extras=True)
    except Exception:
        hints = {}  # said by schema_for_function, or by the worker at a call
    refused = context_parameters(fn, hints)
    if refused is not None:
        raise TypeError(refused)
    doc = description if description is not None else inspect.getdoc(fn) or ""
    input_schema = dict(schema) if schema is not None else schema_for_function(fn)
    dumps(input_schema, f"tool {tool_name!r}:", "schema")  # ValueError: NaN or Infinity in it
    return ToolDef(
        name=tool_name,
        description=doc.strip(),
        input_schema=input_schema,
        fn=fn,
        timeout_ms=timeout_ms,
        queue_timeout_ms=queue_timeout_ms,
        delivery=to_enum(DeliveryPolicy, delivery, "delivery"),
        dedup=to_enum(DedupPolicy, dedup, "dedup"),
        result_budget_bytes=result_budget_bytes,
        fallback=fallback,
        cancellable_by_model=cancellable_by_model,
    )


def _not_a_generator(fn: Callable[..., Any]) -> None:
    """TypeError for a generator or async generator function: a tool's call
    has one result, and a generator is not JSON (every call would fail)."""
    kind = (
        "an async generator"
        if inspect.isasyncgenfunction(fn)
        else "a generator"
        if inspect.isgeneratorfunction(fn)
        else None
    )
    if kind is not None:
        raise TypeError(
            f"{getattr(fn, '__name__', fn)!r} is {kind} function: a tool call has one "
            "result. return a list of the items instead, and to report how far it has "
            "got while it runs, call errand.report_progress(progress, total, message) "
            "(or current_task().report_progress) from the function"
        )


def renamed(spec: ToolDef, name: str) -> ToolDef:
    """`spec` served under another `name` (its function and options kept).

    Raises ValueError for a bad name, or one that is the tool's own fallback.
    """
    if not _NAME.match(name):
        raise ValueError(f"tool name {name!r} must be 1-64 characters of [A-Za-z0-9_-]")
    if spec.fallback is not None and spec.fallback.tool == name:
        raise ValueError(f"tool {name!r} cannot be its own fallback")
    return spec if spec.name == name else dataclasses.replace(spec, name=name)
