// A real IRC server for tests: Debian's ngircd, on 127.0.0.1 on a free port, with a generated
// config, in the foreground (-n) so the test owns the process. `.ci/run` installs the package.
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { connect } from "node:net";
import { findFreePort } from "../../scripts/synapse/LocalSynapse.ts";

export const NGIRCD = process.env.NGIRCD_PATH ?? "/usr/sbin/ngircd";

export interface NgircdOptions {
  /**
   * ngircd's flood control (ngircd/conn.c: Handle_Buffer, Conn_SetPenalty): it reads at most 3
   * commands at a time from a user and delays the rest by penalty seconds; it never kicks. -1 is
   * its default; 0 turns the delays off, so a test sees the bridge's own pacing. @default 0
   */
  readonly maxPenaltyTime?: number;
}

export class Ngircd {
  readonly port: number;
  readonly #dir: string;
  readonly #config: string;
  #child: ChildProcess | undefined;
  readonly log: string[] = [];

  private constructor(port: number, dir: string, config: string) {
    this.port = port;
    this.#dir = dir;
    this.#config = config;
  }

  static async start(options: NgircdOptions = {}): Promise<Ngircd> {
    if (!existsSync(NGIRCD)) throw new Error(`${NGIRCD} is missing: apt-get install -y ngircd`);
    const dir = mkdtempSync(path.join(tmpdir(), "courier-ngircd-"));
    const port = await findFreePort();
    const config = path.join(dir, "ngircd.conf");
    writeFileSync(
      config,
      [
        "[Global]",
        "Name = irc.test",
        "Info = matrix-courier test server",
        "Listen = 127.0.0.1",
        `Ports = ${port}`,
        `MotdPhrase = test`,
        "[Limits]",
        "MaxConnectionsIP = 0",
        "MaxNickLength = 30",
        `MaxPenaltyTime = ${options.maxPenaltyTime ?? 0}`,
        "PingTimeout = 120",
        "[Options]",
        "DNS = no",
        "Ident = no",
        "PAM = no",
        "",
      ].join("\n"),
    );
    const server = new Ngircd(port, dir, config);
    await server.#spawn();
    return server;
  }

  async #spawn(): Promise<void> {
    const child = spawn(NGIRCD, ["-n", "-f", this.#config], { stdio: ["ignore", "pipe", "pipe"] });
    this.#child = child;
    for (const stream of [child.stdout!, child.stderr!]) {
      stream.setEncoding("utf8");
      stream.on("data", (chunk: string) => this.log.push(...chunk.split("\n").filter(Boolean)));
    }
    // Listening once a TCP connect succeeds (bounded).
    for (const deadline = Date.now() + 10_000; ;) {
      if (child.exitCode !== null) throw new Error(`ngircd exited: ${this.log.slice(-10).join("\n")}`);
      if (await canConnect(this.port)) return;
      if (Date.now() > deadline) throw new Error(`ngircd did not listen: ${this.log.slice(-10).join("\n")}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  /** Stops the server (SIGTERM: it closes every connection) and waits for it to exit. */
  async stop(): Promise<void> {
    const child = this.#child;
    if (!child || child.exitCode !== null) return;
    const exited = new Promise((r) => child.once("exit", r));
    child.kill("SIGTERM");
    await exited;
  }

  /** Starts it again on the same port: channels and users are gone, as after a real restart. */
  async restart(): Promise<void> {
    await this.stop();
    await this.#spawn();
  }

  async close(): Promise<void> {
    await this.stop();
    rmSync(this.#dir, { recursive: true, force: true });
  }
}

function canConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect(port, "127.0.0.1");
    socket.once("connect", () => (socket.destroy(), resolve(true)));
    socket.once("error", () => resolve(false));
  });
}
