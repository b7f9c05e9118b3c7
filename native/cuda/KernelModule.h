// The CUDA kernels ringtree embeds (native/cuda/kernels/*.cu, compiled by nvcc
// at build time into fatbins; scripts/build-kernels.sh), loaded with
// cuModuleLoadData once per device context, lazily, and launched on the
// caller's stream. A build without nvcc embeds none: every launch then fails
// with BackendUnavailable naming nvcc and the fix, and nothing else changes.
#pragma once

#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "core/status.h"
#include "cuda/CudaApi.h"

namespace ringtree::cuda {

class KernelModule {
 public:
  // Build facts (for buildInfo()): whether images were embedded, which
  // architectures, the nvcc release, and why not when they were not.
  static bool embedded();
  static const char* architectures();
  static const char* nvccVersion();
  static const char* missingReason();

  static KernelModule& instance();

  // Load the modules on `device` (making its context current on this thread)
  // and look `name` up. Called on the JS thread before an op is queued, so a
  // missing kernel is a typed error of that call, never a failure of the
  // device stream that would poison later copies.
  Status prepare(int device, const char* name);

  // out[i] = cast(in[i] * scale) etc.: `name` is a kernel taking
  // (const void* in, void* out, uint64_t count, float scale). count 0 launches nothing.
  Status launchMap(int device, CUstream stream, const char* name, CUdeviceptr in, CUdeviceptr out, uint64_t count,
                   float scale);
  // dst[i] = bits for 8-byte elements (ringtree_fill_u64).
  Status launchFill64(int device, CUstream stream, CUdeviceptr dst, uint64_t count, uint64_t bits);

 private:
  KernelModule() = default;
  // The function on `device`, loading the modules of that context on first use.
  Status function(int device, const char* name, CUfunction* out);
  Status launch(int device, CUstream stream, const char* name, uint64_t count, void** args);

  std::mutex mutex_;
  std::map<int, std::vector<CUmodule>> modules_;            // per device (its primary context)
  std::map<int, Status> loadFailures_;                      // a device whose modules failed to load
  std::map<std::pair<int, std::string>, CUfunction> functions_;
};

}  // namespace ringtree::cuda
