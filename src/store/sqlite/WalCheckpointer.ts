import { Worker } from "node:worker_threads";
import { once } from "node:events";
import type { DatabaseSync } from "node:sqlite";

/** WAL pages SQLite would checkpoint at on its own; restored if the checkpointer dies. */
const SQLITE_DEFAULT_AUTOCHECKPOINT = 1000;

// The worker: its own connection to the same file, a PASSIVE checkpoint every interval (it
// never blocks the writer, and copies only what no reader still needs).
const WORKER = `
const { parentPort, workerData } = require("node:worker_threads");
const { DatabaseSync } = require("node:sqlite");
const db = new DatabaseSync(workerData.path);
db.exec("PRAGMA busy_timeout = 1000");
const timer = setInterval(() => {
  try { db.exec("PRAGMA wal_checkpoint(PASSIVE)"); } catch {}
}, workerData.intervalMs);
parentPort.on("message", () => {
  clearInterval(timer);
  try { db.exec("PRAGMA wal_checkpoint(PASSIVE)"); } catch {}
  db.close();
  parentPort.close();
});
`;

/**
 * Moves WAL checkpoints off the writer. By default SQLite checkpoints inside the COMMIT that
 * crosses 1000 WAL pages, which stalls that commit (and every enqueue waiting on it) for
 * milliseconds; here the writer never checkpoints and a worker thread does it on its own
 * connection. The WAL stays bounded: the worker copies it back every `intervalMs`, and
 * `journal_size_limit` truncates the file when it restarts.
 */
export class WalCheckpointer {
  readonly #db: DatabaseSync;
  readonly #worker: Worker;
  #stopped = false;

  constructor(db: DatabaseSync, path: string, intervalMs = 200) {
    this.#db = db;
    this.#worker = new Worker(WORKER, { eval: true, workerData: { path, intervalMs } });
    this.#worker.unref();
    // Without the worker, SQLite must checkpoint on its own again or the WAL grows forever.
    this.#worker.once("exit", () => {
      if (!this.#stopped) db.exec(`PRAGMA wal_autocheckpoint = ${SQLITE_DEFAULT_AUTOCHECKPOINT}`);
    });
    this.#worker.on("error", () => {});
    db.exec("PRAGMA wal_autocheckpoint = 0; PRAGMA journal_size_limit = 67108864");
  }

  /** Ends the worker after a last checkpoint; the writer checkpoints on its own again. */
  async stop(): Promise<void> {
    if (this.#stopped) return;
    this.#stopped = true;
    const exited = once(this.#worker, "exit");
    this.#worker.ref(); // else a process with nothing else to do exits before the worker does
    this.#worker.postMessage("stop");
    await exited;
    this.#db.exec(`PRAGMA wal_autocheckpoint = ${SQLITE_DEFAULT_AUTOCHECKPOINT}`);
  }
}
