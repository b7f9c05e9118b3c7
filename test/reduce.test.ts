import { describe, it, expect, afterAll } from 'vitest';
import { loadBinding } from '../lib/binding.js';
import {
  DTYPE_CODES,
  REDUCE_OP_CODES,
  dtypeSize,
  float32ToBfloat16,
  bfloat16ToFloat32,
  float32ToFloat16,
  float16ToFloat32,
  type DType,
  type ReduceOpName,
} from '../lib/dtype.js';

// The native kernels against a plain TypeScript reference built on typed
// arrays, for every dtype x op, at sizes that leave vector tails, through
// unaligned views, at every SIMD level this CPU runs. Floats are compared
// bit for bit; the one relaxation is a NaN the operation itself creates
// (inf - inf, 0 * inf), whose sign/payload is the hardware's.

const binding = loadBinding();
const info = binding.buildInfo();
const initialLevel = binding.activeSimdLevel();
afterAll(() => {
  binding.setSimdLevel(initialLevel);
});

const ALL_LEVELS = ['baseline', 'avx2', 'avx512'] as const;
const DTYPES: DType[] = ['float32', 'float64', 'float16', 'bfloat16', 'int8', 'uint8', 'int32', 'int64'];
const OPS: ReduceOpName[] = ['sum', 'prod', 'min', 'max', 'avg'];
const COUNTS = [0, 1, 7, 31, 33, 1023, 4099];

// Deterministic PRNG so a failure reproduces.
function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 2 ** 32;
  };
}

// --- bit-level float helpers -------------------------------------------------

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);
const f64 = new Float64Array(1);
const u64 = new BigUint64Array(f64.buffer);
const bitsF32 = (x: number): number => ((f32[0] = x), u32[0]!);
const fromBitsF32 = (b: number): number => ((u32[0] = b), f32[0]!);
const bitsF64 = (x: number): bigint => ((f64[0] = x), u64[0]!);
const fromBitsF64 = (b: bigint): number => ((u64[0] = b), f64[0]!);

const F32_QUIET = 0x400000;
const F64_QUIET = 0x8000000000000n;
const F32_NAN_LIKE = (b: number): boolean => (b & 0x7fffffff) >>> 0 > 0x7f800000;
const F64_NAN_LIKE = (b: bigint): boolean => (b & 0x7fffffffffffffffn) > 0x7ff0000000000000n;

/** Expected result: exact bits, or "some NaN" for NaNs the operation creates. */
type Expect32 = number | 'nan';
type Expect64 = bigint | 'nan';

/** The documented rule (native/core/reduceScalar.h) on float32 bit patterns. */
function combineF32(op: ReduceOpName, a: number, b: number): Expect32 {
  const x = fromBitsF32(a);
  const y = fromBitsF32(b);
  if (op === 'min' || op === 'max') {
    if (F32_NAN_LIKE(a)) return a;
    if (F32_NAN_LIKE(b)) return b;
    if (x === y) return op === 'min' ? (a | b) >>> 0 : (a & b) >>> 0;
    return (op === 'min' ? x < y : x > y) ? a : b;
  }
  if (F32_NAN_LIKE(a)) return (a | F32_QUIET) >>> 0;
  if (F32_NAN_LIKE(b)) return (b | F32_QUIET) >>> 0;
  const r = Math.fround(op === 'prod' ? x * y : x + y);
  return Number.isNaN(r) ? 'nan' : bitsF32(r);
}

function combineF64(op: ReduceOpName, a: bigint, b: bigint): Expect64 {
  const x = fromBitsF64(a);
  const y = fromBitsF64(b);
  if (op === 'min' || op === 'max') {
    if (F64_NAN_LIKE(a)) return a;
    if (F64_NAN_LIKE(b)) return b;
    if (x === y) return op === 'min' ? a | b : a & b;
    return (op === 'min' ? x < y : x > y) ? a : b;
  }
  if (F64_NAN_LIKE(a)) return a | F64_QUIET;
  if (F64_NAN_LIKE(b)) return b | F64_QUIET;
  const r = op === 'prod' ? x * y : x + y;
  return Number.isNaN(r) ? 'nan' : bitsF64(r);
}

/** 16-bit floats: widen (exact), combine in float32, round back to nearest-even. */
function combineHalf(dtype: 'float16' | 'bfloat16', op: ReduceOpName, a: number, b: number): number | 'nan' {
  const widen = dtype === 'float16' ? float16ToFloat32 : bfloat16ToFloat32;
  const narrow = dtype === 'float16' ? float32ToFloat16 : float32ToBfloat16;
  const wide = new Uint32Array(widen(new Uint16Array([a, b])).buffer);
  const r = combineF32(op, wide[0]!, wide[1]!);
  if (r === 'nan') return 'nan';
  return narrow(new Float32Array(new Uint32Array([r]).buffer))[0]!;
}

// --- inputs -----------------------------------------------------------------

const SPECIAL_F32 = [NaN, Infinity, -Infinity, 0, -0, 1, -1, 3.4028234663852886e38, -3.4028234663852886e38, 1.4e-45, 1e-40, 2 ** 24];
const SPECIAL_F32_BITS = [0x7fc00001, 0xffc12345, 0x7f800001 /* signaling */, 0xff800100];
const SPECIAL_F16 = [0x7c00, 0xfc00, 0x7e00, 0x7d01 /* signaling */, 0xfe33, 0x0000, 0x8000, 0x7bff, 0xfbff, 0x0001, 0x8001, 0x03ff, 0x3c00];
const SPECIAL_BF16 = [0x7f80, 0xff80, 0x7fc0, 0x7f81 /* signaling */, 0xffc5, 0x0000, 0x8000, 0x7f7f, 0xff7f, 0x0001, 0x8001, 0x3f80];
const SPECIAL_INT: Record<string, Array<number | bigint>> = {
  int8: [-128, 127, -1, 0, 1, 64, -64],
  uint8: [0, 255, 128, 1, 16],
  int32: [-2147483648, 2147483647, -1, 0, 1, 65536, -65536, 46341],
  int64: [-(2n ** 63n), 2n ** 63n - 1n, -1n, 0n, 1n, 2n ** 32n, -(2n ** 32n) + 7n, 3037000500n],
};

/** A random array of `dtype` (element values, as the typed array for that dtype holds them). */
function randomElements(dtype: DType, count: number, next: () => number): ArrayBufferView {
  const pick = <T>(list: readonly T[]): T => list[Math.floor(next() * list.length)]!;
  const special = (): boolean => next() < 0.15;
  switch (dtype) {
    case 'float32': {
      const a = new Float32Array(count);
      const bits = new Uint32Array(a.buffer);
      for (let i = 0; i < count; i++) {
        if (special()) {
          if (next() < 0.3) bits[i] = pick(SPECIAL_F32_BITS);
          else a[i] = pick(SPECIAL_F32);
        } else a[i] = (next() - 0.5) * 2 ** Math.floor(next() * 60 - 30);
      }
      return a;
    }
    case 'float64': {
      const a = new Float64Array(count);
      const bits = new BigUint64Array(a.buffer);
      for (let i = 0; i < count; i++) {
        if (special()) {
          if (next() < 0.3) bits[i] = pick([0x7ff8000000000001n, 0xfff8000000abcdefn, 0x7ff0000000000001n]);
          else a[i] = pick([NaN, Infinity, -Infinity, 0, -0, 1, -1, Number.MAX_VALUE, -Number.MAX_VALUE, 5e-324, 2 ** 53]);
        } else a[i] = (next() - 0.5) * 2 ** Math.floor(next() * 200 - 100);
      }
      return a;
    }
    case 'float16':
    case 'bfloat16': {
      const a = new Uint16Array(count);
      const specials = dtype === 'float16' ? SPECIAL_F16 : SPECIAL_BF16;
      const narrow = dtype === 'float16' ? float32ToFloat16 : float32ToBfloat16;
      const values = new Float32Array(count);
      for (let i = 0; i < count; i++) {
        // Magnitudes up to 2^16 so float16 sums and products overflow.
        values[i] = (next() - 0.5) * 2 ** Math.floor(next() * 36 - 18);
      }
      narrow(values, a);
      for (let i = 0; i < count; i++) if (special()) a[i] = pick(specials);
      return a;
    }
    case 'int8':
    case 'uint8':
    case 'int32': {
      const a = dtype === 'int8' ? new Int8Array(count) : dtype === 'uint8' ? new Uint8Array(count) : new Int32Array(count);
      for (let i = 0; i < count; i++) {
        a[i] = special() ? (pick(SPECIAL_INT[dtype]!) as number) : Math.floor(next() * 2 ** 32) | 0; // the typed array wraps
      }
      return a;
    }
    case 'int64': {
      const a = new BigInt64Array(count);
      for (let i = 0; i < count; i++) {
        a[i] = special()
          ? (pick(SPECIAL_INT.int64!) as bigint)
          : BigInt.asIntN(64, (BigInt(Math.floor(next() * 2 ** 32)) << 32n) | BigInt(Math.floor(next() * 2 ** 32)));
      }
      return a;
    }
  }
}

const CTORS: Record<DType, new (buffer: ArrayBuffer, byteOffset: number, length: number) => ArrayBufferView> = {
  float32: Float32Array,
  float64: Float64Array,
  float16: Uint16Array,
  bfloat16: Uint16Array,
  int8: Int8Array,
  uint8: Uint8Array,
  int32: Int32Array,
  int64: BigInt64Array,
};

/**
 * A view of `count` elements whose byteOffset is `skew` elements into its
 * buffer: never a multiple of 32 bytes, so vector loads are unaligned.
 */
function unalignedView(dtype: DType, count: number, skew: number, init?: ArrayBufferView): ArrayBufferView {
  const size = dtypeSize(dtype);
  const buffer = new ArrayBuffer((count + skew + 8) * size);
  const view = new CTORS[dtype](buffer, skew * size, count);
  expect(view.byteOffset % 32).not.toBe(0);
  if (init) new Uint8Array(buffer, view.byteOffset, view.byteLength).set(new Uint8Array(init.buffer, init.byteOffset, init.byteLength));
  return view;
}

// --- the reference ------------------------------------------------------------

/** Checks `out` against the reference for a[i] (op) b[i]; returns the first mismatch or null. */
function firstMismatch(dtype: DType, op: ReduceOpName, a: ArrayBufferView, b: ArrayBufferView, out: ArrayBufferView): string | null {
  const n = out.byteLength / dtypeSize(dtype);
  switch (dtype) {
    case 'float32': {
      const [ab, bb, ob] = [a, b, out].map((v) => new Uint32Array(v.buffer, v.byteOffset, n)) as [Uint32Array, Uint32Array, Uint32Array];
      for (let i = 0; i < n; i++) {
        const e = combineF32(op, ab[i]!, bb[i]!);
        if (e === 'nan' ? !F32_NAN_LIKE(ob[i]!) : ob[i] !== e) return `[${i}] ${hex(ab[i]!)} ${op} ${hex(bb[i]!)}: got ${hex(ob[i]!)}, expected ${e === 'nan' ? 'NaN' : hex(e)}`;
      }
      return null;
    }
    case 'float64': {
      const [ab, bb, ob] = [a, b, out].map((v) => new BigUint64Array(v.buffer, v.byteOffset, n)) as [BigUint64Array, BigUint64Array, BigUint64Array];
      for (let i = 0; i < n; i++) {
        const e = combineF64(op, ab[i]!, bb[i]!);
        if (e === 'nan' ? !F64_NAN_LIKE(ob[i]!) : ob[i] !== e) return `[${i}] ${hex(ab[i]!)} ${op} ${hex(bb[i]!)}: got ${hex(ob[i]!)}, expected ${e === 'nan' ? 'NaN' : hex(e)}`;
      }
      return null;
    }
    case 'float16':
    case 'bfloat16': {
      const [ab, bb, ob] = [a, b, out] as Uint16Array[];
      const nanLike = dtype === 'float16' ? (h: number) => (h & 0x7fff) > 0x7c00 : (h: number) => (h & 0x7fff) > 0x7f80;
      for (let i = 0; i < n; i++) {
        const e = combineHalf(dtype, op, ab![i]!, bb![i]!);
        if (e === 'nan' ? !nanLike(ob![i]!) : ob![i] !== e) return `[${i}] ${hex(ab![i]!)} ${op} ${hex(bb![i]!)}: got ${hex(ob![i]!)}, expected ${e === 'nan' ? 'NaN' : hex(e)}`;
      }
      return null;
    }
    case 'int64': {
      const [ab, bb, ob] = [a, b, out] as BigInt64Array[];
      const expected = new BigInt64Array(n); // wraps on store
      for (let i = 0; i < n; i++) {
        const x = ab![i]!;
        const y = bb![i]!;
        expected[i] = op === 'prod' ? x * y : op === 'min' ? (x < y ? x : y) : op === 'max' ? (x > y ? x : y) : x + y;
        if (ob![i] !== expected[i]) return `[${i}] ${x} ${op} ${y}: got ${ob![i]}, expected ${expected[i]}`;
      }
      return null;
    }
    default: {
      const [ab, bb, ob] = [a, b, out] as Int32Array[];
      const Ctor = ob!.constructor as new (n: number) => Int32Array;
      const expected = new Ctor(n); // Int8Array/Uint8Array/Int32Array wrap on store
      for (let i = 0; i < n; i++) {
        const x = ab![i]!;
        const y = bb![i]!;
        expected[i] = op === 'prod' ? Math.imul(x, y) : op === 'min' ? Math.min(x, y) : op === 'max' ? Math.max(x, y) : x + y;
        if (ob![i] !== expected[i]) return `[${i}] ${x} ${op} ${y}: got ${ob![i]}, expected ${expected[i]}`;
      }
      return null;
    }
  }
}

function hex(x: number | bigint): string {
  return `0x${x.toString(16)}`;
}

function reduce(out: ArrayBufferView, a: ArrayBufferView, b: ArrayBufferView, dtype: DType, op: ReduceOpName): void {
  binding.reduceForTest(out, a, b, DTYPE_CODES[dtype], REDUCE_OP_CODES[op]);
}

// --- the tests ----------------------------------------------------------------

describe('SIMD levels', () => {
  it('reports what was compiled, what the CPU runs and what is active', () => {
    expect(info.simdCompiled).toContain('baseline');
    expect(info.simdCpu).toContain('baseline');
    for (const level of info.simdCpu) expect(info.simdCompiled).toContain(level);
    expect(info.simdCpu).toContain(binding.activeSimdLevel());
  });

  it('refuses a level the CPU cannot run and rejects unknown names', () => {
    for (const level of ALL_LEVELS) expect(binding.setSimdLevel(level)).toBe(info.simdCpu.includes(level));
    expect(() => binding.setSimdLevel('sse9')).toThrow(RangeError);
    binding.setSimdLevel(initialLevel);
  });
});

for (const level of ALL_LEVELS) {
  const supported = info.simdCpu.includes(level);
  describe.skipIf(!supported)(`reduce() at SIMD level ${level}${supported ? '' : ' (skipped: this CPU lacks it)'}`, () => {
    for (const dtype of DTYPES) {
      for (const op of OPS) {
        it(`${dtype} ${op} matches the TypeScript reference at counts ${COUNTS.join(', ')}`, () => {
          expect(binding.setSimdLevel(level)).toBe(true);
          const next = rng(DTYPE_CODES[dtype] * 31 + REDUCE_OP_CODES[op] * 7 + 1);
          for (const count of COUNTS) {
            const a = unalignedView(dtype, count, 1, randomElements(dtype, count, next));
            const b = unalignedView(dtype, count, 3, randomElements(dtype, count, next));
            const out = unalignedView(dtype, count, 5);
            reduce(out, a, b, dtype, op);
            const mismatch = firstMismatch(dtype, op, a, b, out);
            if (mismatch) expect.fail(`${level} ${dtype} ${op} count ${count}: ${mismatch}`);
          }
        });
      }

      it(`${dtype}: dst may alias a or b`, () => {
        expect(binding.setSimdLevel(level)).toBe(true);
        const next = rng(1000 + DTYPE_CODES[dtype]);
        const count = 1023;
        for (const op of ['sum', 'max'] as const) {
          const a = unalignedView(dtype, count, 1, randomElements(dtype, count, next));
          const b = unalignedView(dtype, count, 2, randomElements(dtype, count, next));
          const expected = unalignedView(dtype, count, 3);
          reduce(expected, a, b, dtype, op);
          const intoA = unalignedView(dtype, count, 1, a);
          reduce(intoA, intoA, b, dtype, op);
          const intoB = unalignedView(dtype, count, 1, b);
          reduce(intoB, a, intoB, dtype, op);
          const bytes = (v: ArrayBufferView) => Buffer.from(v.buffer, v.byteOffset, v.byteLength);
          expect(bytes(intoA).equals(bytes(expected))).toBe(true);
          expect(bytes(intoB).equals(bytes(expected))).toBe(true);
        }
      });
    }

    it('pins the edge cases by value', () => {
      expect(binding.setSimdLevel(level)).toBe(true);
      const run = <T extends ArrayBufferView>(dtype: DType, op: ReduceOpName, a: T, b: T): T => {
        const out = new (a.constructor as new (n: number) => T)((a as unknown as { length: number }).length);
        reduce(out, a, b, dtype, op);
        return out;
      };
      // 9 elements: crosses an 8-lane vector into the tail.
      const nineA = [NaN, 1, -0, 0, Infinity, -Infinity, 2, -5, 1];
      const nineB = [1, NaN, 0, -0, -Infinity, -Infinity, 3, -5, NaN];
      const mins = run('float32', 'min', new Float32Array(nineA), new Float32Array(nineB));
      expect(Array.from(mins)).toEqual([NaN, NaN, -0, -0, -Infinity, -Infinity, 2, -5, NaN]);
      expect(Object.is(mins[2], -0) && Object.is(mins[3], -0)).toBe(true);
      const maxs = run('float64', 'max', new Float64Array(nineA), new Float64Array(nineB));
      expect(Array.from(maxs)).toEqual([NaN, NaN, 0, 0, Infinity, -Infinity, 3, -5, NaN]);
      expect(Object.is(maxs[2], 0) && Object.is(maxs[3], 0)).toBe(true);
      expect(Number.isNaN(run('float32', 'sum', new Float32Array([Infinity]), new Float32Array([-Infinity]))[0])).toBe(true);
      // float16 overflow: 65520 (= 32752 + 32768) is the tie between 65504 and
      // 65536 and goes to infinity; 65000 rounds down to 64992; 1 + 2^-11 ties to 1.
      const halves = (xs: number[]) => float32ToFloat16(xs);
      const f16 = run('float16', 'sum', halves([65504, 60000, 60000, -65504, 1, 2 ** -24, 32752, 32736]), halves([65504, 5000, 6000, -65504, 2 ** -11, 2 ** -24, 32768, 32768]));
      expect(Array.from(float16ToFloat32(f16))).toEqual([Infinity, 64992, Infinity, -Infinity, 1, 2 ** -23, Infinity, 65504]);
      // Integers wrap.
      expect(Array.from(run('int8', 'sum', new Int8Array([127, -128, -128]), new Int8Array([1, -1, -128])))).toEqual([-128, 127, 0]);
      expect(Array.from(run('int8', 'prod', new Int8Array([16, -128]), new Int8Array([16, -1])))).toEqual([0, -128]);
      expect(Array.from(run('uint8', 'sum', new Uint8Array([255, 200]), new Uint8Array([1, 100])))).toEqual([0, 44]);
      const int32 = run('int32', 'sum', new Int32Array(9).fill(2147483647), new Int32Array(9).fill(1));
      expect(Array.from(int32)).toEqual(new Array(9).fill(-2147483648));
      expect(run('int32', 'prod', new Int32Array([-2147483648, 65536]), new Int32Array([-1, 65536]))).toEqual(new Int32Array([-2147483648, 0]));
      const min64 = -(2n ** 63n);
      expect(Array.from(run('int64', 'sum', new BigInt64Array([2n ** 63n - 1n, min64]), new BigInt64Array([1n, -1n])))).toEqual([min64, 2n ** 63n - 1n]);
      expect(Array.from(run('int64', 'prod', new BigInt64Array([min64, 2n ** 32n]), new BigInt64Array([-1n, 2n ** 32n])))).toEqual([min64, 0n]);
      expect(Array.from(run('int64', 'min', new BigInt64Array([min64, 5n]), new BigInt64Array([0n, -5n])))).toEqual([min64, -5n]);
    });
  });
}

describe('every SIMD level gives the bits baseline gives', () => {
  const others = info.simdCpu.filter((level) => level !== 'baseline');
  it.skipIf(others.length === 0)(`on random bit patterns (levels: ${others.join(', ') || 'none besides baseline'})`, () => {
    const next = rng(7);
    for (const dtype of DTYPES) {
      for (const op of OPS) {
        for (const count of [33, 4099]) {
          const size = dtypeSize(dtype);
          // Raw random bytes: every NaN payload, subnormal and sign the format has.
          const a = unalignedView('uint8', count * size, size, new Uint8Array(count * size).map(() => next() * 256));
          const b = unalignedView('uint8', count * size, 3 * size, new Uint8Array(count * size).map(() => next() * 256));
          const results = new Map<string, Buffer>();
          for (const level of ['baseline', ...others]) {
            expect(binding.setSimdLevel(level)).toBe(true);
            const out = Buffer.alloc(count * size);
            reduce(out, a, b, dtype, op);
            results.set(level, out);
          }
          for (const level of others) {
            if (!results.get(level)!.equals(results.get('baseline')!)) expect.fail(`${level} differs from baseline for ${dtype} ${op} count ${count}`);
          }
        }
      }
    }
    binding.setSimdLevel(initialLevel);
  });
  for (const level of ALL_LEVELS.filter((l) => l !== 'baseline' && !info.simdCpu.includes(l))) {
    it.skip(`${level} (skipped: this CPU lacks it)`, () => {});
  }
});

describe('divideBy (the avg finish)', () => {
  it('divides floats, truncates integers toward zero, and rounds 16-bit floats via float32', () => {
    const f32 = new Float32Array([1, -7, 0.1, Infinity, NaN, -0]);
    binding.divideForTest(f32, DTYPE_CODES.float32, 3);
    const expected = [1, -7, 0.1, Infinity, NaN, -0].map((x) => Math.fround(Math.fround(x) / 3));
    expect(Array.from(f32)).toEqual(expected);
    expect(Object.is(f32[5], -0)).toBe(true);

    const f64 = new Float64Array([1, -7, 0.1]);
    binding.divideForTest(f64, DTYPE_CODES.float64, 3);
    expect(Array.from(f64)).toEqual([1 / 3, -7 / 3, 0.1 / 3]);

    const i8 = new Int8Array([-128, 127, -7, 7, -1]);
    binding.divideForTest(i8, DTYPE_CODES.int8, 2);
    expect(Array.from(i8)).toEqual([-64, 63, -3, 3, 0]);
    const u8 = new Uint8Array([255, 7]);
    binding.divideForTest(u8, DTYPE_CODES.uint8, 2);
    expect(Array.from(u8)).toEqual([127, 3]);
    const i32 = new Int32Array([-2147483648, -7, 7]);
    binding.divideForTest(i32, DTYPE_CODES.int32, 3);
    expect(Array.from(i32)).toEqual([-715827882, -2, 2]);
    const i64 = new BigInt64Array([-(2n ** 63n), -7n, 7n]);
    binding.divideForTest(i64, DTYPE_CODES.int64, 3);
    expect(Array.from(i64)).toEqual([-(2n ** 63n) / 3n, -2n, 2n]);
    const big = new Int32Array([1000]);
    binding.divideForTest(big, DTYPE_CODES.int32, 300); // a divisor wider than int8 still works
    expect(big[0]).toBe(3);
    const i8big = new Int8Array([100, -100]);
    binding.divideForTest(i8big, DTYPE_CODES.int8, 300);
    expect(Array.from(i8big)).toEqual([0, 0]);

    for (const dtype of ['float16', 'bfloat16'] as const) {
      const narrow = dtype === 'float16' ? float32ToFloat16 : float32ToBfloat16;
      const widen = dtype === 'float16' ? float16ToFloat32 : bfloat16ToFloat32;
      const values = [1, 3, 65504, -(2 ** -24), 1000.5];
      const data = narrow(values);
      const want = narrow(new Float32Array(Array.from(widen(data)).map((x) => Math.fround(x / 3))));
      binding.divideForTest(data, DTYPE_CODES[dtype], 3);
      expect(Array.from(data)).toEqual(Array.from(want));
    }
  });
});

describe('reduceForTest argument checks', () => {
  it('names the argument that is wrong', () => {
    const a = new Float32Array(4);
    expect(() => binding.reduceForTest(a, a, new Float32Array(3), DTYPE_CODES.float32, 0)).toThrow(/`b` has byteLength 12, `out` has 16/);
    expect(() => binding.reduceForTest(a, new Float32Array(5), a, DTYPE_CODES.float32, 0)).toThrow(RangeError);
    expect(() => binding.reduceForTest([] as unknown as Float32Array, a, a, 0, 0)).toThrow(/TypedArray or DataView for `out`/);
    expect(() => binding.reduceForTest(a, a, a, 9, 0)).toThrow(/`dtype` must be an integer in \[0, 8\)/);
    expect(() => binding.reduceForTest(a, a, a, 0, 5)).toThrow(/`op`/);
    expect(() => binding.reduceForTest(new Uint8Array(3), new Uint8Array(3), new Uint8Array(3), DTYPE_CODES.float32, 0)).toThrow(/not a multiple of 4/);
    expect(() => binding.divideForTest(a, DTYPE_CODES.float32, 0)).toThrow(/`divisor` must be an integer >= 1/);
  });

  it('accepts DataViews and other views of the same bytes', () => {
    const a = new Float32Array([1, 2, 3]);
    const out = new DataView(new ArrayBuffer(12));
    binding.reduceForTest(out, new DataView(a.buffer), new Uint8Array(a.buffer), DTYPE_CODES.float32, REDUCE_OP_CODES.sum);
    expect(Array.from(new Float32Array(out.buffer))).toEqual([2, 4, 6]);
  });
});
