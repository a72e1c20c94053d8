// The PluginData contract (src/store/PluginStore.ts), on every store kind alike: plugins' key-value
// spaces, their schedules' slots, and the claims of signed webhook bodies.
import { STORE_KINDS, useStores } from "./storeKinds.ts";

const T = Date.UTC(2026, 11, 4, 12);
const DAY = 24 * 60 * 60 * 1000;
const GITHUB = "POST /github";
const OTHER = "POST /other";

describe.each(STORE_KINDS)("PluginData on $name", (kind) => {
  const stores = useStores(kind);
  const pluginData = async () => (await stores.open()).pluginData;

  test("each plugin has its own keys; JSON values; list by prefix in key order", async () => {
    const data = await pluginData();
    const a = data.forPlugin("a");
    const b = data.forPlugin("b");
    await a.set("r:2", { text: "two" });
    await a.set("r:1", { text: "one" });
    await a.set("x", [1, 2]);
    await a.set("r%", "not a wildcard");
    await a.set("R_", null);
    await b.set("r:1", "b's");
    expect(await a.get("r:1")).toEqual({ text: "one" });
    expect(await b.get("r:1")).toBe("b's");
    expect(await b.get("x")).toBeUndefined();
    expect(await a.get("R_")).toBeNull();
    expect((await a.list("r:")).map((e) => e.key)).toEqual(["r:1", "r:2"]);
    expect((await a.list("r%")).map((e) => e.key)).toEqual(["r%"]);
    expect((await a.list("R")).map((e) => e.key)).toEqual(["R_"]);
    // Key order is the order of the keys' code points ("R" < "r"), whatever the database's locale.
    expect(await a.list()).toEqual([
      { key: "R_", value: null },
      { key: "r%", value: "not a wildcard" },
      { key: "r:1", value: { text: "one" } },
      { key: "r:2", value: { text: "two" } },
      { key: "x", value: [1, 2] },
    ]);
    await a.set("r:1", { text: "uno" });
    expect(await a.get("r:1")).toEqual({ text: "uno" });
    expect(await a.delete("r:1")).toBe(true);
    expect(await a.delete("r:1")).toBe(false);
    expect(await a.get("r:1")).toBeUndefined();
    expect(await b.get("r:1")).toBe("b's");
    await expect(a.set("f", () => 1)).rejects.toThrow(TypeError);
    await expect(a.set("u", undefined)).rejects.toThrow(TypeError);
    expect(await a.get("f")).toBeUndefined();
  });

  test("keys and values survive reopening", async () => {
    const data = await pluginData();
    await data.forPlugin("a").set("k", { n: 1, s: "é\u2028" });
    await data.saveSlot("a", "tick", 100);
    const again = (await stores.reopen()).pluginData;
    expect(await again.forPlugin("a").get("k")).toEqual({ n: 1, s: "é\u2028" });
    expect(await again.lastSlot("a", "tick")).toBe(100);
  });

  test("the framework's reserved keys are refused", async () => {
    const store = (await pluginData()).forPlugin("a");
    const key = "\u0000courier:webhook-body:x";
    await expect(store.get(key)).rejects.toThrow(TypeError);
    await expect(store.set(key, 1)).rejects.toThrow(TypeError);
    await expect(store.delete(key)).rejects.toThrow(TypeError);
  });

  test("schedule slots are saved per plugin and name", async () => {
    const data = await pluginData();
    expect(await data.lastSlot("a", "tick")).toBeUndefined();
    await data.saveSlot("a", "tick", 100);
    await data.saveSlot("a", "tick", T);
    await data.saveSlot("b", "tick", 5);
    expect(await data.lastSlot("a", "tick")).toBe(T);
    expect(await data.lastSlot("b", "tick")).toBe(5);
    expect(await data.lastSlot("a", "tock")).toBeUndefined();
  });

  test("schedule slots are claimed by one holder at a time; a done slot is done for everyone; an expired claim is taken over", async () => {
    const data = await pluginData();
    await data.saveSlot("a", "tick", 100);
    expect(await data.claimSlot("a", "tick", 200, "one", 1000, 2000)).toBe("ours");
    expect(await data.claimSlot("a", "tick", 200, "one", 1000, 2000)).toBe("ours"); // its own again
    expect(await data.claimSlot("a", "tick", 200, "two", 1500, 2500)).toBe("busy");
    expect(await data.claimSlot("a", "tick", 200, "two", 2001, 3001)).toBe("ours"); // "one" died
    await data.saveSlot("a", "tick", 200);
    expect(await data.claimSlot("a", "tick", 200, "one", 2100, 3100)).toBe("done");
    expect(await data.claimSlot("a", "tick", 300, "one", 2100, 3100)).toBe("ours"); // saveSlot ended the claim
    await data.saveSlot("a", "tick", 150); // a late save never moves the slot back
    expect(await data.lastSlot("a", "tick")).toBe(200);
  });

  describe("webhook body claims", () => {
    test("the first delivery to claim a body has it; another within the window is told its id; the same delivery again keeps its claim and its time", async () => {
      const data = await pluginData();
      expect(await data.claimWebhookBody("a", GITHUB, "h1", "d-1", T, DAY)).toBeUndefined();
      expect(await data.claimWebhookBody("a", GITHUB, "h1", "d-2", T + DAY - 1, DAY)).toBe("d-1");
      expect(await data.claimWebhookBody("a", GITHUB, "h1", "d-1", T + DAY - 1, DAY)).toBeUndefined();
      // d-1's claim dates from T, not from its second claim: a day later it is gone.
      expect(await data.claimWebhookBody("a", GITHUB, "h1", "d-3", T + DAY, DAY)).toBeUndefined();
      expect(await data.claimWebhookBody("a", GITHUB, "h1", "d-1", T + DAY, DAY)).toBe("d-3");
    });

    test("a window need not be a whole number of milliseconds", async () => {
      const data = await pluginData();
      expect(await data.claimWebhookBody("a", GITHUB, "h1", "d-1", T, 1000.5)).toBeUndefined();
      expect(await data.claimWebhookBody("a", GITHUB, "h1", "d-2", T + 1000, 1000.5)).toBe("d-1");
      expect(await data.claimWebhookBody("a", GITHUB, "h1", "d-3", T + 1001, 1000.5)).toBeUndefined();
    });

    test("claims are per plugin, route and body; a claim drops only its own route's old claims", async () => {
      const data = await pluginData();
      expect(await data.claimWebhookBody("a", GITHUB, "h1", "d-1", T, DAY)).toBeUndefined();
      expect(await data.claimWebhookBody("a", GITHUB, "h2", "d-2", T, DAY)).toBeUndefined();
      expect(await data.claimWebhookBody("a", OTHER, "h1", "d-3", T, DAY)).toBeUndefined();
      expect(await data.claimWebhookBody("b", GITHUB, "h1", "d-4", T, DAY)).toBeUndefined();
      // A short window on a's /github drops its claims of T, and no other route's or plugin's.
      expect(await data.claimWebhookBody("a", GITHUB, "h3", "e-1", T + 1000, 1000)).toBeUndefined();
      expect(await data.claimWebhookBody("a", GITHUB, "h1", "e-2", T + 1000, DAY)).toBeUndefined();
      expect(await data.claimWebhookBody("a", GITHUB, "h2", "e-3", T + 1000, DAY)).toBeUndefined();
      expect(await data.claimWebhookBody("a", OTHER, "h1", "e-4", T + 1000, DAY)).toBe("d-3");
      expect(await data.claimWebhookBody("b", GITHUB, "h1", "e-5", T + 1000, DAY)).toBe("d-4");
      expect(await data.claimWebhookBody("a", GITHUB, "h3", "e-6", T + 1999, 1000)).toBe("e-1");
    });

    test("a release drops the delivery's own claim only: the next delivery of the body runs", async () => {
      const data = await pluginData();
      expect(await data.claimWebhookBody("a", GITHUB, "h1", "d-1", T, DAY)).toBeUndefined();
      await data.releaseWebhookBody("a", GITHUB, "h1", "d-2");
      await data.releaseWebhookBody("b", GITHUB, "h1", "d-1");
      await data.releaseWebhookBody("a", OTHER, "h1", "d-1");
      expect(await data.claimWebhookBody("a", GITHUB, "h1", "d-2", T + 1, DAY)).toBe("d-1");
      await data.releaseWebhookBody("a", GITHUB, "h1", "d-1");
      expect(await data.claimWebhookBody("a", GITHUB, "h1", "d-2", T + 2, DAY)).toBeUndefined();
      expect(await data.claimWebhookBody("a", GITHUB, "h1", "d-3", T + 3, DAY)).toBe("d-2");
    });

    test("claims survive reopening, and are not among the plugin's own keys", async () => {
      const data = await pluginData();
      await data.forPlugin("a").set("k", 1);
      expect(await data.claimWebhookBody("a", GITHUB, "h1", "d-1", T, DAY)).toBeUndefined();
      expect(await data.forPlugin("a").list()).toEqual([{ key: "k", value: 1 }]);
      const again = (await stores.reopen()).pluginData;
      expect(await again.claimWebhookBody("a", GITHUB, "h1", "d-2", T + 1, DAY)).toBe("d-1");
      expect(await again.forPlugin("a").list()).toEqual([{ key: "k", value: 1 }]);
    });

    test("of deliveries claiming one body at once, one has it and the others are told its id", async () => {
      const data = await pluginData();
      // Bounded: 10 bodies, 6 deliveries each, all at once.
      for (let body = 0; body < 10; body++) {
        const deliveries = Array.from({ length: 6 }, (_, i) => `d-${body}-${i}`);
        const answers = await Promise.all(
          deliveries.map((id) => data.claimWebhookBody("a", GITHUB, `h${body}`, id, T, DAY)),
        );
        const winners = deliveries.filter((_, i) => answers[i] === undefined);
        expect(winners).toHaveLength(1);
        expect(answers.filter((a) => a !== undefined)).toEqual(Array(5).fill(winners[0]));
      }
    });
  });
});
