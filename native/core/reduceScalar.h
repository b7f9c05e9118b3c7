// Scalar definitions of every reduction: the semantics all SIMD levels must
// reproduce bit for bit. Private to native/core/reduce*.cc.
//
// HAZARD: this header is compiled into translation units built with
// different `#pragma GCC target` settings (reduceAvx2.cc, reduceAvx512.cc).
// An inline function with external linkage compiled there may be the copy
// the linker keeps, and would then run AVX code on a baseline CPU. So
// everything here lives in an anonymous namespace (one private copy per
// unit), and nothing here may instantiate std:: templates.
#pragma once

#include <cstdint>
#include <cstring>

#include "core/dtype.h"

namespace ringtree {
namespace {

inline uint32_t bitsOf(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}
inline float floatOf(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
inline uint64_t bitsOf(double f) {
  uint64_t u;
  std::memcpy(&u, &f, 8);
  return u;
}
inline double doubleOf(uint64_t u) {
  double f;
  std::memcpy(&f, &u, 8);
  return f;
}

// bfloat16 <-> float32. Widening is exact (a signaling NaN stays
// signaling; the combine step or the narrowing quiets it). Narrowing rounds
// to nearest-even; a NaN keeps its sign and top payload bits and is quieted.
inline float bf16ToF32(uint16_t h) { return floatOf(static_cast<uint32_t>(h) << 16); }
inline uint16_t f32ToBf16(float f) {
  uint32_t u = bitsOf(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 0x40u);
  u += 0x7fffu + ((u >> 16) & 1u);
  return static_cast<uint16_t>(u >> 16);
}

// float16 <-> float32 with the exact results of F16C's vcvtph2ps/vcvtps2ph
// (round-to-nearest-even), so the scalar and vector paths agree on every
// bit pattern, NaN payloads included: both directions quiet a NaN and keep
// its top payload bits.
inline float f16ToF32(uint16_t h) {
  uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  uint32_t exponent = (h >> 10) & 0x1fu;
  uint32_t mantissa = h & 0x3ffu;
  if (exponent == 0x1f) {
    return floatOf(sign | 0x7f800000u | (mantissa << 13) | (mantissa ? 0x400000u : 0u));
  }
  if (exponent == 0) {
    // Subnormal (or zero): mantissa * 2^-24 is exact in float32.
    float magnitude = static_cast<float>(mantissa) * 5.9604644775390625e-8f;
    return floatOf(sign | bitsOf(magnitude));
  }
  return floatOf(sign | ((exponent + 112u) << 23) | (mantissa << 13));
}
inline uint16_t f32ToF16(float f) {
  uint32_t u = bitsOf(f);
  uint32_t sign = (u >> 16) & 0x8000u;
  uint32_t magnitude = u & 0x7fffffffu;
  if (magnitude > 0x7f800000u) return static_cast<uint16_t>(sign | 0x7e00u | ((magnitude >> 13) & 0x3ffu));
  // 65520 is halfway between 65504 (the largest float16) and 65536; ties go
  // to the even neighbour, which is infinity.
  if (magnitude >= 0x477ff000u) return static_cast<uint16_t>(sign | 0x7c00u);
  if (magnitude >= 0x38800000u) {  // normal in float16 (>= 2^-14)
    uint32_t rebased = magnitude - 0x38000000u;  // exponent bias 127 -> 15
    rebased += 0xfffu + ((rebased >> 13) & 1u);
    return static_cast<uint16_t>(sign | (rebased >> 13));
  }
  // Subnormal result: adding 0.5 makes the float32 ulp 2^-24 (the float16
  // subnormal step), so the hardware's own RNE does the rounding. Exact
  // for every input; 0x400 (2^-14) comes out right when it rounds up.
  float shifted = floatOf(magnitude) + 0.5f;
  return static_cast<uint16_t>(sign | (bitsOf(shifted) - 0x3f000000u));
}

// Floating min/max, the rule every level follows (note min/max return a
// NaN operand as is, signaling or not; sum/prod quiet it):
//   - NaN propagates: if `a` is NaN the result is `a`, else if `b` is NaN it is `b`;
//   - -0 and +0 compare equal, but min returns -0 and max returns +0 whichever
//     order they come in (bitwise OR / AND of equal values), so the result
//     does not depend on the order ranks are combined in.
inline float minF32(float a, float b) {
  if (a != a) return a;
  if (b != b) return b;
  if (a == b) return floatOf(bitsOf(a) | bitsOf(b));
  return a < b ? a : b;
}
inline float maxF32(float a, float b) {
  if (a != a) return a;
  if (b != b) return b;
  if (a == b) return floatOf(bitsOf(a) & bitsOf(b));
  return a > b ? a : b;
}
inline double minF64(double a, double b) {
  if (a != a) return a;
  if (b != b) return b;
  if (a == b) return doubleOf(bitsOf(a) | bitsOf(b));
  return a < b ? a : b;
}
inline double maxF64(double a, double b) {
  if (a != a) return a;
  if (b != b) return b;
  if (a == b) return doubleOf(bitsOf(a) & bitsOf(b));
  return a > b ? a : b;
}

// One combine per (dtype, op). Avg is folded into Sum by the caller.
struct SumOp {};
struct ProdOp {};
struct MinOp {};
struct MaxOp {};

// Floating sum/prod: when `a` is NaN the result is `a` quieted. x86 already
// returns the first operand's NaN, but the compiler treats + and * as
// commutative and may swap the operands in one level and not another, so
// the choice is made explicit here (and in every vector kernel). With only
// `b` NaN the hardware returns `b` quieted in either order.
constexpr uint32_t kF32QuietBit = 0x400000u;
constexpr uint64_t kF64QuietBit = 0x8000000000000ull;
// Written as a bit mask, not `a != a ? quiet(a) : a + b`: GCC sinks the add
// into the branch, and under its default -ftrapping-math a branch holding
// an add cannot be if-converted, so the baseline loop would not vectorize.
inline float pickQuietA(float a, float result) {
  uint32_t r = bitsOf(result);
  uint32_t mask = 0u - static_cast<uint32_t>(a != a);
  return floatOf(r ^ ((r ^ (bitsOf(a) | kF32QuietBit)) & mask));
}
inline double pickQuietA(double a, double result) {
  uint64_t r = bitsOf(result);
  uint64_t mask = 0ull - static_cast<uint64_t>(a != a);
  return doubleOf(r ^ ((r ^ (bitsOf(a) | kF64QuietBit)) & mask));
}
inline float combine(SumOp, float a, float b) { return pickQuietA(a, a + b); }
inline float combine(ProdOp, float a, float b) { return pickQuietA(a, a * b); }
inline float combine(MinOp, float a, float b) { return minF32(a, b); }
inline float combine(MaxOp, float a, float b) { return maxF32(a, b); }
inline double combine(SumOp, double a, double b) { return pickQuietA(a, a + b); }
inline double combine(ProdOp, double a, double b) { return pickQuietA(a, a * b); }
inline double combine(MinOp, double a, double b) { return minF64(a, b); }
inline double combine(MaxOp, double a, double b) { return maxF64(a, b); }

// Integers: sum and prod in the unsigned type (defined wrap-around, no UB).
template <class T, class U>
inline T wrapSum(T a, T b) { return static_cast<T>(static_cast<U>(static_cast<U>(a) + static_cast<U>(b))); }
template <class T, class U>
inline T wrapProd(T a, T b) { return static_cast<T>(static_cast<U>(static_cast<U>(a) * static_cast<U>(b))); }

#define RINGTREE_INT_COMBINE(T, U)                                                  \
  inline T combine(SumOp, T a, T b) { return wrapSum<T, U>(a, b); }               \
  inline T combine(ProdOp, T a, T b) { return wrapProd<T, U>(a, b); }             \
  inline T combine(MinOp, T a, T b) { return a < b ? a : b; }                     \
  inline T combine(MaxOp, T a, T b) { return a > b ? a : b; }
RINGTREE_INT_COMBINE(int8_t, uint32_t)  // uint8 * uint8 promotes to int: widen to unsigned first
RINGTREE_INT_COMBINE(uint8_t, uint32_t)
RINGTREE_INT_COMBINE(int32_t, uint32_t)
RINGTREE_INT_COMBINE(int64_t, uint64_t)
#undef RINGTREE_INT_COMBINE

// Plain loops over [begin, end). Written so GCC can auto-vectorize the
// simple ones; also used for the tails of the SIMD loops.
template <class T, class Op>
inline void scalarLoop(T* dst, const T* a, const T* b, size_t begin, size_t end, Op op) {
  for (size_t i = begin; i < end; ++i) dst[i] = combine(op, a[i], b[i]);
}
template <class Op>
inline void scalarLoopF16(uint16_t* dst, const uint16_t* a, const uint16_t* b, size_t begin, size_t end, Op op) {
  for (size_t i = begin; i < end; ++i) dst[i] = f32ToF16(combine(op, f16ToF32(a[i]), f16ToF32(b[i])));
}
template <class Op>
inline void scalarLoopBf16(uint16_t* dst, const uint16_t* a, const uint16_t* b, size_t begin, size_t end, Op op) {
  for (size_t i = begin; i < end; ++i) dst[i] = f32ToBf16(combine(op, bf16ToF32(a[i]), bf16ToF32(b[i])));
}

}  // namespace
}  // namespace ringtree
