// allocHost(bytes): host memory for collectives, as MPI_Alloc_mem and
// ncclMemAlloc give: an ArrayBuffer on its own mapping, aligned to 2 MiB and
// advised for transparent huge pages (MADV_HUGEPAGE), so every page of it,
// from byte 0, can be a huge page (HugePages.h says why that is faster).
// Zero-filled like any new ArrayBuffer. The mapping is unmapped when V8
// collects the buffer; V8 is told of its size so that collection keeps pace.
#include <errno.h>
#include <sys/mman.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <string>

#include <napi.h>

#include "addon/registry.h"
#include "cpu/HugePages.h"

namespace ringtree::addon {

namespace {

constexpr size_t kHugePage = size_t(2) << 20;

struct Mapping {
  void* base;
  size_t bytes;
};

Napi::Value AllocHost(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsNumber()) {
    Napi::TypeError::New(env, "allocHost: `bytes` must be a number").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  const double want = info[0].As<Napi::Number>().DoubleValue();
  if (!(want >= 0) || want > double(uint64_t(1) << 48) || want != double(uint64_t(want))) {
    Napi::RangeError::New(env, "allocHost: `bytes` must be a whole number from 0 to 2^48").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  const size_t bytes = size_t(want);
  // Whole huge pages, mapped with one spare so that the start can be aligned.
  const size_t mapped = (std::max<size_t>(bytes, 1) + kHugePage - 1) / kHugePage * kHugePage;
  void* raw = mmap(nullptr, mapped + kHugePage, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (raw == MAP_FAILED) {
    Napi::Error::New(env, std::string("allocHost: mmap of ") + std::to_string(mapped) + " bytes failed: " +
                              strerror(errno))
        .ThrowAsJavaScriptException();
    return env.Undefined();
  }
  const uintptr_t start = (reinterpret_cast<uintptr_t>(raw) + kHugePage - 1) & ~uintptr_t(kHugePage - 1);
  const size_t head = start - reinterpret_cast<uintptr_t>(raw);
  if (head) munmap(raw, head);
  if (kHugePage - head) munmap(reinterpret_cast<char*>(start) + mapped, kHugePage - head);
  void* base = reinterpret_cast<void*>(start);
  // Advice only: without THP the pages are small. Noted as huge for the
  // engine's path choices (HugePages::covers), which also check the kernel.
  if (madvise(base, mapped, MADV_HUGEPAGE) == 0) HugePages::noteMapping(base, mapped, true);
  auto* m = new Mapping{base, mapped};
  Napi::MemoryManagement::AdjustExternalMemory(env, int64_t(mapped));
  return Napi::ArrayBuffer::New(
      env, base, bytes,
      [](Napi::Env e, void*, Mapping* hint) {
        HugePages::noteMapping(hint->base, hint->bytes, false);
        munmap(hint->base, hint->bytes);
        Napi::MemoryManagement::AdjustExternalMemory(e, -int64_t(hint->bytes));
        delete hint;
      },
      m);
}

}  // namespace

void registerHostMemory(Napi::Env env, Napi::Object exports) {
  exports.Set("allocHost", Napi::Function::New(env, AllocHost, "allocHost"));
}

}  // namespace ringtree::addon
