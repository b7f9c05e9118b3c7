// Data-parallel training of a TensorFlow.js model with ringtree DDP.
//
// Run with:  npx ringtree launch --nproc 2 examples/ddp-tfjs/train.mjs
//            (add --json for one JSON line per rank, as the tests read it)
// Needs @tensorflow/tfjs (the pure-JS package; its CPU backend runs in Node
// without native binaries): npm install @tensorflow/tfjs
//
// The glue a tfjs user writes, and all of it:
//   1. hand DDP one Float32Array per trainable variable (params and grads);
//   2. after create() broadcast rank 0's values, write them into the variables;
//   3. each step: tf.variableGrads -> copy each gradient into its Float32Array
//      -> markReady -> synchronize() -> optimizer.applyGradients(averaged).
// tfjs computes all gradients at once, so buckets cannot overlap backward here.
import * as tf from '@tensorflow/tfjs';
import { init, DistributedDataParallel, DistributedSampler } from 'ringtree';

tf.env().set('PROD', true); // silences tfjs's "install tfjs-node" banner
await tf.setBackend('cpu');

const json = process.argv.includes('--json');
const comm = await init();
const { rank, size } = comm;

// Dataset: regression to y = sin(3 x0) cos(2 x1) on 256 points, the same on every rank.
const N = 256, D = 2, BATCH = 16;
let seed = 12345;
const rand = () => ((seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) / 4294967296);
const X = Float32Array.from({ length: N * D }, () => 2 * rand() - 1);
const Y = Float32Array.from({ length: N }, (_, i) => Math.sin(3 * X[i * D]) * Math.cos(2 * X[i * D + 1]));

// Each rank builds the model with its own random init; DDP makes rank 0's win.
const model = tf.sequential({
  layers: [
    tf.layers.dense({ inputShape: [D], units: 32, activation: 'tanh' }),
    tf.layers.dense({ units: 32, activation: 'tanh' }),
    tf.layers.dense({ units: 1 }),
  ],
});
const vars = model.trainableWeights.map((w) => w.read()); // the tf.Variable behind each weight, registration order
const params = vars.map((v) => Float32Array.from(v.dataSync()));
const grads = vars.map((v) => new Float32Array(v.size));

const ddp = await DistributedDataParallel.create(comm, params, grads);
vars.forEach((v, i) => v.assign(tf.tensor(params[i], v.shape)));

const optimizer = tf.train.adam(0.02);
const sampler = new DistributedSampler(N, { numReplicas: size, rank, seed: 1 });
const stepsPerEpoch = Math.floor(sampler.length / BATCH);

let firstLoss = NaN, lastLoss = NaN;
for (let epoch = 0; epoch < 30; epoch++) {
  sampler.setEpoch(epoch);
  const idx = sampler.indices();
  let epochLoss = 0;
  for (let s = 0; s < stepsPerEpoch; s++) {
    const xb = new Float32Array(BATCH * D), yb = new Float32Array(BATCH);
    for (let k = 0; k < BATCH; k++) {
      const i = idx[s * BATCH + k];
      xb[k * D] = X[i * D]; xb[k * D + 1] = X[i * D + 1]; yb[k] = Y[i];
    }
    const { value, grads: g } = tf.tidy(() => tf.variableGrads(() => {
      const pred = model.predict(tf.tensor2d(xb, [BATCH, D]));
      return tf.losses.meanSquaredError(tf.tensor2d(yb, [BATCH, 1]), pred);
    }, vars));
    epochLoss += value.dataSync()[0];
    // Copy last layer first: the order backward produces them, so bucket 0 fills first.
    for (let i = vars.length - 1; i >= 0; i--) {
      grads[i].set(g[vars[i].name].dataSync());
      ddp.markReady(i);
    }
    tf.dispose([value, g]);
    await ddp.synchronize(); // grads now hold the average over all ranks
    const averaged = tf.tidy(() => Object.fromEntries(vars.map((v, i) => [v.name, tf.tensor(grads[i], v.shape)])));
    optimizer.applyGradients(averaged);
    tf.dispose(averaged);
  }
  const mean = new Float64Array([epochLoss / stepsPerEpoch]);
  await comm.allReduce(mean, { op: 'avg' });
  if (epoch === 0) firstLoss = mean[0];
  lastLoss = mean[0];
  if (!json && rank === 0 && epoch % 10 === 9) console.log(`epoch ${epoch + 1}: loss ${mean[0].toFixed(5)}`);
}

let digest = 0;
for (const w of model.getWeights()) for (const v of new Uint32Array(Float32Array.from(w.dataSync()).buffer)) digest = (Math.imul(digest, 31) + v) | 0;
if (json) console.log(JSON.stringify({ rank, firstLoss, finalLoss: lastLoss, digest, tensors: tf.memory().numTensors }));
else console.log(`rank ${rank}: final loss ${lastLoss.toFixed(5)} (first epoch ${firstLoss.toFixed(5)}), weights digest ${digest}`);
await comm.destroy();
