import { GroupCommit } from "../../../src/store/postgres/GroupCommit.ts";

/** A batch runner whose batches finish when the test says so. */
function heldRunner() {
  const batches: string[][] = [];
  const finish: Array<(error?: Error) => void> = [];
  const run = (inputs: readonly string[]) =>
    new Promise<string[]>((resolve, reject) => {
      batches.push([...inputs]);
      finish.push((error) => (error ? reject(error) : resolve(inputs.map((i) => i.toUpperCase()))));
    });
  /** Resolves once `n` batches have started. */
  const started = async (n: number) => {
    for (let i = 0; i < 100 && batches.length < n; i++) await new Promise((r) => setImmediate(r));
    expect(batches).toHaveLength(n);
  };
  return { batches, finish, run, started };
}

describe("GroupCommit", () => {
  test("what is submitted in one turn is one batch, what comes while it runs the next; each gets its own output", async () => {
    const runner = heldRunner();
    const group = new GroupCommit(runner.run);
    const first = [group.submit("a"), group.submit("b")];
    await runner.started(1);
    const later = [group.submit("c"), group.submit("d")];
    runner.finish[0]!();
    expect(await Promise.all(first)).toEqual(["A", "B"]);
    await runner.started(2);
    runner.finish[1]!();
    expect(await Promise.all(later)).toEqual(["C", "D"]);
    expect(runner.batches).toEqual([
      ["a", "b"],
      ["c", "d"],
    ]);
  });

  test("a failed batch rejects its own submissions; the next batch still runs", async () => {
    const runner = heldRunner();
    const group = new GroupCommit(runner.run);
    const failing = group.submit("a");
    await runner.started(1);
    const next = group.submit("b");
    runner.finish[0]!(new Error("boom"));
    await expect(failing).rejects.toThrow("boom");
    await runner.started(2);
    runner.finish[1]!();
    await expect(next).resolves.toBe("B");
  });

  test("idle resolves once what was submitted before it has finished, while later batches still run", async () => {
    const runner = heldRunner();
    const group = new GroupCommit(runner.run);
    await group.idle(); // nothing submitted: at once
    const first = group.submit("a");
    await runner.started(1);
    let idle = false;
    void group.idle().then(() => (idle = true));
    const second = group.submit("b");
    runner.finish[0]!(new Error("boom"));
    await expect(first).rejects.toThrow("boom");
    await runner.started(2);
    for (let turn = 0; turn < 100 && !idle; turn++) await new Promise((r) => setImmediate(r));
    expect(idle).toBe(true); // while "b" still runs
    runner.finish[1]!();
    await second;
    await group.idle();
  });
});
