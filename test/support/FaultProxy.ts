// A fault-injecting HTTP proxy for the reliability tests: it sits between the framework and a
// real Synapse, in either direction (framework → Synapse's client API, Synapse → the framework's
// appservice endpoint), forwards every request, and breaks some of them on purpose:
//
// - latency:      an eligible request waits up to `latencyMs` before it is forwarded
// - reset:        the request is read, then the connection is reset; upstream sees nothing
// - cutRequest:   upstream gets the headers and half the body, then both connections are cut
// - dropResponse: upstream processes the request; the connection is reset before any answer byte
// - cutResponse:  upstream processes it; the status line, headers and half the body come back, then a reset
// - 502:          answered by the proxy with an HTML 502 (what nginx says when its upstream fails)
// - 429:          starts a storm: this and the next `stormLength - 1` eligible requests are answered
//                 429 M_LIMIT_EXCEEDED with `retry_after_ms` (and `Retry-After`), by the proxy
// - stall:        held `stallMs` (longer than the client's timeout), then forwarded late or dropped
//
// Decisions are deterministic from `seed` (mulberry32): one draw per eligible request for the
// fault, one for the latency. Everything is bounded: body size, connections, stalls at once,
// faults in total (`maxFaults`), upstream time. Binds 127.0.0.1 on a free port.
import { EventEmitter } from "node:events";
import { Agent, createServer, request as httpRequest } from "node:http";
import type {
  IncomingHttpHeaders,
  IncomingMessage,
  OutgoingHttpHeaders,
  Server,
  ServerResponse,
} from "node:http";
import type { Socket } from "node:net";
import { mulberry32 } from "./FakeHomeserver.ts";

export type ProxyFaultKind =
  "reset" | "cutRequest" | "dropResponse" | "cutResponse" | "502" | "429" | "stall";

export const PROXY_FAULT_KINDS: readonly ProxyFaultKind[] = [
  "reset",
  "cutRequest",
  "dropResponse",
  "cutResponse",
  "502",
  "429",
  "stall",
];

/** What a fault matcher sees of a request. `path` is the raw path without the query string. */
export interface ProxiedRequest {
  readonly method: string;
  readonly url: string;
  readonly path: string;
  /** The request body as received (empty when there is none). */
  readonly body?: Buffer;
}

export interface ProxyFaults {
  /** Probability (0..1) that an eligible request is delayed by a uniform 0..`latencyMs` first. */
  latencyRate?: number;
  /** @default 200 */
  latencyMs?: number;
  /** Probabilities (0..1, summing to at most 1) of each fault per eligible request. */
  rateReset?: number;
  rateCutRequest?: number;
  rateDropResponse?: number;
  rateCutResponse?: number;
  rate502?: number;
  /** Probability that a 429 storm starts at an eligible request. */
  rate429?: number;
  rateStall?: number;
  /** Eligible requests answered 429 in a row once a storm starts. @default 10 */
  stormLength?: number;
  /** `retry_after_ms` of injected 429s; `Retry-After` carries it in whole seconds. @default 250 */
  retryAfterMs?: number;
  /** How long a stalled request is held. @default 10000 */
  stallMs?: number;
  /** After the stall, forward the request (upstream processes what the client gave up on) or drop it. @default "forward" */
  afterStall?: "forward" | "drop";
  /** Requests stalled at once; a stall drawn beyond it becomes no fault. @default 4 */
  maxStalled?: number;
  /** Faults injected in total (latency and storm continuations not counted); then the proxy only forwards. @default unlimited */
  maxFaults?: number;
  /** Which requests faults and latency apply to. @default every request */
  match?: (request: ProxiedRequest) => boolean;
}

export interface FaultProxyOptions {
  /** Where requests go, e.g. `http://127.0.0.1:8008`. */
  upstream: string;
  /** Seed of the fault PRNG. @default 0x5eed */
  seed?: number;
  /** Largest request body forwarded; larger ones are answered 413. @default 40 MiB */
  maxBodyBytes?: number;
  /** Client connections at once; more are refused by the kernel backlog. @default 256 */
  maxConnections?: number;
  /** Sockets to upstream. @default 64 */
  upstreamSockets?: number;
  /** Longest wait for upstream's answer; then 504. @default 120000 */
  upstreamTimeoutMs?: number;
}

export interface FaultProxyStats {
  /** Requests received. */
  requests: number;
  /** Requests that reached upstream (whole or cut). */
  forwarded: number;
  /** Requests delayed by latency. */
  delayed: number;
  /** Faults injected by kind (every 429 answered counts, storms included). */
  faults: Record<ProxyFaultKind, number>;
  /** 429 storms started. */
  storms: number;
  /** Upstream refused, reset or timed out (answered 502/504 by the proxy). */
  upstreamErrors: number;
}

/** Emitted for each injected fault, after the fact. */
export interface FaultEvent {
  readonly kind: ProxyFaultKind;
  readonly request: ProxiedRequest;
}

const HOP_BY_HOP = new Set([
  "connection",
  "keep-alive",
  "proxy-connection",
  "transfer-encoding",
  "upgrade",
  "te",
  "trailer",
  "host",
  "content-length",
]);

function emptyCounts(): Record<ProxyFaultKind, number> {
  return { reset: 0, cutRequest: 0, dropResponse: 0, cutResponse: 0, "502": 0, "429": 0, stall: 0 };
}

function checkRate(name: string, value: number | undefined): number {
  if (value === undefined) return 0;
  if (typeof value !== "number" || !(value >= 0 && value <= 1)) {
    throw new RangeError(
      `FaultProxy.setFaults: ${name} must be a number between 0 and 1, got ${String(value)}`,
    );
  }
  return value;
}

function forwardHeaders(headers: IncomingHttpHeaders): OutgoingHttpHeaders {
  const out: OutgoingHttpHeaders = {};
  for (const [name, value] of Object.entries(headers)) {
    if (value !== undefined && !HOP_BY_HOP.has(name)) out[name] = value;
  }
  return out;
}

interface UpstreamAnswer {
  status: number;
  headers: OutgoingHttpHeaders;
  body: Buffer;
}

/** Emitted when upstream answered a request, before any response fault is applied. */
export interface UpstreamEvent {
  readonly request: ProxiedRequest;
  readonly status: number;
}

/**
 * Emitted when upstream's whole answer was handed to the client's connection (no fault cut or
 * dropped it): what the client saw, unless its connection broke afterwards.
 */
export interface AnsweredEvent {
  readonly request: ProxiedRequest;
  readonly status: number;
}

export class FaultProxy extends EventEmitter<{
  fault: [FaultEvent];
  upstream: [UpstreamEvent];
  /** Every request, once its body is read, before any fault or latency. */
  request: [ProxiedRequest];
  answered: [AnsweredEvent];
}> {
  readonly #server: Server;
  readonly #agent: Agent;
  readonly #upstream: URL;
  readonly #maxBodyBytes: number;
  readonly #upstreamTimeoutMs: number;
  readonly #sockets = new Set<Socket>();
  readonly #timers = new Set<NodeJS.Timeout>();
  /** Wakes every sleeping request (on close). */
  readonly #sleepers = new Set<() => void>();
  readonly #seed: number;
  #random: () => number;
  #faults: ProxyFaults = {};
  #thresholds: Array<[ProxyFaultKind, number]> = [];
  #scripted: Array<{ kind: ProxyFaultKind; match: ((r: ProxiedRequest) => boolean) | undefined }> = [];
  #stormLeft = 0;
  #stalled = 0;
  #injected = 0;
  #stats: FaultProxyStats = {
    requests: 0,
    forwarded: 0,
    delayed: 0,
    faults: emptyCounts(),
    storms: 0,
    upstreamErrors: 0,
  };
  #port = 0;
  #closed = false;

  private constructor(options: FaultProxyOptions) {
    super();
    this.#upstream = new URL(options.upstream);
    if (this.#upstream.protocol !== "http:") throw new TypeError("FaultProxy: upstream must be http://");
    this.#maxBodyBytes = options.maxBodyBytes ?? 40 * 1024 * 1024;
    this.#upstreamTimeoutMs = options.upstreamTimeoutMs ?? 120_000;
    this.#seed = options.seed ?? 0x5eed;
    this.#random = mulberry32(this.#seed);
    this.#agent = new Agent({ keepAlive: true, maxSockets: options.upstreamSockets ?? 64 });
    this.#server = createServer((req, res) => this.#onRequest(req, res));
    this.#server.maxConnections = options.maxConnections ?? 256;
    this.#server.keepAliveTimeout = 30_000;
    this.#server.on("connection", (socket: Socket) => {
      this.#sockets.add(socket);
      socket.on("close", () => this.#sockets.delete(socket));
    });
    this.#server.on("clientError", (_error, socket) => socket.destroy());
  }

  /** Starts a proxy to `upstream` on 127.0.0.1 and a free port. */
  static async start(options: FaultProxyOptions): Promise<FaultProxy> {
    const proxy = new FaultProxy(options);
    await new Promise<void>((resolve, reject) => {
      proxy.#server.once("error", reject);
      proxy.#server.listen(0, "127.0.0.1", () => {
        proxy.#server.off("error", reject);
        resolve();
      });
    });
    const address = proxy.#server.address();
    if (address === null || typeof address === "string") throw new Error("FaultProxy: no TCP address");
    proxy.#port = address.port;
    return proxy;
  }

  get port(): number {
    return this.#port;
  }

  /** e.g. `http://127.0.0.1:41234` */
  get url(): string {
    return `http://127.0.0.1:${this.#port}`;
  }

  /** A snapshot of the counters. */
  get stats(): FaultProxyStats {
    return { ...this.#stats, faults: { ...this.#stats.faults } };
  }

  /** Faults injected so far, all kinds together. */
  get injected(): number {
    return this.#injected;
  }

  /** Replaces the random faults (`setFaults({})` turns them off; a running storm ends). Restarts nothing else. */
  setFaults(faults: ProxyFaults): void {
    const pairs: Array<[ProxyFaultKind, number]> = [
      ["reset", checkRate("rateReset", faults.rateReset)],
      ["cutRequest", checkRate("rateCutRequest", faults.rateCutRequest)],
      ["dropResponse", checkRate("rateDropResponse", faults.rateDropResponse)],
      ["cutResponse", checkRate("rateCutResponse", faults.rateCutResponse)],
      ["502", checkRate("rate502", faults.rate502)],
      ["429", checkRate("rate429", faults.rate429)],
      ["stall", checkRate("rateStall", faults.rateStall)],
    ];
    checkRate("latencyRate", faults.latencyRate);
    let sum = 0;
    this.#thresholds = pairs.map(([kind, rate]) => [kind, (sum += rate)]);
    if (sum > 1 + 1e-9) throw new RangeError("FaultProxy.setFaults: the fault rates add up to more than 1");
    this.#faults = { ...faults };
    this.#stormLeft = 0;
  }

  /** The next `n` eligible requests get `kind` (before random faults; a scripted 429 is one answer, not a storm). */
  failNext(n: number, kind: ProxyFaultKind, match?: (request: ProxiedRequest) => boolean): void {
    if (!PROXY_FAULT_KINDS.includes(kind)) throw new RangeError(`FaultProxy.failNext: unknown kind ${kind}`);
    if (!Number.isInteger(n) || n < 0) throw new RangeError("FaultProxy.failNext: n must be an integer >= 0");
    for (let i = 0; i < n; i++) this.#scripted.push({ kind, match });
  }

  /** No more faults or latency: random, scripted, storm. Stalled requests stay stalled until their time. */
  clearFaults(): void {
    this.setFaults({});
    this.#scripted = [];
  }

  /** Stops listening, cuts every connection, drops stalled requests. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    for (const timer of this.#timers) clearTimeout(timer);
    this.#timers.clear();
    for (const wake of [...this.#sleepers]) wake();
    const closed = new Promise<void>((resolve) => this.#server.close(() => resolve()));
    for (const socket of this.#sockets) socket.destroy();
    this.#server.closeAllConnections();
    this.#agent.destroy();
    await closed;
  }

  #onRequest(req: IncomingMessage, res: ServerResponse): void {
    req.on("error", () => undefined);
    res.on("error", () => undefined);
    this.#stats.requests++;
    const chunks: Buffer[] = [];
    let bytes = 0;
    req.on("data", (chunk: Buffer) => {
      bytes += chunk.length;
      if (bytes <= this.#maxBodyBytes) chunks.push(chunk);
    });
    req.on("end", () => {
      if (bytes > this.#maxBodyBytes) {
        this.#answer(
          res,
          413,
          "application/json",
          '{"errcode":"M_TOO_LARGE","error":"too large for the proxy"}',
        );
        return;
      }
      this.#handle(req, res, Buffer.concat(chunks)).catch((error: unknown) => {
        if (!res.headersSent && !res.destroyed)
          this.#answer(res, 500, "text/plain", `FaultProxy bug: ${String(error)}`);
      });
    });
  }

  async #handle(req: IncomingMessage, res: ServerResponse, body: Buffer): Promise<void> {
    const url = req.url ?? "/";
    const q = url.indexOf("?");
    const info: ProxiedRequest = {
      method: req.method ?? "GET",
      url,
      path: q < 0 ? url : url.slice(0, q),
      body,
    };
    this.emit("request", info);
    const eligible = this.#faults.match ? this.#faults.match(info) : true;
    const fault = this.#pick(info, eligible);
    if (eligible && (this.#faults.latencyRate ?? 0) > 0 && this.#random() < (this.#faults.latencyRate ?? 0)) {
      this.#stats.delayed++;
      await this.#sleep(Math.floor(this.#random() * (this.#faults.latencyMs ?? 200)));
      if (this.#closed) return this.#reset(req);
    }
    if (fault) {
      this.#stats.faults[fault]++;
      this.emit("fault", { kind: fault, request: info });
    }
    switch (fault) {
      case "reset":
        return this.#reset(req);
      case "502":
        return this.#answer(res, 502, "text/html", "<html><body><h1>502 Bad Gateway</h1></body></html>\n");
      case "429": {
        const ms = this.#faults.retryAfterMs ?? 250;
        return this.#answer(
          res,
          429,
          "application/json",
          JSON.stringify({
            errcode: "M_LIMIT_EXCEEDED",
            error: "Too many requests (injected)",
            retry_after_ms: ms,
          }),
          { "retry-after": String(Math.ceil(ms / 1000)) },
        );
      }
      case "cutRequest":
        this.#stats.forwarded++;
        return this.#cutRequest(req, body);
      case "stall": {
        this.#stalled++;
        await this.#sleep(this.#faults.stallMs ?? 10_000);
        this.#stalled--;
        if (this.#closed || (this.#faults.afterStall ?? "forward") === "drop") return this.#reset(req);
        break;
      }
    }
    let answer: UpstreamAnswer;
    try {
      this.#stats.forwarded++;
      answer = await this.#forward(req, body);
    } catch (error) {
      this.#stats.upstreamErrors++;
      const timedOut = (error as { code?: unknown }).code === "ETIMEDOUT";
      return this.#answer(
        res,
        timedOut ? 504 : 502,
        "text/html",
        `<html><body><h1>${timedOut ? "504 Gateway Timeout" : "502 Bad Gateway"}</h1></body></html>\n`,
      );
    }
    this.emit("upstream", { request: info, status: answer.status });
    if (fault === "dropResponse") return this.#reset(req);
    if (fault === "cutResponse") {
      if (res.destroyed) return;
      res.writeHead(answer.status, { ...answer.headers, "content-length": answer.body.length });
      res.write(answer.body.subarray(0, Math.floor(answer.body.length / 2)), () => this.#reset(req));
      return;
    }
    if (res.destroyed) return;
    res.writeHead(answer.status, { ...answer.headers, "content-length": answer.body.length });
    res.end(answer.body, () => this.emit("answered", { request: info, status: answer.status }));
  }

  /** One fault for this request, or none: scripted first, then a running storm, then one draw. */
  #pick(info: ProxiedRequest, eligible: boolean): ProxyFaultKind | undefined {
    const scripted = this.#scripted[0];
    if (scripted && (scripted.match ? scripted.match(info) : eligible)) {
      this.#scripted.shift();
      this.#injected++;
      return scripted.kind;
    }
    if (!eligible) return undefined;
    if (this.#stormLeft > 0) {
      this.#stormLeft--;
      return "429";
    }
    if (this.#thresholds.length === 0 || (this.#thresholds.at(-1)?.[1] ?? 0) === 0) return undefined;
    const u = this.#random();
    if (this.#injected >= (this.#faults.maxFaults ?? Infinity)) return undefined;
    const kind = this.#thresholds.find(([, threshold]) => u < threshold)?.[0];
    if (kind === undefined) return undefined;
    if (kind === "stall" && this.#stalled >= (this.#faults.maxStalled ?? 4)) return undefined;
    this.#injected++;
    if (kind === "429") {
      this.#stats.storms++;
      this.#stormLeft = Math.max(0, (this.#faults.stormLength ?? 10) - 1);
    }
    return kind;
  }

  #forward(req: IncomingMessage, body: Buffer): Promise<UpstreamAnswer> {
    return new Promise((resolve, reject) => {
      const upstream = httpRequest(
        {
          host: this.#upstream.hostname,
          port: this.#upstream.port,
          method: req.method,
          path: req.url,
          headers: { ...forwardHeaders(req.headers), "content-length": body.length },
          agent: this.#agent,
          timeout: this.#upstreamTimeoutMs,
        },
        (response) => {
          const parts: Buffer[] = [];
          response.on("data", (chunk: Buffer) => parts.push(chunk));
          response.on("error", reject);
          response.on("end", () =>
            resolve({
              status: response.statusCode ?? 502,
              headers: forwardHeaders(response.headers),
              body: Buffer.concat(parts),
            }),
          );
        },
      );
      upstream.on("timeout", () =>
        upstream.destroy(Object.assign(new Error("upstream timeout"), { code: "ETIMEDOUT" })),
      );
      upstream.on("error", reject);
      upstream.end(body);
    });
  }

  /** Upstream gets the headers and half the body, then both sides are cut. */
  #cutRequest(req: IncomingMessage, body: Buffer): void {
    const upstream = httpRequest({
      host: this.#upstream.hostname,
      port: this.#upstream.port,
      method: req.method,
      path: req.url,
      headers: { ...forwardHeaders(req.headers), "content-length": body.length },
      // Its own connection: a half-sent request poisons the socket it is on.
      agent: false,
    });
    upstream.on("error", () => undefined);
    upstream.write(body.subarray(0, Math.floor(body.length / 2)), () => {
      const timer = setTimeout(() => {
        this.#timers.delete(timer);
        upstream.destroy();
        this.#reset(req);
      }, 20);
      this.#timers.add(timer);
    });
  }

  #answer(
    res: ServerResponse,
    status: number,
    contentType: string,
    text: string,
    headers: Record<string, string> = {},
  ): void {
    if (res.destroyed) return;
    res.writeHead(status, {
      "content-type": contentType,
      "content-length": Buffer.byteLength(text),
      ...headers,
    });
    res.end(text);
  }

  /** Resets the client connection (TCP RST) without (more of) an answer. */
  #reset(req: IncomingMessage): void {
    if (!req.socket.destroyed) req.socket.resetAndDestroy();
  }

  #sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const wake = () => {
        clearTimeout(timer);
        this.#sleepers.delete(wake);
        resolve();
      };
      const timer = setTimeout(wake, ms);
      this.#sleepers.add(wake);
    });
  }
}
