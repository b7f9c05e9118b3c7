// GEMM on device memory through cuBLASLt: row-major C = alpha * op(A) @ op(B)
// + beta * C as the TypeScript API states it, optionally with a cuBLASLt
// epilogue. Runs on a StreamWorker's thread, enqueued on its stream.
//
// Why cublasLtMatmul for everything rather than cublasGemmStridedBatchedEx
// for plain products: the epilogues exist only in cuBLASLt, and one path
// means one layout mapping, one set of checks and one workspace policy for
// plain and fused GEMMs alike. On Hopper cublasGemmEx itself dispatches to
// the cuBLASLt kernels, so nothing is lost in speed; what Lt adds (a
// heuristic query per call) is paid once per shape here (plans are cached).
#pragma once

#include <cstddef>
#include <cstdint>

#include "core/status.h"
#include "cpu/gemm/GemmDesc.h"
#include "cuda/CudaApi.h"

namespace ringtree::cuda {

struct DeviceGemmDesc {
  // dtype, transposes, sizes, leading dimensions, batch, strides, alpha, beta
  // (its pointer and byte fields are unused here).
  GemmDesc shape;
  // float32 only: let cuBLAS round the inputs to TF32 (CUBLAS_COMPUTE_32F_FAST_TF32).
  bool tf32 = false;
  // cublasLtEpilogue_t value; CUBLASLT_EPILOGUE_DEFAULT (1) for a plain GEMM.
  uint32_t epilogue = 1;
  // Row stride of aux in elements (bits for the ReLU mask): cuBLASLt's EPILOGUE_AUX_LD.
  int64_t auxLd = 0;
  CUdeviceptr a = 0, b = 0, c = 0, bias = 0, aux = 0;
};

// Enqueue one GEMM on `stream` (the calling thread owns the stream; the
// device's context is current). The cuBLASLt handle and workspace of
// (device, stream) are made on first use. cuBLASLt is loaded already.
Status runDeviceGemm(int device, CUstream stream, const DeviceGemmDesc& d);

// Lets go of the handle, workspace and plans of (device, stream), if any: for
// the stream's owner when it stops (the stream is idle by then).
void releaseDeviceGemm(int device, CUstream stream);

// The workspace each (device, stream) handle gets: RINGTREE_CUBLAS_WORKSPACE_BYTES
// when set, else as PyTorch sizes it: 32 MiB on compute capability 9.x
// (Hopper), 4 MiB otherwise.
size_t cublasWorkspaceBytes(int computeCapabilityMajor);

}  // namespace ringtree::cuda
