// The errand dashboard: plain JavaScript, no build step, no network but
// this server. It holds one page of rows at a time and reloads the page it
// shows when the server's live events say something on it changed.
"use strict";

const state = { me: null, route: "", taskId: null, task: null, pending: null };

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

function svg(tag, attrs = {}, ...children) {
  const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  for (const c of children) node.append(c);
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

function duration(ms) {
  if (ms === null || ms === undefined) return "-";
  if (ms < 1000) return ms + " ms";
  if (ms < 60000) return (ms / 1000).toFixed(1) + " s";
  return Math.round(ms / 60000) + " min";
}

// A worker's progress report: "3/5 (60%)" with a total, "3" without one.
function num(x) { return String(Math.round(x * 100) / 100); }
function amount(p) {
  if (p.total > 0) return `${num(p.progress)}/${num(p.total)} (${Math.round(p.progress / p.total * 100)}%)`;
  return p.progress > 0 ? num(p.progress) : "";
}
// Text cut to n characters (not UTF-16 units), with an ellipsis.
function cut(text, n) {
  const chars = Array.from(text);
  return chars.length > n ? chars.slice(0, n - 1).join("") + "\u2026" : text;
}

// The listing's progress column: the latest report in one short line, all
// of it in the tooltip. The worker's text only ever goes in as text.
function progressCell(t) {
  const cell = el("span", { "data-progress-of": t.task_id });
  if (t.progress) showListed(cell, t.progress);
  return cell;
}
function showListed(cell, p) {
  const text = [amount(p), p.message].filter(Boolean).join(" ") || "progress reported";
  cell.replaceChildren(el("span", { class: "progress", "data-index": p.index, title: text }, cut(text, 60)));
}

// A task page's progress: bar, amount, message, and when it was reported
// (submitted at createdAt, plus the report's time from submit).
function showProgress(dd, p, createdAt) {
  if (!p) { dd.replaceChildren(el("span", { class: "muted" }, "none reported")); return; }
  dd.dataset.index = p.index;
  dd.replaceChildren(
    ...(p.total > 0 ? [el("progress", { max: p.total, value: Math.min(Math.max(p.progress, 0), p.total) })] : []),
    el("span", { id: "progress-amount" }, amount(p)),
    el("span", { id: "progress-message" }, p.message),
    el("span", { id: "progress-at", class: "muted" }, "reported " + ago(createdAt + p.elapsed_ms)));
}

function table(head, rows, id) {
  const attrs = id ? { id } : {};
  return el("table", attrs, el("thead", {}, el("tr", {}, ...head.map(h => el("th", {}, h)))),
    el("tbody", {}, ...rows.map(r => el("tr", {}, ...r.map(c => c instanceof Node ? el("td", {}, c) : el("td", {}, String(c)))))));
}

function statusCell(s) { return el("span", { class: "status " + s }, s); }
function many() { return state.me && state.me.all_tenants && state.me.auth; }
function withTenant(head, rows, items) {
  if (!many()) return [head, rows];
  return [["Tenant", ...head], rows.map((r, i) => [items[i].tenant || "-", ...r])];
}

function showLogin(message) {
  document.getElementById("login").hidden = false;
  document.getElementById("nav").hidden = true;
  document.getElementById("main").replaceChildren();
  document.getElementById("login-error").textContent = token() ? message : "";
}

// Queue depth over the last 15 minutes: queued and running as steps, each
// value held until the next sample. The last sample is the server's now
// (so the browser's clock does not matter).
function chart(samples) {
  const w = 600, h = 120, pad = 24, span = 15 * 60 * 1000;
  const now = samples.length ? samples[samples.length - 1][0] : Date.now();
  const max = Math.max(1, ...samples.map(s => Math.max(s[1], s[2])));
  const x = t => pad + (w - 2 * pad) * Math.max(0, 1 - (now - t) / span);
  const y = v => h - pad + (-(h - 2 * pad) * v / max);
  const line = (i, cls) => svg("polyline", { class: cls, points: samples.flatMap((s, k) => {
    const here = `${x(s[0]).toFixed(1)},${y(s[i]).toFixed(1)}`;
    return k === 0 ? [here] : [`${x(s[0]).toFixed(1)},${y(samples[k - 1][i]).toFixed(1)}`, here];
  }).join(" ") });
  return svg("svg", { class: "chart", id: "depth-chart", width: w, height: h, viewBox: `0 0 ${w} ${h}`, role: "img", "aria-label": "queue depth over the last 15 minutes" },
    svg("line", { x1: pad, y1: h - pad, x2: w - pad, y2: h - pad, stroke: "#cfd6e4" }),
    svg("text", { x: 2, y: pad }, String(max)), svg("text", { x: 2, y: h - pad }, "0"),
    svg("text", { x: pad, y: h - 6 }, "15 min ago"), svg("text", { x: w - pad - 20, y: h - 6 }, "now"),
    line(1, "queued"), line(2, "running"));
}

async function overview(main) {
  const { tools, depth } = await api("/api/overview");
  const rows = tools.map(t => [t.name, t.workers, t.queued, t.running, t.succeeded_1h, t.failed_1h,
    duration(t.p50_ms), duration(t.p99_ms), t.description]);
  const [head, body] = withTenant(["Tool", "Workers", "Queued", "Running", "Succeeded (1 h)", "Failed (1 h)", "p50 run", "p99 run", "Description"], rows, tools);
  main.replaceChildren(el("h1", {}, "Overview"),
    el("h2", {}, "Queue depth, last 15 minutes"),
    el("p", { class: "legend" }, el("span", { class: "q" }, "— queued"), el("span", { class: "r" }, "— running")),
    chart(depth),
    el("h2", {}, "Tools"),
    tools.length ? table(head, body, "tools")
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
  } }, ...(many() ? [input("tenant", "tenant")] : []), input("session", "session"), status, input("tool", "tool"),
    el("button", { type: "submit" }, "Filter"));
  const rows = data.tasks.map(t => [el("a", { href: "#/task/" + t.task_id, class: "task-link" }, t.task_id),
    t.session_id, t.tool, statusCell(t.status), ago(t.created_at), duration(t.elapsed_ms), t.worker_name || "", progressCell(t)]);
  const [head, body] = withTenant(["Task", "Session", "Tool", "Status", "Created", "Elapsed", "Worker", "Progress"], rows, data.tasks);
  const rest = Object.fromEntries([...params].filter(([k]) => k !== "page"));
  const nav = el("p", {},
    params.get("page") ? el("a", { href: "#/tasks?" + new URLSearchParams(rest).toString() }, "First page") : "", " ",
    data.next ? el("a", { id: "next-page", href: "#/tasks?" + new URLSearchParams(Object.assign({}, rest, { page: data.next })).toString() }, "Next page") : "");
  main.replaceChildren(el("h1", {}, "Tasks"), form, table(head, body, "tasks"), nav);
}

function pretty(text) {
  try { return JSON.stringify(JSON.parse(text), null, 2); } catch { return text; }
}

async function task(main, id) {
  const t = await api("/api/tasks/" + encodeURIComponent(id));
  state.task = t;
  const act = (what) => async () => {
    try {
      const r = await api(`/api/tasks/${t.task_id}/${what}`, { method: "POST" });
      if (what === "retry") location.hash = "#/task/" + r.task_id; else render();
    } catch (e) { document.getElementById("action-error").textContent = e.message; }
  };
  const unfinished = t.status === "QUEUED" || t.status === "RUNNING";
  const last = t.attempt_log[t.attempt_log.length - 1];
  const retryable = ["FAILED", "TIMED_OUT", "CANCELLED"].includes(t.status);
  const full = async (e) => {
    e.preventDefault();
    const res = await fetch(`/api/tasks/${t.task_id}/result`, { headers: token() ? { Authorization: "Bearer " + token() } : {} });
    document.getElementById("result").textContent = pretty(await res.text());
    e.target.remove();
  };
  const attempts = t.attempt_log.length
    ? table(["Attempt", "Worker", "Started", "Finished", "Ended as"], t.attempt_log.map(a =>
      [a.attempt, `${a.worker_name} (${a.worker_id})`, ago(a.started_at), ago(a.finished_at), a.status || "-"]), "attempts")
    : el("p", { class: "muted" }, `${t.attempts} attempt(s); this server has no record of their workers (dispatched before it started, or by another server).`);
  main.replaceChildren(el("h1", {}, "Task " + t.task_id),
    el("dl", {},
      el("dt", {}, "Status"), el("dd", { id: "task-status" }, statusCell(t.status)),
      ...(unfinished ? [el("dt", {}, "Progress"), progressDd(t)] : []),
      ...(t.tenant ? [el("dt", {}, "Tenant"), el("dd", {}, t.tenant)] : []),
      el("dt", {}, "Session"), el("dd", {}, t.session_id),
      el("dt", {}, "Tool"), el("dd", {}, t.tool),
      el("dt", {}, "Worker"), el("dd", {}, t.worker_name ? `${t.worker_name} (${t.worker_id})`
        : last ? `${last.worker_name} (${last.worker_id}), last attempt` : "-"),
      el("dt", {}, "Created"), el("dd", {}, ago(t.created_at)),
      el("dt", {}, "Started"), el("dd", {}, ago(t.started_at)),
      el("dt", {}, "Finished"), el("dd", {}, ago(t.finished_at)),
      el("dt", {}, "Elapsed"), el("dd", {}, duration(t.elapsed_ms)),
      el("dt", {}, "Timeout"), el("dd", {}, duration(t.timeout_ms)),
      ...(t.retry_of ? [el("dt", {}, "Retry of"), el("dd", {}, el("a", { href: "#/task/" + t.retry_of }, t.retry_of))] : [])),
    el("p", {}, unfinished && t.may_change ? el("button", { id: "cancel", onclick: act("cancel") }, "Cancel") : "",
      retryable && t.may_change ? el("button", { id: "retry", onclick: act("retry") }, "Retry") : ""),
    el("p", { id: "action-error", class: "error" }),
    el("h2", {}, "Attempts"), attempts,
    el("h2", {}, "Arguments"), el("pre", {}, pretty(t.arguments_json)),
    t.result_json !== undefined ? el("div", {}, el("h2", {}, "Result"), el("pre", { id: "result" }, pretty(t.result_json)),
      t.result_truncated ? el("p", {}, `Showing the first 4,000 of ${t.result_chars} characters. `,
        el("a", { href: `/api/tasks/${t.task_id}/result`, id: "full-result", onclick: full }, "Show the full text")) : "") : "",
    t.error ? el("div", {}, el("h2", {}, "Error"), el("pre", {}, `[${t.error.code}] ${t.error.message}`)) : "",
    el("h2", {}, "What the model saw: the acknowledgement"), el("pre", { id: "ack" }, t.ack),
    t.completion_message ? el("div", {}, el("h2", {}, "What the model saw: the completion"), el("pre", { id: "completion" }, t.completion_message)) : "");
}

function progressDd(t) {
  const dd = el("dd", { id: "progress" });
  showProgress(dd, t.progress, t.created_at);
  return dd;
}

async function sessions(main) {
  const { sessions } = await api("/api/sessions");
  const rows = sessions.map(s => [el("a", { href: "#/tasks?session=" + encodeURIComponent(s.session_id) + (s.tenant ? "&tenant=" + encodeURIComponent(s.tenant) : "") }, s.session_id),
    s.last_seq, s.acked_seq, s.pending, ago(s.last_at)]);
  const [head, body] = withTenant(["Session", "Last seq", "Acknowledged seq", "Pending", "Last activity"], rows, sessions);
  main.replaceChildren(el("h1", {}, "Sessions"),
    el("p", { class: "muted" }, "The sessions this server saw most recently (since it started)."),
    sessions.length ? table(head, body, "sessions") : el("p", {}, "No session activity yet."));
}

async function workers(main) {
  const { workers } = await api("/api/workers");
  const rows = workers.map(w => [w.worker_id, w.worker_name, w.tools.join(", "), `${w.running}/${w.max_concurrency}`, ago(w.connected_at), ago(w.last_seen)]);
  const [head, body] = withTenant(["ID", "Name", "Tools", "Running", "Connected", "Last seen"], rows, workers);
  main.replaceChildren(el("h1", {}, "Workers"), table(head, body, "workers"));
}

async function render() {
  const main = document.getElementById("main");
  const [path, query] = (location.hash.slice(1) || "/overview").split("?");
  const params = new URLSearchParams(query || "");
  state.route = path;
  state.taskId = path.startsWith("/task/") ? path.slice(6) : null;
  for (const a of document.querySelectorAll("#nav a")) a.classList.toggle("active", path.startsWith(a.getAttribute("href").slice(1)));
  try {
    if (state.taskId) await task(main, state.taskId);
    else if (path === "/tasks") await tasks(main, params);
    else if (path === "/sessions") await sessions(main);
    else if (path === "/workers") await workers(main);
    else await overview(main);
    // Which route the page shows, for tests that must not mistake the
    // previous page for this one.
    main.dataset.route = query === undefined ? path : `${path}?${query}`;
  } catch (e) {
    if (e.message !== "unauthorized") main.replaceChildren(el("p", { class: "error" }, e.message));
  }
}

// A progress event: shown in place, on the task's page or its row of the
// listing, if newer than what is shown; nothing is fetched.
function progressed(data) {
  const p = data.progress;
  if (!p) return;
  if (state.taskId) {
    const dd = document.getElementById("progress");
    if (data.task_id !== state.taskId || !dd || !state.task || state.task.task_id !== state.taskId) return;
    if (Number(dd.dataset.index || 0) < p.index) showProgress(dd, p, state.task.created_at);
    return;
  }
  const cell = document.querySelector(`[data-progress-of="${CSS.escape(data.task_id || "")}"]`);
  const shown = cell && cell.querySelector(".progress");
  if (cell && (!shown || Number(shown.dataset.index) < p.index)) showListed(cell, p);
}

// A live event: reload the page shown if the event concerns it, at most
// every 300 ms for a task's page and every second for a listing, and not
// while the user is typing in a filter. Progress is shown in place.
function changed(name, data) {
  if (name === "progress") { progressed(data); return; }
  if (state.taskId && name !== "lagged" && data.task_id !== state.taskId) return;
  if (state.pending) return;
  state.pending = setTimeout(() => {
    state.pending = null;
    const typing = document.activeElement && ["INPUT", "SELECT"].includes(document.activeElement.tagName);
    if (!typing) render();
  }, state.taskId ? 300 : 1000);
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
          const name = (frame.match(/^event: (.*)$/m) || [])[1];
          const data = (frame.match(/^data: (.*)$/m) || [])[1];
          if (name === "expired") {
            // The token ran out: the stream ends; log in again, whatever page is shown.
            let error = "your token expired: log in with a fresh one";
            try { error = JSON.parse(data || "{}").error || error; } catch { /* keep the default */ }
            live.classList.remove("on");
            showLogin(error);
            return;
          }
          if (name) { try { changed(name, JSON.parse(data || "{}")); } catch { changed("lagged", {}); } }
        }
      }
    } catch (e) { /* reconnect below */ }
    live.classList.remove("on");
    await new Promise(r => setTimeout(r, 2000));
  }
}

async function start() {
  let me;
  try { me = await api("/api/me"); } catch { return; }
  if (!me.logged_in) { showLogin(me.error || "log in"); return; }
  state.me = me;
  document.getElementById("login").hidden = true;
  document.getElementById("nav").hidden = false;
  document.getElementById("who").textContent = me.auth ? `tenant ${me.tenant || "-"} (${me.role}${me.all_tenants ? ", every tenant" : ""})` : "local";
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
