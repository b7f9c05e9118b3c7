// AVX-512 (F, BW, DQ, VL) reduction kernels: the AVX2 file's design at 512
// bits, with mask registers doing the NaN fix-ups. Compiled for AVX-512 by
// the pragma below only; reduce() calls in here only when the CPU (and the
// OS, via XGETBV in __builtin_cpu_supports) offers all four extensions.
// Every kernel must give the bits reduceScalar.h defines; the tails use it.
#include "core/reduceKernels.h"

#if defined(__x86_64__)

#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512dq,avx512vl,avx2,f16c,fma")
// GCC 12's AVX-512 headers seed "undefined" vectors with a self-initialized
// variable (`__m512 __Y = __Y;`), which -Wmaybe-uninitialized reports at
// every inlined intrinsic. A false positive; silenced for this file only.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

#include <immintrin.h>

#include "core/reduceScalar.h"

namespace ringtree::detail {
namespace {

// See reduceAvx2.cc for the min/max and NaN reasoning; masked moves replace
// the blends.
inline __m512 minPs(__m512 a, __m512 b) {
  __m512 m = _mm512_or_ps(_mm512_min_ps(a, b), _mm512_min_ps(b, a));
  m = _mm512_mask_mov_ps(m, _mm512_cmp_ps_mask(b, b, _CMP_UNORD_Q), b);
  return _mm512_mask_mov_ps(m, _mm512_cmp_ps_mask(a, a, _CMP_UNORD_Q), a);
}
inline __m512 maxPs(__m512 a, __m512 b) {
  __m512 m = _mm512_and_ps(_mm512_max_ps(a, b), _mm512_max_ps(b, a));
  m = _mm512_mask_mov_ps(m, _mm512_cmp_ps_mask(b, b, _CMP_UNORD_Q), b);
  return _mm512_mask_mov_ps(m, _mm512_cmp_ps_mask(a, a, _CMP_UNORD_Q), a);
}
inline __m512d minPd(__m512d a, __m512d b) {
  __m512d m = _mm512_or_pd(_mm512_min_pd(a, b), _mm512_min_pd(b, a));
  m = _mm512_mask_mov_pd(m, _mm512_cmp_pd_mask(b, b, _CMP_UNORD_Q), b);
  return _mm512_mask_mov_pd(m, _mm512_cmp_pd_mask(a, a, _CMP_UNORD_Q), a);
}
inline __m512d maxPd(__m512d a, __m512d b) {
  __m512d m = _mm512_and_pd(_mm512_max_pd(a, b), _mm512_max_pd(b, a));
  m = _mm512_mask_mov_pd(m, _mm512_cmp_pd_mask(b, b, _CMP_UNORD_Q), b);
  return _mm512_mask_mov_pd(m, _mm512_cmp_pd_mask(a, a, _CMP_UNORD_Q), a);
}

// Sum/prod: a NaN in `a` wins, quieted (see reduceScalar.h for why).
inline __m512 aNanWins(__m512 r, __m512 a) {
  return _mm512_mask_or_ps(r, _mm512_cmp_ps_mask(a, a, _CMP_UNORD_Q), a,
                           _mm512_castsi512_ps(_mm512_set1_epi32(kF32QuietBit)));
}
inline __m512d aNanWins(__m512d r, __m512d a) {
  return _mm512_mask_or_pd(r, _mm512_cmp_pd_mask(a, a, _CMP_UNORD_Q), a,
                           _mm512_castsi512_pd(_mm512_set1_epi64(kF64QuietBit)));
}

inline __m512 vop(SumOp, __m512 a, __m512 b) { return aNanWins(_mm512_add_ps(a, b), a); }
inline __m512 vop(ProdOp, __m512 a, __m512 b) { return aNanWins(_mm512_mul_ps(a, b), a); }
inline __m512 vop(MinOp, __m512 a, __m512 b) { return minPs(a, b); }
inline __m512 vop(MaxOp, __m512 a, __m512 b) { return maxPs(a, b); }
inline __m512d vop(SumOp, __m512d a, __m512d b) { return aNanWins(_mm512_add_pd(a, b), a); }
inline __m512d vop(ProdOp, __m512d a, __m512d b) { return aNanWins(_mm512_mul_pd(a, b), a); }
inline __m512d vop(MinOp, __m512d a, __m512d b) { return minPd(a, b); }
inline __m512d vop(MaxOp, __m512d a, __m512d b) { return maxPd(a, b); }

// float32 -> bfloat16, 16 lanes, as f32ToBf16 (RNE; NaNs quieted).
inline __m256i f32ToBf16x16(__m512 f) {
  __m512i u = _mm512_castps_si512(f);
  __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(1));
  __m512i rounded = _mm512_srli_epi32(_mm512_add_epi32(u, _mm512_add_epi32(lsb, _mm512_set1_epi32(0x7fff))), 16);
  __m512i quietNan = _mm512_or_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(0x40));
  __m512i r = _mm512_mask_mov_epi32(rounded, _mm512_cmp_ps_mask(f, f, _CMP_UNORD_Q), quietNan);
  return _mm512_cvtepi32_epi16(r);  // lanes are <= 0xffff: truncation is exact
}
inline __m512 bf16ToF32x16(const uint16_t* p) {
  __m512i wide = _mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
  return _mm512_castsi512_ps(_mm512_slli_epi32(wide, 16));
}
inline __m512 f16ToF32x16(const uint16_t* p) {
  return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
}
inline __m256i f32ToF16x16(__m512 f) { return _mm512_cvtps_ph(f, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC); }

template <class Op>
void loopF32(float* d, const float* a, const float* b, size_t n, Op op) {
  size_t i = 0;
  for (; i + 32 <= n; i += 32) {
    __m512 r0 = vop(op, _mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i));
    __m512 r1 = vop(op, _mm512_loadu_ps(a + i + 16), _mm512_loadu_ps(b + i + 16));
    _mm512_storeu_ps(d + i, r0);
    _mm512_storeu_ps(d + i + 16, r1);
  }
  for (; i + 16 <= n; i += 16) _mm512_storeu_ps(d + i, vop(op, _mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i)));
  scalarLoop(d, a, b, i, n, op);
}
template <class Op>
void loopF64(double* d, const double* a, const double* b, size_t n, Op op) {
  size_t i = 0;
  for (; i + 16 <= n; i += 16) {
    __m512d r0 = vop(op, _mm512_loadu_pd(a + i), _mm512_loadu_pd(b + i));
    __m512d r1 = vop(op, _mm512_loadu_pd(a + i + 8), _mm512_loadu_pd(b + i + 8));
    _mm512_storeu_pd(d + i, r0);
    _mm512_storeu_pd(d + i + 8, r1);
  }
  for (; i + 8 <= n; i += 8) _mm512_storeu_pd(d + i, vop(op, _mm512_loadu_pd(a + i), _mm512_loadu_pd(b + i)));
  scalarLoop(d, a, b, i, n, op);
}
template <class Op>
void loopF16(uint16_t* d, const uint16_t* a, const uint16_t* b, size_t n, Op op) {
  size_t i = 0;
  for (; i + 16 <= n; i += 16) {
    __m256i r = f32ToF16x16(vop(op, f16ToF32x16(a + i), f16ToF32x16(b + i)));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(d + i), r);
  }
  scalarLoopF16(d, a, b, i, n, op);
}
template <class Op>
void loopBf16(uint16_t* d, const uint16_t* a, const uint16_t* b, size_t n, Op op) {
  size_t i = 0;
  for (; i + 16 <= n; i += 16) {
    __m256i r = f32ToBf16x16(vop(op, bf16ToF32x16(a + i), bf16ToF32x16(b + i)));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(d + i), r);
  }
  scalarLoopBf16(d, a, b, i, n, op);
}

// Integer kernels: Vec::apply combines two __m512i holding T lanes (named
// structs, not lambdas; see reduceAvx2.cc).
template <class T, class Op, class Vec>
void loopInt(T* d, const T* a, const T* b, size_t n, Op op) {
  constexpr size_t kLanes = 64 / sizeof(T);
  size_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    __m512i x = _mm512_loadu_si512(a + i);
    __m512i y = _mm512_loadu_si512(b + i);
    _mm512_storeu_si512(d + i, Vec::apply(x, y));
  }
  scalarLoop(d, a, b, i, n, op);
}

#define RINGTREE_VEC(NAME, EXPR) \
  struct NAME {                  \
    static __m512i apply(__m512i x, __m512i y) { return EXPR; } \
  };
RINGTREE_VEC(AddI32, _mm512_add_epi32(x, y))
RINGTREE_VEC(MulI32, _mm512_mullo_epi32(x, y))
RINGTREE_VEC(MinI32, _mm512_min_epi32(x, y))
RINGTREE_VEC(MaxI32, _mm512_max_epi32(x, y))
RINGTREE_VEC(AddI8, _mm512_add_epi8(x, y))
RINGTREE_VEC(MinI8, _mm512_min_epi8(x, y))
RINGTREE_VEC(MaxI8, _mm512_max_epi8(x, y))
RINGTREE_VEC(MinU8, _mm512_min_epu8(x, y))
RINGTREE_VEC(MaxU8, _mm512_max_epu8(x, y))
RINGTREE_VEC(AddI64, _mm512_add_epi64(x, y))
RINGTREE_VEC(MulI64, _mm512_mullo_epi64(x, y))
RINGTREE_VEC(MinI64, _mm512_min_epi64(x, y))
RINGTREE_VEC(MaxI64, _mm512_max_epi64(x, y))
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
        default: return false;  // no byte multiply; baseline does it
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
        case ReduceOp::Prod: RINGTREE_INT_KERNEL(int64_t, ProdOp, MulI64);
        case ReduceOp::Min: RINGTREE_INT_KERNEL(int64_t, MinOp, MinI64);
        case ReduceOp::Max: RINGTREE_INT_KERNEL(int64_t, MaxOp, MaxI64);
        default: return false;
      }
    default: return false;
  }
}
#undef RINGTREE_INT_KERNEL

}  // namespace

bool reduceAvx512(void* dst, const void* a, const void* b, size_t count, DType dtype, ReduceOp op) {
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

#pragma GCC diagnostic pop
#pragma GCC pop_options

#endif  // __x86_64__
