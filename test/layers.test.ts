// Reference layers: analytic gradients against central finite differences,
// async and sync passes agreeing, SGD's update rule; and the large-batch LR helpers.
import { describe, expect, it } from 'vitest';
import { GELU, Linear, MSELoss, ReLU, SGD, Sequential, seededRandom } from '../lib/parallel/layers.js';
import { WarmupScheduler, linearScaledLr } from '../lib/parallel/lrSchedule.js';
import { InvalidArgumentError } from '../lib/errors.js';

const BATCH = 5, IN = 4, HIDDEN = 6, OUT = 3;

function data(seed: number): { x: Float32Array; y: Float32Array } {
  const r = seededRandom(seed);
  return {
    x: Float32Array.from({ length: BATCH * IN }, () => 2 * r() - 1),
    y: Float32Array.from({ length: BATCH * OUT }, () => 2 * r() - 1),
  };
}

function lossOf(net: Sequential, x: Float32Array, y: Float32Array): number {
  return new MSELoss().forward(net.forwardSync(x), y);
}

/**
 * Every parameter entry (and every input entry) of `net`: analytic gradient vs
 * (L(w + h) - L(w - h)) / 2h in float32 with h = 1e-2. Float32 forward passes
 * carry ~1e-7 relative error, so the difference quotient is good to ~1e-4;
 * the bound is 2e-3 * max(1, |g|) plus the O(h^2) truncation of smooth layers.
 */
function checkGradients(net: Sequential, seed: number): void {
  const { x, y } = data(seed);
  const loss = new MSELoss();
  for (const g of net.grads) g.fill(0);
  loss.forward(net.forwardSync(x), y);
  net.backwardSync(loss.backward());
  const h = 1e-2;
  let checked = 0;
  net.params.forEach((p, k) => {
    for (let i = 0; i < p.length; i++) {
      const saved = p[i]!;
      p[i] = saved + h; const up = lossOf(net, x, y);
      p[i] = saved - h; const down = lossOf(net, x, y);
      p[i] = saved;
      const numeric = (up - down) / (2 * h);
      const analytic = net.grads[k]![i]!;
      expect(Math.abs(numeric - analytic), `param ${k}[${i}]: numeric ${numeric} analytic ${analytic}`).toBeLessThan(2e-3 * Math.max(1, Math.abs(analytic)));
      checked++;
    }
  });
  expect(checked).toBe(net.params.reduce((n, q) => n + q.length, 0));
}

describe('reference layers: finite differences', () => {
  it('Linear -> GELU -> Linear -> MSE: every weight and bias gradient', () => {
    checkGradients(new Sequential([new Linear(IN, HIDDEN, { seed: 1 }), new GELU(), new Linear(HIDDEN, OUT, { seed: 2 })]), 11);
  });

  it('Linear -> ReLU -> Linear (no bias) -> MSE: every gradient (the data keep pre-activations away from the kink)', () => {
    const net = new Sequential([new Linear(IN, HIDDEN, { seed: 3 }), new ReLU(), new Linear(HIDDEN, OUT, { seed: 4, bias: false })]);
    // A 1e-2 step moves a pre-activation by at most 1e-2 * |x| <= 1e-2: it cannot cross the kink if all are beyond 0.02.
    const pre = (net.layers[0] as Linear).forwardSync(data(12).x);
    expect(Math.min(...Array.from(pre, Math.abs))).toBeGreaterThan(0.02);
    checkGradients(net, 12);
  });

  it('input gradients of Linear, GELU and ReLU match finite differences', () => {
    for (const layer of [new Linear(IN, OUT, { seed: 5 }), new GELU(), new ReLU()]) {
      const { x } = data(21);
      for (let i = 0; i < x.length; i++) if (Math.abs(x[i]!) < 0.05) x[i] = 0.3;
      const outLen = layer instanceof Linear ? BATCH * OUT : x.length;
      const w = Float32Array.from({ length: outLen }, (_, i) => Math.sin(i + 1)); // L = sum(w * f(x))
      const L = (input: Float32Array) => layer.forwardSync(input).reduce((s, v, i) => s + v * w[i]!, 0);
      layer.forwardSync(x);
      const dx = layer.backwardSync(w);
      for (let i = 0; i < x.length; i++) {
        const xp = Float32Array.from(x); xp[i] = x[i]! + 1e-2;
        const xm = Float32Array.from(x); xm[i] = x[i]! - 1e-2;
        const numeric = (L(xp) - L(xm)) / 2e-2;
        expect(Math.abs(numeric - dx[i]!), `${layer.constructor.name} x[${i}]`).toBeLessThan(2e-3 * Math.max(1, Math.abs(numeric)));
      }
    }
  });

  it('ReLU has gradient 0 at 0 and GELU(0) = 0 with slope 1/2', () => {
    const relu = new ReLU();
    relu.forwardSync(new Float32Array([-1, 0, 2]));
    expect(Array.from(relu.backwardSync(new Float32Array([1, 1, 1])))).toEqual([0, 0, 1]);
    const gelu = new GELU();
    expect(gelu.forwardSync(new Float32Array([0]))[0]).toBe(0);
    expect(gelu.backwardSync(new Float32Array([1]))[0]).toBeCloseTo(0.5, 7);
  });
});

describe('reference layers: passes and optimizer', () => {
  it('async (gemm) and sync (gemmSync) passes give identical outputs and gradients; backward adds into gradients', async () => {
    const make = () => new Sequential([new Linear(IN, HIDDEN, { seed: 1 }), new GELU(), new Linear(HIDDEN, OUT, { seed: 2 })]);
    const a = make(), b = make();
    const { x, y } = data(3);
    const la = new MSELoss(), lb = new MSELoss();
    la.forward(await a.forward(x), y);
    lb.forward(b.forwardSync(x), y);
    const order: number[] = [];
    await a.backward(la.backward(), (i) => order.push(i));
    b.backwardSync(lb.backward());
    expect(order).toEqual([3, 2, 1, 0]); // reverse registration order, as DDP buckets expect
    a.grads.forEach((g, k) => expect(Array.from(g)).toEqual(Array.from(b.grads[k]!)));
    const once = Array.from(b.grads[0]!);
    lb.forward(b.forwardSync(x), y);
    b.backwardSync(lb.backward());
    b.grads[0]!.forEach((v, i) => expect(v).toBeCloseTo(2 * once[i]!, 6));
  });

  it('SGD: plain, momentum (buf = m * buf + g) and weight decay, then zeroGrad', () => {
    const p = new Float32Array([1, -2]);
    const g = new Float32Array([0.5, 0.25]);
    const sgd = new SGD([p], [g], { lr: 0.1, momentum: 0.9, weightDecay: 0.01 });
    sgd.step(); // d = g + 0.01 p = [0.51, 0.23]; buf = d
    expect(p[0]).toBeCloseTo(1 - 0.051, 6);
    expect(p[1]).toBeCloseTo(-2 - 0.023, 6);
    const p1 = Array.from(p);
    sgd.step(); // buf = 0.9 buf + (g + 0.01 p1)
    expect(p[0]).toBeCloseTo(p1[0]! - 0.1 * (0.9 * 0.51 + 0.5 + 0.01 * p1[0]!), 6);
    sgd.zeroGrad();
    expect(Array.from(g)).toEqual([0, 0]);
  });

  it('rejects misuse with InvalidArgumentError', () => {
    expect(() => new Linear(0, 3)).toThrow(InvalidArgumentError);
    expect(() => new Linear(3, 2).forwardSync(new Float32Array(4))).toThrow(/multiple of 3/);
    expect(() => new Linear(3, 2).backwardSync(new Float32Array(2))).toThrow(/before forward/);
    expect(() => new MSELoss().forward(new Float32Array(2), new Float32Array(3))).toThrow(InvalidArgumentError);
    expect(() => new SGD([new Float32Array(2)], [new Float32Array(3)], { lr: 0.1 })).toThrow(InvalidArgumentError);
  });
});

describe('large-batch LR helpers (Goyal et al. 2017)', () => {
  it('linear scaling: lr x k for batch x k', () => {
    expect(linearScaledLr(0.1, 256, 8192)).toBeCloseTo(3.2, 12);
    expect(() => linearScaledLr(0.1, 0, 8)).toThrow(InvalidArgumentError);
  });

  it('gradual warmup ramps linearly from the base rate to the scaled rate, then holds', () => {
    const s = new WarmupScheduler({ baseLr: 0.1, baseBatchSize: 256, globalBatchSize: 1024, warmupSteps: 4 });
    expect(s.targetLr).toBeCloseTo(0.4, 12);
    const seen = [s.lr];
    for (let i = 0; i < 5; i++) seen.push(s.step());
    [0.1, 0.175, 0.25, 0.325, 0.4, 0.4].forEach((v, i) => expect(seen[i]).toBeCloseTo(v, 12));
    expect(s.stepCount).toBe(5);
    expect(new WarmupScheduler({ baseLr: 0.1, warmupSteps: 2, warmupStartLr: 0.01 }).lrAt(1)).toBeCloseTo(0.055, 12);
    expect(new WarmupScheduler({ baseLr: 0.1 }).lr).toBe(0.1);
    expect(() => new WarmupScheduler({ baseLr: 0.1, warmupSteps: -1 })).toThrow(InvalidArgumentError);
  });
});
