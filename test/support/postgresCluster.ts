// A throwaway PostgreSQL cluster for tests: initdb into a temporary folder, started on a free port
// on 127.0.0.1, one fresh database per `createDatabase`, removed by `stop`. Debian's PostgreSQL
// (.ci/run installs it); as root it runs as the `postgres` user, since postgres refuses root.
import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import { chownSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pg from "pg";
import { findFreePort } from "./dashboardStack.ts";

export interface PostgresCluster {
  /** A new empty database on the cluster; its URL. */
  createDatabase(): Promise<string>;
  stop(): Promise<void>;
}

function binDir(): string {
  const root = "/usr/lib/postgresql";
  const versions = existsSync(root)
    ? readdirSync(root)
        .filter((v) => existsSync(join(root, v, "bin", "initdb")))
        .sort((a, b) => Number(b) - Number(a))
    : [];
  if (versions.length === 0)
    throw new Error("PostgreSQL is not installed: apt-get install -y postgresql (.ci/run does it)");
  return join(root, versions[0]!, "bin");
}

let databases = 0;

export async function startPostgresCluster(): Promise<PostgresCluster> {
  const bin = binDir();
  const dir = mkdtempSync(join(tmpdir(), "courier-pg-"));
  const asRoot = process.getuid?.() === 0;
  const uid = asRoot ? Number(execFileSync("id", ["-u", "postgres"]).toString().trim()) : undefined;
  if (uid !== undefined) chownSync(dir, uid, uid);
  const run = (cmd: string, args: string[]) =>
    asRoot ? (["runuser", ["-u", "postgres", "--", cmd, ...args]] as const) : ([cmd, args] as const);
  const data = join(dir, "data");
  const [initCmd, initArgs] = run(join(bin, "initdb"), [
    "-D",
    data,
    "-U",
    "courier",
    "--auth=trust",
    "--no-sync",
    "-E",
    "UTF8",
    "--locale=C",
  ]);
  execFileSync(initCmd, [...initArgs], { stdio: "ignore" });
  const port = await findFreePort();
  const [cmd, args] = run(join(bin, "postgres"), [
    "-D",
    data,
    "-p",
    String(port),
    "-h",
    "127.0.0.1",
    "-k",
    dir,
    "-c",
    "fsync=off",
    "-c",
    "max_connections=200",
  ]);
  const server: ChildProcess = spawn(cmd, [...args], { stdio: ["ignore", "ignore", "pipe"] });
  let stderr = "";
  server.stderr?.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
  const admin = `postgres://courier@127.0.0.1:${port}/postgres`;
  const deadline = Date.now() + 30_000;
  for (;;) {
    const client = new pg.Client(admin);
    try {
      await client.connect();
      await client.end();
      break;
    } catch {
      await client.end().catch(() => {});
      if (server.exitCode !== null || Date.now() > deadline)
        throw new Error(`PostgreSQL did not start: ${stderr.slice(-2000)}`);
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }
  return {
    async createDatabase() {
      const name = `courier_test_${process.pid}_${++databases}`;
      const client = new pg.Client(admin);
      await client.connect();
      await client.query(`CREATE DATABASE ${name}`);
      await client.end();
      return `postgres://courier@127.0.0.1:${port}/${name}`;
    },
    async stop() {
      const exited = new Promise((resolve) => server.once("exit", resolve));
      // SIGINT is postgres's fast shutdown; sent to the postmaster itself (runuser does not pass it on).
      const pidFile = join(data, "postmaster.pid");
      const postmaster = existsSync(pidFile) ? Number(readFileSync(pidFile, "utf8").split("\n")[0]) : 0;
      if (postmaster > 0) process.kill(postmaster, "SIGINT");
      else server.kill("SIGINT");
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([exited, new Promise((resolve) => (timer = setTimeout(resolve, 10_000)))]);
      clearTimeout(timer); // else the wait keeps the test process alive after a prompt exit
      if (server.exitCode === null) server.kill("SIGKILL");
      server.stderr?.destroy(); // the postmaster's children may hold it a little longer
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
