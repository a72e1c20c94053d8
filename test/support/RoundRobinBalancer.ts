// A small HTTP load balancer for tests: each request goes to the next backend in turn; a backend
// that refuses the connection (its instance is down) is skipped for the next one, as haproxy or
// nginx with retries would. Requests are buffered (bounded) so that they can be retried whole.
// Binds 127.0.0.1 on a free port.
import { createServer, request, type IncomingMessage, type Server, type ServerResponse } from "node:http";

const MAX_BODY_BYTES = 40 * 1024 * 1024;

export class RoundRobinBalancer {
  /** Where requests go: e.g. `http://127.0.0.1:41234`. Tests change it as instances come and go. */
  backends: string[] = [];
  /** Requests forwarded, per backend. */
  readonly forwarded = new Map<string, number>();
  /** Transaction pushes still to be answered 500 without forwarding (see `failNextTransactions`). */
  #failingTransactions = 0;
  readonly #server: Server;
  #next = 0;
  #port = 0;

  private constructor() {
    this.#server = createServer((req, res) => this.#onRequest(req, res));
    this.#server.on("clientError", (_error, socket) => socket.destroy());
  }

  static async start(): Promise<RoundRobinBalancer> {
    const balancer = new RoundRobinBalancer();
    await new Promise<void>((resolve) => balancer.#server.listen(0, "127.0.0.1", resolve));
    const address = balancer.#server.address();
    balancer.#port = typeof address === "object" && address ? address.port : 0;
    return balancer;
  }

  /** Answers the next `count` transaction pushes 500 itself, as a backend error would. */
  failNextTransactions(count: number): void {
    this.#failingTransactions += count;
  }

  get url(): string {
    return `http://127.0.0.1:${this.#port}`;
  }

  async close(): Promise<void> {
    this.#server.closeAllConnections();
    await new Promise((resolve) => this.#server.close(resolve));
  }

  #onRequest(req: IncomingMessage, res: ServerResponse): void {
    const chunks: Buffer[] = [];
    let bytes = 0;
    req.on("data", (chunk: Buffer) => {
      bytes += chunk.length;
      if (bytes <= MAX_BODY_BYTES) chunks.push(chunk);
    });
    req.on("end", () => {
      if (bytes > MAX_BODY_BYTES) return this.#answer(res, 413, "too large for the balancer");
      if (
        this.#failingTransactions > 0 &&
        req.method === "PUT" &&
        req.url?.startsWith("/_matrix/app/v1/transactions/")
      ) {
        this.#failingTransactions--;
        return this.#answer(res, 500, "failed by the test");
      }
      void this.#forward(req, res, Buffer.concat(chunks), this.backends.length);
    });
  }

  async #forward(req: IncomingMessage, res: ServerResponse, body: Buffer, triesLeft: number): Promise<void> {
    if (triesLeft <= 0 || this.backends.length === 0) return this.#answer(res, 502, "no backend answered");
    const backend = this.backends[this.#next++ % this.backends.length]!;
    const target = new URL(req.url ?? "/", backend);
    const upstream = request(
      target,
      { method: req.method, headers: req.headers, timeout: 15_000 },
      (answer) => {
        // 503: the instance is starting or stopping and journaled nothing (the appservice
        // endpoint's contract): the next one may take it, as a balancer with retries would.
        if (answer.statusCode === 503 && triesLeft > 1) {
          answer.resume();
          void this.#forward(req, res, body, triesLeft - 1);
          return;
        }
        this.forwarded.set(backend, (this.forwarded.get(backend) ?? 0) + 1);
        res.writeHead(answer.statusCode ?? 502, answer.headers);
        answer.pipe(res);
      },
    );
    // No answer in time: give up on it, so that the homeserver sees an error and retries.
    upstream.on("timeout", () => upstream.destroy(new Error("the backend did not answer in time")));
    // Refused (the instance is down): nothing reached it, the next one may take the request.
    upstream.on("error", (error: NodeJS.ErrnoException) => {
      if (res.headersSent) return res.destroy();
      if (error.code === "ECONNREFUSED") void this.#forward(req, res, body, triesLeft - 1);
      else res.destroy(); // it may have processed the request: the homeserver retries
    });
    upstream.end(body);
  }

  #answer(res: ServerResponse, status: number, error: string): void {
    res.writeHead(status, { "content-type": "application/json" });
    res.end(JSON.stringify({ errcode: "M_UNKNOWN", error }));
  }
}
