// The dashboard's inbound panel: what the API makes of journal rows (metadata only, reasons cut),
// and how the page's script draws them: every value from the network as text, never as HTML.
import { createContext, Script } from "node:vm";
import {
  inboundViewOf,
  readInboundPanel,
  REASON_MAX_CHARS,
  type AdminState,
} from "../../../../src/ops/admin/adminState.ts";
import { DASHBOARD_SCRIPT } from "../../../../src/ops/admin/dashboardScript.ts";
import type { InboundRecord } from "../../../../src/inbound/InboundJournal.ts";
import { SqliteInboundJournal } from "../../../../src/store/sqlite/SqliteInboundJournal.ts";

const HTML = '<img src=x onerror="alert(1)"><script>alert(2)</script>&amp;';

const record = (over: Partial<InboundRecord> = {}): InboundRecord => ({
  seq: 7,
  txnId: "txn-1",
  kind: "event",
  lane: "room:!r:x",
  eventId: "$e:x",
  state: "dead",
  attempts: 3,
  error: "echo/on{m.room.message}: boom",
  json: '{"content":{"body":"a private message"}}',
  receivedAt: 1_000,
  settledAt: 2_000,
  ...over,
});

describe("inbound panel data", () => {
  test("a view is the item's metadata and reason, never the item", () => {
    const view = inboundViewOf(record());
    expect(view).toEqual({
      seq: 7,
      txnId: "txn-1",
      kind: "event",
      lane: "room:!r:x",
      eventId: "$e:x",
      attempts: 3,
      receivedAt: 1_000,
      settledAt: 2_000,
      reason: "echo/on{m.room.message}: boom",
    });
    expect(JSON.stringify(view)).not.toContain("private");
    // No event id (rejected for it), no reception time (journaled before it was recorded).
    const bare = inboundViewOf(record({ eventId: undefined, receivedAt: 0, error: undefined }));
    expect(bare).not.toHaveProperty("eventId");
    expect(bare).not.toHaveProperty("receivedAt");
    expect(bare.reason).toBe("");
  });

  test("a long reason is cut to REASON_MAX_CHARS, ending in …, never inside a surrogate pair", () => {
    const long = inboundViewOf(record({ error: "x".repeat(5000) })).reason;
    expect(long).toHaveLength(REASON_MAX_CHARS);
    expect(long.endsWith("x…")).toBe(true);
    const emoji = inboundViewOf(record({ error: "😀".repeat(REASON_MAX_CHARS) })).reason;
    expect(emoji.length).toBeLessThanOrEqual(REASON_MAX_CHARS);
    expect(emoji).toMatch(/^(😀)+…$/u);
    const exact = "y".repeat(REASON_MAX_CHARS);
    expect(inboundViewOf(record({ error: exact })).reason).toBe(exact);
  });

  test("readInboundPanel: totals, and the newest rejected and dead items of the journal", async () => {
    const journal = new SqliteInboundJournal({ path: ":memory:" });
    const item = (id: string, rejected?: string) => ({
      kind: "event" as const,
      lane: "room:!r:x",
      key: `event:${id}`,
      eventId: id,
      json: JSON.stringify({ event_id: id }),
      ...(rejected === undefined ? {} : { rejected }),
    });
    const { items } = await journal.journal("t1", [
      item("$a", "events[0] lacks `sender`"),
      item("$b"),
      item("$c"),
      item("$d", `events[3] ${HTML}`),
      item("$e"),
    ]);
    const [b, c] = items;
    await journal.record({
      begun: [b!.seq, c!.seq],
      settled: [
        { seq: b!.seq, state: "done" },
        { seq: c!.seq, state: "dead", error: HTML },
      ],
    });
    const panel = await readInboundPanel(journal, 1);
    expect(panel.totals).toEqual({ pending: 1, done: 1, dead: 1, rejected: 2 });
    expect(panel.rejected).toEqual([expect.objectContaining({ eventId: "$d", reason: `events[3] ${HTML}` })]);
    expect(panel.dead).toEqual([expect.objectContaining({ eventId: "$c", reason: HTML, txnId: "t1" })]);
    expect((await readInboundPanel(journal, 10)).rejected.map((v) => v.eventId)).toEqual(["$d", "$a"]);
    await journal.close();
  });
});

// Just enough of the DOM for the dashboard's script: elements keep their children, text nodes
// their text. There is no HTML parser: setting innerHTML (or the like) throws.
class FakeNode {
  readonly children: FakeNode[] = [];
  readonly attributes: Record<string, string> = {};
  className = "";
  clientWidth = 0;
  readonly tagName: string;
  #text: string;
  constructor(tagName: string, text = "") {
    this.tagName = tagName;
    this.#text = text;
  }
  setAttribute(name: string, value: string) {
    this.attributes[name] = String(value);
  }
  appendChild(child: unknown) {
    if (!(child instanceof FakeNode)) throw new TypeError("appendChild of a non-node");
    this.children.push(child);
    return child;
  }
  replaceChildren(...children: unknown[]) {
    this.children.length = 0;
    for (const child of children) this.appendChild(child);
  }
  addEventListener() {}
  get textContent(): string {
    return this.tagName === "#text" ? this.#text : this.children.map((c) => c.textContent).join("");
  }
  set textContent(value: string) {
    if (this.tagName === "#text") this.#text = String(value);
    else this.replaceChildren(new FakeNode("#text", String(value)));
  }
  set innerHTML(_: string) {
    throw new Error("innerHTML");
  }
  insertAdjacentHTML() {
    throw new Error("insertAdjacentHTML");
  }
  /** Every node under this one, this one included. */
  all(): FakeNode[] {
    return [this, ...this.children.flatMap((c) => c.all())];
  }
}

/** Runs the dashboard's script on `state` (as api/state would answer it); returns the page's elements. */
async function renderPage(state: AdminState): Promise<Map<string, FakeNode>> {
  const byId = new Map<string, FakeNode>();
  const created: FakeNode[] = [];
  const make = (tag: string, text?: string) => {
    const node = new FakeNode(tag, text);
    created.push(node);
    return node;
  };
  const document = {
    getElementById: (id: string) => {
      if (!byId.has(id)) byId.set(id, new FakeNode("DIV"));
      return byId.get(id);
    },
    createElement: (tag: string) => make(tag.toUpperCase()),
    createElementNS: (_ns: string, tag: string) => make(tag),
    createTextNode: (text: string) => make("#text", text),
  };
  const answered = Promise.resolve({ status: 200, ok: true, json: () => Promise.resolve(state) });
  const context = createContext({
    document,
    fetch: () => answered,
    setTimeout: () => 0,
    clearTimeout: () => {},
    location: { reload: () => {}, hash: "", pathname: "/admin/", search: "" },
  });
  new Script(DASHBOARD_SCRIPT, { filename: "app.js" }).runInContext(context);
  for (let i = 0; i < 20 && !byId.get("status")?.textContent.startsWith("updated"); i++)
    await new Promise((r) => setImmediate(r));
  expect(byId.get("status")?.textContent).toMatch(/^updated /);
  // Nothing the server sent became an element: only the tags the script itself makes.
  const tags = new Set(created.map((n) => n.tagName));
  for (const tag of tags)
    expect([
      "#text",
      "TR",
      "TD",
      "CODE",
      "SPAN",
      "BUTTON",
      "svg",
      "g",
      "rect",
      "line",
      "text",
      "title",
    ]).toContain(tag);
  return byId;
}

function stateWith(inbound: AdminState["inbound"]): AdminState {
  const now = Date.now();
  return {
    now,
    about: {},
    totals: { pending: 0, sent: 0, dead: 0 },
    counters: { sent: 0, retried: 0, dead: 0, rateLimited: 0, inFlight: 0 },
    lanes: { count: 0, shown: [] },
    recent: [],
    dead: [],
    plugins: [],
    throughput: { slotMs: 60_000, lastSlotStart: now, sent: Array(60).fill(0), dead: Array(60).fill(0) },
    inbound,
  };
}

describe("inbound panel in the page", () => {
  test("counts, and rejected and dead items with their reasons; HTML in a reason or an id is text", async () => {
    const now = Date.now();
    const rejected = inboundViewOf(
      record({ seq: 9, state: "rejected", attempts: 0, eventId: `$${HTML}`, error: `events[0] ${HTML}` }),
    );
    const dead = inboundViewOf(
      record({ seq: 8, lane: `room:!${HTML}:x`, error: HTML, receivedAt: now - 5000, settledAt: now }),
    );
    const page = await renderPage(
      stateWith({
        totals: { pending: 1, done: 1234, dead: 3, rejected: 1 },
        rejected: [rejected],
        dead: [dead],
      }),
    );
    expect(page.get("inbound-pending")!.textContent).toBe("1");
    expect(page.get("inbound-done")!.textContent).toBe("1,234");
    expect(page.get("inbound-dead")!.textContent).toBe("3");
    expect(page.get("inbound-rejected")!.textContent).toBe("1");
    expect(page.get("inbound-dead-summary")!.textContent).toBe("the newest 1 of 3");
    expect(page.get("inbound-rejected-summary")!.textContent).toBe("1");

    const [rejectedRow] = page.get("inbound-rejected-items")!.children;
    expect(rejectedRow!.attributes["data-seq"]).toBe("9");
    const rejectedCells = rejectedRow!.children.map((td) => td.textContent);
    // Received, kind, lane, event id, txn id, reason (no attempts: a rejected item never ran).
    expect(rejectedCells).toEqual([
      expect.any(String),
      "event",
      "room:!r:x",
      `$${HTML}`,
      "txn-1",
      `events[0] ${HTML}`,
    ]);

    const [deadRow] = page.get("inbound-dead-items")!.children;
    const deadCells = deadRow!.children;
    expect(deadCells.map((td) => td.textContent)).toEqual([
      expect.stringMatching(/^\d\d:\d\d:\d\d$/),
      "event",
      `room:!${HTML}:x`,
      "$e:x",
      "txn-1",
      "3",
      HTML,
    ]);
    // The reason is one text node in its cell, exactly as the server sent it.
    const reason = deadCells[6]!;
    expect(reason.attributes.class).toBe("reason");
    expect(reason.children.map((c) => c.tagName)).toEqual(["#text"]);
    expect(reason.children[0]!.textContent).toBe(HTML);
    expect(deadRow!.all().some((n) => ["IMG", "SCRIPT", "img", "script"].includes(n.tagName))).toBe(false);
  });

  test("nothing rejected or dead: a line that says so", async () => {
    const page = await renderPage(
      stateWith({ totals: { pending: 0, done: 5, dead: 0, rejected: 0 }, rejected: [], dead: [] }),
    );
    expect(page.get("inbound-rejected-items")!.textContent).toContain("Nothing rejected");
    expect(page.get("inbound-dead-items")!.textContent).toContain("No dead items");
    expect(page.get("inbound-dead-summary")!.textContent).toBe("");
  });
});
