/**
 * The seqs of each lane's pending rows, in order, in memory. The journal's index of pending rows
 * is ordered by seq alone, so that a row enters it at the end and leaves it from the front (an
 * index by lane dirtied a page per lane in every group commit, twice per message); this answers
 * "the next rows of lane L" instead. One number a pending row.
 */
export class PendingByLane {
  /** Per lane: its pending seqs ascending, from `head` on (what is before was settled). */
  readonly #lanes = new Map<number, { seqs: number[]; head: number }>();

  /** A lane's pending seqs, ascending, as the journal lists them. */
  set(laneId: number, seqs: number[]): void {
    if (seqs.length > 0) this.#lanes.set(laneId, { seqs, head: 0 });
  }

  /** A row just committed; its seq is above any the lane has. */
  add(laneId: number, seq: number): void {
    const lane = this.#lanes.get(laneId);
    if (lane) lane.seqs.push(seq);
    else this.#lanes.set(laneId, { seqs: [seq], head: 0 });
  }

  /** A row settled: almost always the lane's first, as lanes are FIFO. */
  remove(laneId: number, seq: number): void {
    const lane = this.#lanes.get(laneId);
    if (!lane) return;
    if (lane.seqs[lane.head] === seq) lane.head++;
    else {
      const at = lane.seqs.indexOf(seq, lane.head);
      if (at < 0) return;
      lane.seqs.splice(at, 1);
    }
    if (lane.head === lane.seqs.length) this.#lanes.delete(laneId);
    else if (lane.head >= 1024 && lane.head * 2 >= lane.seqs.length) {
      // Drop the settled front now and then: shifting one by one would copy the array each time.
      lane.seqs = lane.seqs.slice(lane.head);
      lane.head = 0;
    }
  }

  /** Up to `limit` pending seqs of a lane above `afterSeq`, ascending. */
  after(laneId: number, afterSeq: number, limit: number): number[] {
    const lane = this.#lanes.get(laneId);
    if (!lane) return [];
    let low = lane.head;
    let high = lane.seqs.length;
    while (low < high) {
      const mid = (low + high) >>> 1;
      if ((lane.seqs[mid] as number) <= afterSeq) low = mid + 1;
      else high = mid;
    }
    return lane.seqs.slice(low, low + limit);
  }
}
