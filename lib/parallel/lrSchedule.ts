/**
 * Large-batch learning-rate helpers from Goyal et al. 2017, "Accurate, Large
 * Minibatch SGD: Training ImageNet in 1 Hour": the linear scaling rule and
 * gradual warmup.
 *
 * @module
 */
import { InvalidArgumentError } from '../errors.js';

function positive(value: number, name: string, op: string): number {
  if (typeof value !== 'number' || !Number.isFinite(value) || value <= 0) {
    throw new InvalidArgumentError(`\`${name}\` must be a positive finite number, got ${String(value)}`, { op });
  }
  return value;
}

/**
 * Linear scaling rule: "when the minibatch size is multiplied by k, multiply
 * the learning rate by k". Returns `baseLr * globalBatchSize / baseBatchSize`.
 *
 * @param baseLr learning rate tuned for `baseBatchSize` (e.g. 0.1 for 256).
 * @param baseBatchSize the batch size `baseLr` was tuned for.
 * @param globalBatchSize the batch summed over all ranks (per-rank batch × world size).
 * @throws {InvalidArgumentError} for a non-positive or non-finite argument.
 */
export function linearScaledLr(baseLr: number, baseBatchSize: number, globalBatchSize: number): number {
  const op = 'linearScaledLr';
  return positive(baseLr, 'baseLr', op) * positive(globalBatchSize, 'globalBatchSize', op) / positive(baseBatchSize, 'baseBatchSize', op);
}

/** Options of {@link WarmupScheduler}. */
export interface WarmupSchedulerOptions {
  /** Learning rate tuned for `baseBatchSize`. */
  baseLr: number;
  /** Batch size `baseLr` belongs to. Default: `globalBatchSize` (no scaling). */
  baseBatchSize?: number;
  /** Global batch (all ranks together). Default: `baseBatchSize` (no scaling). */
  globalBatchSize?: number;
  /** Steps (optimizer updates) of the ramp; 0 = none. Goyal et al. ramp over 5 epochs. Default 0. */
  warmupSteps?: number;
  /** Learning rate at step 0. Default `baseLr` (Goyal et al.: from η to kη). */
  warmupStartLr?: number;
}

/**
 * Gradual warmup to the linearly scaled rate: at step `t < warmupSteps` the
 * rate is `start + (target - start) * t / warmupSteps`, from then on
 * `target = linearScaledLr(baseLr, baseBatchSize, globalBatchSize)`.
 * Combine it with a decay by multiplying its {@link lr}.
 *
 * ```ts
 * const sched = new WarmupScheduler({ baseLr: 0.1, baseBatchSize: 256, globalBatchSize: 256 * comm.size, warmupSteps: 5 * stepsPerEpoch });
 * for (...) { sgd.lr = sched.lr; ...; sched.step(); }
 * ```
 */
export class WarmupScheduler {
  /** The rate after warmup (linearly scaled). */
  readonly targetLr: number;
  /** The rate at step 0. */
  readonly startLr: number;
  /** Length of the ramp in steps. */
  readonly warmupSteps: number;
  private t = 0;

  /** @throws {InvalidArgumentError} for non-positive rates or batch sizes, or a negative/non-integer `warmupSteps`. */
  constructor(options: WarmupSchedulerOptions) {
    const op = 'WarmupScheduler';
    const baseBatch = options.baseBatchSize ?? options.globalBatchSize ?? 1;
    const globalBatch = options.globalBatchSize ?? baseBatch;
    this.targetLr = linearScaledLr(options.baseLr, baseBatch, globalBatch);
    this.startLr = options.warmupStartLr === undefined ? options.baseLr : positive(options.warmupStartLr, 'warmupStartLr', op);
    const steps = options.warmupSteps ?? 0;
    if (!Number.isInteger(steps) || steps < 0) throw new InvalidArgumentError(`\`warmupSteps\` must be a non-negative integer, got ${String(steps)}`, { op });
    this.warmupSteps = steps;
  }

  /** Steps taken so far. */
  get stepCount(): number {
    return this.t;
  }

  /** The rate for the current step. */
  get lr(): number {
    return this.lrAt(this.t);
  }

  /** The rate at step `t` (0-based). */
  lrAt(t: number): number {
    if (t >= this.warmupSteps) return this.targetLr;
    return this.startLr + (this.targetLr - this.startLr) * (t / this.warmupSteps);
  }

  /** Advance one step; returns the rate for the new current step. */
  step(): number {
    this.t++;
    return this.lr;
  }
}
