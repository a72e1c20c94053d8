/** The parts of a Matrix event every handler can rely on; `content` is typed by the handler. */
export interface MatrixEvent<C = Record<string, unknown>> {
  readonly event_id: string;
  readonly room_id: string;
  readonly sender: string;
  readonly type: string;
  readonly state_key?: string;
  readonly origin_server_ts: number;
  readonly content: C;
  readonly unsigned?: Record<string, unknown>;
}

/** A to-device message as an appservice receives it (MSC2409). */
export interface ToDeviceEvent<C = Record<string, unknown>> {
  readonly type: string;
  readonly sender: string;
  readonly to_user_id: string;
  readonly to_device_id: string;
  readonly content: C;
}

/** Typing, receipts, presence (MSC2409 ephemeral). */
export interface EphemeralEvent<C = Record<string, unknown>> {
  readonly type: string;
  readonly room_id?: string;
  readonly content: C;
}
