import { SqlitePluginData } from "../../../src/store/sqlite/SqlitePluginData.ts";

describe("SqlitePluginData", () => {
  test("each plugin has its own keys; JSON values; list by prefix in key order", async () => {
    const data = new SqlitePluginData({ path: ":memory:" });
    const a = data.forPlugin("a");
    const b = data.forPlugin("b");
    await a.set("r:2", { text: "two" });
    await a.set("r:1", { text: "one" });
    await a.set("x", [1, 2]);
    await a.set("r%", "not a wildcard");
    await b.set("r:1", "b's");
    expect(await a.get("r:1")).toEqual({ text: "one" });
    expect(await b.get("r:1")).toBe("b's");
    expect(await b.get("x")).toBeUndefined();
    expect((await a.list("r:")).map((e) => e.key)).toEqual(["r:1", "r:2"]);
    expect((await a.list("r%")).map((e) => e.key)).toEqual(["r%"]);
    expect(await a.list()).toHaveLength(4);
    await a.set("r:1", { text: "uno" });
    expect(await a.get("r:1")).toEqual({ text: "uno" });
    expect(await a.delete("r:1")).toBe(true);
    expect(await a.delete("r:1")).toBe(false);
    expect(await b.get("r:1")).toBe("b's");
    await expect(a.set("f", () => 1)).rejects.toThrow(TypeError);
  });

  test("schedule slots are saved per plugin and name", async () => {
    const data = new SqlitePluginData({ path: ":memory:" });
    expect(await data.lastSlot("a", "tick")).toBeUndefined();
    await data.saveSlot("a", "tick", 100);
    await data.saveSlot("a", "tick", 200);
    await data.saveSlot("b", "tick", 5);
    expect(await data.lastSlot("a", "tick")).toBe(200);
    expect(await data.lastSlot("b", "tick")).toBe(5);
  });
});
