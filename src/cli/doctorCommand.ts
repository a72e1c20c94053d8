// `courier doctor`: one line per check, then the exit code (0: nothing failed, 1: something did).
import { doctorExitCode, runDoctor, type CheckStatus } from "../ops/doctor/runDoctor.ts";

const MARK: Record<CheckStatus, string> = { pass: "PASS", warn: "WARN", fail: "FAIL", skip: "SKIP" };

export async function runDoctorCommand(configPath: string, json: boolean): Promise<0 | 1> {
  const results = await runDoctor(configPath);
  if (json) process.stdout.write(`${JSON.stringify(results)}\n`);
  else for (const r of results) process.stdout.write(`${MARK[r.status]}  ${r.name}: ${r.detail}\n`);
  return doctorExitCode(results);
}
