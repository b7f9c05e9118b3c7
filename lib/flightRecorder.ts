/**
 * A bounded ring of the most recent operations of one rank (PyTorch's flight
 * recorder idea): dumped as JSON on a timeout, a lost peer or a mismatch so
 * the ranks' last steps can be compared side by side.
 *
 * It records every operation, so it must cost next to nothing: the ring is
 * preallocated columns, recording allocates nothing, and record objects are
 * only built by {@link FlightRecorder.snapshot}.
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

const STATES = ['started', 'completed', 'failed'] as const;

export class FlightRecorder {
  private readonly kinds: string[];
  private readonly details: Array<Record<string, unknown> | undefined>;
  private readonly errors: Array<string | undefined>;
  private readonly seqs: Float64Array;
  private readonly started: Float64Array;
  private readonly ended: Float64Array;
  private readonly states: Uint8Array;
  // The handle of the record in each slot (handles only grow), so a late
  // finish() for a record the ring already overwrote is ignored.
  private readonly handles: Float64Array;
  private next = 0;

  /** @param capacity how many records to keep (default 2000). */
  constructor(private readonly capacity = 2000) {
    this.kinds = new Array<string>(capacity).fill('');
    this.details = new Array<Record<string, unknown> | undefined>(capacity).fill(undefined);
    this.errors = new Array<string | undefined>(capacity).fill(undefined);
    this.seqs = new Float64Array(capacity);
    this.started = new Float64Array(capacity);
    this.ended = new Float64Array(capacity);
    this.states = new Uint8Array(capacity);
    this.handles = new Float64Array(capacity).fill(-1);
  }

  /**
   * Records the start of an operation.
   * @param details extra fields for the dump (kept by reference: do not mutate).
   * @returns a handle for {@link finish}.
   */
  start(kind: string, seq: number, details?: Record<string, unknown>): number {
    const handle = this.next++;
    const i = handle % this.capacity;
    this.handles[i] = handle;
    this.kinds[i] = kind;
    this.details[i] = details;
    this.errors[i] = undefined;
    this.seqs[i] = seq;
    this.started[i] = Date.now();
    this.ended[i] = 0;
    this.states[i] = 0;
    return handle;
  }

  /**
   * Record an operation that already ended (synchronous calls: nothing can
   * look at the ring while one runs, and the engine timed it).
   * @param startedAt ms since the epoch; `endedAt` likewise.
   */
  record(kind: string, seq: number, details: Record<string, unknown> | undefined, startedAt: number, endedAt: number,
    failure: { message: string } | null): void {
    const handle = this.next++;
    const i = handle % this.capacity;
    this.handles[i] = handle;
    this.kinds[i] = kind;
    this.details[i] = details;
    this.errors[i] = failure ? failure.message : undefined;
    this.seqs[i] = seq;
    this.started[i] = startedAt;
    this.ended[i] = endedAt;
    this.states[i] = failure ? 2 : 1;
  }

  finish(handle: number, failure: { message: string } | null): void {
    const i = handle % this.capacity;
    if (this.handles[i] !== handle) return;
    this.ended[i] = Date.now();
    this.states[i] = failure ? 2 : 1;
    if (failure) this.errors[i] = failure.message;
  }

  /** Oldest first. */
  snapshot(): FlightRecord[] {
    const out: FlightRecord[] = [];
    const first = Math.max(0, this.next - this.capacity);
    for (let h = first; h < this.next; h++) {
      const i = h % this.capacity;
      const rec: FlightRecord = {
        ...this.details[i], kind: this.kinds[i]!, seq: this.seqs[i]!, state: STATES[this.states[i]!]!, startedAt: this.started[i]!,
      };
      if (this.ended[i]) rec.endedAt = this.ended[i];
      if (this.errors[i] !== undefined) rec.error = this.errors[i];
      out.push(rec);
    }
    return out;
  }
}
