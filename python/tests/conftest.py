"""Fixtures: a real `errand` server on a free loopback port, clients and workers.

The binary comes from $ERRAND_BIN, else <repo>/target/debug/errand. The server
prints `errand listening on 127.0.0.1:PORT` on stdout once bound; the fixture
waits for that line (with a deadline), never for a fixed time.
"""

from __future__ import annotations

import asyncio
import logging
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO, Any, Callable, Optional, Union

import pytest

from errand import AsyncClient, Client, Completion, CompletionStream, Worker

PYTHON_DIR = Path(__file__).resolve().parents[1]
REPO = PYTHON_DIR.parent
LISTENING = re.compile(r"errand listening on (\S+:\d+)")
START_TIMEOUT = 30.0
EVENT_TIMEOUT = 30.0


def errand_bin() -> Path:
    path = Path(os.environ.get("ERRAND_BIN") or REPO / "target" / "debug" / "errand")
    if not path.exists():
        pytest.fail(
            f"errand server binary not found at {path}: build it (cargo build) or set ERRAND_BIN",
            pytrace=False,
        )
    return path


def new_token(file: Path, role: str, tenant: str, *extra: str) -> str:
    """A new token of `role` for `tenant`, appended to the tokens file `file`."""
    args = ["token", "new", "--role", role, "--tenant", tenant, "--append", str(file), *extra]
    out = subprocess.run(
        [str(errand_bin()), *args],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    secret = out.splitlines()[0].strip()
    assert secret.startswith("ert_"), out
    return secret


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ServerProcess:
    """One `errand serve` child process; `start()` returns once it listens."""

    def __init__(self, args: Sequence[str], log_path: Path) -> None:
        self.args = list(args)
        self.log_path = log_path
        self.proc: Optional[subprocess.Popen[str]] = None
        self.address = ""
        self._log: Optional[IO[str]] = None

    def start(self) -> str:
        self._log = open(self.log_path, "a")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [str(errand_bin()), *self.args],
            stdout=subprocess.PIPE,
            stderr=self._log,
            text=True,
            env={**os.environ, "RUST_LOG": os.environ.get("RUST_LOG", "info")},
        )
        lines: queue.Queue[Optional[str]] = queue.Queue()
        stdout = self.proc.stdout
        assert stdout is not None

        def pump() -> None:
            for line in stdout:
                lines.put(line)
            lines.put(None)

        threading.Thread(target=pump, daemon=True).start()
        try:
            while True:
                line = lines.get(timeout=START_TIMEOUT)
                if line is None:
                    raise RuntimeError(
                        f"errand serve exited ({self.proc.wait()}) before listening; "
                        f"log: {self.log_path.read_text()[-2000:]}"
                    )
                match = LISTENING.search(line)
                if match:
                    self.address = match.group(1)
                    return self.address
        except queue.Empty:
            self.kill()
            raise RuntimeError(
                f"errand serve did not print its address in {START_TIMEOUT}s"
            ) from None

    def kill(self) -> None:
        """SIGKILL: no graceful shutdown, as in a crash."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)
        if self._log is not None:
            self._log.close()
            self._log = None

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        if self._log is not None:
            self._log.close()
            self._log = None


class CuttableProxy:
    """A loopback TCP proxy whose connections the test can cut, as a network blip.

    While cut, new connections are closed at once; `restore()` lets them through.
    """

    def __init__(self, upstream: str) -> None:
        host, port = upstream.rsplit(":", 1)
        self.upstream = (host, int(port))
        self._listener = socket.socket()
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(64)
        self.address = f"127.0.0.1:{self._listener.getsockname()[1]}"
        self._lock = threading.Lock()
        self._open: list[socket.socket] = []
        self._cut = False
        self._closed = False
        self.connections = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            with self._lock:
                if self._cut or self._closed:
                    conn.close()
                    continue
                try:
                    up = socket.create_connection(self.upstream, timeout=5)
                except OSError:
                    conn.close()
                    continue
                up.settimeout(None)
                self._open += [conn, up]
                self.connections += 1
            threading.Thread(target=self._pump, args=(conn, up), daemon=True).start()
            threading.Thread(target=self._pump, args=(up, conn), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def cut(self) -> None:
        """Break every open connection and refuse new ones."""
        with self._lock:
            self._cut = True
            conns, self._open = self._open, []
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            conn.close()

    def restore(self) -> None:
        with self._lock:
            self._cut = False

    def close(self) -> None:
        self._closed = True
        self.cut()
        self._listener.close()


@pytest.fixture
def proxy(server: str) -> Iterator[CuttableProxy]:
    p = CuttableProxy(server)
    yield p
    p.close()


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Address of a shared in-memory server for the whole session."""
    log = tmp_path_factory.mktemp("errand") / "server.log"
    proc = ServerProcess(["serve", "--listen", "127.0.0.1:0", "--store", "memory"], log)
    address = proc.start()
    os.environ["ERRAND_SERVER"] = address
    yield address
    proc.stop()


@pytest.fixture
def server_factory(tmp_path: Path) -> Iterator[Callable[..., ServerProcess]]:
    """Start servers of one's own (for kill/restart tests); all are stopped at the end."""
    started: list[ServerProcess] = []

    def make(*args: str) -> ServerProcess:
        proc = ServerProcess(["serve", *args], tmp_path / f"server-{len(started)}.log")
        started.append(proc)
        return proc

    yield make
    for proc in started:
        proc.stop()


def unique(prefix: str) -> str:
    """A tool or session name no other test uses on the shared server."""
    return f"{prefix}_{uuid.uuid4().hex[:8]}"


@pytest.fixture
def client(server: str) -> Iterator[Client]:
    with Client(server, session_id=unique("session")) as c:
        yield c


@pytest.fixture
def start_worker(server: str) -> Iterator[Callable[..., Worker]]:
    """Start a worker serving some tools; stopped at the end of the test."""
    workers: list[Worker] = []

    def start(*tools: Callable[..., Any], target: Optional[str] = None, **kw: Any) -> Worker:
        worker = Worker(target or server, tools=tools, **kw)
        workers.append(worker)
        worker.start(timeout=START_TIMEOUT)
        return worker

    yield start
    for worker in workers:
        worker.stop()


class Collector:
    """Reads a completion stream on a thread into a queue, for tests to await."""

    def __init__(self, stream: CompletionStream) -> None:
        self.stream = stream
        self.items: queue.Queue[Completion] = queue.Queue()
        self.error: Optional[BaseException] = None
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            for completion in self.stream:
                self.items.put(completion)
        except BaseException as exc:
            self.error = exc

    def take(self, n: int, timeout: float = EVENT_TIMEOUT) -> list[Completion]:
        out = []
        for _ in range(n):
            try:
                out.append(self.items.get(timeout=timeout))
            except queue.Empty:
                raise AssertionError(
                    f"got {len(out)} of {n} completions in {timeout}s (stream error: {self.error})"
                ) from None
        return out

    def close(self) -> None:
        self.stream.close()
        self._thread.join(10)


@pytest.fixture
def collect() -> Iterator[Callable[[CompletionStream], Collector]]:
    collectors: list[Collector] = []

    def make(stream: CompletionStream) -> Collector:
        c = Collector(stream)
        collectors.append(c)
        return c

    yield make
    for c in collectors:
        c.close()


class Quiet:
    """Catches what asyncio and Python print about leftovers of closed event
    loops: a gRPC operation that completes after its loop closed makes gRPC's
    poller fail with "Event loop is closed" in whichever loop reads its
    events next; a task's unseen exception, an unraisable one at collection.
    """

    def __init__(
        self, server: str, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
    ) -> None:
        self.server = server
        self.problems: list[str] = []
        self._caplog = caplog
        self._capfd = capfd

    def watch(self) -> None:
        """Report the running loop's unhandled exceptions here (call in each loop)."""
        asyncio.get_running_loop().set_exception_handler(self._loop_handler)

    def _loop_handler(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        self.problems.append(f"loop: {context.get('message')}: {context.get('exception')!r}")

    def unraisable(self, info: Any) -> None:
        self.problems.append(f"unraisable: {info.exc_value!r} in {info.object!r}")

    def round_trip(self) -> None:
        """One call on a fresh, watched loop: gRPC's poller hands it the
        events of closed loops' operations that completed meanwhile."""

        async def call() -> None:
            self.watch()
            async with AsyncClient(self.server) as client:
                await client.list_tools()

        asyncio.run(call())

    def check(self) -> None:
        """A last round trip, then: nothing logged at ERROR by asyncio (where
        a loop's leftovers are reported) or by the agent, handled by a loop,
        unraisable, or printed to stderr as a traceback. (Another test's
        worker thread may log its own end meanwhile: the tests check their
        workers' `error` themselves.)"""
        self.round_trip()
        errors = [
            r.getMessage()
            for r in self._caplog.records
            if r.levelno >= logging.ERROR and r.name in ("asyncio", "errand.agent")
        ]
        assert not errors, errors
        assert not self.problems, self.problems
        err = self._capfd.readouterr().err
        assert "Traceback" not in err and "Event loop is closed" not in err, err[-3000:]


@pytest.fixture
def quiet(
    server: str,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> Quiet:
    """A `Quiet` for the shared server; call its `check()` at the end."""
    q = Quiet(server, caplog, capfd)
    monkeypatch.setattr(sys, "unraisablehook", q.unraisable)
    caplog.set_level(logging.WARNING)
    return q


class Watch(logging.Handler):
    """A logger's WARNING records and the end of what the test watches
    (`ended`: a worker's, a stream reader's error), in one queue to await."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.events: queue.Queue[Union[logging.LogRecord, BaseException]] = queue.Queue()

    def emit(self, record: logging.LogRecord) -> None:
        self.events.put(record)

    def ended(self, error: BaseException) -> None:
        self.events.put(error)

    def warning(self, containing: str) -> str:
        """The first WARNING whose text contains `containing`; fails at the
        watched thing's end (its error) or after EVENT_TIMEOUT seconds."""
        while True:
            try:
                event = self.events.get(timeout=EVENT_TIMEOUT)
            except queue.Empty:
                missing = f"no warning with {containing!r} in {EVENT_TIMEOUT}s"
                raise AssertionError(missing) from None
            if isinstance(event, BaseException):
                raise AssertionError(f"it stopped: {event!r}") from event
            text = event.getMessage()
            if containing in text:
                return text


def watching(logger_name: str) -> Iterator[Watch]:
    """A `Watch` on the logger `logger_name`, for a fixture to yield from."""
    handler = Watch()
    logger = logging.getLogger(logger_name)
    logger.addHandler(handler)
    level = logger.level
    logger.setLevel(logging.WARNING)
    yield handler
    logger.setLevel(level)
    logger.removeHandler(handler)
