#include "cpu/gemm/FallbackGemm.h"

#include <algorithm>
#include <vector>

namespace ringtree {

namespace {

// Block sizes: a packed kBlockK x kBlockN panel of op(B) (256 KiB of float)
// stays in L2 while kRows rows of C (kBlockN elements each) stay in L1.
constexpr int64_t kBlockK = 256;
constexpr int64_t kBlockN = 256;
constexpr int64_t kBlockM = 64;
constexpr int64_t kRows = 4;

template <typename T>
void scaleRows(int64_t m, int64_t n, T beta, T* c, int64_t ldc) {
  if (beta == T(1)) return;
  for (int64_t i = 0; i < m; ++i) {
    T* row = c + i * ldc;
    if (beta == T(0)) {
      std::fill(row, row + n, T(0));
    } else {
      for (int64_t j = 0; j < n; ++j) row[j] *= beta;
    }
  }
}

// c[r][0..nc) += sum_p ap[r][p] * bp[p][0..nc) for kRows rows at once, so
// each loaded element of the B panel feeds four multiply-adds. The inner
// loops are contiguous and restrict-qualified for the auto-vectorizer.
template <typename T>
void kernelRows4(int64_t kc, int64_t nc, const T* __restrict ap, int64_t apStride, const T* __restrict bp,
                 T* __restrict c0, T* __restrict c1, T* __restrict c2, T* __restrict c3) {
  for (int64_t p = 0; p < kc; ++p) {
    const T a0 = ap[p], a1 = ap[apStride + p], a2 = ap[2 * apStride + p], a3 = ap[3 * apStride + p];
    const T* __restrict brow = bp + p * nc;
    for (int64_t j = 0; j < nc; ++j) {
      const T bv = brow[j];
      c0[j] += a0 * bv;
      c1[j] += a1 * bv;
      c2[j] += a2 * bv;
      c3[j] += a3 * bv;
    }
  }
}

template <typename T>
void kernelRow(int64_t kc, int64_t nc, const T* __restrict ap, const T* __restrict bp, T* __restrict c0) {
  for (int64_t p = 0; p < kc; ++p) {
    const T a0 = ap[p];
    const T* __restrict brow = bp + p * nc;
    for (int64_t j = 0; j < nc; ++j) c0[j] += a0 * brow[j];
  }
}

template <typename T>
void blockedGemm(bool transA, bool transB, int64_t m, int64_t n, int64_t k, T alpha, const T* a, int64_t lda,
                 const T* b, int64_t ldb, T beta, T* c, int64_t ldc) {
  scaleRows(m, n, beta, c, ldc);
  if (m == 0 || n == 0 || k == 0 || alpha == T(0)) return;
  std::vector<T> bPanel(size_t(std::min(k, kBlockK) * std::min(n, kBlockN)));
  std::vector<T> aPanel(size_t(std::min(m, kBlockM) * std::min(k, kBlockK)));
  for (int64_t jc = 0; jc < n; jc += kBlockN) {
    const int64_t nc = std::min(kBlockN, n - jc);
    for (int64_t pc = 0; pc < k; pc += kBlockK) {
      const int64_t kc = std::min(kBlockK, k - pc);
      // Pack op(B)[pc.., jc..] row-major, nc wide.
      for (int64_t p = 0; p < kc; ++p) {
        T* dst = bPanel.data() + p * nc;
        if (!transB) {
          const T* src = b + (pc + p) * ldb + jc;
          std::copy(src, src + nc, dst);
        } else {
          for (int64_t j = 0; j < nc; ++j) dst[j] = b[(jc + j) * ldb + pc + p];
        }
      }
      for (int64_t ic = 0; ic < m; ic += kBlockM) {
        const int64_t mc = std::min(kBlockM, m - ic);
        // Pack alpha * op(A)[ic.., pc..] row-major, kc wide.
        for (int64_t i = 0; i < mc; ++i) {
          T* dst = aPanel.data() + i * kc;
          for (int64_t p = 0; p < kc; ++p) {
            const T v = transA ? a[(pc + p) * lda + ic + i] : a[(ic + i) * lda + pc + p];
            dst[p] = alpha * v;
          }
        }
        int64_t i = 0;
        for (; i + kRows <= mc; i += kRows) {
          T* crow = c + (ic + i) * ldc + jc;
          kernelRows4(kc, nc, aPanel.data() + i * kc, kc, bPanel.data(), crow, crow + ldc, crow + 2 * ldc,
                      crow + 3 * ldc);
        }
        for (; i < mc; ++i) kernelRow(kc, nc, aPanel.data() + i * kc, bPanel.data(), c + (ic + i) * ldc + jc);
      }
    }
  }
}

}  // namespace

void fallbackGemm(bool transA, bool transB, int64_t m, int64_t n, int64_t k, float alpha, const float* a,
                  int64_t lda, const float* b, int64_t ldb, float beta, float* c, int64_t ldc) {
  blockedGemm(transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

void fallbackGemm(bool transA, bool transB, int64_t m, int64_t n, int64_t k, double alpha, const double* a,
                  int64_t lda, const double* b, int64_t ldb, double beta, double* c, int64_t ldc) {
  blockedGemm(transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

void scaleMatrix(int64_t m, int64_t n, float beta, float* c, int64_t ldc) { scaleRows(m, n, beta, c, ldc); }
void scaleMatrix(int64_t m, int64_t n, double beta, double* c, int64_t ldc) { scaleRows(m, n, beta, c, ldc); }

}  // namespace ringtree
