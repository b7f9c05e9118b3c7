#include "cpu/gemm/GemmRunner.h"

#include <atomic>
#include <exception>
#include <new>
#include <vector>

#include "core/reduceScalar.h"  // the f16/bf16 conversions, bit-identical to lib/dtype.ts
#include "cpu/gemm/BlasLibrary.h"
#include "cpu/gemm/FallbackGemm.h"

namespace ringtree {

namespace {

std::atomic<bool> fallbackForced{false};

// BLAS (row-major CBLAS) or the fallback, for one matrix of the batch.
// CBLAS rejects a leading dimension of 0 even for empty rows; m, n, k > 0
// and alpha != 0 here, so max(1, ld) is only a formality.
void gemmOne(const BlasLibrary* blas, bool transA, bool transB, int64_t m, int64_t n, int64_t k, float alpha,
             const float* a, int64_t lda, const float* b, int64_t ldb, float beta, float* c, int64_t ldc) {
  if (blas) {
    blas->sgemm(CblasRowMajor, transA ? CblasTrans : CblasNoTrans, transB ? CblasTrans : CblasNoTrans, int(m),
                int(n), int(k), alpha, a, int(lda > 0 ? lda : 1), b, int(ldb > 0 ? ldb : 1), beta, c,
                int(ldc > 0 ? ldc : 1));
  } else {
    fallbackGemm(transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
  }
}

void gemmOne(const BlasLibrary* blas, bool transA, bool transB, int64_t m, int64_t n, int64_t k, double alpha,
             const double* a, int64_t lda, const double* b, int64_t ldb, double beta, double* c, int64_t ldc) {
  if (blas) {
    blas->dgemm(CblasRowMajor, transA ? CblasTrans : CblasNoTrans, transB ? CblasTrans : CblasNoTrans, int(m),
                int(n), int(k), alpha, a, int(lda > 0 ? lda : 1), b, int(ldb > 0 ? ldb : 1), beta, c,
                int(ldc > 0 ? ldc : 1));
  } else {
    fallbackGemm(transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
  }
}

uint64_t span(int64_t rows, int64_t cols, int64_t ld) {
  if (rows == 0 || cols == 0) return 0;
  return uint64_t(rows - 1) * uint64_t(ld) + uint64_t(cols);
}

// float32 and float64: straight to the library. Degenerate problems (k = 0,
// alpha = 0) are ours: C = beta * C without touching A or B, and beta = 0
// writes zeros without reading C, whatever the library would do.
template <typename T>
void runTyped(const GemmDesc& d, const BlasLibrary* blas) {
  const T* a = static_cast<const T*>(d.a);
  const T* b = static_cast<const T*>(d.b);
  T* c = static_cast<T*>(d.c);
  const T alpha = T(d.alpha), beta = T(d.beta);
  for (int64_t i = 0; i < d.batch; ++i) {
    T* ci = c + i * d.strideC;
    if (d.k == 0 || alpha == T(0)) {
      scaleMatrix(d.m, d.n, beta, ci, d.ldc);
    } else {
      gemmOne(blas, d.transA, d.transB, d.m, d.n, d.k, alpha, a + i * d.strideA, d.lda, b + i * d.strideB, d.ldb,
              beta, ci, d.ldc);
    }
  }
}

// float16/bfloat16: widen each matrix to float32 scratch (same layout and
// leading dimension), multiply in float32, narrow the m x n result back.
// Only the rows of the C view are written, so a sub-matrix view's
// neighbours are untouched; with beta = 0, C is never read.
void runHalf(const GemmDesc& d, const BlasLibrary* blas) {
  const bool bf16 = d.dtype == DType::BFloat16;
  auto widen = [bf16](uint16_t h) { return bf16 ? bf16ToF32(h) : f16ToF32(h); };
  auto narrow = [bf16](float f) { return bf16 ? f32ToBf16(f) : f32ToF16(f); };
  const auto* a = static_cast<const uint16_t*>(d.a);
  const auto* b = static_cast<const uint16_t*>(d.b);
  auto* c = static_cast<uint16_t*>(d.c);
  const float alpha = float(d.alpha), beta = float(d.beta);
  const bool readsAB = d.k > 0 && alpha != 0.0f;
  const uint64_t spanA = readsAB ? span(d.transA ? d.k : d.m, d.transA ? d.m : d.k, d.lda) : 0;
  const uint64_t spanB = readsAB ? span(d.transB ? d.n : d.k, d.transB ? d.k : d.n, d.ldb) : 0;
  const uint64_t spanC = span(d.m, d.n, d.ldc);
  std::vector<float> a32(spanA), b32(spanB), c32(spanC);
  for (int64_t i = 0; i < d.batch; ++i) {
    const uint16_t* ai = a + i * d.strideA;
    const uint16_t* bi = b + i * d.strideB;
    uint16_t* ci = c + i * d.strideC;
    for (uint64_t e = 0; e < spanA; ++e) a32[e] = widen(ai[e]);
    for (uint64_t e = 0; e < spanB; ++e) b32[e] = widen(bi[e]);
    if (beta != 0.0f) {
      for (int64_t r = 0; r < d.m; ++r)
        for (int64_t j = 0; j < d.n; ++j) c32[r * d.ldc + j] = widen(ci[r * d.ldc + j]);
    }
    if (!readsAB) {
      scaleMatrix(d.m, d.n, beta, c32.data(), d.ldc);
    } else {
      gemmOne(blas, d.transA, d.transB, d.m, d.n, d.k, alpha, a32.data(), d.lda, b32.data(), d.ldb, beta,
              c32.data(), d.ldc);
    }
    for (int64_t r = 0; r < d.m; ++r)
      for (int64_t j = 0; j < d.n; ++j) ci[r * d.ldc + j] = narrow(c32[r * d.ldc + j]);
  }
}

}  // namespace

void setGemmFallbackForced(bool forced) { fallbackForced.store(forced, std::memory_order_relaxed); }

bool gemmUsesFallback() {
  return fallbackForced.load(std::memory_order_relaxed) || !BlasLibrary::instance().available();
}

Status runGemm(const GemmDesc& d) {
  RT_CHECK(validateGemm(d));
  if (d.m == 0 || d.n == 0 || d.batch == 0) return Status::ok();
  const BlasLibrary* blas = gemmUsesFallback() ? nullptr : &BlasLibrary::instance();
  try {
    switch (d.dtype) {
      case DType::Float32: runTyped<float>(d, blas); break;
      case DType::Float64: runTyped<double>(d, blas); break;
      default: runHalf(d, blas); break;
    }
  } catch (const std::bad_alloc&) {
    return Status(StatusCode::Internal, "gemm: out of memory for the float32 scratch copies",
                  "Use float32 arrays directly, or smaller batches.");
  } catch (const std::exception& e) {
    return Status(StatusCode::Internal, std::string("gemm: ") + e.what());
  }
  return Status::ok();
}

}  // namespace ringtree
