/** What an ownership tells the outbox. */
export interface LaneOwnershipEvents {
  /** Lanes this instance owns that have pending rows (after every renewal): send them. */
  owned(lanes: readonly string[]): void;
  /** Rows were journaled in these lanes, by any instance. */
  grew(lanes: readonly string[]): void;
  /**
   * Whether this instance is in the middle of the lane (a request on the wire, a handler
   * running): such a lane is not given back to balance the work. No I/O.
   */
  busy(lane: string): boolean;
}

/**
 * Which lanes this instance works on, when several instances share one store: each outbox lane
 * (a room, a to-device sender) and each inbound lane (a room's events) is owned by one instance
 * at a time, under a lease that expires when its owner stops renewing it (a crash), so per-lane
 * order holds across instances and a dead instance's lanes are taken over. Implementation:
 * `PgLaneLeases`.
 */
export interface LaneOwnership {
  /** This instance's name among those sharing the store. */
  readonly instanceId: string;
  /** Whether this instance holds the lane's lease now. No I/O. */
  owns(lane: string): boolean;
  /** How many lanes this instance holds now (metrics, dashboard). No I/O. */
  ownedCount(): number;
  /** Takes the lane's lease when nobody holds it (or it expired); true when it is ours. Does I/O. */
  claim(lane: string): Promise<boolean>;
  /** Starts renewing, balancing and listening; resolves after the first renewal. Does I/O. */
  start(events: LaneOwnershipEvents): Promise<void>;
  /** Stops, and gives every lease back so that others take the lanes at once. Does I/O. */
  stop(): Promise<void>;
}
