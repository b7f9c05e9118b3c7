/**
 * A bounded ring of the most recent operations of one rank (PyTorch's flight
 * recorder idea): dumped as JSON on a timeout, a lost peer or a mismatch so
 * the ranks' last steps can be compared side by side.
 *
 * @module
 */

/** One recorded operation. Times are ms since the epoch. */
export interface FlightRecord {
  kind: string;
  /** Collective sequence number (-1 for point-to-point). */
  seq: number;
  state: 'started' | 'completed' | 'failed';
  startedAt: number;
  endedAt?: number;
  error?: string;
  [key: string]: unknown;
}

export class FlightRecorder {
  private readonly ring: FlightRecord[] = [];
  private next = 0;

  /** @param capacity how many records to keep (default 2000). */
  constructor(private readonly capacity = 2000) {}

  start(kind: string, seq: number, details: Record<string, unknown> = {}): FlightRecord {
    const rec: FlightRecord = { ...details, kind, seq, state: 'started', startedAt: Date.now() };
    if (this.ring.length < this.capacity) this.ring.push(rec);
    else this.ring[this.next] = rec;
    this.next = (this.next + 1) % this.capacity;
    return rec;
  }

  finish(rec: FlightRecord, failure: { message: string } | null): void {
    rec.endedAt = Date.now();
    rec.state = failure ? 'failed' : 'completed';
    if (failure) rec.error = failure.message;
  }

  /** Oldest first. */
  snapshot(): FlightRecord[] {
    if (this.ring.length < this.capacity) return this.ring.map((r) => ({ ...r }));
    return [...this.ring.slice(this.next), ...this.ring.slice(0, this.next)].map((r) => ({ ...r }));
  }
}
