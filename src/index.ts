// The public API of matrix-courier. Anything not exported here is internal.
export { roomId, userId } from "./ids.ts";
export type { RoomId, UserId, EventId, TxnId, DeviceId } from "./ids.ts";
export {
  CourierError,
  ConfigError,
  EventTooLargeError,
  DeadLetterError,
  OutboxStoppedError,
  PluginError,
  InboundRequestError,
  NotOurUserError,
} from "./errors.ts";
export type { ConfigProblem } from "./errors.ts";

export { Courier } from "./runtime/Courier.ts";
export type { CourierHooks, CourierOptions, CourierStores, PingReport } from "./runtime/Courier.ts";
export { createCourier, openSqliteStores } from "./runtime/createCourier.ts";
export type { CreateCourierOptions } from "./runtime/createCourier.ts";
export { loadConfig } from "./config/loadConfig.ts";
export type { CourierConfig } from "./config/schema.ts";
export { loadRegistration, writeRegistration } from "./config/registration.ts";
export type { Registration } from "./config/registration.ts";

export { MatrixClient } from "./matrix/MatrixClient.ts";
export type { MatrixClientOptions } from "./matrix/MatrixClient.ts";
export { MatrixError, MatrixNetworkError } from "./matrix/MatrixError.ts";
export type { MatrixRequest, Masquerade, ToDeviceMessages } from "./matrix/requests.ts";

export { deriveTxnId } from "./outbox/deriveTxnId.ts";
export type { TxnIdInput } from "./outbox/deriveTxnId.ts";
export type { OutboxKind } from "./store/OutboxStore.ts";
export { Outbox } from "./outbox/Outbox.ts";
export { CauseScope } from "./outbox/CauseScope.ts";
export type {
  OutboxItem,
  Enqueued,
  Delivery,
  OutboxStats,
  OutboxEvents,
  EnqueueOptions,
} from "./outbox/types.ts";
export type { OutboxOptions, OutboxTransport } from "./outbox/options.ts";

export type { OutboxStore, OutboxRow, OutboxState } from "./store/OutboxStore.ts";
export { SqliteOutboxStore } from "./store/sqlite/SqliteOutboxStore.ts";

export { definePlugin } from "./plugins/definePlugin.ts";
export type {
  PluginDefinition,
  Bot,
  SendAs,
  SendContext,
  EventContext,
  CommandContext,
  ToDeviceContext,
  EphemeralContext,
  EventFilter,
  CommandOptions,
  Intent,
  WebhookContext,
  WebhookMethod,
  WebhookOptions,
  WebhookRequest,
  WebhookScheme,
  ScheduleContext,
  EveryOptions,
} from "./plugins/definePlugin.ts";
export type { PluginStore } from "./store/PluginStore.ts";
export { verifyBearer, verifyHubSignature, hubSignature } from "./plugins/webhookAuth.ts";
export type { WebhookAuthResult } from "./plugins/webhookAuth.ts";
export type { MatrixEvent, ToDeviceEvent, EphemeralEvent } from "./plugins/events.ts";

export { defineBridge } from "./bridge/defineBridge.ts";
export type { BridgeDefinition } from "./bridge/defineBridge.ts";
export type {
  BridgeConnector,
  BridgeHost,
  EditCapable,
  RedactCapable,
  ReactCapable,
  TypingCapable,
  BackfillCapable,
  OutgoingMessage,
  MatrixSender,
  RemoteEvent,
  RemoteUser,
  RemoteChannel,
} from "./bridge/BridgeConnector.ts";
export type { BridgeConfig } from "./bridge/bridgeConfig.ts";
export { escapeLocalpart, unescapeLocalpart, GhostNamespace } from "./bridge/ghostLocalpart.ts";
export { RemoteUnavailableError, PermanentRemoteError } from "./errors.ts";
