// A portable, cache-blocked GEMM for hosts without a BLAS (or with
// RINGTREE_BLAS=fallback). Correct first; a few GFLOP/s, not OpenBLAS.
#pragma once

#include <cstdint>

namespace ringtree {

// Row-major C = alpha * op(A) @ op(B) + beta * C on the calling thread.
// With beta == 0, C is written without being read (a NaN in C never leaks);
// with k == 0 or alpha == 0, A and B are not read.
void fallbackGemm(bool transA, bool transB, int64_t m, int64_t n, int64_t k, float alpha, const float* a,
                  int64_t lda, const float* b, int64_t ldb, float beta, float* c, int64_t ldc);
void fallbackGemm(bool transA, bool transB, int64_t m, int64_t n, int64_t k, double alpha, const double* a,
                  int64_t lda, const double* b, int64_t ldb, double beta, double* c, int64_t ldc);

// C = beta * C over the m x n view; beta == 0 writes zeros without reading.
void scaleMatrix(int64_t m, int64_t n, float beta, float* c, int64_t ldc);
void scaleMatrix(int64_t m, int64_t n, double beta, double* c, int64_t ldc);

}  // namespace ringtree
