// The collective case table, the deterministic input generator and the plain
// JS reference, shared by the rank program (collectivesRank.mjs) and the test
// (test/collectives.test.ts), which enumerates the same table to name its
// cases and to insist that every rank reported every one of them.
//
// Inputs are a pure function of (case seed, rank, element index), so a rank
// can regenerate any other rank's input and compute the whole expected
// result itself. Values are chosen so that every float result is exact:
// sums of small integers (every partial sum representable, also in
// float16/bfloat16, whose kernels round after each step), products of
// {-1, 1, 2}, and min/max of arbitrary finite non-zero bit patterns (no NaN,
// no +0/-0 tie whose winner would be unspecified). Integer sums and products
// use the whole range, so they wrap as the typed arrays do.
import { createHash } from 'node:crypto';
import {
  CPU_ALGORITHMS,
  fromBfloat16Bits,
  fromFloat16Bits,
  toBfloat16Bits,
  toFloat16Bits,
} from '../../dist/index.js';

export const DTYPES = ['float32', 'float64', 'float16', 'bfloat16', 'int8', 'uint8', 'int32', 'int64'];
export const OPS = ['sum', 'prod', 'min', 'max', 'avg'];
export const COLLECTIVES = ['allReduce', 'reduceScatter', 'allGather', 'broadcast', 'reduce'];
export const REDUCING = new Set(['allReduce', 'reduceScatter', 'reduce']);
/** Spans many 256 KiB slots, and is prime so no segment or chunk edge lines up. */
export const BIG = 2 ** 20 + 3;
/** Per-op deadline in the rank program: a hang becomes a TimeoutError, not a stuck test. */
export const OP_TIMEOUT_MS = 60_000;

const ARRAY = {
  float32: Float32Array, float64: Float64Array, float16: Uint16Array, bfloat16: Uint16Array,
  int8: Int8Array, uint8: Uint8Array, int32: Int32Array, int64: BigInt64Array,
};
const SIZE = { float32: 4, float64: 8, float16: 2, bfloat16: 2, int8: 1, uint8: 1, int32: 4, int64: 8 };

export function arrayClass(dtype) { return ARRAY[dtype]; }
export function elemSize(dtype) { return SIZE[dtype]; }
export function is16(dtype) { return dtype === 'float16' || dtype === 'bfloat16'; }
/** The `{ dtype }` option a Uint16Array needs; empty for the others. */
export function dtypeOption(dtype) { return is16(dtype) ? { dtype } : {}; }

/** A 32-bit hash of three integers (murmur3-style finalizer). */
export function mix(a, b, c) {
  let x = Math.imul(a + 0x3c6ef372, 0x85ebca6b) ^ Math.imul(b + 0x7f4a7c15, 0xc2b2ae35) ^ Math.imul(c + 0x165667b1, 0x27d4eb2f);
  x ^= x >>> 15; x = Math.imul(x, 0x2c1b3c6d);
  x ^= x >>> 12; x = Math.imul(x, 0x297a2d39);
  x ^= x >>> 15;
  return x >>> 0;
}

/** Which value pattern an input uses. 'bits' (data movement): any bytes at all, NaNs included. */
function patternOf(dtype, op) {
  if (op === null || op === undefined) return 'bits';
  if (op === 'sum' || op === 'avg') return DTYPE_IS_INT(dtype) ? 'bits' : 'smallSum';
  if (op === 'prod') return DTYPE_IS_INT(dtype) ? 'bits' : 'signsAndTwos';
  return DTYPE_IS_INT(dtype) ? 'bits' : 'finiteNonZero';
}
function DTYPE_IS_INT(dtype) { return dtype.startsWith('int') || dtype === 'uint8'; }

/**
 * A fresh array of `count` elements: rank `rank`'s input of case `c` (from
 * element `offset` of that rank's conceptual infinite input).
 */
export function makeInput(c, rank, count) {
  const T = ARRAY[c.dtype];
  const es = SIZE[c.dtype];
  const buf = new ArrayBuffer(count * es);
  const pattern = patternOf(c.dtype, c.op);
  const seed = c.seed;
  if (pattern === 'bits' || pattern === 'finiteNonZero') {
    const bytes = new Uint8Array(buf);
    const words = Math.floor(bytes.length / 4);
    const w32 = new Uint32Array(buf, 0, words);
    for (let i = 0; i < words; i++) w32[i] = mix(seed, rank, i);
    for (let i = words * 4; i < bytes.length; i++) bytes[i] = mix(seed, rank, i + 0x10000000) & 0xff;
    if (pattern === 'finiteNonZero') sanitizeFloats(buf, c.dtype);
    return new T(buf);
  }
  if (pattern === 'smallSum') {
    const a = new T(buf);
    for (let i = 0; i < count; i++) {
      const h = mix(seed, rank, i);
      let v;
      switch (c.dtype) {
        case 'float32': v = ((h % (1 << 21)) - (1 << 20)) / 8; break; // |sum of 4| < 2^19, quantum 1/8
        case 'float64': v = (h | 0) / 1024; break;
        case 'float16': v = (h % 201) - 100; break; // |partial sums| <= 400 < 2048
        case 'bfloat16': v = (h % 61) - 30; break; // |partial sums| <= 120 < 256
        default: throw new Error(c.dtype);
      }
      a[i] = encode(c.dtype, v);
    }
    return a;
  }
  // signsAndTwos: products of at most four factors in {-1, 1, 2}.
  const a = new T(buf);
  const choices = [-1, 1, 2, 1];
  for (let i = 0; i < count; i++) a[i] = encode(c.dtype, choices[mix(seed, rank, i) & 3]);
  return a;
}

function sanitizeFloats(buf, dtype) {
  if (dtype === 'float32') {
    const u = new Uint32Array(buf);
    for (let i = 0; i < u.length; i++) {
      let b = u[i];
      if (((b >>> 23) & 0xff) === 0xff) b ^= 0x40000000;
      if ((b & 0x7fffffff) === 0) b |= 1;
      u[i] = b;
    }
  } else if (dtype === 'float64') {
    const u = new Uint32Array(buf); // little endian: [lo, hi]
    for (let i = 0; i < u.length; i += 2) {
      let hi = u[i + 1];
      if (((hi >>> 20) & 0x7ff) === 0x7ff) hi ^= 0x40000000;
      if ((hi & 0x7fffffff) === 0 && u[i] === 0) u[i] = 1;
      u[i + 1] = hi;
    }
  } else {
    const u = new Uint16Array(buf);
    const expMask = dtype === 'float16' ? 0x7c00 : 0x7f80;
    for (let i = 0; i < u.length; i++) {
      let b = u[i];
      if ((b & expMask) === expMask) b ^= 0x4000;
      if ((b & 0x7fff) === 0) b |= 1;
      u[i] = b;
    }
  }
}

function encode(dtype, v) {
  if (dtype === 'float16') return toFloat16Bits(v);
  if (dtype === 'bfloat16') return toBfloat16Bits(v);
  return v;
}
function decode(dtype, bits) {
  return dtype === 'float16' ? fromFloat16Bits(bits) : fromBfloat16Bits(bits);
}

/** acc[i] = acc[i] (op) src[i], as the engine computes it in the element type. */
function combineInto(acc, src, dtype, op) {
  const n = acc.length;
  if (op === 'avg') op = 'sum';
  if (is16(dtype)) {
    for (let i = 0; i < n; i++) {
      const a = decode(dtype, acc[i]), b = decode(dtype, src[i]);
      if (op === 'min') { if (b < a) acc[i] = src[i]; } else if (op === 'max') { if (b > a) acc[i] = src[i]; } else {
        // f16/bf16 accumulate in float32 and round to 16 bits after each step.
        acc[i] = encode(dtype, Math.fround(op === 'sum' ? a + b : a * b));
      }
    }
    return;
  }
  if ((dtype === 'int8' || dtype === 'uint8' || dtype === 'int32') && op === 'prod') {
    for (let i = 0; i < n; i++) acc[i] = Math.imul(acc[i], src[i]); // the store wraps
    return;
  }
  switch (op) {
    case 'sum': for (let i = 0; i < n; i++) acc[i] = acc[i] + src[i]; return; // the store wraps / rounds
    case 'prod': for (let i = 0; i < n; i++) acc[i] = acc[i] * src[i]; return;
    case 'min': for (let i = 0; i < n; i++) if (src[i] < acc[i]) acc[i] = src[i]; return;
    case 'max': for (let i = 0; i < n; i++) if (src[i] > acc[i]) acc[i] = src[i]; return;
  }
  throw new Error(`no op ${op}`);
}

/** avg's division: truncated toward zero on integers, after the wrapped sum; f16/bf16 divide in float32. */
function divideInto(acc, dtype, size) {
  const n = acc.length;
  if (dtype === 'int64') { const d = BigInt(size); for (let i = 0; i < n; i++) acc[i] = acc[i] / d; return; }
  if (DTYPE_IS_INT(dtype)) { for (let i = 0; i < n; i++) acc[i] = Math.trunc(acc[i] / size); return; }
  if (is16(dtype)) { for (let i = 0; i < n; i++) acc[i] = encode(dtype, Math.fround(decode(dtype, acc[i]) / size)); return; }
  for (let i = 0; i < n; i++) acc[i] = acc[i] / size;
}

/** The reduction over ranks 0..size-1 of their `count`-element inputs of case `c`. */
export function reduced(c, size, count) {
  const acc = makeInput(c, 0, count);
  for (let q = 1; q < size; q++) combineInto(acc, makeInput(c, q, count), c.dtype, c.op);
  if (c.op === 'avg') divideInto(acc, c.dtype, size);
  return acc;
}

export function bytesOf(a) { return new Uint8Array(a.buffer, a.byteOffset, a.byteLength); }
export function sha256(a) { return createHash('sha256').update(bytesOf(a)).digest('hex').slice(0, 32); }

/** A copy that shares nothing with `a`. */
export function snapshot(a) { return bytesOf(a).slice(); }

/** An output array pre-filled with 0xA5 bytes, so an element the engine never wrote shows. */
export function sentinel(dtype, count) {
  const a = new ARRAY[dtype](count);
  bytesOf(a).fill(0xa5);
  return a;
}

/** null when equal; else where and how they differ. */
export function firstDifference(got, want, dtype) {
  const g = bytesOf(got), w = bytesOf(want);
  if (g.length !== w.length) return `length ${g.length} bytes, want ${w.length}`;
  if (Buffer.compare(g, w) === 0) return null;
  const es = SIZE[dtype];
  let first = -1, wrong = 0;
  for (let i = 0; i < g.length; i += es) {
    let same = true;
    for (let k = 0; k < es; k++) if (g[i + k] !== w[i + k]) { same = false; break; }
    if (!same) { wrong++; if (first < 0) first = i / es; }
  }
  const show = (a) => (is16(dtype) ? `${a[first]} (0x${a[first].toString(16)})` : String(a[first]));
  return `${wrong} of ${got.length} elements differ; first at ${first}: got ${show(got)}, want ${show(want)}`;
}

/**
 * The cases of one table for world size `size`. Each case: { id, coll, dtype,
 * op (null for data movement), count (per rank for reduceScatter/allGather),
 * inPlace, root, chunkBytes?, seed }.
 */
export function buildTable(size, name) {
  const cases = [];
  const add = (coll, dtype, op, count, inPlace, extra = {}) => {
    const index = cases.length;
    const root = coll === 'broadcast' || coll === 'reduce' ? (index * 7 + 3) % size : -1;
    const tag = [coll, dtype, op ?? 'copy', `n${count}`, inPlace ? 'inplace' : 'outofplace'];
    if (root >= 0) tag.push(`root${root}`);
    if (extra.chunkBytes) tag.push(`chunk${extra.chunkBytes}`);
    if (extra.offset) tag.push(`offset${extra.offset}`);
    if (extra.algorithm) tag.push(extra.algorithm);
    cases.push({ id: tag.join('/'), coll, dtype, op, count, inPlace, root, seed: index * 1000 + 17, ...extra });
  };
  const opsOf = (coll) => (REDUCING.has(coll) ? OPS : [null]);
  if (name === 'full') {
    for (const coll of COLLECTIVES) {
      for (const dtype of DTYPES) {
        for (const op of opsOf(coll)) {
          for (const count of [0, 1, 7, 1023]) {
            for (const inPlace of [false, true]) add(coll, dtype, op, count, inPlace);
          }
        }
      }
      // Many chunks per segment, chunk edges off the element/segment grid
      // (100 bytes is not a multiple of 8; 3 bytes is less than one element).
      const chunky = REDUCING.has(coll)
        ? [['float32', 'sum', 64], ['float64', 'max', 100], ['int8', 'sum', 100], ['bfloat16', 'avg', 64], ['int64', 'prod', 3], ['float16', 'min', 100]]
        : [['float32', null, 64], ['float64', null, 100], ['int8', null, 100], ['bfloat16', null, 3]];
      chunky.forEach(([dtype, op, chunkBytes], i) => add(coll, dtype, REDUCING.has(coll) ? op : null, 5003, i % 2 === 1, { chunkBytes }));
      // Views that do not start at their buffer's beginning.
      const offsetOp = (op) => (REDUCING.has(coll) ? op : null);
      add(coll, 'float64', offsetOp('sum'), 1023, false, { offset: 1 });
      add(coll, 'int8', offsetOp('prod'), 1023, true, { offset: 3 });
      add(coll, 'float16', offsetOp('max'), 1023, false, { offset: 5 });
      // Larger than many slots: a subset of dtype/op combinations.
      const bigOp = (op) => (REDUCING.has(coll) ? op : null);
      add(coll, 'float32', bigOp('sum'), BIG, false);
      add(coll, 'int64', bigOp('max'), BIG, true);
      add(coll, 'bfloat16', bigOp('sum'), BIG, false);
    }
    // Every other algorithm the engine publishes for a collective (ring is the default above).
    for (const coll of COLLECTIVES) {
      for (const algorithm of CPU_ALGORITHMS[coll].filter((a) => a !== 'ring')) {
        for (const dtype of DTYPES) {
          for (const op of opsOf(coll)) {
            for (const count of [1, 7, 1023]) add(coll, dtype, op, count, count === 7, { algorithm });
          }
        }
        add(coll, 'float32', REDUCING.has(coll) ? 'sum' : null, 5003, false, { algorithm, chunkBytes: 100 });
        add(coll, 'bfloat16', REDUCING.has(coll) ? 'max' : null, BIG, true, { algorithm });
      }
      add(coll, 'int32', REDUCING.has(coll) ? 'sum' : null, 1023, false, { algorithm: 'auto' });
      add(coll, 'float32', REDUCING.has(coll) ? 'sum' : null, BIG, false, { algorithm: 'auto' });
    }
  } else if (name === 'simd') {
    // The reducing kernels at a forced SIMD level: vector bodies and tails.
    for (const coll of ['allReduce', 'reduceScatter', 'reduce']) {
      for (const dtype of ['float32', 'bfloat16', 'float16', 'int32']) {
        for (const op of ['sum', 'max', 'avg']) {
          for (const count of [1, 7, 33, 1023, 4099]) add(coll, dtype, op, count, count % 2 === 0);
          add(coll, dtype, op, 5003, false, { chunkBytes: 100 });
        }
      }
    }
  } else if (name === 'slots') {
    // Small transport slots (4 KiB): everything is many slots long.
    for (const coll of COLLECTIVES) {
      for (const [dtype, op] of [['float32', 'sum'], ['int64', 'max'], ['bfloat16', 'sum'], ['int8', 'avg'], ['float64', 'prod']]) {
        for (const count of [1023, 5003, 100_003]) add(coll, dtype, REDUCING.has(coll) ? op : null, count, count === 5003);
      }
    }
    // In place above the direct (cross-memory) threshold of 64 KiB per buffer.
    for (const coll of ['allGather', 'broadcast']) add(coll, 'float32', null, 100_003, true);
  } else {
    throw new Error(`no table ${name}`);
  }
  return cases;
}

/** Which extra sections (beyond the table) a table's run includes. */
export function sectionsOf(name) {
  if (name === 'full') return ['p2p', 'sync', 'misc', 'barrier', 'invalid'];
  if (name === 'slots') return ['p2p', 'sync'];
  return [];
}
