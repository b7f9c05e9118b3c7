// One rank of a DDP scenario for test/ddp.test.ts: prints one JSON line.
//
//   node ddp-train.mjs '<json config>'
//
// config: { mode: 'equiv' | 'kill' | 'join' | 'lstsq', compression, views, accumulate, bucketCapMb,
//           firstBucketCapMb, markOrder: 'backward' | 'registration', steps, killAt, divideByInitialWorldSize,
//           device }
// In 'equiv' and 'join', rank 0 also trains one process on the whole global batch (the reference).
// device: true gives DDP float32 DeviceArrays (through the CUDA/NCCL doubles in CI): the reference
// layers still compute on the host, each gradient is copied to its device array when it is final,
// and the averaged gradients come back to the host for the SGD step (parameters go back after it).
import {
  init, DistributedDataParallel, DistributedSampler, DeviceArray, Sequential, Linear, ReLU, GELU, MSELoss, SGD, seededRandom,
} from '../../dist/index.js';

const cfg = JSON.parse(process.argv[2] ?? '{}');
const comm = await init();
const { rank, size } = comm;
const out = { rank, size };

const IN = 6, HIDDEN = 10, OUT = 3;
const PER_RANK = 4;            // samples per rank per step
const GLOBAL = PER_RANK * size;
const LR = 0.2;

function model(seed) {
  return new Sequential([new Linear(IN, HIDDEN, { seed }), new GELU(), new Linear(HIDDEN, HIDDEN, { seed: seed + 1 }), new ReLU(), new Linear(HIDDEN, OUT, { seed: seed + 2 })]);
}

/** The global batch of step t: GLOBAL rows of inputs and targets, the same on every rank. */
function batch(t) {
  const r = seededRandom(1000 + t);
  const x = Float32Array.from({ length: GLOBAL * IN }, () => 2 * r() - 1);
  const y = Float32Array.from({ length: GLOBAL * OUT }, () => 2 * r() - 1);
  return { x, y };
}

function rows(a, width, from, count) {
  return a.slice(from * width, (from + count) * width);
}

function maxDiff(a, b) {
  let m = 0;
  a.forEach((p, i) => p.forEach((v, j) => { m = Math.max(m, Math.abs(v - b[i][j])); }));
  return m;
}

function digest(params) {
  let h = 0;
  for (const p of params) for (const v of new Uint32Array(p.buffer, p.byteOffset, p.length)) h = (Math.imul(h, 31) + v) | 0;
  return h;
}

/** Single process on the whole global batch of each step (rows chosen by `activeRows(t)`), sync GEMMs. */
function reference(steps, scaleOf = () => 1, activeRows = () => [0, GLOBAL]) {
  const m = model(7);
  const opt = new SGD(m.params, m.grads, { lr: LR });
  const loss = new MSELoss();
  for (let t = 0; t < steps; t++) {
    const { x, y } = batch(t);
    const [from, count] = activeRows(t);
    opt.zeroGrad();
    loss.forward(m.forwardSync(rows(x, IN, from, count)), rows(y, OUT, from, count));
    const dy = loss.backward();
    const s = scaleOf(t);
    if (s !== 1) for (let i = 0; i < dy.length; i++) dy[i] *= s;
    m.backwardSync(dy);
    opt.step();
  }
  return m.params;
}

/** Device mirrors of the model's arrays when cfg.device: { params, grads } (DeviceArrays), else null. */
let mirror = null;

/** Gradient i is final on the host: hand it to DDP (through its device array when on device). */
function ready(ddp, m, i) {
  if (mirror) {
    // Not awaited: DDP's pack copy is ordered after it by the array's tail.
    ddp.grads[i].copyFrom(m.grads[i]).catch(() => { /* surfaces from synchronize() */ });
  }
  ddp.markReady(i);
}

async function afterSync(ddp, m) {
  if (mirror) await Promise.all(ddp.grads.map((g, i) => g.copyTo(m.grads[i])));
}

async function afterStep(m) {
  if (mirror) await Promise.all(mirror.params.map((p, i) => p.copyFrom(m.params[i])));
}

async function trainStep(ddp, m, opt, loss, x, y, accumulate) {
  const markOrder = cfg.markOrder ?? 'backward';
  const onReady = markOrder === 'backward' ? (i) => ready(ddp, m, i) : undefined;
  opt.zeroGrad();
  // With accumulation, the local batch is split in `accumulate` micro-batches; all but the last run under noSync.
  const micro = PER_RANK / accumulate;
  for (let k = 0; k < accumulate; k++) {
    const run = async () => {
      loss.forward(await m.forward(rows(x, IN, k * micro, micro)), rows(y, OUT, k * micro, micro));
      const dy = loss.backward();
      if (accumulate > 1) for (let i = 0; i < dy.length; i++) dy[i] /= accumulate;
      await m.backward(dy, k === accumulate - 1 ? onReady : undefined);
    };
    if (k < accumulate - 1) await ddp.noSync(run);
    else await run();
  }
  if (markOrder === 'registration') for (let i = 0; i < m.params.length; i++) ready(ddp, m, i);
  await ddp.synchronize();
  await afterSync(ddp, m);
  opt.step();
  await afterStep(m);
}

async function setup() {
  // Ranks start from different weights: create() must broadcast rank 0's.
  const m = model(rank === 0 ? 7 : 100 + rank);
  const options = {
    compression: cfg.compression, gradsAsBucketViews: cfg.views, bucketCapMb: cfg.bucketCapMb, firstBucketCapMb: cfg.firstBucketCapMb,
  };
  if (cfg.device) {
    mirror = {
      params: await Promise.all(m.params.map((p) => DeviceArray.fromHost(p))),
      grads: await Promise.all(m.grads.map((g) => DeviceArray.fromHost(g))),
    };
    const ddp = await DistributedDataParallel.create(comm, mirror.params, mirror.grads, options);
    // create() broadcast rank 0's parameters on the device: bring them to the host model.
    await Promise.all(mirror.params.map((p, i) => p.copyTo(m.params[i])));
    out.onDevice = ddp.onDevice;
    return { m, ddp, opt: new SGD(m.params, m.grads, { lr: LR }), loss: new MSELoss() };
  }
  const ddp = await DistributedDataParallel.create(comm, m.params, m.grads, options);
  if (cfg.views) m.useGrads(ddp.grads);
  const opt = new SGD(m.params, ddp.grads, { lr: LR });
  return { m, ddp, opt, loss: new MSELoss() };
}

const scenarios = {
  async equiv() {
    const steps = cfg.steps ?? 5;
    const { m, ddp, opt, loss } = await setup();
    out.buckets = ddp.buckets.map((b) => b.paramIndices);
    const launchOrders = [];
    for (let t = 0; t < steps; t++) {
      const { x, y } = batch(t);
      await trainStep(ddp, m, opt, loss, rows(x, IN, rank * PER_RANK, PER_RANK), rows(y, OUT, rank * PER_RANK, PER_RANK), cfg.accumulate ?? 1);
      launchOrders.push(ddp.lastStepTimings().map((b) => b.index));
    }
    out.launchOrders = launchOrders;
    out.digest = digest(m.params);
    if (rank === 0) out.maxDiff = maxDiff(m.params, reference(steps));
  },

  async kill() {
    const { m, ddp, opt, loss } = await setup();
    for (let t = 0; t < 6; t++) {
      const { x, y } = batch(t);
      if (t === cfg.killAt && rank === size - 1) process.kill(process.pid, 'SIGKILL');
      try {
        await trainStep(ddp, m, opt, loss, rows(x, IN, rank * PER_RANK, PER_RANK), rows(y, OUT, rank * PER_RANK, PER_RANK), 1);
      } catch (e) {
        out.step = t;
        out.error = { name: e.name, code: e.code, message: e.message, causeName: e.cause?.name, peer: e.peer };
        return;
      }
    }
  },

  async join() {
    // Rank r has `steps - r` batches; with 'divideByInitialWorldSize' the reference scales by active/size.
    const steps = cfg.steps ?? 5;
    const mine = steps - rank;
    const { m, ddp, opt, loss } = await setup();
    const divideByInitial = cfg.divideByInitialWorldSize ?? true;
    const result = await ddp.join(async () => {
      for (let t = 0; t < mine; t++) {
        const { x, y } = batch(t);
        await trainStep(ddp, m, opt, loss, rows(x, IN, rank * PER_RANK, PER_RANK), rows(y, OUT, rank * PER_RANK, PER_RANK), cfg.accumulate ?? 1);
      }
      return mine;
    }, { divideByInitialWorldSize: divideByInitial });
    out.steps = result;
    // join() broadcast the final parameters (on the device when there).
    if (mirror) await Promise.all(mirror.params.map((p, i) => p.copyTo(m.params[i])));
    out.digest = digest(m.params);
    if (rank === 0) {
      const active = (t) => Math.min(size, steps - t); // ranks 0..active-1 still have data at step t
      out.maxDiff = maxDiff(m.params, reference(steps, (t) => (divideByInitial ? active(t) / size : 1), (t) => [0, active(t) * PER_RANK]));
    }
  },

  async lstsq() {
    // y = X w* + b*, 64 samples sharded by DistributedSampler, batches of 8 per rank.
    const d = 5, n = 64;
    const wTrue = [1.5, -2, 0.5, 3, -1], bTrue = 0.25;
    const r = seededRandom(42);
    const X = Float32Array.from({ length: n * d }, () => 2 * r() - 1);
    const Y = new Float32Array(n);
    for (let i = 0; i < n; i++) { let s = bTrue; for (let j = 0; j < d; j++) s += X[i * d + j] * wTrue[j]; Y[i] = s; }
    const lin = new Linear(d, 1, { seed: rank });
    const m = new Sequential([lin]);
    const ddp = await DistributedDataParallel.create(comm, m.params, m.grads);
    const opt = new SGD(m.params, m.grads, { lr: 0.3, momentum: 0.5 });
    const loss = new MSELoss();
    const sampler = new DistributedSampler(n, { numReplicas: size, rank, seed: 3 });
    const B = 8;
    for (let epoch = 0; epoch < 60; epoch++) {
      sampler.setEpoch(epoch);
      const idx = sampler.indices();
      for (let s = 0; s + B <= idx.length; s += B) {
        const xb = new Float32Array(B * d), yb = new Float32Array(B);
        for (let k = 0; k < B; k++) { xb.set(X.subarray(idx[s + k] * d, idx[s + k] * d + d), k * d); yb[k] = Y[idx[s + k]]; }
        opt.zeroGrad();
        loss.forward(await m.forward(xb), yb);
        await m.backward(loss.backward(), (i) => ddp.markReady(i));
        await ddp.synchronize();
        opt.step();
      }
    }
    out.w = Array.from(lin.weight);
    out.b = lin.bias[0];
    out.digest = digest(m.params);
  },
};

try {
  await scenarios[cfg.mode]();
} catch (e) {
  out.error = { name: e.name, message: e.message, stack: e.stack };
}
process.stdout.write(`${JSON.stringify(out)}\n`);
await comm.destroy();
