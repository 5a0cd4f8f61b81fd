// The errand dashboard: plain JavaScript, no build step, no network but
// this server. It holds one page of rows at a time and reloads the page it
// shows when the server sends an event.
"use strict";

const state = { me: null, view: null, events: null };

function token() { return sessionStorage.getItem("errand-token") || ""; }

async function api(path, options = {}) {
  const headers = Object.assign({}, options.headers || {});
  if (token()) headers["Authorization"] = "Bearer " + token();
  if (options.method === "POST" && state.me) headers["x-csrf-token"] = state.me.csrf;
  const res = await fetch(path, Object.assign({}, options, { headers }));
  const body = await res.json().catch(() => ({}));
  if (res.status === 401) { showLogin(body.error || "log in"); throw new Error("unauthorized"); }
  if (!res.ok) throw new Error(body.error || res.statusText);
  return body;
}

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") node.className = v; else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v);
  }
  for (const c of children) node.append(c instanceof Node ? c : document.createTextNode(c ?? ""));
  return node;
}

function ago(ms) {
  if (!ms) return "-";
  const s = Math.max(0, Math.round((Date.now() - ms) / 1000));
  if (s < 60) return s + "s ago";
  if (s < 3600) return Math.floor(s / 60) + "m ago";
  if (s < 86400) return Math.floor(s / 3600) + "h ago";
  return Math.floor(s / 86400) + "d ago";
}

function table(head, rows) {
  return el("table", {}, el("thead", {}, el("tr", {}, ...head.map(h => el("th", {}, h)))),
    el("tbody", {}, ...rows.map(r => el("tr", {}, ...r.map(c => c instanceof Node ? el("td", {}, c) : el("td", {}, String(c)))))));
}

function statusCell(s) { return el("span", { class: "status " + s }, s); }

function showLogin(message) {
  document.getElementById("login").hidden = false;
  document.getElementById("nav").hidden = true;
  document.getElementById("main").replaceChildren();
  document.getElementById("login-error").textContent = token() ? message : "";
}

async function overview(main) {
  const { tools } = await api("/api/tools");
  main.replaceChildren(el("h1", {}, "Overview"),
    tools.length ? table(["Tool", "Workers", "Queued", "Running", "Description"],
      tools.map(t => [t.name, t.workers, t.queued, t.running, t.description.split("\n")[0]]))
      : el("p", {}, "No tools yet: start a worker, e.g. errand worker --tool echo --exec cat"));
}

async function tasks(main, params) {
  const q = new URLSearchParams(params);
  const data = await api("/api/tasks?" + q.toString());
  const input = (name, placeholder) => el("input", { name, placeholder, value: params.get(name) || "" });
  const status = el("select", { name: "status" }, el("option", { value: "" }, "any status"),
    ...["queued", "running", "succeeded", "failed", "cancelled", "timed_out"].map(s => {
      const o = el("option", { value: s }, s); if (params.get("status") === s) o.selected = true; return o; }));
  const form = el("form", { class: "filters", id: "filters", onsubmit: e => {
    e.preventDefault();
    const f = new URLSearchParams(new FormData(form));
    for (const [k, v] of [...f]) if (!v) f.delete(k);
    location.hash = "#/tasks?" + f.toString();
  } }, input("session", "session"), status, input("tool", "tool"), el("button", { type: "submit" }, "Filter"));
  const rows = data.tasks.map(t => [el("a", { href: "#/task/" + t.task_id, class: "task-link" }, t.task_id),
    t.session_id, t.tool, statusCell(t.status), ago(t.created_at), t.elapsed_ms + " ms", t.worker_name || ""]);
  const more = data.next ? el("a", { href: "#/tasks?" + new URLSearchParams(Object.assign(Object.fromEntries(params), { page: data.next })).toString() }, "Next page") : "";
  main.replaceChildren(el("h1", {}, "Tasks"), form,
    table(["Task", "Session", "Tool", "Status", "Created", "Elapsed", "Worker"], rows), el("p", {}, more));
}

function pretty(text) {
  try { return JSON.stringify(JSON.parse(text), null, 2); } catch { return text; }
}

async function task(main, id) {
  const t = await api("/api/tasks/" + encodeURIComponent(id));
  const act = (what) => async () => {
    try {
      const r = await api(`/api/tasks/${t.task_id}/${what}`, { method: "POST" });
      if (what === "retry") location.hash = "#/task/" + r.task_id; else render();
    } catch (e) { document.getElementById("action-error").textContent = e.message; }
  };
  const running = t.status === "QUEUED" || t.status === "RUNNING";
  const retryable = ["FAILED", "TIMED_OUT", "CANCELLED"].includes(t.status);
  main.replaceChildren(el("h1", {}, "Task " + t.task_id),
    el("dl", {},
      el("dt", {}, "Status"), el("dd", { id: "task-status" }, statusCell(t.status)),
      el("dt", {}, "Session"), el("dd", {}, t.session_id),
      el("dt", {}, "Tool"), el("dd", {}, t.tool),
      el("dt", {}, "Attempts"), el("dd", {}, String(t.attempts)),
      el("dt", {}, "Worker"), el("dd", {}, t.worker_name ? `${t.worker_name} (${t.worker_id})` : "-"),
      el("dt", {}, "Created"), el("dd", {}, ago(t.created_at)),
      el("dt", {}, "Started"), el("dd", {}, ago(t.started_at)),
      el("dt", {}, "Finished"), el("dd", {}, ago(t.finished_at)),
      el("dt", {}, "Elapsed"), el("dd", {}, t.elapsed_ms + " ms")),
    el("p", {}, running ? el("button", { id: "cancel", onclick: act("cancel") }, "Cancel") : "",
      retryable ? el("button", { id: "retry", onclick: act("retry") }, "Retry") : ""),
    el("p", { id: "action-error", class: "error" }),
    el("h2", {}, "Arguments"), el("pre", {}, pretty(t.arguments_json)),
    t.result_json !== undefined ? el("div", {}, el("h2", {}, "Result"), el("pre", {}, pretty(t.result_json)),
      t.result_truncated ? el("p", {}, "Truncated: the full text is in GetTask (errand status " + t.task_id + " --json).") : "") : "",
    t.error ? el("div", {}, el("h2", {}, "Error"), el("pre", {}, `[${t.error.code}] ${t.error.message}`)) : "",
    el("h2", {}, "Text for the model (ack)"), el("pre", {}, t.ack));
}

async function workers(main) {
  const { workers } = await api("/api/workers");
  main.replaceChildren(el("h1", {}, "Workers"),
    table(["ID", "Name", "Tools", "Running", "Connected", "Last seen"],
      workers.map(w => [w.worker_id, w.worker_name, w.tools.join(", "), `${w.running}/${w.max_concurrency}`, ago(w.connected_at), ago(w.last_seen)])));
}

async function render() {
  const main = document.getElementById("main");
  const [path, query] = (location.hash.slice(1) || "/overview").split("?");
  const params = new URLSearchParams(query || "");
  for (const a of document.querySelectorAll("#nav a")) a.classList.toggle("active", path.startsWith(a.getAttribute("href").slice(1)));
  try {
    if (path.startsWith("/task/")) await task(main, path.slice(6));
    else if (path === "/tasks") await tasks(main, params);
    else if (path === "/workers") await workers(main);
    else await overview(main);
  } catch (e) {
    if (e.message !== "unauthorized") main.replaceChildren(el("p", { class: "error" }, e.message));
  }
}

// Server-sent events over fetch, so the token goes in a header, not the URL.
async function follow() {
  const live = document.getElementById("live");
  for (;;) {
    try {
      const headers = token() ? { Authorization: "Bearer " + token() } : {};
      const res = await fetch("/api/events", { headers });
      if (!res.ok) return;
      live.classList.add("on");
      const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
      let buf = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buf += value;
        let i;
        while ((i = buf.indexOf("\n\n")) >= 0) {
          const frame = buf.slice(0, i); buf = buf.slice(i + 2);
          if (/^event: (completion|lagged)/m.test(frame)) render();
        }
      }
    } catch (e) { /* reconnect below */ }
    live.classList.remove("on");
    await new Promise(r => setTimeout(r, 2000));
  }
}

async function start() {
  try { state.me = await api("/api/me"); } catch { return; }
  document.getElementById("login").hidden = true;
  document.getElementById("nav").hidden = false;
  document.getElementById("who").textContent = state.me.auth ? `tenant ${state.me.tenant || "-"} (${state.me.role})` : "local";
  window.addEventListener("hashchange", render);
  render();
  follow();
}

document.getElementById("login-form").addEventListener("submit", e => {
  e.preventDefault();
  sessionStorage.setItem("errand-token", document.getElementById("token").value.trim());
  start();
});
start();
