/**
 * Typed errors. Every error ringtree rejects or throws is a {@link RingtreeError}
 * subclass with a stable `code`, the operation it concerns, the rank that saw it
 * and a remedy a user can act on.
 *
 * @module
 */

/** Stable string codes, one per error class. */
export type RingtreeErrorCode =
  | 'ERR_RINGTREE_INVALID_ARGUMENT'
  | 'ERR_RINGTREE_PEER_LOST'
  | 'ERR_RINGTREE_COLLECTIVE_MISMATCH'
  | 'ERR_RINGTREE_TIMEOUT'
  | 'ERR_RINGTREE_ABORTED'
  | 'ERR_RINGTREE_BACKEND_UNAVAILABLE'
  | 'ERR_RINGTREE_INTERNAL';

/** Details every ringtree error carries. All fields are optional. */
export interface RingtreeErrorDetails {
  /** The operation that failed, e.g. `'allReduce'`, `'init'`, `'store.get'`. */
  op?: string;
  /** The rank that raised the error (this process's rank), or undefined before init. */
  rank?: number;
  /** What the user can do about it. */
  remedy?: string;
  /** The other rank the error is about (a dead peer, a lagging rank). */
  peer?: number;
  /** The deadline that expired, in milliseconds. */
  timeoutMs?: number;
  /** The per-backend sequence number of the operation. */
  seq?: number;
  /** The underlying error, if any. */
  cause?: unknown;
}

/** Base class of every error ringtree produces. */
export class RingtreeError extends Error {
  /** Stable machine-readable code. */
  readonly code: RingtreeErrorCode;
  /** The operation that failed. */
  readonly op: string | undefined;
  /** The rank that raised the error. */
  readonly rank: number | undefined;
  /** What to do about it. */
  readonly remedy: string | undefined;
  /** The other rank the error is about, if any. */
  readonly peer: number | undefined;
  /** The deadline that expired (ms), for timeouts. */
  readonly timeoutMs: number | undefined;
  /** Sequence number of the operation, if it had one. */
  readonly seq: number | undefined;

  constructor(code: RingtreeErrorCode, message: string, details: RingtreeErrorDetails = {}) {
    const where: string[] = [];
    if (details.op !== undefined) where.push(`op ${details.op}`);
    if (details.rank !== undefined) where.push(`rank ${details.rank}`);
    if (details.seq !== undefined) where.push(`seq ${details.seq}`);
    if (details.timeoutMs !== undefined) where.push(`deadline ${details.timeoutMs} ms`);
    let full = where.length > 0 ? `${message} [${where.join(', ')}]` : message;
    if (details.remedy) full += `\nRemedy: ${details.remedy}`;
    super(full, details.cause !== undefined ? { cause: details.cause } : undefined);
    this.name = new.target.name;
    this.code = code;
    this.op = details.op;
    this.rank = details.rank;
    this.remedy = details.remedy;
    this.peer = details.peer;
    this.timeoutMs = details.timeoutMs;
    this.seq = details.seq;
  }
}

/** Bad input, rejected before any byte moves. Does not poison the communicator. */
export class InvalidArgumentError extends RingtreeError {
  constructor(message: string, details: RingtreeErrorDetails = {}) {
    super('ERR_RINGTREE_INVALID_ARGUMENT', message, details);
  }
}

/** A peer process died, exited or became unreachable. */
export class PeerLostError extends RingtreeError {
  constructor(message: string, details: RingtreeErrorDetails = {}) {
    super('ERR_RINGTREE_PEER_LOST', message, {
      remedy: 'Check the lost rank\'s own output for why it exited; restart the job (ringtree launch --max-restarts).',
      ...details,
    });
  }
}

/** Ranks called different collectives, or the same one with different counts, dtypes, ops or roots. */
export class CollectiveMismatchError extends RingtreeError {
  constructor(message: string, details: RingtreeErrorDetails = {}) {
    super('ERR_RINGTREE_COLLECTIVE_MISMATCH', message, {
      remedy: 'Make every rank issue the same collectives in the same order with the same count, dtype, op and root.',
      ...details,
    });
  }
}

/** A deadline passed. */
export class TimeoutError extends RingtreeError {
  constructor(message: string, details: RingtreeErrorDetails = {}) {
    super('ERR_RINGTREE_TIMEOUT', message, {
      remedy: 'Find why the lagging rank did not reach this call; raise `timeoutMs` if the work is just slow.',
      ...details,
    });
  }
}

/** The communicator was aborted, locally or by a peer, or an AbortSignal fired. */
export class AbortedError extends RingtreeError {
  constructor(message: string, details: RingtreeErrorDetails = {}) {
    super('ERR_RINGTREE_ABORTED', message, details);
  }
}

/** A backend (native addon, shared memory, GPU, NCCL, BLAS) cannot be used here. */
export class BackendUnavailableError extends RingtreeError {
  constructor(message: string, details: RingtreeErrorDetails = {}) {
    super('ERR_RINGTREE_BACKEND_UNAVAILABLE', message, details);
  }
}

/** A bug in ringtree: please report it. */
export class InternalError extends RingtreeError {
  constructor(message: string, details: RingtreeErrorDetails = {}) {
    super('ERR_RINGTREE_INTERNAL', message, {
      remedy: 'This is a bug in ringtree; please report it with the flight-recorder dump if one was written.',
      ...details,
    });
  }
}

/** Native status codes (native/core/status.h) in order. */
export const NATIVE_CODES = [
  'OK',
  'INVALID_ARGUMENT',
  'PEER_LOST',
  'COLLECTIVE_MISMATCH',
  'TIMEOUT',
  'ABORTED',
  'BACKEND_UNAVAILABLE',
  'INTERNAL',
] as const;

/** A failure as the addon reports it. */
export interface NativeFailure {
  code: number;
  message: string;
  remedy?: string;
  peer?: number;
}

/** Turn a native status into the matching error class. */
export function errorFromNative(failure: NativeFailure, details: RingtreeErrorDetails = {}): RingtreeError {
  const d: RingtreeErrorDetails = { ...details };
  if (failure.remedy) d.remedy = failure.remedy;
  if (failure.peer !== undefined && failure.peer >= 0) d.peer = failure.peer;
  switch (failure.code) {
    case 1: return new InvalidArgumentError(failure.message, d);
    case 2: return new PeerLostError(failure.message, d);
    case 3: return new CollectiveMismatchError(failure.message, d);
    case 4: return new TimeoutError(failure.message, d);
    case 5: return new AbortedError(failure.message, d);
    case 6: return new BackendUnavailableError(failure.message, d);
    default: return new InternalError(failure.message, d);
  }
}
