// One GEMM as the addon hands it to the CPU backend: row-major, as the
// TypeScript API states it. C = alpha * op(A) @ op(B) + beta * C, repeated
// `batch` times with element strides between consecutive matrices.
#pragma once

#include <cstddef>
#include <cstdint>

#include "core/dtype.h"
#include "core/status.h"

namespace ringtree {

struct GemmDesc {
  DType dtype = DType::Float32;  // Float32, Float64, Float16 or BFloat16
  bool transA = false;
  bool transB = false;
  int64_t m = 0, n = 0, k = 0;
  // Leading dimensions in elements: the distance between consecutive rows
  // of the matrix as stored (A is m x k, or k x m with transA).
  int64_t lda = 0, ldb = 0, ldc = 0;
  int64_t batch = 1;
  int64_t strideA = 0, strideB = 0, strideC = 0;  // elements between batch entries
  double alpha = 1.0;
  double beta = 0.0;
  const void* a = nullptr;
  const void* b = nullptr;
  void* c = nullptr;
  size_t aBytes = 0, bBytes = 0, cBytes = 0;  // sizes of the buffers behind a, b, c
};

// The dtypes GEMM computes in (16-bit floats are widened to float32).
inline bool gemmDtypeSupported(DType t) {
  return t == DType::Float32 || t == DType::Float64 || t == DType::Float16 || t == DType::BFloat16;
}

// Checks sizes, leading dimensions, strides and buffer lengths: the cheap
// second line of defence behind lib/gemm.ts, which names the argument.
Status validateGemm(const GemmDesc& d);

}  // namespace ringtree
