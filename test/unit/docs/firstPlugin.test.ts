// The "Write your first plugin" page (docs/plugins.md) shows docs/examples/dice.ts; this runs it.
import { readFileSync } from "node:fs";
import { pluginHarness } from "../../support/pluginHarness.ts";
import dice from "../../../docs/examples/dice.ts";

test("the page shows the example file as it is", () => {
  const page = readFileSync(new URL("../../../docs/plugins.md", import.meta.url), "utf8");
  const code = readFileSync(new URL("../../../docs/examples/dice.ts", import.meta.url), "utf8");
  expect(page).toContain(code);
});

test("the example plugin answers !roll and shows in !help", async () => {
  const { host, dispatch, bodies } = await pluginHarness();
  expect(await host.load(dice, { maxDice: 3 })).toBe(true);
  const say = (body: string) => dispatch({ type: "m.room.message", content: { msgtype: "m.text", body } });
  await say("!roll 3d6");
  await say("!roll 9d6");
  await say("!roll dice");
  await say("!help");
  const [roll, tooMany, usage, help] = await bodies();
  const match = /^([1-6]) \+ ([1-6]) \+ ([1-6]) = (\d+)$/.exec(roll!);
  expect(match).not.toBeNull();
  expect(Number(match![4])).toBe(Number(match![1]) + Number(match![2]) + Number(match![3]));
  expect(tooMany).toBe("at most 3 dice");
  expect(usage).toBe("usage: !roll NdM, e.g. !roll 2d6");
  expect(help).toContain("!roll [NdM]: rolls dice");
});
