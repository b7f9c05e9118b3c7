// Node-API face of CPU GEMM: gemm() (asynchronous, on the GEMM worker
// thread), gemmSync() (on the calling thread), blasInfo(), and a test hook
// that forces the portable fallback. Completions come back through one
// completion channel per environment, unref'd while nothing is pending so
// that an idle process exits.
#include <napi.h>

#include <algorithm>
#include <cstdio>
#include <memory>
#include <unordered_map>
#include <utility>
#include <vector>

#include "addon/CompletionChannel.h"
#include "addon/registry.h"
#include "addon/StatusJs.h"
#include "cpu/gemm/BlasLibrary.h"
#include "cpu/gemm/GemmRunner.h"
#include "cpu/gemm/GemmWorker.h"

namespace ringtree::addon {

namespace {

bool viewData(Napi::Value v, void** data, size_t* bytes) {
  if (!v.IsTypedArray()) return false;
  Napi::TypedArray ta = v.As<Napi::TypedArray>();
  Napi::ArrayBuffer ab = ta.ArrayBuffer();
  *data = static_cast<char*>(ab.Data()) + ta.ByteOffset();
  *bytes = ta.ByteLength();
  return true;
}

// The packed descriptor (lib/gemm.ts, GEMM_DESC): a Float64Array of these
// fields in this order. Reading 15 named properties cost ~1 us per call (each
// name internalized again); a small gemmSync took 3.1 us in all.
enum GemmField { kDtype, kTransA, kTransB, kM, kN, kK, kLda, kLdb, kLdc, kBatch, kStrideA, kStrideB, kStrideC,
                 kAlpha, kBeta, kGemmFields };

// Unpacks (desc, a, b, c) into d; desc is the packed Float64Array. On
// failure throws a JS TypeError and returns false; sizes are checked later by
// validateGemm.
bool parseGemm(const Napi::CallbackInfo& info, GemmDesc* d) {
  Napi::Env env = info.Env();
  if (!info[0].IsTypedArray() || info[0].As<Napi::TypedArray>().TypedArrayType() != napi_float64_array ||
      info[0].As<Napi::TypedArray>().ElementLength() < kGemmFields) {
    Napi::TypeError::New(env, "gemm: the descriptor must be a Float64Array of 15 numbers").ThrowAsJavaScriptException();
    return false;
  }
  double f[kGemmFields];
  const double* p = info[0].As<Napi::Float64Array>().Data();
  std::copy(p, p + kGemmFields, f);
  const int dtype = f[kDtype] >= 0 && f[kDtype] < kDTypeCount ? int(f[kDtype]) : -1;
  if (dtype < 0 || !gemmDtypeSupported(DType(dtype))) {
    Napi::TypeError::New(env, "gemm: unsupported dtype code").ThrowAsJavaScriptException();
    return false;
  }
  d->dtype = DType(dtype);
  d->transA = f[kTransA] != 0;
  d->transB = f[kTransB] != 0;
  // NaN or out of int64 range: -1, which validateGemm rejects.
  auto count = [&](GemmField i) { return f[i] >= -9.0e18 && f[i] <= 9.0e18 ? int64_t(f[i]) : int64_t(-1); };
  d->m = count(kM);
  d->n = count(kN);
  d->k = count(kK);
  d->lda = count(kLda);
  d->ldb = count(kLdb);
  d->ldc = count(kLdc);
  d->batch = count(kBatch);
  d->strideA = count(kStrideA);
  d->strideB = count(kStrideB);
  d->strideC = count(kStrideC);
  d->alpha = f[kAlpha];
  d->beta = f[kBeta];
  void* a = nullptr;
  void* b = nullptr;
  void* c = nullptr;
  if (!viewData(info[1], &a, &d->aBytes) || !viewData(info[2], &b, &d->bBytes) || !viewData(info[3], &c, &d->cBytes)) {
    Napi::TypeError::New(env, "gemm: a, b and c must be TypedArrays").ThrowAsJavaScriptException();
    return false;
  }
  d->a = a;
  d->b = b;
  d->c = c;
  return true;
}

// Per-environment state: the worker, the thread-safe function, and the JS
// objects each pending job keeps alive until it settles.
class GemmContext {
 public:
  explicit GemmContext(Napi::Env env) {
    napi_add_env_cleanup_hook(env, &GemmContext::CleanupHook, this);
  }

  Napi::Value Gemm(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    GemmDesc d;
    if (!parseGemm(info, &d)) return env.Undefined();
    if (!info[4].IsFunction()) {
      Napi::TypeError::New(env, "gemm: callback must be a function").ThrowAsJavaScriptException();
      return env.Undefined();
    }
    Napi::Function callback = info[4].As<Napi::Function>();
    // Bad sizes settle through the callback like every other failure.
    Status s = validateGemm(d);
    if (s.isOk()) s = EnsureStarted(env);
    if (!s.isOk()) {
      callback.Call({failureObject(env, s)});
      return env.Undefined();
    }
    const uint64_t id = nextId_++;
    Pending p;
    p.callback = Napi::Persistent(callback);
    p.a = Napi::Persistent(info[1].As<Napi::Object>());
    p.b = Napi::Persistent(info[2].As<Napi::Object>());
    p.c = Napi::Persistent(info[3].As<Napi::Object>());
    pending_.emplace(id, std::move(p));
    if (pending_.size() == 1) completions_->ref();  // pending work keeps the process alive
    s = worker_->submit(id, d);
    if (!s.isOk()) {
      pending_.erase(id);
      if (pending_.empty()) completions_->unref();
      callback.Call({failureObject(env, s)});
    }
    return env.Undefined();
  }

  Napi::Value GemmSync(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    GemmDesc d;
    if (!parseGemm(info, &d)) return env.Undefined();
    Status s = runGemm(d);
    return s.isOk() ? env.Null() : Napi::Value(failureObject(env, s));
  }

 private:
  struct Pending {
    Napi::FunctionReference callback;
    Napi::ObjectReference a, b, c;
  };
  using Done = std::pair<uint64_t, Status>;  // a job's id and how it ended

  Status EnsureStarted(Napi::Env env) {
    if (closed_) return Status(StatusCode::Aborted, "gemm: the environment is shutting down");
    if (worker_) return Status::ok();
    completions_ = std::make_unique<CompletionChannel<Done>>(
        env, "ringtree-gemm-completions", [this](Napi::Env e, std::vector<Done>& batch) { Deliver(e, batch); });
    worker_ = std::make_unique<GemmWorker>([this](uint64_t id, const Status& st) { completions_->post({id, st}); });
    return Status::ok();
  }

  // JS thread: settle every completed job, then let go of its arrays.
  void Deliver(Napi::Env env, std::vector<Done>& batch) {
    for (auto& [id, status] : batch) {
      auto it = pending_.find(id);
      if (it == pending_.end()) continue;
      Napi::HandleScope scope(env);
      Pending p = std::move(it->second);
      pending_.erase(it);
      if (pending_.empty()) completions_->unref();
      Napi::Value arg = status.isOk() ? env.Null() : Napi::Value(failureObject(env, status));
      p.callback.Value().Call({arg});
      if (env.IsExceptionPending()) {
        Napi::Error e = env.GetAndClearPendingException();
        std::fprintf(stderr, "ringtree: a gemm completion callback threw: %s\n", e.Message().c_str());
      }
    }
  }

  // Environment teardown: finish the running job (its arrays are still
  // referenced), drop the queued ones, close the channel.
  static void CleanupHook(void* arg) {
    auto* self = static_cast<GemmContext*>(arg);
    self->closed_ = true;
    if (self->worker_) self->worker_->stop();
    if (self->completions_) self->completions_->close();
    delete self;
  }

  std::unique_ptr<CompletionChannel<Done>> completions_;  // made with the worker
  std::unique_ptr<GemmWorker> worker_;
  bool closed_ = false;
  uint64_t nextId_ = 1;
  std::unordered_map<uint64_t, Pending> pending_;
};

Napi::Value BlasInfo(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const BlasLibrary& blas = BlasLibrary::instance();
  const bool fallback = gemmUsesFallback();
  Napi::Object o = Napi::Object::New(env);
  o.Set("library", fallback ? std::string("fallback") : blas.path());
  o.Set("vendor", BlasLibrary::vendorName(fallback ? BlasLibrary::Vendor::Fallback : blas.vendor()));
  o.Set("config", fallback || blas.config().empty() ? env.Null() : Napi::Value(Napi::String::New(env, blas.config())));
  o.Set("threads", Napi::Number::New(env, fallback ? 1 : blas.threads()));
  // Why the fallback runs: RINGTREE_BLAS=fallback, the failed attempts, or the test hook.
  o.Set("forced", Napi::Boolean::New(env, blas.forcedFallback()));
  o.Set("error", blas.available() ? env.Null() : Napi::Value(Napi::String::New(env, blas.error())));
  return o;
}

Napi::Value SetGemmFallbackForTest(const Napi::CallbackInfo& info) {
  setGemmFallbackForced(info[0].ToBoolean());
  return Napi::Boolean::New(info.Env(), gemmUsesFallback());
}

}  // namespace

void registerGemm(Napi::Env env, Napi::Object exports) {
  auto* context = new GemmContext(env);  // deleted by its environment cleanup hook
  exports.Set("gemm", Napi::Function::New(
                          env, [context](const Napi::CallbackInfo& info) { return context->Gemm(info); }, "gemm"));
  exports.Set("gemmSync",
              Napi::Function::New(
                  env, [context](const Napi::CallbackInfo& info) { return context->GemmSync(info); }, "gemmSync"));
  exports.Set("blasInfo", Napi::Function::New(env, BlasInfo, "blasInfo"));
  exports.Set("setGemmFallbackForTest", Napi::Function::New(env, SetGemmFallbackForTest, "setGemmFallbackForTest"));
}

}  // namespace ringtree::addon
