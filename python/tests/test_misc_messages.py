"""Errors and docstrings that say what the user passed and what the server does."""

from __future__ import annotations

import asyncio

import pytest

from errand import AsyncClient, AsyncToolManager, Client, InvalidArgument


def test_max_workers_zero_names_max_workers() -> None:
    with pytest.raises(ValueError, match="max_workers"):
        AsyncToolManager(max_workers=0, target="127.0.0.1:1")


def test_arguments_that_are_not_a_mapping_are_refused_plainly() -> None:
    with Client("127.0.0.1:1") as client:
        with pytest.raises(InvalidArgument, match="mapping") as refused:
            client.submit("tool", ["x"])  # type: ignore[call-overload]
        assert isinstance(refused.value, TypeError)
        assert "JSON object" in refused.value.message


def test_a_negative_result_timeout_is_refused() -> None:
    with Client("127.0.0.1:1") as client, pytest.raises(ValueError, match="timeout"):
        client.result("01a2380e-a739-75ea-8fb4-23957d4a55fe", timeout=-1)

    async def run() -> None:
        async with AsyncClient("127.0.0.1:1") as aclient:
            with pytest.raises(ValueError, match="timeout"):
                await aclient.result("01a2380e-a739-75ea-8fb4-23957d4a55fe", timeout=-1)

    asyncio.run(run())


def test_manager_keep_results_is_a_constructor_argument() -> None:
    manager = AsyncToolManager(max_workers=1, target="127.0.0.1:1", keep_results=5)
    assert manager.keep_results == 5
    assert "keep_results" in (AsyncToolManager.result.__doc__ or "")


def test_cancel_docstring_matches_the_server() -> None:
    doc = " ".join((Client.cancel.__doc__ or "").split())
    assert "already cancelled" in doc
    assert "FailedPrecondition if it finished otherwise" in doc
