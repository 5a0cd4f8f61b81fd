"""What the adapters' conversation classes share (not public)."""

from __future__ import annotations

from typing import Any

__all__ = ["Conversation"]


class Conversation:
    """A framework's agent as the `send`/`is_idle` agent `errand.AsyncAgent` drives.

    Subclasses implement `_turn(message)` (one run of the framework's agent
    with `message` as the user's next input, returning the reply's text) and
    check in `__init__` that they were given the framework's agent type. The
    conversation is busy while one of its turns runs.
    """

    #: The framework's agent type and how the error names it, for `_check`.
    _wraps: tuple[type[Any], str] = (object, "an agent")

    def __init__(self, agent: Any) -> None:
        kind, name = self._wraps
        if not isinstance(agent, kind):
            raise TypeError(f"{type(self).__name__} wraps {name}, not {type(agent).__name__}")
        self._running = 0

    def is_idle(self) -> bool:
        """False while a turn of this conversation is in progress."""
        return self._running == 0

    async def send(self, message: str) -> str:
        """Run one turn with `message` as the user's next input; returns the reply's text."""
        self._running += 1
        try:
            return await self._turn(message)
        finally:
            self._running -= 1

    async def _turn(self, message: str) -> str:
        raise NotImplementedError
