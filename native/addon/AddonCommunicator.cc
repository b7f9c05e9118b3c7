// TEMPORARY skeleton, replaced by the CPU engine work.
#include "addon/registry.h"
namespace ringtree::addon {
void registerCommunicator(Napi::Env env, Napi::Object exports) {}
}  // namespace ringtree::addon
