import http from "node:http";
import type { AddressInfo } from "node:net";
import { MatrixClient } from "../../../src/matrix/MatrixClient.ts";
import { MatrixError, MatrixNetworkError } from "../../../src/matrix/MatrixError.ts";
import { roomId, userId, type DeviceId, type TxnId } from "../../../src/ids.ts";

const TOKEN = "as-secret-token";

interface Seen {
  method: string;
  url: string;
  headers: http.IncomingHttpHeaders;
  body: Buffer;
}

interface TestServer {
  url: string;
  seen: Seen[];
  connections: () => number;
  close: () => Promise<void>;
}

type Handler = (req: http.IncomingMessage, res: http.ServerResponse, body: Buffer) => void;

async function startServer(handler: Handler): Promise<TestServer> {
  const seen: Seen[] = [];
  let connections = 0;
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (chunk: Buffer) => chunks.push(chunk));
    req.on("end", () => {
      const body = Buffer.concat(chunks);
      seen.push({ method: req.method ?? "", url: req.url ?? "", headers: req.headers, body });
      handler(req, res, body);
    });
  });
  server.on("connection", () => connections++);
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    seen,
    connections: () => connections,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

function json(
  res: http.ServerResponse,
  status: number,
  body: unknown,
  headers: http.OutgoingHttpHeaders = {},
) {
  res.writeHead(status, { "content-type": "application/json", ...headers });
  res.end(JSON.stringify(body));
}

/** A homeserver stand-in: `/test/...` paths misbehave on purpose, the rest answer like Synapse. */
const homeserver: Handler = (req, res, body) => {
  const path = (req.url ?? "").split("?")[0]!.replace(/^\/hs\//, "/");
  switch (path) {
    case "/test/403":
      return json(res, 403, { errcode: "M_FORBIDDEN", error: "You are not invited" });
    case "/test/429ms":
      return json(res, 429, { errcode: "M_LIMIT_EXCEEDED", retry_after_ms: 1234 }, { "retry-after": "9" });
    case "/test/429s":
      return json(
        res,
        429,
        { errcode: "M_LIMIT_EXCEEDED", error: "Too many requests" },
        { "retry-after": "2" },
      );
    case "/test/429date":
      return json(
        res,
        429,
        { errcode: "M_LIMIT_EXCEEDED" },
        { "retry-after": new Date(Date.now() + 5000).toUTCString() },
      );
    case "/test/502":
      res.writeHead(502, { "content-type": "text/html" });
      return res.end("<html><body>502 Bad Gateway</body></html>");
    case "/test/empty":
      res.writeHead(200);
      return res.end();
    case "/test/notjson":
      res.writeHead(200, { "content-type": "text/plain" });
      return res.end("ok");
    case "/test/hang":
      return; // never answers
    case "/test/reset":
      return req.socket.destroy();
    case "/_matrix/client/v3/register": {
      const { username } = JSON.parse(body.toString()) as { username: string };
      if (username === "taken")
        return json(res, 400, { errcode: "M_USER_IN_USE", error: "User ID already taken." });
      if (username === "outside")
        return json(res, 400, { errcode: "M_EXCLUSIVE", error: "Not in namespace" });
      return json(res, 200, { user_id: `@${username}:example.org` });
    }
    case "/_matrix/client/v3/account/whoami":
      return json(res, 200, { user_id: "@bot:example.org" });
    case "/_matrix/client/versions":
      return json(res, 200, { versions: ["v1.11"] });
    default:
      if (path.startsWith("/_matrix/client/v1/appservice/")) return json(res, 200, { duration_ms: 12 });
      if (path.startsWith("/_matrix/client/v3/join/"))
        return json(res, 200, { room_id: "!joined:example.org" });
      return json(res, 200, { event_id: "$ev" });
  }
};

let hs: TestServer;
let client: MatrixClient;
const extraClients: MatrixClient[] = [];
const extraServers: TestServer[] = [];

function newClient(options: Partial<ConstructorParameters<typeof MatrixClient>[0]> = {}): MatrixClient {
  const c = new MatrixClient({ homeserverUrl: hs.url, accessToken: TOKEN, ...options });
  extraClients.push(c);
  return c;
}

const last = (): Seen => hs.seen[hs.seen.length - 1]!;

async function rejection(promise: Promise<unknown>): Promise<unknown> {
  try {
    await promise;
  } catch (err) {
    return err;
  }
  throw new Error("Expected the promise to reject");
}

beforeAll(async () => {
  hs = await startServer(homeserver);
  client = new MatrixClient({ homeserverUrl: hs.url, accessToken: TOKEN, serverName: "example.org" });
});

afterAll(async () => {
  // Servers first: closing a pool waits for requests in flight, and /test/hang never answers.
  await Promise.all([hs, ...extraServers].map((s) => s.close()));
  await Promise.all([client, ...extraClients].map((c) => c.close()));
});

const room = roomId("!room:example.org");
const ghost = userId("@_ghost_alice:example.org");
const txn = (s: string) => s as TxnId;

describe("constructor", () => {
  it.each([
    [{ homeserverUrl: "not a url", accessToken: TOKEN }, /Expected homeserverUrl/],
    [{ homeserverUrl: "ftp://example.org", accessToken: TOKEN }, /Expected homeserverUrl/],
    [{ homeserverUrl: "https://example.org?x=1", accessToken: TOKEN }, /Expected homeserverUrl/],
    [{ homeserverUrl: "https://example.org", accessToken: "" }, /Expected accessToken/],
    [{ homeserverUrl: "https://example.org", accessToken: TOKEN, timeoutMs: 0 }, /Expected timeoutMs/],
    [{ homeserverUrl: "https://example.org", accessToken: TOKEN, connections: 1.5 }, /Expected connections/],
  ])("rejects %j", (options, message) => {
    expect(() => new MatrixClient(options)).toThrow(TypeError);
    expect(() => new MatrixClient(options)).toThrow(message);
  });

  it("never puts the token in a constructor error", () => {
    expect(() => new MatrixClient({ homeserverUrl: "nope", accessToken: TOKEN })).not.toThrow(TOKEN);
  });
});

describe("requests on the wire", () => {
  it("encodes room ids, event types and txnIds as single path segments", async () => {
    await expect(
      client.sendEvent(room, "org.example/odd type#?", txn("txn/1?a=b#c%"), { body: "hi" }),
    ).resolves.toEqual({ event_id: "$ev" });
    expect(last().method).toBe("PUT");
    expect(last().url).toBe(
      "/_matrix/client/v3/rooms/!room%3Aexample.org/send/org.example%2Fodd%20type%23%3F/txn%2F1%3Fa%3Db%23c%25",
    );
  });

  it("encodes an alias in join", async () => {
    await expect(client.join("#alias:example.org")).resolves.toEqual({ room_id: "!joined:example.org" });
    expect(last().method).toBe("POST");
    expect(last().url).toBe("/_matrix/client/v3/join/%23alias%3Aexample.org");
  });

  it("masquerades with user_id, device_id and the MSC3202 device name, in that order", async () => {
    await client.sendEvent(
      room,
      "m.room.message",
      txn("t1"),
      {},
      { userId: ghost, deviceId: "DEV 1" as DeviceId },
    );
    expect(last().url).toBe(
      "/_matrix/client/v3/rooms/!room%3Aexample.org/send/m.room.message/t1" +
        "?user_id=%40_ghost_alice%3Aexample.org&device_id=DEV%201&org.matrix.msc3202.device_id=DEV%201",
    );
  });

  it("authenticates with the Authorization header only, never in the URL", async () => {
    await client.whoami({ userId: ghost });
    expect(last().headers.authorization).toBe(`Bearer ${TOKEN}`);
    expect(last().url).not.toContain("access_token");
    expect(last().url).not.toContain(TOKEN);
  });

  it("sends the body byte for byte, as JSON, and no content type without a body", async () => {
    const body = '{"b":"é\\u2028 ☃ \u{1F600}",  "a" : 1 }';
    await client.send({ method: "PUT", path: "/test/echo", body });
    expect(last().body.equals(Buffer.from(body, "utf8"))).toBe(true);
    expect(last().headers["content-type"]).toBe("application/json");
    expect(last().headers["content-length"]).toBe(String(Buffer.byteLength(body)));

    await client.versions();
    expect(last().method).toBe("GET");
    expect(last().headers["content-type"]).toBeUndefined();
    expect(last().body.length).toBe(0);
  });

  it("keeps a path prefix of the homeserver URL", async () => {
    const prefixed = newClient({ homeserverUrl: `${hs.url}/hs/` });
    await expect(prefixed.versions()).resolves.toEqual({ versions: ["v1.11"] });
    expect(last().url).toBe("/hs/_matrix/client/versions");
  });

  it.each<[string, (c: MatrixClient) => Promise<unknown>, string, string, unknown]>([
    [
      "sendToDevice",
      (c) => c.sendToDevice("m.new_device", txn("d/1"), { [ghost]: { "*": { a: 1 } } }, { userId: ghost }),
      "PUT",
      "/_matrix/client/v3/sendToDevice/m.new_device/d%2F1?user_id=%40_ghost_alice%3Aexample.org",
      { messages: { [ghost]: { "*": { a: 1 } } } },
    ],
    [
      "sendState",
      (c) => c.sendState(room, "m.room.member", ghost, { membership: "join" }),
      "PUT",
      "/_matrix/client/v3/rooms/!room%3Aexample.org/state/m.room.member/%40_ghost_alice%3Aexample.org",
      { membership: "join" },
    ],
    [
      "redact",
      (c) => c.redact(room, "$ev/1", txn("r1"), "spam"),
      "PUT",
      "/_matrix/client/v3/rooms/!room%3Aexample.org/redact/%24ev%2F1/r1",
      { reason: "spam" },
    ],
    [
      "createRoom",
      (c) => c.createRoom({ preset: "private_chat" }, { userId: ghost }),
      "POST",
      "/_matrix/client/v3/createRoom?user_id=%40_ghost_alice%3Aexample.org",
      { preset: "private_chat" },
    ],
    [
      "invite",
      (c) => c.invite(room, ghost),
      "POST",
      "/_matrix/client/v3/rooms/!room%3Aexample.org/invite",
      { user_id: ghost },
    ],
    [
      "leave",
      (c) => c.leave(room, { userId: ghost }),
      "POST",
      "/_matrix/client/v3/rooms/!room%3Aexample.org/leave?user_id=%40_ghost_alice%3Aexample.org",
      {},
    ],
    [
      "getProfile",
      (c) => c.getProfile(ghost),
      "GET",
      "/_matrix/client/v3/profile/%40_ghost_alice%3Aexample.org",
      undefined,
    ],
    [
      "setDisplayName",
      (c) => c.setDisplayName(ghost, "Alice"),
      "PUT",
      "/_matrix/client/v3/profile/%40_ghost_alice%3Aexample.org/displayname?user_id=%40_ghost_alice%3Aexample.org",
      { displayname: "Alice" },
    ],
    [
      "setAvatarUrl",
      (c) => c.setAvatarUrl(ghost, "mxc://example.org/abc"),
      "PUT",
      "/_matrix/client/v3/profile/%40_ghost_alice%3Aexample.org/avatar_url?user_id=%40_ghost_alice%3Aexample.org",
      { avatar_url: "mxc://example.org/abc" },
    ],
    [
      "appservicePing",
      (c) => c.appservicePing("my bridge", "txn-1"),
      "POST",
      "/_matrix/client/v1/appservice/my%20bridge/ping",
      { transaction_id: "txn-1" },
    ],
  ])("%s sends the right method, path and body", async (_name, call, method, url, body) => {
    await call(client);
    expect(last().method).toBe(method);
    expect(last().url).toBe(url);
    if (body === undefined) expect(last().body.length).toBe(0);
    else expect(JSON.parse(last().body.toString())).toEqual(body);
  });

  it("returns the ping duration and {} for an empty 2xx body", async () => {
    await expect(client.appservicePing("bridge")).resolves.toEqual({ duration_ms: 12 });
    expect(JSON.parse(last().body.toString())).toEqual({});
    await expect(client.send({ method: "GET", path: "/test/empty" })).resolves.toEqual({});
  });
});

describe("homeserver errors", () => {
  it("a 403 is a MatrixError with status and errcode", async () => {
    const err = await rejection(client.send({ method: "GET", path: "/test/403" }));
    expect(err).toBeInstanceOf(MatrixError);
    expect(err).toMatchObject({ status: 403, errcode: "M_FORBIDDEN", retryAfterMs: undefined });
    expect((err as Error).message).toBe("403 M_FORBIDDEN: You are not invited");
  });

  it("a 429 takes retry_after_ms from the body over the header", async () => {
    const err = await rejection(client.send({ method: "GET", path: "/test/429ms" }));
    expect(err).toMatchObject({ status: 429, errcode: "M_LIMIT_EXCEEDED", retryAfterMs: 1234 });
  });

  it("a 429 with only Retry-After: 2 waits 2000 ms", async () => {
    const err = await rejection(client.send({ method: "GET", path: "/test/429s" }));
    expect(err).toMatchObject({ status: 429, errcode: "M_LIMIT_EXCEEDED", retryAfterMs: 2000 });
  });

  it("a 429 with an HTTP-date Retry-After waits until then", async () => {
    const err = (await rejection(client.send({ method: "GET", path: "/test/429date" }))) as MatrixError;
    expect(err).toBeInstanceOf(MatrixError);
    // The date has one-second precision and was made just before the answer.
    expect(err.retryAfterMs).toBeGreaterThanOrEqual(3000);
    expect(err.retryAfterMs).toBeLessThanOrEqual(5000);
  });

  it("a 502 with an HTML body keeps the text", async () => {
    const err = await rejection(client.send({ method: "GET", path: "/test/502" }));
    expect(err).toBeInstanceOf(MatrixError);
    expect(err).toMatchObject({
      status: 502,
      errcode: "HTTP_502",
      body: "<html><body>502 Bad Gateway</body></html>",
    });
  });

  it("a 2xx whose body is not JSON is a MatrixNetworkError", async () => {
    const err = await rejection(client.send({ method: "GET", path: "/test/notjson" }));
    expect(err).toBeInstanceOf(MatrixNetworkError);
    expect(err).toMatchObject({ code: "EBADRESPONSE" });
  });
});

describe("no answer", () => {
  it("times out with ETIMEDOUT when the server never answers", async () => {
    const impatient = newClient({ timeoutMs: 150 });
    const err = await rejection(impatient.send({ method: "PUT", path: "/test/hang", body: "{}" }));
    expect(err).toBeInstanceOf(MatrixNetworkError);
    expect(err).toMatchObject({ code: "ETIMEDOUT" });
    expect((err as Error).message).not.toContain(TOKEN);
  });

  it("a per-call timeoutMs overrides the client's", async () => {
    const err = await rejection(client.send({ method: "GET", path: "/test/hang" }, { timeoutMs: 100 }));
    expect(err).toMatchObject({ name: "MatrixNetworkError", code: "ETIMEDOUT" });
  });

  it("an AbortSignal.timeout reports ETIMEDOUT, a plain abort ABORT_ERR", async () => {
    const timedOut = await rejection(
      client.send({ method: "GET", path: "/test/hang" }, { signal: AbortSignal.timeout(100) }),
    );
    expect(timedOut).toBeInstanceOf(MatrixNetworkError);
    expect(timedOut).toMatchObject({ code: "ETIMEDOUT" });

    const controller = new AbortController();
    const pending = client.send({ method: "GET", path: "/test/hang" }, { signal: controller.signal });
    setTimeout(() => controller.abort(), 20);
    const aborted = await rejection(pending);
    expect(aborted).toBeInstanceOf(MatrixNetworkError);
    expect(aborted).toMatchObject({ code: "ABORT_ERR" });
  });

  it("a connection reset is a MatrixNetworkError with a code", async () => {
    const err = await rejection(client.send({ method: "PUT", path: "/test/reset", body: "{}" }));
    expect(err).toBeInstanceOf(MatrixNetworkError);
    expect((err as MatrixNetworkError).code).toMatch(/^(UND_ERR_SOCKET|ECONNRESET|EPIPE)$/);
    // The pool recovers: the next request goes out on a fresh socket.
    await expect(client.versions()).resolves.toEqual({ versions: ["v1.11"] });
  });

  it("a refused connection is ECONNREFUSED", async () => {
    const gone = await startServer(homeserver);
    await gone.close();
    const refused = newClient({ homeserverUrl: gone.url });
    const err = await rejection(refused.versions());
    expect(err).toBeInstanceOf(MatrixNetworkError);
    expect(err).toMatchObject({ code: "ECONNREFUSED" });
  });
});

describe("keep-alive", () => {
  it("reuses sockets: many requests, few connections", async () => {
    const counted = await startServer(homeserver);
    extraServers.push(counted);
    const c = newClient({ homeserverUrl: counted.url, connections: 4 });
    for (let i = 0; i < 50; i++) await c.sendEvent(room, "m.room.message", txn(`seq${i}`), { i });
    // undici frees a socket for the pool a tick after the answer is read, so a strictly sequential
    // caller settles on two sockets, never one per request.
    expect(counted.connections()).toBeLessThanOrEqual(2);
    await Promise.all(
      Array.from({ length: 40 }, (_, i) => c.sendEvent(room, "m.room.message", txn(`par${i}`), { i })),
    );
    expect(counted.seen).toHaveLength(90);
    expect(counted.connections()).toBeLessThanOrEqual(4);
  });

  it("keeps sockets usable after error answers", async () => {
    const counted = await startServer(homeserver);
    extraServers.push(counted);
    const c = newClient({ homeserverUrl: counted.url });
    for (let i = 0; i < 10; i++) {
      await expect(c.send({ method: "GET", path: i % 2 ? "/test/502" : "/test/403" })).rejects.toThrow(
        MatrixError,
      );
    }
    expect(counted.connections()).toBeLessThanOrEqual(2);
  });
});

describe("registerGhost", () => {
  it("creates a user", async () => {
    await expect(client.registerGhost("_ghost_bob")).resolves.toEqual({
      userId: "@_ghost_bob:example.org",
      created: true,
    });
    expect(last().method).toBe("POST");
    expect(last().url).toBe("/_matrix/client/v3/register");
    expect(JSON.parse(last().body.toString())).toEqual({
      type: "m.login.application_service",
      username: "_ghost_bob",
      inhibit_login: true,
    });
  });

  it("treats M_USER_IN_USE as success", async () => {
    await expect(client.registerGhost("taken")).resolves.toEqual({
      userId: "@taken:example.org",
      created: false,
    });
  });

  it("without a serverName, learns it once from whoami", async () => {
    const c = newClient();
    const before = hs.seen.length;
    await expect(c.registerGhost("taken")).resolves.toEqual({ userId: "@taken:example.org", created: false });
    await expect(c.registerGhost("taken")).resolves.toEqual({ userId: "@taken:example.org", created: false });
    const whoamis = hs.seen.slice(before).filter((s) => s.url === "/_matrix/client/v3/account/whoami");
    expect(whoamis).toHaveLength(1);
  });

  it("passes M_EXCLUSIVE on", async () => {
    const err = await rejection(client.registerGhost("outside"));
    expect(err).toBeInstanceOf(MatrixError);
    expect(err).toMatchObject({ status: 400, errcode: "M_EXCLUSIVE" });
  });
});
