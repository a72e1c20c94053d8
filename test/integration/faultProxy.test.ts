// The fault proxy itself, against a tiny upstream that counts what it processed: every fault does
// what it says (upstream processed or not, client answered or cut), decisions follow the seed,
// and the budget bounds them.
import { createServer, type IncomingMessage, type Server } from "node:http";
import { Agent, request } from "undici";
import { FaultProxy, type ProxyFaultKind } from "../support/FaultProxy.ts";

interface Processed {
  method: string;
  url: string;
  body: string;
  header: string | undefined;
}

let upstream: Server;
let upstreamUrl: string;
const processed: Processed[] = [];
/** Requests whose body never fully arrived. */
let aborted = 0;
const proxies: FaultProxy[] = [];
const agent = new Agent({ connections: 8, keepAliveTimeout: 5_000 });

async function proxy(seed = 7): Promise<FaultProxy> {
  const p = await FaultProxy.start({ upstream: upstreamUrl, seed });
  proxies.push(p);
  return p;
}

interface Reply {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  text: string;
}

/** One request through `p`; resolves with the answer or rejects with the client's error. */
async function call(p: FaultProxy, path = "/x?a=1", body = '{"n":1}', timeoutMs = 4_000): Promise<Reply> {
  const res = await request(p.url + path, {
    method: "PUT",
    headers: { "content-type": "application/json", "x-test": "kept" },
    body,
    dispatcher: agent,
    headersTimeout: timeoutMs,
    bodyTimeout: timeoutMs,
  });
  return { status: res.statusCode, headers: res.headers, text: await res.body.text() };
}

/** Polls `check` every 5 ms; fails after 5 s. */
async function until(what: string, check: () => boolean): Promise<void> {
  const deadline = Date.now() + 5_000;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

const outcome = (p: Promise<Reply>): Promise<string> =>
  p.then(
    (r) => String(r.status),
    () => "error",
  );

beforeAll(async () => {
  upstream = createServer((req: IncomingMessage, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("aborted", () => aborted++);
    req.on("end", () => {
      processed.push({
        method: req.method ?? "",
        url: req.url ?? "",
        body: Buffer.concat(chunks).toString(),
        header: req.headers["x-test"] as string | undefined,
      });
      const text = JSON.stringify({ ok: true, n: processed.length, pad: "x".repeat(200) });
      res.writeHead(200, { "content-type": "application/json", "content-length": Buffer.byteLength(text) });
      res.end(text);
    });
  });
  await new Promise<void>((resolve) => upstream.listen(0, "127.0.0.1", resolve));
  const address = upstream.address();
  upstreamUrl = `http://127.0.0.1:${typeof address === "object" && address ? address.port : 0}`;
});

beforeEach(() => {
  processed.length = 0;
  aborted = 0;
});

afterAll(async () => {
  await Promise.all(proxies.map((p) => p.close()));
  await agent.close();
  upstream.closeAllConnections();
  await new Promise((resolve) => upstream.close(resolve));
});

test("without faults it forwards method, path, query, headers and body, and the answer back", async () => {
  const p = await proxy();
  const reply = await call(p, "/_matrix/client/v3/x%2Fy?user_id=%40a%3Ab", '{"hello":"world"}');
  expect(reply.status).toBe(200);
  expect(JSON.parse(reply.text)).toMatchObject({ ok: true, n: 1 });
  expect(processed).toEqual([
    {
      method: "PUT",
      url: "/_matrix/client/v3/x%2Fy?user_id=%40a%3Ab",
      body: '{"hello":"world"}',
      header: "kept",
    },
  ]);
  expect(p.stats).toMatchObject({ requests: 1, forwarded: 1, upstreamErrors: 0 });
});

test.each<[ProxyFaultKind, number, string]>([
  ["reset", 0, "error"],
  ["cutRequest", 0, "error"],
  ["dropResponse", 1, "error"],
  ["cutResponse", 1, "error"],
  ["502", 0, "502"],
  ["429", 0, "429"],
])("%s: upstream processed %i request(s), the client saw %s", async (kind, upstreamCount, seen) => {
  const p = await proxy();
  p.failNext(1, kind);
  expect(await outcome(call(p, "/faulty"))).toBe(seen);
  // A cut request did reach upstream, and was cut there.
  if (kind === "cutRequest") await until("upstream to see the request cut", () => aborted === 1);
  expect(p.stats.faults[kind]).toBe(1);
  // The next request goes through untouched. Once upstream has processed it, anything of the
  // faulty request the proxy (wrongly) forwarded has arrived too: that was sent first, before
  // the client even had its answer.
  expect((await call(p, "/after")).status).toBe(200);
  expect(processed.map((r) => r.url)).toEqual([...Array<string>(upstreamCount).fill("/faulty"), "/after"]);
  expect(aborted).toBe(kind === "cutRequest" ? 1 : 0);
});

test("a 429 storm answers stormLength requests with M_LIMIT_EXCEEDED and retry_after_ms, then forwards", async () => {
  const p = await proxy();
  p.setFaults({ rate429: 1, stormLength: 3, retryAfterMs: 1500, maxFaults: 1 });
  const replies = [];
  for (let i = 0; i < 5; i++) replies.push(await call(p));
  expect(replies.map((r) => r.status)).toEqual([429, 429, 429, 200, 200]);
  expect(JSON.parse(replies[0]!.text)).toMatchObject({ errcode: "M_LIMIT_EXCEEDED", retry_after_ms: 1500 });
  expect(replies[0]!.headers["retry-after"]).toBe("2");
  expect(p.stats).toMatchObject({ storms: 1, faults: expect.objectContaining({ "429": 3 }) });
  expect(processed).toHaveLength(2);
});

test("a stall outlasts the client's timeout, then the request is processed late", async () => {
  const p = await proxy();
  p.setFaults({ rateStall: 1, stallMs: 1_500, maxFaults: 1 });
  expect(await outcome(call(p, "/late", "{}", 500))).toBe("error");
  expect(processed).toHaveLength(0);
  const deadline = Date.now() + 10_000;
  while (processed.length === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  expect(processed.map((r) => r.url)).toEqual(["/late"]);
});

test("the same seed draws the same faults; maxFaults bounds them; match limits them", async () => {
  const run = async (seed: number) => {
    const p = await proxy(seed);
    p.setFaults({
      rateReset: 0.2,
      rate502: 0.2,
      rateDropResponse: 0.2,
      maxFaults: 6,
      match: (r) => r.path.startsWith("/eligible"),
    });
    const seen: string[] = [];
    for (let i = 0; i < 20; i++) seen.push(await outcome(call(p, i % 4 === 3 ? "/other" : "/eligible")));
    return { seen, injected: p.injected };
  };
  const a = await run(11);
  const b = await run(11);
  expect(a).toEqual(b);
  expect(a.injected).toBe(6);
  // Requests the matcher excludes are never touched.
  expect(a.seen.filter((_, i) => i % 4 === 3)).toEqual(["200", "200", "200", "200", "200"]);
  expect(a.seen.filter((s) => s !== "200")).toHaveLength(6);
});

test("latency delays eligible requests and breaks nothing", async () => {
  const p = await proxy();
  p.setFaults({ latencyRate: 1, latencyMs: 30 });
  for (let i = 0; i < 5; i++) expect((await call(p)).status).toBe(200);
  expect(p.stats).toMatchObject({ delayed: 5, forwarded: 5 });
});

test("an upstream that is down is answered 502, like a reverse proxy would", async () => {
  const dead = await FaultProxy.start({ upstream: "http://127.0.0.1:1" });
  proxies.push(dead);
  expect((await call(dead)).status).toBe(502);
  expect(dead.stats.upstreamErrors).toBe(1);
});
