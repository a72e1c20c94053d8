// Delivery waiters: told by the outbox as requests settle, or by the store for earlier outcomes.
import { Deliveries, DROPPED } from "../../../src/outbox/deliveries.ts";
import type { OutboxRow } from "../../../src/store/OutboxStore.ts";
import { DeadLetterError, OutboxStoppedError } from "../../../src/errors.ts";
import type { TxnId } from "../../../src/ids.ts";

const t = (id: string) => id as TxnId;
const storeOf = (rows: Record<string, Partial<OutboxRow>> = {}) => ({
  get: async (txnId: TxnId) => rows[txnId] as OutboxRow | undefined,
});

test("resolves once every request is sent, with the first one's event id", async () => {
  const deliveries = new Deliveries(storeOf());
  let done = false;
  const waiting = deliveries.wait([t("a"), t("b")]).then((d) => ((done = true), d));
  deliveries.sent("a", "$a");
  await Promise.resolve();
  expect(done).toBe(false);
  deliveries.sent("b", undefined);
  expect(await waiting).toEqual({ txnId: "a", eventId: "$a" });
});

test("outcomes settled before the call come from the store: sent, dead, dropped", async () => {
  const deliveries = new Deliveries(
    storeOf({
      s: { state: "sent", eventId: "$s" },
      d: { txnId: t("d"), state: "dead", error: { errcode: "M_FORBIDDEN", status: 403, reason: "no" } },
      x: { state: "dropped" },
    }),
  );
  expect(await deliveries.wait([t("s")])).toEqual({ txnId: "s", eventId: "$s" });
  await expect(deliveries.wait([t("d")])).rejects.toMatchObject({ errcode: "M_FORBIDDEN", status: 403 });
  await expect(deliveries.wait([t("x")])).rejects.toMatchObject({ errcode: DROPPED.errcode });
});

test("a dead letter rejects every waiter of the request; failAll rejects whoever is left", async () => {
  const deliveries = new Deliveries(storeOf());
  const first = deliveries.wait([t("a")]);
  const second = deliveries.wait([t("a")]);
  const left = deliveries.wait([t("b")]);
  deliveries.failed("a", new DeadLetterError(t("a"), "M_FORBIDDEN", 403, "no"));
  await expect(first).rejects.toBeInstanceOf(DeadLetterError);
  await expect(second).rejects.toBeInstanceOf(DeadLetterError);
  deliveries.failAll(() => new OutboxStoppedError());
  await expect(left).rejects.toBeInstanceOf(OutboxStoppedError);
});
