import { describe, it, expect } from 'vitest';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  DTYPE_CODES,
  REDUCE_OP_CODES,
  dtypeSize,
  dtypeOf,
  float32ToBfloat16,
  bfloat16ToFloat32,
  float32ToFloat16,
  float16ToFloat32,
  toBfloat16Bits,
  fromBfloat16Bits,
  toFloat16Bits,
  fromFloat16Bits,
  type DType,
} from '../lib/dtype.js';
import { InvalidArgumentError } from '../lib/errors.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

function bitsOfF32(x: number): number {
  return new Uint32Array(new Float32Array([x]).buffer)[0]!;
}

describe('dtype codes', () => {
  it('match the enums in native/core/dtype.h', () => {
    const header = readFileSync(path.join(root, 'native/core/dtype.h'), 'utf8');
    const enumValues = (name: string): Record<string, number> => {
      const body = new RegExp(`enum class ${name}[^{]*\\{([^}]*)\\}`).exec(header)![1]!;
      const out: Record<string, number> = {};
      for (const m of body.matchAll(/(\w+)\s*=\s*(\d+)/g)) out[m[1]!.toLowerCase()] = Number(m[2]);
      return out;
    };
    expect(enumValues('DType')).toEqual(DTYPE_CODES);
    expect(enumValues('ReduceOp')).toEqual(REDUCE_OP_CODES);
  });

  it('gives element sizes in bytes and rejects unknown names', () => {
    expect([dtypeSize('float32'), dtypeSize('float64'), dtypeSize('float16'), dtypeSize('bfloat16')]).toEqual([4, 8, 2, 2]);
    expect([dtypeSize('int8'), dtypeSize('uint8'), dtypeSize('int32'), dtypeSize('int64')]).toEqual([1, 1, 4, 8]);
    expect(() => dtypeSize('int16' as DType)).toThrow(InvalidArgumentError);
  });
});

describe('dtypeOf', () => {
  it('derives the dtype from the TypedArray class', () => {
    expect(dtypeOf(new Float32Array(1))).toBe('float32');
    expect(dtypeOf(new Float64Array(1))).toBe('float64');
    expect(dtypeOf(new Int8Array(1))).toBe('int8');
    expect(dtypeOf(new Uint8Array(1))).toBe('uint8');
    expect(dtypeOf(Buffer.alloc(4))).toBe('uint8');
    expect(dtypeOf(new Int32Array(1))).toBe('int32');
    expect(dtypeOf(new BigInt64Array(1))).toBe('int64');
  });

  it('accepts a matching declared dtype', () => {
    expect(dtypeOf(new Float32Array(1), 'float32')).toBe('float32');
    expect(dtypeOf(new BigInt64Array(1), 'int64')).toBe('int64');
  });

  it('takes 16-bit floats in a Uint16Array only with a declared dtype', () => {
    expect(dtypeOf(new Uint16Array(1), 'float16')).toBe('float16');
    expect(dtypeOf(new Uint16Array(1), 'bfloat16')).toBe('bfloat16');
    expect(() => dtypeOf(new Uint16Array(1), undefined, 'x')).toThrow(/Uint16Array for `x` needs \{ dtype: 'float16' \}/);
    expect(() => dtypeOf(new Uint16Array(1), 'int32', 'x')).toThrow(InvalidArgumentError);
  });

  const F16 = (globalThis as { Float16Array?: new (n: number) => ArrayBufferView }).Float16Array;
  it.skipIf(F16 === undefined)('maps a Float16Array to float16 (runtime has Float16Array)', () => {
    expect(dtypeOf(new F16!(2))).toBe('float16');
    expect(() => dtypeOf(new F16!(2), 'bfloat16')).toThrow(InvalidArgumentError);
  });

  it.each([
    ['Int16Array', new Int16Array(1)],
    ['Uint32Array', new Uint32Array(1)],
    ['Uint8ClampedArray', new Uint8ClampedArray(1)],
    ['BigUint64Array', new BigUint64Array(1)],
    ['DataView', new DataView(new ArrayBuffer(4))],
  ])('rejects a %s, naming the argument and the type', (name, array) => {
    let caught: unknown;
    try {
      dtypeOf(array as ArrayBufferView, undefined, 'x');
    } catch (err) {
      caught = err;
    }
    expect(caught).toBeInstanceOf(InvalidArgumentError);
    expect((caught as InvalidArgumentError).code).toBe('ERR_RINGTREE_INVALID_ARGUMENT');
    expect((caught as Error).message).toMatch(new RegExp(`expected a Float32Array, Float64Array.* for \`x\`, got ${name}`));
  });

  it('rejects non-views and contradicting or unknown declarations', () => {
    expect(() => dtypeOf([1, 2] as unknown as ArrayBufferView, undefined, 'x')).toThrow(/for `x`, got Array/);
    expect(() => dtypeOf(null as unknown as ArrayBufferView, undefined, 'x')).toThrow(/got null/);
    expect(() => dtypeOf(new Float32Array(1), 'float64', 'x')).toThrow(/`x` is a Float32Array \(float32\) but dtype 'float64'/);
    expect(() => dtypeOf(new Float32Array(1), 'bfloat16', 'x')).toThrow(/Uint16Array/);
    expect(() => dtypeOf(new Float32Array(1), 'float8' as DType, 'x')).toThrow(/unknown dtype 'float8' declared for `x`/);
  });
});

describe('bfloat16 conversion', () => {
  it('rounds to nearest, ties to even', () => {
    // 1 + 2^-8 is halfway between 1 and 1 + 2^-7: ties to the even (1).
    expect(toBfloat16Bits(1 + 2 ** -8)).toBe(0x3f80);
    // 1 + 3*2^-8 is halfway between 1+2^-7 (odd) and 1+2^-6: ties up.
    expect(toBfloat16Bits(1 + 3 * 2 ** -8)).toBe(0x3f82);
    expect(toBfloat16Bits(1 + 2 ** -8 + 2 ** -20)).toBe(0x3f81);
    expect(float32ToBfloat16(new Float32Array([1 + 2 ** -8, 1 + 3 * 2 ** -8]))).toEqual(new Uint16Array([0x3f80, 0x3f82]));
  });

  it('keeps infinities, signed zeros, NaN and subnormals; overflows to infinity', () => {
    expect(toBfloat16Bits(Infinity)).toBe(0x7f80);
    expect(toBfloat16Bits(-Infinity)).toBe(0xff80);
    expect(toBfloat16Bits(0)).toBe(0);
    expect(toBfloat16Bits(-0)).toBe(0x8000);
    expect(toBfloat16Bits(NaN)).toBe(0x7fc0);
    expect(toBfloat16Bits(2 ** -133)).toBe(0x0001); // smallest bfloat16 subnormal
    expect(toBfloat16Bits(3.5e38)).toBe(0x7f80);
    expect(Object.is(fromBfloat16Bits(0x8000), -0)).toBe(true);
    expect(fromBfloat16Bits(0x3f80)).toBe(1);
    expect(fromBfloat16Bits(0x0001)).toBe(2 ** -133);
    // A signaling NaN pattern comes out NaN, quiet.
    const widened = bfloat16ToFloat32(new Uint16Array([0x7f81, 0xff81]));
    const bits = new Uint32Array(widened.buffer);
    expect([bits[0], bits[1]]).toEqual([0x7fc10000, 0xffc10000]);
    // A float32 NaN keeps sign and top payload and is quieted.
    const nan = new Float32Array(new Uint32Array([0xff812345]).buffer);
    expect(float32ToBfloat16(nan)[0]).toBe(0xffc1);
  });

  it('round-trips every bfloat16 pattern (NaNs as quiet NaNs)', () => {
    const all = new Uint16Array(65536).map((_, i) => i);
    const back = float32ToBfloat16(bfloat16ToFloat32(all));
    for (let h = 0; h < 65536; h++) {
      const isNaN = (h & 0x7fff) > 0x7f80;
      if (back[h] !== (isNaN ? h | 0x40 : h)) expect.fail(`0x${h.toString(16)} came back as 0x${back[h]!.toString(16)}`);
    }
  });

  it('agrees between the float32-bits path and the double path on random float32 values', () => {
    const src = new Float32Array(new Uint32Array(20000).map(() => (Math.random() * 2 ** 32) >>> 0).buffer);
    const viaBits = float32ToBfloat16(src);
    for (let i = 0; i < src.length; i++) {
      if (Number.isNaN(src[i]!)) continue;
      if (toBfloat16Bits(src[i]!) !== viaBits[i]) expect.fail(`0x${bitsOfF32(src[i]!).toString(16)}`);
    }
  });
});

describe('float16 conversion', () => {
  it('rounds to nearest, ties to even, and overflows to infinity', () => {
    expect(toFloat16Bits(1)).toBe(0x3c00);
    expect(toFloat16Bits(1 + 2 ** -11)).toBe(0x3c00); // tie -> even
    expect(toFloat16Bits(1 + 3 * 2 ** -11)).toBe(0x3c02); // tie -> even (up)
    expect(toFloat16Bits(65504)).toBe(0x7bff);
    expect(toFloat16Bits(65519.99)).toBe(0x7bff);
    expect(toFloat16Bits(65520)).toBe(0x7c00); // tie between 65504 and 65536 -> infinity
    expect(toFloat16Bits(-1e6)).toBe(0xfc00);
    expect(float32ToFloat16(new Float32Array([65520, 65519, 1e9, -Infinity]))).toEqual(new Uint16Array([0x7c00, 0x7bff, 0x7c00, 0xfc00]));
  });

  it('handles subnormals, signed zeros and NaN', () => {
    expect(toFloat16Bits(2 ** -24)).toBe(0x0001);
    expect(toFloat16Bits(2 ** -25)).toBe(0x0000); // tie -> even (0)
    expect(toFloat16Bits(3 * 2 ** -25)).toBe(0x0002); // tie -> even (2)
    expect(toFloat16Bits(2 ** -25 + 2 ** -40)).toBe(0x0001);
    expect(toFloat16Bits(-(2 ** -14))).toBe(0x8400);
    expect(toFloat16Bits(-0)).toBe(0x8000);
    expect(toFloat16Bits(NaN)).toBe(0x7e00);
    expect(fromFloat16Bits(0x0001)).toBe(2 ** -24);
    expect(fromFloat16Bits(0x03ff)).toBe(1023 * 2 ** -24);
    expect(fromFloat16Bits(0xfc00)).toBe(-Infinity);
    expect(Number.isNaN(fromFloat16Bits(0x7c01))).toBe(true);
    const bits = new Uint32Array(float16ToFloat32(new Uint16Array([0x7c01, 0xfe00])).buffer);
    expect([bits[0], bits[1]]).toEqual([0x7fc02000, 0xffc00000]);
    expect(float32ToFloat16(new Float32Array(new Uint32Array([0x7f812000]).buffer))[0]).toBe(0x7e09);
  });

  it('round-trips every float16 pattern (NaNs as quiet NaNs) and matches fromFloat16Bits', () => {
    const all = new Uint16Array(65536).map((_, i) => i);
    const widened = float16ToFloat32(all);
    const back = float32ToFloat16(widened);
    for (let h = 0; h < 65536; h++) {
      const isNaN = (h & 0x7fff) > 0x7c00;
      if (back[h] !== (isNaN ? h | 0x200 : h)) expect.fail(`0x${h.toString(16)} came back as 0x${back[h]!.toString(16)}`);
      if (!isNaN && !Object.is(widened[h], fromFloat16Bits(h))) expect.fail(`fromFloat16Bits(0x${h.toString(16)})`);
    }
  });

  it('agrees between the float32-bits path and the double path on random float32 values', () => {
    const words = new Uint32Array(40000).map(() => (Math.random() * 2 ** 32) >>> 0);
    // Half of them in and near float16's range, where the rounding is interesting.
    for (let i = 0; i < words.length; i += 2) words[i] = (0x33000000 + Math.random() * 0x15000000) | (Math.random() < 0.5 ? 0x80000000 : 0);
    const src = new Float32Array(words.buffer);
    const viaBits = float32ToFloat16(src);
    for (let i = 0; i < src.length; i++) {
      if (Number.isNaN(src[i]!)) continue;
      if (toFloat16Bits(src[i]!) !== viaBits[i]) expect.fail(`0x${words[i]!.toString(16)}: ${toFloat16Bits(src[i]!)} vs ${viaBits[i]}`);
    }
  });

  const f16round = (Math as { f16round?: (x: number) => number }).f16round;
  it.skipIf(f16round === undefined)('matches Math.f16round (runtime has it)', () => {
    for (let i = 0; i < 20000; i++) {
      const x = (Math.random() - 0.5) * 2 ** (Math.random() * 50 - 30);
      expect(fromFloat16Bits(toFloat16Bits(x))).toBe(f16round!(x));
    }
  });

  it('writes into `out` and rejects a wrong-sized or wrong-typed one', () => {
    const out = new Uint16Array(2);
    expect(float32ToFloat16([1, 2], out)).toBe(out);
    expect(Array.from(out)).toEqual([0x3c00, 0x4000]);
    expect(() => float32ToFloat16([1, 2, 3], out)).toThrow(/`out` of float32ToFloat16\(\) has 2 elements, `src` has 3/);
    expect(() => float16ToFloat32(out, new Float64Array(2) as unknown as Float32Array)).toThrow(InvalidArgumentError);
    expect(() => float32ToBfloat16(new Int32Array(2) as unknown as Float32Array)).toThrow(/got Int32Array/);
  });
});
