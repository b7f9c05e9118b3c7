#include "cuda/DynamicLibrary.h"

#include <dlfcn.h>

namespace ringtree::cuda {

Status DynamicLibrary::loadOnce(const std::vector<std::string>& candidates, const std::string& notFound,
                                const char* remedy) {
  std::lock_guard<std::mutex> lk(mutex_);
  if (attempted_) return result_;
  attempted_ = true;
  for (const std::string& c : candidates) {
    if (!tryLoad(c)) continue;
    result_ = afterLoad();
    loaded_ = result_.isOk();
    return result_;
  }
  std::string tried;
  for (const std::string& a : attempts_) tried += "\n  - " + a;
  result_ = Status(StatusCode::BackendUnavailable, notFound + " Tried:" + tried, remedy);
  return result_;
}

void* DynamicLibrary::open(const std::string& file) {
  void* handle = dlopen(file.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (!handle) {
    const char* e = dlerror();
    attempts_.push_back(file + ": " + (e ? e : "dlopen failed"));
  }
  return handle;
}

std::string DynamicLibrary::fileOf(void* symbol, const std::string& fallback) {
  Dl_info info;
  if (symbol && dladdr(symbol, &info) && info.dli_fname && info.dli_fname[0]) return info.dli_fname;
  return fallback;
}

}  // namespace ringtree::cuda
