// The CUDA driver API, loaded at run time with dlopen (see DESIGN.md: no CUDA
// runtime is linked, so one binary serves every driver and GPU-less hosts).
#pragma once

#include <mutex>
#include <string>
#include <vector>

#include "cuda/CudaApi.h"
#include "cuda/DynamicLibrary.h"

namespace ringtree::cuda {

class CudaDriver : public DynamicLibrary {
 public:
  // The process-wide driver. load() must have succeeded before use.
  static CudaDriver& instance();

  // Try each candidate (a file name for dlopen's own search, or a path) in
  // order; the first that opens and has every required entry point wins.
  // Idempotent: later calls return the first result.
  Status load(const std::vector<std::string>& candidates);
  int driverVersion() const { return driverVersion_; }
  bool viaGetProcAddress() const { return viaProcAddress_; }

  // A CUresult as a Status naming the call and the driver's own error name.
  Status check(CUresult r, const char* what) const;
  // Make the device's primary context current on this thread (retained once).
  Status makeCurrent(int device);

  PFN_cuInit cuInit = nullptr;
  PFN_cuDriverGetVersion cuDriverGetVersion = nullptr;
  PFN_cuDeviceGet cuDeviceGet = nullptr;
  PFN_cuDeviceGetCount cuDeviceGetCount = nullptr;
  PFN_cuDeviceGetName cuDeviceGetName = nullptr;
  PFN_cuDeviceGetAttribute cuDeviceGetAttribute = nullptr;
  PFN_cuDeviceTotalMem cuDeviceTotalMem = nullptr;
  PFN_cuDevicePrimaryCtxRetain cuDevicePrimaryCtxRetain = nullptr;
  PFN_cuDevicePrimaryCtxRelease cuDevicePrimaryCtxRelease = nullptr;
  PFN_cuCtxSetCurrent cuCtxSetCurrent = nullptr;
  PFN_cuStreamCreate cuStreamCreate = nullptr;
  PFN_cuStreamDestroy cuStreamDestroy = nullptr;
  PFN_cuStreamSynchronize cuStreamSynchronize = nullptr;
  PFN_cuStreamWaitEvent cuStreamWaitEvent = nullptr;
  PFN_cuEventCreate cuEventCreate = nullptr;
  PFN_cuEventRecord cuEventRecord = nullptr;
  PFN_cuEventQuery cuEventQuery = nullptr;
  PFN_cuEventDestroy cuEventDestroy = nullptr;
  PFN_cuEventElapsedTime cuEventElapsedTime = nullptr;  // optional (timed benchmarks)
  PFN_cuMemAlloc cuMemAlloc = nullptr;
  PFN_cuMemFree cuMemFree = nullptr;
  PFN_cuMemcpyHtoDAsync cuMemcpyHtoDAsync = nullptr;
  PFN_cuMemcpyDtoHAsync cuMemcpyDtoHAsync = nullptr;
  PFN_cuMemcpyDtoDAsync cuMemcpyDtoDAsync = nullptr;
  PFN_cuMemsetD8Async cuMemsetD8Async = nullptr;
  PFN_cuMemsetD16Async cuMemsetD16Async = nullptr;
  PFN_cuMemsetD32Async cuMemsetD32Async = nullptr;
  PFN_cuGetErrorName cuGetErrorName = nullptr;
  PFN_cuGetErrorString cuGetErrorString = nullptr;
  // Optional (probed; null where the driver lacks them).
  PFN_cuMemAllocAsync cuMemAllocAsync = nullptr;
  PFN_cuMemFreeAsync cuMemFreeAsync = nullptr;
  PFN_cuModuleLoadData cuModuleLoadData = nullptr;
  PFN_cuModuleGetFunction cuModuleGetFunction = nullptr;
  PFN_cuLaunchKernel cuLaunchKernel = nullptr;

 private:
  CudaDriver() = default;
  bool tryLoad(const std::string& candidate) override;
  Status afterLoad() override;  // cuInit
  void* resolve(void* handle, const char* name, int cudaVersion);

  int driverVersion_ = 0;
  bool viaProcAddress_ = false;
  PFN_cuGetProcAddress getProcAddress_ = nullptr;
  std::mutex contextsMutex_;
  std::vector<CUcontext> contexts_;  // retained primary context per device
};

}  // namespace ringtree::cuda
