// Fuzzing the appservice endpoint over real HTTP, with a real SQLite journal on disk: random
// good transactions mixed with bad bodies, headers, paths, methods and txnIds, sent concurrently.
// Every good request is answered 200 and its events are journaled exactly once; every bad one is
// a 4xx `{errcode, error}`; the server never crashes or hangs, and no token reaches its log.
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { connect } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { DatabaseSync } from "node:sqlite";
import { Writable } from "node:stream";
import { deflateSync, gzipSync } from "node:zlib";
import fc from "fast-check";
import { Pool } from "undici";
import { createAppserviceApp, listen, type ListeningAppservice } from "../../src/inbound/AppserviceServer.ts";
import { parseTransaction } from "../../src/inbound/parseTransaction.ts";
import { createLogger } from "../../src/logging/createLogger.ts";
import { openSqlite } from "../../src/store/sqlite/SqliteDatabase.ts";
import { SqliteInboundJournal } from "../../src/store/sqlite/SqliteInboundJournal.ts";
import { fuzzParameters } from "./support/fuzzParameters.ts";

const HS_TOKEN = `hs_${randomBytes(16).toString("hex")}`;
const AS_TOKEN = `as_${randomBytes(16).toString("hex")}`;
const MAX_BODY = 256 * 1024;
const TXN_PATH = "/_matrix/app/v1/transactions/";

// ---- the model: what a request must get, and what it must leave in the journal -------------

/** A journal row as the model expects it (or as it was read back). */
interface ExpectedItem {
  readonly key: string;
  readonly txnId: string;
  readonly kind: string;
  readonly lane: string;
  readonly eventId: string | undefined;
  readonly rejected: boolean;
  readonly json: string;
}

type Expectation =
  | { readonly ok: true }
  | { readonly ok: false; readonly status: readonly number[]; readonly errcode: readonly string[] };

interface Planned {
  /** What kind of request this is, for failure messages. */
  readonly label: string;
  readonly method: string;
  readonly path: string;
  readonly headers: Record<string, string>;
  readonly body: Buffer | undefined;
  readonly expect: Expectation;
  /** A transaction answered 200: its id, its body (decoded), the items it carries. */
  readonly txn?: {
    readonly txnId: string;
    readonly body: Buffer;
    readonly items: ExpectedItem[];
  };
}

const refused = (status: number | number[], errcode: string | string[]): Expectation => ({
  ok: false,
  status: [status].flat(),
  errcode: [errcode].flat(),
});

// ---- arbitraries ---------------------------------------------------------------------------

const text = fc.string({ unit: "binary", maxLength: 24 });
const idLike = (sigil: string) =>
  fc
    .tuple(fc.string({ unit: "grapheme", minLength: 1, maxLength: 16 }), fc.domain())
    .map(([l, d]) => `${sigil}${l}:${d}`);

const content = fc.dictionary(text, fc.jsonValue({ maxDepth: 3 }), { maxKeys: 5 });

const roomEvent = fc.record(
  {
    event_id: fc.oneof(idLike("$"), text),
    room_id: fc.oneof(idLike("!"), text),
    sender: idLike("@"),
    type: fc.oneof(fc.constantFrom("m.room.message", "m.room.member", "m.reaction"), text),
    state_key: text,
    origin_server_ts: fc.nat(),
    content,
  },
  { requiredKeys: ["type", "content"] },
);
const ephemeral = fc.record(
  { type: fc.constantFrom("m.typing", "m.receipt", "m.presence"), room_id: idLike("!"), content },
  { requiredKeys: ["type", "content"] },
);
const toDevice = fc.record(
  { type: text, sender: idLike("@"), to_user_id: idLike("@"), content },
  { requiredKeys: ["type", "content"] },
);

/** A transaction as a homeserver sends it; `events: null` is how Go homeservers write "none". */
const transaction = fc.record(
  {
    events: fc.oneof({ weight: 9, arbitrary: fc.array(roomEvent, { maxLength: 8 }) }, fc.constant(null)),
    ephemeral: fc.array(ephemeral, { maxLength: 3 }),
    to_device: fc.array(toDevice, { maxLength: 3 }),
    "org.example.unknown": fc.jsonValue({ maxDepth: 2 }),
  },
  { requiredKeys: ["events"] },
);

/** txnIds as a fuzzer likes them: unicode, dots, reserved URL characters, very long. */
const txnIdSuffix = fc.oneof(
  fc.string({ unit: "grapheme", minLength: 1, maxLength: 30 }),
  fc.string({ unit: "binary", minLength: 1, maxLength: 10 }),
  fc.constantFrom(
    ".",
    "..",
    "...",
    "%",
    "%25",
    "a/b",
    "a?b=c",
    "a#b",
    " ",
    "+",
    "\u0000",
    "😀",
    "\u202e",
    "é",
  ),
  fc.integer({ min: 1000, max: 9000 }).map((n) => "x".repeat(n)),
);

const goodAuth = fc.constantFrom(
  `Bearer ${HS_TOKEN}`,
  `bearer ${HS_TOKEN}`,
  `BEARER ${HS_TOKEN}`,
  `Bearer    ${HS_TOKEN}`,
  `Bearer ${HS_TOKEN}   `,
);
const contentType = fc.constantFrom(
  undefined,
  "application/json",
  "application/json; charset=utf-8",
  "text/plain",
  "application/octet-stream",
  "multipart/form-data; boundary=x",
  "application/x-www-form-urlencoded",
  "garbage/; ;;",
);
const encoding = fc.constantFrom<"none" | "identity" | "gzip" | "deflate">(
  "none",
  "none",
  "identity",
  "gzip",
  "deflate",
);
const extraQuery = fc.constantFrom(
  "",
  "",
  "?user_id=%40x%3Ay",
  "?foo=%zz",
  `?access_token=${HS_TOKEN}`,
  "?a=1&a=2",
);

const good = fc.record({
  kind: fc.constant("good" as const),
  txn: transaction,
  suffix: txnIdSuffix,
  auth: goodAuth,
  contentType,
  encoding,
  query: extraQuery,
  /** Send it twice at once: one journal entry, two 200s. */
  twice: fc.boolean(),
});

/** A transaction padded to a size: under the limit it is good, over it 413. */
const sized = fc.record({
  kind: fc.constant("sized" as const),
  bytes: fc.oneof(
    fc.integer({ min: 100_000, max: MAX_BODY - 4096 }),
    fc.integer({ min: MAX_BODY + 1, max: 2 * MAX_BODY }),
  ),
  suffix: txnIdSuffix,
});

/** Sends an earlier good transaction again: the same body (200, nothing new) or another (a new one). */
const replay = fc.record({
  kind: fc.constant("replay" as const),
  pick: fc.nat(),
  newBody: fc.option(transaction),
});

const badAuth = fc.record({
  kind: fc.constant("badAuth" as const),
  txn: transaction,
  auth: fc.oneof(
    fc.constantFrom(
      { header: undefined, query: "" },
      { header: "", query: "" },
      { header: "Bearer", query: "" },
      { header: `Bearer ${AS_TOKEN}`, query: "" },
      { header: `Basic ${Buffer.from(`x:${HS_TOKEN}`).toString("base64")}`, query: "" },
      { header: `Token ${HS_TOKEN}`, query: "" },
      { header: HS_TOKEN, query: "" },
      { header: `Bearer ${HS_TOKEN}x`, query: "" },
      { header: `Bearer ${HS_TOKEN.slice(1)}`, query: "" },
      { header: `Bearer ${HS_TOKEN} extra`, query: "" },
      { header: `Bearer ${HS_TOKEN.toUpperCase()}`, query: "" },
      { header: undefined, query: `?access_token=${HS_TOKEN}` },
      { header: undefined, query: `?access_token=${AS_TOKEN}` },
      { header: `Bearer ${HS_TOKEN}`, query: `?access_token=${AS_TOKEN}` },
      { header: `Bearer ${HS_TOKEN}`, query: `?access_token=${HS_TOKEN}&access_token=${HS_TOKEN}` },
    ),
    fc
      .string({ unit: "grapheme-ascii", maxLength: 80 })
      .filter((s) => !s.includes(HS_TOKEN))
      .map((header) => ({ header, query: "" })),
  ),
});

const nonObjectJson = fc.jsonValue().filter((v) => v === null || typeof v !== "object" || Array.isArray(v));
const notAnArray = fc.oneof(fc.jsonValue().filter((v) => v !== null && !Array.isArray(v)));
const notAnObject = fc.oneof(
  fc.string(),
  fc.integer(),
  fc.boolean(),
  fc.array(fc.integer(), { maxLength: 3 }),
);

/** Bodies that must be refused 4xx: each kind with the status and errcode it must get. */
const badBody = fc.oneof(
  fc.constant({ label: "empty body", body: Buffer.alloc(0), expect: refused(400, "M_NOT_JSON") }),
  transaction.chain((t) => {
    const json = JSON.stringify(t);
    return fc.integer({ min: 0, max: json.length - 1 }).map((cut) => ({
      label: "truncated JSON",
      body: Buffer.from(json.slice(0, cut)),
      expect: refused(400, "M_NOT_JSON"),
    }));
  }),
  fc
    .oneof(
      fc.uint8Array({ maxLength: 200 }).map((a) => Buffer.from(a)),
      fc.string({ unit: "binary" }).map((s) => Buffer.from(s)),
    )
    .filter((b) => !isObjectJson(b))
    .map((body) => ({ label: "random bytes", body, expect: refused(400, ["M_NOT_JSON", "M_BAD_JSON"]) })),
  transaction.map((t) => ({
    label: "byte order mark",
    body: Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from(JSON.stringify(t))]),
    expect: refused(400, "M_NOT_JSON"),
  })),
  fc
    .tuple(
      fc.constantFrom(
        [0xc3, 0x28],
        [0xff],
        [0xc0, 0xaf],
        [0x80],
        [0xed, 0xa0, 0x80],
        [0xf4, 0x90, 0x80, 0x80],
        [0xe2, 0x82],
      ),
      fc.string({ unit: "grapheme-ascii", maxLength: 10 }),
    )
    .map(([bytes, around]) => ({
      label: "invalid UTF-8",
      body: Buffer.concat([
        Buffer.from(`{"events":[{"type":"m.room.message","content":{"body":"${around.replace(/["\\]/g, "")}`),
        Buffer.from(bytes),
        Buffer.from('"}}]}'),
      ]),
      expect: refused(400, "M_NOT_JSON"),
    })),
  nonObjectJson.map((v) => ({
    label: "JSON that is not an object",
    body: Buffer.from(JSON.stringify(v)),
    expect: refused(400, "M_BAD_JSON"),
  })),
  fc.integer({ min: 20_000, max: 120_000 }).map((depth) => ({
    label: `content nested ${depth} deep`,
    body: Buffer.from(`{"events":[{"type":"t","content":{"x":${"[".repeat(depth)}${"]".repeat(depth)}}}]}`),
    expect: refused(400, "M_BAD_JSON"),
  })),
);

/**
 * Parts or items of the wrong type inside a JSON object: answered 200, the odd ones journaled as
 * rejected, the good ones beside them kept (a 400 would make the homeserver resend it forever).
 */
const oddParts = fc.oneof(
  fc
    .tuple(
      transaction,
      fc.constantFrom(
        "events",
        "ephemeral",
        "to_device",
        "de.sorunome.msc2409.ephemeral",
        "de.sorunome.msc2409.to_device",
      ),
      fc.oneof(
        notAnArray.map((v) => ({ list: false, value: v })),
        fc.tuple(fc.array(fc.constant({}), { maxLength: 2 }), notAnObject).map(([objects, odd]) => ({
          list: true,
          value: [...objects, odd],
        })),
      ),
    )
    .map(([t, key, wrong]) => ({ label: `\`${key}\` of the wrong type`, txn: { ...t, [key]: wrong.value } })),
  fc
    .tuple(fc.constantFrom("device_lists", "org.matrix.msc3202.device_one_time_keys_count"), notAnObject)
    .map(([key, value]) => ({ label: `\`${key}\` not an object`, txn: { events: [], [key]: value } })),
);

const oddRequest = fc.record({
  kind: fc.constant("odd" as const),
  odd: oddParts,
  suffix: txnIdSuffix,
});

const badBodyRequest = fc.record({
  kind: fc.constant("badBody" as const),
  bad: badBody,
  contentType,
  suffix: txnIdSuffix,
});

/** Encodings: an unknown one (415), a body that is not what it says (400), a bomb (413). */
const badEncoding = fc.record({
  kind: fc.constant("badEncoding" as const),
  which: fc.constantFrom("unknown", "notGzip", "bomb"),
  txn: transaction,
});

const badRoute = fc.record({
  kind: fc.constant("badRoute" as const),
  route: fc.oneof(
    fc
      .tuple(fc.constantFrom("GET", "POST", "DELETE", "PATCH", "OPTIONS"), txnIdSuffix)
      .map(([method, id]) => ({
        method,
        path: TXN_PATH + encodeURIComponent(id),
        expect: refused(405, "M_UNRECOGNIZED"),
      })),
    fc
      .constantFrom(
        TXN_PATH,
        `${TXN_PATH}a/b`,
        "/transactions/1",
        "/_matrix/app/v2/transactions/1",
        "/_matrix/app/unstable/transactions/1",
        "/_matrix/app/v1/transaction/1",
        "/",
        "/_matrix",
        "/_matrix/app/v1/TRANSACTIONS/1",
      )
      .map((path) => ({ method: "PUT", path, expect: refused(404, "M_UNRECOGNIZED") })),
    fc.constantFrom("%", "%zz", "%E0%A4%A", "a%", "%C3%28", "%FF").map((raw) => ({
      method: "PUT",
      path: TXN_PATH + raw,
      expect: refused(400, "M_INVALID_PARAM"),
    })),
  ),
  txn: transaction,
});

/** User and alias queries for odd ids: nothing is claimed here, so each is a 404 M_NOT_FOUND. */
const query = fc.record({
  kind: fc.constant("query" as const),
  which: fc.constantFrom("users", "rooms"),
  id: txnIdSuffix,
});

/** Ping bodies: empty or an object is 200; anything else a 4xx. */
const ping = fc.record({
  kind: fc.constant("ping" as const),
  body: fc.oneof(
    fc.constant({ text: "", expect: { ok: true } as Expectation }),
    fc
      .dictionary(fc.string(), fc.jsonValue({ maxDepth: 2 }), { maxKeys: 4 })
      .map((v) => ({ text: JSON.stringify(v), expect: { ok: true } as Expectation })),
    nonObjectJson.map((v) => ({ text: JSON.stringify(v), expect: refused(400, "M_BAD_JSON") })),
    fc.string().map((v) => ({ text: `{${v}`, expect: refused(400, "M_NOT_JSON") })),
    fc.constant({ text: JSON.stringify({ pad: "p".repeat(70_000) }), expect: refused(413, "M_TOO_LARGE") }),
  ),
});

const request = fc.oneof(
  { weight: 6, arbitrary: good },
  { weight: 1, arbitrary: query },
  { weight: 1, arbitrary: ping },
  { weight: 1, arbitrary: sized },
  { weight: 2, arbitrary: replay },
  { weight: 3, arbitrary: badAuth },
  { weight: 3, arbitrary: badBodyRequest },
  { weight: 2, arbitrary: oddRequest },
  { weight: 1, arbitrary: badEncoding },
  { weight: 2, arbitrary: badRoute },
);
type RequestSpec = typeof request extends fc.Arbitrary<infer T> ? T : never;

function isObjectJson(body: Buffer): boolean {
  try {
    const value: unknown = JSON.parse(
      new TextDecoder("utf-8", { fatal: true, ignoreBOM: true }).decode(body),
    );
    return typeof value === "object" && value !== null && !Array.isArray(value);
  } catch {
    return false;
  }
}

// ---- from specs to requests ---------------------------------------------------------------

/**
 * The items a transaction answered 200 carries, in order, with their keys. Splitting a body into
 * items is parseTransaction's contract, tested on its own; here the question is whether the
 * endpoint journals each item once per key, in order, and loses none.
 */
function expectedItems(txnId: string, body: Buffer): ExpectedItem[] {
  const parsed = parseTransaction(body, txnId);
  if (!parsed.ok) throw new Error(`the model's good transaction is refused: ${parsed.detail}`);
  return parsed.items.map((item) => ({
    key: item.key,
    txnId,
    kind: item.kind,
    lane: item.lane,
    eventId: item.eventId,
    rejected: item.rejected !== undefined,
    json: item.json,
  }));
}

interface SentGood {
  readonly txnId: string;
  readonly body: Buffer;
}

/** Turns one spec into requests; `unique` makes the txnId unique to this request. */
function plan(spec: RequestSpec, unique: string, earlier: readonly SentGood[]): Planned[] {
  const auth = { authorization: `Bearer ${HS_TOKEN}` };
  const goodTxn = (txnId: string, body: Buffer) => ({ txnId, body, items: expectedItems(txnId, body) });
  switch (spec.kind) {
    case "good": {
      const txnId = `${unique}${spec.suffix}`;
      const body = Buffer.from(JSON.stringify(spec.txn));
      const encoded =
        spec.encoding === "gzip" ? gzipSync(body) : spec.encoding === "deflate" ? deflateSync(body) : body;
      const one: Planned = {
        label: `good (${spec.encoding}, ${spec.contentType ?? "no content type"})`,
        method: "PUT",
        path: TXN_PATH + encodeURIComponent(txnId) + spec.query,
        headers: {
          authorization: spec.auth,
          ...(spec.contentType ? { "content-type": spec.contentType } : {}),
          ...(spec.encoding === "none" ? {} : { "content-encoding": spec.encoding }),
        },
        body: encoded,
        expect: { ok: true },
        txn: goodTxn(txnId, body),
      };
      return spec.twice ? [one, one] : [one];
    }
    case "sized": {
      const txnId = `${unique}${spec.suffix}`;
      const skeleton = {
        events: [{ type: "org.example.padding", room_id: "!pad:x", content: { padding: "" } }],
      };
      const padding = "p".repeat(Math.max(0, spec.bytes - JSON.stringify(skeleton).length));
      const t = { events: [{ ...skeleton.events[0]!, content: { padding } }] };
      const body = Buffer.from(JSON.stringify(t));
      const fits = body.length <= MAX_BODY;
      return [
        {
          label: `${body.length} bytes`,
          method: "PUT",
          path: TXN_PATH + encodeURIComponent(txnId),
          headers: auth,
          body,
          expect: fits ? { ok: true } : refused(413, "M_TOO_LARGE"),
          ...(fits ? { txn: goodTxn(txnId, body) } : {}),
        },
      ];
    }
    case "replay": {
      const before = earlier[spec.pick % Math.max(1, earlier.length)];
      if (!before) return [];
      const body = spec.newBody ? Buffer.from(JSON.stringify(spec.newBody)) : before.body;
      return [
        {
          label: spec.newBody ? "a used txnId with another body" : "a replay",
          method: "PUT",
          path: TXN_PATH + encodeURIComponent(before.txnId),
          headers: auth,
          body,
          expect: { ok: true },
          txn: goodTxn(before.txnId, body),
        },
      ];
    }
    case "odd": {
      const txnId = `${unique}${spec.suffix}`;
      const body = Buffer.from(JSON.stringify(spec.odd.txn));
      return [
        {
          label: spec.odd.label,
          method: "PUT",
          path: TXN_PATH + encodeURIComponent(txnId),
          headers: auth,
          body,
          expect: { ok: true },
          txn: goodTxn(txnId, body),
        },
      ];
    }
    case "badAuth": {
      const header = spec.auth.header;
      // No usable header is "missing" (a query token is refused by default), anything else "wrong".
      const missing = (header?.trim() ?? "") === "";
      return [
        {
          label: `auth ${JSON.stringify(header)} ${spec.auth.query}`
            .replaceAll(HS_TOKEN, "<hs>")
            .replaceAll(AS_TOKEN, "<as>"),
          method: "PUT",
          path: TXN_PATH + `${unique}auth` + spec.auth.query,
          headers: header === undefined ? { "content-type": "application/json" } : { authorization: header },
          body: Buffer.from(JSON.stringify(spec.txn)),
          expect: missing ? refused(401, "M_MISSING_TOKEN") : refused(403, "M_FORBIDDEN"),
        },
      ];
    }
    case "badBody":
      return [
        {
          label: spec.bad.label,
          method: "PUT",
          path: TXN_PATH + encodeURIComponent(`${unique}${spec.suffix}`),
          headers: { ...auth, ...(spec.contentType ? { "content-type": spec.contentType } : {}) },
          body: spec.bad.body,
          expect: spec.bad.expect,
        },
      ];
    case "badEncoding": {
      const body = Buffer.from(JSON.stringify(spec.txn));
      const [headers, sent, expect] =
        spec.which === "unknown"
          ? [{ "content-encoding": "snappy" }, body, refused(415, "M_UNKNOWN")]
          : spec.which === "notGzip"
            ? [{ "content-encoding": "gzip" }, body, refused(400, "M_UNKNOWN")]
            : [
                { "content-encoding": "gzip" },
                gzipSync(Buffer.alloc(MAX_BODY * 4, 0x20)),
                refused(413, "M_TOO_LARGE"),
              ];
      return [
        {
          label: `encoding ${spec.which}`,
          method: "PUT",
          path: TXN_PATH + `${unique}enc`,
          headers: { ...auth, ...headers },
          body: sent,
          expect,
        },
      ];
    }
    case "badRoute":
      return [
        {
          label: `${spec.route.method} ${spec.route.path.slice(0, 80)}`,
          method: spec.route.method,
          path: spec.route.path,
          headers: auth,
          body:
            spec.route.method === "GET" || spec.route.method === "OPTIONS"
              ? undefined
              : Buffer.from(JSON.stringify(spec.txn)),
          expect: spec.route.expect,
        },
      ];
    case "query":
      return [
        {
          label: `query ${spec.which}`,
          method: "GET",
          path: `/_matrix/app/v1/${spec.which}/${encodeURIComponent(spec.id)}`,
          headers: auth,
          body: undefined,
          expect: refused(404, "M_NOT_FOUND"),
        },
      ];
    case "ping":
      return [
        {
          label: `ping ${spec.body.text.slice(0, 40)}`,
          method: "POST",
          path: "/_matrix/app/v1/ping",
          headers: auth,
          body: Buffer.from(spec.body.text),
          expect: spec.body.expect,
        },
      ];
  }
}

// ---- the server under test ------------------------------------------------------------------

const dir = mkdtempSync(join(tmpdir(), "courier-fuzz-as-"));
const logLines: string[] = [];
const logger = createLogger({
  level: "debug",
  destination: new Writable({
    write(chunk, _encoding, done) {
      logLines.push(...String(chunk).split("\n").filter(Boolean));
      done();
    },
  }),
});

/** The endpoint on a journal file; stopped and started again on the same file for a restart. */
class Server {
  readonly path: string;
  db!: DatabaseSync;
  journal!: SqliteInboundJournal;
  #listening!: ListeningAppservice;
  #pool!: Pool;

  constructor(path: string) {
    this.path = path;
  }

  get port(): number {
    return this.#listening.port;
  }

  async start(): Promise<this> {
    this.db = openSqlite({ path: this.path });
    this.journal = new SqliteInboundJournal(this.db);
    const app = createAppserviceApp({
      hsToken: HS_TOKEN,
      journal: this.journal,
      maxBodyBytes: MAX_BODY,
      logger,
    });
    this.#listening = await listen(app, { host: "127.0.0.1", port: 0 });
    this.#pool = new Pool(`http://127.0.0.1:${this.#listening.port}`, {
      connections: 8,
      headersTimeout: 15_000,
      bodyTimeout: 15_000,
    });
    return this;
  }

  async stop(): Promise<void> {
    await this.#pool.close();
    await this.#listening.close(2000);
    await this.journal.close(); // commits its key index and lets go of its write lock
    this.db.close();
  }

  async send(p: Planned): Promise<Answer> {
    const res = await this.#pool.request({
      method: p.method as "PUT",
      path: p.path,
      headers: p.headers,
      body: p.body,
    });
    const text = await res.body.text();
    return { status: res.statusCode, contentType: String(res.headers["content-type"] ?? ""), text };
  }
}

afterAll(() => rmSync(dir, { recursive: true, force: true }));

interface Answer {
  readonly status: number;
  readonly contentType: string;
  readonly text: string;
}

function check(p: Planned, answer: Answer): void {
  const where = `${p.label} → ${answer.status} ${answer.text.slice(0, 200)}`;
  expect({ where, contentType: answer.contentType }).toEqual({
    where,
    contentType: expect.stringMatching(/^application\/json/),
  });
  const json = JSON.parse(answer.text) as Record<string, unknown>;
  if (p.expect.ok) {
    expect({ where, status: answer.status, json }).toEqual({ where, status: 200, json: {} });
    return;
  }
  expect({ where, keys: Object.keys(json).sort(), error: typeof json.error }).toEqual({
    where,
    keys: ["errcode", "error"],
    error: "string",
  });
  expect({
    where,
    status: p.expect.status.includes(answer.status),
    errcode: p.expect.errcode.includes(json.errcode as string),
  }).toEqual({ where, status: true, errcode: true });
  expect(answer.text).not.toMatch(/<html|<pre|\n\s+at |node_modules/i);
}

/** Every row of the journal, in seq order. */
function journaledRows(db: DatabaseSync): ExpectedItem[] {
  const rows = db
    .prepare("SELECT item_key, txn_id, kind, lane, event_id, state, json FROM inbound_items ORDER BY seq")
    .all() as Array<Record<string, string | null>>;
  return rows.map((r) => ({
    key: r.item_key!,
    txnId: r.txn_id!,
    kind: r.kind!,
    lane: r.lane!,
    eventId: r.event_id ?? undefined,
    rejected: r.state === "rejected",
    json: r.json!,
  }));
}

/**
 * Where the journal and the model disagree, briefly (txnIds can be 9000 characters long): every
 * key of a transaction answered 200 is journaled once, as one of the items carrying it, and no
 * other; the items a transaction journaled are in its order.
 */
function differences(sent: readonly ExpectedItem[][], rows: readonly ExpectedItem[]): string[] {
  const out: string[] = [];
  const short = (text: string) =>
    JSON.stringify(text.length > 60 ? `${text.slice(0, 60)}…(${text.length})` : text);
  const carriers = new Map<string, string[]>();
  for (const item of sent.flat()) {
    carriers.set(item.key, [...(carriers.get(item.key) ?? []), JSON.stringify(item)]);
  }
  const seqOf = new Map<string, number>();
  rows.forEach((row, seq) => {
    if (seqOf.has(row.key)) out.push(`${short(row.key)} journaled twice`);
    seqOf.set(row.key, seq);
    const options = carriers.get(row.key);
    if (!options) out.push(`${short(row.key)} journaled, but no transaction answered 200 carries it`);
    else if (!options.includes(JSON.stringify(row)))
      out.push(`${short(row.key)}: journaled ${short(JSON.stringify(row))}, sent ${short(options[0]!)}`);
  });
  for (const key of carriers.keys()) if (!seqOf.has(key)) out.push(`${short(key)} lost`);
  for (const items of sent) {
    // The items this send journaled: under its txnId, and carried by no other send of that txnId
    // (a reused txnId's earlier send may have journaled some of them first).
    const others = new Set(
      sent.filter((o) => o !== items && o[0]?.txnId === items[0]?.txnId).flatMap((o) => o.map((i) => i.key)),
    );
    const mine = items.filter(
      (item) => !others.has(item.key) && rows[seqOf.get(item.key) ?? -1]?.txnId === item.txnId,
    );
    const seqs = mine.map((item) => seqOf.get(item.key)!);
    if (seqs.some((seq, i) => i > 0 && seq <= seqs[i - 1]!))
      out.push(`${short(items[0]!.txnId)}: items journaled out of order`);
  }
  return out.slice(0, 5);
}

/** Batches sent one after the other (the requests of a batch at once), sometimes after a restart. */
const batches = fc.array(
  fc.record({
    restart: fc.oneof({ weight: 4, arbitrary: fc.constant(false) }, fc.constant(true)),
    requests: fc.array(request, { minLength: 1, maxLength: 10 }),
  }),
  { minLength: 1, maxLength: 4 },
);

test("random and malformed transactions: 200 and each item journaled once, or a 4xx Matrix error; nothing lost", async () => {
  let run = 0;
  await fc.assert(
    fc.asyncProperty(batches, async (batchList) => {
      // A fresh journal per run, so a failing run cannot spoil the runs that shrink it.
      const server = await new Server(join(dir, `run${++run}.sqlite`)).start();
      // The model: the items of every transaction answered 200; good bodies sent, to send again.
      const sentItems: ExpectedItem[][] = [];
      const sentGood: SentGood[] = [];
      try {
        for (const [b, batch] of batchList.entries()) {
          if (batch.restart) {
            await server.stop();
            await server.start();
          }
          const earlier = [...sentGood];
          const planned = batch.requests.flatMap((spec, i) => plan(spec, `b${b}.${i}-`, earlier));
          const answers = await Promise.all(planned.map((p) => server.send(p)));
          planned.forEach((p, i) => check(p, answers[i]!));

          for (const p of planned) {
            if (!p.txn) continue;
            sentGood.push({ txnId: p.txn.txnId, body: p.txn.body });
            sentItems.push(p.txn.items);
          }
          // Each item once, none lost, none from a refused request, each transaction's in order.
          expect(differences(sentItems, journaledRows(server.db))).toEqual([]);
        }
      } finally {
        await server.stop();
      }
    }),
    fuzzParameters("appservice endpoint", { numRuns: 50, timeLimitMs: 20_000 }),
  );
  expect(run).toBeGreaterThan(0);
  // Every request above carried a token, right or wrong, in a header or the query string.
  const log = logLines.join("\n");
  expect(log).not.toContain(HS_TOKEN);
  expect(log).not.toContain(AS_TOKEN);
}, 60_000);

// ---- below express: what Node's HTTP parser refuses ----------------------------------------

interface RawCase {
  readonly label: string;
  readonly bytes: Buffer;
  /** Status the server must answer; undefined: it may also just close (nothing to answer). */
  readonly status: number | undefined;
}

const crlf = (...lines: string[]) => Buffer.from(`${lines.join("\r\n")}\r\n\r\n`);

const rawCase: fc.Arbitrary<RawCase> = fc.oneof(
  fc.integer({ min: 17_000, max: 60_000 }).map((n) => ({
    label: `request line of ${n} bytes`,
    bytes: crlf(`PUT ${TXN_PATH}${"x".repeat(n)} HTTP/1.1`, "Host: x", `Authorization: Bearer ${HS_TOKEN}`),
    status: 431,
  })),
  fc.integer({ min: 17_000, max: 60_000 }).map((n) => ({
    label: `a header of ${n} bytes`,
    bytes: crlf(`PUT ${TXN_PATH}h HTTP/1.1`, "Host: x", `X-Fill: ${"y".repeat(n)}`),
    status: 431,
  })),
  fc
    .string({ unit: "grapheme-ascii", minLength: 1, maxLength: 60 })
    .filter((line) => !/^[!-~]+ [!-~]+ HTTP\/1\.[01]$/.test(line))
    .map((line) => ({ label: `request line ${JSON.stringify(line)}`, bytes: crlf(line), status: 400 })),
  fc.constantFrom(0x00, 0x01, 0x7f, 0x0b).map((c) => ({
    label: `control character 0x${c.toString(16)} in a header`,
    bytes: crlf(`PUT ${TXN_PATH}c HTTP/1.1`, "Host: x", `X-Bad: a${String.fromCharCode(c)}b`),
    status: 400,
  })),
  fc.constantFrom("abc", "-1", "1, 2", "99999999999999999999").map((length) => ({
    label: `Content-Length: ${length}`,
    bytes: crlf(`PUT ${TXN_PATH}cl HTTP/1.1`, "Host: x", `Content-Length: ${length}`),
    status: 400,
  })),
  fc.uint8Array({ minLength: 1, maxLength: 300 }).map((a) => ({
    label: "random bytes",
    bytes: Buffer.from(a),
    status: undefined,
  })),
  fc.integer({ min: 1, max: 500 }).map((sent) => ({
    label: `a body cut after ${sent} of 1000 bytes`,
    bytes: Buffer.concat([
      crlf(
        `PUT ${TXN_PATH}cut HTTP/1.1`,
        "Host: x",
        `Authorization: Bearer ${HS_TOKEN}`,
        "Content-Length: 1000",
      ),
      Buffer.from("{".repeat(sent)),
    ]),
    status: undefined,
  })),
);

/** Writes raw bytes, half-closes, and reads until the server closes (or 10 s pass). */
function rawExchange(port: number, bytes: Buffer): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, "127.0.0.1");
    const chunks: Buffer[] = [];
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error("the server neither answered nor closed within 10 s"));
    }, 10_000);
    socket.on("data", (chunk) => chunks.push(chunk));
    socket.on("error", () => {}); // a reset after the answer is fine; the answer is what counts
    socket.on("close", () => {
      clearTimeout(timer);
      resolve(Buffer.concat(chunks).toString("latin1"));
    });
    socket.end(bytes);
  });
}

test("bytes Node's HTTP parser refuses are answered as Matrix JSON; the server stays up", async () => {
  const server = await new Server(join(dir, "raw.sqlite")).start();
  try {
    await fc.assert(
      fc.asyncProperty(rawCase, async (c) => {
        const reply = await rawExchange(server.port, c.bytes);
        const where = `${c.label} → ${JSON.stringify(reply.slice(0, 200))}`;
        if (reply === "") {
          expect({ where, mayClose: c.status === undefined }).toEqual({ where, mayClose: true });
        } else {
          const [head = "", body = ""] = reply.split("\r\n\r\n");
          const status = Number(/^HTTP\/1\.1 (\d{3}) /.exec(head)?.[1]);
          expect({ where, status: c.status === undefined ? status >= 400 && status < 500 : status }).toEqual({
            where,
            status: c.status ?? true,
          });
          expect({ where, json: /^content-type: application\/json/im.test(head) }).toEqual({
            where,
            json: true,
          });
          expect(Object.keys(JSON.parse(body) as object).sort()).toEqual(["errcode", "error"]);
        }
        // Still serving.
        expect((await server.send({ ...healthCheck })).status).toBe(200);
      }),
      fuzzParameters("appservice HTTP parser", { numRuns: 40, timeLimitMs: 10_000 }),
    );
    expect((await server.journal.pending(0, 10)).items).toEqual([]);
  } finally {
    await server.stop();
  }
}, 60_000);

const healthCheck: Planned = {
  label: "health",
  method: "GET",
  path: "/health",
  headers: {},
  body: undefined,
  expect: { ok: true },
};
