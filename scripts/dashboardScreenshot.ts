// `npm run screenshot`: docs/dashboard.png, the operator dashboard under real (generated) load.
// A Courier runs against the in-process fake homeserver with the shipped echo and ping plugins
// and one misconfigured plugin; for a few minutes it sends at a rate that changes every minute,
// one room refuses us (dead letters), one room keeps failing (a pending lane that ages), and a
// few 429s come in. Then headless chromium logs in and takes the picture. Nothing is mocked in
// the dashboard: the chart shows what the outbox really did.
//
//   node scripts/dashboardScreenshot.ts [--minutes 4] [--out docs/dashboard.png]
import { writeFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { z } from "zod";
import { definePlugin } from "../src/plugins/definePlugin.ts";
import { launchChromium } from "../test/support/chromium.ts";
import { startDashboardStack } from "../test/support/dashboardStack.ts";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const { values } = parseArgs({
  options: {
    minutes: { type: "string", default: "4" },
    out: { type: "string", default: "docs/dashboard.png" },
  },
});
const minutes = Number(values.minutes);
const out = path.resolve(ROOT, values.out);
const say = (line: string) => process.stdout.write(`${line}\n`);

const ROOMS = ["!ops:example.org", "!alerts:example.org", "!town-square:example.org", "!deploys:example.org"];
const BANNED = "!archived:example.org";
const FLAKY = "!bridge-irc:example.org";

const stack = await startDashboardStack({
  serverName: "example.org",
  shippedPlugins: [{ name: "echo" }, { name: "ping" }],
  plugins: [
    {
      // Misconfigured on purpose: the dashboard shows it failed, and why; the others run.
      definition: definePlugin({ name: "github", config: z.object({ secret: z.string() }), setup: () => {} }),
    },
  ],
});
const { hs } = stack;
try {
  hs.refuseRoom(BANNED, { status: 403, errcode: "M_FORBIDDEN", error: "You are not invited to this room." });
  hs.setFaults({ rate500: 1, match: (p) => p.includes(encodeURIComponent(FLAKY)) });
  await stack.say(FLAKY, "a message the bridge keeps failing on");
  await stack.say(FLAKY, "and one behind it, in order");

  const perSecond = [6, 14, 9, 20, 12, 4, 16, 8];
  const end = Date.now() + minutes * 60_000;
  let n = 0;
  say(`sending for ${minutes} min (rates change every minute)…`);
  for (let second = 0; Date.now() < end; second++) {
    const minute = Math.floor(Date.now() / 60_000);
    const rate = perSecond[minute % perSecond.length]!;
    for (let i = 0; i < rate; i++) {
      n++;
      void stack.say(ROOMS[n % ROOMS.length]!, `message ${n}`);
    }
    if (second % 50 === 7) void stack.say(BANNED, `message ${n} to a room that refuses us`);
    if (second % 20 === 3) hs.failNext(1, "429", (p) => p.includes(encodeURIComponent(ROOMS[0]!)));
    await new Promise((resolve) => setTimeout(resolve, 1000));
  }
  await stack.say(BANNED, "one more for the dead-letter list");
  await new Promise((resolve) => setTimeout(resolve, 1500));

  const browser = await launchChromium({ viewport: { width: 1280, height: 1440 } });
  try {
    const page = await browser.context.newPage();
    await page.goto(`${stack.url}/admin/`);
    await page.fill('input[name="token"]', stack.adminToken!);
    await Promise.all([page.waitForURL(`${stack.url}/admin/`), page.click('button[type="submit"]')]);
    await page.waitForSelector("#dead tr[data-txn]");
    await page.waitForSelector("#lanes tr[data-lane]");
    writeFileSync(out, await page.screenshot());
    say(`wrote ${path.relative(ROOT, out)}`);
  } finally {
    await browser.close();
  }
} finally {
  await stack.stop();
}
