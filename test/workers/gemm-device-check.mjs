// Device GEMM correctness against a float64 reference computed here: every
// dtype (and tf32) x every transpose pair x odd shapes (1x1x1, 17x33x65,
// m/n/k = 0, and 512x384x1000 unless --quick) x alpha/beta, leading
// dimensions on offset views, strided batches (stride 0 too), and every
// epilogue x float32/float16/bfloat16 x transpose pair. Fresh random inputs
// each run (the seed is printed); with beta = 0, C is filled with NaN first;
// elements of C outside the m x n region (ld gaps) must come back untouched.
//
// Run by test/gemmDevice.test.ts through the test doubles (--quick) and by
// scripts/gpu-gemm-check.mjs on a real GPU. Prints one JSON line per failure
// as it goes, then { ok, checks, failures[], unsupported[], seed, ms }; exits 1
// on any failure. A combination cuBLASLt reports no algorithm for is listed
// under `unsupported` (an InvalidArgumentError naming it), not as a failure.
//
// Tolerances (||C - ref|| / ||ref||): float64 1e-12, float32 1e-5 (k <= 4096),
// tf32 5e-3 (inputs rounded to a 10-bit mantissa), float16/bfloat16 1e-2.
import { DeviceArray, gemm, fromBfloat16Bits, fromFloat16Bits, toBfloat16Bits, toFloat16Bits } from '../../dist/index.js';

const quick = process.argv.includes('--quick');
const seedArg = process.argv.indexOf('--seed');
const seed = seedArg > 0 ? Number(process.argv[seedArg + 1]) : (Date.now() ^ (process.pid << 8)) >>> 0;
const t0 = Date.now();

let state = seed >>> 0;
function random() {
  // mulberry32
  state = (state + 0x6d2b79f5) >>> 0;
  let t = state;
  t = Math.imul(t ^ (t >>> 15), t | 1);
  t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
}

const TOL = { float64: 1e-12, float32: 1e-5, tf32: 5e-3, float16: 1e-2, bfloat16: 1e-2 };
const failures = [];
const unsupported = [];
let checks = 0;
function check(name, ok, detail) {
  checks++;
  if (!ok) {
    failures.push({ name, detail });
    console.log(JSON.stringify({ failed: name, detail }));
  }
}

/** Host storage for `dtype` and the exact float64 value of each stored element. */
function encode(dtype, values) {
  const n = values.length;
  if (dtype === 'float64') return { host: Float64Array.from(values), exact: Float64Array.from(values) };
  if (dtype === 'float32') {
    const host = Float32Array.from(values);
    return { host, exact: Float64Array.from(host) };
  }
  const host = new Uint16Array(n);
  const exact = new Float64Array(n);
  const to = dtype === 'float16' ? toFloat16Bits : toBfloat16Bits;
  const from = dtype === 'float16' ? fromFloat16Bits : fromBfloat16Bits;
  for (let i = 0; i < n; i++) {
    host[i] = to(values[i]);
    exact[i] = from(host[i]);
  }
  return { host, exact };
}
function decode(dtype, host) {
  if (dtype === 'float64' || dtype === 'float32') return Float64Array.from(host);
  const from = dtype === 'float16' ? fromFloat16Bits : fromBfloat16Bits;
  return Float64Array.from(host, (b) => from(b));
}
const randomValues = (n) => Float64Array.from({ length: n }, () => random() * 2 - 1);
const span = (rows, cols, ld) => (rows === 0 || cols === 0 ? 0 : (rows - 1) * ld + cols);
const need = (batch, stride, one) => (batch === 0 || one === 0 ? 0 : (batch - 1) * stride + one);

/** Upload `values` (already exact for the dtype) at element offset `off` of a fresh allocation; returns [root, view]. */
async function upload(dtype, hostFull, off, len) {
  const root = await DeviceArray.fromHost(hostFull, { dtype });
  return [root, root.view(off, len)];
}

/** Row-major float64 reference: t[bi][i][j] = alpha * sum_p opA(i,p) opB(p,j) + beta * C0. */
function reference(s, A, B, C0) {
  const { m, n, k, lda, ldb, ldc, batch, strideA, strideB, strideC, offA, offB, offC, alpha, beta } = s;
  const out = new Float64Array(batch * m * n);
  const rowA = new Float64Array(k);
  const colsB = new Float64Array(n * k);  // op(B)^T, row j = column j of op(B)
  for (let bi = 0; bi < batch; bi++) {
    const a0 = offA + bi * strideA, b0 = offB + bi * strideB, c0 = offC + bi * strideC;
    for (let j = 0; j < n; j++) {
      for (let p = 0; p < k; p++) colsB[j * k + p] = s.transB ? B[b0 + j * ldb + p] : B[b0 + p * ldb + j];
    }
    for (let i = 0; i < m; i++) {
      for (let p = 0; p < k; p++) rowA[p] = s.transA ? A[a0 + p * lda + i] : A[a0 + i * lda + p];
      for (let j = 0; j < n; j++) {
        let sum = 0;
        const base = j * k;
        for (let p = 0; p < k; p++) sum += rowA[p] * colsB[base + p];
        out[(bi * m + i) * n + j] = alpha * sum + (beta !== 0 ? beta * C0[c0 + i * ldc + j] : 0);
      }
    }
  }
  return out;
}

function relError(got, ref) {
  let num = 0, den = 0, bad = 0;
  for (let i = 0; i < ref.length; i++) {
    if (!Number.isFinite(got[i])) bad++;
    num += (got[i] - ref[i]) ** 2;
    den += ref[i] ** 2;
  }
  if (bad) return Infinity;
  return den === 0 ? Math.sqrt(num) : Math.sqrt(num / den);
}

const GELU_C = Math.sqrt(2 / Math.PI);
const gelu = (x) => 0.5 * x * (1 + Math.tanh(GELU_C * (x + 0.044715 * x ** 3)));
function geluGrad(x) {
  const t = Math.tanh(GELU_C * (x + 0.044715 * x ** 3));
  return 0.5 * (1 + t) + 0.5 * x * (1 - t * t) * GELU_C * (1 + 3 * 0.044715 * x * x);
}

function label(s) {
  return `${s.tf32 ? 'tf32' : s.dtype} ${s.m}x${s.n}x${s.k} ${s.transA ? 'T' : 'N'}${s.transB ? 'T' : 'N'} a=${s.alpha} b=${s.beta}` +
    `${s.ldPad ? ` ld+${s.ldPad} off` : ''}${s.batch !== 1 ? ` batch ${s.batch}${s.strideA === 0 ? ' strideA 0' : ''}` : ''}${s.epilogue ? ` ${s.epilogue}` : ''}`;
}

function fill(spec) {
  const s = { alpha: 1, beta: 0, batch: 1, ldPad: 0, tf32: false, ...spec };
  const aRows = s.transA ? s.k : s.m, aCols = s.transA ? s.m : s.k;
  const bRows = s.transB ? s.n : s.k, bCols = s.transB ? s.k : s.n;
  s.lda = aCols + s.ldPad; s.ldb = bCols + s.ldPad; s.ldc = s.n + s.ldPad;
  s.strideA ??= aRows * s.lda; s.strideB ??= bRows * s.ldb; s.strideC ??= s.m * s.ldc + s.ldPad;
  s.offA = s.ldPad ? 3 : 0; s.offB = s.ldPad ? 5 : 0; s.offC = s.ldPad ? 7 : 0;
  s.lenA = need(s.batch, s.strideA, span(aRows, aCols, s.lda));
  s.lenB = need(s.batch, s.strideB, span(bRows, bCols, s.ldb));
  s.lenC = need(s.batch, s.strideC, span(s.m, s.n, s.ldc));
  return s;
}

/** Runs one case; returns { c (decoded full C allocation), ref (t per batch entry, row-major m x n), s } or null if unsupported. */
async function runGemm(spec, extra = {}) {
  const s = fill(spec);
  const dtype = s.dtype;
  const A = encode(dtype, randomValues(s.offA + s.lenA));
  const B = encode(dtype, randomValues(s.offB + s.lenB));
  const C = s.beta === 0 ? encode(dtype, new Float64Array(s.offC + s.lenC).fill(NaN)) : encode(dtype, randomValues(s.offC + s.lenC));
  const [ra, a] = await upload(dtype, A.host, s.offA, s.lenA);
  const [rb, b] = await upload(dtype, B.host, s.offB, s.lenB);
  const [rc, c] = await upload(dtype, C.host, s.offC, s.lenC);
  const opts = { m: s.m, n: s.n, k: s.k, transA: s.transA, transB: s.transB, alpha: s.alpha, beta: s.beta,
    lda: s.lda, ldb: s.ldb, ldc: s.ldc, batch: s.batch, strideA: s.strideA, strideB: s.strideB, strideC: s.strideC, tf32: s.tf32, ...extra };
  try {
    await gemm(a, b, c, opts);
  } catch (e) {
    for (const x of [ra, rb, rc]) x.dispose();
    if (e.name === 'InvalidArgumentError' && /no algorithm|NOT_SUPPORTED/.test(e.message)) {
      unsupported.push(`${label(s)}: ${e.message.split('\n')[0]}`);
      return null;
    }
    check(label(s), false, `${e.name}: ${e.message}`);
    return null;
  }
  const cHost = decode(dtype, await rc.toHost());
  for (const x of [ra, rb, rc]) x.dispose();
  return { s, c: cHost, c0: C.exact, ref: reference(s, A.exact, B.exact, C.exact), A, B };
}

/** Region of C (m x n per batch entry) and whether everything outside it is unchanged. */
function extract(r) {
  const { s, c, c0 } = r;
  const got = new Float64Array(s.batch * s.m * s.n);
  const inRegion = new Uint8Array(c.length);
  for (let bi = 0; bi < s.batch; bi++) {
    for (let i = 0; i < s.m; i++) {
      for (let j = 0; j < s.n; j++) {
        const at = s.offC + bi * s.strideC + i * s.ldc + j;
        got[(bi * s.m + i) * s.n + j] = c[at];
        inRegion[at] = 1;
      }
    }
  }
  let touched = 0;
  for (let i = 0; i < c.length; i++) {
    if (!inRegion[i] && !(c[i] === c0[i] || (Number.isNaN(c[i]) && Number.isNaN(c0[i])))) touched++;
  }
  return { got, touched };
}

async function plainCase(spec) {
  const r = await runGemm(spec);
  if (!r) return;
  const { got, touched } = extract(r);
  const err = relError(got, r.ref);
  const tol = r.s.tf32 ? TOL.tf32 : TOL[r.s.dtype];
  check(label(r.s), err < tol, `relative error ${err.toExponential(2)} (tolerance ${tol})`);
  check(`${label(r.s)}: outside m x n untouched`, touched === 0, `${touched} elements outside the region changed`);
}

const DTYPES = ['float32', 'float64', 'float16', 'bfloat16'];
const TRANS = [[false, false], [true, false], [false, true], [true, true]];
const SHAPES = [[1, 1, 1], [17, 33, 65], [0, 5, 3], [4, 0, 3], [3, 5, 0], ...(quick ? [[9, 7, 130]] : [[512, 384, 1000]])];
const SCALARS = [[1, 0], [0.5, -1.5]];

for (const dtype of [...DTYPES, 'tf32']) {
  const d = dtype === 'tf32' ? { dtype: 'float32', tf32: true } : { dtype };
  for (const [ti, [transA, transB]] of TRANS.entries()) {
    for (const [m, n, k] of SHAPES) {
      // The large shape takes one alpha/beta pair per transpose pair (alternating): its
      // float64 reference dominates the run time.
      const scalars = m * n * k > 1e6 ? [SCALARS[ti % 2]] : SCALARS;
      for (const [alpha, beta] of scalars) await plainCase({ ...d, m, n, k, transA, transB, alpha, beta });
    }
    // Leading dimensions larger than the rows, on views at odd offsets.
    await plainCase({ ...d, m: 13, n: 11, k: 9, transA, transB, alpha: 1, beta: 0, ldPad: 3 });
    await plainCase({ ...d, m: 13, n: 11, k: 9, transA, transB, alpha: -2, beta: 0.25, ldPad: 5 });
  }
  // Strided batches (with a gap between C matrices), and one A shared by every entry.
  await plainCase({ ...d, m: 7, n: 6, k: 5, transA: false, transB: true, batch: 3, beta: 0.5, ldPad: 2 });
  await plainCase({ ...d, m: 7, n: 6, k: 5, transA: true, transB: false, batch: 4, strideA: 0 });
  await plainCase({ ...d, m: 5, n: 4, k: 3, batch: 0 });
}

// ---- epilogues ----
const roundUp = (v, to) => Math.ceil(v / to) * to;
for (const dtype of ['float32', 'float16', 'bfloat16']) {
  for (const [transA, transB] of TRANS) {
    for (const [m, n, k] of [[17, 33, 65], [64, 40, 24]]) {
      const base = { dtype, m, n, k, transA, transB };
      const tol = TOL[dtype];
      const biasValues = encode(dtype, randomValues(n));
      const withBias = async () => DeviceArray.fromHost(biasValues.host, { dtype });
      // Forward epilogues (beta 0 into NaN C; one with beta).
      for (const epilogue of ['bias', 'relu', 'gelu', 'biasRelu', 'biasGelu', 'geluAux', 'biasGeluAux', 'reluAux', 'biasReluAux']) {
        const hasBias = epilogue.startsWith('bias');
        const isGelu = /gelu/i.test(epilogue);
        const hasAux = epilogue.endsWith('Aux');
        const auxLd = hasAux ? roundUp(n, isGelu ? 8 : 128) + (isGelu ? 8 : 0) : undefined;
        const bias = hasBias ? await withBias() : undefined;
        const aux = hasAux ? (isGelu ? DeviceArray.alloc(dtype, (m - 1) * auxLd + n) : DeviceArray.alloc('uint8', (m * auxLd) / 8)) : undefined;
        const beta = epilogue === 'biasGelu' ? 0.5 : 0;
        const r = await runGemm({ ...base, beta, epilogue }, { epilogue, bias, aux, auxLd });
        if (r) {
          const { got } = extract(r);
          const z = r.ref.map((t, idx) => t + (hasBias ? biasValues.exact[idx % n] : 0));
          const want = z.map((v) => (epilogue === 'bias' ? v : isGelu ? gelu(v) : Math.max(v, 0)));
          const err = relError(got, want);
          check(label(r.s), err < tol, `relative error ${err.toExponential(2)} (tolerance ${tol})`);
          if (hasAux && isGelu) {
            const auxHost = decode(dtype, await aux.toHost());
            const pre = new Float64Array(m * n);
            for (let i = 0; i < m; i++) for (let j = 0; j < n; j++) pre[i * n + j] = auxHost[i * auxLd + j];
            const auxErr = relError(pre, z);
            check(`${label(r.s)}: aux holds the pre-activation`, auxErr < tol, `relative error ${auxErr.toExponential(2)}`);
          }
          if (hasAux && !isGelu) {
            // The mask's bit layout is cuBLASLt's: prove it by using it. dRelu / dReluBgrad with a
            // fresh A, B must zero exactly where this GEMM's output was 0.
            const positive = got.map((v) => (v > 0 ? 1 : 0));
            for (const back of ['dRelu', 'dReluBgrad']) {
              const grad = back === 'dReluBgrad' ? DeviceArray.alloc(dtype, n) : undefined;
              const rb = await runGemm({ ...base, epilogue: back }, { epilogue: back, aux, auxLd, bias: grad });
              if (rb) {
                const g = extract(rb).got;
                const wantBack = rb.ref.map((t, idx) => (positive[idx] ? t : 0));
                const e2 = relError(g, wantBack);
                check(`${label(rb.s)} (mask from ${epilogue})`, e2 < tol, `relative error ${e2.toExponential(2)}`);
                if (grad) {
                  const sums = new Float64Array(n);
                  wantBack.forEach((v, idx) => { sums[idx % n] += v; });
                  const e3 = relError(decode(dtype, await grad.toHost()), sums);
                  check(`${label(rb.s)}: bias gradient = column sums`, e3 < tol, `relative error ${e3.toExponential(2)}`);
                }
              }
              grad?.dispose();
            }
          }
        }
        bias?.dispose();
        aux?.dispose();
      }
      // dGelu / dGeluBgrad reading a pre-activation we upload.
      for (const epilogue of ['dGelu', 'dGeluBgrad']) {
        const auxLd = roundUp(n, 8);
        const pre = encode(dtype, randomValues((m - 1) * auxLd + n).map((v) => v * 3));
        const aux = await DeviceArray.fromHost(pre.host, { dtype });
        const grad = epilogue === 'dGeluBgrad' ? DeviceArray.alloc(dtype, n) : undefined;
        const r = await runGemm({ ...base, epilogue }, { epilogue, aux, auxLd, bias: grad });
        if (r) {
          const { got } = extract(r);
          const want = r.ref.map((t, idx) => t * geluGrad(pre.exact[Math.floor(idx / n) * auxLd + (idx % n)]));
          const err = relError(got, want);
          check(label(r.s), err < tol, `relative error ${err.toExponential(2)} (tolerance ${tol})`);
          if (grad) {
            const sums = new Float64Array(n);
            want.forEach((v, idx) => { sums[idx % n] += v; });
            const e3 = relError(decode(dtype, await grad.toHost()), sums);
            check(`${label(r.s)}: bias gradient = column sums`, e3 < tol, `relative error ${e3.toExponential(2)}`);
          }
        }
        aux.dispose();
        grad?.dispose();
      }
    }
  }
}

console.log(JSON.stringify({ ok: failures.length === 0, checks, failures, unsupported, seed, ms: Date.now() - t0 }));
process.exit(failures.length === 0 ? 0 : 1);
