"""A client pointed at one of errand's HTTP listeners (MCP, A2A, dashboard)
instead of its gRPC one says so, as the `errand` CLI does, rather than
suggesting an old server.

grpcio reports such an answer as a status of its own making (UNIMPLEMENTED
for a 404, UNKNOWN for most other HTTP statuses) whose message is "Received
http2 header with status: NNN". `errors.from_grpc` turns it into the usual
class for its code (existing `except` clauses still catch it) with a message
that names the target and the way to fix it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import grpc
import pytest

from errand import AsyncClient, Client, Worker, async_tool
from errand._common import connection
from errand._core import ClientCore
from errand.errors import ANSWERED_HTTP, RpcError, Unavailable, Unimplemented, from_grpc

from .conftest import ServerProcess, free_port


class HttpAnswer(grpc.RpcError):
    """The error grpcio raises when a web server answered the call."""

    def __init__(self, code: grpc.StatusCode, http_status: int) -> None:
        self._code = code
        self._details = f"Received http2 header with status: {http_status}"

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details


def answered_http(address: str, http_status: int) -> str:
    return f"{address} answered HTTP, not errand's gRPC (HTTP status {http_status})"


def assert_says_http_port(exc: BaseException, address: str, http_status: int = 404) -> None:
    text = str(exc)
    assert answered_http(address, http_status) in text, text
    assert "MCP, A2A or dashboard port" in text, text
    assert "ERRAND_SERVER" in text and "target=" in text, text
    assert "errand serve --listen" in text and "7466" in text, text
    assert "Received http2 header" not in text, text


def test_from_grpc_names_the_target_and_keeps_the_class() -> None:
    err = from_grpc(HttpAnswer(grpc.StatusCode.UNIMPLEMENTED, 404), "ListTools", "h:1")
    assert type(err) is Unimplemented
    assert err.code is grpc.StatusCode.UNIMPLEMENTED and err.method == "ListTools"
    assert_says_http_port(err, "h:1")
    other = from_grpc(HttpAnswer(grpc.StatusCode.UNKNOWN, 405), "SubmitTool", "h:1")
    assert type(other) is RpcError and other.code is grpc.StatusCode.UNKNOWN
    assert_says_http_port(other, "h:1", 405)


@pytest.mark.parametrize("http_status", [429, 502, 503, 504])
def test_a_proxys_outage_answer_is_an_outage_not_the_wrong_port(http_status: int) -> None:
    """A proxy in front of errand (nginx grpc_pass, an ingress) answers 502/503
    while errand restarts or is not serving; gRPC maps 429/502/503/504 to
    UNAVAILABLE. Not the developer's wrong port: an outage, in a proxy's words."""
    from errand.integrations._tools import for_developer

    core = ClientCore(
        connection("127.0.0.1:1", token=""),
        session_id="s1",
        timeout=2.0,
        wait_for_ready=True,
        connect_timeout=5.0,
    )
    core.connected = True
    answer = HttpAnswer(grpc.StatusCode.UNAVAILABLE, http_status)
    for err in (from_grpc(answer, "SubmitTool", "127.0.0.1:1"), core.failed(answer, "SubmitTool")):
        assert type(err) is Unavailable
        text = str(err)
        assert f"a proxy at 127.0.0.1:1 answered HTTP {http_status}" in text, text
        assert "errand may be restarting" in text, text
        assert "MCP, A2A" not in text and ANSWERED_HTTP not in text, text
        assert not for_developer(err)


def test_the_client_core_gives_its_target() -> None:
    core = ClientCore(
        connection("127.0.0.1:1", token=""),
        session_id="s1",
        timeout=2.0,
        wait_for_ready=True,
        connect_timeout=5.0,
    )
    err = core.failed(HttpAnswer(grpc.StatusCode.UNIMPLEMENTED, 404), "ListTools")
    assert isinstance(err, Unimplemented)
    assert_says_http_port(err, "127.0.0.1:1")


@pytest.fixture(scope="module")
def mcp_port(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The MCP listener's address of a server of this module's own."""
    mcp = f"127.0.0.1:{free_port()}"
    log = tmp_path_factory.mktemp("errand-http") / "server.log"
    proc = ServerProcess(
        ["serve", "--listen", "127.0.0.1:0", "--store", "memory", "--mcp-listen", mcp], log
    )
    proc.start()
    yield mcp
    proc.stop()


def test_a_client_at_the_mcp_port_says_so(mcp_port: str) -> None:
    with Client(target=mcp_port) as client, pytest.raises(Unimplemented) as caught:
        client.list_tools()
    assert_says_http_port(caught.value, mcp_port)


def test_an_async_client_at_the_mcp_port_says_so(mcp_port: str) -> None:
    async def main() -> None:
        async with AsyncClient(target=mcp_port) as client:
            with pytest.raises(Unimplemented) as caught:
                await client.list_tools()
            assert_says_http_port(caught.value, mcp_port)

    asyncio.run(main())


def test_errand_server_at_the_mcp_port_says_so(
    mcp_port: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ERRAND_SERVER", mcp_port)
    with Client() as client, pytest.raises(Unimplemented) as caught:
        client.submit("anything", {})
    assert_says_http_port(caught.value, mcp_port)


def test_a_stream_at_the_mcp_port_says_so(mcp_port: str) -> None:
    with Client(target=mcp_port) as client:
        with pytest.raises(Unimplemented) as caught:
            next(iter(client.completions()))
        assert_says_http_port(caught.value, mcp_port)
        with pytest.raises(Unimplemented) as caught:
            next(iter(client.session_events(fallback=True)))
        assert_says_http_port(caught.value, mcp_port)


def test_an_async_stream_at_the_mcp_port_says_so(mcp_port: str) -> None:
    async def main() -> None:
        async with AsyncClient(target=mcp_port) as client:
            with pytest.raises(Unimplemented) as caught:
                async for _ in client.completions():
                    break
            assert_says_http_port(caught.value, mcp_port)

    asyncio.run(main())


def test_a_worker_at_the_mcp_port_says_so(mcp_port: str) -> None:
    @async_tool
    def echo(text: str) -> str:
        """Echo."""
        return text

    worker = Worker(mcp_port, tools=[echo])
    with pytest.raises(Unimplemented) as caught:
        worker.start(timeout=10)
    assert_says_http_port(caught.value, mcp_port)
