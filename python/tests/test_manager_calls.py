"""Calling an `@async_tool(manager)` function when the call cannot be made.

- With no server, the call raises `Unavailable("no errand server at ...")`,
  once: the manager's worker does not also log (or print) it, so that the
  caller sees one report of one failure.
- With arguments the function does not take, it raises the TypeError that
  calling the function itself would raise (e.g. naming an unexpected
  keyword, not a parameter it then found missing).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Callable

import pytest

from errand import AsyncToolManager, Unavailable, Worker, async_tool

from .conftest import free_port


def no_server() -> str:
    return f"127.0.0.1:{free_port()}"  # a port nothing listens on


def python_says(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> str:
    """The TypeError message of calling `fn` itself with these arguments."""
    with pytest.raises(TypeError) as caught:
        fn(*args, **kwargs)
    return str(caught.value)


def test_no_server_is_raised_once_not_also_logged(
    caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    caplog.set_level(logging.DEBUG)
    address = no_server()
    manager = AsyncToolManager(max_workers=2, target=address)

    @async_tool(manager)
    def lookup(term: str) -> str:
        """Look a term up."""
        return term

    try:
        with pytest.raises(Unavailable, match=f"no errand server at {address}"):
            lookup("tides")
        with pytest.raises(Unavailable, match=f"no errand server at {address}"):
            lookup("tides")  # the next call tries again, and says so again
    finally:
        manager.stop()
    loud = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert not loud, [r.getMessage() for r in loud]
    err = capfd.readouterr().err
    assert "errand worker stopped" not in err and "no errand server" not in err, err


def test_a_worker_started_and_waited_for_raises_without_logging(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)

    @async_tool
    def lookup(term: str) -> str:
        """Look a term up."""
        return term

    with pytest.raises(Unavailable):
        Worker(no_server(), tools=[lookup]).start()
    with pytest.raises(ValueError, match="at least one tool"):
        Worker(no_server(), tools=[]).start()
    loud = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert not loud, [r.getMessage() for r in loud]


def test_a_wrong_keyword_raises_what_python_would() -> None:
    manager = AsyncToolManager(max_workers=2, target=no_server())

    def lookup2(term: str) -> str:
        """Look a term up."""
        return term

    tool = async_tool(manager)(lookup2)
    try:
        said = python_says(lookup2, topic="tides")
        assert "unexpected keyword argument 'topic'" in said
        with pytest.raises(TypeError) as caught:
            tool(topic="tides")
        assert str(caught.value) == said
        # With the required argument given too.
        with pytest.raises(TypeError) as caught:
            tool("tides", topic="tides")
        assert str(caught.value) == python_says(lookup2, "tides", topic="tides")
    finally:
        manager.stop()


def test_a_wrong_keyword_on_an_async_tool_raises_what_python_would() -> None:
    manager = AsyncToolManager(max_workers=2, target=no_server())

    async def lookup3(term: str, limit: int = 3) -> str:
        """Look a term up."""
        return term

    tool = async_tool(manager)(lookup3)
    try:
        with pytest.raises(TypeError) as caught:
            asyncio.run(tool(topic="tides"))
        assert str(caught.value) == python_says(lookup3, topic="tides")
        assert "unexpected keyword argument 'topic'" in str(caught.value)
    finally:
        manager.stop()
