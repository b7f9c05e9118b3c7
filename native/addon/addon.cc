// Module entry: the only place that assembles the exports. Each feature
// registers itself from its own file.
#include <napi.h>

#include "addon/registry.h"

namespace ringtree::addon {

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  registerBuildInfo(env, exports);
  registerReduceHooks(env, exports);
  registerHostMemory(env, exports);
  registerCommunicator(env, exports);
  registerCublasProbe(env, exports);
  registerGemm(env, exports);
  registerCuda(env, exports);
  return exports;
}

}  // namespace ringtree::addon

static Napi::Object InitModule(Napi::Env env, Napi::Object exports) {
  return ringtree::addon::Init(env, exports);
}

NODE_API_MODULE(ringtree, InitModule)
