// Fill for 8-byte elements (float64, int64, uint64): the driver's memsets stop
// at 32 bits (cuMemsetD32), and a 64-bit pattern is not two 32-bit ones
// repeated. (dst, count, bits); grid-stride, like the casts.
#include <stdint.h>

extern "C" __global__ void ringtree_fill_u64(uint64_t* dst, uint64_t count, uint64_t bits) {
  for (uint64_t i = blockIdx.x * uint64_t(blockDim.x) + threadIdx.x; i < count; i += uint64_t(gridDim.x) * blockDim.x) {
    dst[i] = bits;
  }
}
