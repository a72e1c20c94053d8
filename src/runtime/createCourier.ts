import { randomBytes } from "node:crypto";
import { hostname } from "node:os";
import type { Logger } from "pino";
import type { CourierConfig } from "../config/schema.ts";
import { openSqlite } from "../store/sqlite/SqliteDatabase.ts";
import { SqliteInboundJournal } from "../store/sqlite/SqliteInboundJournal.ts";
import { SqliteOutboxStore } from "../store/sqlite/SqliteOutboxStore.ts";
import { SqlitePluginData } from "../store/sqlite/SqlitePluginData.ts";
import { WalCheckpointer } from "../store/sqlite/WalCheckpointer.ts";
import { WriterLock } from "../store/sqlite/WriterLock.ts";
import { createPool, migratePostgres } from "../store/postgres/PgDatabase.ts";
import { PgLaneLeases, type LeasedWork } from "../store/postgres/PgLaneLeases.ts";
import { PgInboundJournal } from "../store/postgres/PgInboundJournal.ts";
import { PgCryptoStore } from "../store/postgres/PgCryptoStore.ts";
import { PgOutboxStore } from "../store/postgres/PgOutboxStore.ts";
import { PgPluginData } from "../store/postgres/PgPluginData.ts";
import { Courier, type CourierOptions, type CourierStores } from "./Courier.ts";

export interface CreateCourierOptions extends Omit<CourierOptions, "stores"> {
  /** @default the SQLite stores of `config.store` (`openSqliteStores`) */
  readonly stores?: CourierStores;
}

/**
 * The composition root: builds a Courier from its config, opening the stores it names unless
 * they are given. The CLI, embedders and tests build a Courier here, not by hand.
 */
export function createCourier(options: CreateCourierOptions): Courier {
  const { store } = options.config;
  // On PostgreSQL, instances may share the database: lanes are leased.
  const stores =
    options.stores ??
    (store.url === undefined
      ? openSqliteStores(store)
      : openPostgresStores(store.url, {
          leaseMs: store.leaseSeconds * 1000,
          ...(options.logger ? { logger: options.logger } : {}),
        }));
  return new Courier({ ...options, stores });
}

/** How long a starting service waits for a `courier outbox` command that holds the store's lock. */
const LOCK_WAIT_MS = 2000;

/**
 * The embedded stores: one SQLite file (WAL) shared by the outbox, the inbound journal and the
 * plugins' data, with its checkpoints in a worker so the commits enqueues wait for stay short.
 * Their process is the store's only writer: it holds the writer lock (WriterLock) until `close()`,
 * and throws StoreLockedError when another process holds it for longer than a command takes.
 */
export function openSqliteStores(store: Pick<CourierConfig["store"], "path" | "synchronous">): CourierStores {
  const lock = store.path === ":memory:" ? undefined : WriterLock.take(store.path, LOCK_WAIT_MS);
  let db;
  try {
    db = openSqlite({ path: store.path, synchronous: store.synchronous });
  } catch (error) {
    lock?.release();
    throw error;
  }
  const checkpointer = store.path === ":memory:" ? undefined : new WalCheckpointer(db, store.path);
  const outbox = new SqliteOutboxStore(db);
  const inbound = new SqliteInboundJournal(db);
  return {
    outbox,
    inbound,
    pluginData: new SqlitePluginData(db),
    async close() {
      // The database is shared: these commit, and close their key index files.
      await outbox.close();
      await inbound.close();
      await checkpointer?.stop();
      db.close();
      lock?.release();
    },
  };
}

export interface PostgresStoresOptions {
  /** Lease lanes (a Courier among others on the database) or not (the stores used on their own). @default true */
  readonly leased?: boolean;
  /** How long a lane lease lasts without renewal (the takeover time). @default 5000 */
  readonly leaseMs?: number;
  /** This instance's name in the lease table. @default `<hostname>-<pid>-<random>` */
  readonly instanceId?: string;
  /** Errors of idle connections (the pool replaces them). @default ignored */
  readonly onIdleError?: (error: Error) => void;
  /** Where the leases log takeovers and failed renewals. @default silent */
  readonly logger?: Logger;
}

/**
 * The stores on PostgreSQL (`store.url`): one connection pool shared by the outbox, the inbound
 * journal and the plugins' data, with the lane leases (`ownership`) that let several instances
 * share the database. Before `ready` settles, the schema is migrated (under an advisory lock:
 * instances starting together migrate once).
 */
export function openPostgresStores(url: string, options: PostgresStoresOptions = {}): CourierStores {
  const pool = createPool({ url }, options.onIdleError);
  const outbox = new PgOutboxStore(pool);
  const ready = migratePostgres(pool);
  ready.catch(() => {}); // awaited by Courier.start(); not an unhandled rejection meanwhile
  const leases = (work: LeasedWork) =>
    new PgLaneLeases(pool, {
      work,
      instanceId,
      ...(options.leaseMs === undefined ? {} : { leaseMs: options.leaseMs }),
      ...(options.logger ? { logger: options.logger.child({ component: `${work}-leases` }) } : {}),
    });
  const leased = options.leased !== false;
  // Unique per opening: two Couriers in one process (embedders, tests) are two instances.
  const instanceId = options.instanceId ?? `${hostname()}-${process.pid}-${randomBytes(3).toString("hex")}`;
  return {
    outbox,
    inbound: new PgInboundJournal(pool),
    pluginData: new PgPluginData(pool),
    ready,
    ...(leased ? { ownership: { outbox: leases("outbox"), inbound: leases("inbound") } } : {}),
    crypto: () => new PgCryptoStore(pool, options.logger?.child({ component: "crypto-store" })),
    async close() {
      await outbox.flush();
      await pool.end();
    },
  };
}
