"""Tokens, tenants, failed-auth throttling and TLS on the MCP and A2A
listeners, as on the gRPC port: the pinned Python clients against the real
errand binary with `--tokens-file` and `--tls-cert` (a throwaway
self-signed certificate made with `openssl` for this run only).

Prints `secure-interop: N passed, N failed` and exits non-zero on a failure.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import ssl
import subprocess
import sys
import tempfile
import time
import traceback
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
import httpx
import httpx2
from a2a.types import a2a_pb2, a2a_pb2_grpc
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

ERRAND = os.environ["ERRAND_BIN"]
DEADLINE_S = 60.0
SKILL = "sleep_echo"
SLEEP_ECHO = (
    "python3 -c 'import json,sys,time; a=json.load(sys.stdin); "
    'time.sleep(a["seconds"]); print(json.dumps({"echo": a["text"]}))\''
)
SCHEMA = {
    "type": "object",
    "properties": {"seconds": {"type": "number"}, "text": {"type": "string"}},
    "required": ["seconds", "text"],
}
FAILURES_PER_MINUTE = 3


def token(tokens: str, role: str, tenant: str) -> str:
    out = subprocess.run(
        [ERRAND, "token", "new", "--role", role, "--tenant", tenant, "--append", tokens],
        capture_output=True, text=True, check=True, timeout=DEADLINE_S,
    )
    return out.stdout.strip()


def certificate(folder: str) -> tuple[str, str, str]:
    """A throwaway CA and a server certificate it signed (localhost, 127.0.0.1): (ca, cert, key)."""
    ca, ca_key = os.path.join(folder, "ca.pem"), os.path.join(folder, "ca.key")
    cert, key, csr = (os.path.join(folder, n) for n in ("cert.pem", "key.pem", "cert.csr"))
    ext = os.path.join(folder, "ext.cnf")
    with open(ext, "w") as f:
        f.write("subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n"
                "keyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n")
    for cmd in (
        ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", ca_key, "-out", ca, "-days", "1",
         "-subj", "/CN=errand interop CA"],
        ["req", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", csr, "-subj", "/CN=localhost"],
        ["x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial", "-out", cert, "-days", "1",
         "-extfile", ext],
    ):
        subprocess.run(["openssl", *cmd], capture_output=True, check=True, timeout=DEADLINE_S)
    return ca, cert, key


class Setup:
    def __init__(self) -> None:
        self.dir = tempfile.mkdtemp(prefix="errand-secure-")
        tokens = os.path.join(self.dir, "tokens")
        self.acme = token(tokens, "agent", "acme")
        self.other = token(tokens, "agent", "other")
        self.worker_token = token(tokens, "worker", "acme")
        self.cert, cert, key = certificate(self.dir)
        self.proc = subprocess.Popen(
            [ERRAND, "serve", "--listen", "127.0.0.1:0", "--a2a-listen", "127.0.0.1:0",
             "--mcp-listen", "127.0.0.1:0", "--data-dir", os.path.join(self.dir, "data"),
             "--tokens-file", tokens, "--tls-cert", cert, "--tls-key", key,
             "--auth-failures-per-minute", str(FAILURES_PER_MINUTE)],
            stdout=subprocess.PIPE, text=True,
        )
        self.a2a = self.mcp = self.addr = ""
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if line.startswith("errand a2a on "):
                self.a2a = line.split()[-1].removesuffix("/.well-known/agent-card.json")
            if line.startswith("errand mcp on "):
                self.mcp = line.split()[-1]
            if line.startswith("errand listening on "):
                self.addr = line.split()[-1]
                break
        assert self.a2a.startswith("https://") and self.mcp.startswith("https://"), (self.a2a, self.mcp)
        self.worker = subprocess.Popen(
            [ERRAND, "worker", "--server", self.addr, "--token", self.worker_token, "--tls-ca", self.cert,
             "--tool", SKILL, "--description", "Sleeps, then echoes.", "--schema", json.dumps(SCHEMA),
             "--exec", SLEEP_ECHO],
            start_new_session=True,
        )
        self.tls = ssl.create_default_context(cafile=self.cert)

    def close(self) -> None:
        os.killpg(self.worker.pid, 9)
        self.worker.wait(timeout=30)
        self.proc.terminate()
        self.proc.wait(timeout=30)
        shutil.rmtree(self.dir, ignore_errors=True)

    def http(self, bearer: str | None) -> httpx.AsyncClient:
        headers = {"A2A-Version": "1.0"}
        if bearer:
            headers["Authorization"] = f"Bearer {bearer}"
        return httpx.AsyncClient(verify=self.tls, headers=headers, timeout=30)

    async def card(self, bearer: str | None) -> dict[str, Any]:
        async with self.http(bearer) as h:
            r = await h.get(f"{self.a2a}/.well-known/agent-card.json")
        r.raise_for_status()
        return r.json()  # type: ignore[no-any-return]

    async def jsonrpc(self, bearer: str | None, method: str, params: dict[str, Any]) -> httpx.Response:
        async with self.http(bearer) as h:
            return await h.post(f"{self.a2a}/jsonrpc", json={"jsonrpc": "2.0", "id": 1, "method": method,
                                                             "params": params})

    def grpc_stub(self) -> tuple[grpc.aio.Channel, a2a_pb2_grpc.A2AServiceStub]:
        with open(self.cert, "rb") as f:
            creds = grpc.ssl_channel_credentials(root_certificates=f.read())
        channel = grpc.aio.secure_channel(self.a2a.removeprefix("https://"), creds)
        return channel, a2a_pb2_grpc.A2AServiceStub(channel)

    def mcp_client(self, bearer: str) -> Client:
        http = httpx2.AsyncClient(
            headers={"Authorization": f"Bearer {bearer}", "Errand-Session": "secure"}, verify=self.tls, timeout=30
        )
        return Client(streamable_http_client(self.mcp, http_client=http),  # type: ignore[arg-type]
                      read_timeout_seconds=DEADLINE_S)


def send(text: str) -> dict[str, Any]:
    return {"message": {"messageId": uuid.uuid4().hex, "role": "ROLE_USER", "contextId": "secure",
                        "metadata": {"skill": SKILL}, "parts": [{"data": {"seconds": 0, "text": text}}]}}


def checks(s: Setup) -> list[Callable[[], Awaitable[None]]]:
    async def the_card_lists_the_callers_tenant_over_https() -> None:
        end = time.monotonic() + DEADLINE_S
        while not [k["id"] for k in (await s.card(s.acme))["skills"]]:
            assert time.monotonic() < end, "the worker registered sleep_echo"
            await asyncio.sleep(0.05)
        assert [k["id"] for k in (await s.card(s.acme))["skills"]] == [SKILL]
        assert (await s.card(s.other))["skills"] == [], "another tenant sees none of acme's tools"
        anonymous = await s.card(None)
        assert anonymous["skills"] == [] and "bearer" in anonymous["securitySchemes"], anonymous
        urls = {i["protocolBinding"]: i["url"] for i in anonymous["supportedInterfaces"]}
        assert urls["JSONRPC"].startswith("https://"), urls

    async def a_task_is_its_tenants_only() -> None:
        r = await s.jsonrpc(s.acme, "SendMessage", send("mine"))
        task = r.json()["result"]["task"]
        assert task["status"]["state"] == "TASK_STATE_COMPLETED", r.text
        got = (await s.jsonrpc(s.acme, "GetTask", {"id": task["id"]})).json()
        assert got["result"]["id"] == task["id"], got
        theirs = (await s.jsonrpc(s.other, "GetTask", {"id": task["id"]})).json()
        assert theirs["error"]["code"] == -32001, theirs
        listed = (await s.jsonrpc(s.other, "ListTasks", {"contextId": "secure"})).json()
        assert listed["result"].get("tasks", []) == [], listed

    async def grpc_over_tls_needs_an_agent_token() -> None:
        r = await s.jsonrpc(s.acme, "SendMessage", send("grpc"))
        task_id = r.json()["result"]["task"]["id"]
        channel, stub = s.grpc_stub()
        async with channel:
            meta = (("authorization", f"Bearer {s.acme}"), ("a2a-version", "1.0"))
            task = await stub.GetTask(a2a_pb2.GetTaskRequest(id=task_id), metadata=meta)
            assert task.status.state == a2a_pb2.TaskState.TASK_STATE_COMPLETED, task
            try:
                await stub.GetTask(a2a_pb2.GetTaskRequest(id=task_id), metadata=(("a2a-version", "1.0"),))
            except grpc.aio.AioRpcError as e:
                assert e.code() == grpc.StatusCode.UNAUTHENTICATED, e
            else:
                raise AssertionError("a call without a token was served")

    async def bad_and_wrong_tokens_are_told_what_to_send() -> None:
        r = await s.jsonrpc(None, "GetTask", {"id": "x"})
        assert r.status_code == 401 and "Authorization: Bearer" in r.text, (r.status_code, r.text)
        r = await s.jsonrpc(s.worker_token, "GetTask", {"id": "x"})
        assert r.status_code == 403 and "role agent" in r.text, (r.status_code, r.text)
        async with httpx.AsyncClient(verify=s.tls, timeout=30) as h:
            r = await h.post(s.mcp, json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
                             headers={"Authorization": f"Bearer {s.worker_token}"})
        assert r.status_code == 403 and "cannot call MCP tools" in r.text, (r.status_code, r.text)

    async def mcp_over_tls_sees_the_tokens_tenant() -> None:
        async with s.mcp_client(s.acme) as c:
            assert [t.name for t in (await c.list_tools()).tools] == [SKILL]
            result = await c.call_tool(SKILL, {"seconds": 0, "text": "mcp"})
            assert result.structured_content == {"echo": "mcp"}, result
        async with s.mcp_client(s.other) as c:
            assert (await c.list_tools()).tools == []

    async def failed_calls_are_throttled_per_peer_on_both_listeners() -> None:
        async def bad_mcp() -> httpx.Response:
            async with httpx.AsyncClient(verify=s.tls, timeout=30) as h:
                return await h.post(s.mcp, json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
                                    headers={"Authorization": "Bearer wrong"})

        codes = [(await bad_mcp()).status_code for _ in range(FAILURES_PER_MINUTE + 1)]
        assert codes[-1] == 429, codes
        r = await bad_mcp()
        assert r.status_code == 429 and "retry in" in r.text and "retry-after" in r.headers, (r.text, r.headers)
        # The budget is the peer's, on every listener; a valid token still passes.
        assert (await s.jsonrpc("wrong", "GetTask", {"id": "x"})).status_code == 429
        ok = await s.jsonrpc(s.acme, "ListTasks", {"contextId": "secure"})
        assert ok.status_code == 200 and "result" in ok.json(), ok.text

    return [
        the_card_lists_the_callers_tenant_over_https,
        a_task_is_its_tenants_only,
        grpc_over_tls_needs_an_agent_token,
        bad_and_wrong_tokens_are_told_what_to_send,
        mcp_over_tls_sees_the_tokens_tenant,
        failed_calls_are_throttled_per_peer_on_both_listeners,
    ]


async def run(results: dict[str, str]) -> None:
    s = Setup()
    try:
        for body in checks(s):
            try:
                await body()
                results[body.__name__] = "passed"
            except Exception:  # noqa: BLE001 - every failure is reported by name
                results[body.__name__] = "failed"
                print(f"--- {body.__name__}", file=sys.stderr)
                traceback.print_exc()
    finally:
        s.close()


def main() -> int:
    results: dict[str, str] = {}
    asyncio.run(asyncio.wait_for(run(results), timeout=300))
    for name, outcome in results.items():
        print(f"{outcome:6} {name}")
    failed = sum(1 for o in results.values() if o == "failed")
    print(f"secure-interop: {len(results) - failed} passed, {failed} failed")
    return 1 if failed or not results else 0


if __name__ == "__main__":
    sys.exit(main())
