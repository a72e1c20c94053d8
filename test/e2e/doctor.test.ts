// `courier doctor` against a real Synapse: every check passes with the service stopped (doctor
// answers Synapse's ping itself) and running (the service answers); the CLI exits 0.
import { execFile } from "node:child_process";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { doctorExitCode, runDoctor } from "../../src/ops/doctor/runDoctor.ts";
import { E2eStack, type CourierProcess } from "./support/E2eStack.ts";

const CLI = fileURLToPath(new URL("../../src/cli/main.ts", import.meta.url));

describe("courier doctor with a real Synapse", () => {
  let stack: E2eStack;
  let courier: CourierProcess | undefined;

  beforeAll(async () => {
    stack = await E2eStack.start();
  }, 180_000);
  afterAll(async () => {
    await courier?.kill("SIGTERM");
    await stack?.stop();
  }, 60_000);

  test("service stopped, then running: every check passes", async () => {
    const stopped = await runDoctor(stack.configPath, { env: {} });
    expect(stopped.map((r) => [r.name, r.status])).toEqual([
      ["config", "pass"],
      ["registration", "pass"],
      ["homeserver", "pass"],
      ["clock", "pass"],
      ["as_token", "pass"],
      ["ping", "pass"],
      ["ghost registration", "pass"],
      ["encryption", "skip"],
      ["store", "pass"],
    ]);
    expect(stopped.find((r) => r.name === "ping")!.detail).toContain("service is not running");
    expect(stopped.find((r) => r.name === "ghost registration")!.detail).toContain(
      "@courier_courier_doctor:localhost",
    );

    courier = await stack.startCourier();
    const running = await runDoctor(stack.configPath, { env: {} });
    expect(running.find((r) => r.name === "ping")).toMatchObject({
      status: "pass",
      detail: expect.stringContaining("the running service answered"),
    });
    expect(running.find((r) => r.name === "store")).toMatchObject({
      status: "pass",
      detail: expect.stringContaining("mode 600"),
    });
    expect(doctorExitCode(running)).toBe(0);

    const cli = await promisify(execFile)(process.execPath, [CLI, "doctor", "--config", stack.configPath]);
    expect(cli.stdout).not.toMatch(/^(FAIL|WARN)/m);
    expect(cli.stdout).not.toContain(stack.asToken);
  }, 120_000);
});
