// MCP Tasks interop: the TypeScript MCP client (@modelcontextprotocol/client)
// and its Tasks extension (@modelcontextprotocol/ext-tasks), pinned in
// package-lock.json, against the real errand binary ($ERRAND_BIN) serving
// `--mcp-listen`, with `errand worker --exec` serving `sleep_echo`.
//
// ext-tasks needs the host to carry 2026-07-28 task requests itself
// (`rawDispatch`): `rawDispatch` below POSTs each one to /mcp with the
// headers the Streamable HTTP transport requires (Mcp-Method, Mcp-Name).
//
// Every wait is bounded and awaits the server (a reply, a process exit);
// the polls (a pid file appearing, a killed process going) are bounded too.
//
//   ERRAND_BIN=/path/to/errand node --test tests/interop/ts/ext_tasks.test.mjs
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, existsSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { after, before, test } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";

import { Client, StreamableHTTPClientTransport } from "@modelcontextprotocol/client";
import {
  createTaskSessionFromClient,
  resultFromTaskOutcome,
} from "@modelcontextprotocol/ext-tasks/client";

const ERRAND = process.env.ERRAND_BIN;
const PROTOCOL = "2026-07-28";
const TASKS = "io.modelcontextprotocol/tasks";
const DEADLINE_MS = 60_000;
const CLIENT_INFO = { name: "errand-interop-ts", version: "1.0.0" };
const CAPABILITIES = { extensions: { [TASKS]: {} } };
// Writes its pid to $PIDDIR/<task id>.pid, sleeps, echoes.
const SLEEP_ECHO =
  "python3 -c 'import json,os,sys,time; a=json.load(sys.stdin); " +
  'open(os.path.join(os.environ["PIDDIR"], os.environ["ERRAND_TASK_ID"] + ".pid"), "w").write(str(os.getpid())); ' +
  'time.sleep(a["seconds"]); print(json.dumps({"echo": a["text"]}))\'';
const SCHEMA = {
  type: "object",
  properties: { seconds: { type: "number" }, text: { type: "string" } },
  required: ["seconds", "text"],
};

const pidDir = mkdtempSync(join(tmpdir(), "errand-ts-pids-"));

/** `errand serve` on free ports; resolves once it printed its addresses. */
async function startServer(dataDir) {
  const proc = spawn(
    ERRAND,
    ["serve", "--listen", "127.0.0.1:0", "--mcp-listen", "127.0.0.1:0", "--data-dir", dataDir,
      "--mcp-poll-interval-ms", "50"],
    { stdio: ["ignore", "pipe", "inherit"] },
  );
  const server = { proc, addr: "", mcpUrl: "" };
  const lines = createInterface({ input: proc.stdout });
  for await (const line of lines) {
    if (line.startsWith("errand mcp on ")) server.mcpUrl = line.split(" ").at(-1);
    if (line.startsWith("errand listening on ")) {
      server.addr = line.split(" ").at(-1);
      break;
    }
  }
  assert.ok(server.addr && server.mcpUrl, "the server printed its addresses");
  return server;
}

function startWorker(addr) {
  return spawn(
    ERRAND,
    ["worker", "--server", addr, "--tool", "sleep_echo", "--concurrency", "4",
      "--description", "Sleeps, then echoes.", "--schema", JSON.stringify(SCHEMA), "--exec", SLEEP_ECHO],
    // Its own process group, so the test can end the tool's processes too.
    { detached: true, stdio: "ignore", env: { ...process.env, PIDDIR: pidDir } },
  );
}

async function exited(proc) {
  if (proc.exitCode !== null || proc.signalCode !== null) return;
  await new Promise((resolve) => proc.once("exit", resolve));
}

async function killGroup(proc) {
  try {
    process.kill(-proc.pid, "SIGKILL");
  } catch {
    // already gone
  }
  await exited(proc);
}

async function stopServer(server) {
  server.proc.kill("SIGTERM");
  await exited(server.proc);
}

/**
 * The host's raw request path for 2026-07-28 task traffic: one POST per
 * JSON-RPC request, answered with JSON or an SSE stream.
 */
function rawDispatch(url, session) {
  let nextId = 1;
  return async (request, options = {}) => {
    const params = request.params ?? {};
    const name = request.method === "tools/call" ? params.name : params.taskId;
    const body = { jsonrpc: "2.0", id: `raw-${nextId++}`, ...request };
    // ext-tasks' own context headers (it may send Mcp-Name itself) win.
    const headers = new Headers(options.context?.headers ?? {});
    for (const [key, value] of [
      ["content-type", "application/json"],
      ["accept", "application/json, text/event-stream"],
      ["mcp-protocol-version", PROTOCOL],
      ["mcp-method", request.method],
      ["errand-session", session],
      ["mcp-name", name === undefined ? undefined : String(name)],
    ]) {
      if (value !== undefined && !headers.has(key)) headers.set(key, value);
    }
    const response = await fetch(url, {
      method: "POST",
      headers,
      body: JSON.stringify(body),
      signal: options.signal ?? AbortSignal.timeout(DEADLINE_MS),
    });
    const text = await response.text();
    const messages = (response.headers.get("content-type") ?? "").startsWith("text/event-stream")
      ? text.split("\n").filter((l) => l.startsWith("data:")).map((l) => l.slice(5).trim()).filter(Boolean)
        .map((d) => JSON.parse(d))
      : [JSON.parse(text)];
    const answer = messages.find((m) => m.id === body.id);
    assert.ok(answer, `an answer to ${request.method} (HTTP ${response.status}: ${text.slice(0, 300)})`);
    return answer.error ? { kind: "error", error: answer.error } : { kind: "result", result: answer.result };
  };
}

/** A connected 2026-07-28 client and its Tasks session, in errand session `session`. */
async function tasksSession(url, session) {
  const client = new Client(CLIENT_INFO, {
    capabilities: CAPABILITIES,
    versionNegotiation: { mode: { pin: PROTOCOL } },
  });
  await client.connect(
    new StreamableHTTPClientTransport(new URL(url), {
      requestInit: { headers: { "Errand-Session": session } },
    }),
  );
  const tasks = createTaskSessionFromClient(client, {
    endpointId: "errand-interop",
    rawDispatch: rawDispatch(url, session),
    v2RequestFraming: { protocolVersion: PROTOCOL, clientInfo: CLIENT_INFO, clientCapabilities: CAPABILITIES },
  });
  return {
    tasks,
    async close() {
      await tasks.close();
      await client.close();
    },
  };
}

async function waitForTool(url) {
  const end = Date.now() + DEADLINE_MS;
  const client = new Client(CLIENT_INFO, { versionNegotiation: { mode: { pin: PROTOCOL } } });
  await client.connect(new StreamableHTTPClientTransport(new URL(url)));
  try {
    for (;;) {
      const { tools } = await client.listTools();
      if (tools.some((t) => t.name === "sleep_echo")) return;
      assert.ok(Date.now() < end, "the worker registered sleep_echo");
      await sleep(50);
    }
  } finally {
    await client.close();
  }
}

async function until(what, check) {
  const end = Date.now() + DEADLINE_MS;
  for (;;) {
    const value = await check();
    if (value) return value;
    assert.ok(Date.now() < end, what);
    await sleep(20);
  }
}

function alive(pid) {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

const pidFile = (taskId) => join(pidDir, `${taskId}.pid`);

let server;
let worker;
let dataDir;

before(async () => {
  assert.ok(ERRAND, "ERRAND_BIN names the errand binary");
  dataDir = mkdtempSync(join(tmpdir(), "errand-ts-"));
  server = await startServer(dataDir);
  worker = startWorker(server.addr);
  await waitForTool(server.mcpUrl);
});

after(async () => {
  if (worker) await killGroup(worker);
  if (server) await stopServer(server);
  rmSync(dataDir, { recursive: true, force: true });
  rmSync(pidDir, { recursive: true, force: true });
});

test("callTool on a 2 s tool is a task within 200 ms, and settle() yields the echo", async (t) => {
  const s = await tasksSession(server.mcpUrl, "ts-settle");
  try {
    // One call first: the connection and the client's schema code warm up.
    let started = performance.now();
    const warm = await s.tasks.callTool("sleep_echo", { seconds: 0, text: "warm" });
    t.diagnostic(`first callTool answered in ${(performance.now() - started).toFixed(1)} ms`);
    assert.equal((await warm.settle()).outcome.status, "completed");
    started = performance.now();
    const execution = await s.tasks.callTool("sleep_echo", { seconds: 2, text: "ts" });
    const elapsed = performance.now() - started;
    assert.equal(execution.kind, "task");
    t.diagnostic(`callTool answered in ${elapsed.toFixed(1)} ms`);
    assert.ok(elapsed < 200, `callTool answered in ${elapsed.toFixed(0)} ms`);
    const { outcome } = await execution.settle();
    assert.equal(outcome.status, "completed");
    assert.deepEqual(resultFromTaskOutcome(outcome).structuredContent, { echo: "ts" });
  } finally {
    await s.close();
  }
});

test("cancel() kills the worker's process and the snapshot says cancelled", async () => {
  const s = await tasksSession(server.mcpUrl, "ts-cancel");
  try {
    const execution = await s.tasks.callTool("sleep_echo", { seconds: 30, text: "never" });
    assert.equal(execution.kind, "task");
    const taskId = execution.handle.taskId;
    const pid = await until("the tool's process started", () =>
      existsSync(pidFile(taskId)) && Number(readFileSync(pidFile(taskId), "utf8")));
    assert.ok(alive(pid), "the tool runs");
    await execution.cancel();
    await until(`the tool's process ${pid} was killed`, () => !alive(pid));
    const snapshot = await s.tasks.task(taskId).snapshot();
    assert.equal(snapshot.status, "cancelled");
  } finally {
    await s.close();
  }
});

test("after kill -9 mid-task and a restart on the same data dir, result() returns the result", async () => {
  const s = await tasksSession(server.mcpUrl, "ts-restart");
  let taskId;
  try {
    const execution = await s.tasks.callTool("sleep_echo", { seconds: 3, text: "durable" });
    assert.equal(execution.kind, "task");
    taskId = execution.handle.taskId;
    await until("the task was dispatched", () => existsSync(pidFile(taskId)));
    await execution.detach();
    // The session tracks an execution until its result settles, and closing
    // the session cancels what it still tracks (ext-tasks), so a close right
    // after detach() could cancel the task before the kill below.
    await execution.result().catch(() => {});
  } finally {
    await s.close();
  }
  server.proc.kill("SIGKILL"); // no drain, no goodbye
  await exited(server.proc);
  await killGroup(worker);
  server = await startServer(dataDir);
  worker = startWorker(server.addr);
  await waitForTool(server.mcpUrl);
  const again = await tasksSession(server.mcpUrl, "ts-restart");
  try {
    const outcome = await again.tasks.task(taskId).result();
    assert.equal(outcome.status, "completed");
    assert.deepEqual(resultFromTaskOutcome(outcome).structuredContent, { echo: "durable" });
  } finally {
    await again.close();
  }
});
