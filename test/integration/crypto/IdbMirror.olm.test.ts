// IdbMirror with the real OlmMachine (@matrix-org/matrix-sdk-crypto-wasm on fake-indexeddb):
// what one process commits, a fresh process restores and goes on with; and a process killed
// with SIGKILL mid-writes leaves a file that restores to a prefix of its committed transactions.
import { spawn, execFileSync } from "node:child_process";
import { mkdtempSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

const OLM_CHILD = fileURLToPath(new URL("../../support/olmMirrorChild.ts", import.meta.url));
const IDB_CHILD = fileURLToPath(new URL("../../support/idbMirrorChild.ts", import.meta.url));

interface Keys {
  curve25519: string;
  ed25519: string;
}
interface OlmResult {
  restoreMs: number;
  shareMs?: number;
  event?: string;
  decryptedInProcess1?: string;
  decrypted?: string;
  decryptedNext?: string;
  exchangeWrites?: { count: number; ms: number };
  bot: Keys;
  peer: Keys;
  peerRoomKeys: number;
  writes: { count: number; ms: number };
  stats: { databases: number; records: number; bytes: number };
}

function olm(...args: string[]): OlmResult {
  const out = execFileSync(process.execPath, [OLM_CHILD, ...args], {
    encoding: "utf8",
    maxBuffer: 64 << 20,
  });
  const line = out.split("\n").find((l) => l.startsWith("RESULT "));
  if (line === undefined) throw new Error(`no result from the child:\n${out}`);
  return JSON.parse(line.slice("RESULT ".length)) as OlmResult;
}

/** Spawns a child and SIGKILLs it once `ready(line)` has seen what it waits for. */
function killWhen(
  args: string[],
  ready: (line: string) => boolean,
): Promise<{ lines: string[]; signal: string | null }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, args, { stdio: ["ignore", "pipe", "inherit"] });
    const lines: string[] = [];
    let buffered = "";
    child.stdout.setEncoding("utf8");
    child.stdout.on("data", (chunk: string) => {
      buffered += chunk;
      const parts = buffered.split("\n");
      buffered = parts.pop() ?? "";
      for (const line of parts) {
        lines.push(line);
        if (ready(line)) child.kill("SIGKILL");
      }
    });
    child.on("error", reject);
    child.on("exit", (_code, signal) => resolve({ lines, signal }));
  });
}

let dir: string;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), "idb-mirror-olm-"));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

test("a restored OlmMachine has the same identity and still decrypts", () => {
  const file = join(dir, "olm.sqlite");
  const first = olm("first", file, "1");
  expect(first.decryptedInProcess1).toBe("hello from process 1");
  const eventFile = join(dir, "event.json");
  writeFileSync(eventFile, first.event!);

  const second = olm("second", file, eventFile);
  expect(second.bot).toEqual(first.bot);
  expect(second.peer).toEqual(first.peer);
  expect(second.decrypted).toBe("hello from process 1");
  expect(second.decryptedNext).toBe("hello from process 2");
  expect(second.peerRoomKeys).toBe(1);
}, 60_000);

test("figures: ~100 inbound group sessions", () => {
  const file = join(dir, "olm100.sqlite");
  const first = olm("first", file, "100");
  const size = statSync(file).size;
  const restores = [1, 2, 3].map(() => olm("reopen", file));
  const second = restores[restores.length - 1]!;
  expect(second.peerRoomKeys).toBe(100);
  expect(second.peer).toEqual(first.peer);
  const figures = {
    inboundGroupSessions: second.peerRoomKeys,
    fileBytes: size,
    storedBytes: second.stats.bytes,
    records: second.stats.records,
    restoreMs: restores.map((r) => Math.round(r.restoreMs * 10) / 10),
    transactions: first.writes.count,
    msPerTransaction: Math.round((first.writes.ms / first.writes.count) * 1000) / 1000,
    exchangeMsPerTransaction:
      Math.round((first.exchangeWrites!.ms / first.exchangeWrites!.count) * 1000) / 1000,
    shareMsPerRoom: Math.round((first.shareMs! / 100) * 100) / 100,
  };
  console.log(`IdbMirror figures: ${JSON.stringify(figures)}`);
}, 120_000);

test("SIGKILL mid-writes: the restore holds a prefix of the committed transactions", async () => {
  const file = join(dir, "burst.sqlite");
  let committed = -1;
  const { signal } = await killWhen([IDB_CHILD, "burst", file], (line) => {
    if (/^\d+$/.test(line)) committed = Number(line);
    return committed >= 300;
  });
  expect(signal).toBe("SIGKILL");
  const check = JSON.parse(
    execFileSync(process.execPath, [IDB_CHILD, "check", file], { encoding: "utf8" }),
  ) as {
    last: number;
    perTx: [number, number][];
    perTxSize: number;
  };
  // Everything the child saw committed is there (it printed after the complete event)...
  expect(check.last).toBeGreaterThanOrEqual(committed);
  // ...and what is there is transactions 0..last, each whole.
  expect(check.perTx).toEqual(Array.from({ length: check.last + 1 }, (_, n) => [n, check.perTxSize]));
}, 60_000);

test("SIGKILL mid-exchange: the sdk's store opens again, same identity", async () => {
  const file = join(dir, "olmKilled.sqlite");
  let keys: { bot: Keys; peer: Keys } | undefined;
  let shared = 0;
  const { signal } = await killWhen([OLM_CHILD, "first", file, "100000"], (line) => {
    if (line.startsWith("KEYS ")) keys = JSON.parse(line.slice(5)) as typeof keys;
    if (line.startsWith("SHARED ")) shared = Number(line.slice(7)) + 1;
    return shared >= 40;
  });
  expect(signal).toBe("SIGKILL");
  const reopened = olm("reopen", file);
  expect(reopened.bot).toEqual(keys!.bot);
  expect(reopened.peer).toEqual(keys!.peer);
  // Every room whose keys the child saw shared (and received) survived.
  expect(reopened.peerRoomKeys).toBeGreaterThanOrEqual(shared);
}, 60_000);
