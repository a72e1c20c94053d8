// The store kinds the contract suites run on, each opened the way the service opens it
// (openSqliteStores, openPostgresStores): a SQLite file in a temporary folder, or a database of
// a throwaway PostgreSQL cluster (one per test file). Every test gets an empty database of its
// own; `reopen` closes its stores and opens the same database again, as a restart does.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { DatabaseSync } from "node:sqlite";
import pg from "pg";
import type { CourierStores } from "../../../../src/runtime/Courier.ts";
import { openPostgresStores, openSqliteStores } from "../../../../src/runtime/createCourier.ts";
import { startPostgresCluster } from "../../../support/postgresCluster.ts";

/** `INSERT`, or `UPDATE OF <column>`: the writes a sabotage trigger fires on. */
export type WriteEvent = "INSERT" | `UPDATE OF ${string}`;

interface Server {
  /** A new empty database: a file path or a URL. */
  create(): Promise<string>;
  open(where: string): Promise<CourierStores>;
  /** Runs statements on the database from a connection of its own. */
  exec(where: string, sql: string): Promise<void>;
  /** The statements that add, and drop, a trigger making matching writes fail with "boom". */
  boomTrigger(table: string, event: WriteEvent, when: string): { add: string; drop: string };
  stop(): Promise<void>;
}

export interface StoreKind {
  readonly name: "sqlite" | "postgres";
  /** Once per test file. */
  readonly start: () => Promise<Server>;
}

const sqlite: StoreKind = {
  name: "sqlite",
  start: async () => {
    const folders: string[] = [];
    return {
      async create() {
        const folder = mkdtempSync(join(tmpdir(), "courier-contract-"));
        folders.push(folder);
        return join(folder, "courier.sqlite");
      },
      async open(path) {
        return openSqliteStores({ path, synchronous: "NORMAL" });
      },
      // Another connection to the file: the store's own sees the schema change at its next statement.
      async exec(path, sql) {
        const db = new DatabaseSync(path);
        try {
          db.exec("PRAGMA busy_timeout = 5000");
          db.exec(sql);
        } finally {
          db.close();
        }
      },
      boomTrigger: (table, event, when) => ({
        add: `CREATE TRIGGER boom BEFORE ${event} ON ${table} WHEN ${when} BEGIN SELECT RAISE(ABORT, 'boom'); END`,
        drop: "DROP TRIGGER boom",
      }),
      async stop() {
        for (const folder of folders) rmSync(folder, { recursive: true, force: true });
      },
    };
  },
};

const postgres: StoreKind = {
  name: "postgres",
  start: async () => {
    const cluster = await startPostgresCluster();
    return {
      create: () => cluster.createDatabase(),
      async open(url) {
        const stores = openPostgresStores(url);
        await stores.ready;
        return stores;
      },
      async exec(url, sql) {
        const client = new pg.Client(url);
        await client.connect();
        try {
          await client.query(sql);
        } finally {
          await client.end();
        }
      },
      boomTrigger: (table, event, when) => ({
        add: `CREATE OR REPLACE FUNCTION boom() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'boom'; END $$;
          CREATE TRIGGER boom BEFORE ${event} ON ${table} FOR EACH ROW WHEN (${when}) EXECUTE FUNCTION boom()`,
        drop: `DROP TRIGGER boom ON ${table}`,
      }),
      stop: () => cluster.stop(),
    };
  },
};

export const STORE_KINDS: readonly StoreKind[] = [sqlite, postgres];

export interface ContractStores {
  /** Stores on this test's empty database (the same ones when called again). */
  open(): Promise<CourierStores>;
  /** Closes this test's stores and opens its database again: what a restart finds. */
  reopen(): Promise<CourierStores>;
  /** This test's database: a file path or a URL. */
  where(): string;
  /**
   * Makes writes to `table` fail (with "boom") where `when` holds, an SQL condition on `NEW`
   * that both databases read alike; resolves a function that undoes it.
   */
  failWrites(table: string, event: WriteEvent, when: string): Promise<() => Promise<void>>;
}

/** Registers the hooks of a suite on `kind` (call it inside its describe); its tests use what it returns. */
export function useStores(kind: StoreKind): ContractStores {
  let server: Server | undefined;
  let where: string | undefined;
  let opened: CourierStores | undefined;
  const need = <T>(value: T | undefined): T => {
    if (value === undefined)
      throw new Error(`The ${kind.name} stores are not set up (useStores in a describe)`);
    return value;
  };
  beforeAll(async () => {
    server = await kind.start();
  }, 60_000);
  afterAll(async () => {
    await server?.stop();
  }, 30_000);
  beforeEach(async () => {
    where = await need(server).create();
  });
  afterEach(async () => {
    await opened?.close();
    opened = undefined;
  });
  const stores: ContractStores = {
    async open() {
      opened ??= await need(server).open(need(where));
      return opened;
    },
    async reopen() {
      await opened?.close();
      opened = undefined;
      return stores.open();
    },
    where: () => need(where),
    async failWrites(table, event, when) {
      const s = need(server);
      const database = need(where);
      const trigger = s.boomTrigger(table, event, when);
      await s.exec(database, trigger.add);
      return () => s.exec(database, trigger.drop);
    },
  };
  return stores;
}
