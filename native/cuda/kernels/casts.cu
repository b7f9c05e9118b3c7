// Element-wise float conversions for device arrays: float32 to bfloat16 or
// float16 and back, each with a scale factor applied in float32 (so DDP's
// "divide by the world size" fuses into the cast), and a scaled float32 copy.
//
// Rounding is done on the bits, not with the cuda_bf16/cuda_fp16 intrinsics,
// so the results equal lib/dtype.ts (float32ToBfloat16, float32ToFloat16,
// bfloat16ToFloat32, float16ToFloat32) bit for bit, NaN payloads included:
// round to nearest-even, overflow to infinity, subnormals kept (nvcc's
// default -ftz=false), NaNs quieted with their sign and top payload bits.
// The CI double (test/doubles/fake_cuda.c) implements the same functions.
//
// A NaN is never multiplied: the GPU would return its canonical NaN where
// the CPU reference keeps the payload.
//
// Every kernel takes (in, out, count, scale) and walks a grid-stride loop,
// so any launch shape covers any count (KernelModule picks it).
#include <stdint.h>

namespace {

__device__ __forceinline__ uint32_t bitsOf(float f) { return __float_as_uint(f); }
__device__ __forceinline__ float floatOf(uint32_t u) { return __uint_as_float(u); }

__device__ __forceinline__ float scaled(float x, float scale) {
  return (x != x || scale == 1.0f) ? x : x * scale;
}

__device__ __forceinline__ uint16_t bf16FromF32Bits(uint32_t u) {
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 0x40u);
  return static_cast<uint16_t>((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

__device__ __forceinline__ uint16_t f16FromF32Bits(uint32_t u) {
  const uint32_t sign = (u >> 16) & 0x8000u;
  const uint32_t magnitude = u & 0x7fffffffu;
  if (magnitude > 0x7f800000u) return static_cast<uint16_t>(sign | 0x7e00u | ((magnitude >> 13) & 0x3ffu));
  // 65520 lies halfway between 65504 (the largest float16) and 65536: ties to even = infinity.
  if (magnitude >= 0x477ff000u) return static_cast<uint16_t>(sign | 0x7c00u);
  if (magnitude >= 0x38800000u) {
    const uint32_t rebased = magnitude - 0x38000000u;  // exponent bias 127 -> 15
    return static_cast<uint16_t>(sign | ((rebased + 0xfffu + ((rebased >> 13) & 1u)) >> 13));
  }
  // Subnormal float16 (or zero): units of 2^-24, rounding half to even.
  const uint32_t shift = 126u - (magnitude >> 23);  // >= 14 here
  if (shift > 24u) return static_cast<uint16_t>(sign);
  const uint32_t mantissa = (magnitude & 0x7fffffu) | 0x800000u;
  uint32_t units = mantissa >> shift;
  const uint32_t rest = mantissa & ((1u << shift) - 1u);
  const uint32_t half = 1u << (shift - 1u);
  if (rest > half || (rest == half && (units & 1u))) units += 1u;
  return static_cast<uint16_t>(sign | units);
}

__device__ __forceinline__ float f32FromBf16(uint16_t h) {
  const uint32_t bits = static_cast<uint32_t>(h) << 16;
  return floatOf((h & 0x7fffu) > 0x7f80u ? bits | 0x400000u : bits);
}

__device__ __forceinline__ float f32FromF16(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t exponent = (h >> 10) & 0x1fu;
  const uint32_t mantissa = h & 0x3ffu;
  if (exponent == 0x1fu) return floatOf(sign | 0x7f800000u | (mantissa << 13) | (mantissa ? 0x400000u : 0u));
  if (exponent == 0u) {
    // mantissa * 2^-24 is exact in float32.
    const float magnitude = static_cast<float>(mantissa) * 5.9604644775390625e-8f;
    return floatOf(sign | bitsOf(magnitude));
  }
  return floatOf(sign | ((exponent + 112u) << 23) | (mantissa << 13));
}

}  // namespace

extern "C" __global__ void ringtree_cast_f32_bf16(const float* in, uint16_t* out, uint64_t count, float scale) {
  for (uint64_t i = blockIdx.x * uint64_t(blockDim.x) + threadIdx.x; i < count; i += uint64_t(gridDim.x) * blockDim.x) {
    out[i] = bf16FromF32Bits(bitsOf(scaled(in[i], scale)));
  }
}

extern "C" __global__ void ringtree_cast_f32_f16(const float* in, uint16_t* out, uint64_t count, float scale) {
  for (uint64_t i = blockIdx.x * uint64_t(blockDim.x) + threadIdx.x; i < count; i += uint64_t(gridDim.x) * blockDim.x) {
    out[i] = f16FromF32Bits(bitsOf(scaled(in[i], scale)));
  }
}

extern "C" __global__ void ringtree_cast_bf16_f32(const uint16_t* in, float* out, uint64_t count, float scale) {
  for (uint64_t i = blockIdx.x * uint64_t(blockDim.x) + threadIdx.x; i < count; i += uint64_t(gridDim.x) * blockDim.x) {
    out[i] = scaled(f32FromBf16(in[i]), scale);
  }
}

extern "C" __global__ void ringtree_cast_f16_f32(const uint16_t* in, float* out, uint64_t count, float scale) {
  for (uint64_t i = blockIdx.x * uint64_t(blockDim.x) + threadIdx.x; i < count; i += uint64_t(gridDim.x) * blockDim.x) {
    out[i] = scaled(f32FromF16(in[i]), scale);
  }
}

// out = in * scale; in == out (in place) is allowed.
extern "C" __global__ void ringtree_scale_f32(const float* in, float* out, uint64_t count, float scale) {
  for (uint64_t i = blockIdx.x * uint64_t(blockDim.x) + threadIdx.x; i < count; i += uint64_t(gridDim.x) * blockDim.x) {
    out[i] = scaled(in[i], scale);
  }
}
