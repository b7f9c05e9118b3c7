#include "cuda/CublasLtLibrary.h"

#include <dlfcn.h>

namespace ringtree::cuda {

namespace {
const char* kCublasRemedy =
    "Install cuBLAS: `pip install nvidia-cublas-cu12` (ringtree finds pip's nvidia/cublas/lib), the CUDA toolkit's "
    "libraries (CUDA_HOME), or set RINGTREE_CUBLAS_PATH to libcublas.so.12/.13 or its folder (libcublasLt must sit "
    "beside it). Host-array GEMM keeps working on the CPU BLAS.";

// libcublas.so.12 -> libcublasLt.so.12, in the same folder (or a bare name for dlopen's search).
std::string siblingLt(const std::string& path) {
  const std::string key = "libcublas.";
  size_t at = path.rfind(key);
  if (at == std::string::npos) return {};
  return path.substr(0, at) + "libcublasLt." + path.substr(at + key.size());
}
}  // namespace

CublasLtLibrary& CublasLtLibrary::instance() {
  static CublasLtLibrary* lib = new CublasLtLibrary();  // never destroyed: worker threads may outlive statics
  return *lib;
}

bool CublasLtLibrary::tryLoad(const std::string& candidate) {
  // libcublas itself is opened first so that a candidate names one
  // installation (and its libcublasLt dependency resolves from there).
  void* blas = open(candidate);
  if (!blas) return false;
  std::string ltName = siblingLt(candidate);
  if (ltName.empty()) attempts_.push_back(candidate + " (no libcublasLt name): not a libcublas file name");
  void* handle = ltName.empty() ? nullptr : open(ltName);
  if (!handle) {
    dlclose(blas);
    return false;
  }
  std::string missing;
#define RT_REQUIRE(field, sym) bind(field, dlsym(handle, sym), sym, missing);
  RT_REQUIRE(create, "cublasLtCreate") RT_REQUIRE(destroy, "cublasLtDestroy") RT_REQUIRE(getVersion, "cublasLtGetVersion")
  RT_REQUIRE(matmulDescCreate, "cublasLtMatmulDescCreate") RT_REQUIRE(matmulDescDestroy, "cublasLtMatmulDescDestroy")
  RT_REQUIRE(matmulDescSetAttribute, "cublasLtMatmulDescSetAttribute")
  RT_REQUIRE(matrixLayoutCreate, "cublasLtMatrixLayoutCreate") RT_REQUIRE(matrixLayoutDestroy, "cublasLtMatrixLayoutDestroy")
  RT_REQUIRE(matrixLayoutSetAttribute, "cublasLtMatrixLayoutSetAttribute")
  RT_REQUIRE(preferenceCreate, "cublasLtMatmulPreferenceCreate")
  RT_REQUIRE(preferenceDestroy, "cublasLtMatmulPreferenceDestroy")
  RT_REQUIRE(preferenceSetAttribute, "cublasLtMatmulPreferenceSetAttribute")
  RT_REQUIRE(algoGetHeuristic, "cublasLtMatmulAlgoGetHeuristic") RT_REQUIRE(matmul, "cublasLtMatmul")
#undef RT_REQUIRE
  if (!missing.empty()) {
    attempts_.push_back(ltName + ": missing " + missing);
    dlclose(handle);
    dlclose(blas);
    return false;
  }
  getStatusName = reinterpret_cast<PFN_cublasLtGetStatusName>(dlsym(handle, "cublasLtGetStatusName"));
  getStatusString = reinterpret_cast<PFN_cublasLtGetStatusString>(dlsym(handle, "cublasLtGetStatusString"));
  version_ = getVersion();
  path_ = fileOf(reinterpret_cast<void*>(matmul), ltName);
  return true;
}

Status CublasLtLibrary::load(const std::vector<std::string>& candidates) {
  return loadOnce(candidates,
                  "cuBLAS/cuBLASLt (libcublas.so + libcublasLt.so, CUDA 12 or 13) was not found, so device-array GEMM "
                  "is unavailable.",
                  kCublasRemedy);
}

Status CublasLtLibrary::check(cublasStatus_t s, const char* what) const {
  if (s == CUBLAS_STATUS_SUCCESS) return Status::ok();
  const char* name = getStatusName ? getStatusName(s) : nullptr;
  const char* text = getStatusString ? getStatusString(s) : nullptr;
  std::string msg = std::string(what) + " failed: " + (name ? name : "cublasStatus_t " + std::to_string(s));
  if (text && (!name || std::string(text) != name)) msg += std::string(" (") + text + ")";
  StatusCode code = s == CUBLAS_STATUS_NOT_SUPPORTED || s == CUBLAS_STATUS_INVALID_VALUE ? StatusCode::InvalidArgument
                    : s == CUBLAS_STATUS_ALLOC_FAILED                                    ? StatusCode::BackendUnavailable
                                                                                          : StatusCode::Internal;
  return Status(code, msg);
}

}  // namespace ringtree::cuda
