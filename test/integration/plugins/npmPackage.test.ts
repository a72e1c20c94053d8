// A plugin published as an npm package: named in config.yaml, found in the node_modules of the
// config's folder (where the operator ran `npm install`), imported, validated, and run.
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { loadConfig } from "../../../src/config/loadConfig.ts";
import { resolvePlugin } from "../../../src/plugins/resolvePlugin.ts";
import { pluginHarness } from "../../support/pluginHarness.ts";

describe("plugins from npm packages", () => {
  let dir: string;
  beforeEach(() => {
    dir = mkdtempSync(path.join(tmpdir(), "courier-npm-plugin-"));
    const pkg = path.join(dir, "node_modules", "courier-plugin-hello");
    mkdirSync(pkg, { recursive: true });
    writeFileSync(
      path.join(pkg, "package.json"),
      JSON.stringify({
        name: "courier-plugin-hello",
        version: "1.0.0",
        type: "module",
        exports: "./index.js",
      }),
    );
    // A published plugin is plain JavaScript; what definePlugin returns is a plain object.
    writeFileSync(
      path.join(pkg, "index.js"),
      `export default {
        name: "hello",
        setup(bot) {
          bot.command("hello", (ctx) => ctx.reply(bot.config.greeting ?? "hello"));
        },
      };\n`,
    );
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  const writeConfig = (plugins: string) =>
    writeFileSync(
      path.join(dir, "config.yaml"),
      `homeserver:\n  url: http://127.0.0.1:8008\n  serverName: localhost\nplugins:\n${plugins}`,
    );

  test("a package named in config.yaml is found from the config's folder and runs", async () => {
    writeConfig('  - name: hello\n    module: courier-plugin-hello\n    config: { greeting: "hi there" }\n');
    const config = loadConfig(path.join(dir, "config.yaml"));
    const entry = config.plugins[0]!;
    expect(entry.module).toBe(path.join(dir, "node_modules", "courier-plugin-hello", "index.js"));

    const definition = await resolvePlugin(entry.name, entry.module);
    const harness = await pluginHarness();
    expect(await harness.host.load(definition, entry.config)).toBe(true);
    await harness.dispatch({ type: "m.room.message", content: { msgtype: "m.text", body: "!hello" } });
    expect(await harness.bodies()).toEqual(["hi there"]);
  });

  test("a missing package or one defining another name is a PluginError naming it", async () => {
    writeConfig(
      "  - name: nothere\n    module: courier-plugin-nothere\n  - name: other\n    module: courier-plugin-hello\n",
    );
    const config = loadConfig(path.join(dir, "config.yaml"));
    await expect(resolvePlugin("nothere", config.plugins[0]!.module)).rejects.toThrow(
      /cannot import courier-plugin-nothere/,
    );
    await expect(resolvePlugin("other", config.plugins[1]!.module)).rejects.toThrow(
      /defines the plugin "hello", not "other"/,
    );
  });
});
