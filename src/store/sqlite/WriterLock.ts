import { dirname } from "node:path";
import { DatabaseSync } from "node:sqlite";
import { CourierError } from "../../errors.ts";
import { privateFolder, restrictToOwner } from "./SqliteDatabase.ts";

/** Another process holds the store's writer lock (a running service, or a CLI command changing it). */
export class StoreLockedError extends CourierError {
  readonly lockPath: string;
  constructor(lockPath: string, cause: unknown) {
    super(
      "COURIER_STORE_LOCKED",
      "M_UNKNOWN",
      503,
      `Another process writes this store (${lockPath} is locked): a courier already running on this store.path, or a \`courier outbox drop/retry\` changing it. Wait for the command to finish, or run one courier per store.path.`,
      { cause },
    );
    this.lockPath = lockPath;
  }
}

/**
 * The one-writer rule of a store file: whoever changes the store holds an open write transaction
 * on `<store.path>-lock` (the service from start to stop; `courier outbox drop/retry` for its
 * command while the service is down). The OS lock goes with the process, also when it crashes.
 * Never committed: the file stays empty.
 */
export class WriterLock {
  readonly path: string;
  readonly #db: DatabaseSync;

  private constructor(path: string, db: DatabaseSync) {
    this.path = path;
    this.#db = db;
  }

  /** Takes the lock of the store at `storePath`, waiting at most `waitMs`; throws StoreLockedError. */
  static take(storePath: string, waitMs = 0): WriterLock {
    const path = `${storePath}-lock`;
    privateFolder(dirname(path));
    const db = new DatabaseSync(path);
    try {
      db.exec(`PRAGMA busy_timeout = ${Math.max(0, Math.floor(waitMs))}`);
      db.exec("BEGIN IMMEDIATE");
      restrictToOwner(path);
    } catch (error) {
      db.close();
      if ((((error as { errcode?: number }).errcode ?? 0) & 0xff) === 5)
        throw new StoreLockedError(path, error);
      throw error;
    }
    return new WriterLock(path, db);
  }

  /** Takes the lock if nobody holds it; undefined when somebody does. */
  static tryTake(storePath: string): WriterLock | undefined {
    try {
      return WriterLock.take(storePath);
    } catch (error) {
      if (error instanceof StoreLockedError) return undefined;
      throw error;
    }
  }

  release(): void {
    if (!this.#db.isOpen) return;
    this.#db.exec("ROLLBACK");
    this.#db.close();
  }
}
