// Child process for test/gemm.test.ts: GEMM under environment variables that
// are read once, at first use (RINGTREE_BLAS, RINGTREE_BLAS_PATH,
// OPENBLAS_NUM_THREADS). Runs two GEMMs (async then sync), prints one JSON
// line, and must exit by itself: an idle GEMM thread keeps nothing alive.
import { blasInfo, gemm, gemmSync, info } from '../../dist/index.js';

const warnings = [];
process.on('warning', (w) => warnings.push({ name: w.name, code: w.code, message: w.message }));

const m = 9, n = 11, k = 13;
const a = Float32Array.from({ length: m * k }, (_, i) => ((i * 7919) % 17) / 8 - 1);
const b = Float32Array.from({ length: k * n }, (_, i) => ((i * 104729) % 23) / 11 - 1);
const c = new Float32Array(m * n).fill(NaN);
await gemm(a, b, c, { m, n, k });
const c2 = new Float32Array(m * n).fill(NaN);
gemmSync(a, b, c2, { m, n, k });

let maxError = 0;
for (let i = 0; i < m; i++) {
  for (let j = 0; j < n; j++) {
    let s = 0;
    for (let p = 0; p < k; p++) s += a[i * k + p] * b[p * n + j];
    maxError = Math.max(maxError, Math.abs(c[i * n + j] - s), Math.abs(c2[i * n + j] - s));
  }
}
// Warnings are emitted on the next tick.
await new Promise((resolve) => setImmediate(resolve));
const report = await info();
console.log(JSON.stringify({ blas: blasInfo(), infoBlas: report.blas, infoWarnings: report.warnings, maxError, warnings }));
