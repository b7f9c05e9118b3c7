/**
 * GEMM on DeviceArrays through cuBLASLt (native/cuda/DeviceGemm.cc): the
 * checks that name the argument, and the ordering with other operations on
 * the same arrays (the DeviceArray ordering tail, kept on each allocation's
 * root). Reached through {@link gemm}.
 *
 * @module
 * @internal
 */
import type { NativeDeviceGemmDescriptor, NativeFailureRecord } from './binding.js';
import { DEVICE_OP_TIMEOUT_MS, isDeviceArray, requireCublas, type DeviceArray } from './device.js';
import { DTYPE_CODES } from './dtype.js';
import { RingtreeError, errorFromNative } from './errors.js';
import type { GemmDType, GemmEpilogue, GemmOptions } from './gemm.js';
import { GEMM_DTYPES, checkGemmShape, describeValue, gemmFail, MAX_INT32 } from './gemmShape.js';

/** cublasLtEpilogue_t values (checked against cublasLt.h by test/abi/abiCheck.cc through native/cuda/CublasLtApi.h). */
export const EPILOGUE_CODES: Readonly<Record<GemmEpilogue, number>> = {
  bias: 4,
  relu: 2,
  gelu: 32,
  biasRelu: 6,
  biasGelu: 36,
  reluAux: 130,
  geluAux: 160,
  biasReluAux: 134,
  biasGeluAux: 164,
  dRelu: 136,
  dGelu: 192,
  dReluBgrad: 152,
  dGeluBgrad: 208,
};
const EPILOGUE_NONE = 1;

/** What an epilogue needs: a bias (read or written), an aux buffer, and whether aux is the ReLU bit mask. */
export function epilogueTraits(e: GemmEpilogue): { bias: boolean; aux: boolean; mask: boolean } {
  const code = EPILOGUE_CODES[e];
  return { bias: (code & (4 | 16)) !== 0, aux: (code & 128) !== 0, mask: (code & 128) !== 0 && (code & 2 || code & 8) !== 0 };
}

interface PreparedDeviceGemm {
  desc: NativeDeviceGemmDescriptor;
  bias: DeviceArray | null;
  aux: DeviceArray | null;
}

/** Device address range [start, end) of an array. */
function range(x: DeviceArray): [bigint, bigint] {
  const start = x.pointer;
  return [start, start + BigInt(x.byteLength)];
}

function overlap(x: DeviceArray, y: DeviceArray): boolean {
  if (x.byteLength === 0 || y.byteLength === 0) return false;
  const [xs, xe] = range(x);
  const [ys, ye] = range(y);
  return xs < ye && ys < xe;
}

const roundUp = (v: number, to: number): number => Math.ceil(v / to) * to;

function prepareDevice(a: DeviceArray, b: DeviceArray, c: DeviceArray, options: GemmOptions): PreparedDeviceGemm {
  if (typeof options !== 'object' || options === null) gemmFail('gemm(a, b, c, options): `options` must be an object with m, n and k');
  for (const [name, x] of [['a', a], ['b', b], ['c', c]] as const) {
    if (x.disposed) gemmFail(`\`${name}\` was disposed`);
    if (x.device !== a.device) gemmFail(`\`${name}\` is on GPU ${x.device} but \`a\` is on GPU ${a.device}: a device GEMM runs on one GPU`);
    if (!(GEMM_DTYPES as readonly string[]).includes(x.dtype)) gemmFail(`\`${name}\` holds ${x.dtype}; gemm computes in ${GEMM_DTYPES.join(', ')}`);
  }
  if (options.dtype !== undefined && !GEMM_DTYPES.includes(options.dtype)) {
    gemmFail(`\`dtype\` must be one of ${GEMM_DTYPES.join(', ')}, got ${describeValue(options.dtype)}`);
  }
  if (b.dtype !== a.dtype) gemmFail(`\`b\` holds ${b.dtype} but \`a\` holds ${a.dtype}: a, b and c must have one dtype`);
  if (c.dtype !== a.dtype) gemmFail(`\`c\` holds ${c.dtype} but \`a\` holds ${a.dtype}: a, b and c must have one dtype`);
  if (options.dtype !== undefined && options.dtype !== a.dtype) gemmFail(`\`dtype\` says ${options.dtype} but the DeviceArrays hold ${a.dtype}`);
  const dtype = a.dtype as GemmDType;
  if (options.tf32 !== undefined && typeof options.tf32 !== 'boolean') gemmFail(`\`tf32\` must be a boolean, got ${describeValue(options.tf32)}`);
  const tf32 = options.tf32 ?? false;
  if (tf32 && dtype !== 'float32') gemmFail(`\`tf32\` applies to float32 only; these arrays hold ${dtype}`);
  const shape = checkGemmShape(options, { a: a.length, b: b.length, c: c.length });
  // C is written while A and B are read by many thread blocks at once.
  if (overlap(c, a)) gemmFail('`c` overlaps `a` (they share device memory): C must not alias an input');
  if (overlap(c, b)) gemmFail('`c` overlaps `b` (they share device memory): C must not alias an input');

  const { epilogue } = options;
  let bias: DeviceArray | null = null;
  let aux: DeviceArray | null = null;
  let auxLd = 0;
  if (epilogue === undefined) {
    for (const name of ['bias', 'aux', 'auxLd'] as const) {
      if (options[name] !== undefined) gemmFail(`\`${name}\` is given but no \`epilogue\` uses it`);
    }
  } else {
    if (typeof epilogue !== 'string' || !Object.hasOwn(EPILOGUE_CODES, epilogue)) {
      gemmFail(`\`epilogue\` must be one of ${Object.keys(EPILOGUE_CODES).map((e) => `'${e}'`).join(', ')}, got ${describeValue(epilogue)}`);
    }
    if (dtype === 'float64') gemmFail(`\`epilogue\` '${epilogue}' needs float32, float16 or bfloat16 (cuBLASLt has no float64 epilogues)`);
    if (shape.batch > 1) gemmFail(`\`epilogue\` '${epilogue}' needs batch 1 (got ${shape.batch}): run the batch entries as separate GEMMs`);
    const traits = epilogueTraits(epilogue);
    if (traits.bias) {
      if (!isDeviceArray(options.bias)) gemmFail(`\`epilogue\` '${epilogue}' needs \`bias\`: a ${dtype} DeviceArray of n = ${shape.n} elements`);
      bias = options.bias;
      if (bias.disposed) gemmFail('`bias` was disposed');
      if (bias.device !== a.device) gemmFail(`\`bias\` is on GPU ${bias.device} but \`a\` is on GPU ${a.device}`);
      if (bias.dtype !== dtype) gemmFail(`\`bias\` holds ${bias.dtype} but c holds ${dtype}: the bias has c's dtype`);
      if (bias.length < shape.n) gemmFail(`\`bias\` has ${bias.length} elements but needs n = ${shape.n} (one per column of C)`);
      for (const [name, x] of [['a', a], ['b', b], ['c', c]] as const) {
        if (overlap(bias, x)) gemmFail(`\`bias\` overlaps \`${name}\``);
      }
    } else if (options.bias !== undefined) {
      gemmFail(`\`bias\` is given but \`epilogue\` '${epilogue}' takes none`);
    }
    if (traits.aux) {
      if (!isDeviceArray(options.aux)) {
        gemmFail(`\`epilogue\` '${epilogue}' needs \`aux\`: ${traits.mask ? "a 'uint8' DeviceArray (ReLU bit mask)" : `a ${dtype} DeviceArray (pre-activation)`}`);
      }
      aux = options.aux;
      const unit = traits.mask ? 128 : 8;
      auxLd = options.auxLd === undefined ? roundUp(shape.n, unit) : options.auxLd;
      if (typeof auxLd !== 'number' || !Number.isInteger(auxLd) || auxLd < 0 || auxLd > MAX_INT32) {
        gemmFail(`\`auxLd\` must be an integer in [0, ${MAX_INT32}], got ${describeValue(options.auxLd)}`);
      }
      if (auxLd < shape.n || auxLd % unit !== 0) {
        gemmFail(`\`auxLd\` (${auxLd}) must be a multiple of ${unit} and at least n = ${shape.n} (cuBLASLt's rule for the ${traits.mask ? 'ReLU mask, in bits' : 'GELU input, in elements'})`);
      }
      if (aux.disposed) gemmFail('`aux` was disposed');
      if (aux.device !== a.device) gemmFail(`\`aux\` is on GPU ${aux.device} but \`a\` is on GPU ${a.device}`);
      const wantType = traits.mask ? 'uint8' : dtype;
      if (aux.dtype !== wantType) gemmFail(`\`aux\` holds ${aux.dtype} but '${epilogue}' needs ${wantType}${traits.mask ? ' (a bit mask)' : " (c's dtype)"}`);
      const need = shape.m === 0 || shape.n === 0 ? 0 : traits.mask ? (shape.m * auxLd) / 8 : (shape.m - 1) * auxLd + shape.n;
      if (aux.length < need) {
        gemmFail(`\`aux\` has ${aux.length} elements but m = ${shape.m} rows with auxLd = ${auxLd}${traits.mask ? ' bits' : ''} need ${need}${traits.mask ? ' bytes' : ''}`);
      }
      if (aux.pointer % 16n !== 0n) gemmFail('`aux` must start at a 16-byte aligned device address (use a view at a multiple of 16 bytes)');
      for (const [name, x] of [['a', a], ['b', b], ['c', c], ['bias', bias]] as const) {
        if (x && overlap(aux, x)) gemmFail(`\`aux\` overlaps \`${name}\``);
      }
    } else if (options.aux !== undefined || options.auxLd !== undefined) {
      gemmFail(`\`${options.aux !== undefined ? 'aux' : 'auxLd'}\` is given but \`epilogue\` '${epilogue}' takes none`);
    }
  }
  return {
    desc: { dtype: DTYPE_CODES[dtype], ...shape, tf32, epilogue: epilogue === undefined ? EPILOGUE_NONE : EPILOGUE_CODES[epilogue], auxLd },
    bias,
    aux,
  };
}

type Start = (p: PreparedDeviceGemm, a: DeviceArray, b: DeviceArray, c: DeviceArray, done: (f: NativeFailureRecord | null, ms?: number) => void) => void;

/** Order after every pending op on the arrays (and their allocations), run, and make later ops wait. */
function submit(op: string, a: DeviceArray, b: DeviceArray, c: DeviceArray, options: GemmOptions, start: Start): Promise<void> {
  let prepared: PreparedDeviceGemm;
  try {
    prepared = prepareDevice(a, b, c, options);
    requireCublas(op);  // missing cuBLAS rejects now, before anything is queued
  } catch (err) {
    return Promise.reject(err);
  }
  const others = [a, b, prepared.bias, prepared.aux].filter((x): x is DeviceArray => x !== null);
  return c.enqueue(op, (_driver, done) => {
    try {
      start(prepared, a, b, c, done);
    } catch (err) {
      const e = err as Error & { nativeCode?: number; remedy?: string };
      throw err instanceof RingtreeError ? err : errorFromNative({ code: e.nativeCode ?? 7, message: e.message, remedy: e.remedy }, { op });
    }
  }, others.map((x) => x.tail), others);
}

/** {@link gemm} on DeviceArrays. @internal */
export function deviceGemm(a: DeviceArray, b: DeviceArray, c: DeviceArray, options: GemmOptions): Promise<void> {
  return submit('gemm', a, b, c, options, (p, a, b, c, done) => {
    requireCublas().deviceGemm(p.desc, a.buffer, a.byteOffset, b.buffer, b.byteOffset, c.buffer, c.byteOffset,
      p.bias?.buffer ?? null, p.bias?.byteOffset ?? 0, p.aux?.buffer ?? null, p.aux?.byteOffset ?? 0, DEVICE_OP_TIMEOUT_MS, done);
  });
}

/** gemmTimed: `iterations` GEMMs between two CUDA events; resolves with their GPU milliseconds. @internal */
export async function timedDeviceGemm(a: DeviceArray, b: DeviceArray, c: DeviceArray, options: GemmOptions, iterations: number): Promise<number> {
  if (!Number.isInteger(iterations) || iterations < 1) gemmFail(`\`iterations\` must be an integer >= 1, got ${describeValue(iterations)}`, 'gemmTimed');
  let ms = 0;
  await submit('gemmTimed', a, b, c, options, (p, a, b, c, done) => {
    requireCublas().deviceGemmTimed(p.desc, a.buffer, a.byteOffset, b.buffer, b.byteOffset, c.buffer, c.byteOffset,
      p.bias?.buffer ?? null, p.bias?.byteOffset ?? 0, p.aux?.buffer ?? null, p.aux?.byteOffset ?? 0, iterations,
      DEVICE_OP_TIMEOUT_MS, (f, elapsed) => {
        ms = elapsed;
        done(f);
      });
  });
  return ms;
}
