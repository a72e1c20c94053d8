// The operator dashboard in a real browser (Debian's chromium, headless): log in with the admin
// token, see a dead letter, press "Retry", and see it delivered: the fake homeserver stores the
// event and the page lists it under recent sends with its event id. Set DASHBOARD_SCREENSHOT to
// a path to also save a screenshot of the page (docs use `npm run screenshot` for a fuller one).
import { writeFileSync } from "node:fs";
import type { Page } from "playwright-core";
import { definePlugin } from "../../src/plugins/definePlugin.ts";
import { launchChromium, type Browser } from "../support/chromium.ts";
import { startDashboardStack, type DashboardStack } from "../support/dashboardStack.ts";

const ROOM = "!lobby:fake.test";
const BANNED = "!banned:fake.test";
const WAIT_MS = 20_000;

let stack: DashboardStack | undefined;
let browser: Browser | undefined;
afterEach(async () => {
  await browser?.close();
  await stack?.stop();
  browser = stack = undefined;
});

/** Text of the page's problems: uncaught errors, console errors (CSP violations are reported there). */
function watchProblems(page: Page): string[] {
  const problems: string[] = [];
  page.on("pageerror", (error) => problems.push(`pageerror: ${error.message}`));
  page.on("console", (message) => {
    // The 401/403 answers of the login steps are expected; anything else is a problem.
    if (message.type() === "error" && !/^Failed to load resource: .* status of 40[13]/.test(message.text()))
      problems.push(`console: ${message.text()}`);
  });
  return problems;
}

test("log in, see a dead letter, retry it from the page, see it delivered", async () => {
  stack = await startDashboardStack({
    plugins: [{ definition: definePlugin({ name: "greeter", setup: () => {} }) }],
  });
  const { hs } = stack;
  const hello = await stack.say(ROOM, "hello");
  const delivered = await hello.delivered();
  hs.refuseRoom(BANNED);
  const dead = await stack.say(BANNED, "let me in");
  await expect(dead.delivered()).rejects.toMatchObject({ errcode: "M_FORBIDDEN" });

  browser = await launchChromium();
  const page = await browser.context.newPage();
  page.setDefaultTimeout(WAIT_MS);
  const problems = watchProblems(page);

  // Not logged in: the login form, answered 401.
  const first = await page.goto(`${stack.url}/admin/`);
  expect(first?.status()).toBe(401);
  await page.fill('input[name="token"]', "not-the-admin-token");
  await page.click('button[type="submit"]');
  await page.waitForSelector("text=That is not the admin token.");
  await page.fill('input[name="token"]', stack.adminToken!);
  await Promise.all([page.waitForURL(`${stack.url}/admin/`), page.click('button[type="submit"]')]);

  const [cookie] = await browser.context.cookies(`${stack.url}/admin/`);
  expect(cookie).toMatchObject({ name: "courier_admin", httpOnly: true, sameSite: "Strict", path: "/admin" });
  expect(
    await page.evaluate(() => (globalThis as unknown as { document: { cookie: string } }).document.cookie),
  ).toBe("");

  // The dead letter, with its reason and a retry button; the earlier send with its event id.
  const deadRow = page.locator(`#dead tr[data-txn="${dead.txnId}"]`);
  await deadRow.waitFor();
  expect(await deadRow.innerText()).toMatch(/M_FORBIDDEN \(403\) User is not in the room/);
  const sentRow = page.locator(`#recent tr[data-txn="${delivered.txnId}"]`);
  await sentRow.waitFor();
  expect(await sentRow.locator(".event-id").innerText()).toBe(delivered.eventId);
  expect(await page.locator("#total-dead").innerText()).toBe("1");
  expect(await page.locator('#plugins tr[data-plugin="greeter"]').innerText()).toContain("running");
  // The chart: one slot per minute of the last hour, this minute's bars drawn.
  expect(await page.locator("#chart svg g[data-minute]").count()).toBe(60);
  expect(await page.locator("#chart svg rect.bar-sent").count()).toBe(1);
  expect(await page.locator("#chart svg rect.bar-dead").count()).toBe(1);

  // The room lets us in again; retry from the page.
  hs.allowRoom(BANNED);
  await deadRow.locator("button.retry").click();
  await page.waitForSelector(`text=Requeued ${dead.txnId}`);
  await hs.waitFor(
    () => hs.roomEvents(BANNED).length === 1,
    WAIT_MS,
    "the retried message at the homeserver",
  );
  const [event] = hs.roomEvents(BANNED);
  expect(event).toMatchObject({ txnId: dead.txnId, content: { body: "let me in" } });

  // The page shows it sent, with the homeserver's event id, and no dead letter left.
  const retriedRow = page.locator(`#recent tr[data-txn="${dead.txnId}"]`);
  await retriedRow.waitFor();
  await page.waitForFunction(
    ([txn, eventId]) => {
      const doc = (
        globalThis as unknown as { document: { querySelector(s: string): { textContent: string } | null } }
      ).document;
      return doc.querySelector(`#recent tr[data-txn="${txn}"] .event-id`)?.textContent === eventId;
    },
    [dead.txnId, event!.eventId] as const,
  );
  await page.waitForSelector("#dead >> text=No dead letters.");
  expect(await page.locator("#total-dead").innerText()).toBe("0");

  if (process.env.DASHBOARD_SCREENSHOT) {
    writeFileSync(process.env.DASHBOARD_SCREENSHOT, await page.screenshot({ fullPage: true }));
  }

  // Log out: back to the form; the old cookie no longer opens the API.
  await Promise.all([page.waitForURL(`${stack.url}/admin/`), page.click('header button[type="submit"]')]);
  await page.waitForSelector('input[name="token"]');
  const stale = await fetch(`${stack.url}/admin/api/state`, {
    headers: { cookie: `courier_admin=${cookie!.value}` },
  });
  expect(stale.status).toBe(401);
  expect(problems).toEqual([]);
}, 90_000);
