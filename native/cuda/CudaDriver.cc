#include "cuda/CudaDriver.h"

#include <dlfcn.h>

#include <cstdio>

namespace ringtree::cuda {

namespace {
const char* kDriverRemedy =
    "Install the NVIDIA driver (R450 or newer; CUDA 12 NCCL/cuBLAS wheels need R525+) so that libcuda.so.1 is on the "
    "loader path, or set RINGTREE_CUDA_DRIVER_PATH to its full path. Host arrays keep working on the CPU backend.";

}  // namespace

CudaDriver& CudaDriver::instance() {
  static CudaDriver* driver = new CudaDriver();  // never destroyed: worker threads may outlive statics
  return *driver;
}

void* CudaDriver::resolve(void* handle, const char* name, int cudaVersion) {
  // cuGetProcAddress hands out the entry point of the ABI version we ask for
  // (e.g. cuMemAlloc -> cuMemAlloc_v2), which dlsym cannot know.
  if (getProcAddress_) {
    void* fn = nullptr;
    if (getProcAddress_(name, &fn, cudaVersion, CU_GET_PROC_ADDRESS_DEFAULT) == CUDA_SUCCESS && fn) return fn;
  }
  std::string v2 = std::string(name) + "_v2";
  if (void* fn = dlsym(handle, v2.c_str())) return fn;
  return dlsym(handle, name);
}

bool CudaDriver::tryLoad(const std::string& candidate) {
  void* handle = open(candidate);
  if (!handle) return false;
  auto* version = reinterpret_cast<PFN_cuDriverGetVersion>(dlsym(handle, "cuDriverGetVersion"));
  int v = 0;
  if (!version || version(&v) != CUDA_SUCCESS) {
    attempts_.push_back(candidate + ": not a CUDA driver (cuDriverGetVersion missing or failing)");
    dlclose(handle);
    return false;
  }
  getProcAddress_ = reinterpret_cast<PFN_cuGetProcAddress>(dlsym(handle, "cuGetProcAddress"));
  // Ask for the CUDA 12.0 ABI, or the driver's own when it is older.
  const int abi = v < 12000 ? v : 12000;
  std::string missing;
#define RT_REQUIRE(fn) bind(fn, resolve(handle, #fn, abi), #fn, missing);
  RT_REQUIRE(cuInit) RT_REQUIRE(cuDriverGetVersion) RT_REQUIRE(cuDeviceGet) RT_REQUIRE(cuDeviceGetCount)
  RT_REQUIRE(cuDeviceGetName) RT_REQUIRE(cuDeviceGetAttribute) RT_REQUIRE(cuDeviceTotalMem)
  RT_REQUIRE(cuDevicePrimaryCtxRetain) RT_REQUIRE(cuDevicePrimaryCtxRelease) RT_REQUIRE(cuCtxSetCurrent)
  RT_REQUIRE(cuStreamCreate) RT_REQUIRE(cuStreamDestroy) RT_REQUIRE(cuStreamSynchronize) RT_REQUIRE(cuStreamWaitEvent)
  RT_REQUIRE(cuEventCreate) RT_REQUIRE(cuEventRecord) RT_REQUIRE(cuEventQuery) RT_REQUIRE(cuEventDestroy)
  RT_REQUIRE(cuMemAlloc) RT_REQUIRE(cuMemFree) RT_REQUIRE(cuMemcpyHtoDAsync) RT_REQUIRE(cuMemcpyDtoHAsync)
  RT_REQUIRE(cuMemcpyDtoDAsync) RT_REQUIRE(cuMemsetD8Async) RT_REQUIRE(cuMemsetD16Async) RT_REQUIRE(cuMemsetD32Async)
  RT_REQUIRE(cuGetErrorName) RT_REQUIRE(cuGetErrorString)
#undef RT_REQUIRE
  if (!missing.empty()) {
    attempts_.push_back(candidate + ": missing " + missing);
    dlclose(handle);
    getProcAddress_ = nullptr;
    return false;
  }
#define RT_OPTIONAL(fn) fn = reinterpret_cast<decltype(fn)>(resolve(handle, #fn, abi));
  RT_OPTIONAL(cuMemAllocAsync) RT_OPTIONAL(cuMemFreeAsync) RT_OPTIONAL(cuModuleLoadData)
  RT_OPTIONAL(cuModuleGetFunction) RT_OPTIONAL(cuLaunchKernel) RT_OPTIONAL(cuEventElapsedTime)
#undef RT_OPTIONAL
  viaProcAddress_ = getProcAddress_ != nullptr;
  driverVersion_ = v;
  path_ = fileOf(reinterpret_cast<void*>(version), candidate);
  return true;
}

Status CudaDriver::load(const std::vector<std::string>& candidates) {
  return loadOnce(candidates, "the CUDA driver (libcuda.so.1) was not found.", kDriverRemedy);
}

Status CudaDriver::afterLoad() {
  CUresult r = cuInit(0);
  if (r == CUDA_SUCCESS) return Status::ok();
  return Status(StatusCode::BackendUnavailable,
                "the CUDA driver at " + path_ + " loaded but cuInit failed: " + check(r, "cuInit").message(),
                r == CUDA_ERROR_NO_DEVICE ? "This host has no usable NVIDIA GPU (check nvidia-smi and "
                                            "CUDA_VISIBLE_DEVICES). Host arrays keep working."
                                          : kDriverRemedy);
}

Status CudaDriver::check(CUresult r, const char* what) const {
  if (r == CUDA_SUCCESS) return Status::ok();
  const char* name = nullptr;
  const char* text = nullptr;
  if (cuGetErrorName) cuGetErrorName(r, &name);
  if (cuGetErrorString) cuGetErrorString(r, &text);
  std::string msg = std::string(what) + " failed: " + (name ? name : "CUDA error " + std::to_string(r));
  if (text) msg += std::string(" (") + text + ")";
  StatusCode code = r == CUDA_ERROR_INVALID_VALUE ? StatusCode::InvalidArgument
                    : r == CUDA_ERROR_OUT_OF_MEMORY ? StatusCode::BackendUnavailable
                                                    : StatusCode::Internal;
  return Status(code, msg, r == CUDA_ERROR_OUT_OF_MEMORY ? "Free device memory (dispose() unused DeviceArrays) or use a smaller size." : "");
}

Status CudaDriver::makeCurrent(int device) {
  if (!loaded()) return Status(StatusCode::BackendUnavailable, "the CUDA driver is not loaded", kDriverRemedy);
  CUcontext ctx = nullptr;
  {
    std::lock_guard<std::mutex> lk(contextsMutex_);
    if (device < 0) return Status(StatusCode::InvalidArgument, "device ordinal must be >= 0");
    if (size_t(device) >= contexts_.size()) contexts_.resize(size_t(device) + 1, nullptr);
    if (!contexts_[size_t(device)]) {
      int count = 0;
      RT_CHECK(check(cuDeviceGetCount(&count), "cuDeviceGetCount"));
      if (device >= count) {
        return Status(StatusCode::InvalidArgument,
                      "device " + std::to_string(device) + " does not exist (this host has " + std::to_string(count) +
                          " GPU" + (count == 1 ? "" : "s") + ")");
      }
      CUdevice dev = 0;
      RT_CHECK(check(cuDeviceGet(&dev, device), "cuDeviceGet"));
      RT_CHECK(check(cuDevicePrimaryCtxRetain(&contexts_[size_t(device)], dev), "cuDevicePrimaryCtxRetain"));
    }
    ctx = contexts_[size_t(device)];
  }
  return check(cuCtxSetCurrent(ctx), "cuCtxSetCurrent");
}

}  // namespace ringtree::cuda
