// The InboundJournal contract (src/inbound/InboundJournal.ts), on every store kind alike.
import type { InboundJournal, NewInboundItem } from "../../../../src/inbound/InboundJournal.ts";
import { STORE_KINDS, useStores } from "./storeKinds.ts";

const event = (id: string, room = "!a:x"): NewInboundItem => ({
  kind: "event",
  lane: `room:${room}`,
  key: `event:${id}`,
  eventId: id,
  json: JSON.stringify({ event_id: id, room_id: room, type: "m.room.message" }),
});
const rejected = (key: string, reason: string): NewInboundItem => ({
  kind: "event",
  lane: "room:unknown",
  key,
  eventId: undefined,
  json: "{}",
  rejected: reason,
});
const ids = async (journal: InboundJournal) => (await journal.pending(0, 100)).items.map((i) => i.eventId);

describe.each(STORE_KINDS)("InboundJournal on $name", (kind) => {
  const stores = useStores(kind);
  const inbound = async () => (await stores.open()).inbound;

  test("journals a transaction's items in order and returns them; pending reads them in windows", async () => {
    const journal = await inbound();
    expect(await journal.lastSeq()).toBe(0);
    expect(await journal.pending(0, 10)).toEqual({ items: [], readUpTo: 0 });
    const items = [event("$1"), event("$2", "!b:x"), event("$3")];
    const outcome = await journal.journal("1", items);
    expect(outcome).toMatchObject({ rejected: 0, duplicates: 0, afterSeq: 0, upToSeq: 3 });
    const { items: all, readUpTo } = await journal.pending(0, 10);
    expect(readUpTo).toBe(3);
    expect(outcome.items).toEqual(all);
    // The first dispatch is counted as the item is journaled.
    expect(all.map((i) => [i.txnId, i.eventId, i.lane, i.kind, i.key, i.attempts])).toEqual([
      ["1", "$1", "room:!a:x", "event", "event:$1", 1],
      ["1", "$2", "room:!b:x", "event", "event:$2", 1],
      ["1", "$3", "room:!a:x", "event", "event:$3", 1],
    ]);
    expect(await journal.lastSeq()).toBe(3);
    expect(all[0]!.json).toBe(items[0]!.json);
    const seqs = all.map((i) => i.seq);
    expect(seqs).toEqual([...seqs].sort((a, b) => a - b));
    const window = await journal.pending(seqs[0]!, 1);
    expect([window.items.map((i) => i.eventId), window.readUpTo]).toEqual([["$2"], seqs[1]]);
    expect(await journal.pending(seqs[2]!, 10)).toEqual({ items: [], readUpTo: 3 });
    // The next transaction's items come after these.
    const next = await journal.journal("2", [event("$4")]);
    expect(next).toMatchObject({ afterSeq: 3, upToSeq: 4, items: [{ seq: 4, eventId: "$4" }] });
    // A transaction with nothing in it (a homeserver's empty push).
    expect(await journal.journal("3", [])).toEqual({
      items: [],
      rejected: 0,
      duplicates: 0,
      afterSeq: 4,
      upToSeq: 4,
    });
  });

  test("an item is journaled once per key, whatever transaction carries it", async () => {
    const journal = await inbound();
    await journal.journal("1", [event("$1"), event("$2")]);
    // Synapse's retry of the same transaction: the same event ids, re-serialised.
    const retry = await journal.journal("1", [event("$1"), event("$2")]);
    expect(retry).toMatchObject({ items: [], duplicates: 2, afterSeq: 2 });
    // Another transaction carrying one of them, and a new one.
    const other = await journal.journal("2", [event("$2"), event("$3")]);
    expect(other.items.map((i) => i.eventId)).toEqual(["$3"]);
    expect(other.duplicates).toBe(1);
    expect(await ids(journal)).toEqual(["$1", "$2", "$3"]);
    // The same key twice in one transaction.
    const twice = await journal.journal("3", [event("$4"), event("$4")]);
    expect([twice.items.map((i) => i.eventId), twice.duplicates]).toEqual([["$4"], 1]);
  });

  test("transactions journaled at once each get seqs of their own, all read back in seq order", async () => {
    const journal = await inbound();
    const outcomes = await Promise.all(
      Array.from({ length: 8 }, (_, t) =>
        journal.journal(`t${t}`, [event(`$${t}a`), event(`$${t}b`, "!b:x")]),
      ),
    );
    const seqs = outcomes.flatMap((o) => o.items.map((i) => i.seq));
    expect(new Set(seqs).size).toBe(16);
    for (const o of outcomes) expect(o.upToSeq - o.afterSeq).toBe(2);
    const { items, readUpTo } = await journal.pending(0, 100);
    expect(items.map((i) => i.seq)).toEqual([...seqs].sort((a, b) => a - b));
    expect(readUpTo).toBe(Math.max(...seqs));
  });

  test("a reused txnId with new events journals them (a homeserver whose counter was reset)", async () => {
    const journal = await inbound();
    await journal.journal("1", [event("$1")]);
    expect((await journal.journal("1", [event("$2")])).items.map((i) => [i.txnId, i.eventId])).toEqual([
      ["1", "$2"],
    ]);
    expect(await ids(journal)).toEqual(["$1", "$2"]);
  });

  test("rejected items are kept with their reason, take a seq, and are never pending", async () => {
    const journal = await inbound();
    const outcome = await journal.journal("1", [event("$1"), rejected("bad:1", "no content"), event("$2")]);
    expect(outcome).toMatchObject({ rejected: 1, afterSeq: 0, upToSeq: 3 });
    expect(outcome.items.map((i) => i.eventId)).toEqual(["$1", "$2"]);
    expect(await ids(journal)).toEqual(["$1", "$2"]);
    expect(await journal.list({ state: "rejected", limit: 10 })).toEqual([
      expect.objectContaining({
        seq: 2,
        state: "rejected",
        error: "no content",
        txnId: "1",
        eventId: undefined,
        json: "{}",
        receivedAt: expect.any(Number),
        settledAt: expect.any(Number),
      }),
    ]);
    expect(await journal.totals()).toEqual({ pending: 2, done: 0, dead: 0, rejected: 1 });
    // The same rejected item again is a duplicate, like any other.
    expect(await journal.journal("1", [rejected("bad:1", "no content")])).toMatchObject({
      rejected: 0,
      duplicates: 1,
    });
  });

  test("dedupe survives reopening", async () => {
    await (await inbound()).journal("7", [event("$1")]);
    const again = (await stores.reopen()).inbound;
    expect(await again.journal("8", [event("$1")])).toMatchObject({ items: [], duplicates: 1 });
    expect(await ids(again)).toEqual(["$1"]);
  });

  test("record counts begun dispatches and settles outcomes in one commit; the first outcome stays", async () => {
    const journal = await inbound();
    await journal.journal("1", [event("$1"), event("$2"), event("$3")]);
    const [a, b] = (await journal.pending(0, 10)).items;
    await journal.record({ begun: [a!.seq, b!.seq, a!.seq], settled: [] });
    expect((await journal.pending(0, 10)).items.map((i) => i.attempts)).toEqual([3, 2, 1]);
    await journal.record({
      begun: [],
      settled: [
        { seq: a!.seq, state: "done" },
        { seq: b!.seq, state: "dead", error: "handler threw" },
      ],
    });
    await journal.record({ begun: [b!.seq], settled: [{ seq: b!.seq, state: "done" }] });
    await journal.record({ begun: [], settled: [] });
    expect(await journal.totals()).toEqual({ pending: 1, done: 1, dead: 1, rejected: 0 });
    expect(await ids(journal)).toEqual(["$3"]);
    expect(await journal.list({ state: "dead", limit: 10 })).toEqual([
      expect.objectContaining({
        eventId: "$2",
        attempts: 2,
        error: "handler threw",
        settledAt: expect.any(Number),
      }),
    ]);
    expect((await journal.list({ limit: 10 })).map((r) => [r.eventId, r.state])).toEqual([
      ["$2", "dead"],
      ["$1", "done"],
    ]);
    expect((await journal.list({ state: "done", limit: 10 })).map((r) => r.eventId)).toEqual(["$1"]);
    expect((await journal.list({ limit: 1 })).map((r) => r.eventId)).toEqual(["$2"]);
    // Settled twice in one batch: the first outcome stays there too.
    const c = (await journal.pending(0, 10)).items[0]!;
    await journal.record({
      begun: [],
      settled: [
        { seq: c.seq, state: "done" },
        { seq: c.seq, state: "dead", error: "late" },
      ],
    });
    expect(await journal.totals()).toEqual({ pending: 0, done: 2, dead: 1, rejected: 0 });
  });

  test("a dead letter's error is kept whatever characters it holds, and the batch with it", async () => {
    const journal = await inbound();
    await journal.journal("1", [event("$1"), event("$2")]);
    const [one, two] = (await journal.pending(0, 10)).items;
    const error = 'unknown command "\u0000é 🎉" \\u0000';
    await journal.record({
      begun: [],
      settled: [
        { seq: one!.seq, state: "done" },
        { seq: two!.seq, state: "dead", error },
      ],
    });
    // PostgreSQL's text cannot hold NUL: it shows U+FFFD there (withoutNul).
    const kept = kind.name === "postgres" ? error.replace("\u0000", "\uFFFD") : error;
    expect(await journal.list({ limit: 10 })).toEqual([
      expect.objectContaining({ seq: two!.seq, state: "dead", error: kept }),
      expect.objectContaining({ seq: one!.seq, state: "done" }),
    ]);
  });

  test("a failed record commits nothing of its batch", async () => {
    const journal = await inbound();
    await journal.journal("1", [event("$1"), event("$2")]);
    const [one, two] = (await journal.pending(0, 10)).items;
    const repair = await stores.failWrites("inbound_items", "UPDATE OF state", "NEW.state = 'dead'");
    await expect(
      journal.record({
        begun: [one!.seq],
        settled: [
          { seq: one!.seq, state: "done" },
          { seq: two!.seq, state: "dead" },
        ],
      }),
    ).rejects.toThrow(/boom/);
    expect((await journal.pending(0, 10)).items.map((i) => i.attempts)).toEqual([1, 1]);
    await repair();
    await journal.record({ begun: [], settled: [{ seq: two!.seq, state: "dead" }] });
    expect(await journal.totals()).toEqual({ pending: 1, done: 0, dead: 1, rejected: 0 });
  });

  test("pendingInLane reads one lane's pending items in a seq range", async () => {
    const journal = await inbound();
    await journal.journal("1", [event("$1"), event("$2", "!b:x"), event("$3"), event("$4"), event("$5")]);
    const read = (after: number, upTo: number, limit: number) =>
      journal.pendingInLane("room:!a:x", after, upTo, limit).then((items) => items.map((i) => i.eventId));
    expect(await read(0, 5, 10)).toEqual(["$1", "$3", "$4", "$5"]);
    expect(await read(1, 4, 10)).toEqual(["$3", "$4"]);
    expect(await read(1, 5, 1)).toEqual(["$3"]);
    const [first] = await journal.pendingInLane("room:!b:x", 0, 5, 10);
    expect(first).toMatchObject({ seq: 2, txnId: "1", key: "event:$2", attempts: 1 });
  });

  test("a failed commit rejects and leaves nothing behind: the retry journals everything", async () => {
    const journal = await inbound();
    const repair = await stores.failWrites("inbound_items", "INSERT", "NEW.lane = 'room:!boom:x'");
    await expect(journal.journal("1", [event("$1"), event("$2", "!boom:x")])).rejects.toThrow(/boom/);
    expect(await ids(journal)).toEqual([]);
    expect(await journal.totals()).toEqual({ pending: 0, done: 0, dead: 0, rejected: 0 });
    await repair();
    const retried = await journal.journal("1", [event("$1"), event("$2", "!boom:x")]);
    expect(retried).toMatchObject({ duplicates: 0, afterSeq: 0, upToSeq: 2 });
    expect(retried.items).toHaveLength(2);
  });

  test("prune deletes settled items, pending ones stay; seq never goes back", async () => {
    const journal = await inbound();
    await journal.journal("1", [event("$1"), event("$2"), rejected("bad", "x")]);
    await journal.journal("2", [event("$3"), event("$4")]);
    const [one, two, three] = (await journal.pending(0, 10)).items;
    await journal.record({
      begun: [],
      settled: [
        { seq: one!.seq, state: "done" },
        { seq: two!.seq, state: "dead", error: "x" },
        { seq: three!.seq, state: "done" },
      ],
    });
    expect(await journal.prune(0)).toBe(0);
    expect(await journal.prune(Date.now() + 1000)).toBe(4);
    expect(await journal.totals()).toEqual({ pending: 1, done: 0, dead: 0, rejected: 0 });
    // A pruned event is forgotten: sent again, it is journaled anew (after the retention period).
    const again = await journal.journal("1", [event("$1")]);
    expect(again.items[0]!.seq).toBeGreaterThan(5);
    expect(again.afterSeq).toBe(5);
  });
});
