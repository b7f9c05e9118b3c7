// The subset of cuBLASLt that device GEMM calls, declared by us from NVIDIA's
// public cuBLAS documentation (cublasLt.h is never included: the library is
// found at run time with dlopen, see CublasLtLibrary). Values and signatures
// are checked against the real cublasLt.h on the GPU machine by
// test/abi/abiCheck.cc (scripts/gpu-gemm-check.mjs passes the include dir).
#pragma once

#include <cstddef>
#include <cstdint>

#include "cuda/CudaApi.h"

namespace ringtree::cuda {

using cublasStatus_t = int;
using cublasLtHandle_t = struct cublasLtContext*;
using cublasLtMatmulDesc_t = struct cublasLtMatmulDescOpaque_st*;
using cublasLtMatrixLayout_t = struct cublasLtMatrixLayoutOpaque_st*;
using cublasLtMatmulPreference_t = struct cublasLtMatmulPreferenceOpaque_st*;

// cublasStatus_t values we name.
constexpr cublasStatus_t CUBLAS_STATUS_SUCCESS = 0;
constexpr cublasStatus_t CUBLAS_STATUS_NOT_INITIALIZED = 1;
constexpr cublasStatus_t CUBLAS_STATUS_ALLOC_FAILED = 3;
constexpr cublasStatus_t CUBLAS_STATUS_INVALID_VALUE = 7;
constexpr cublasStatus_t CUBLAS_STATUS_ARCH_MISMATCH = 8;
constexpr cublasStatus_t CUBLAS_STATUS_EXECUTION_FAILED = 13;
constexpr cublasStatus_t CUBLAS_STATUS_INTERNAL_ERROR = 14;
constexpr cublasStatus_t CUBLAS_STATUS_NOT_SUPPORTED = 15;

// cublasOperation_t.
constexpr int CUBLAS_OP_N = 0;
constexpr int CUBLAS_OP_T = 1;

// cudaDataType_t (library_types.h).
constexpr int CUDA_R_32F = 0;
constexpr int CUDA_R_64F = 1;
constexpr int CUDA_R_16F = 2;
constexpr int CUDA_R_16BF = 14;

// cublasComputeType_t.
constexpr int CUBLAS_COMPUTE_32F = 68;
constexpr int CUBLAS_COMPUTE_32F_FAST_TF32 = 77;
constexpr int CUBLAS_COMPUTE_64F = 70;

// cublasLtMatmulDescAttributes_t.
constexpr int CUBLASLT_MATMUL_DESC_COMPUTE_TYPE = 0;
constexpr int CUBLASLT_MATMUL_DESC_SCALE_TYPE = 1;
constexpr int CUBLASLT_MATMUL_DESC_TRANSA = 3;
constexpr int CUBLASLT_MATMUL_DESC_TRANSB = 4;
constexpr int CUBLASLT_MATMUL_DESC_EPILOGUE = 7;
constexpr int CUBLASLT_MATMUL_DESC_BIAS_POINTER = 8;
constexpr int CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_POINTER = 11;
constexpr int CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_LD = 12;
constexpr int CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE = 26;

// cublasLtMatrixLayoutAttribute_t.
constexpr int CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT = 5;
constexpr int CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET = 6;

// cublasLtMatmulPreferenceAttributes_t.
constexpr int CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES = 1;
constexpr int CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES = 5;
constexpr int CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES = 6;
constexpr int CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES = 7;
constexpr int CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES = 8;

// cublasLtEpilogue_t (bit flags: 2 ReLU, 4 bias, 8|128 dReLU, 16 bias
// gradient, 32 GELU, 64|128 dGELU, 128 aux).
constexpr uint32_t CUBLASLT_EPILOGUE_DEFAULT = 1;
constexpr uint32_t CUBLASLT_EPILOGUE_RELU = 2;
constexpr uint32_t CUBLASLT_EPILOGUE_RELU_AUX = 130;
constexpr uint32_t CUBLASLT_EPILOGUE_BIAS = 4;
constexpr uint32_t CUBLASLT_EPILOGUE_RELU_BIAS = 6;
constexpr uint32_t CUBLASLT_EPILOGUE_RELU_AUX_BIAS = 134;
constexpr uint32_t CUBLASLT_EPILOGUE_DRELU = 136;
constexpr uint32_t CUBLASLT_EPILOGUE_DRELU_BGRAD = 152;
constexpr uint32_t CUBLASLT_EPILOGUE_GELU = 32;
constexpr uint32_t CUBLASLT_EPILOGUE_GELU_AUX = 160;
constexpr uint32_t CUBLASLT_EPILOGUE_GELU_BIAS = 36;
constexpr uint32_t CUBLASLT_EPILOGUE_GELU_AUX_BIAS = 164;
constexpr uint32_t CUBLASLT_EPILOGUE_DGELU = 192;
constexpr uint32_t CUBLASLT_EPILOGUE_DGELU_BGRAD = 208;

// cublasLtMatmulAlgo_t: 8 opaque 64-bit words.
struct cublasLtMatmulAlgo_t {
  uint64_t data[8];
};

struct cublasLtMatmulHeuristicResult_t {
  cublasLtMatmulAlgo_t algo;
  size_t workspaceSize;
  cublasStatus_t state;
  float wavesCount;
  int reserved[4];
};

extern "C" {
using PFN_cublasLtCreate = cublasStatus_t (*)(cublasLtHandle_t*);
using PFN_cublasLtDestroy = cublasStatus_t (*)(cublasLtHandle_t);
using PFN_cublasLtGetVersion = size_t (*)();
using PFN_cublasLtGetStatusName = const char* (*)(cublasStatus_t);
using PFN_cublasLtGetStatusString = const char* (*)(cublasStatus_t);
using PFN_cublasLtMatmulDescCreate = cublasStatus_t (*)(cublasLtMatmulDesc_t*, int computeType, int scaleType);
using PFN_cublasLtMatmulDescDestroy = cublasStatus_t (*)(cublasLtMatmulDesc_t);
using PFN_cublasLtMatmulDescSetAttribute = cublasStatus_t (*)(cublasLtMatmulDesc_t, int attr, const void* buf,
                                                              size_t bytes);
using PFN_cublasLtMatrixLayoutCreate = cublasStatus_t (*)(cublasLtMatrixLayout_t*, int type, uint64_t rows,
                                                          uint64_t cols, int64_t ld);
using PFN_cublasLtMatrixLayoutDestroy = cublasStatus_t (*)(cublasLtMatrixLayout_t);
using PFN_cublasLtMatrixLayoutSetAttribute = cublasStatus_t (*)(cublasLtMatrixLayout_t, int attr, const void* buf,
                                                                size_t bytes);
using PFN_cublasLtMatmulPreferenceCreate = cublasStatus_t (*)(cublasLtMatmulPreference_t*);
using PFN_cublasLtMatmulPreferenceDestroy = cublasStatus_t (*)(cublasLtMatmulPreference_t);
using PFN_cublasLtMatmulPreferenceSetAttribute = cublasStatus_t (*)(cublasLtMatmulPreference_t, int attr,
                                                                    const void* buf, size_t bytes);
using PFN_cublasLtMatmulAlgoGetHeuristic = cublasStatus_t (*)(cublasLtHandle_t, cublasLtMatmulDesc_t,
                                                              cublasLtMatrixLayout_t, cublasLtMatrixLayout_t,
                                                              cublasLtMatrixLayout_t, cublasLtMatrixLayout_t,
                                                              cublasLtMatmulPreference_t, int requested,
                                                              cublasLtMatmulHeuristicResult_t* results,
                                                              int* returned);
using PFN_cublasLtMatmul = cublasStatus_t (*)(cublasLtHandle_t, cublasLtMatmulDesc_t, const void* alpha,
                                              const void* A, cublasLtMatrixLayout_t, const void* B,
                                              cublasLtMatrixLayout_t, const void* beta, const void* C,
                                              cublasLtMatrixLayout_t, void* D, cublasLtMatrixLayout_t,
                                              const cublasLtMatmulAlgo_t* algo, void* workspace,
                                              size_t workspaceBytes, CUstream stream);
}

}  // namespace ringtree::cuda
