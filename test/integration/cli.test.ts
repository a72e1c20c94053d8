// The `courier` command as a user runs it: a child process, real files.
import { execFile, spawn } from "node:child_process";
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { parseTransaction } from "../../src/inbound/parseTransaction.ts";
import { SqliteInboundJournal } from "../../src/store/sqlite/SqliteInboundJournal.ts";
import { SqliteOutboxStore } from "../../src/store/sqlite/SqliteOutboxStore.ts";
import type { TxnId } from "../../src/ids.ts";

const CLI = fileURLToPath(new URL("../../src/cli/main.ts", import.meta.url));
const run = (args: string[], cwd: string) =>
  promisify(execFile)(process.execPath, [CLI, ...args], { cwd }).then(
    ({ stdout, stderr }) => ({ code: 0, stdout, stderr }),
    (error: { code: number; stdout: string; stderr: string }) => ({
      code: error.code,
      stdout: error.stdout,
      stderr: error.stderr,
    }),
  );

describe("courier CLI", () => {
  let dir: string;
  beforeEach(() => (dir = mkdtempSync(path.join(tmpdir(), "courier-cli-"))));
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  test("init writes a config once, register the registration; a bad config exits 2 naming line and key, store untouched", async () => {
    expect((await run(["init"], dir)).code).toBe(0);
    expect((await run(["init"], dir)).code).toBe(2); // never overwritten without --force
    const registered = await run(["register"], dir);
    expect(registered).toMatchObject({ code: 0, stdout: expect.stringContaining("mode 0600") });

    writeFileSync(
      path.join(dir, "bad.yaml"),
      "homeserver:\n  url: http://127.0.0.1:8008\n  serverName: localhost\noutbox:\n  maxConcurency: 3\n  rate: { perSecond: fast }\n",
    );
    const bad = await run(["start", "--config", "bad.yaml"], dir);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain(
      'bad.yaml:5: outbox.maxConcurency: unknown key; did you mean "maxConcurrency"?',
    );
    expect(bad.stderr).toContain("bad.yaml:6: outbox.rate.perSecond:");
    expect(bad.stderr).not.toMatch(/\n\s+at /); // no stack trace
    expect(existsSync(path.join(dir, "data"))).toBe(false); // the store was not touched
  }, 30_000);

  test("outbox stats, ls, dead and retry work on the journal", async () => {
    expect((await run(["init"], dir)).code).toBe(0);
    const store = new SqliteOutboxStore({ path: path.join(dir, "data", "courier.sqlite") });
    const row = (txn: string, room: string) => ({
      txnId: txn as TxnId,
      lane: `room:${room}`,
      kind: "send" as const,
      sender: "@courier:localhost",
      request: { method: "PUT" as const, path: `/p/${txn}`, body: "{}" },
    });
    const [a, , c] = await store.insert([row("a", "!one:x"), row("b", "!one:x"), row("c", "!two:x")]);
    await store.settle([
      {
        seq: a!.row.seq,
        txnId: "a" as TxnId,
        lane: "room:!one:x",
        state: "dead",
        error: { errcode: "M_FORBIDDEN", status: 403, reason: "not in room" },
        attempts: 1,
      },
      {
        seq: c!.row.seq,
        txnId: "c" as TxnId,
        lane: "room:!two:x",
        state: "sent",
        eventId: "$c",
        attempts: 1,
      },
    ]);
    await store.close();

    const stats = await run(["outbox", "stats", "--json"], dir);
    expect(JSON.parse(stats.stdout)).toMatchObject({
      totals: { pending: 1, sent: 1, dead: 1 },
      lanes: [{ lane: "room:!one:x", pending: 1 }],
    });
    expect((await run(["outbox", "dead"], dir)).stdout).toMatch(
      /^a\tdead\troom:!one:x\t.*M_FORBIDDEN not in room/m,
    );
    const listed = (await run(["outbox", "ls", "--room", "!two:x"], dir)).stdout.split("\n");
    expect(listed[0]).toBe("txnId\tstate\tlane\tsender\tkind\tage\tevent id / error");
    expect(listed[1]).toMatch(/^c\tsent\t.*\$c$/);
    expect((await run(["outbox", "ls", "--state", "nope"], dir)).code).toBe(2);
    expect((await run(["outbox", "retry"], dir)).code).toBe(2);
    expect((await run(["outbox", "retry", "a"], dir)).stdout).toContain("1 request put back to pending");
    expect((await run(["outbox", "retry", "a"], dir)).code).toBe(1); // nothing to retry any more
    expect(JSON.parse((await run(["outbox", "stats", "--json"], dir)).stdout).totals).toEqual({
      pending: 2,
      sent: 1,
      dead: 0,
    });

    // Not a terminal: drop refuses without --yes, and changes nothing.
    const refused = await run(["outbox", "drop", "b"], dir);
    expect(refused.code).toBe(2);
    expect(refused.stderr).toContain("pass --yes");
    const dropped = await run(["outbox", "drop", "b", "c", "--yes"], dir);
    expect(dropped.code).toBe(0);
    expect(dropped.stdout).toContain("1 request dropped"); // c was sent already: not droppable
    expect((await run(["outbox", "drop", "b", "--yes"], dir)).code).toBe(1);
    expect((await run(["outbox", "ls", "--state", "dropped"], dir)).stdout).toMatch(/^b\tdropped\t/m);
    expect((await run(["outbox", "retry", "--all-dead"], dir)).stdout).toContain("0 requests");
  }, 30_000);

  test("inbound stats and list show rejected and dead items with their reasons, newest first, read-only", async () => {
    expect((await run(["init"], dir)).code).toBe(0);
    const file = path.join(dir, "data", "courier.sqlite");
    // No store yet: said so (exit 1), and looking does not create one.
    const none = await run(["inbound", "stats"], dir);
    expect(none).toMatchObject({ code: 1, stderr: expect.stringContaining(`no store at ${file}`) });
    expect(existsSync(path.join(dir, "data"))).toBe(false);
    const journal = new SqliteInboundJournal({ path: file });
    const event = (id: string, extra: Record<string, unknown> = {}) => ({
      event_id: id,
      room_id: "!room:x",
      type: "m.room.message",
      sender: "@alice:x",
      content: { body: `body of ${id}` },
      ...extra,
    });
    // One transaction: a good event, a malformed one (no sender), a good one that will die.
    const { sender: _, ...noSender } = event("$bad<i>:x");
    const parsed = parseTransaction(
      Buffer.from(
        JSON.stringify({ events: [event("$ok:x"), noSender, event("$dies:x", { big: "x".repeat(400) })] }),
      ),
      "txn-1",
    );
    if (!parsed.ok) throw new Error(parsed.detail);
    const outcome = await journal.journal("txn-1", parsed.items);
    expect(outcome.rejected).toBe(1);
    const [ok, dies] = outcome.items;
    // A handler's error is free text from anywhere: an escape sequence, a tab, a newline, a token.
    const adminToken = "admin_token_that_must_never_be_printed";
    writeFileSync(
      path.join(dir, "config.yaml"),
      readFileSync(path.join(dir, "config.yaml"), "utf8") + `admin:\n  token: ${adminToken}\n`,
    );
    const reason = `echo/on{m.room.message}: upstream said \u001b[31mno\u001b[0m\tat ${adminToken}\nsecond line`;
    await journal.record({
      begun: [ok!.seq, dies!.seq],
      settled: [
        { seq: ok!.seq, state: "done" },
        { seq: dies!.seq, state: "dead", error: reason },
      ],
    });
    await journal.close();

    const stats = await run(["inbound", "stats", "--json"], dir);
    expect(stats.code).toBe(0);
    expect(JSON.parse(stats.stdout)).toEqual({ totals: { pending: 0, done: 1, dead: 1, rejected: 1 } });
    expect((await run(["inbound", "stats"], dir)).stdout).toBe("pending 0\tdone 1\tdead 1\trejected 1\n");

    const rejected = await run(["inbound", "list", "--state", "rejected"], dir);
    expect(rejected.code).toBe(0);
    const rejectedLines = rejected.stdout.trimEnd().split("\n");
    expect(rejectedLines).toHaveLength(2);
    expect(rejectedLines[0]!.split("\t")).toEqual([
      String(ok!.seq + 1),
      expect.stringMatching(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/),
      "rejected",
      "txn-1",
      "event",
      "room:!room:x",
      "$bad<i>:x",
      "0",
      "events[1] lacks `sender` (a non-empty string)",
    ]);
    expect(JSON.parse(rejectedLines[1]!.trim())).toMatchObject({ event_id: "$bad<i>:x" });

    // Newest first; the reason escaped, on one line, the token out; the long item cut.
    const all = await run(["inbound", "list"], dir);
    const lines = all.stdout.trimEnd().split("\n");
    expect(lines.filter((l) => !l.startsWith("  ")).map((l) => l.split("\t")[2])).toEqual([
      "dead",
      "rejected",
      "done",
    ]);
    const dead = lines[0]!.split("\t");
    expect(dead.slice(2, 7)).toEqual(["dead", "txn-1", "event", "room:!room:x", "$dies:x"]);
    expect(Number(dead[7])).toBeGreaterThanOrEqual(1);
    expect(dead[8]).toBe(
      "echo/on{m.room.message}: upstream said \\u001b[31mno\\u001b[0m\\tat [redacted]\\nsecond line",
    );
    expect(all.stdout).not.toContain("\u001b");
    expect(all.stdout).not.toContain(adminToken);
    expect(lines[1]!.length).toBeLessThanOrEqual(2 + 160);
    expect(lines[1]).toMatch(/^ {2}\{"event_id":"\$dies:x".*…$/);
    const full = await run(["inbound", "list", "--state", "dead", "--full"], dir);
    expect(full.stdout).toContain("x".repeat(400));

    // --json: one object per line, the item parsed, the reason as stored (JSON escapes it), no token.
    const json = await run(["inbound", "list", "--json", "-n", "2"], dir);
    const records = json.stdout
      .trimEnd()
      .split("\n")
      .map((line) => JSON.parse(line) as Record<string, unknown>);
    expect(records).toEqual([
      expect.objectContaining({
        seq: dies!.seq,
        state: "dead",
        txnId: "txn-1",
        kind: "event",
        lane: "room:!room:x",
        eventId: "$dies:x",
        reason: reason.replace(adminToken, "[redacted]"),
        receivedAt: expect.stringMatching(/Z$/),
        settledAt: expect.stringMatching(/Z$/),
        item: expect.objectContaining({ event_id: "$dies:x", big: "x".repeat(400) }),
      }),
      expect.objectContaining({ state: "rejected", eventId: "$bad<i>:x", attempts: 0 }),
    ]);
    expect(json.stdout).not.toContain(adminToken);

    expect((await run(["inbound", "list", "--state", "pending"], dir)).code).toBe(2);
    expect((await run(["inbound", "list", "--limit", "0"], dir)).code).toBe(2);
    expect((await run(["inbound", "list", "--state", "rejected", "-n", "0x"], dir)).stderr).toContain(
      "--limit must be a positive whole number",
    );
    // Nothing was written: the counts are what they were.
    const after = new SqliteInboundJournal({ path: file });
    expect(await after.totals()).toEqual({ pending: 0, done: 1, dead: 1, rejected: 1 });
    await after.close();
  }, 60_000);

  test("doctor prints one line per check and exits 1 when one fails (no homeserver here)", async () => {
    expect((await run(["init"], dir)).code).toBe(0);
    expect((await run(["register"], dir)).code).toBe(0);
    // The starter config's homeserver (127.0.0.1:8008) is not running in this test.
    writeFileSync(
      path.join(dir, "config.yaml"),
      readFileSync(path.join(dir, "config.yaml"), "utf8").replace(":8008", ":9"),
    );
    const doctor = await run(["doctor"], dir);
    expect(doctor.code).toBe(1);
    expect(doctor.stdout).toMatch(/^PASS {2}config: /m);
    expect(doctor.stdout).toMatch(/^PASS {2}registration: /m);
    expect(doctor.stdout).toMatch(/^FAIL {2}homeserver: /m);
    expect(doctor.stdout).toMatch(/^SKIP {2}as_token: needs the homeserver$/m);
  }, 60_000);

  test("start warns when config.yaml or registration.yaml is readable by group or others (both hold tokens)", async () => {
    expect((await run(["init"], dir)).code).toBe(0);
    expect((await run(["register"], dir)).code).toBe(0);
    const config = path.join(dir, "config.yaml");
    // No homeserver here (port 9), and any free port for the listener.
    writeFileSync(
      config,
      readFileSync(config, "utf8").replace(":8008", ":9").replace("port: 9000", "port: 0"),
    );
    chmodSync(config, 0o644);
    chmodSync(path.join(dir, "registration.yaml"), 0o640);
    const child = spawn(process.execPath, [CLI, "start"], { cwd: dir, stdio: ["ignore", "pipe", "pipe"] });
    let output = "";
    const warned = (file: string) =>
      output
        .split("\n")
        .some(
          (line) =>
            line.includes('"level":40') && line.includes(`${file} is mode`) && line.includes("chmod 600"),
        );
    await new Promise<void>((resolve) => {
      const check = () => {
        if (warned("config.yaml") && warned("registration.yaml")) resolve();
      };
      child.stdout.on("data", (chunk: Buffer) => ((output += chunk.toString()), check()));
      child.stderr.on("data", (chunk: Buffer) => ((output += chunk.toString()), check()));
      child.on("exit", () => resolve());
      setTimeout(resolve, 20_000).unref();
    });
    child.kill("SIGKILL");
    expect(output).toMatch(/config\.yaml is mode 0644: group or others can read it, and it holds tokens/);
    expect(output).toMatch(
      /registration\.yaml is mode 0640: group or others can read it, and it holds tokens/,
    );

    // At 0600 (as init and register write them) there is no such warning.
    chmodSync(config, 0o600);
    chmodSync(path.join(dir, "registration.yaml"), 0o600);
    output = "";
    const quiet = spawn(process.execPath, [CLI, "start"], { cwd: dir, stdio: ["ignore", "pipe", "pipe"] });
    await new Promise<void>((resolve) => {
      quiet.stdout.on("data", (chunk: Buffer) => {
        output += chunk.toString();
        if (output.includes("courier started")) resolve();
      });
      quiet.stderr.on("data", (chunk: Buffer) => (output += chunk.toString()));
      quiet.on("exit", () => resolve());
      setTimeout(resolve, 20_000).unref();
    });
    quiet.kill("SIGKILL");
    expect(output).toContain("courier started");
    expect(output).not.toContain("group or others can read it");
  }, 60_000);

  test("--help on every command exits 0 and shows its usage; the top-level help documents the exit codes", async () => {
    const commands = [
      [],
      ["init"],
      ["register"],
      ["start"],
      ["doctor"],
      ["outbox"],
      ["outbox", "stats"],
      ["outbox", "ls"],
      ["outbox", "dead"],
      ["outbox", "retry"],
      ["outbox", "drop"],
      ["inbound"],
      ["inbound", "stats"],
      ["inbound", "list"],
    ];
    const results = await Promise.all(commands.map((args) => run([...args, "--help"], dir)));
    results.forEach((result, i) => {
      const usage = ["courier", ...commands[i]!].join(" ");
      expect({ args: commands[i], code: result.code }).toEqual({ args: commands[i], code: 0 });
      expect(result.stdout).toContain(`Usage: ${usage}`);
    });
    expect(results[0]!.stdout).toContain("Exit codes: 0 success; 1 failure");
    const unknown = await run(["frobnicate"], dir);
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toContain("unknown command");
    expect((await run(["outbox", "ls", "--bogus"], dir)).code).toBe(2);
  }, 60_000);
});
