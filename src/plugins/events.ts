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
  /** Set when the event came encrypted and was decrypted for you: who sent it, and how trusted. */
  readonly encryption?: EventEncryption;
}

/** How an encrypted event was sent: the device, and the sdk's trust in it (not strict). */
export interface EventEncryption {
  readonly algorithm: "m.megolm.v1.aes-sha2";
  readonly senderDevice: string | undefined;
  readonly senderCurve25519Key: string;
  /** "verified": no warning; "unverified": a device its owner has not verified; "warning": red shield. */
  readonly trust: "verified" | "unverified" | "warning";
  readonly warning: string | undefined;
}

/** A to-device message as an appservice receives it (MSC2409). */
export interface ToDeviceEvent<C = Record<string, unknown>> {
  readonly type: string;
  readonly sender: string;
  readonly to_user_id: string;
  readonly to_device_id: string;
  readonly content: C;
  /** True when it came Olm-encrypted to one of our devices and was decrypted for you. */
  readonly decrypted?: boolean;
}

/** Typing, receipts, presence (MSC2409 ephemeral). */
export interface EphemeralEvent<C = Record<string, unknown>> {
  readonly type: string;
  readonly room_id?: string;
  readonly content: C;
}
