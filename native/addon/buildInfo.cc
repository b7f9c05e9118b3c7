// buildInfo(): how this binary was built and what the CPU under it offers.
// `ringtree doctor` and info() report it; nothing here may fail or throw.
#include <sched.h>

#include <string>
#include <vector>

#include "addon/registry.h"
#include "core/reduce.h"
#include "cuda/KernelModule.h"

#ifndef RINGTREE_BUILD_SYSTEM
#define RINGTREE_BUILD_SYSTEM "unknown"
#endif

namespace ringtree::addon {
namespace {

std::string compilerDescription() {
#if defined(__clang__)
  return std::string("clang++ ") + __clang_version__;
#elif defined(__GNUC__)
  return std::string("g++ ") + __VERSION__;
#else
  return "unknown";
#endif
}

Napi::Array toStringArray(Napi::Env env, const std::vector<std::string>& items) {
  Napi::Array array = Napi::Array::New(env, items.size());
  for (size_t i = 0; i < items.size(); ++i) array.Set(static_cast<uint32_t>(i), items[i]);
  return array;
}

// CPUs in this thread's affinity mask (what taskset/cpusets allow), or -1
// when the kernel refuses to say. The TS side also reads
// /proc/self/status; the syscall is the authority when both exist.
int affinityCpuCount() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof(set), &set) != 0) return -1;
  return CPU_COUNT(&set);
}

Napi::Value BuildInfo(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object result = Napi::Object::New(env);
  result.Set("compiler", compilerDescription());
  result.Set("buildSystem", RINGTREE_BUILD_SYSTEM);
  result.Set("simdCompiled", toStringArray(env, compiledSimdLevels()));
  result.Set("simdCpu", toStringArray(env, cpuSimdLevels()));
  result.Set("simdActive", simdLevelName(activeSimdLevel()));
  result.Set("napiVersion", Napi::Number::New(env, NAPI_VERSION));
  result.Set("affinityCpus", Napi::Number::New(env, affinityCpuCount()));
  // The CUDA kernels nvcc compiled into this binary (scripts/build-kernels.sh).
  Napi::Object kernels = Napi::Object::New(env);
  kernels.Set("embedded", cuda::KernelModule::embedded());
  kernels.Set("architectures", cuda::KernelModule::architectures());
  kernels.Set("nvcc", cuda::KernelModule::nvccVersion());
  kernels.Set("reason", cuda::KernelModule::missingReason());
  result.Set("kernels", kernels);
  return result;
}

}  // namespace

void registerBuildInfo(Napi::Env env, Napi::Object exports) {
  exports.Set("buildInfo", Napi::Function::New(env, BuildInfo, "buildInfo"));
}

}  // namespace ringtree::addon
