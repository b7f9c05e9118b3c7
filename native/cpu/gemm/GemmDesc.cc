#include "cpu/gemm/GemmDesc.h"

#include <limits>
#include <string>

namespace ringtree {

namespace {

// Elements one stored matrix of `rows` rows of `cols` spans with leading dimension ld.
uint64_t span(int64_t rows, int64_t cols, int64_t ld) {
  if (rows == 0 || cols == 0) return 0;
  return uint64_t(rows - 1) * uint64_t(ld) + uint64_t(cols);
}

uint64_t batchSpan(int64_t batch, int64_t stride, uint64_t one) {
  if (batch == 0 || one == 0) return 0;
  return uint64_t(batch - 1) * uint64_t(stride) + one;
}

Status invalid(const std::string& message) { return Status(StatusCode::InvalidArgument, "gemm: " + message); }

}  // namespace

Status validateGemm(const GemmDesc& d) {
  if (!gemmDtypeSupported(d.dtype)) return invalid("dtype must be float32, float64, float16 or bfloat16");
  // CBLAS takes 32-bit ints; the bounds also keep the span arithmetic below
  // far from overflow.
  constexpr int64_t kMax = std::numeric_limits<int32_t>::max();
  for (int64_t v : {d.m, d.n, d.k, d.lda, d.ldb, d.ldc}) {
    if (v < 0 || v > kMax) return invalid("sizes and leading dimensions must be in [0, 2^31-1]");
  }
  if (d.batch < 0 || d.strideA < 0 || d.strideB < 0 || d.strideC < 0 || d.batch > kMax)
    return invalid("batch and strides must be non-negative");
  const int64_t aRows = d.transA ? d.k : d.m, aCols = d.transA ? d.m : d.k;
  const int64_t bRows = d.transB ? d.n : d.k, bCols = d.transB ? d.k : d.n;
  if (d.lda < aCols || d.ldb < bCols || d.ldc < d.n) return invalid("a leading dimension is smaller than its row");
  const uint64_t oneC = span(d.m, d.n, d.ldc);
  if (d.batch > 1 && uint64_t(d.strideC) < oneC) return invalid("strideC makes the C matrices overlap");
  const size_t es = dtypeSize(d.dtype);
  const bool work = d.m > 0 && d.n > 0 && d.batch > 0;
  // A and B are read only when there is something to multiply.
  const bool readsAB = work && d.k > 0;
  const uint64_t needA = readsAB ? batchSpan(d.batch, d.strideA, span(aRows, aCols, d.lda)) : 0;
  const uint64_t needB = readsAB ? batchSpan(d.batch, d.strideB, span(bRows, bCols, d.ldb)) : 0;
  const uint64_t needC = work ? batchSpan(d.batch, d.strideC, oneC) : 0;
  if (needA * es > d.aBytes || (needA && !d.a)) return invalid("`a` is too small for m, k, lda, batch and strideA");
  if (needB * es > d.bBytes || (needB && !d.b)) return invalid("`b` is too small for k, n, ldb, batch and strideB");
  if (needC * es > d.cBytes || (needC && !d.c)) return invalid("`c` is too small for m, n, ldc, batch and strideC");
  return Status::ok();
}

}  // namespace ringtree
