/**
 * Element types: the names users pass, the codes the addon takes, how a
 * TypedArray maps to one, and bfloat16/float16 conversion helpers.
 *
 * The conversions round to nearest-even and give exactly the bits the
 * native kernels give (native/core/reduceScalar.h), so a value converted here
 * and one reduced natively agree.
 *
 * @module
 */
import { InvalidArgumentError } from './errors.js';

/** Element types ringtree reduces and moves. 16-bit floats travel in a Uint16Array (or a Float16Array where the runtime has one). */
export type DType = 'float32' | 'float64' | 'float16' | 'bfloat16' | 'int8' | 'uint8' | 'int32' | 'int64';

/** Reduction operators. `'avg'` is the sum divided by the world size (truncated toward zero on integers). */
export type ReduceOpName = 'sum' | 'prod' | 'min' | 'max' | 'avg';

/** Addon codes for each dtype (mirror `enum class DType` in native/core/dtype.h). */
export const DTYPE_CODES: Readonly<Record<DType, number>> = Object.freeze({
  float32: 0,
  float64: 1,
  float16: 2,
  bfloat16: 3,
  int8: 4,
  uint8: 5,
  int32: 6,
  int64: 7,
});

/** Addon codes for each reduction operator (mirror `enum class ReduceOp` in native/core/dtype.h). */
export const REDUCE_OP_CODES: Readonly<Record<ReduceOpName, number>> = Object.freeze({
  sum: 0,
  prod: 1,
  min: 2,
  max: 3,
  avg: 4,
});

const DTYPE_SIZES: Readonly<Record<DType, number>> = Object.freeze({
  float32: 4,
  float64: 8,
  float16: 2,
  bfloat16: 2,
  int8: 1,
  uint8: 1,
  int32: 4,
  int64: 8,
});

/** Every dtype name, in code order. */
export const DTYPES: readonly DType[] = Object.freeze(Object.keys(DTYPE_CODES) as DType[]);

/** Every reduction operator name, in code order. */
export const REDUCE_OPS: readonly ReduceOpName[] = Object.freeze(Object.keys(REDUCE_OP_CODES) as ReduceOpName[]);

/** True when `value` is a dtype name. */
export function isDType(value: unknown): value is DType {
  return typeof value === 'string' && Object.prototype.hasOwnProperty.call(DTYPE_CODES, value);
}

/** True when `value` is a reduction operator name. */
export function isReduceOpName(value: unknown): value is ReduceOpName {
  return typeof value === 'string' && Object.prototype.hasOwnProperty.call(REDUCE_OP_CODES, value);
}

/**
 * Size of one element in bytes.
 * @throws {InvalidArgumentError} when `dtype` is not a {@link DType}.
 */
export function dtypeSize(dtype: DType): number {
  if (!isDType(dtype)) throw new InvalidArgumentError(`unknown dtype ${describe(dtype)}; expected one of ${DTYPES.join(', ')}`);
  return DTYPE_SIZES[dtype];
}

/** TypedArray class name -> the dtype it carries without a declaration. */
const NATURAL_DTYPES: Readonly<Record<string, DType>> = Object.freeze({
  Float32Array: 'float32',
  Float64Array: 'float64',
  Int8Array: 'int8',
  Uint8Array: 'uint8', // also a Node Buffer
  Int32Array: 'int32',
  BigInt64Array: 'int64',
  Float16Array: 'float16',
});

const ACCEPTED =
  'a Float32Array, Float64Array, Float16Array, Int8Array, Uint8Array (or Buffer), Int32Array, BigInt64Array, ' +
  "or a Uint16Array with { dtype: 'float16' | 'bfloat16' }";

/** The class name of a TypedArray or DataView (realm-independent), or undefined for anything else. */
function viewClassName(value: unknown): string | undefined {
  if (!ArrayBuffer.isView(value)) return undefined;
  // Symbol.toStringTag is the intrinsic name even for subclasses such as Buffer.
  const tag = (value as unknown as { [Symbol.toStringTag]?: string })[Symbol.toStringTag];
  return typeof tag === 'string' ? tag : 'DataView';
}

/** How an unexpected value reads in an error message. */
function describe(value: unknown): string {
  if (value === null) return 'null';
  if (value === undefined) return 'undefined';
  if (typeof value === 'string') return `'${value}'`;
  if (typeof value !== 'object' && typeof value !== 'function') return typeof value;
  const view = viewClassName(value);
  if (view) return view;
  if (Array.isArray(value)) return 'Array';
  const name = (value as { constructor?: { name?: string } }).constructor?.name;
  return name || 'object';
}

/**
 * The dtype an array carries: from its TypedArray class, or from `declared`
 * for the 16-bit floats held in a Uint16Array. A Node Buffer is `'uint8'`; a
 * Float16Array is `'float16'` where the runtime has one.
 *
 * @param array the user's array.
 * @param declared the `{ dtype }` option, if given; must agree with the array's class.
 * @param argName the argument's name, for messages (default `'array'`).
 * @returns the dtype.
 * @throws {InvalidArgumentError} for a value that is not an accepted TypedArray
 *   (DataView, Uint8ClampedArray, Int16Array, Uint32Array, BigUint64Array, ...),
 *   a Uint16Array without `declared` float16/bfloat16, an unknown `declared`,
 *   or a `declared` dtype that contradicts the array's class.
 */
export function dtypeOf(array: ArrayBufferView, declared?: DType, argName = 'array'): DType {
  if (declared !== undefined && !isDType(declared)) {
    throw new InvalidArgumentError(
      `unknown dtype ${describe(declared)} declared for \`${argName}\`; expected one of ${DTYPES.join(', ')}`,
    );
  }
  const className = viewClassName(array);
  if (className === 'Uint16Array') {
    if (declared === 'float16' || declared === 'bfloat16') return declared;
    throw new InvalidArgumentError(
      declared === undefined
        ? `a Uint16Array for \`${argName}\` needs { dtype: 'float16' } or { dtype: 'bfloat16' } to say which 16-bit float it holds`
        : `\`${argName}\` is a Uint16Array, which carries float16 or bfloat16, but dtype '${declared}' was declared`,
    );
  }
  const natural = className === undefined ? undefined : NATURAL_DTYPES[className];
  if (natural === undefined) {
    throw new InvalidArgumentError(`expected ${ACCEPTED} for \`${argName}\`, got ${describe(array)}`);
  }
  if (declared !== undefined && declared !== natural) {
    throw new InvalidArgumentError(
      `\`${argName}\` is a ${className} (${natural}) but dtype '${declared}' was declared; ` +
        (declared === 'float16' || declared === 'bfloat16' ? 'pass 16-bit floats in a Uint16Array' : `pass a matching array`),
    );
  }
  return natural;
}

// ---------------------------------------------------------------------------
// bfloat16 / float16 conversions

// One scratch word for bit casts between float32 and uint32.
const scratchF32 = new Float32Array(1);
const scratchU32 = new Uint32Array(scratchF32.buffer);

function f32Bits(x: number): number {
  scratchF32[0] = x;
  return scratchU32[0]!;
}
function f32FromBits(bits: number): number {
  scratchU32[0] = bits;
  return scratchF32[0]!;
}

/** float32 bits -> bfloat16 bits: round to nearest-even; a NaN is quieted and keeps its top payload. */
function bf16FromF32Bits(u: number): number {
  if ((u & 0x7fffffff) >>> 0 > 0x7f800000) return ((u >>> 16) | 0x40) & 0xffff;
  return ((u + 0x7fff + ((u >>> 16) & 1)) >>> 16) & 0xffff;
}

/** float32 bits -> float16 bits: round to nearest-even, overflow to infinity, NaN quieted. */
function f16FromF32Bits(u: number): number {
  const sign = (u >>> 16) & 0x8000;
  const magnitude = u & 0x7fffffff;
  if (magnitude > 0x7f800000) return sign | 0x7e00 | ((magnitude >>> 13) & 0x3ff);
  // 65520 lies halfway between 65504 (the largest float16) and 65536: ties to even = infinity.
  if (magnitude >= 0x477ff000) return sign | 0x7c00;
  if (magnitude >= 0x38800000) {
    const rebased = magnitude - 0x38000000; // exponent bias 127 -> 15
    return sign | ((rebased + 0xfff + ((rebased >>> 13) & 1)) >>> 13);
  }
  // Subnormal float16 (or zero): count units of 2^-24, rounding half to even.
  const exponent = magnitude >>> 23;
  const shift = 126 - exponent; // >= 14 here
  if (shift > 24) return sign;
  const mantissa = (magnitude & 0x7fffff) | 0x800000;
  let units = mantissa >>> shift;
  const rest = mantissa & ((1 << shift) - 1);
  const half = 1 << (shift - 1);
  if (rest > half || (rest === half && (units & 1) === 1)) units += 1;
  return sign | units;
}

/** float16 bits -> float32 bits (exact; a NaN is quieted). */
function f32BitsFromF16(h: number): number {
  const sign = (h & 0x8000) << 16;
  const exponent = (h >>> 10) & 0x1f;
  const mantissa = h & 0x3ff;
  if (exponent === 0x1f) return (sign | 0x7f800000 | (mantissa << 13) | (mantissa ? 0x400000 : 0)) >>> 0;
  if (exponent === 0) return (sign | f32Bits(mantissa * 2 ** -24)) >>> 0;
  return (sign | ((exponent + 112) << 23) | (mantissa << 13)) >>> 0;
}

/** bfloat16 bits -> float32 bits (exact; a NaN is quieted). */
function f32BitsFromBf16(h: number): number {
  const bits = (h & 0xffff) << 16;
  return ((h & 0x7fff) > 0x7f80 ? bits | 0x400000 : bits) >>> 0;
}

/**
 * Round a double to a binary float with `significandBits` explicit bits and
 * least normal exponent `minExponent`, to nearest-even, straight from the
 * double (rounding to float32 first could round twice). Returns the rounded
 * magnitude as a double; the caller maps overflow to infinity.
 */
function roundMagnitude(magnitude: number, significandBits: number, minExponent: number): number {
  let exponent = Math.floor(Math.log2(magnitude));
  // log2 may be off by one near powers of two; settle it exactly.
  if (2 ** exponent > magnitude) exponent -= 1;
  else if (2 ** (exponent + 1) <= magnitude) exponent += 1;
  if (exponent < minExponent) exponent = minExponent;
  const quantum = 2 ** (exponent - significandBits);
  const units = magnitude / quantum; // exact: scaling by a power of two
  let whole = Math.floor(units);
  const fraction = units - whole;
  if (fraction > 0.5 || (fraction === 0.5 && whole % 2 === 1)) whole += 1;
  return whole * quantum;
}

/**
 * The bfloat16 bit pattern nearest to `x` (round to nearest-even, from the
 * full double). NaN gives the quiet NaN 0x7fc0; overflow gives infinity.
 * @param x any number.
 * @returns a 16-bit unsigned integer.
 */
export function toBfloat16Bits(x: number): number {
  if (Number.isNaN(x)) return 0x7fc0;
  const sign = x < 0 || Object.is(x, -0) ? 0x8000 : 0;
  const magnitude = Math.abs(x);
  if (magnitude === 0) return sign;
  if (magnitude === Infinity) return sign | 0x7f80;
  const rounded = roundMagnitude(magnitude, 7, -126);
  if (rounded >= 2 ** 128) return sign | 0x7f80;
  return sign | (f32Bits(rounded) >>> 16); // exact in float32
}

/**
 * The number a bfloat16 bit pattern holds (exact).
 * @param bits a 16-bit pattern (higher bits are ignored).
 */
export function fromBfloat16Bits(bits: number): number {
  return f32FromBits(f32BitsFromBf16(bits));
}

/**
 * The float16 (IEEE binary16) bit pattern nearest to `x` (round to
 * nearest-even, from the full double). Values of magnitude 65520 and above
 * become infinity; tiny values become subnormals or ±0. NaN gives 0x7e00.
 * @param x any number.
 * @returns a 16-bit unsigned integer.
 */
export function toFloat16Bits(x: number): number {
  if (Number.isNaN(x)) return 0x7e00;
  const sign = x < 0 || Object.is(x, -0) ? 0x8000 : 0;
  const magnitude = Math.abs(x);
  if (magnitude === 0) return sign;
  if (magnitude === Infinity) return sign | 0x7c00;
  const rounded = roundMagnitude(magnitude, 10, -14);
  if (rounded > 65504) return sign | 0x7c00;
  return sign | f16FromF32Bits(f32Bits(rounded)); // exact: `rounded` is a float16 value
}

/**
 * The number a float16 bit pattern holds (exact).
 * @param bits a 16-bit pattern (higher bits are ignored).
 */
export function fromFloat16Bits(bits: number): number {
  return f32FromBits(f32BitsFromF16(bits & 0xffff));
}

/** A Uint16Array output of `length` elements: `out` if given and the right size, else a new one. */
function uint16Out(out: Uint16Array | undefined, length: number, fn: string): Uint16Array {
  if (out === undefined) return new Uint16Array(length);
  if (viewClassName(out) !== 'Uint16Array') {
    throw new InvalidArgumentError(`expected a Uint16Array for \`out\` of ${fn}(), got ${describe(out)}`);
  }
  if (out.length !== length) {
    throw new InvalidArgumentError(`\`out\` of ${fn}() has ${out.length} elements, \`src\` has ${length}`);
  }
  return out;
}

/** A Float32Array output of `length` elements: `out` if given and the right size, else a new one. */
function float32Out(out: Float32Array | undefined, length: number, fn: string): Float32Array {
  if (out === undefined) return new Float32Array(length);
  if (viewClassName(out) !== 'Float32Array') {
    throw new InvalidArgumentError(`expected a Float32Array for \`out\` of ${fn}(), got ${describe(out)}`);
  }
  if (out.length !== length) {
    throw new InvalidArgumentError(`\`out\` of ${fn}() has ${out.length} elements, \`src\` has ${length}`);
  }
  return out;
}

function narrowFloats(
  src: Float32Array | readonly number[],
  out: Uint16Array | undefined,
  fn: string,
  fromF32Bits: (bits: number) => number,
  fromNumber: (x: number) => number,
): Uint16Array {
  const className = viewClassName(src);
  if (className === 'Float32Array') {
    const f32 = src as Float32Array;
    const result = uint16Out(out, f32.length, fn);
    // Read the float32 bits directly: NaN payloads survive and nothing rounds twice.
    const bits = new Uint32Array(f32.buffer, f32.byteOffset, f32.length);
    for (let i = 0; i < bits.length; i++) result[i] = fromF32Bits(bits[i]!);
    return result;
  }
  if (!Array.isArray(src)) {
    throw new InvalidArgumentError(`expected a Float32Array or an array of numbers for \`src\` of ${fn}(), got ${describe(src)}`);
  }
  const result = uint16Out(out, src.length, fn);
  for (let i = 0; i < src.length; i++) {
    const x = src[i];
    if (typeof x !== 'number') {
      throw new InvalidArgumentError(`\`src[${i}]\` of ${fn}() is ${describe(x)}, expected a number`);
    }
    result[i] = fromNumber(x);
  }
  return result;
}

function widenFloats(src: Uint16Array, out: Float32Array | undefined, fn: string, toF32Bits: (h: number) => number): Float32Array {
  if (viewClassName(src) !== 'Uint16Array') {
    throw new InvalidArgumentError(`expected a Uint16Array for \`src\` of ${fn}(), got ${describe(src)}`);
  }
  const result = float32Out(out, src.length, fn);
  const bits = new Uint32Array(result.buffer, result.byteOffset, result.length);
  for (let i = 0; i < src.length; i++) bits[i] = toF32Bits(src[i]!);
  return result;
}

/**
 * Convert float32 values to bfloat16 bit patterns (round to nearest-even;
 * NaN stays a quiet NaN with its top payload bits; overflow to infinity).
 * Plain numbers are rounded straight from the double.
 *
 * @param src the values.
 * @param out where to write (default: a new Uint16Array); must have `src.length` elements.
 * @returns `out`, or the new array.
 * @throws {InvalidArgumentError} for a `src` or `out` of the wrong type or length.
 */
export function float32ToBfloat16(src: Float32Array | readonly number[], out?: Uint16Array): Uint16Array {
  return narrowFloats(src, out, 'float32ToBfloat16', bf16FromF32Bits, toBfloat16Bits);
}

/**
 * Convert bfloat16 bit patterns to float32 values (exact; NaNs come out quiet).
 *
 * @param src bfloat16 bit patterns.
 * @param out where to write (default: a new Float32Array); must have `src.length` elements.
 * @returns `out`, or the new array.
 * @throws {InvalidArgumentError} for a `src` or `out` of the wrong type or length.
 */
export function bfloat16ToFloat32(src: Uint16Array, out?: Float32Array): Float32Array {
  return widenFloats(src, out, 'bfloat16ToFloat32', f32BitsFromBf16);
}

/**
 * Convert float32 values to float16 bit patterns (round to nearest-even;
 * magnitudes of 65520 and above become infinity; subnormals are exact or
 * rounded; NaN stays a quiet NaN with its top payload bits). Plain numbers
 * are rounded straight from the double.
 *
 * @param src the values.
 * @param out where to write (default: a new Uint16Array); must have `src.length` elements.
 * @returns `out`, or the new array.
 * @throws {InvalidArgumentError} for a `src` or `out` of the wrong type or length.
 */
export function float32ToFloat16(src: Float32Array | readonly number[], out?: Uint16Array): Uint16Array {
  return narrowFloats(src, out, 'float32ToFloat16', f16FromF32Bits, toFloat16Bits);
}

/**
 * Convert float16 bit patterns to float32 values (exact; NaNs come out quiet).
 *
 * @param src float16 bit patterns.
 * @param out where to write (default: a new Float32Array); must have `src.length` elements.
 * @returns `out`, or the new array.
 * @throws {InvalidArgumentError} for a `src` or `out` of the wrong type or length.
 */
export function float16ToFloat32(src: Uint16Array, out?: Float32Array): Float32Array {
  return widenFloats(src, out, 'float16ToFloat32', f32BitsFromF16);
}
