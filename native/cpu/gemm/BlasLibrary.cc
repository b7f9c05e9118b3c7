#include "cpu/gemm/BlasLibrary.h"

#include <dlfcn.h>

#include <cstdlib>
#include <cstring>

namespace ringtree {

namespace {

const char* envOrEmpty(const char* name) {
  const char* v = std::getenv(name);
  return v ? v : "";
}

}  // namespace

const BlasLibrary& BlasLibrary::instance() {
  // A function-local static: initialized once, thread-safe, and deliberately
  // never destroyed (OpenBLAS's threads may outlive static destructors).
  static const BlasLibrary* library = new BlasLibrary();
  return *library;
}

const char* BlasLibrary::vendorName(Vendor v) {
  switch (v) {
    case Vendor::OpenBlas: return "openblas";
    case Vendor::Reference: return "reference";
    case Vendor::Fallback: return "fallback";
  }
  return "fallback";
}

BlasLibrary::BlasLibrary() {
  if (std::strcmp(envOrEmpty("RINGTREE_BLAS"), "fallback") == 0) {
    forced_ = true;
    error_ = "RINGTREE_BLAS=fallback";
    return;
  }
  std::string tried;
  const std::string override = envOrEmpty("RINGTREE_BLAS_PATH");
  // An explicit path is the user's choice: when it fails we say so rather
  // than silently loading some other BLAS.
  if (!override.empty()) {
    std::string why;
    if (tryOpen(override, &why)) return;
    error_ = "RINGTREE_BLAS_PATH=" + override + ": " + why;
    return;
  }
  for (const char* name : {"libopenblas.so.0", "libopenblas.so", "libblas.so.3"}) {
    std::string why;
    if (tryOpen(name, &why)) return;
    if (!tried.empty()) tried += "; ";
    tried += std::string(name) + ": " + why;
  }
  error_ = tried;
}

bool BlasLibrary::tryOpen(const std::string& name, std::string* why) {
  dlerror();
  void* handle = dlopen(name.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (!handle) {
    const char* e = dlerror();
    *why = e ? e : "dlopen failed";
    return false;
  }
  auto s = reinterpret_cast<CblasSgemm>(dlsym(handle, "cblas_sgemm"));
  auto d = reinterpret_cast<CblasDgemm>(dlsym(handle, "cblas_dgemm"));
  if (!s || !d) {
    *why = "does not export cblas_sgemm/cblas_dgemm";
    dlclose(handle);
    return false;
  }
  sgemm = s;
  dgemm = d;
  Dl_info where;
  path_ = (dladdr(reinterpret_cast<void*>(s), &where) != 0 && where.dli_fname) ? where.dli_fname : name;
  // libblas.so.3 may be OpenBLAS's own CBLAS wrapper: these resolve through
  // its dependency then, and it is OpenBLAS that runs.
  auto getConfig = reinterpret_cast<const char* (*)()>(dlsym(handle, "openblas_get_config"));
  getNumThreads_ = reinterpret_cast<int (*)()>(dlsym(handle, "openblas_get_num_threads"));
  if (getConfig) {
    vendor_ = Vendor::OpenBlas;
    const char* c = getConfig();
    config_ = c ? c : "";
  } else {
    vendor_ = Vendor::Reference;
  }
  // The handle stays open for the life of the process.
  return true;
}

int BlasLibrary::threads() const {
  if (!available()) return 1;
  if (getNumThreads_) {
    int n = getNumThreads_();
    return n > 0 ? n : 1;
  }
  return 1;
}

}  // namespace ringtree
