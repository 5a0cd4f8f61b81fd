"""Tokens, tenants, TLS and mutual TLS against the real server.

Certificates are made at test time with `trustme` (never committed), tokens
with `errand token new --append`. Each server runs on 127.0.0.1:0 with
`--tokens-file` and `--tls-cert/--tls-key` (and `--tls-client-ca` for mTLS).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import pytest
import trustme

from errand import AsyncClient, Client, TaskStatus, Worker, async_tool
from errand.errors import NotFound, PermissionDenied, Unauthenticated, Unavailable

from .conftest import (
    EVENT_TIMEOUT,
    START_TIMEOUT,
    Collector,
    CuttableProxy,
    ServerProcess,
    new_token,
    unique,
)

#: Calls that are expected to fail at the TLS handshake fail fast instead of
#: waiting for the server to become reachable.
REFUSED = {"wait_for_ready": False, "timeout": 10.0}


@dataclass
class Pki:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    rogue_cert: Path  # a client certificate signed by a CA the server does not trust
    rogue_key: Path


@dataclass
class Tokens:
    file: Path
    agent_a: str
    worker_a: str
    agent_b: str
    worker_b: str
    expired: str


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    d = tmp_path_factory.mktemp("pki")
    ca = trustme.CA()
    server = ca.issue_cert("localhost", "127.0.0.1")
    client = ca.issue_cert("agent@errand.test")
    rogue = trustme.CA().issue_cert("rogue@errand.test")
    p = Pki(*(d / n for n in ("ca.pem", "s.pem", "s.key", "c.pem", "c.key", "r.pem", "r.key")))
    ca.cert_pem.write_to_path(str(p.ca))
    for leaf, cert, key in (
        (server, p.server_cert, p.server_key),
        (client, p.client_cert, p.client_key),
        (rogue, p.rogue_cert, p.rogue_key),
    ):
        for i, blob in enumerate(leaf.cert_chain_pems):
            blob.write_to_path(str(cert), append=i > 0)
        leaf.private_key_pem.write_to_path(str(key))
    return p


@pytest.fixture(scope="module")
def tokens(tmp_path_factory: pytest.TempPathFactory) -> Tokens:
    file = tmp_path_factory.mktemp("tokens") / "tokens"
    return Tokens(
        file=file,
        agent_a=new_token(file, "agent", "acme"),
        worker_a=new_token(file, "worker", "acme"),
        agent_b=new_token(file, "agent", "globex"),
        worker_b=new_token(file, "worker", "globex"),
        expired=new_token(file, "agent", "acme", "--expires", "2000-01-01T00:00:00Z"),
    )


def serve(tmp: pytest.TempPathFactory, *args: str) -> Iterator[str]:
    proc = ServerProcess(
        ["serve", "--listen", "127.0.0.1:0", "--store", "memory", *args],
        tmp.mktemp("errand") / "server.log",
    )
    yield proc.start()
    proc.stop()


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory: pytest.TempPathFactory, pki: Pki, tokens: Tokens) -> Iterator[str]:
    """A server with TLS and tokens (no client certificates)."""
    yield from serve(
        tmp_path_factory,
        *("--tokens-file", str(tokens.file)),
        *("--tls-cert", str(pki.server_cert), "--tls-key", str(pki.server_key)),
    )


@pytest.fixture(scope="module")
def mtls_server(
    tmp_path_factory: pytest.TempPathFactory, pki: Pki, tokens: Tokens
) -> Iterator[str]:
    """A server that requires client certificates signed by the test CA, and tokens."""
    yield from serve(
        tmp_path_factory,
        *("--tokens-file", str(tokens.file)),
        *("--tls-cert", str(pki.server_cert), "--tls-key", str(pki.server_key)),
        *("--tls-client-ca", str(pki.ca)),
    )


@pytest.fixture(scope="module")
def plain_token_server(tmp_path_factory: pytest.TempPathFactory, tokens: Tokens) -> Iterator[str]:
    """Loopback plaintext with tokens: the token must ride without TLS too."""
    yield from serve(tmp_path_factory, "--tokens-file", str(tokens.file))


@pytest.fixture
def workers() -> Iterator[list[Worker]]:
    started: list[Worker] = []
    yield started
    for w in started:
        w.stop()


def echo_tool() -> Callable[..., Any]:
    @async_tool(name=unique("secure_echo"))
    def echo(text: str) -> dict[str, str]:
        """Echo the text back."""
        return {"echo": text}

    return echo


def tool_name(fn: Callable[..., Any]) -> str:
    name: str = fn.__errand_tool__.name  # type: ignore[attr-defined]
    return name


def start(workers: list[Worker], *tools: Callable[..., Any], **kw: Any) -> Worker:
    w = Worker(tools=tools, **kw)
    workers.append(w)
    return w.start(timeout=START_TIMEOUT)


def refused(error: type[Exception], target: str, **kw: Any) -> None:
    """A client made with these settings gets `error` on its first call."""
    with Client(target, **kw) as client, pytest.raises(error):
        client.list_tools()


def roundtrip(client: Client, tool: str, text: str, collect: Callable[..., Collector]) -> None:
    """submit -> worker -> completion on the client's session stream."""
    ack = client.submit(tool, text=text)
    (done,) = collect(client.completions()).take(1)
    assert done.task_id == ack.task_id
    assert done.status is TaskStatus.SUCCEEDED
    assert done.result == {"echo": text}


# -- TLS + tokens, end to end ---------------------------------------------------------------


def test_agent_and_worker_over_tls_with_tokens(
    tls_server: str,
    pki: Pki,
    tokens: Tokens,
    workers: list[Worker],
    collect: Callable[..., Collector],
) -> None:
    echo = echo_tool()
    start(workers, echo, target=tls_server, token=tokens.worker_a, tls_ca=pki.ca)
    with Client(tls_server, token=tokens.agent_a, tls_ca=str(pki.ca)) as client:
        assert tool_name(echo) in {t.name for t in client.list_tools()}
        roundtrip(client, tool_name(echo), "over tls", collect)


def test_async_client_over_tls_with_token(
    tls_server: str, pki: Pki, tokens: Tokens, workers: list[Worker]
) -> None:
    echo = echo_tool()
    start(workers, echo, target=tls_server, token=tokens.worker_a, tls_ca=pki.ca)

    async def main() -> None:
        async with AsyncClient(tls_server, token=tokens.agent_a, tls_ca=pki.ca) as client:
            ack = await client.submit(tool_name(echo), text="async")
            stream = client.completions()
            done = await asyncio.wait_for(stream.__anext__(), EVENT_TIMEOUT)
            await stream.aclose()
            assert (done.task_id, done.result) == (ack.task_id, {"echo": "async"})

    asyncio.run(main())


def test_settings_come_from_the_environment(
    tls_server: str,
    pki: Pki,
    tokens: Tokens,
    workers: list[Worker],
    collect: Callable[..., Collector],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ERRAND_SERVER", tls_server)
    monkeypatch.setenv("ERRAND_TLS_CA", str(pki.ca))
    monkeypatch.setenv("ERRAND_TOKEN", tokens.worker_a)
    echo = echo_tool()
    start(workers, echo)
    monkeypatch.setenv("ERRAND_TOKEN", tokens.agent_a)
    with Client() as client:
        roundtrip(client, tool_name(echo), "from env", collect)
    refused(Unauthenticated, "", token="")  # "" switches the environment's token off


def test_server_name_override(tls_server: str, pki: Pki, tokens: Tokens) -> None:
    with Client(tls_server, token=tokens.agent_a, tls_ca=pki.ca, tls_domain="localhost") as c:
        c.list_tools()
    # The certificate does not name elsewhere.test.
    refused(
        Unavailable,
        tls_server,
        token=tokens.agent_a,
        tls_ca=pki.ca,
        tls_domain="elsewhere.test",
        **REFUSED,
    )


def test_plaintext_client_is_refused_by_a_tls_server(tls_server: str, tokens: Tokens) -> None:
    refused(Unavailable, tls_server, token=tokens.agent_a, tls_ca="", **REFUSED)


def test_tls_client_needs_the_servers_ca(tls_server: str, pki: Pki, tokens: Tokens) -> None:
    # The rogue client certificate is self-contained: its chain is not the server's CA.
    refused(Unavailable, tls_server, token=tokens.agent_a, tls_ca=pki.rogue_cert, **REFUSED)


def no_connection(target: str, **kw: Any) -> str:
    """The message of the Unavailable a client made with these settings gets on its first
    call (waiting for the server as a first call does, not REFUSED's fail-fast)."""
    with Client(target, **kw) as client, pytest.raises(Unavailable) as info:
        client.list_tools()
    return str(info.value)


#: An X.509 v1 certificate (`openssl x509 -req` without extensions), its key thrown away.
V1_CERT = Path(__file__).resolve().parents[2] / "client" / "testdata" / "v1-client.pem"


def test_tls_mistakes_say_what_to_fix(
    tls_server: str, mtls_server: str, pki: Pki, tokens: Tokens, tmp_path: Path
) -> None:
    # No CA for a TLS server: it may serve TLS, and the option that gives its CA.
    message = no_connection(tls_server, token=tokens.agent_a, tls_ca="")
    for words in ("is errand serve running", "serves TLS", "tls_ca", "ERRAND_TLS_CA"):
        assert words in message, message
    # A CA that did not sign the server's certificate: named, with the option.
    message = no_connection(tls_server, token=tokens.agent_a, tls_ca=pki.rogue_cert)
    assert str(pki.rogue_cert) in message and "did not sign" in message, message
    # No client certificate for a server that requires one.
    message = no_connection(mtls_server, token=tokens.agent_a, tls_ca=pki.ca)
    assert "tls_cert" in message and "tls_key" in message, message
    # Files that cannot be used are refused at once, named.
    empty = tmp_path / "empty.pem"
    empty.write_bytes(b"")
    for not_a_ca in (pki.client_key, empty):
        with pytest.raises(ValueError, match="holds no certificate") as info:
            Client(tls_server, tls_ca=not_a_ca)
        assert str(not_a_ca) in str(info.value)
    with pytest.raises(ValueError, match="is not the certificate's") as info:
        Client(mtls_server, tls_ca=pki.ca, tls_cert=pki.client_cert, tls_key=pki.server_key)
    assert str(pki.client_cert) in str(info.value) and str(pki.server_key) in str(info.value)
    with pytest.raises(ValueError, match="extendedKeyUsage=clientAuth") as info:
        Client(mtls_server, tls_ca=pki.ca, tls_cert=V1_CERT, tls_key=pki.client_key)
    assert str(V1_CERT) in str(info.value) and "version 1" in str(info.value)
    # An encrypted key is named as such; nothing asks for a passphrase.
    from cryptography.hazmat.primitives import serialization

    key = serialization.load_pem_private_key(pki.client_key.read_bytes(), password=None)
    encrypted = tmp_path / "encrypted.key"
    encrypted.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"secret"),
        )
    )
    with pytest.raises(ValueError, match="is encrypted") as info:
        Client(mtls_server, tls_ca=pki.ca, tls_cert=pki.client_cert, tls_key=encrypted)
    assert str(encrypted) in str(info.value) and "openssl pkey" in str(info.value)


# -- tokens ---------------------------------------------------------------------------------


@pytest.mark.parametrize("which", ["none", "wrong", "expired"])
def test_missing_wrong_or_expired_token_is_unauthenticated(
    tls_server: str,
    plain_token_server: str,
    pki: Pki,
    tokens: Tokens,
    workers: list[Worker],
    which: str,
) -> None:
    token = {"none": "", "wrong": "ert_" + "0" * 64, "expired": tokens.expired}[which]
    for target, ca in ((tls_server, str(pki.ca)), (plain_token_server, "")):
        with Client(target, token=token, tls_ca=ca) as client:
            with pytest.raises(Unauthenticated) as err:
                client.list_tools()
            assert err.value.method == "ListTools"
            with pytest.raises(Unauthenticated):
                client.submit("anything", text="x")
            with pytest.raises(Unauthenticated):
                client.get_task("t-1")
            with client.completions() as stream, pytest.raises(Unauthenticated):
                next(stream)  # not retried: a missing token does not heal by itself

        async def via_async(target: str = target, ca: str = ca) -> None:
            async with AsyncClient(target, token=token, tls_ca=ca) as client:
                with pytest.raises(Unauthenticated):
                    await client.list_tools()
                stream = client.completions()
                with pytest.raises(Unauthenticated):
                    await stream.__anext__()

        asyncio.run(via_async())

        worker = Worker(target, tools=[echo_tool()], token=token, tls_ca=ca)
        workers.append(worker)
        with pytest.raises(Unauthenticated):
            worker.start(timeout=START_TIMEOUT)


def test_token_over_plaintext_loopback(
    plain_token_server: str,
    tokens: Tokens,
    workers: list[Worker],
    collect: Callable[..., Collector],
) -> None:
    echo = echo_tool()
    start(workers, echo, target=plain_token_server, token=tokens.worker_a, tls_ca="")
    with Client(plain_token_server, token=tokens.agent_a, tls_ca="") as client:
        roundtrip(client, tool_name(echo), "plaintext", collect)


def test_roles_are_enforced(
    tls_server: str, pki: Pki, tokens: Tokens, workers: list[Worker]
) -> None:
    refused(PermissionDenied, tls_server, token=tokens.worker_a, tls_ca=pki.ca)
    worker = Worker(tls_server, tools=[echo_tool()], token=tokens.agent_a, tls_ca=pki.ca)
    workers.append(worker)
    with pytest.raises(PermissionDenied):
        worker.start(timeout=START_TIMEOUT)


def test_token_and_authorization_metadata_conflict() -> None:
    with pytest.raises(ValueError, match="not both"):
        Client("127.0.0.1:1", token="ert_x", metadata=[("authorization", "Bearer y")])
    with pytest.raises(ValueError, match="together"):
        Client("127.0.0.1:1", tls_cert="c.pem", tls_key="")
    with pytest.raises(ValueError, match="cannot read"):
        Client("127.0.0.1:1", tls_ca="/nonexistent/ca.pem")


# -- tenants --------------------------------------------------------------------------------


def test_tenants_are_isolated(
    tls_server: str,
    pki: Pki,
    tokens: Tokens,
    workers: list[Worker],
    collect: Callable[..., Collector],
) -> None:
    echo_a, echo_b = echo_tool(), echo_tool()
    start(workers, echo_a, target=tls_server, token=tokens.worker_a, tls_ca=pki.ca)
    start(workers, echo_b, target=tls_server, token=tokens.worker_b, tls_ca=pki.ca)
    session = unique("shared_session_name")
    a = Client(tls_server, token=tokens.agent_a, tls_ca=pki.ca, session_id=session)
    b = Client(tls_server, token=tokens.agent_b, tls_ca=pki.ca, session_id=session)
    with a, b:
        # B follows a session of the same name before A's task exists.
        b_stream = collect(b.completions())
        ack_a = a.submit(tool_name(echo_a), text="tenant a")
        (done_a,) = collect(a.completions()).take(1)
        assert done_a.task_id == ack_a.task_id

        # A's task does not exist for B; A still sees it.
        with pytest.raises(NotFound):
            b.get_task(ack_a.task_id)
        with pytest.raises(NotFound):
            b.cancel(ack_a.task_id)
        assert a.get_task(ack_a.task_id).status is TaskStatus.SUCCEEDED

        # Each tenant sees its own tools only, and cannot call the other's.
        assert tool_name(echo_a) not in {t.name for t in b.list_tools()}
        assert tool_name(echo_b) not in {t.name for t in a.list_tools()}
        with pytest.raises(NotFound):
            b.submit(tool_name(echo_a), text="x")

        # B's stream of the same session name got nothing of A's: its first
        # completion is B's own task, run by B's worker.
        ack_b = b.submit(tool_name(echo_b), text="tenant b")
        (first,) = b_stream.take(1)
        assert (first.task_id, first.result) == (ack_b.task_id, {"echo": "tenant b"})
        with pytest.raises(NotFound):
            a.get_task(ack_b.task_id)


# -- mutual TLS -----------------------------------------------------------------------------


def test_mtls_with_client_certificates(
    mtls_server: str,
    pki: Pki,
    tokens: Tokens,
    workers: list[Worker],
    collect: Callable[..., Collector],
) -> None:
    tls = {"tls_ca": pki.ca, "tls_cert": pki.client_cert, "tls_key": pki.client_key}
    echo = echo_tool()
    start(workers, echo, target=mtls_server, token=tokens.worker_a, **tls)
    with Client(mtls_server, token=tokens.agent_a, **tls) as client:
        roundtrip(client, tool_name(echo), "mutual", collect)


def test_mtls_refuses_clients_without_an_accepted_certificate(
    mtls_server: str, pki: Pki, tokens: Tokens
) -> None:
    # No certificate, then one signed by a CA the server does not trust.
    refused(Unavailable, mtls_server, token=tokens.agent_a, tls_ca=pki.ca, **REFUSED)
    rogue = {"tls_cert": pki.rogue_cert, "tls_key": pki.rogue_key}
    refused(Unavailable, mtls_server, token=tokens.agent_a, tls_ca=pki.ca, **rogue, **REFUSED)


def test_mtls_certificate_still_needs_a_token(mtls_server: str, pki: Pki) -> None:
    tls = {"tls_ca": pki.ca, "tls_cert": pki.client_cert, "tls_key": pki.client_key}
    refused(Unauthenticated, mtls_server, token="", **tls)


# -- reconnects -----------------------------------------------------------------------------


def test_token_and_tls_survive_reconnects(
    tls_server: str,
    pki: Pki,
    tokens: Tokens,
    workers: list[Worker],
    collect: Callable[..., Collector],
) -> None:
    """The worker's Connect stream and the completions stream are opened again
    after a cut connection, with TLS and the token each time."""
    proxy = CuttableProxy(tls_server)
    try:
        echo = echo_tool()
        worker = start(workers, echo, target=proxy.address, token=tokens.worker_a, tls_ca=pki.ca)
        with Client(proxy.address, token=tokens.agent_a, tls_ca=pki.ca) as client:
            stream = client.completions()
            got = collect(stream)
            ack1 = client.submit(tool_name(echo), text="before")
            assert got.take(1)[0].task_id == ack1.task_id

            proxy.cut()
            proxy.restore()
            assert worker.wait_registered(EVENT_TIMEOUT, count=2)
            ack2 = client.submit(tool_name(echo), text="after")
            (done,) = got.take(1)
            assert (done.task_id, done.result) == (ack2.task_id, {"echo": "after"})
            assert stream.reconnects >= 1
            assert got.error is None
    finally:
        proxy.close()
