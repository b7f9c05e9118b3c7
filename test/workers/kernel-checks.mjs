// The embedded CUDA kernels against the CPU reference (lib/dtype.ts), bit for
// bit: every DeviceArray.convertFrom pair at awkward sizes with NaN, infinity,
// subnormals and rounding ties, scaled and not, on views; 8-byte fills. Prints
// one JSON line { checks, failures }. Run by test/kernels.test.ts through the
// CUDA double and by scripts/gpu-kernels-check.mjs on a real GPU.
//
//   node test/workers/kernel-checks.mjs [--sizes 0,1,7,1023,65537]
import { DeviceArray, float32ToBfloat16, float32ToFloat16, bfloat16ToFloat32, float16ToFloat32 } from '../../dist/index.js';

const args = process.argv.slice(2);
const sizeArg = args.indexOf('--sizes');
const SIZES = sizeArg >= 0 ? args[sizeArg + 1].split(',').map(Number) : [0, 1, 7, 1023, 65537];

const f32 = (bits) => new Float32Array(new Uint32Array([bits]).buffer)[0];
/** float32 inputs that exercise every rounding path of the casts. */
const SPECIAL = [
  0, -0, 1, -1, 0.1, 65504, 65519.996, 65520, -65520, 1e38, 3.4028234663852886e38, Infinity, -Infinity, NaN,
  f32(0x7fa00001), f32(0xffc12345), f32(0x7f800001), // NaNs: signaling, negative quiet, tiny payload
  f32(0x00000001), f32(0x807fffff), f32(0x00400000), 2 ** -24, 2 ** -25, 3 * 2 ** -25, 2 ** -14, 2 ** -15 * 1.5, 6.1e-5,
  f32(0x3f808000), f32(0x3f818000), f32(0x3f808001), f32(0x3f817fff), // bf16 ties: to even (down, up), and just off
  1 + 2 ** -11, 1 + 3 * 2 ** -11, 1 + 2 ** -11 + 2 ** -20, 2049, 2051, // fp16 ties
];
/** bfloat16/float16 bit patterns worth widening: all of them below 2^16 are cheap, so every pattern. */
const ALL16 = Uint16Array.from({ length: 65536 }, (_, i) => i);

function inputs(n, seed) {
  const a = new Float32Array(n);
  let s = seed >>> 0;
  for (let i = 0; i < n; i++) {
    if (i < SPECIAL.length && n >= 7) { a[i] = SPECIAL[(i + seed) % SPECIAL.length]; continue; }
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    // Random bit patterns: every exponent, NaNs and subnormals included.
    a[i] = f32(s);
  }
  return a;
}
const bitsOf32 = (a) => new Uint32Array(a.buffer, a.byteOffset, a.length);

let checks = 0;
const failures = [];
function compare(what, got, want) {
  checks++;
  // float32 compared as bits (NaN payloads, -0); float64 fills hold no NaN.
  const g = got instanceof Float32Array ? bitsOf32(got) : got;
  const w = want instanceof Float32Array ? bitsOf32(want) : want;
  if (g.length !== w.length) { failures.push({ what, error: `length ${g.length} != ${w.length}` }); return; }
  for (let i = 0; i < g.length; i++) {
    if (g[i] !== w[i]) {
      failures.push({ what, index: i, got: g[i].toString(16), want: w[i].toString(16) });
      return;
    }
  }
}
const scaleHost = (a, scale) => a.map((x) => (Number.isNaN(x) || scale === 1 ? x : Math.fround(x * scale)));
function keepNaNBits(src, out) {
  // Float32Array.map may canonicalise NaNs; restore the source bits for NaN lanes.
  const s = bitsOf32(src), o = bitsOf32(out);
  for (let i = 0; i < src.length; i++) if (Number.isNaN(src[i])) o[i] = s[i];
  return out;
}

// Above this size (the GPU script's 16777259, past one launch's 65535 x 256
// threads) one scale is enough: the CPU reference is the slow part.
const LARGE = 1 << 20;

for (const n of SIZES) {
  const host = inputs(n, n + 3);
  const src = await DeviceArray.fromHost(host);
  for (const scale of n > LARGE ? [1 / 3] : [1, 0.5, 1 / 3]) {
    const s32 = Math.fround(scale);
    const scaledHost = keepNaNBits(host, scaleHost(host, s32));
    for (const [dtype, narrow] of [['bfloat16', float32ToBfloat16], ['float16', float32ToFloat16]]) {
      const dst = DeviceArray.alloc(dtype, n);
      await dst.convertFrom(src, { scale });
      const narrowed = await dst.toHost();
      compare(`float32>${dtype} n=${n} scale=${scale}`, narrowed, narrow(scaledHost));
      const back = DeviceArray.alloc('float32', n);
      await back.convertFrom(dst, { scale });
      const widen = dtype === 'bfloat16' ? bfloat16ToFloat32 : float16ToFloat32;
      const wide = widen(narrowed);
      compare(`${dtype}>float32 n=${n} scale=${scale}`, await back.toHost(), keepNaNBits(wide, scaleHost(wide, s32)));
      dst.dispose(); back.dispose();
    }
    const copy = DeviceArray.alloc('float32', n);
    await copy.convertFrom(src, { scale });
    compare(`float32>float32 n=${n} scale=${scale}`, await copy.toHost(), scaledHost);
    copy.dispose();
  }
  // A view in the middle of a larger allocation, converted in place (float32 scale) and into a view.
  if (n >= 7 && n <= LARGE) {
    const big = await DeviceArray.fromHost(new Float32Array(n + 10).fill(7));
    const view = big.view(5, n);
    await view.copyFromDevice(src);
    await view.convertFrom(view, { scale: 0.25 });
    const all = await big.toHost();
    compare(`float32>float32 in place on a view n=${n}`, all.subarray(5, 5 + n), keepNaNBits(host, scaleHost(host, 0.25)));
    compare(`view edges untouched n=${n}`, Array.from(all.subarray(0, 5)).concat(Array.from(all.subarray(5 + n))), new Array(10).fill(7));
    const wire = await DeviceArray.fromHost(new Uint16Array(n + 4).fill(0xabcd), { dtype: 'bfloat16' });
    await wire.view(2, n).convertFrom(src);
    const w = await wire.toHost();
    compare(`float32>bfloat16 into a view n=${n}`, w.subarray(2, 2 + n), float32ToBfloat16(host));
    compare(`bfloat16 view edges n=${n}`, [w[0], w[1], w[n + 2], w[n + 3]], [0xabcd, 0xabcd, 0xabcd, 0xabcd]);
    big.dispose(); wire.dispose();
  }
  src.dispose();
}

// Every 16-bit pattern widened (scale 1 and 3), on device vs host.
for (const [dtype, widen] of [['bfloat16', bfloat16ToFloat32], ['float16', float16ToFloat32]]) {
  const d = await DeviceArray.fromHost(ALL16, { dtype });
  for (const scale of [1, 3]) {
    const out = DeviceArray.alloc('float32', ALL16.length);
    await out.convertFrom(d, { scale });
    const wide = widen(ALL16);
    compare(`${dtype}>float32 every bit pattern scale=${scale}`, await out.toHost(), keepNaNBits(wide, scaleHost(wide, scale)));
    out.dispose();
  }
  d.dispose();
}

// 8-byte fills: float64 and int64, whole arrays and views, awkward sizes.
for (const n of SIZES) {
  const d = await DeviceArray.fromHost(new Float64Array(n).fill(1.5));
  await d.fill(-0.1);
  compare(`float64 fill n=${n}`, await d.toHost(), new Float64Array(n).fill(-0.1));
  if (n >= 7) {
    await d.view(2, n - 4).fill(Number.MAX_VALUE);
    const want = new Float64Array(n).fill(-0.1);
    want.fill(Number.MAX_VALUE, 2, n - 2);
    compare(`float64 fill of a view n=${n}`, await d.toHost(), want);
  }
  const q = DeviceArray.alloc('int64', n);
  await q.fill(-0x123456789abcdefn);
  compare(`int64 fill n=${n}`, await q.toHost(), new BigInt64Array(n).fill(-0x123456789abcdefn));
  d.dispose(); q.dispose();
}

console.log(JSON.stringify({ checks, failures }));
