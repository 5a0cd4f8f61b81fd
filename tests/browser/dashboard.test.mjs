// The dashboard in a real browser: headless Chromium (Debian's package)
// driven by playwright-core, against the real errand binary with workers.
// Run by run.sh, which starts the server and the workers and passes:
//   UI_URL (open server), UI_AUTH_URL (server with tokens), TOKEN (agent
//   token of the latter), RUNNING_TASK (a task a worker holds), OUT (the
//   screenshot folder).
import { chromium } from "playwright-core";
import assert from "node:assert/strict";

const { UI_URL, UI_AUTH_URL, TOKEN, RUNNING_TASK, OUT } = process.env;
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox"],
});
const errors = [];
const page = await browser.newPage({ viewport: { width: 1200, height: 760 } });
page.on("console", m => { if (m.type() === "error") errors.push(m.text()); });
page.on("pageerror", e => errors.push(String(e)));
const shot = name => page.screenshot({ path: `${OUT}/${name}.png`, fullPage: true });

// Overview: the tools with their workers, queued and running.
await page.goto(UI_URL + "#/overview");
await page.getByRole("cell", { name: "sleepy" }).waitFor();
await shot("overview");

// Tasks, filtered by status.
await page.goto(UI_URL + "#/tasks");
await page.locator("#filters select[name=status]").selectOption("running");
await page.locator("#filters button").click();
await page.waitForURL(/status=running/);
const link = page.locator(`a.task-link:text("${RUNNING_TASK}")`);
await link.waitFor();
assert.equal(await page.locator("a.task-link").count(), 1, "only the running task is listed");
await shot("tasks");

// The task page; Cancel turns it CANCELLED live, without a reload.
await link.click();
await page.locator("#task-status").getByText("RUNNING").waitFor();
await shot("task");
let reloaded = false;
page.on("load", () => { reloaded = true; });
await page.locator("#cancel").click();
await page.locator("#task-status").getByText("CANCELLED").waitFor();
assert.equal(reloaded, false, "no page reload");
await page.locator("#retry").waitFor();
await shot("task-cancelled");

// Workers.
await page.goto(UI_URL + "#/workers");
await page.getByRole("cell", { name: "sleepy" }).first().waitFor();
await shot("workers");
assert.deepEqual(errors, [], "no console errors");

// With tokens: only the login until a token is given.
const auth = await browser.newPage();
const authErrors = [];
auth.on("pageerror", e => authErrors.push(String(e)));
await auth.goto(UI_AUTH_URL);
await auth.locator("#login-form").waitFor();
assert.equal(await auth.locator("#nav").isHidden(), true);
assert.equal(await auth.locator("#main").innerText(), "");
await auth.screenshot({ path: `${OUT}/login.png` });
await auth.locator("#token").fill(TOKEN);
await auth.locator("#login-form button").click();
await auth.locator("#nav").waitFor();
await auth.getByRole("heading", { name: "Overview" }).waitFor();
assert.deepEqual(authErrors, []);
await browser.close();
console.log("dashboard browser test passed; screenshots in " + OUT);
