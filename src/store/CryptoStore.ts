import type { InboundItem } from "../inbound/InboundJournal.ts";

// The crypto store: where the devices' IndexedDB state (mirrored by crypto/IdbMirror) and the
// encrypted events waiting for their keys are kept. SQLite (`sqlite/SqliteCryptoStore.ts`) or
// PostgreSQL (`postgres/PgCryptoStore.ts`), beside the other stores.

/** One object store of an IndexedDB database: what a restore recreates before the sdk opens it. */
export interface StoreSchema {
  readonly name: string;
  readonly keyPath: string | string[] | null;
  readonly autoIncrement: boolean;
  readonly indexes: ReadonlyArray<{
    name: string;
    keyPath: string | string[];
    unique: boolean;
    multiEntry: boolean;
  }>;
}

/** A change of one record store, its key and value already encoded (canonical bytes). */
export type RecordOp =
  | {
      readonly kind: "put";
      readonly db: string;
      readonly store: string;
      readonly key: Uint8Array;
      readonly value: Uint8Array;
    }
  | { readonly kind: "delete"; readonly db: string; readonly store: string; readonly key: Uint8Array }
  | { readonly kind: "clear"; readonly db: string; readonly store: string }
  | { readonly kind: "generator"; readonly db: string; readonly store: string; readonly num: number };

/** A database as stored: enough to recreate it at exactly its version. */
export interface StoredDatabase {
  readonly name: string;
  readonly version: number;
  readonly schema: StoreSchema[];
  readonly records: ReadonlyArray<{ store: string; key: Uint8Array; value: Uint8Array }>;
  readonly generators: ReadonlyArray<{ store: string; num: number }>;
}

/** What one committed IndexedDB transaction changed: written whole, or not at all. */
export type MirrorChange =
  | { readonly kind: "records"; readonly ops: readonly RecordOp[] }
  /** A versionchange transaction: the whole database, rewritten. */
  | { readonly kind: "database"; readonly database: StoredDatabase }
  | { readonly kind: "drop"; readonly name: string };

export interface MirrorStats {
  readonly databases: number;
  readonly records: number;
  /** Bytes of the stored keys and values (not the file's size). */
  readonly bytes: number;
}

/** Encrypted events waiting for the Megolm session they need. */
export interface ParkedEvents {
  park(eventId: string, sessionId: string, item: InboundItem): Promise<void>;
  /** The items waiting for this session, oldest first. */
  waitingFor(sessionId: string): Promise<InboundItem[]>;
  /** Every session something waits for. */
  sessions(): Promise<string[]>;
  done(eventId: string): Promise<void>;
  count(): Promise<number>;
  /** Drops what was parked before `before` (ms); returns how many. */
  prune(before: number): Promise<number>;
}

export interface CryptoStore {
  /**
   * Commits one change, in the order changes are written (commit order). The SQLite store
   * writes it before returning; the PostgreSQL one queues it, and retries a failed write until
   * it succeeds (a change left out would leave the stored state behind the sdk's).
   */
  write(change: MirrorChange): void;
  /** Settles once every change written so far is committed. */
  flushed(): Promise<void>;
  /** The stored databases whose name starts with `prefix`. */
  load(prefix: string): Promise<StoredDatabase[]>;
  stats(): Promise<MirrorStats>;
  readonly parked: ParkedEvents;
  /**
   * Makes this process the only one running the devices on a store that several instances
   * share; throws when another one does. Does I/O. @default nothing to claim (a file of its own)
   */
  claim?(): Promise<void>;
  /** Waits for the writes queued, then closes. */
  close(): Promise<void>;
}
