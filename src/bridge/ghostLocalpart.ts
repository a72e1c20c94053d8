/**
 * Reversible escaping of a remote id into a Matrix localpart, as mautrix's `EscapeUserLocalpart`
 * and the IRC bridges do: `a-z`, `0-9`, `.`, `_` and `-` stay, every other UTF-8 byte (capitals,
 * `=`, `/`, spaces…) becomes `=xx` (lower-case hex). Two remote ids never share a localpart.
 */
const KEPT = /^[a-z0-9._-]$/;

export function escapeLocalpart(remoteId: string): string {
  let out = "";
  for (const char of remoteId) {
    if (KEPT.test(char)) {
      out += char;
      continue;
    }
    for (const byte of Buffer.from(char, "utf8")) out += `=${byte.toString(16).padStart(2, "0")}`;
  }
  return out;
}

/** The inverse of `escapeLocalpart`; throws a TypeError on text it cannot have made. */
export function unescapeLocalpart(localpart: string): string {
  const bytes: number[] = [];
  for (let i = 0; i < localpart.length; i++) {
    const char = localpart[i] as string;
    if (char === "=") {
      const hex = localpart.slice(i + 1, i + 3);
      if (!/^[0-9a-f]{2}$/.test(hex))
        throw new TypeError(`Expected =xx (lower-case hex) at ${i}, got "${hex}"`);
      bytes.push(parseInt(hex, 16));
      i += 2;
    } else if (KEPT.test(char)) {
      bytes.push(char.charCodeAt(0));
    } else {
      throw new TypeError(`Expected an escaped localpart, got "${char}" at ${i}`);
    }
  }
  return Buffer.from(bytes).toString("utf8");
}

/**
 * A namespace template with one `{id}`, e.g. `courier_irc_{id}`: the localpart of a remote id's
 * ghost, and back. Throws a TypeError on a template without exactly one `{id}`.
 */
export class GhostNamespace {
  readonly #prefix: string;
  readonly #suffix: string;
  readonly #server: string;

  constructor(template: string, serverName: string) {
    const parts = template.split("{id}");
    if (parts.length !== 2) throw new TypeError(`Expected a template with one {id}, got "${template}"`);
    [this.#prefix, this.#suffix] = parts as [string, string];
    this.#server = serverName;
  }

  userId(remoteId: string): string {
    return `@${this.#prefix}${escapeLocalpart(remoteId)}${this.#suffix}:${this.#server}`;
  }

  /** The remote id of one of our ghosts, or undefined for any other user id. */
  remoteId(userId: string): string | undefined {
    const match = /^@([^:]+):(.+)$/.exec(userId);
    if (!match || match[2] !== this.#server) return undefined;
    const localpart = match[1] as string;
    if (!localpart.startsWith(this.#prefix) || !localpart.endsWith(this.#suffix)) return undefined;
    try {
      return unescapeLocalpart(localpart.slice(this.#prefix.length, localpart.length - this.#suffix.length));
    } catch {
      return undefined;
    }
  }

  /** Matches every ghost id of this namespace (to claim them in user queries). */
  pattern(): RegExp {
    const esc = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
    return new RegExp(`^@${esc(this.#prefix)}[a-z0-9._=-]+${esc(this.#suffix)}:${esc(this.#server)}$`);
  }
}
