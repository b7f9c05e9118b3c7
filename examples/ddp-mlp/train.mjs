// Data-parallel training of a small MLP with ringtree's reference layers.
//
// Run with:  npx ringtree launch --nproc 2 examples/ddp-mlp/train.mjs
//            (add --json for one JSON line per rank, as the tests read it)
//
// Each rank reads its DistributedSampler shard of a synthetic regression
// dataset, runs forward/backward with GEMMs on the GEMM thread, marks each
// gradient ready as backward produces it (so bucket allreduces overlap the
// rest of backward), waits in synchronize(), and steps SGD with the linearly
// scaled, warmed-up learning rate. All ranks end with the same weights.
import {
  init, DistributedDataParallel, DistributedSampler, WarmupScheduler,
  Sequential, Linear, GELU, MSELoss, SGD, seededRandom,
} from 'ringtree';

const json = process.argv.includes('--json');
const comm = await init();
const { rank, size } = comm;

// Dataset: y = sin(x . a) for 512 points in 8 dimensions, the same on every rank.
const N = 512, D = 8, BATCH = 32;
const rand = seededRandom(1);
const a = Float32Array.from({ length: D }, () => 2 * rand() - 1);
const X = Float32Array.from({ length: N * D }, () => 2 * rand() - 1);
const Y = new Float32Array(N);
for (let i = 0; i < N; i++) {
  let s = 0;
  for (let j = 0; j < D; j++) s += X[i * D + j] * a[j];
  Y[i] = Math.sin(2 * s);
}

const model = new Sequential([new Linear(D, 64, { seed: 1 }), new GELU(), new Linear(64, 64, { seed: 2 }), new GELU(), new Linear(64, 1, { seed: 3 })]);
// create() broadcasts rank 0's parameters, so every rank starts from the same model.
const ddp = await DistributedDataParallel.create(comm, model.params, model.grads);
const sgd = new SGD(model.params, model.grads, { lr: 0.05, momentum: 0.9 });
const sampler = new DistributedSampler(N, { numReplicas: size, rank, seed: 7 });
const stepsPerEpoch = Math.floor(sampler.length / BATCH);
const schedule = new WarmupScheduler({ baseLr: 0.05, baseBatchSize: BATCH, globalBatchSize: BATCH * size, warmupSteps: 2 * stepsPerEpoch });
const loss = new MSELoss();

let firstLoss = NaN, lastLoss = NaN;
for (let epoch = 0; epoch < 20; epoch++) {
  sampler.setEpoch(epoch);
  const indices = sampler.indices();
  let epochLoss = 0;
  for (let s = 0; s < stepsPerEpoch; s++) {
    const xb = new Float32Array(BATCH * D), yb = new Float32Array(BATCH);
    for (let k = 0; k < BATCH; k++) {
      const i = indices[s * BATCH + k];
      xb.set(X.subarray(i * D, (i + 1) * D), k * D);
      yb[k] = Y[i];
    }
    sgd.zeroGrad();
    epochLoss += loss.forward(await model.forward(xb), yb);
    await model.backward(loss.backward(), (i) => ddp.markReady(i));
    await ddp.synchronize();
    sgd.lr = schedule.lr;
    sgd.step();
    schedule.step();
  }
  // The mean loss over all ranks' batches of this epoch.
  const mean = new Float64Array([epochLoss / stepsPerEpoch]);
  await comm.allReduce(mean, { op: 'avg' });
  if (epoch === 0) firstLoss = mean[0];
  lastLoss = mean[0];
  if (!json && rank === 0 && epoch % 5 === 4) console.log(`epoch ${epoch + 1}: loss ${mean[0].toFixed(5)}, lr ${sgd.lr.toFixed(4)}`);
}

let digest = 0;
for (const p of model.params) for (const v of new Uint32Array(p.buffer, p.byteOffset, p.length)) digest = (Math.imul(digest, 31) + v) | 0;
if (json) console.log(JSON.stringify({ rank, firstLoss, finalLoss: lastLoss, digest }));
else console.log(`rank ${rank}: final loss ${lastLoss.toFixed(5)} (first epoch ${firstLoss.toFixed(5)}), weights digest ${digest}`);
await comm.destroy();
