import { AdminSessions } from "../../../../src/ops/admin/AdminSessions.ts";

describe("AdminSessions", () => {
  test("a created id verifies until it expires or is revoked; others never do", () => {
    let now = 1_000;
    const sessions = new AdminSessions({ ttlMs: 10_000, now: () => now });
    const a = sessions.create();
    const b = sessions.create();
    expect(a.id).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(a.id).not.toBe(b.id);
    expect(a.maxAgeSeconds).toBe(10);
    expect(sessions.verify(a.id)).toBe(true);
    expect(sessions.verify(`${a.id}x`)).toBe(false);
    expect(sessions.verify("")).toBe(false);
    sessions.revoke(a.id);
    expect(sessions.verify(a.id)).toBe(false);
    now += 10_000;
    expect(sessions.verify(b.id)).toBe(false); // expired
    expect(sessions.size).toBe(0);
  });

  test("at most `max` at once: a new login ends the oldest", () => {
    const sessions = new AdminSessions({ ttlMs: 60_000, max: 2 });
    const [a, b, c] = [sessions.create(), sessions.create(), sessions.create()];
    expect([a, b, c].map((s) => sessions.verify(s.id))).toEqual([false, true, true]);
    expect(sessions.size).toBe(2);
  });

  test("refuses a session length that is not positive", () => {
    expect(() => new AdminSessions({ ttlMs: 0 })).toThrow(TypeError);
  });
});
