"""Types for type checkers only: what `@async_tool(manager)` returns, and the
`Ack` that `AsyncAgent.submit` gives awaited or not. Nothing here exists at
run time (the SDK supports Python 3.9, whose `typing` has no `ParamSpec`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Coroutine, Generator
    from typing import Any, Callable, Protocol, TypeVar, overload

    from typing_extensions import ParamSpec

    from errand.manager import AsyncToolManager
    from errand.types import Ack, ToolInfo

    P = ParamSpec("P")
    R = TypeVar("R", covariant=True)

    class ManagedTool(Protocol[P, R]):
        """`@async_tool(manager)` on a plain function: calling it submits
        the call and returns the acknowledgement text."""

        __errand_tool__: Any
        tool_info: ToolInfo
        manager: AsyncToolManager

        def __call__(self, *args: P.args, **kwargs: P.kwargs) -> str: ...
        def submit(self, *args: P.args, **kwargs: P.kwargs) -> Ack: ...
        @property
        def run(self) -> Callable[P, R]: ...

    class AsyncManagedTool(Protocol[P, R]):
        """`@async_tool(manager)` on an `async def` function: awaiting a call
        submits it and gives the acknowledgement text."""

        __errand_tool__: Any
        tool_info: ToolInfo
        manager: AsyncToolManager

        def __call__(self, *args: P.args, **kwargs: P.kwargs) -> Coroutine[Any, Any, str]: ...
        def submit(self, *args: P.args, **kwargs: P.kwargs) -> Ack: ...
        @property
        def run(self) -> Callable[P, Coroutine[Any, Any, R]]: ...

    class ManagerDecorator(Protocol):
        """`async_tool(manager, ...)`: the decorator it returns."""

        # An async def function matches both: the first one wins, on purpose.
        @overload
        def __call__(  # type: ignore[overload-overlap]
            self, fn: Callable[P, Coroutine[Any, Any, R]], /
        ) -> AsyncManagedTool[P, R]: ...
        @overload
        def __call__(self, fn: Callable[P, R], /) -> ManagedTool[P, R]: ...

    class DualAck(Ack):
        """An `Ack`, awaitable too: `AsyncAgent.submit` gives a coroutine to
        await inside its event loop and the `Ack` itself outside one."""

        def __await__(self) -> Generator[Any, None, Ack]: ...
