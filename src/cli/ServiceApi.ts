// The running service's admin API, as `courier outbox drop/retry` use it: the service is the
// store's only writer while it runs, so its changes go through it (as the dashboard's do).
import type { CourierConfig } from "../config/schema.ts";
import { CourierError } from "../errors.ts";
import type { TxnId } from "../ids.ts";

/** Why a change could not go through the running service; exits 1. */
export class ServiceApiError extends CourierError {
  constructor(message: string, options?: { cause?: unknown }) {
    super("COURIER_SERVICE_API", "M_UNKNOWN", 503, message, options);
  }
}

export class ServiceApi {
  readonly url: string;
  readonly #token: string;

  private constructor(url: string, token: string) {
    this.url = url;
    this.#token = token;
  }

  /**
   * The admin API of the service running on `config` (appservice.bind, path /admin, admin.token).
   * Throws ServiceApiError when it cannot be reached that way: no admin token, or port 0.
   */
  static of(config: CourierConfig, configPath: string): ServiceApi {
    const running = `The service is running on this store (it holds the writer lock ${config.store.path}-lock), so this change must go through its admin API`;
    if (config.admin.token === undefined) {
      throw new ServiceApiError(
        `${running}, and ${configPath} sets no admin.token. Set admin.token in ${configPath} and restart the service, or stop the service and run this command again.`,
      );
    }
    const { host, port } = config.appservice.bind;
    if (port === 0) {
      throw new ServiceApiError(
        `${running}, but appservice.bind.port is 0 in ${configPath} (a port picked at start), so its address is unknown. Bind a fixed port, or stop the service and run this command again.`,
      );
    }
    const address = host === "0.0.0.0" ? "127.0.0.1" : host === "::" ? "::1" : host;
    const url = `http://${address.includes(":") ? `[${address}]` : address}:${port}/admin`;
    return new ServiceApi(url, config.admin.token);
  }

  /** Puts every dead letter back to pending; returns how many. */
  async retryAllDead(): Promise<number> {
    return (await this.#post<{ requeued: number }>("/api/dead/retry")).requeued;
  }

  /** Puts one dead letter back to pending; 0 when it is not one. */
  async retry(txnId: TxnId): Promise<number> {
    const answer = await this.#post<{ requeued: number }>(`/api/dead/${encodeURIComponent(txnId)}/retry`, {
      notFound: { requeued: 0 },
    });
    return answer.requeued;
  }

  /** Drops pending or dead requests; returns how many. */
  async drop(txnIds: readonly TxnId[]): Promise<number> {
    return (await this.#post<{ dropped: number }>("/api/pending/drop", { body: { txnIds } })).dropped;
  }

  async #post<T>(path: string, options: { body?: unknown; notFound?: T } = {}): Promise<T> {
    let response: Response;
    try {
      response = await fetch(`${this.url}${path}`, {
        method: "POST",
        headers: {
          authorization: `Bearer ${this.#token}`,
          ...(options.body === undefined ? {} : { "content-type": "application/json" }),
        },
        ...(options.body === undefined ? {} : { body: JSON.stringify(options.body) }),
        signal: AbortSignal.timeout(30_000),
      });
    } catch (error) {
      throw new ServiceApiError(
        `The store is locked by another process (the service, or another courier command), and no service answers at ${this.url}: ${(error as Error).cause instanceof Error ? ((error as Error).cause as Error).message : (error as Error).message}. Try again once the other command is done.`,
        { cause: error },
      );
    }
    const answer = (await response.json().catch(() => ({}))) as Record<string, unknown>;
    if (response.status === 404 && options.notFound !== undefined && answer.errcode !== "M_UNRECOGNIZED")
      return options.notFound;
    if (!response.ok) {
      const why = typeof answer.error === "string" ? answer.error : response.statusText;
      throw new ServiceApiError(`The service at ${this.url} refused: ${response.status} ${why}`);
    }
    return answer as T;
  }
}
