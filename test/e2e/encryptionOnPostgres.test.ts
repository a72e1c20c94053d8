// Encryption on the PostgreSQL store: the devices' keys and sessions live in the database
// (migration 4), so a restart keeps the bot's identity and its sessions there; and one instance
// runs the devices: a second one with encryption on refuses to start, saying why.
import { spawn } from "node:child_process";
import { writeFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import yaml from "js-yaml";
import { startPostgresCluster, type PostgresCluster } from "../support/postgresCluster.ts";
import { findFreePort } from "../../scripts/synapse/LocalSynapse.ts";
import { EncryptedStack } from "./support/EncryptedStack.ts";

const CLI = fileURLToPath(new URL("../../src/cli/main.ts", import.meta.url));

describe("encryption on PostgreSQL", () => {
  let cluster: PostgresCluster;
  let e2ee: EncryptedStack;
  let url: string;

  beforeAll(async () => {
    cluster = await startPostgresCluster();
    url = await cluster.createDatabase();
    e2ee = await EncryptedStack.start({ config: { store: { url } } });
  }, 180_000);
  afterAll(async () => {
    await e2ee?.stop();
    await cluster?.stop();
  }, 30_000);

  const echoed = (roomId: string, body: string) => e2ee.echo(roomId, body);

  test("the bot answers encrypted; after a SIGKILL its identity and sessions come back from the database", async () => {
    const { alice, stack } = e2ee;
    const roomId = await e2ee.roomWithBot();
    await echoed(roomId, "on postgres");
    const before = await alice.deviceKeys(stack.botUserId, { query: true });
    await e2ee.restartCourier();
    expect((await alice.deviceKeys(stack.botUserId, { query: true })).server).toEqual(before.server);
    const [reply] = await echoed(roomId, "after restart");
    expect(reply).toMatchObject({ decrypted: true });
    expect((await alice.roomKeyStats()).filter((k) => k.count > 1)).toEqual([]);
  }, 120_000);

  test("a second instance with encryption on refuses to start, and says why", async () => {
    const config = yaml.load(
      await import("node:fs/promises").then((fs) => fs.readFile(e2ee.stack.configPath, "utf8")),
    ) as Record<string, Record<string, unknown>>;
    const second = path.join(path.dirname(e2ee.stack.configPath), "second.yaml");
    config.appservice!.bind = { host: "127.0.0.1", port: await findFreePort() };
    writeFileSync(second, yaml.dump(config), { mode: 0o600 });
    const child = spawn(process.execPath, [CLI, "start", "--config", second], {
      stdio: ["ignore", "pipe", "pipe"],
    });
    let output = "";
    child.stdout.on("data", (chunk: Buffer) => (output += chunk));
    child.stderr.on("data", (chunk: Buffer) => (output += chunk));
    const code = await new Promise<number | null>((resolve) => child.on("exit", resolve));
    expect(code).not.toBe(0);
    expect(output).toContain("Another instance on this database runs encryption");
  }, 60_000);
});
