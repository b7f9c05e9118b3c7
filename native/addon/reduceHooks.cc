// TEMPORARY skeleton, replaced by the reduction-kernel work.
#include "addon/registry.h"
namespace ringtree::addon {
void registerReduceHooks(Napi::Env env, Napi::Object exports) {}
}  // namespace ringtree::addon
