// cublasProbe(candidates): finds cuBLAS (and cuBLASLt beside it) at run time
// and reads its version, for doctor/info(). Nothing here is needed to build:
// the one function called is declared from cuBLAS's public documentation.
#include <dlfcn.h>
#include <napi.h>

#include <string>
#include <vector>

#include "addon/registry.h"

namespace ringtree::addon {

namespace {

// cublasStatus_t cublasGetProperty(libraryPropertyType type, int* value);
// libraryPropertyType: MAJOR_VERSION = 0, MINOR_VERSION = 1, PATCH_LEVEL = 2.
using GetPropertyFn = int (*)(int, int*);

std::string siblingLt(const std::string& path) {
  // libcublas.so.12 -> libcublasLt.so.12, in the same folder.
  const std::string key = "libcublas.";
  size_t at = path.rfind(key);
  if (at == std::string::npos) return {};
  return path.substr(0, at) + "libcublasLt." + path.substr(at + key.size());
}

Napi::Value CublasProbe(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object out = Napi::Object::New(env);
  Napi::Array attempts = Napi::Array::New(env);
  out.Set("loaded", false);
  out.Set("path", env.Null());
  out.Set("version", env.Null());
  out.Set("ltPath", env.Null());
  if (!info[0].IsArray()) {
    Napi::TypeError::New(env, "cublasProbe(candidates) takes an array of paths").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  Napi::Array list = info[0].As<Napi::Array>();
  uint32_t tried = 0;
  for (uint32_t i = 0; i < list.Length(); i++) {
    std::string path = list.Get(i).ToString().Utf8Value();
    void* lib = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (!lib) {
      const char* err = dlerror();
      attempts.Set(tried++, path + ": " + (err ? err : "cannot load"));
      continue;
    }
    auto getProperty = reinterpret_cast<GetPropertyFn>(dlsym(lib, "cublasGetProperty"));
    if (!getProperty) {
      attempts.Set(tried++, path + ": no cublasGetProperty (not cuBLAS)");
      dlclose(lib);
      continue;
    }
    int major = -1, minor = -1, patch = -1;
    getProperty(0, &major);
    getProperty(1, &minor);
    getProperty(2, &patch);
    Dl_info where;
    std::string loaded = path;
    if (dladdr(reinterpret_cast<void*>(getProperty), &where) && where.dli_fname) loaded = where.dli_fname;
    out.Set("loaded", true);
    out.Set("path", loaded);
    out.Set("version", std::to_string(major) + "." + std::to_string(minor) + "." + std::to_string(patch));
    std::string lt = siblingLt(loaded);
    if (!lt.empty()) {
      void* ltLib = dlopen(lt.c_str(), RTLD_NOW | RTLD_LOCAL);
      if (ltLib) {
        out.Set("ltPath", lt);
        dlclose(ltLib);
      } else {
        const char* err = dlerror();
        attempts.Set(tried++, lt + ": " + (err ? err : "cannot load"));
      }
    }
    dlclose(lib);
    break;
  }
  out.Set("attempts", attempts);
  return out;
}

}  // namespace

void registerCublasProbe(Napi::Env env, Napi::Object exports) {
  exports.Set("cublasProbe", Napi::Function::New(env, CublasProbe, "cublasProbe"));
}

}  // namespace ringtree::addon
