// Each entry upgrades the PostgreSQL schema by one version; never edit a shipped entry, append a
// new one. The same tables as the SQLite store, in PostgreSQL's types: seqs are bigint, times
// ms epoch bigint, a dead letter's reason jsonb.
export const PG_MIGRATIONS: readonly string[] = [
  `CREATE TABLE outbox (
     seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
     txn_id text NOT NULL UNIQUE,
     lane text NOT NULL,
     kind text NOT NULL,
     sender text NOT NULL,
     method text NOT NULL,
     path text NOT NULL,
     body text,
     state text NOT NULL DEFAULT 'pending',
     attempts integer NOT NULL DEFAULT 0,
     event_id text,
     error jsonb,
     created_at bigint NOT NULL,
     settled_at bigint
   );
   CREATE INDEX outbox_pending ON outbox (lane, seq) WHERE state = 'pending';
   CREATE INDEX outbox_settled ON outbox (settled_at) WHERE state <> 'pending';

   -- seq is given by the journal under its lock (see PgInboundJournal), not by a sequence:
   -- items must become visible in seq order.
   CREATE TABLE inbound_items (
     seq bigint PRIMARY KEY,
     item_key text NOT NULL UNIQUE,
     txn_id text NOT NULL,
     kind text NOT NULL,
     lane text NOT NULL,
     event_id text,
     json text NOT NULL,
     received_at bigint NOT NULL,
     state text,
     attempts integer NOT NULL DEFAULT 0,
     error text,
     settled_at bigint
   );
   CREATE INDEX inbound_items_trouble ON inbound_items (state, seq) WHERE state IS NOT NULL;
   CREATE TABLE inbound_pending (
     seq bigint PRIMARY KEY,
     attempts integer NOT NULL
   );
   CREATE TABLE inbound_mark (
     one boolean PRIMARY KEY DEFAULT true CHECK (one),
     last_seq bigint NOT NULL
   );
   INSERT INTO inbound_mark (last_seq) VALUES (0);

   CREATE TABLE plugin_kv (
     plugin text NOT NULL,
     key text COLLATE "C" NOT NULL,
     value text NOT NULL,
     updated_at bigint NOT NULL,
     PRIMARY KEY (plugin, key)
   );
   -- Claims of signed webhook bodies (the SQLite store keeps them as reserved keys of plugin_kv,
   -- whose NUL prefix PostgreSQL's text cannot hold).
   CREATE TABLE webhook_claims (
     plugin text NOT NULL,
     route text NOT NULL,
     hash text NOT NULL,
     delivery_id text NOT NULL,
     claimed_at bigint NOT NULL,
     PRIMARY KEY (plugin, route, hash)
   );
   CREATE TABLE plugin_schedules (
     plugin text NOT NULL,
     name text NOT NULL,
     last_slot bigint NOT NULL,
     PRIMARY KEY (plugin, name)
   );`,
  // Several instances on one database: who owns which outbox lane, until when (ms on the
  // database's clock, so the instances' clocks do not matter), and which instances are alive.
  `CREATE TABLE lane_leases (
     lane text PRIMARY KEY,
     owner text NOT NULL,
     expires_at bigint NOT NULL
   );
   CREATE INDEX lane_leases_owner ON lane_leases (owner);
   CREATE TABLE courier_instances (
     id text PRIMARY KEY,
     seen_at bigint NOT NULL
   );`,
  // A slot claimed by the instance running it: one of several instances runs each slot.
  `ALTER TABLE plugin_schedules ADD COLUMN running_holder text;
   ALTER TABLE plugin_schedules ADD COLUMN running_until bigint;`,
  // Encryption: the devices' IndexedDB state (crypto/IdbMirror) and the events waiting for keys.
  `CREATE TABLE crypto_idb_databases (
     name text PRIMARY KEY,
     version integer NOT NULL,
     schema text NOT NULL
   );
   CREATE TABLE crypto_idb_records (
     db text NOT NULL,
     store text NOT NULL,
     key bytea NOT NULL,
     value bytea NOT NULL,
     PRIMARY KEY (db, store, key)
   );
   CREATE TABLE crypto_idb_key_generators (
     db text NOT NULL,
     store text NOT NULL,
     num double precision NOT NULL,
     PRIMARY KEY (db, store)
   );
   CREATE TABLE crypto_parked_events (
     event_id text PRIMARY KEY,
     session_id text NOT NULL,
     item text NOT NULL,
     parked_at bigint NOT NULL
   );
   CREATE INDEX crypto_parked_by_session ON crypto_parked_events (session_id);`,
];
