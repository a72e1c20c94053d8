import type { Server } from "node:http";
import type { Logger } from "pino";
import type { CourierConfig } from "../config/schema.ts";
import type { Registration } from "../config/registration.ts";
import { createAppserviceApp, listen } from "../inbound/AppserviceServer.ts";
import { MatrixClient } from "../matrix/MatrixClient.ts";
import { MatrixError } from "../matrix/MatrixError.ts";
import { Outbox } from "../outbox/Outbox.ts";
import { COURIER_DEVICE_ID, MatrixTransport } from "../outbox/MatrixTransport.ts";
import type { InboundJournal } from "../inbound/InboundJournal.ts";
import type { LaneOwnership } from "../inbound/LaneOwnership.ts";
import type { OutboxStore } from "../store/OutboxStore.ts";
import type { PluginData } from "../store/PluginStore.ts";
import { PluginHost, type HandlerRun } from "../plugins/PluginHost.ts";
import { PowerLevels } from "../plugins/PowerLevels.ts";
import { Dispatcher } from "../inbound/Dispatcher.ts";
import { resolvePlugin } from "../plugins/resolvePlugin.ts";
import type { Intent, PluginDefinition } from "../plugins/definePlugin.ts";
import { NotOurUserError } from "../errors.ts";
import { roomId as toRoomId, userId as toUserId } from "../ids.ts";
import { createLogger } from "../logging/createLogger.ts";
import { CourierMetrics } from "../ops/metrics/CourierMetrics.ts";
import { FailureThrottle } from "../http/FailureThrottle.ts";
import { mountMetrics } from "../ops/metrics/metricsRoute.ts";
import { AdminDashboard } from "../ops/admin/AdminDashboard.ts";
import { RecoveryPinger } from "./RecoveryPinger.ts";
import { followOutbox, logProgress, type ProgressObserver } from "../outbox/progress.ts";
import { CourierCrypto } from "../crypto/CourierCrypto.ts";
import { IdbMirror } from "../crypto/IdbMirror.ts";
import type { CryptoStore } from "../store/CryptoStore.ts";
import { SqliteCryptoStore } from "../store/sqlite/SqliteCryptoStore.ts";
import { readStoreKey } from "../crypto/storeKey.ts";

const PRUNE_INTERVAL_MS = 3_600_000;
/** A backlog at start of at least this many requests gets a progress report while it is replayed. */
const BACKLOG_PROGRESS_MIN = 100;

/** The device the bot user receives to-device messages on. */
export const BOT_DEVICE_ID = COURIER_DEVICE_ID;

export interface CourierOptions {
  readonly config: CourierConfig;
  readonly registration: Registration;
  readonly logger?: Logger;
  /** Plugin definitions by name, instead of importing the modules the config names (tests, embedding). */
  readonly plugins?: Readonly<Record<string, PluginDefinition>>;
  /** Reports long outbox tasks (backlog replay, drain on stop). @default log lines with counts */
  readonly progress?: (task: string) => ProgressObserver;
  /** The stores; `createCourier` opens the configured ones. */
  readonly stores: CourierStores;
  /** Called at the instants a fault test wants to crash. @default none */
  readonly hooks?: CourierHooks;
  /**
   * A dashboard page where one chats with the bot as this Matrix user (the development setup's):
   * the browser logs in to the homeserver with these credentials. Needs `admin.token`.
   * @default no chat page
   */
  readonly chat?: {
    readonly userId: string;
    readonly password: string;
    /** As the browser reaches it. @default homeserver.url */
    readonly homeserverUrl?: string;
  };
}

/** The stores a Courier runs on, and how to close them. */
export interface CourierStores {
  readonly outbox: OutboxStore;
  readonly inbound: InboundJournal;
  readonly pluginData: PluginData;
  /** Commits what is buffered and closes; `Courier.stop()` calls it last. */
  close(): Promise<void>;
  /** Settles once the stores can be used (a database's schema migrated); `start()` awaits it first. */
  readonly ready?: Promise<void>;
  /** The crypto store, made when encryption is on. @default a SQLite file at `encryption.path` */
  readonly crypto?: () => CryptoStore;
  /** Several instances share the stores: who sends which outbox lane, who dispatches which inbound one. */
  readonly ownership?: { readonly outbox: LaneOwnership; readonly inbound: LaneOwnership };
}

/** Fault hooks for tests, injected through `createCourier`; production passes none. */
export interface CourierHooks {
  /** A transaction was just committed to the inbound journal, before it is answered. */
  readonly afterJournal?: () => void;
}

/** How the start-up ping went: both directions between homeserver and appservice. */
export interface PingReport {
  readonly ok: boolean;
  readonly durationMs?: number;
  readonly diagnosis?: string;
}

/**
 * The whole framework, wired: config → store → outbox → plugins + dispatcher → appservice
 * endpoint. `start()` brings it up in that order and proves the link to the homeserver with a
 * ping; `stop()` takes it down in reverse, keeping everything journaled for the next start.
 */
export class Courier {
  readonly config: CourierConfig;
  readonly registration: Registration;
  readonly botUserId: string;
  readonly log: Logger;
  readonly client: MatrixClient;
  readonly outbox: Outbox;
  readonly host: PluginHost;
  /** Prometheus metrics (GET /metrics); undefined when `metrics.enabled` is false. */
  readonly metrics: CourierMetrics | undefined;
  readonly dispatcher: Dispatcher;
  readonly #devices: MatrixTransport;
  readonly #stores: CourierStores;
  readonly #outboxStore: CourierStores["outbox"];
  readonly #journal: CourierStores["inbound"];
  readonly #hooks: CourierHooks;
  readonly #plugins: Readonly<Record<string, PluginDefinition>> | undefined;
  readonly #progress: (task: string) => ProgressObserver;
  /** Resolves when stop() begins: ends the backlog report. */
  #stopped!: () => void;
  readonly #stopping = new Promise<void>((resolve) => (this.#stopped = resolve));
  #server: { server: Server; port: number; close(): Promise<void> } | undefined;
  #accepting = false;
  #ping: PingReport | undefined;
  readonly #registered = new Set<string>();
  #pruneTimer: NodeJS.Timeout | undefined;
  /** Pings the homeserver after a refused transaction, so it resends as soon as the store heals. */
  readonly #recovery = new RecoveryPinger({ ping: () => this.pingHomeserver() });
  readonly #ownNamespace: (userId: string) => boolean;
  /** The operator dashboard under /admin/; undefined when no admin token is configured. */
  readonly #admin: AdminDashboard | undefined;
  /** Wrong admin and metrics tokens per client address; one for both, so guessing either counts. */
  readonly #throttle: FailureThrottle;
  /** End-to-end encryption; undefined unless `encryption.enabled`. */
  readonly #crypto: CourierCrypto | undefined;
  readonly #mirror: IdbMirror | undefined;
  readonly #cryptoStore: CryptoStore | undefined;

  constructor(options: CourierOptions) {
    const { config, registration } = options;
    this.config = config;
    this.registration = registration;
    this.#plugins = options.plugins;
    this.log = options.logger ?? createLogger({ level: config.logging.level, pretty: config.logging.pretty });
    this.#progress = options.progress ?? ((task) => logProgress(this.log, task));
    this.botUserId = `@${registration.senderLocalpart}:${config.homeserver.serverName}`;
    this.#stores = options.stores;
    this.#outboxStore = options.stores.outbox;
    this.#journal = options.stores.inbound;
    this.#hooks = options.hooks ?? {};
    this.client = new MatrixClient({
      homeserverUrl: config.homeserver.url,
      accessToken: registration.asToken,
      timeoutMs: config.outbox.requestTimeoutMs,
      serverName: config.homeserver.serverName,
    });
    // Anchored like a whole-string match: `a|b` must not become `^a|b$`.
    const patterns = (exclusiveOnly: boolean) =>
      registration.namespaces.users
        .filter((n) => n.exclusive || !exclusiveOnly)
        .map((n) => new RegExp(`^(?:${n.regex})$`));
    const ownUsers = patterns(true);
    const namespaceUsers = patterns(false);
    this.#ownNamespace = (id) => ownUsers.some((re) => re.test(id));
    this.#devices = new MatrixTransport(
      this.client,
      this.botUserId,
      this.log.child({ component: "devices" }),
    );
    this.outbox = new Outbox({
      store: this.#outboxStore,
      transport: this.#devices,
      appserviceId: registration.id,
      botUserId: toUserId(this.botUserId),
      // Every sender masquerades as its own device: Synapse dedupes room sends in its database.
      ...(config.outbox.ghostDevices ? { deviceId: COURIER_DEVICE_ID } : {}),
      maxConcurrency: config.outbox.maxConcurrency,
      rate: config.outbox.rate,
      rateBySender: config.outbox.rateBySender ?? {},
      retry: config.outbox.retry,
      requestTimeoutMs: config.outbox.requestTimeoutMs,
      logger: this.log.child({ component: "outbox" }),
      ...(options.stores.ownership ? { ownership: options.stores.ownership.outbox } : {}),
      // The homeserver lets an appservice masquerade as any user of its namespaces, exclusive
      // or not; anyone else is refused at enqueue, not dead-lettered by a 403 later.
      mayActAs: (id) => namespaceUsers.some((re) => re.test(id)),
      ...(config.encryption.enabled
        ? { sealer: { seal: (item, journaled) => this.#crypto!.seal(item, journaled) } }
        : {}),
    });
    this.metrics = config.metrics.enabled ? new CourierMetrics(this.outbox) : undefined;
    this.metrics?.watchOutbox(this.outbox);
    if (options.stores.ownership) this.metrics?.watchOwnership(options.stores.ownership);
    const isOwnUser = (id: string) => id === this.botUserId || this.#ownNamespace(id);
    this.host = new PluginHost({
      outbox: this.outbox,
      logger: this.log,
      botUserId: this.botUserId,
      isOwnUser,
      intent: (userId) => this.intent(userId),
      handlerTimeoutMs: config.dispatcher.handlerTimeoutMs,
      maxAttempts: config.dispatcher.maxAttempts,
      onHandlerRun: (run: HandlerRun) => this.metrics?.handlerRan(run),
      data: options.stores.pluginData,
      reservedSecrets: [this.registration.hsToken, this.registration.asToken],
      powerLevels: new PowerLevels((roomId, type) => this.client.getStateEvent(roomId, type)),
    });
    if (config.encryption.enabled) {
      const storeKey = readStoreKey(config.encryption, this.log);
      this.#cryptoStore = options.stores.crypto?.() ?? new SqliteCryptoStore(config.encryption.path);
      this.#mirror = IdbMirror.open(this.#cryptoStore);
      this.#crypto = new CourierCrypto({
        client: this.client,
        enqueue: (item) => this.outbox.enqueue(item),
        botUserId: toUserId(this.botUserId),
        deviceId: COURIER_DEVICE_ID,
        ghosts: config.encryption.ghosts,
        isOwnUser,
        ensureDevice: (userId, deviceId) => this.#devices.ensure(userId, deviceId),
        storeKey,
        restore: (name) => this.#mirror!.restore(name),
        persisted: () => this.#mirror!.flushed(),
        parked: this.#cryptoStore.parked,
        keyWaitMs: config.encryption.keyWaitMs,
        log: this.log.child({ component: "crypto" }),
      });
      this.metrics?.watchCrypto(this.#crypto);
      if (!registration.receiveEphemeral || !registration.deviceLists)
        this.log.warn(
          { registration: config.appservice.registration },
          "encryption needs receive_ephemeral and org.matrix.msc3202 in the registration: run `courier register`, restart the homeserver",
        );
    }
    this.dispatcher = new Dispatcher({
      journal: this.#journal,
      runner: this.#crypto ? this.#crypto.runner(this.host) : this.host,
      logger: this.log.child({ component: "dispatcher" }),
      maxConcurrency: config.dispatcher.maxConcurrency,
      onDead: () => this.metrics?.inboundDead(),
      ...(options.stores.ownership ? { ownership: options.stores.ownership.inbound } : {}),
    });
    const throttleLog = this.log.child({ component: "http" });
    this.#throttle = new FailureThrottle({
      onThrottled: (ip, failures, waitMs) =>
        throttleLog.warn(
          { ip, failures, waitMs },
          "wrong tokens from this address: it now waits between tries",
        ),
    });
    this.#admin =
      config.admin.token === undefined
        ? undefined
        : new AdminDashboard({
            token: config.admin.token,
            sessionTtlMs: config.admin.sessionMinutes * 60_000,
            outbox: this.outbox,
            store: this.#outboxStore,
            inbound: this.#journal,
            plugins: () => this.host.status(),
            about: () => ({
              botUserId: this.botUserId,
              homeserver: config.homeserver.url,
              ping: this.#ping,
              ...this.#instance(),
            }),
            throttle: this.#throttle,
            logger: this.log.child({ component: "admin" }),
            ...(options.chat
              ? {
                  chat: {
                    homeserverUrl: options.chat.homeserverUrl ?? config.homeserver.url,
                    userId: options.chat.userId,
                    password: options.chat.password,
                    botUserId: this.botUserId,
                  },
                }
              : {}),
          });
  }

  /** This instance among those sharing the store, and the lanes it holds (dashboard). No I/O. */
  #instance(): Record<string, unknown> {
    const ownership = this.#stores.ownership;
    if (!ownership) return {};
    return {
      instance: ownership.outbox.instanceId,
      lanesOwned: { outbox: ownership.outbox.ownedCount(), inbound: ownership.inbound.ownedCount() },
    };
  }

  /** The port the appservice endpoint listens on (after start). */
  get port(): number {
    return this.#server?.port ?? 0;
  }

  get ping(): PingReport | undefined {
    return this.#ping;
  }

  /** Loads the plugins, replays what a previous run left, opens the endpoint, pings the homeserver. */
  async start(): Promise<void> {
    await this.#stores.ready;
    await this.#cryptoStore?.claim?.();
    for (const entry of this.config.plugins) {
      if (!entry.enabled) continue;
      try {
        const definition = this.#plugins?.[entry.name] ?? (await resolvePlugin(entry.name, entry.module));
        await this.host.load(definition, entry.config);
      } catch (error) {
        this.log.error({ err: error, plugin: entry.name }, "plugin not loaded; the others run");
      }
    }
    const app = createAppserviceApp({
      hsToken: this.registration.hsToken,
      journal: this.#journal,
      onJournaled: (journaled) => {
        this.metrics?.transactionJournaled(journaled.counts, journaled.rejected);
        this.#hooks.afterJournal?.();
        if (this.#recovery.journaled()) this.log.info("the inbound journal accepts transactions again");
        this.dispatcher.offer(journaled);
      },
      onJournalFailed: () => {
        this.metrics?.journalFailed();
        this.#recovery.refused();
      },
      queries: {
        userExists: (id) => this.host.userExists(id),
        aliasExists: (alias) => this.host.aliasExists(alias),
      },
      maxBodyBytes: this.config.appservice.maxBodyBytes,
      allowQueryToken: this.config.appservice.allowQueryToken,
      trustedProxies: this.config.appservice.trustedProxies,
      logger: this.log.child({ component: "appservice" }),
      // /ready has no auth: states only, never a ping diagnosis or a plugin's error text (those
      // are on the admin API's state, behind the admin token).
      readiness: () => ({
        ready: this.#accepting,
        checks: {
          ping: this.#ping === undefined ? "pending" : this.#ping.ok ? "ok" : "failed",
          plugins: Object.fromEntries(this.host.status().map((p) => [p.name, p.status])),
        },
      }),
      accepting: () => this.#accepting,
      // Plugin webhooks under /plugins/<name>/ (the plugins are loaded by now); the dashboard.
      routes: (app) => {
        this.host.mountWebhooks(app);
        this.#admin?.mount(app);
        if (this.metrics) mountMetrics(app, this.metrics, this.config.metrics.token, this.#throttle);
      },
    });
    await this.host.start();
    const { pending: backlog } = await this.#outboxStore.totals();
    await this.outbox.start();
    if (backlog >= BACKLOG_PROGRESS_MIN) {
      void followOutbox(this.outbox, this.#progress("replaying backlog"), backlog, {
        until: this.#stopping,
      });
    }
    this.#accepting = true;
    await this.dispatcher.start();
    this.#server = await listen(app, this.config.appservice.bind);
    this.log.info({ port: this.port, bot: this.botUserId, plugins: this.host.status() }, "courier started");
    this.#ping = await this.pingHomeserver();
    await this.#ensureBotDevice();
    await this.#crypto
      ?.start()
      .catch((error: unknown) =>
        this.log.error(
          { err: error },
          "encryption could not start; the bot's device is loaded again on its next use",
        ),
      );
    await this.#prune();
    this.#pruneTimer = setInterval(() => void this.#prune(), PRUNE_INTERVAL_MS).unref();
  }

  /** Drops what the retention period no longer needs, so the file does not grow forever. */
  async #prune(): Promise<void> {
    const before = Date.now() - this.config.store.retentionDays * 86_400_000;
    try {
      const outbox = await this.#outboxStore.prune(before);
      const inbound = await this.#journal.prune(before);
      const parked = (await this.#crypto?.prune(before)) ?? 0;
      if (outbox + inbound + parked > 0)
        this.log.info({ outbox, inbound, parked }, "pruned old journal rows");
    } catch (error) {
      this.log.warn({ err: error }, "could not prune old journal rows; retrying later");
    }
  }

  // To-device messages reach a user only through a device; the bot gets a fixed one.
  async #ensureBotDevice(): Promise<void> {
    try {
      await this.#devices.ensure(this.botUserId, BOT_DEVICE_ID);
    } catch (error) {
      this.log.warn(
        { err: error },
        "could not give the bot user a device; it will not receive to-device messages",
      );
    }
  }

  /**
   * Asks the homeserver to ping us back (`/_matrix/client/v1/appservice/{id}/ping`): proves our
   * as_token, its hs_token and both network directions at once. Logs a diagnosis on failure.
   */
  async pingHomeserver(): Promise<PingReport> {
    try {
      const { duration_ms } = await this.client.appservicePing(
        this.registration.id,
        `courier-start-${Date.now()}`,
      );
      this.log.info({ durationMs: duration_ms }, "homeserver ping: both directions work");
      this.metrics?.homeserverReachable(true);
      return { ok: true, durationMs: duration_ms };
    } catch (error) {
      // An error answer still proves the homeserver is up; only no answer at all says it is not.
      this.metrics?.homeserverReachable(error instanceof MatrixError);
      const diagnosis = diagnosePing(error, this.registration.url);
      this.log.error({ err: error, diagnosis }, "homeserver ping failed");
      return { ok: false, diagnosis };
    }
  }

  /**
   * Stops in reverse order: new transactions are answered 503 (the homeserver retries later),
   * running handlers finish; with `drain`, pending requests keep leaving until none is left or
   * `deadlineMs` passed (with a progress report); requests in flight finish; the store closes.
   * Nothing committed is lost: what is still pending is sent on the next start.
   */
  async stop(deadlineMs = 10_000, options: { drain?: boolean } = {}): Promise<void> {
    this.#accepting = false;
    this.#stopped();
    clearInterval(this.#pruneTimer);
    this.#recovery.stop();
    await this.dispatcher.stop(deadlineMs);
    await this.host.stop();
    await this.#crypto?.stop();
    if (options.drain) await this.#drain(deadlineMs);
    await this.outbox.stop(deadlineMs);
    await this.#server?.close();
    await this.#mirror?.close();
    await this.#stores.close();
    this.log.info("courier stopped");
  }

  async #drain(deadlineMs: number): Promise<void> {
    const { pending } = await this.#outboxStore.totals();
    if (pending === 0) return;
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<void>((resolve) => (timer = setTimeout(resolve, deadlineMs)));
    const done = await followOutbox(this.outbox, this.#progress("draining the outbox"), pending, {
      until: deadline,
    });
    clearTimeout(timer);
    if (done < pending)
      this.log.warn({ left: pending - done }, "stopping with requests pending; they go next start");
  }

  /** Account actions for the bot or a ghost of our namespace; refuses anyone else. */
  intent(userId: string): Intent {
    const isBot = userId === this.botUserId;
    if (!isBot && !this.#ownNamespace(userId)) throw new NotOurUserError(userId);
    const as = isBot ? undefined : { userId: toUserId(userId) };
    const ensureRegistered = async () => {
      if (!isBot && !this.#registered.has(userId)) {
        await this.client.registerGhost(userId.slice(1, userId.indexOf(":")));
        this.#registered.add(userId);
      }
    };
    return {
      userId,
      ensureRegistered,
      join: async (room) => {
        await ensureRegistered();
        await this.client.join(room, as);
      },
      setDisplayName: async (name) => {
        await ensureRegistered();
        await this.client.setDisplayName(toUserId(userId), name);
      },
      setAvatarUrl: async (mxc) => {
        await ensureRegistered();
        await this.client.setAvatarUrl(toUserId(userId), mxc);
      },
      createRoom: async (body) => {
        await ensureRegistered();
        return (await this.client.createRoom(body, as)).room_id;
      },
      invite: async (room, invitee) => {
        await ensureRegistered();
        await this.client.invite(toRoomId(room), toUserId(invitee), as);
      },
      leave: async (room) => {
        await ensureRegistered();
        await this.client.leave(toRoomId(room), as);
      },
      // Read as the bot: it is in every room the appservice acts in.
      getState: async (room, type, stateKey = "") =>
        (await this.client.getStateEvent(room, type, stateKey))?.content,
    };
  }
}

function diagnosePing(error: unknown, url: string): string {
  if (error instanceof MatrixError) {
    switch (error.errcode) {
      case "M_UNKNOWN_TOKEN":
      case "M_MISSING_TOKEN":
        return "the homeserver does not know our as_token: is registration.yaml listed in its app_service_config_files, and was it restarted since?";
      case "M_FORBIDDEN":
        return "the as_token belongs to another appservice id: the registration's id and the config's appservice.id must match";
      case "M_URL_NOT_SET":
        return "the registration has no url: the homeserver cannot push to us";
      case "M_CONNECTION_FAILED":
        return `the homeserver could not reach us at ${url}, or we refused its hs_token: check the registration url, the bind address and the hs_token`;
      case "M_CONNECTION_TIMEOUT":
        return `the homeserver's request to ${url} timed out`;
      case "M_UNRECOGNIZED":
        return "the homeserver does not support appservice ping (Matrix v1.7); both directions are unproven";
    }
    return `the homeserver answered ${error.message}`;
  }
  return `the homeserver is unreachable: ${(error as Error).message}`;
}
