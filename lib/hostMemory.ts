/**
 * Host arrays made for collectives: {@link allocHost}.
 *
 * @module
 */
import { loadBinding } from './binding.js';
import { newHost, type HostTypedArray } from './device.js';
import { BackendUnavailableError, InvalidArgumentError } from './errors.js';
import { DTYPES, dtypeSize, type DType } from './dtype.js';

/**
 * A zero-filled host array of `length` elements of `dtype`, on memory of its
 * own that is aligned to 2 MiB and advised for Linux's transparent huge pages
 * (`madvise` MADV_HUGEPAGE): what MPI_Alloc_mem and ncclMemAlloc are to their
 * libraries. Every page of it, from the first byte, can be a 2 MiB page, so
 * streams over it miss the TLB far less and a peer's cross-memory read pins
 * 512x fewer pages (docs/PERFORMANCE.md, "Huge pages"). The CPU engine moves
 * arrays of 4 MiB or more onto huge pages by itself ({@link InitOptions.hugePages});
 * this also covers smaller arrays, and views of any size into a large one.
 *
 * The memory is rounded up to whole 2 MiB pages (so allocate few, large
 * arrays and take views) and returned to the system when the array is
 * garbage-collected. Where transparent huge pages are off, it is ordinary memory.
 *
 * @param dtype element type; 16-bit floats come as a Uint16Array of bits.
 * @param length number of elements (an integer >= 0).
 * @returns a Float32Array, Float64Array, Int8Array, Uint8Array, Int32Array, BigInt64Array or Uint16Array.
 * @throws {InvalidArgumentError} for an unknown dtype or a bad length, naming it.
 * @throws {BackendUnavailableError} when the addon cannot be loaded or lacks allocHost.
 */
export function allocHost(dtype: DType, length: number): HostTypedArray {
  if (!(DTYPES as readonly string[]).includes(dtype as string)) {
    throw new InvalidArgumentError(`allocHost: \`dtype\` must be one of ${DTYPES.join(', ')}, got ${String(dtype)}`, { op: 'allocHost' });
  }
  if (!Number.isSafeInteger(length) || length < 0) {
    throw new InvalidArgumentError(`allocHost: \`length\` must be an integer >= 0, got ${String(length)}`, { op: 'allocHost' });
  }
  const binding = loadBinding();
  if (typeof binding.allocHost !== 'function') {
    throw new BackendUnavailableError('allocHost: this build of the addon has no allocHost', {
      op: 'allocHost', remedy: 'Rebuild the addon (npm run build:native).',
    });
  }
  const buffer = binding.allocHost(length * dtypeSize(dtype));
  const like = newHost(dtype, 0);
  const View = like.constructor as new (b: ArrayBuffer, offset: number, length: number) => HostTypedArray;
  return new View(buffer, 0, length);
}
