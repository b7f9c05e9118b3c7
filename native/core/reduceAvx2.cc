// AVX2 (+F16C) reduction kernels. Compiled for AVX2 by the pragma below
// only, never by a global -mavx2, so the rest of the binary stays baseline
// x86-64; reduce() calls in here only when the CPU has AVX2, F16C and FMA.
// Every kernel must give the bits reduceScalar.h defines; the tails use it.
#include "core/reduceKernels.h"

#if defined(__x86_64__)

#pragma GCC push_options
#pragma GCC target("avx2,f16c,fma")

#include <immintrin.h>

#include "core/reduceScalar.h"

namespace ringtree::detail {
namespace {

// Float min/max with reduceScalar.h's rule. min_ps(x, y) is `x < y ? x : y`
// (the second operand on ties, zeros of either sign, and NaNs), so OR-ing
// both orders makes min(-0, +0) = -0 and AND-ing gives max(-0, +0) = +0;
// the blends then let a NaN in `b`, then one in `a`, win.
inline __m256 minPs(__m256 a, __m256 b) {
  __m256 m = _mm256_or_ps(_mm256_min_ps(a, b), _mm256_min_ps(b, a));
  m = _mm256_blendv_ps(m, b, _mm256_cmp_ps(b, b, _CMP_UNORD_Q));
  return _mm256_blendv_ps(m, a, _mm256_cmp_ps(a, a, _CMP_UNORD_Q));
}
inline __m256 maxPs(__m256 a, __m256 b) {
  __m256 m = _mm256_and_ps(_mm256_max_ps(a, b), _mm256_max_ps(b, a));
  m = _mm256_blendv_ps(m, b, _mm256_cmp_ps(b, b, _CMP_UNORD_Q));
  return _mm256_blendv_ps(m, a, _mm256_cmp_ps(a, a, _CMP_UNORD_Q));
}
inline __m256d minPd(__m256d a, __m256d b) {
  __m256d m = _mm256_or_pd(_mm256_min_pd(a, b), _mm256_min_pd(b, a));
  m = _mm256_blendv_pd(m, b, _mm256_cmp_pd(b, b, _CMP_UNORD_Q));
  return _mm256_blendv_pd(m, a, _mm256_cmp_pd(a, a, _CMP_UNORD_Q));
}
inline __m256d maxPd(__m256d a, __m256d b) {
  __m256d m = _mm256_and_pd(_mm256_max_pd(a, b), _mm256_max_pd(b, a));
  m = _mm256_blendv_pd(m, b, _mm256_cmp_pd(b, b, _CMP_UNORD_Q));
  return _mm256_blendv_pd(m, a, _mm256_cmp_pd(a, a, _CMP_UNORD_Q));
}

// Sum/prod: a NaN in `a` wins, quieted (see reduceScalar.h for why).
inline __m256 aNanWins(__m256 r, __m256 a) {
  __m256 quietA = _mm256_or_ps(a, _mm256_castsi256_ps(_mm256_set1_epi32(kF32QuietBit)));
  return _mm256_blendv_ps(r, quietA, _mm256_cmp_ps(a, a, _CMP_UNORD_Q));
}
inline __m256d aNanWins(__m256d r, __m256d a) {
  __m256d quietA = _mm256_or_pd(a, _mm256_castsi256_pd(_mm256_set1_epi64x(kF64QuietBit)));
  return _mm256_blendv_pd(r, quietA, _mm256_cmp_pd(a, a, _CMP_UNORD_Q));
}

inline __m256 vop(SumOp, __m256 a, __m256 b) { return aNanWins(_mm256_add_ps(a, b), a); }
inline __m256 vop(ProdOp, __m256 a, __m256 b) { return aNanWins(_mm256_mul_ps(a, b), a); }
inline __m256 vop(MinOp, __m256 a, __m256 b) { return minPs(a, b); }
inline __m256 vop(MaxOp, __m256 a, __m256 b) { return maxPs(a, b); }
inline __m256d vop(SumOp, __m256d a, __m256d b) { return aNanWins(_mm256_add_pd(a, b), a); }
inline __m256d vop(ProdOp, __m256d a, __m256d b) { return aNanWins(_mm256_mul_pd(a, b), a); }
inline __m256d vop(MinOp, __m256d a, __m256d b) { return minPd(a, b); }
inline __m256d vop(MaxOp, __m256d a, __m256d b) { return maxPd(a, b); }

// float32 -> bfloat16, 8 lanes, as f32ToBf16: round-to-nearest-even, NaNs
// quieted (0x40 sets the bfloat16 quiet bit) with their top payload kept.
inline __m128i f32ToBf16x8(__m256 f) {
  __m256i u = _mm256_castps_si256(f);
  __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(1));
  __m256i rounded = _mm256_srli_epi32(_mm256_add_epi32(u, _mm256_add_epi32(lsb, _mm256_set1_epi32(0x7fff))), 16);
  __m256i quietNan = _mm256_or_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(0x40));
  __m256i isNan = _mm256_castps_si256(_mm256_cmp_ps(f, f, _CMP_UNORD_Q));
  __m256i r = _mm256_blendv_epi8(rounded, quietNan, isNan);
  // Lanes hold values <= 0xffff, so the saturating pack is exact; it packs
  // within 128-bit halves, hence the cross-lane permute.
  r = _mm256_permute4x64_epi64(_mm256_packus_epi32(r, r), 0x08);
  return _mm256_castsi256_si128(r);
}
inline __m256 bf16ToF32x8(const uint16_t* p) {
  __m256i wide = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  return _mm256_castsi256_ps(_mm256_slli_epi32(wide, 16));
}
inline __m256 f16ToF32x8(const uint16_t* p) {
  return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
}
inline __m128i f32ToF16x8(__m256 f) { return _mm256_cvtps_ph(f, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC); }

// Two vectors per iteration: enough independent work to hide latency.
template <class Op>
void loopF32(float* d, const float* a, const float* b, size_t n, Op op) {
  size_t i = 0;
  for (; i + 16 <= n; i += 16) {
    __m256 r0 = vop(op, _mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i));
    __m256 r1 = vop(op, _mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8));
    _mm256_storeu_ps(d + i, r0);
    _mm256_storeu_ps(d + i + 8, r1);
  }
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(d + i, vop(op, _mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i)));
  scalarLoop(d, a, b, i, n, op);
}
template <class Op>
void loopF64(double* d, const double* a, const double* b, size_t n, Op op) {
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    __m256d r0 = vop(op, _mm256_loadu_pd(a + i), _mm256_loadu_pd(b + i));
    __m256d r1 = vop(op, _mm256_loadu_pd(a + i + 4), _mm256_loadu_pd(b + i + 4));
    _mm256_storeu_pd(d + i, r0);
    _mm256_storeu_pd(d + i + 4, r1);
  }
  for (; i + 4 <= n; i += 4) _mm256_storeu_pd(d + i, vop(op, _mm256_loadu_pd(a + i), _mm256_loadu_pd(b + i)));
  scalarLoop(d, a, b, i, n, op);
}
template <class Op>
void loopF16(uint16_t* d, const uint16_t* a, const uint16_t* b, size_t n, Op op) {
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    __m128i r = f32ToF16x8(vop(op, f16ToF32x8(a + i), f16ToF32x8(b + i)));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(d + i), r);
  }
  scalarLoopF16(d, a, b, i, n, op);
}
template <class Op>
void loopBf16(uint16_t* d, const uint16_t* a, const uint16_t* b, size_t n, Op op) {
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    __m128i r = f32ToBf16x8(vop(op, bf16ToF32x8(a + i), bf16ToF32x8(b + i)));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(d + i), r);
  }
  scalarLoopBf16(d, a, b, i, n, op);
}

// Integer kernels: Vec::apply combines two __m256i holding T lanes. (Named
// structs, not lambdas: GCC does not give a lambda's generated thunks the
// target pragma, and warns about the AVX ABI.)
template <class T, class Op, class Vec>
void loopInt(T* d, const T* a, const T* b, size_t n, Op op) {
  constexpr size_t kLanes = 32 / sizeof(T);
  size_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    __m256i x = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a + i));
    __m256i y = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b + i));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(d + i), Vec::apply(x, y));
  }
  scalarLoop(d, a, b, i, n, op);
}

#define RINGTREE_VEC(NAME, EXPR) \
  struct NAME {                  \
    static __m256i apply(__m256i x, __m256i y) { return EXPR; } \
  };
RINGTREE_VEC(AddI32, _mm256_add_epi32(x, y))
RINGTREE_VEC(MulI32, _mm256_mullo_epi32(x, y))
RINGTREE_VEC(MinI32, _mm256_min_epi32(x, y))
RINGTREE_VEC(MaxI32, _mm256_max_epi32(x, y))
RINGTREE_VEC(AddI8, _mm256_add_epi8(x, y))
RINGTREE_VEC(MinI8, _mm256_min_epi8(x, y))
RINGTREE_VEC(MaxI8, _mm256_max_epi8(x, y))
RINGTREE_VEC(MinU8, _mm256_min_epu8(x, y))
RINGTREE_VEC(MaxU8, _mm256_max_epu8(x, y))
RINGTREE_VEC(AddI64, _mm256_add_epi64(x, y))
RINGTREE_VEC(MinI64, _mm256_blendv_epi8(x, y, _mm256_cmpgt_epi64(x, y)))
RINGTREE_VEC(MaxI64, _mm256_blendv_epi8(y, x, _mm256_cmpgt_epi64(x, y)))
#undef RINGTREE_VEC

template <class Op>
bool floatKernels(void* dst, const void* a, const void* b, size_t n, DType dtype, Op op) {
  switch (dtype) {
    case DType::Float32:
      loopF32(static_cast<float*>(dst), static_cast<const float*>(a), static_cast<const float*>(b), n, op);
      return true;
    case DType::Float64:
      loopF64(static_cast<double*>(dst), static_cast<const double*>(a), static_cast<const double*>(b), n, op);
      return true;
    case DType::Float16:
      loopF16(static_cast<uint16_t*>(dst), static_cast<const uint16_t*>(a), static_cast<const uint16_t*>(b), n, op);
      return true;
    case DType::BFloat16:
      loopBf16(static_cast<uint16_t*>(dst), static_cast<const uint16_t*>(a), static_cast<const uint16_t*>(b), n, op);
      return true;
    default: return false;
  }
}

#define RINGTREE_INT_KERNEL(T, OP, VEC)                                                               \
  loopInt<T, OP, VEC>(static_cast<T*>(dst), static_cast<const T*>(a), static_cast<const T*>(b), n, OP{}); \
  return true

bool intKernels(void* dst, const void* a, const void* b, size_t n, DType dtype, ReduceOp op) {
  switch (dtype) {
    case DType::Int32:
      switch (op) {
        case ReduceOp::Sum: RINGTREE_INT_KERNEL(int32_t, SumOp, AddI32);
        case ReduceOp::Prod: RINGTREE_INT_KERNEL(int32_t, ProdOp, MulI32);
        case ReduceOp::Min: RINGTREE_INT_KERNEL(int32_t, MinOp, MinI32);
        case ReduceOp::Max: RINGTREE_INT_KERNEL(int32_t, MaxOp, MaxI32);
        default: return false;
      }
    case DType::Int8:
      switch (op) {
        case ReduceOp::Sum: RINGTREE_INT_KERNEL(int8_t, SumOp, AddI8);
        case ReduceOp::Min: RINGTREE_INT_KERNEL(int8_t, MinOp, MinI8);
        case ReduceOp::Max: RINGTREE_INT_KERNEL(int8_t, MaxOp, MaxI8);
        default: return false;
      }
    case DType::Uint8:
      switch (op) {
        case ReduceOp::Sum: RINGTREE_INT_KERNEL(uint8_t, SumOp, AddI8);
        case ReduceOp::Min: RINGTREE_INT_KERNEL(uint8_t, MinOp, MinU8);
        case ReduceOp::Max: RINGTREE_INT_KERNEL(uint8_t, MaxOp, MaxU8);
        default: return false;
      }
    case DType::Int64:
      switch (op) {
        case ReduceOp::Sum: RINGTREE_INT_KERNEL(int64_t, SumOp, AddI64);
        case ReduceOp::Min: RINGTREE_INT_KERNEL(int64_t, MinOp, MinI64);
        case ReduceOp::Max: RINGTREE_INT_KERNEL(int64_t, MaxOp, MaxI64);
        default: return false;  // no 64-bit multiply before AVX-512DQ
      }
    default: return false;
  }
}
#undef RINGTREE_INT_KERNEL

}  // namespace

bool reduceAvx2(void* dst, const void* a, const void* b, size_t count, DType dtype, ReduceOp op) {
  switch (op) {
    case ReduceOp::Sum:
      if (floatKernels(dst, a, b, count, dtype, SumOp{})) return true;
      break;
    case ReduceOp::Prod:
      if (floatKernels(dst, a, b, count, dtype, ProdOp{})) return true;
      break;
    case ReduceOp::Min:
      if (floatKernels(dst, a, b, count, dtype, MinOp{})) return true;
      break;
    case ReduceOp::Max:
      if (floatKernels(dst, a, b, count, dtype, MaxOp{})) return true;
      break;
    case ReduceOp::Avg: return false;
  }
  return intKernels(dst, a, b, count, dtype, op);
}

}  // namespace ringtree::detail

#pragma GCC pop_options

#endif  // __x86_64__
