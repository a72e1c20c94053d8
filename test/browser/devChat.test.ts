// `npm start`'s development setup (scripts/dev/startDevSetup.ts) on a real Synapse, driven as a
// new user would: open the dashboard link it prints (the admin token in its fragment logs in),
// go to "Chat with the bot", type as the dev user and see the bot's answers arrive live. The page
// talks to Synapse's Client-Server API itself. The CLI works against the config file it wrote;
// COURIER_* overrides apply to it as to `courier start`.
import { execFile } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import type { Page } from "playwright-core";
import { parse, stringify } from "yaml";
import { findFreePort } from "../../scripts/synapse/LocalSynapse.ts";
import { startDevSetup, type DevSetup } from "../../scripts/dev/startDevSetup.ts";
import { launchChromium, type Browser } from "../support/chromium.ts";

const ROOT = fileURLToPath(new URL("../..", import.meta.url));
const BIN = path.join(ROOT, "bin", "courier.js");
const WAIT_MS = 30_000;

let dir: string | undefined;
let setup: DevSetup | undefined;
let browser: Browser | undefined;
afterEach(async () => {
  await browser?.close();
  await setup?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
  browser = setup = dir = undefined;
});

/**
 * Uncaught errors and console errors (CSP violations are reported there), but for the answers
 * the page expects: 401 for the dashboard before the link logged in, 404 for the chat room's
 * alias before the page created it.
 */
function watchProblems(page: Page): string[] {
  const problems: string[] = [];
  page.on("pageerror", (error) => problems.push(`pageerror: ${error.message}`));
  page.on("console", (message) => {
    if (message.type() !== "error") return;
    const url = message.location().url;
    const status = /status of (\d+)/.exec(message.text())?.[1];
    const expected =
      (status === "401" && new URL(url).pathname === "/admin/") ||
      (status === "404" && new URL(url).pathname.startsWith("/_matrix/client/v3/join/%23courier-chat-"));
    if (!expected) problems.push(`console: ${message.text()} (${url})`);
  });
  return problems;
}

const courierCli = async (configPath: string, args: string[]) =>
  (
    await promisify(execFile)(process.execPath, [BIN, ...args], {
      env: { ...process.env, COURIER_CONFIG: configPath },
    })
  ).stdout;

test("the printed dashboard link logs in; its chat page talks to the bot as the dev user, live", async () => {
  dir = mkdtempSync(path.join(tmpdir(), "courier-dev-"));
  // The development registration, listening on a free port instead of 9000.
  const appservicePort = await findFreePort();
  const registration = parse(readFileSync(path.join(ROOT, "registration.yaml"), "utf8")) as Record<
    string,
    unknown
  >;
  const registrationPath = path.join(dir, "registration.yaml");
  writeFileSync(registrationPath, stringify({ ...registration, url: `http://127.0.0.1:${appservicePort}` }));
  const adminToken = `test_admin_${randomBytes(16).toString("hex")}`;
  setup = await startDevSetup({
    dataDir: path.join(dir, "dev"),
    registrationPath,
    homeserverPort: await findFreePort(),
    env: { COURIER_ADMIN_TOKEN: adminToken, COURIER_LOGGING_LEVEL: "warn" },
  });
  // The overrides applied: the token of the variable, not a generated one; the level too.
  expect(setup.dashboardUrl).toBe(`http://127.0.0.1:${appservicePort}/admin/#token=${adminToken}`);
  expect(setup.courier.config.logging.level).toBe("warn");
  expect(statSync(setup.configPath).mode & 0o777).toBe(0o600);

  browser = await launchChromium();
  const page = await browser.context.newPage();
  page.setDefaultTimeout(WAIT_MS);
  const problems = watchProblems(page);

  // The link logs in, and the token leaves the address bar.
  await page.goto(setup.dashboardUrl);
  await page.waitForURL(`http://127.0.0.1:${appservicePort}/admin/`);
  await page.locator('#plugins tr[data-plugin="echo"]').waitFor();

  await Promise.all([page.waitForURL(/\/admin\/chat$/), page.click("#chat-link")]);
  const input = page.locator("#chat-input");
  await page.waitForFunction(
    () =>
      (
        globalThis as unknown as { document: { getElementById(id: string): { disabled: boolean } } }
      ).document.getElementById("chat-input").disabled === false,
  );
  expect(await page.locator("#status").innerText()).toBe(`connected as ${setup.user.userId}`);

  await input.fill("!echo hello from the page");
  await input.press("Enter");
  const fromBot = page.locator(".chat-line.from-bot .body");
  await fromBot.filter({ hasText: "hello from the page" }).waitFor();
  expect(await page.locator(".chat-line.from-me .body").allInnerTexts()).toContain(
    "!echo hello from the page",
  );

  await input.fill("!echo");
  await input.press("Enter");
  await fromBot.filter({ hasText: "usage: !echo <text>" }).waitFor();
  expect(await fromBot.allInnerTexts()).toEqual(["hello from the page", "usage: !echo <text>"]);

  // The CLI, pointed at the setup's config file, reads the same store: both answers were sent.
  const stats = JSON.parse(await courierCli(setup.configPath, ["outbox", "stats", "--json"])) as {
    totals: { sent: number };
  };
  expect(stats.totals.sent).toBeGreaterThanOrEqual(2);
  expect(problems).toEqual([]);
}, 180_000);
