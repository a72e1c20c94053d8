// Runs a FakeHomeserver as a standalone process, so that benchmarks measure the client's CPU alone
// and crash tests can kill the framework without killing the homeserver.
//
//   node test/support/fakeHomeserverMain.ts [--as-token X] [--no-record] [--seed N] [--port N]
//                                           [--host H] [--server-name S] [--strict-masquerade]
//
// Prints one JSON line `{"url":…,"port":…,"pid":…}` on stdout when ready. Control endpoints on
// the same port, no auth, never paused, not counted:
//   POST /_fake/pause | /_fake/resume | /_fake/clearFaults | /_fake/clearDedupeCache | /_fake/reset
//   POST /_fake/faults     body = setFaults options (without `match`)
//   POST /_fake/failNext   body = {n, kind}
//   GET  /_fake/stats | /_fake/requests | /_fake/toDevice | /_fake/events
//   GET  /_fake/rooms/{roomId}/events  → {events}
// Exits 0 on SIGTERM / SIGINT after closing every connection.

import { parseArgs } from "node:util";
import { FakeHomeserver } from "./FakeHomeserver.ts";

const { values } = parseArgs({
  options: {
    "as-token": { type: "string" },
    "no-record": { type: "boolean", default: false },
    seed: { type: "string" },
    port: { type: "string" },
    host: { type: "string" },
    "server-name": { type: "string" },
    "strict-masquerade": { type: "boolean", default: false },
  },
  strict: true,
});

function int(name: string, value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (!Number.isInteger(n)) {
    process.stderr.write(`fakeHomeserverMain: --${name} must be an integer, got ${value}\n`);
    process.exit(2);
  }
  return n;
}

const hs = await FakeHomeserver.start({
  asToken: values["as-token"],
  record: !values["no-record"],
  seed: int("seed", values.seed),
  port: int("port", values.port),
  host: values.host,
  serverName: values["server-name"],
  strictMasquerade: values["strict-masquerade"],
  control: true,
});

let stopping = false;
const shutdown = (): void => {
  if (stopping) return;
  stopping = true;
  hs.stop().then(
    () => process.exit(0),
    () => process.exit(1),
  );
};
process.on("SIGTERM", shutdown);
process.on("SIGINT", shutdown);

process.stdout.write(`${JSON.stringify({ url: hs.url, port: hs.port, pid: process.pid })}\n`);
