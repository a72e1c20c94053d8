import { escapeLocalpart, GhostNamespace, unescapeLocalpart } from "../../../src/bridge/ghostLocalpart.ts";

test.each([
  ["alice", "alice"],
  ["Alice", "=41lice"],
  ["a=b", "a=3db"],
  ["[m]_x-y.z", "=5bm=5d_x-y.z"],
  ["zoë", "zo=c3=ab"],
  ["a b/c:d", "a=20b=2fc=3ad"],
])("%j escapes to %j and back", (remote, localpart) => {
  expect(escapeLocalpart(remote)).toBe(localpart);
  expect(unescapeLocalpart(localpart)).toBe(remote);
});

test("text escapeLocalpart cannot have made is refused", () => {
  expect(() => unescapeLocalpart("=4")).toThrow(TypeError);
  expect(() => unescapeLocalpart("=4G")).toThrow(TypeError);
  expect(() => unescapeLocalpart("A")).toThrow(TypeError);
});

test("a namespace maps remote ids to ghost ids and back, and claims only its own", () => {
  const ns = new GhostNamespace("courier_irc_{id}", "example.org");
  expect(ns.userId("Nick|away")).toBe("@courier_irc_=4eick=7caway:example.org");
  expect(ns.remoteId("@courier_irc_=4eick=7caway:example.org")).toBe("Nick|away");
  expect(ns.remoteId("@courier_irc_x:other.org")).toBeUndefined();
  expect(ns.remoteId("@courier_slack_x:example.org")).toBeUndefined();
  expect(ns.pattern().test(ns.userId("Zoë"))).toBe(true);
  expect(ns.pattern().test("@courier_irc_:example.org")).toBe(false);
  expect(() => new GhostNamespace("courier_irc", "x")).toThrow(TypeError);
});
