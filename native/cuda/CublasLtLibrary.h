// cuBLASLt (with libcublas beside it), loaded at run time with dlopen on the
// first device GEMM. Candidates are libcublas paths (lib/device.ts
// cublasCandidates, the list doctor's probe uses); libcublasLt is taken from
// the same folder with the same soname version, as the wheels and the CUDA
// toolkit ship them together.
#pragma once

#include <string>
#include <vector>

#include "cuda/CublasLtApi.h"
#include "cuda/DynamicLibrary.h"

namespace ringtree::cuda {

class CublasLtLibrary : public DynamicLibrary {
 public:
  static CublasLtLibrary& instance();

  // Idempotent: later calls return the first result.
  Status load(const std::vector<std::string>& candidates);
  // cublasLtGetVersion(), e.g. 120903 for 12.9.3; 0 when not loaded.
  size_t version() const { return version_; }

  // A cublasStatus_t as a Status naming the call. NOT_SUPPORTED and
  // INVALID_VALUE are the caller's shape or layout (InvalidArgument);
  // everything else is Internal (BackendUnavailable for allocation failures).
  Status check(cublasStatus_t s, const char* what) const;

  PFN_cublasLtCreate create = nullptr;
  PFN_cublasLtDestroy destroy = nullptr;
  PFN_cublasLtGetVersion getVersion = nullptr;
  PFN_cublasLtMatmulDescCreate matmulDescCreate = nullptr;
  PFN_cublasLtMatmulDescDestroy matmulDescDestroy = nullptr;
  PFN_cublasLtMatmulDescSetAttribute matmulDescSetAttribute = nullptr;
  PFN_cublasLtMatrixLayoutCreate matrixLayoutCreate = nullptr;
  PFN_cublasLtMatrixLayoutDestroy matrixLayoutDestroy = nullptr;
  PFN_cublasLtMatrixLayoutSetAttribute matrixLayoutSetAttribute = nullptr;
  PFN_cublasLtMatmulPreferenceCreate preferenceCreate = nullptr;
  PFN_cublasLtMatmulPreferenceDestroy preferenceDestroy = nullptr;
  PFN_cublasLtMatmulPreferenceSetAttribute preferenceSetAttribute = nullptr;
  PFN_cublasLtMatmulAlgoGetHeuristic algoGetHeuristic = nullptr;
  PFN_cublasLtMatmul matmul = nullptr;
  // Optional (cuBLAS 11.4+): names for error messages.
  PFN_cublasLtGetStatusName getStatusName = nullptr;
  PFN_cublasLtGetStatusString getStatusString = nullptr;

 private:
  CublasLtLibrary() = default;
  bool tryLoad(const std::string& candidate) override;

  size_t version_ = 0;
};

}  // namespace ringtree::cuda
