// GEMM on host arrays against a float64 TypeScript reference, by relative
// Frobenius error ||C - ref|| / ||ref||, through the BLAS found at run time
// and again with the portable fallback forced (test hook in this process;
// RINGTREE_BLAS=fallback in a child process). Inputs are fresh seeded
// random numbers; with beta = 0, C starts as NaN to prove it is never read;
// every element of C outside the views must come back untouched.
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { info } from '../lib/info.js';
import { blasInfo, gemm, gemmSync, setGemmFallbackForTest, type GemmDType, type GemmOptions } from '../lib/gemm.js';
import { bfloat16ToFloat32, float16ToFloat32, float32ToBfloat16, float32ToFloat16 } from '../lib/dtype.js';
import { InvalidArgumentError } from '../lib/errors.js';
import { buildCli, repoRoot } from './fixtures/launch/cli.js';

// Deterministic PRNG so a failure reproduces; values in [-1, 1), never all zero.
function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (((t ^ (t >>> 14)) >>> 0) / 2 ** 32) * 2 - 1;
  };
}

const TOLERANCE: Record<GemmDType, number> = { float32: 1e-5, float64: 1e-12, float16: 1e-2, bfloat16: 1e-2 };

/** A matrix store of one dtype; `read()` widens its current contents to numbers. */
interface Store {
  array: Float32Array | Float64Array | Uint16Array;
  read(): Float64Array;
}

function makeStore(dtype: GemmDType, length: number, fill: (i: number) => number): Store {
  const values = Float32Array.from({ length }, (_, i) => fill(i));
  switch (dtype) {
    case 'float32':
      return { array: values, read: () => Float64Array.from(values) };
    case 'float64': {
      const array = Float64Array.from({ length }, (_, i) => fill(i));
      return { array, read: () => Float64Array.from(array) };
    }
    case 'float16': {
      const array = float32ToFloat16(values);
      return { array, read: () => Float64Array.from(float16ToFloat32(array)) };
    }
    case 'bfloat16': {
      const array = float32ToBfloat16(values);
      return { array, read: () => Float64Array.from(bfloat16ToFloat32(array)) };
    }
  }
}

interface Case {
  dtype: GemmDType;
  m: number;
  n: number;
  k: number;
  transA?: boolean;
  transB?: boolean;
  alpha?: number;
  beta?: number;
  /** Extra elements per stored row (sub-matrix views). */
  padA?: number;
  padB?: number;
  padC?: number;
  batch?: number;
  /** Explicit strides (default: packed). */
  strideA?: number;
  strideB?: number;
  strideC?: number;
  /** Leading elements before the first matrix (a view at a byte offset). */
  offset?: number;
  sync?: boolean;
  seed?: number;
}

/** Runs one case through ringtree and returns the relative error; asserts untouched gaps. */
async function runCase(c: Case): Promise<number> {
  const random = rng(c.seed ?? 1234 + c.m * 31 + c.n * 7 + c.k);
  const transA = c.transA ?? false, transB = c.transB ?? false;
  const alpha = c.alpha ?? 1, beta = c.beta ?? 0;
  const batch = c.batch ?? 1;
  const aRows = transA ? c.k : c.m, aCols = transA ? c.m : c.k;
  const bRows = transB ? c.n : c.k, bCols = transB ? c.k : c.n;
  const lda = aCols + (c.padA ?? 0), ldb = bCols + (c.padB ?? 0), ldc = c.n + (c.padC ?? 0);
  const strideA = c.strideA ?? aRows * lda, strideB = c.strideB ?? bRows * ldb, strideC = c.strideC ?? c.m * ldc;
  const offset = c.offset ?? 0;
  const lengthOf = (rows: number, ld: number, stride: number): number => offset + (batch - 1) * stride + rows * ld + 3;
  const a = makeStore(c.dtype, lengthOf(aRows, lda, strideA), () => random());
  const b = makeStore(c.dtype, lengthOf(bRows, ldb, strideB), () => random());
  const cStore = makeStore(c.dtype, lengthOf(c.m, ldc, strideC), () => (beta === 0 ? NaN : random()));
  const before = cStore.read();

  const view = <T extends Store['array']>(x: T): T => x.subarray(offset) as T;
  const options: GemmOptions = {
    m: c.m, n: c.n, k: c.k, transA, transB, alpha, beta, lda, ldb, ldc, batch, strideA, strideB, strideC,
    ...(c.dtype === 'float16' || c.dtype === 'bfloat16' ? { dtype: c.dtype } : {}),
  };
  if (c.sync) gemmSync(view(a.array), view(b.array), view(cStore.array), options);
  else await gemm(view(a.array), view(b.array), view(cStore.array), options);

  const av = a.read(), bv = b.read(), after = cStore.read();
  let diff = 0, norm = 0;
  const inView = new Set<number>();
  for (let e = 0; e < batch; e++) {
    for (let i = 0; i < c.m; i++) {
      for (let j = 0; j < c.n; j++) {
        let sum = 0;
        for (let p = 0; p < c.k; p++) {
          sum += av[offset + e * strideA + (transA ? p * lda + i : i * lda + p)]! *
            bv[offset + e * strideB + (transB ? j * ldb + p : p * ldb + j)]!;
        }
        const at = offset + e * strideC + i * ldc + j;
        inView.add(at);
        const ref = alpha * sum + (beta === 0 ? 0 : beta * before[at]!);
        const got = after[at]!;
        expect(Number.isNaN(got), `C[${e}][${i}][${j}] is NaN`).toBe(false);
        diff += (got - ref) ** 2;
        norm += ref ** 2;
      }
    }
  }
  for (let i = 0; i < before.length; i++) {
    if (inView.has(i)) continue;
    const was = before[i]!, now = after[i]!;
    if (!(Object.is(was, now) || (Number.isNaN(was) && Number.isNaN(now)))) {
      throw new Error(`C[${i}] outside the views changed: ${was} -> ${now}`);
    }
  }
  if (norm === 0) return Math.sqrt(diff);
  return Math.sqrt(diff / norm);
}

const DTYPES: GemmDType[] = ['float32', 'float64', 'float16', 'bfloat16'];
const TRANSPOSES: Array<[boolean, boolean]> = [[false, false], [false, true], [true, false], [true, true]];

const hasOpenBlas = /libopenblas\.so\.0/.test(spawnSync('ldconfig', ['-p'], { encoding: 'utf8' }).stdout ?? '');

describe.each(['blas', 'fallback'] as const)('gemm through the %s path', (mode) => {
  beforeAll(() => {
    const usesFallback = setGemmFallbackForTest(mode === 'fallback');
    if (mode === 'fallback') expect(usesFallback).toBe(true);
    expect(blasInfo().vendor === 'fallback').toBe(mode === 'fallback' || blasInfo().error !== null);
  });
  afterAll(() => {
    setGemmFallbackForTest(false);
  });

  describe.each(DTYPES)('%s', (dtype) => {
    it.each(TRANSPOSES)('transA=%s transB=%s at 17x33x65, 1x1x1 and 40x24x96, beta=0 over NaN', async (transA, transB) => {
      for (const [m, n, k] of [[17, 33, 65], [1, 1, 1], [40, 24, 96]] as const) {
        expect(await runCase({ dtype, m, n, k, transA, transB })).toBeLessThan(TOLERANCE[dtype]);
      }
    });

    it('alpha and beta (beta = 1, negative, alpha = 0 leaves beta * C)', async () => {
      for (const [alpha, beta] of [[0.75, -1.5], [-2, 1], [0, 2.5], [1.25, 0]] as const) {
        expect(await runCase({ dtype, m: 19, n: 23, k: 29, alpha, beta, transB: true })).toBeLessThan(TOLERANCE[dtype]);
      }
    });

    it('m, n or k = 0 (k = 0 gives C = beta * C; beta = 0 writes zeros over NaN)', async () => {
      expect(await runCase({ dtype, m: 0, n: 5, k: 3 })).toBe(0);
      expect(await runCase({ dtype, m: 5, n: 0, k: 3 })).toBe(0);
      expect(await runCase({ dtype, m: 6, n: 5, k: 0, beta: 0 })).toBe(0);
      expect(await runCase({ dtype, m: 6, n: 5, k: 0, beta: -0.5 })).toBeLessThan(TOLERANCE[dtype]);
      expect(await runCase({ dtype, m: 4, n: 3, k: 2, batch: 0 })).toBe(0);
    });

    it('leading dimensions: sub-matrix views at a byte offset, every transpose pair, gaps untouched', async () => {
      for (const [transA, transB] of TRANSPOSES) {
        const err = await runCase({ dtype, m: 13, n: 9, k: 21, transA, transB, padA: 5, padB: 3, padC: 7, offset: 3, beta: 0.5 });
        expect(err).toBeLessThan(TOLERANCE[dtype]);
      }
    });

    it('strided batches: packed, with gaps, and one A shared by every entry (strideA = 0)', async () => {
      expect(await runCase({ dtype, m: 7, n: 6, k: 5, batch: 4 })).toBeLessThan(TOLERANCE[dtype]);
      expect(await runCase({ dtype, m: 7, n: 6, k: 5, batch: 3, padC: 2, strideC: 7 * 8 + 11, strideB: 5 * 6 + 4, beta: 2 })).toBeLessThan(TOLERANCE[dtype]);
      expect(await runCase({ dtype, m: 8, n: 6, k: 10, batch: 3, strideA: 0, transA: true })).toBeLessThan(TOLERANCE[dtype]);
    });

    it('gemmSync gives the same results', async () => {
      expect(await runCase({ dtype, m: 17, n: 33, k: 65, sync: true, transA: true })).toBeLessThan(TOLERANCE[dtype]);
      expect(await runCase({ dtype, m: 5, n: 4, k: 3, sync: true, batch: 2, beta: 1.5 })).toBeLessThan(TOLERANCE[dtype]);
    });
  });

  it('gemmSync repeats a call on the same arrays and options object, and checks again when any of them changes', () => {
    const a = Float32Array.from([1, 2, 3, 4]), b = Float32Array.from([5, 6, 7, 8]), c = new Float32Array(4);
    const o: GemmOptions = { m: 2, n: 2, k: 2 };
    const ab = [19, 22, 43, 50], abT = [17, 23, 39, 53];
    gemmSync(a, b, c, o);
    expect([...c]).toEqual(ab);
    c.fill(0);
    gemmSync(a, b, c, o); // the repeated call
    expect([...c]).toEqual(ab);
    o.alpha = 2;
    gemmSync(a, b, c, o);
    expect([...c], 'alpha changed on the same options object').toEqual(ab.map((v) => 2 * v));
    o.alpha = 1;
    o.transB = true;
    gemmSync(a, b, c, o);
    expect([...c], 'transB changed').toEqual(abT);
    o.m = 3;
    expect(() => gemmSync(a, b, c, o), 'm grew past a').toThrow(InvalidArgumentError);
    o.m = 2;
    const c2 = new Float32Array(4);
    gemmSync(a, b, c2, o);
    expect([...c2], 'a new output array').toEqual(abT);
    a[0] = 0; // contents are not part of the call: the repeat reads them afresh
    gemmSync(a, b, c2, o);
    expect([...c2]).toEqual([12, 16, 39, 53]);
    structuredClone(b.buffer, { transfer: [b.buffer] }); // b detached: length 0
    expect(() => gemmSync(a, b, c2, o), 'b detached').toThrow(InvalidArgumentError);
  });

  it('float32 stays under 1e-5 at k = 4096; float64 under 1e-12', async () => {
    expect(await runCase({ dtype: 'float32', m: 12, n: 10, k: 4096, transB: true })).toBeLessThan(1e-5);
    expect(await runCase({ dtype: 'float64', m: 12, n: 10, k: 4096, transA: true })).toBeLessThan(1e-12);
  });

  it('crosses the fallback blocking (m, n, k past 64/256) correctly', async () => {
    expect(await runCase({ dtype: 'float32', m: 70, n: 260, k: 300, padC: 1 })).toBeLessThan(1e-5);
  });

  it('many GEMMs in flight settle, each with its own correct result', async () => {
    const errors = await Promise.all(Array.from({ length: 12 }, (_, i) => runCase({ dtype: 'float32', m: 8 + i, n: 9, k: 10, seed: i })));
    for (const e of errors) expect(e).toBeLessThan(1e-5);
  });
});

describe('argument checks: InvalidArgumentError naming the argument', () => {
  const a = new Float32Array(6), b = new Float32Array(12), c = new Float32Array(8);
  const base: GemmOptions = { m: 2, n: 4, k: 3 };

  const cases: Array<[string, () => [Float32Array | Float64Array | Uint16Array, Float32Array | Float64Array | Uint16Array, Float32Array | Float64Array | Uint16Array, GemmOptions], RegExp]> = [
    ['options not an object', () => [a, b, c, null as unknown as GemmOptions], /`options`/],
    ['negative m', () => [a, b, c, { ...base, m: -1 }], /`m` must be an integer/],
    ['non-integer n', () => [a, b, c, { ...base, n: 1.5 }], /`n` must be an integer/],
    ['k missing', () => [a, b, c, { m: 2, n: 4 } as GemmOptions], /`k` must be an integer/],
    ['m as a string', () => [a, b, c, { ...base, m: '2' as unknown as number }], /`m` must be an integer/],
    ['n beyond 2^31-1', () => [a, b, c, { ...base, n: 2 ** 31 }], /`n` must be an integer/],
    ['NaN k', () => [a, b, c, { ...base, k: NaN }], /`k` must be an integer/],
    ['lda below the row', () => [a, b, c, { ...base, lda: 2 }], /`lda` \(2\) is smaller/],
    ['lda below the row with transA', () => [a, b, c, { ...base, transA: true, lda: 1 }], /`lda` \(1\) is smaller.*transA/],
    ['ldb below the row', () => [a, b, c, { ...base, ldb: 3 }], /`ldb` \(3\) is smaller/],
    ['ldc below the row', () => [a, b, c, { ...base, ldc: 3 }], /`ldc` \(3\) is smaller/],
    ['negative lda', () => [a, b, c, { ...base, lda: -3 }], /`lda` must be an integer/],
    ['a too short', () => [a.subarray(1), b, c, base], /`a` has 5 elements.*needs 6/],
    ['b too short', () => [a, b.subarray(0, 11), c, base], /`b` has 11 elements.*needs 12/],
    ['c too short', () => [a, b, c.subarray(0, 7), base], /`c` has 7 elements.*needs 8/],
    ['c too short for the batch', () => [new Float32Array(12), new Float32Array(24), c, { ...base, batch: 2 }], /`c` has 8 elements.*batch = 2.*needs 16/],
    ['a too short for lda', () => [a, b, c, { ...base, lda: 4 }], /`a` has 6 elements.*lda = 4.*needs 7/],
    ['negative batch', () => [a, b, c, { ...base, batch: -1 }], /`batch` must be an integer/],
    ['negative strideB', () => [a, b, c, { ...base, batch: 1, strideB: -1 }], /`strideB` must be an integer/],
    ['overlapping C matrices in a batch', () => [new Float32Array(12), new Float32Array(24), new Float32Array(16), { ...base, batch: 2, strideC: 4 }], /`strideC` \(4\) is smaller than one C matrix/],
    ['mixed dtypes a/b', () => [a, new Float64Array(12), c, base], /`b` holds float64 but `a` holds float32/],
    ['mixed dtypes a/c', () => [a, b, new Float64Array(8), base], /`c` holds float64 but `a` holds float32/],
    ['Uint16Array without dtype', () => [new Uint16Array(6), new Uint16Array(12), new Uint16Array(8), base], /Uint16Array for `a` needs/],
    ['declared dtype contradicting the array', () => [a, b, c, { ...base, dtype: 'float64' }], /`a` is a Float32Array \(float32\) but dtype 'float64'/],
    ['dtype not a GEMM dtype', () => [a, b, c, { ...base, dtype: 'int8' as GemmDType }], /`dtype` must be one of float32/],
    ['integer arrays', () => [new Int32Array(6) as unknown as Float32Array, new Int32Array(12) as unknown as Float32Array, new Int32Array(8) as unknown as Float32Array, base], /`a` holds int32; gemm computes in/],
    ['transA not a boolean', () => [a, b, c, { ...base, transA: 1 as unknown as boolean }], /`transA` must be a boolean/],
    ['alpha not a number', () => [a, b, c, { ...base, alpha: '2' as unknown as number }], /`alpha` must be a number/],
    ['C overlapping A', () => {
      const buffer = new Float32Array(20);
      return [buffer.subarray(0, 6), b, buffer.subarray(4, 12), base];
    }, /`c` overlaps `a`/],
    ['C overlapping B', () => {
      const buffer = new Float32Array(30);
      return [a, buffer.subarray(10, 22), buffer.subarray(21, 29), base];
    }, /`c` overlaps `b`/],
    ['C aliasing A exactly', () => {
      const square = new Float32Array(4);
      return [square, new Float32Array(4), square, { m: 2, n: 2, k: 2 }];
    }, /`c` overlaps `a`/],
  ];

  it.each(cases)('%s: gemm rejects, gemmSync throws', async (_name, make, pattern) => {
    const [x, y, z, options] = make();
    const promise = gemm(x, y, z, options);  // must not throw synchronously
    await expect(promise).rejects.toBeInstanceOf(InvalidArgumentError);
    await expect(promise).rejects.toThrow(pattern);
    expect(() => gemmSync(x, y, z, options)).toThrow(InvalidArgumentError);
    expect(() => gemmSync(x, y, z, options)).toThrow(pattern);
  });

  it('disjoint views of one ArrayBuffer are fine (A and B may share bytes; C apart)', async () => {
    const buffer = new Float32Array(6 + 12 + 8);
    buffer.fill(1);
    const a2 = buffer.subarray(0, 6), b2 = buffer.subarray(0, 12), c2 = buffer.subarray(18);
    await gemm(a2, b2, c2, base);
    expect(Array.from(c2)).toEqual(new Array(8).fill(3));
  });

  it('a Promise rejection leaves C untouched', async () => {
    const cc = new Float32Array(8).fill(7);
    await expect(gemm(a, b, cc, { ...base, lda: 1 })).rejects.toThrow(InvalidArgumentError);
    expect(Array.from(cc)).toEqual(new Array(8).fill(7));
  });
});

describe('blasInfo() and info().blas', () => {
  it('name OpenBLAS when it is installed, with its config and thread count', async () => {
    const blas = blasInfo();
    expect(Object.keys(blas).sort()).toEqual(['config', 'error', 'library', 'threads', 'vendor']);
    expect(Number.isInteger(blas.threads) && blas.threads >= 1).toBe(true);
    if (hasOpenBlas) {
      expect(blas.vendor).toBe('openblas');
      expect(blas.library).toMatch(/lib(open)?blas[^/]*\.so/);
      expect(blas.config).toMatch(/OpenBLAS \d+\.\d+/);
      expect(blas.error).toBeNull();
    } else {
      expect(blas.vendor).toBe('fallback');
    }
    const report = await info();
    expect(report.blas).toEqual(blas);
  });
});

describe('environment read at first use (child processes)', () => {
  beforeAll(() => buildCli(), 120_000);

  interface ChildReport {
    blas: { library: string; vendor: string; config: string | null; threads: number; error: string | null };
    infoBlas: unknown;
    infoWarnings: string[];
    maxError: number;
    warnings: Array<{ name: string; code: string; message: string }>;
  }
  const runChild = (env: NodeJS.ProcessEnv): ChildReport => {
    const run = spawnSync(process.execPath, [path.join(repoRoot, 'test', 'workers', 'gemmEnv.mjs')], {
      cwd: repoRoot, env: { ...process.env, ...env }, encoding: 'utf8', timeout: 30_000,
    });
    // A GEMM thread or thread-safe function that kept the loop alive would time out here.
    expect(run.error, run.stderr).toBeUndefined();
    expect(run.status, run.stderr).toBe(0);
    return JSON.parse(run.stdout.trim().split('\n').pop()!) as ChildReport;
  };

  it('RINGTREE_BLAS=fallback forces the fallback, correct, without the slow-GEMM warning', () => {
    const r = runChild({ RINGTREE_BLAS: 'fallback', RINGTREE_BLAS_PATH: '' });
    expect(r.blas).toEqual({ library: 'fallback', vendor: 'fallback', config: null, threads: 1, error: 'RINGTREE_BLAS=fallback' });
    expect(r.infoBlas).toEqual(r.blas);
    expect(r.maxError).toBeLessThan(1e-5);
    expect(r.warnings).toEqual([]);
    expect(r.infoWarnings.some((w) => /BLAS/.test(w))).toBe(false);
  });

  it('a missing BLAS falls back, says so once with the fix, and doctor lists it', () => {
    const r = runChild({ RINGTREE_BLAS: '', RINGTREE_BLAS_PATH: '/nonexistent/libopenblas.so.0' });
    expect(r.blas.vendor).toBe('fallback');
    expect(r.blas.error).toMatch(/RINGTREE_BLAS_PATH=\/nonexistent\/libopenblas\.so\.0/);
    expect(r.maxError).toBeLessThan(1e-5);
    expect(r.warnings).toHaveLength(1);
    expect(r.warnings[0]!.code).toBe('RINGTREE_NO_BLAS');
    expect(r.warnings[0]!.message).toMatch(/apt-get install libopenblas0-pthread/);
    expect(r.infoWarnings.some((w) => /No CPU BLAS found.*libopenblas0-pthread/.test(w))).toBe(true);
  });

  it.runIf(hasOpenBlas)('OPENBLAS_NUM_THREADS sets the thread count', () => {
    const r = runChild({ RINGTREE_BLAS: '', RINGTREE_BLAS_PATH: '', OPENBLAS_NUM_THREADS: '1' });
    expect(r.blas.vendor).toBe('openblas');
    expect(r.blas.threads).toBe(1);
    expect(r.maxError).toBeLessThan(1e-5);
    expect(r.warnings).toEqual([]);
  });
});
