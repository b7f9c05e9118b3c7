/**
 * Reference layers with explicit forward and backward passes over
 * {@link gemm}: enough to train a small MLP in tests, examples and benches and
 * to prove that data-parallel training reproduces single-process training.
 * Not a framework: no autograd, no shapes beyond `[batch, features]` row-major
 * Float32Arrays.
 *
 * Conventions (PyTorch's): `Linear` holds `weight` as `[out, in]` and `bias`
 * as `[out]`; backward passes **add** into the gradients (so gradient
 * accumulation works), and {@link SGD.zeroGrad} clears them.
 *
 * @module
 */
import { gemm, gemmSync } from '../gemm.js';
import { InvalidArgumentError } from '../errors.js';

/** A layer: forward and backward on `[batch, features]` row-major arrays, async (GEMM thread) or sync. */
export interface Layer {
  /** Parameters, in registration order (empty for activations). */
  readonly params: Float32Array[];
  /** Their gradients (same order and lengths). */
  readonly grads: Float32Array[];
  /** Output for input `x`; remembers what backward needs. */
  forward(x: Float32Array): Promise<Float32Array>;
  /** {@link forward} on the calling thread (gemmSync). */
  forwardSync(x: Float32Array): Float32Array;
  /**
   * Gradient of the loss with respect to the last forward's input, given `dy`
   * (with respect to its output); adds into {@link grads}. `onGradsReady` is
   * called once this layer's parameter gradients are final, before the input
   * gradient is computed (where a DDP bucket can start). `inputGrad: false`
   * skips the input gradient (first layer) and returns an empty array.
   */
  backward(dy: Float32Array, onGradsReady?: () => void, inputGrad?: boolean): Promise<Float32Array>;
  /** {@link backward} on the calling thread. */
  backwardSync(dy: Float32Array, onGradsReady?: () => void, inputGrad?: boolean): Float32Array;
}

/** A small deterministic PRNG (mulberry32) for reproducible initialisation. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Options of {@link Linear}. */
export interface LinearOptions {
  /** Seed of the initialisation: U(-1/sqrt(in), 1/sqrt(in)) for weight and bias, PyTorch's default. Default 0. */
  seed?: number;
  /** Add a bias. Default true. */
  bias?: boolean;
}

function rowsOf(x: Float32Array, features: number, what: string): number {
  if (!(x instanceof Float32Array)) throw new InvalidArgumentError(`expected a Float32Array for \`${what}\`, got ${(x as object)?.constructor?.name ?? typeof x}`);
  if (x.length % features !== 0) throw new InvalidArgumentError(`\`${what}\` has ${x.length} elements, not a multiple of ${features} features`);
  return x.length / features;
}

/** `y = x @ weight^T + bias`, weight `[out, in]`. */
export class Linear implements Layer {
  readonly inFeatures: number;
  readonly outFeatures: number;
  /** `[out, in]` row-major. */
  readonly weight: Float32Array;
  /** `[out]`, or null without bias. */
  readonly bias: Float32Array | null;
  private weightGrad: Float32Array;
  private biasGrad: Float32Array | null;
  private input: Float32Array | null = null;

  /**
   * @param inFeatures input width.
   * @param outFeatures output width.
   * @throws {InvalidArgumentError} for non-positive widths.
   */
  constructor(inFeatures: number, outFeatures: number, options: LinearOptions = {}) {
    if (!Number.isInteger(inFeatures) || inFeatures < 1 || !Number.isInteger(outFeatures) || outFeatures < 1) {
      throw new InvalidArgumentError(`Linear needs positive integer widths, got ${String(inFeatures)} -> ${String(outFeatures)}`);
    }
    this.inFeatures = inFeatures;
    this.outFeatures = outFeatures;
    const random = seededRandom(options.seed ?? 0);
    const bound = 1 / Math.sqrt(inFeatures);
    this.weight = Float32Array.from({ length: inFeatures * outFeatures }, () => (2 * random() - 1) * bound);
    this.bias = options.bias === false ? null : Float32Array.from({ length: outFeatures }, () => (2 * random() - 1) * bound);
    this.weightGrad = new Float32Array(this.weight.length);
    this.biasGrad = this.bias ? new Float32Array(outFeatures) : null;
  }

  /** `[weight, bias]` (or `[weight]`), registration order. */
  get params(): Float32Array[] {
    return this.bias ? [this.weight, this.bias] : [this.weight];
  }

  /** The gradients backward adds into, same order as {@link params}. */
  get grads(): Float32Array[] {
    return this.biasGrad ? [this.weightGrad, this.biasGrad] : [this.weightGrad];
  }

  /**
   * Write gradients into these arrays from now on (e.g. DDP's bucket views).
   * @throws {InvalidArgumentError} for a wrong count or length.
   */
  useGrads(grads: Float32Array[]): void {
    const expected = this.grads;
    if (grads.length !== expected.length || grads.some((g, i) => !(g instanceof Float32Array) || g.length !== expected[i]!.length)) {
      throw new InvalidArgumentError(`useGrads() needs ${expected.length} Float32Arrays of lengths ${expected.map((g) => g.length).join(', ')}`);
    }
    this.weightGrad = grads[0]!;
    this.biasGrad = grads[1] ?? null;
  }

  async forward(x: Float32Array): Promise<Float32Array> {
    const batch = rowsOf(x, this.inFeatures, 'x');
    const y = this.biasRows(batch);
    await gemm(x, this.weight, y, { m: batch, n: this.outFeatures, k: this.inFeatures, transB: true, beta: this.bias ? 1 : 0 });
    this.input = x;
    return y;
  }

  forwardSync(x: Float32Array): Float32Array {
    const batch = rowsOf(x, this.inFeatures, 'x');
    const y = this.biasRows(batch);
    gemmSync(x, this.weight, y, { m: batch, n: this.outFeatures, k: this.inFeatures, transB: true, beta: this.bias ? 1 : 0 });
    this.input = x;
    return y;
  }

  async backward(dy: Float32Array, onGradsReady?: () => void, inputGrad = true): Promise<Float32Array> {
    const { x, batch } = this.saved(dy);
    // dW += dy^T @ x: [out, batch] @ [batch, in].
    await gemm(dy, x, this.weightGrad, { m: this.outFeatures, n: this.inFeatures, k: batch, transA: true, beta: 1 });
    this.addBiasGrad(dy, batch);
    onGradsReady?.();
    if (!inputGrad) return new Float32Array(0);
    const dx = new Float32Array(batch * this.inFeatures);
    await gemm(dy, this.weight, dx, { m: batch, n: this.inFeatures, k: this.outFeatures });
    return dx;
  }

  backwardSync(dy: Float32Array, onGradsReady?: () => void, inputGrad = true): Float32Array {
    const { x, batch } = this.saved(dy);
    gemmSync(dy, x, this.weightGrad, { m: this.outFeatures, n: this.inFeatures, k: batch, transA: true, beta: 1 });
    this.addBiasGrad(dy, batch);
    onGradsReady?.();
    if (!inputGrad) return new Float32Array(0);
    const dx = new Float32Array(batch * this.inFeatures);
    gemmSync(dy, this.weight, dx, { m: batch, n: this.inFeatures, k: this.outFeatures });
    return dx;
  }

  private biasRows(batch: number): Float32Array {
    const y = new Float32Array(batch * this.outFeatures);
    if (this.bias) for (let r = 0; r < batch; r++) y.set(this.bias, r * this.outFeatures);
    return y;
  }

  private saved(dy: Float32Array): { x: Float32Array; batch: number } {
    const x = this.input;
    if (!x) throw new InvalidArgumentError('Linear.backward() called before forward()');
    const batch = rowsOf(dy, this.outFeatures, 'dy');
    if (batch * this.inFeatures !== x.length) throw new InvalidArgumentError(`\`dy\` has ${batch} rows but the last forward had ${x.length / this.inFeatures}`);
    return { x, batch };
  }

  private addBiasGrad(dy: Float32Array, batch: number): void {
    const g = this.biasGrad;
    if (!g) return;
    const n = this.outFeatures;
    for (let r = 0; r < batch; r++) {
      const row = r * n;
      for (let j = 0; j < n; j++) g[j] = g[j]! + dy[row + j]!;
    }
  }
}

/** Elementwise activation base: no parameters, sync math wrapped for the async interface. */
abstract class Activation implements Layer {
  readonly params: Float32Array[] = [];
  readonly grads: Float32Array[] = [];
  protected input: Float32Array | null = null;

  protected abstract f(x: number): number;
  protected abstract df(x: number): number;

  forward(x: Float32Array): Promise<Float32Array> {
    try {
      return Promise.resolve(this.forwardSync(x));
    } catch (e) {
      return Promise.reject(e);
    }
  }

  forwardSync(x: Float32Array): Float32Array {
    if (!(x instanceof Float32Array)) throw new InvalidArgumentError('expected a Float32Array for `x`');
    this.input = x;
    const y = new Float32Array(x.length);
    for (let i = 0; i < x.length; i++) y[i] = this.f(x[i]!);
    return y;
  }

  backward(dy: Float32Array, onGradsReady?: () => void, inputGrad = true): Promise<Float32Array> {
    try {
      return Promise.resolve(this.backwardSync(dy, onGradsReady, inputGrad));
    } catch (e) {
      return Promise.reject(e);
    }
  }

  backwardSync(dy: Float32Array, onGradsReady?: () => void, inputGrad = true): Float32Array {
    const x = this.input;
    if (!x) throw new InvalidArgumentError(`${this.constructor.name}.backward() called before forward()`);
    if (dy.length !== x.length) throw new InvalidArgumentError(`\`dy\` has ${dy.length} elements but the last input had ${x.length}`);
    onGradsReady?.();
    if (!inputGrad) return new Float32Array(0);
    const dx = new Float32Array(x.length);
    for (let i = 0; i < x.length; i++) dx[i] = dy[i]! * this.df(x[i]!);
    return dx;
  }
}

/** `max(0, x)`; its gradient at 0 is 0 (PyTorch's choice). */
export class ReLU extends Activation {
  protected f(x: number): number { return x > 0 ? x : 0; }
  protected df(x: number): number { return x > 0 ? 1 : 0; }
}

const GELU_C = Math.sqrt(2 / Math.PI);

/** GELU, tanh approximation (PyTorch's `GELU(approximate='tanh')`): `0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))`. */
export class GELU extends Activation {
  protected f(x: number): number {
    return 0.5 * x * (1 + Math.tanh(GELU_C * (x + 0.044715 * x * x * x)));
  }
  protected df(x: number): number {
    const u = GELU_C * (x + 0.044715 * x * x * x);
    const t = Math.tanh(u);
    return 0.5 * (1 + t) + 0.5 * x * (1 - t * t) * GELU_C * (1 + 3 * 0.044715 * x * x);
  }
}

/** Mean squared error over all elements: `mean((pred - target)^2)`. */
export class MSELoss {
  private diff: Float32Array | null = null;

  /**
   * The loss (a double), remembering what {@link backward} needs.
   * @throws {InvalidArgumentError} for arrays of different lengths or empty arrays.
   */
  forward(pred: Float32Array, target: Float32Array): number {
    if (pred.length !== target.length || pred.length === 0) {
      throw new InvalidArgumentError(`MSELoss needs non-empty arrays of equal length, got ${pred.length} and ${target.length}`);
    }
    const diff = new Float32Array(pred.length);
    let sum = 0;
    for (let i = 0; i < pred.length; i++) {
      const d = pred[i]! - target[i]!;
      diff[i] = d;
      sum += d * d;
    }
    this.diff = diff;
    return sum / pred.length;
  }

  /** Gradient with respect to `pred`: `2 (pred - target) / n`. @throws {InvalidArgumentError} before forward(). */
  backward(): Float32Array {
    const diff = this.diff;
    if (!diff) throw new InvalidArgumentError('MSELoss.backward() called before forward()');
    const scale = 2 / diff.length;
    const out = new Float32Array(diff.length);
    for (let i = 0; i < diff.length; i++) out[i] = diff[i]! * scale;
    return out;
  }
}

/** Options of {@link SGD}. */
export interface SgdOptions {
  /** Learning rate. Required. */
  lr: number;
  /** Momentum factor (PyTorch's form: `buf = momentum * buf + grad`, first step `buf = grad`). Default 0. */
  momentum?: number;
  /** L2 penalty added to the gradient (`grad + weightDecay * param`). Default 0. */
  weightDecay?: number;
}

/** Stochastic gradient descent over parameter/gradient pairs, PyTorch's update rule (no dampening, no Nesterov). */
export class SGD {
  /** Learning rate; change it between steps (e.g. from a scheduler). */
  lr: number;
  readonly momentum: number;
  readonly weightDecay: number;
  private readonly params: Float32Array[];
  private grads: Float32Array[];
  private readonly buffers: Array<Float32Array | null>;

  /** @throws {InvalidArgumentError} for mismatched arrays or a bad rate. */
  constructor(params: Float32Array[], grads: Float32Array[], options: SgdOptions) {
    if (params.length !== grads.length || params.some((p, i) => p.length !== grads[i]!.length)) {
      throw new InvalidArgumentError('SGD needs params and grads of equal count and lengths');
    }
    if (!Number.isFinite(options.lr) || options.lr < 0) throw new InvalidArgumentError(`\`lr\` must be a non-negative number, got ${String(options.lr)}`);
    this.params = params;
    this.grads = grads;
    this.lr = options.lr;
    this.momentum = options.momentum ?? 0;
    this.weightDecay = options.weightDecay ?? 0;
    this.buffers = params.map(() => null);
  }

  /** Apply one update: `param -= lr * (momentum buffer or gradient)`. */
  step(): void {
    for (let k = 0; k < this.params.length; k++) {
      const p = this.params[k]!;
      const g = this.grads[k]!;
      let d: Float32Array = g;
      if (this.weightDecay !== 0) {
        d = new Float32Array(g.length);
        for (let i = 0; i < g.length; i++) d[i] = g[i]! + this.weightDecay * p[i]!;
      }
      if (this.momentum !== 0) {
        let buf = this.buffers[k];
        if (!buf) {
          buf = Float32Array.from(d);
          this.buffers[k] = buf;
        } else {
          for (let i = 0; i < buf.length; i++) buf[i] = this.momentum * buf[i]! + d[i]!;
        }
        d = buf;
      }
      const lr = this.lr;
      for (let i = 0; i < p.length; i++) p[i] = p[i]! - lr * d[i]!;
    }
  }

  /** Set every gradient to zero. */
  zeroGrad(): void {
    for (const g of this.grads) g.fill(0);
  }

  /** Read gradients from these arrays from now on (e.g. DDP's bucket views). */
  useGrads(grads: Float32Array[]): void {
    if (grads.length !== this.grads.length) throw new InvalidArgumentError(`useGrads() needs ${this.grads.length} arrays`);
    this.grads = grads;
  }
}

/**
 * Layers run one after another, with the parameter bookkeeping DDP needs:
 * `params`/`grads` in registration order (layer by layer), and a backward
 * that reports each parameter index as soon as its gradient is final
 * (last layer first), for {@link DistributedDataParallel.markReady}.
 */
export class Sequential {
  readonly layers: Layer[];

  /** @param layers run first to last in forward, last to first in backward. */
  constructor(layers: Layer[]) {
    this.layers = layers;
  }

  /** All parameters, layer by layer. */
  get params(): Float32Array[] {
    return this.layers.flatMap((l) => l.params);
  }

  /** All gradients, layer by layer. */
  get grads(): Float32Array[] {
    return this.layers.flatMap((l) => l.grads);
  }

  /**
   * Write gradients into these arrays from now on (one per parameter, registration order), e.g. DDP's `grads` with `gradsAsBucketViews`.
   * @throws {InvalidArgumentError} for a wrong count or lengths.
   */
  useGrads(grads: readonly Float32Array[]): void {
    let k = 0;
    for (const l of this.layers) {
      const n = l.params.length;
      if (n === 0) continue;
      if (!(l instanceof Linear)) throw new InvalidArgumentError('useGrads() supports Linear layers only');
      l.useGrads(grads.slice(k, k + n));
      k += n;
    }
    if (k !== grads.length) throw new InvalidArgumentError(`useGrads() got ${grads.length} arrays for ${k} parameters`);
  }

  /** Forward through every layer (GEMMs on the GEMM thread). */
  async forward(x: Float32Array): Promise<Float32Array> {
    for (const l of this.layers) x = await l.forward(x);
    return x;
  }

  /** {@link forward} on the calling thread. */
  forwardSync(x: Float32Array): Float32Array {
    for (const l of this.layers) x = l.forwardSync(x);
    return x;
  }

  /** Backward through every layer, last first; `onGradReady(i)` for each parameter index as its gradient is final. */
  async backward(dy: Float32Array, onGradReady?: (index: number) => void): Promise<void> {
    const offsets = this.paramOffsets();
    for (let li = this.layers.length - 1; li >= 0; li--) {
      const l = this.layers[li]!;
      dy = await l.backward(dy, this.readyCallback(l, offsets[li]!, onGradReady), li > 0);
    }
  }

  /** {@link backward} on the calling thread. */
  backwardSync(dy: Float32Array, onGradReady?: (index: number) => void): void {
    const offsets = this.paramOffsets();
    for (let li = this.layers.length - 1; li >= 0; li--) {
      const l = this.layers[li]!;
      dy = l.backwardSync(dy, this.readyCallback(l, offsets[li]!, onGradReady), li > 0);
    }
  }

  private paramOffsets(): number[] {
    const out: number[] = [];
    let k = 0;
    for (const l of this.layers) {
      out.push(k);
      k += l.params.length;
    }
    return out;
  }

  private readyCallback(l: Layer, offset: number, onGradReady?: (index: number) => void): (() => void) | undefined {
    if (!onGradReady || l.params.length === 0) return undefined;
    // Within a layer the later-registered parameter (bias) is reported first, as reverse registration order expects.
    return () => { for (let j = l.params.length - 1; j >= 0; j--) onGradReady(offset + j); };
  }
}
