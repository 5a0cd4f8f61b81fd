"""`resolve_tools`: local functions, ToolInfos and names become framework-neutral tools."""

from __future__ import annotations

import asyncio

import pytest

from errand import AsyncClient, Client
from errand.integrations import ASYNC_NOTICE, resolve_tools

from ..conftest import unique
from .scenario import Gates


def test_sources_resolve_to_name_description_schema(server: str, gates: Gates) -> None:
    with Client(server, session_id=unique("session")) as client:
        (info,) = [t for t in client.list_tools() if t.name == gates.research_name]
        local, by_info, by_name = resolve_tools(
            client, [gates.research, info, gates.lookup_name], session_id="other"
        )
        registered = {t.name for t in resolve_tools(client)}  # None: every registered tool
    assert local.name == by_info.name == gates.research_name
    assert by_name.name == gates.lookup_name
    assert {gates.research_name, gates.lookup_name} <= registered
    # One description for the model either way: the docstring, then errand's notice once.
    assert local.description == by_info.description
    assert local.description.startswith("Research a topic thoroughly")
    assert local.description.endswith(ASYNC_NOTICE)
    assert local.description.count(ASYNC_NOTICE) == 1
    assert local.schema() == by_info.schema()
    assert by_name.schema()["required"] == ["key"]
    assert {t.session_id for t in (local, by_info, by_name)} == {"other"}


def test_a_call_submits_into_the_session_and_answers_with_the_ack(
    server: str, gates: Gates
) -> None:
    session = unique("session")
    with Client(server, session_id=session) as client:
        (tool,) = resolve_tools(client, [gates.research])
        ack = tool.submit({"topic": "a"})
        assert ack.task.session_id == session
        assert ack.task_id in ack.ack
        assert not client.get_task(ack.task_id).status.finished

        async def from_a_loop() -> str:
            return (await tool.asubmit({"topic": "b"})).task_id

        task_id = asyncio.run(from_a_loop())
        assert client.get_task(task_id).tool == gates.research_name


def test_async_client_tools_submit_on_its_loop(server: str, gates: Gates) -> None:
    async def main() -> None:
        async with AsyncClient(server, session_id=unique("session")) as aclient:
            infos = [t for t in await aclient.list_tools() if t.name == gates.lookup_name]
            (tool,) = resolve_tools(aclient, infos)
            ack = await tool.asubmit({"key": "a"})
            assert ack.task.tool == gates.lookup_name
            with pytest.raises(TypeError, match="asubmit"):
                tool.submit({"key": "a"})
            with pytest.raises(TypeError, match="list_tools"):
                resolve_tools(aclient, [gates.lookup_name])

    asyncio.run(main())


def test_bad_sources_say_what_to_pass(server: str, gates: Gates) -> None:
    with Client(server, session_id=unique("session")) as client:
        with pytest.raises(LookupError, match="no worker has registered the tool 'nope'"):
            resolve_tools(client, ["nope"])
        with pytest.raises(TypeError, match="@async_tool function"):
            resolve_tools(client, [42])  # type: ignore[list-item]


def test_client_tool_callables_submit_through_their_own_client(server: str, gates: Gates) -> None:
    session = unique("session")
    with Client(server, session_id=session) as client:
        remote = client.tool(gates.lookup_name)
        (own,) = resolve_tools(None, [remote])  # no client: the callable's own submit
        (other,) = resolve_tools(client, [remote], session_id="elsewhere")
        assert own.name == gates.lookup_name and own.session_id is None
        assert own.description.count(ASYNC_NOTICE) == 1
        assert own.schema()["required"] == ["key"]
        assert client.get_task(own.submit({"key": "a"}).task_id).session_id == session
        assert other.submit({"key": "a"}).task.session_id == "elsewhere"
        with pytest.raises(TypeError, match="nothing to submit"):
            resolve_tools(None, [gates.research])  # a bare @async_tool has no client

    async def main() -> None:
        async with AsyncClient(server, session_id=session) as aclient:
            (tool,) = resolve_tools(None, [await aclient.tool(gates.lookup_name)])
            assert not tool.blocking
            assert (await tool.asubmit({"key": "b"})).task.session_id == session

    asyncio.run(main())
