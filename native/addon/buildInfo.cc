// TEMPORARY skeleton, replaced by the doctor/info work.
#include "addon/registry.h"
namespace ringtree::addon {
void registerBuildInfo(Napi::Env env, Napi::Object exports) {}
}  // namespace ringtree::addon
