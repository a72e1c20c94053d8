import { hash, randomBytes } from "node:crypto";

const digest = (id: string): string => hash("sha256", id, "hex");

/**
 * Browser logins of the dashboard: random session ids handed out as a cookie after the login
 * form was given the admin token. In memory on purpose: a restart, or `revoke`, logs everyone
 * out, and nothing about a session is ever written down. Only a hash of each id is kept, and
 * lookups go by that hash, so neither a memory dump nor lookup timing gives a usable id away.
 */
export class AdminSessions {
  readonly #ttlMs: number;
  readonly #max: number;
  readonly #now: () => number;
  /** sha256(id) → expiry (ms epoch), in creation order (a Map keeps it): the oldest go first. */
  readonly #sessions = new Map<string, number>();

  /**
   * @param options.ttlMs how long a session lasts after login.
   * @param options.max sessions kept at once; a new one beyond it ends the oldest. @default 1000
   * @param options.now the clock (tests). @default Date.now
   */
  constructor(options: { ttlMs: number; max?: number; now?: () => number }) {
    if (!(options.ttlMs > 0)) throw new TypeError(`Expected \`ttlMs\` to be positive, got ${options.ttlMs}`);
    this.#ttlMs = options.ttlMs;
    this.#max = options.max ?? 1000;
    this.#now = options.now ?? Date.now;
  }

  /** Starts a session; the id goes into the cookie and nowhere else. */
  create(): { id: string; maxAgeSeconds: number } {
    const now = this.#now();
    for (const [key, expires] of this.#sessions) if (expires <= now) this.#sessions.delete(key);
    while (this.#sessions.size >= this.#max) this.#sessions.delete(this.#sessions.keys().next().value!);
    const id = randomBytes(32).toString("base64url");
    this.#sessions.set(digest(id), now + this.#ttlMs);
    return { id, maxAgeSeconds: Math.floor(this.#ttlMs / 1000) };
  }

  /** True when `id` is a live session. An expired one is forgotten. */
  verify(id: string): boolean {
    const key = digest(id);
    const expires = this.#sessions.get(key);
    if (expires === undefined) return false;
    if (expires > this.#now()) return true;
    this.#sessions.delete(key);
    return false;
  }

  /** Ends a session (logout); unknown ids are ignored. */
  revoke(id: string): void {
    this.#sessions.delete(digest(id));
  }

  /** Live and expired-but-not-yet-swept sessions (tests). */
  get size(): number {
    return this.#sessions.size;
  }
}
