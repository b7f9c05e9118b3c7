// ABI check: ringtree's own declarations of the CUDA driver and NCCL API
// subset (native/cuda/CudaApi.h, native/cuda/NcclApi.h, written from the
// public documentation) against the vendors' real headers.
//
// C++ rather than C on purpose: our declarations live in namespace
// ringtree::cuda, so both sets coexist in one translation unit and this
// checks the very constants and structs the addon compiles with (a C copy of
// them would only check the copy).
//
//   g++ -std=c++17 -Inative -I/usr/local/cuda/include [-I$RINGTREE_NCCL_INCLUDE]
//       test/abi/abiCheck.cc -o abiCheck && ./abiCheck
//
// The CUDA part needs only cuda.h (present wherever nvcc is); the NCCL part
// is compiled when nccl.h is found (scripts/gpu-check.mjs passes
// RINGTREE_NCCL_INCLUDE), the cuBLASLt part (native/cuda/CublasLtApi.h) when
// cublasLt.h is (scripts/gpu-gemm-check.mjs passes the pip wheel's
// nvidia/cublas/include or RINGTREE_CUBLAS_INCLUDE). Every mismatch is
// printed; exit status 1 if any.
#include <cstddef>
#include <cstdio>
#include <cstring>
#include <type_traits>

#include "cuda/CublasLtApi.h"
#include "cuda/CudaApi.h"
#include "cuda/NcclApi.h"

namespace ours = ringtree::cuda;

// nccl.h defines some of these names as macros: take our values first.
static const int kOurUndef = ours::NCCL_CONFIG_UNDEF_INT;
static const int kOurNoColor = ours::NCCL_SPLIT_NOCOLOR;
static const unsigned kOurMagic = ours::NCCL_CONFIG_MAGIC;
static const ours::ncclConfig_t kOurConfig = ours::ncclConfigInitializer();

#include <cuda.h>
#if defined(__has_include)
#if __has_include(<nccl.h>)
#include <nccl.h>
#define RT_HAVE_NCCL_H 1
#endif
#if __has_include(<cublasLt.h>)
#include <cublasLt.h>
#define RT_HAVE_CUBLASLT_H 1
#endif
#endif

// Function types compared for ABI: an enum (CUresult, CUdevice_attribute,
// ncclResult_t... in the real headers) passes like the int we declare.
template <typename T, bool = std::is_enum<T>::value>
struct AbiOf { using type = T; };
template <typename T>
struct AbiOf<T, true> { using type = typename std::conditional<sizeof(T) == sizeof(int), int, T>::type; };
template <typename F>
struct SigOf;
template <typename R, typename... A>
struct SigOf<R (*)(A...)> { using type = typename AbiOf<R>::type (*)(typename AbiOf<A>::type...); };
#define SAME_SIG(ourPfn, realFn)                                                                              \
  static_assert(std::is_same<SigOf<ours::ourPfn>::type, SigOf<decltype(&::realFn)>::type>::value, #realFn); \
  checks++

// Stricter for APIs with opaque handles: pointers to (possibly incomplete)
// structs compare as void*, so our namespaced handle types match the real
// global ones while every other parameter must match exactly.
template <typename T, typename = void>
struct Erase { using type = typename AbiOf<T>::type; };
template <typename T>
struct Erase<T*, typename std::enable_if<std::is_class<T>::value>::type> {
  using type = typename std::conditional<std::is_const<T>::value, const void*, void*>::type;
};
template <typename T>
struct Erase<T**, typename std::enable_if<std::is_class<T>::value>::type> { using type = void**; };
template <typename F>
struct ErasedSig;
template <typename R, typename... A>
struct ErasedSig<R (*)(A...)> { using type = typename Erase<R>::type (*)(typename Erase<A>::type...); };
// A run-time check (not static_assert) so that one differing signature is
// printed beside every other result instead of stopping the compile.
#define SAME_ERASED_SIG(ourPfn, realFn)                                                                       \
  do {                                                                                                        \
    checks++;                                                                                                 \
    if (!std::is_same<ErasedSig<ours::ourPfn>::type, ErasedSig<decltype(&::realFn)>::type>::value) {          \
      failures++;                                                                                             \
      std::printf("MISMATCH signature of %s (native/cuda/CublasLtApi.h %s)\n", #realFn, #ourPfn);              \
    }                                                                                                         \
  } while (0)

static int failures = 0;
static int checks = 0;

template <typename A, typename B>
static void checkEq(const char* what, A ourValue, B realValue) {
  checks++;
  if (static_cast<long long>(ourValue) != static_cast<long long>(realValue)) {
    failures++;
    std::printf("MISMATCH %s: ours %lld, real %lld\n", what, static_cast<long long>(ourValue),
                static_cast<long long>(realValue));
  }
}
#define EQ(name) checkEq(#name, ours::name, ::name)

static void checkCuda() {
  EQ(CUDA_SUCCESS);
  EQ(CUDA_ERROR_INVALID_VALUE);
  EQ(CUDA_ERROR_OUT_OF_MEMORY);
  EQ(CUDA_ERROR_NOT_INITIALIZED);
  EQ(CUDA_ERROR_NO_DEVICE);
  EQ(CUDA_ERROR_INVALID_DEVICE);
  EQ(CUDA_ERROR_NO_BINARY_FOR_GPU);
  EQ(CUDA_ERROR_UNSUPPORTED_PTX_VERSION);
  EQ(CUDA_ERROR_NOT_FOUND);
  EQ(CUDA_ERROR_NOT_READY);
  EQ(CU_DEVICE_ATTRIBUTE_PCI_BUS_ID);
  EQ(CU_DEVICE_ATTRIBUTE_PCI_DEVICE_ID);
  EQ(CU_DEVICE_ATTRIBUTE_PCI_DOMAIN_ID);
  EQ(CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR);
  EQ(CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR);
  EQ(CU_DEVICE_ATTRIBUTE_MEMORY_POOLS_SUPPORTED);
  EQ(CU_STREAM_NON_BLOCKING);
  EQ(CU_EVENT_DEFAULT);
  EQ(CU_EVENT_DISABLE_TIMING);
  EQ(CU_GET_PROC_ADDRESS_DEFAULT);
  checkEq("sizeof(CUdeviceptr)", sizeof(ours::CUdeviceptr), sizeof(::CUdeviceptr));
  checkEq("sizeof(CUresult)", sizeof(ours::CUresult), sizeof(::CUresult));
  checkEq("sizeof(CUdevice)", sizeof(ours::CUdevice), sizeof(::CUdevice));
  checkEq("sizeof(cuuint64_t)", sizeof(ours::cuuint64_t), sizeof(::cuuint64_t));
  // Signatures without handle types must match (the _v2 ABI where cuda.h maps a name to it).
  SAME_SIG(PFN_cuMemAlloc, cuMemAlloc);
  SAME_SIG(PFN_cuMemFree, cuMemFree);
  SAME_SIG(PFN_cuInit, cuInit);
  SAME_SIG(PFN_cuDriverGetVersion, cuDriverGetVersion);
  SAME_SIG(PFN_cuDeviceGet, cuDeviceGet);
  SAME_SIG(PFN_cuDeviceGetCount, cuDeviceGetCount);
  SAME_SIG(PFN_cuDeviceGetName, cuDeviceGetName);
  SAME_SIG(PFN_cuDeviceGetAttribute, cuDeviceGetAttribute);
  SAME_SIG(PFN_cuDeviceTotalMem, cuDeviceTotalMem);
  SAME_SIG(PFN_cuDevicePrimaryCtxRelease, cuDevicePrimaryCtxRelease);
  std::printf("cuda.h: CUDA_VERSION %d\n", CUDA_VERSION);
}

#ifdef RT_HAVE_NCCL_H
#define OFF(field)                                                                                    \
  checkEq("offsetof(ncclConfig_t, " #field ")", offsetof(ours::ncclConfig_t, field), offsetof(::ncclConfig_t, field)); \
  checkEq("sizeof(ncclConfig_t::" #field ")", sizeof(kOurConfig.field), sizeof(real.field))

static void checkNccl() {
  EQ(ncclSuccess);
  EQ(ncclUnhandledCudaError);
  EQ(ncclSystemError);
  EQ(ncclInternalError);
  EQ(ncclInvalidArgument);
  EQ(ncclInvalidUsage);
  EQ(ncclRemoteError);
  EQ(ncclInProgress);
  EQ(ncclSum);
  EQ(ncclProd);
  EQ(ncclMax);
  EQ(ncclMin);
  EQ(ncclAvg);
  EQ(ncclInt8);
  EQ(ncclUint8);
  EQ(ncclInt32);
  EQ(ncclUint32);
  EQ(ncclInt64);
  EQ(ncclUint64);
  EQ(ncclFloat16);
  EQ(ncclFloat32);
  EQ(ncclFloat64);
  EQ(ncclBfloat16);
  checkEq("sizeof(ncclUniqueId)", sizeof(ours::ncclUniqueId), sizeof(::ncclUniqueId));
  checkEq("NCCL_CONFIG_UNDEF_INT", kOurUndef, NCCL_CONFIG_UNDEF_INT);
  checkEq("NCCL_SPLIT_NOCOLOR", kOurNoColor, NCCL_SPLIT_NOCOLOR);
  checkEq("ncclVersionCode(2,18,0) vs NCCL_VERSION(2,18,0)", ours::ncclVersionCode(2, 18, 0), NCCL_VERSION(2, 18, 0));

  // Layout: every field we declare sits where the real struct has it, and ours is not longer.
  ::ncclConfig_t real = NCCL_CONFIG_INITIALIZER;
  OFF(size);
  OFF(magic);
  OFF(version);
  OFF(blocking);
  OFF(cgaClusterSize);
  OFF(minCTAs);
  OFF(maxCTAs);
  OFF(netName);
  OFF(splitShare);
  checks++;
  if (sizeof(ours::ncclConfig_t) > sizeof(::ncclConfig_t)) {
    failures++;
    std::printf("MISMATCH sizeof(ncclConfig_t): ours %zu is longer than the real %zu\n", sizeof(ours::ncclConfig_t), sizeof(::ncclConfig_t));
  }
  // NCCL_CONFIG_INITIALIZER: the same magic and "undefined" defaults. size and
  // version differ by design (ours describes the 2.18 struct); printed below.
  checkEq("NCCL_CONFIG_INITIALIZER.magic", kOurConfig.magic, real.magic);
  checkEq("NCCL_CONFIG_MAGIC", kOurMagic, real.magic);
  checkEq("NCCL_CONFIG_INITIALIZER.blocking", kOurConfig.blocking, real.blocking);
  checkEq("NCCL_CONFIG_INITIALIZER.cgaClusterSize", kOurConfig.cgaClusterSize, real.cgaClusterSize);
  checkEq("NCCL_CONFIG_INITIALIZER.minCTAs", kOurConfig.minCTAs, real.minCTAs);
  checkEq("NCCL_CONFIG_INITIALIZER.maxCTAs", kOurConfig.maxCTAs, real.maxCTAs);
  checkEq("NCCL_CONFIG_INITIALIZER.splitShare", kOurConfig.splitShare, real.splitShare);
  checks++;
  if ((kOurConfig.netName == nullptr) != (real.netName == nullptr)) {
    failures++;
    std::printf("MISMATCH NCCL_CONFIG_INITIALIZER.netName: ours %s, real %s\n", kOurConfig.netName ? "set" : "NULL", real.netName ? "set" : "NULL");
  }
  checks++;
  if (kOurConfig.version > real.version) {
    failures++;
    std::printf("MISMATCH ncclConfig_t version: ours %u is newer than this nccl.h (%u)\n", kOurConfig.version, real.version);
  }
  std::printf("nccl.h: NCCL_VERSION_CODE %d; ncclConfig_t real size %zu version %u, ours size %zu version %u\n",
              NCCL_VERSION_CODE, sizeof(::ncclConfig_t), real.version, sizeof(ours::ncclConfig_t), kOurConfig.version);
  // Signatures without handle types.
  SAME_SIG(PFN_ncclGetVersion, ncclGetVersion);
  SAME_SIG(PFN_ncclGetErrorString, ncclGetErrorString);
}
#endif

#ifdef RT_HAVE_CUBLASLT_H
static void checkCublasLt() {
  EQ(CUBLAS_STATUS_SUCCESS);
  EQ(CUBLAS_STATUS_NOT_INITIALIZED);
  EQ(CUBLAS_STATUS_ALLOC_FAILED);
  EQ(CUBLAS_STATUS_INVALID_VALUE);
  EQ(CUBLAS_STATUS_ARCH_MISMATCH);
  EQ(CUBLAS_STATUS_EXECUTION_FAILED);
  EQ(CUBLAS_STATUS_INTERNAL_ERROR);
  EQ(CUBLAS_STATUS_NOT_SUPPORTED);
  EQ(CUBLAS_OP_N);
  EQ(CUBLAS_OP_T);
  EQ(CUDA_R_32F);
  EQ(CUDA_R_64F);
  EQ(CUDA_R_16F);
  EQ(CUDA_R_16BF);
  EQ(CUBLAS_COMPUTE_32F);
  EQ(CUBLAS_COMPUTE_32F_FAST_TF32);
  EQ(CUBLAS_COMPUTE_64F);
  EQ(CUBLASLT_MATMUL_DESC_COMPUTE_TYPE);
  EQ(CUBLASLT_MATMUL_DESC_SCALE_TYPE);
  EQ(CUBLASLT_MATMUL_DESC_TRANSA);
  EQ(CUBLASLT_MATMUL_DESC_TRANSB);
  EQ(CUBLASLT_MATMUL_DESC_EPILOGUE);
  EQ(CUBLASLT_MATMUL_DESC_BIAS_POINTER);
  EQ(CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_POINTER);
  EQ(CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_LD);
  EQ(CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE);
  EQ(CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT);
  EQ(CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET);
  EQ(CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES);
  EQ(CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES);
  EQ(CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES);
  EQ(CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES);
  EQ(CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES);
  EQ(CUBLASLT_EPILOGUE_DEFAULT);
  EQ(CUBLASLT_EPILOGUE_RELU);
  EQ(CUBLASLT_EPILOGUE_RELU_AUX);
  EQ(CUBLASLT_EPILOGUE_BIAS);
  EQ(CUBLASLT_EPILOGUE_RELU_BIAS);
  EQ(CUBLASLT_EPILOGUE_RELU_AUX_BIAS);
  EQ(CUBLASLT_EPILOGUE_DRELU);
  EQ(CUBLASLT_EPILOGUE_DRELU_BGRAD);
  EQ(CUBLASLT_EPILOGUE_GELU);
  EQ(CUBLASLT_EPILOGUE_GELU_AUX);
  EQ(CUBLASLT_EPILOGUE_GELU_BIAS);
  EQ(CUBLASLT_EPILOGUE_GELU_AUX_BIAS);
  EQ(CUBLASLT_EPILOGUE_DGELU);
  EQ(CUBLASLT_EPILOGUE_DGELU_BGRAD);
  checkEq("sizeof(cublasLtMatmulAlgo_t)", sizeof(ours::cublasLtMatmulAlgo_t), sizeof(::cublasLtMatmulAlgo_t));
  checkEq("sizeof(cublasLtMatmulHeuristicResult_t)", sizeof(ours::cublasLtMatmulHeuristicResult_t),
          sizeof(::cublasLtMatmulHeuristicResult_t));
  checkEq("offsetof(cublasLtMatmulHeuristicResult_t, workspaceSize)", offsetof(ours::cublasLtMatmulHeuristicResult_t, workspaceSize),
          offsetof(::cublasLtMatmulHeuristicResult_t, workspaceSize));
  checkEq("offsetof(cublasLtMatmulHeuristicResult_t, state)", offsetof(ours::cublasLtMatmulHeuristicResult_t, state),
          offsetof(::cublasLtMatmulHeuristicResult_t, state));
  checkEq("offsetof(cublasLtMatmulHeuristicResult_t, wavesCount)", offsetof(ours::cublasLtMatmulHeuristicResult_t, wavesCount),
          offsetof(::cublasLtMatmulHeuristicResult_t, wavesCount));
  SAME_ERASED_SIG(PFN_cublasLtCreate, cublasLtCreate);
  SAME_ERASED_SIG(PFN_cublasLtDestroy, cublasLtDestroy);
  SAME_ERASED_SIG(PFN_cublasLtGetVersion, cublasLtGetVersion);
  SAME_ERASED_SIG(PFN_cublasLtGetStatusName, cublasLtGetStatusName);
  SAME_ERASED_SIG(PFN_cublasLtGetStatusString, cublasLtGetStatusString);
  SAME_ERASED_SIG(PFN_cublasLtMatmulDescCreate, cublasLtMatmulDescCreate);
  SAME_ERASED_SIG(PFN_cublasLtMatmulDescDestroy, cublasLtMatmulDescDestroy);
  SAME_ERASED_SIG(PFN_cublasLtMatmulDescSetAttribute, cublasLtMatmulDescSetAttribute);
  SAME_ERASED_SIG(PFN_cublasLtMatrixLayoutCreate, cublasLtMatrixLayoutCreate);
  SAME_ERASED_SIG(PFN_cublasLtMatrixLayoutDestroy, cublasLtMatrixLayoutDestroy);
  SAME_ERASED_SIG(PFN_cublasLtMatrixLayoutSetAttribute, cublasLtMatrixLayoutSetAttribute);
  SAME_ERASED_SIG(PFN_cublasLtMatmulPreferenceCreate, cublasLtMatmulPreferenceCreate);
  SAME_ERASED_SIG(PFN_cublasLtMatmulPreferenceDestroy, cublasLtMatmulPreferenceDestroy);
  SAME_ERASED_SIG(PFN_cublasLtMatmulPreferenceSetAttribute, cublasLtMatmulPreferenceSetAttribute);
  SAME_ERASED_SIG(PFN_cublasLtMatmulAlgoGetHeuristic, cublasLtMatmulAlgoGetHeuristic);
  SAME_ERASED_SIG(PFN_cublasLtMatmul, cublasLtMatmul);
  std::printf("cublasLt.h: CUBLAS_VERSION %d\n", CUBLAS_VERSION);
}
#endif

int main() {
  checkCuda();
#ifdef RT_HAVE_CUBLASLT_H
  checkCublasLt();
  const char* cublas = "checked";
#else
  const char* cublas = "not checked (no cublasLt.h on the include path; set RINGTREE_CUBLAS_INCLUDE)";
#endif
#ifdef RT_HAVE_NCCL_H
  checkNccl();
  const char* nccl = "checked";
#else
  const char* nccl = "not checked (no nccl.h on the include path; set RINGTREE_NCCL_INCLUDE)";
#endif
  std::printf("ABI check: %d checks, %d mismatches; NCCL part %s; cuBLASLt part %s\n", checks, failures, nccl, cublas);
  return failures ? 1 : 0;
}
