"""Listings documented as "every tool" follow ListTools' pages to the last one.

A ListTools answer holds no more tools than fit in the server's message limit
(--max-message-bytes) and says where to go on with next_page_token. The
server here has a small limit, and two real workers register 60 tools of
about 4 KB each: about two answers' worth.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Callable

import grpc
import pytest

from errand import AsyncClient, AsyncToolManager, Client, Worker, async_tool
from errand.errors import RpcError
from errand.integrations._tools import resolve_tools
from errand.v1 import errand_pb2 as pb
from errand.v1 import errand_pb2_grpc as pb_grpc

from .conftest import START_TIMEOUT, ServerProcess, unique

SMALL_MESSAGES = [
    "--max-message-bytes",
    "131072",
    "--max-result-bytes",
    "16384",
    "--max-arguments-bytes",
    "4096",
]
COUNT = 60


def make_tool(name: str) -> Callable[..., Any]:
    @async_tool(name=name, description=f"{name}: " + "d" * 4000)
    def tool(text: str) -> str:
        return text

    return tool


@pytest.fixture(scope="module")
def paged(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, list[str]]]:
    """A server whose 60 tools take two ListTools answers, and their names, sorted."""
    log: Path = tmp_path_factory.mktemp("paged") / "server.log"
    proc = ServerProcess(
        ["serve", "--listen", "127.0.0.1:0", "--store", "memory", *SMALL_MESSAGES], log
    )
    address = proc.start()
    prefix = unique("paged")
    names = [f"{prefix}_{i:02d}" for i in range(COUNT)]
    # One worker's Register must fit one message: two workers of 30 tools each.
    workers = [
        Worker(address, tools=[make_tool(n) for n in names[:30]]),
        Worker(address, tools=[make_tool(n) for n in names[30:]]),
    ]
    try:
        for worker in workers:
            worker.start(timeout=START_TIMEOUT)
        yield address, names
    finally:
        for worker in workers:
            worker.stop()
        proc.stop()


def test_the_server_answers_in_pages(paged: tuple[str, list[str]]) -> None:
    # The premise of the tests below: one answer does not hold every tool.
    address, _ = paged
    with grpc.insecure_channel(address) as channel:
        first = pb_grpc.ToolServiceStub(channel).ListTools(pb.ListToolsRequest(), timeout=10)
    assert 0 < len(first.tools) < COUNT
    assert first.next_page_token


def test_list_tools_follows_every_page(paged: tuple[str, list[str]]) -> None:
    address, names = paged
    with Client(address) as client:
        assert [t.name for t in client.list_tools()] == names
        # The last tool is on the second page: found by name, and among tools().
        assert client.tool(names[-1]).__name__ == names[-1]
        assert [f.__name__ for f in client.tools()] == names


def test_async_list_tools_follows_every_page(paged: tuple[str, list[str]]) -> None:
    address, names = paged

    async def scenario() -> None:
        async with AsyncClient(address) as client:
            assert [t.name for t in await client.list_tools()] == names
            assert (await client.tool(names[-1])).__name__ == names[-1]
            assert [f.__name__ for f in await client.tools()] == names

    asyncio.run(scenario())


def test_framework_tools_and_the_manager_see_every_page(paged: tuple[str, list[str]]) -> None:
    address, names = paged
    with Client(address) as client:
        # tools=None: every registered tool; a name on the second page.
        assert [t.name for t in resolve_tools(client)] == names
        assert [t.name for t in resolve_tools(client, [names[-1]])] == [names[-1]]
    manager = AsyncToolManager(target=address)
    try:
        assert [t.name for t in resolve_tools(manager, [names[-1]])] == [names[-1]]
        assert [t.name for t in manager.client.list_tools()] == names
    finally:
        manager.stop()


class PagedStub:
    """A ListTools that answers scripted pages, and records the tokens asked for."""

    def __init__(self, pages: dict[str, pb.ListToolsResponse]) -> None:
        self.pages = pages
        self.asked: list[str] = []

    def answer(self, request: pb.ListToolsRequest) -> pb.ListToolsResponse:
        self.asked.append(request.page_token)
        return self.pages[request.page_token]

    def ListTools(self, request: pb.ListToolsRequest, **kwargs: Any) -> pb.ListToolsResponse:
        return self.answer(request)


class AsyncPagedStub(PagedStub):
    async def ListTools(self, request: pb.ListToolsRequest, **kwargs: Any) -> pb.ListToolsResponse:
        return self.answer(request)


def page(*names: str, token: str = "") -> pb.ListToolsResponse:
    return pb.ListToolsResponse(
        tools=[pb.Tool(name=n, input_schema_json="{}") for n in names], next_page_token=token
    )


# A well-behaved server, one that repeats a token it gave before (a listing
# that would never end), and one whose page says more follow but holds none.
GOOD = {"": page("a", "b", token="t1"), "t1": page("c", token="t2"), "t2": page("d")}
CYCLE = {"": page("a", token="t1"), "t1": page("b", token="t2"), "t2": page("c", token="t1")}
STUCK = {"": page("a", token="t1"), "t1": page(token="t2"), "t2": page("b")}


def listed_sync(pages: dict[str, pb.ListToolsResponse]) -> tuple[list[str], list[str]]:
    stub = PagedStub(pages)
    with Client("127.0.0.1:1") as client:
        client._stub = stub  # type: ignore[assignment]
        return [t.name for t in client.list_tools()], stub.asked


def listed_async(pages: dict[str, pb.ListToolsResponse]) -> tuple[list[str], list[str]]:
    stub = AsyncPagedStub(pages)

    async def scenario() -> list[str]:
        async with AsyncClient("127.0.0.1:1") as client:
            client._stub_now = lambda: stub  # type: ignore[assignment,method-assign,return-value]
            return [t.name for t in await client.list_tools()]

    return asyncio.run(scenario()), stub.asked


@pytest.mark.parametrize("listed", [listed_sync, listed_async], ids=["sync", "async"])
def test_pages_are_followed_by_their_tokens(listed: Callable[..., Any]) -> None:
    assert listed(GOOD) == (["a", "b", "c", "d"], ["", "t1", "t2"])


@pytest.mark.parametrize("listed", [listed_sync, listed_async], ids=["sync", "async"])
@pytest.mark.parametrize(
    ("pages", "said"),
    [(CYCLE, "gave page_token 't1' again"), (STUCK, "a page without tools")],
    ids=["repeated-token", "empty-page"],
)
def test_a_listing_that_would_not_end_is_an_error(
    listed: Callable[..., Any], pages: dict[str, pb.ListToolsResponse], said: str
) -> None:
    with pytest.raises(RpcError, match=said) as caught:
        listed(pages)
    assert caught.value.code == grpc.StatusCode.INTERNAL
    assert caught.value.method == "ListTools"
