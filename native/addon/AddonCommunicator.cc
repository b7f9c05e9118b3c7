// Node-API face of the CPU engine: argument unpacking, buffer pinning,
// Promise plumbing through one completion channel (batched completions).
#include <napi.h>

#include <unistd.h>

#include <cstdio>
#include <memory>
#include <mutex>
#include <unordered_map>
#include <vector>

#include "addon/CompletionChannel.h"
#include "addon/registry.h"
#include "addon/StatusJs.h"
#include "cpu/Engine.h"

namespace ringtree::addon {

namespace {

bool viewData(Napi::Value v, void** data, size_t* bytes) {
  if (v.IsTypedArray()) {
    Napi::TypedArray ta = v.As<Napi::TypedArray>();
    Napi::ArrayBuffer ab = ta.ArrayBuffer();
    *data = static_cast<char*>(ab.Data()) + ta.ByteOffset();
    *bytes = ta.ByteLength();
    return true;
  }
  if (v.IsDataView()) {
    Napi::DataView dv = v.As<Napi::DataView>();
    *data = static_cast<char*>(dv.ArrayBuffer().Data()) + dv.ByteOffset();
    *bytes = dv.ByteLength();
    return true;
  }
  return false;
}

int64_t getInt(Napi::Object o, const char* key, int64_t fallback) {
  Napi::Value v = o.Get(key);
  return v.IsNumber() ? v.As<Napi::Number>().Int64Value() : fallback;
}

}  // namespace

class AddonCommunicator : public Napi::ObjectWrap<AddonCommunicator> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "Communicator",
                       {
                           InstanceMethod("start", &AddonCommunicator::Start),
                           InstanceMethod("addTcpPeer", &AddonCommunicator::AddTcpPeer),
                           InstanceMethod("unlink", &AddonCommunicator::Unlink),
                           InstanceMethod("submit", &AddonCommunicator::Submit),
                           InstanceMethod("submitGroup", &AddonCommunicator::SubmitGroup),
                           InstanceMethod("runSync", &AddonCommunicator::RunSync),
                           InstanceMethod("setSyncClock", &AddonCommunicator::SetSyncClock),
                           InstanceMethod("flush", &AddonCommunicator::Flush),
                           InstanceMethod("abort", &AddonCommunicator::Abort),
                           InstanceMethod("destroy", &AddonCommunicator::Destroy),
                           InstanceMethod("failure", &AddonCommunicator::Failure),
                           InstanceMethod("peerStates", &AddonCommunicator::PeerStates),
                           InstanceMethod("stats", &AddonCommunicator::Stats),
                           InstanceMethod("resetStats", &AddonCommunicator::ResetStats),
                           InstanceMethod("outboxBytes", &AddonCommunicator::OutboxBytes),
                           InstanceMethod("hugePages", &AddonCommunicator::HugePages),
                       });
  }

  explicit AddonCommunicator(const Napi::CallbackInfo& info) : Napi::ObjectWrap<AddonCommunicator>(info) {
    Napi::Env env = info.Env();
    if (!info[0].IsObject()) {
      Napi::TypeError::New(env, "Communicator(options): options must be an object").ThrowAsJavaScriptException();
      return;
    }
    Napi::Object o = info[0].As<Napi::Object>();
    EngineOptions opts;
    opts.rank = int(getInt(o, "rank", 0));
    opts.size = int(getInt(o, "size", 1));
    Napi::Value name = o.Get("shmName");
    opts.shmName = name.IsString() ? name.As<Napi::String>().Utf8Value() : std::string();
    opts.create = o.Get("create").ToBoolean();
    opts.slotBytes = uint64_t(getInt(o, "slotBytes", int64_t(opts.slotBytes)));
    opts.slots = uint32_t(getInt(o, "slots", opts.slots));
    opts.outboxBytes = uint64_t(getInt(o, "outboxBytes", int64_t(opts.outboxBytes)));
    opts.chunkBytes = uint64_t(getInt(o, "chunkBytes", int64_t(opts.chunkBytes)));
    opts.spin = o.Get("spin").ToBoolean();
    if (Napi::Value h = o.Get("hugePages"); h.IsBoolean()) opts.hugePages = h.As<Napi::Boolean>().Value();
    opts.holdCompletions = o.Get("holdCompletions").ToBoolean();
    Napi::Value local = o.Get("localRanks");
    if (local.IsArray()) {
      Napi::Array a = local.As<Napi::Array>();
      for (uint32_t i = 0; i < a.Length(); i++) opts.localRanks.push_back(a.Get(i).ToNumber().Int32Value());
    }
    opts.heartbeatTimeoutMs = getInt(o, "heartbeatTimeoutMs", opts.heartbeatTimeoutMs);
    Napi::Value fault = o.Get("fault");
    if (fault.IsObject()) {
      Napi::Object f = fault.As<Napi::Object>();
      OpKind k;
      if (parseOpKind(f.Get("op").ToString().Utf8Value(), &k)) {
        opts.faultArmed = true;
        opts.faultOp = k;
        opts.faultSeq = uint64_t(getInt(f, "seq", 0));
        opts.faultStop = f.Get("stop").ToBoolean().Value();
      }
    }
    Status s = Engine::create(opts, &engine_);
    if (!s.isOk()) {
      throwStatus(env, s);
      return;
    }
    size_ = opts.size;
    rank_ = opts.rank;
    // The hot paths (Raw: runSyncArgs, submitArgs): own function properties
    // whose data is this object. It is only reached through this JS object,
    // which outlives nothing it points to.
    DefineRaw<6, &AddonCommunicator::RunSyncArgs>(env, info.This().As<Napi::Object>(), "runSyncArgs");
    DefineRaw<1, &AddonCommunicator::RunSyncAgain>(env, info.This().As<Napi::Object>(), "runSyncAgain");
    DefineRaw<8, &AddonCommunicator::SubmitArgs>(env, info.This().As<Napi::Object>(), "submitArgs");
    completions_ = std::make_unique<CompletionChannel<Completion>>(
        env, "ringtree-completions", [this](Napi::Env e, std::vector<Completion>& batch) { Deliver(e, batch); });
    napi_add_env_cleanup_hook(env, &AddonCommunicator::CleanupHook, this);
    hookInstalled_ = true;
  }

  ~AddonCommunicator() override { Shutdown(); }

 private:
  struct PendingJs {
    Napi::FunctionReference callback;
    Napi::ObjectReference input;
    Napi::ObjectReference output;
  };

  static void CleanupHook(void* arg) {
    auto* self = static_cast<AddonCommunicator*>(arg);
    self->hookInstalled_ = false;
    self->Shutdown();
  }

  // Stops the engine (joins its threads), then closes the completion channel.
  void Shutdown() {
    if (engine_ && !destroyed_) FlushStaged();
    if (engine_) engine_->destroy();
    if (completions_) completions_->close();
  }

  bool Alive(Napi::Env env) {
    if (engine_ && !destroyed_) return true;
    throwStatus(env, Status(StatusCode::Aborted, "the communicator was destroyed"));
    return false;
  }

  Napi::Value Start(const Napi::CallbackInfo& info) {
    if (!Alive(info.Env())) return info.Env().Undefined();
    Status s = engine_->start([this](const Completion* c, size_t n) { completions_->postMany(c, c + n); });
    if (!s.isOk()) throwStatus(info.Env(), s);
    return info.Env().Undefined();
  }

  // addTcpPeer(rank, fdCollective, fdP2p): the fds are Node's sockets; we
  // duplicate them, and the caller destroys its sockets afterwards.
  Napi::Value AddTcpPeer(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!Alive(env)) return env.Undefined();
    if (!info[0].IsNumber() || !info[1].IsNumber() || !info[2].IsNumber()) {
      Napi::TypeError::New(env, "addTcpPeer(rank, fd0, fd1) takes three numbers").ThrowAsJavaScriptException();
      return env.Undefined();
    }
    int fd0 = dup(info[1].As<Napi::Number>().Int32Value());
    int fd1 = dup(info[2].As<Napi::Number>().Int32Value());
    if (fd0 < 0 || fd1 < 0) {
      if (fd0 >= 0) close(fd0);
      if (fd1 >= 0) close(fd1);
      throwStatus(env, Status(StatusCode::BackendUnavailable, "cannot take over the TCP connection: dup failed"));
      return env.Undefined();
    }
    Status s = engine_->addTcpPeer(info[0].As<Napi::Number>().Int32Value(), fd0, fd1);
    if (!s.isOk()) {
      close(fd0);
      close(fd1);
      throwStatus(env, s);
    }
    return env.Undefined();
  }

  Napi::Value Unlink(const Napi::CallbackInfo& info) {
    if (engine_ && !destroyed_) engine_->unlink();
    return info.Env().Undefined();
  }

  // Fills desc from a JS descriptor and checks buffer sizes against it.
  bool ParseDesc(Napi::Env env, Napi::Value v, Napi::Value input, Napi::Value output, OpDesc* d) {
    if (!v.IsObject()) {
      Napi::TypeError::New(env, "descriptor must be an object").ThrowAsJavaScriptException();
      return false;
    }
    Napi::Object o = v.As<Napi::Object>();
    if (!parseOpKind(o.Get("kind").ToString().Utf8Value(), &d->kind)) {
      Napi::TypeError::New(env, "unknown op kind").ThrowAsJavaScriptException();
      return false;
    }
    int dt = int(getInt(o, "dtype", 0)), rop = int(getInt(o, "op", 0));
    if (!validDType(dt) || !validReduceOp(rop)) {
      Napi::RangeError::New(env, "invalid dtype or reduce op code").ThrowAsJavaScriptException();
      return false;
    }
    d->dtype = DType(dt);
    d->op = ReduceOp(rop);
    d->algorithm = Algorithm(getInt(o, "algorithm", 0));
    int64_t count = getInt(o, "count", 0);
    d->count = count < 0 ? 0 : uint64_t(count);
    d->root = int32_t(getInt(o, "root", -1));
    d->peer = int32_t(getInt(o, "peer", -1));
    d->tag = int32_t(getInt(o, "tag", 0));
    d->chunkBytes = uint64_t(std::max<int64_t>(0, getInt(o, "chunkBytes", 0)));
    d->timeoutMs = getInt(o, "timeoutMs", 300000);
    return AttachBuffers(env, input, output, d);
  }

  // Points desc at the buffers and checks their sizes against it.
  bool AttachBuffers(Napi::Env env, Napi::Value input, Napi::Value output, OpDesc* d) {
    size_t inBytes = 0, outBytes = 0;
    void* inData = nullptr;
    void* outData = nullptr;
    if (!input.IsNull() && !input.IsUndefined() && !viewData(input, &inData, &inBytes)) {
      Napi::TypeError::New(env, "input must be a TypedArray").ThrowAsJavaScriptException();
      return false;
    }
    if (!output.IsNull() && !output.IsUndefined() && !viewData(output, &outData, &outBytes)) {
      Napi::TypeError::New(env, "output must be a TypedArray").ThrowAsJavaScriptException();
      return false;
    }
    d->input = inData;
    d->output = outData;
    d->inputBytes = inBytes;
    d->outputBytes = outBytes;
    return CheckBuffers(env, d);
  }

  // Cheap second line of defence behind lib/comm.ts's checks.
  bool CheckBuffers(Napi::Env env, OpDesc* d) {
    const void* inData = d->input;
    const void* outData = d->output;
    const size_t inBytes = d->inputBytes, outBytes = d->outputBytes;
    const uint64_t bytes = d->count * dtypeSize(d->dtype);
    const uint64_t n = uint64_t(size_);
    uint64_t needIn = 0, needOut = 0;
    const bool isRoot = d->root == rank_;
    switch (d->kind) {
      case OpKind::AllReduce: needIn = needOut = bytes; break;
      case OpKind::ReduceScatter: needIn = bytes * n; needOut = bytes; break;
      case OpKind::AllGather: needIn = bytes; needOut = bytes * n; break;
      case OpKind::Broadcast: needIn = isRoot ? bytes : 0; needOut = bytes; break;
      case OpKind::Reduce: needIn = bytes; needOut = isRoot ? bytes : 0; break;
      default: break;
    }
    if ((d->kind == OpKind::Broadcast || d->kind == OpKind::Reduce) && (d->root < 0 || d->root >= size_)) {
      Napi::RangeError::New(env, "root out of range").ThrowAsJavaScriptException();
      return false;
    }
    if ((d->kind == OpKind::Send || d->kind == OpKind::Recv) && (d->peer < 0 || d->peer >= size_)) {
      Napi::RangeError::New(env, "peer out of range").ThrowAsJavaScriptException();
      return false;
    }
    if ((d->kind == OpKind::Send && !inData && inBytes) || (d->kind == OpKind::Recv && !outData && outBytes) ||
        (needIn && (!inData || inBytes < needIn)) || (needOut && (!outData || outBytes < needOut))) {
      Napi::RangeError::New(env, std::string(opKindName(d->kind)) + ": a buffer is missing or too small")
          .ThrowAsJavaScriptException();
      return false;
    }
    return true;
  }

  void Track(Napi::Env env, uint64_t id, Napi::Value cb, Napi::Value input, Napi::Value output) {
    PendingJs p;
    p.callback = Napi::Persistent(cb.As<Napi::Function>());
    if (input.IsObject()) p.input = Napi::Persistent(input.As<Napi::Object>());
    if (output.IsObject()) p.output = Napi::Persistent(output.As<Napi::Object>());
    pending_.emplace(id, std::move(p));
    if (pending_.size() == 1) {
      // Pending work keeps the process (and this object) alive; idle does not.
      completions_->ref();
      Ref();
    }
  }

  Napi::Value Submit(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!Alive(env)) return env.Undefined();
    OpDesc d;
    if (!ParseDesc(env, info[0], info[1], info[2], &d)) return env.Undefined();
    if (!info[3].IsFunction()) {
      Napi::TypeError::New(env, "callback must be a function").ThrowAsJavaScriptException();
      return env.Undefined();
    }
    Enqueue(env, d, info[3], info[1], info[2], info[4].IsBoolean() && info[4].As<Napi::Boolean>().Value());
    return env.Undefined();
  }

  // Track the op's callback and buffers, then run it inline, stage it or
  // hand it to the engine.
  void Enqueue(Napi::Env env, const OpDesc& d, Napi::Value callback, Napi::Value input, Napi::Value output, bool stage) {
    uint64_t id = nextId_++;
    // Only when nothing of ours is pending: with many ops in flight the
    // collective thread is busy anyway, and an inline attempt would only
    // delay the submission of the next one.
    if (isCollective(d.kind) && pending_.empty()) {
      Status s;
      switch (engine_->tryInline(id, d, &s)) {
        case Engine::InlineResult::Done:
          // Finished on this thread: settle now (the Promise resolves before
          // submit() returns; its continuations still run as microtasks).
          callback.As<Napi::Function>().Call({s.isOk() ? env.Null() : Napi::Value(failureObject(env, s))});
          return;
        case Engine::InlineResult::Deferred:
          // Queued already; its completion comes through the sink, which is
          // delivered on this thread, after this Track.
          Track(env, id, callback, input, output);
          return;
        case Engine::InlineResult::NotTried: break;
      }
    }
    Track(env, id, callback, input, output);
    // stage: hold a collective until flush(), which the JS side schedules
    // as a microtask, so ops issued in one burst reach the collective thread
    // together (and travel as one batch where they can). Not the first of a
    // burst (nothing else pending): a lone op goes to the engine at once.
    if (stage && isCollective(d.kind) && pending_.size() > 1) {
      staged_.emplace_back(id, d);
      if (staged_.size() >= kMaxStaged) FlushStaged();
      return;
    }
    FlushStaged();
    engine_->submit(id, d);
  }

  // Hands staged collectives to the engine in submission order. Called by
  // flush() and before anything that must come after them (a synchronous
  // call, another submission, abort, destroy).
  void FlushStaged() {
    if (staged_.empty() || !engine_) return;
    engine_->submitMany(staged_);
    staged_.clear();
  }

  Napi::Value Flush(const Napi::CallbackInfo& info) {
    if (engine_ && !destroyed_) FlushStaged();
    return info.Env().Undefined();
  }

  Napi::Value SubmitGroup(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!Alive(env)) return env.Undefined();
    FlushStaged();
    if (!info[0].IsArray() || !info[1].IsArray() || !info[2].IsArray()) {
      Napi::TypeError::New(env, "submitGroup(descs, buffers, callbacks) takes three arrays").ThrowAsJavaScriptException();
      return env.Undefined();
    }
    Napi::Array descs = info[0].As<Napi::Array>(), bufs = info[1].As<Napi::Array>(), cbs = info[2].As<Napi::Array>();
    std::vector<std::pair<uint64_t, OpDesc>> ops;
    std::vector<std::pair<Napi::Value, Napi::Value>> keep;
    for (uint32_t i = 0; i < descs.Length(); i++) {
      OpDesc d;
      Napi::Value b = bufs.Get(i);
      Napi::Object desc = descs.Get(i).As<Napi::Object>();
      bool isSend = desc.Get("kind").ToString().Utf8Value() == "send";
      if (!ParseDesc(env, desc, isSend ? b : env.Null(), isSend ? env.Null() : b, &d)) return env.Undefined();
      if (d.kind != OpKind::Send && d.kind != OpKind::Recv) {
        Napi::TypeError::New(env, "a group holds only send and recv").ThrowAsJavaScriptException();
        return env.Undefined();
      }
      if (!cbs.Get(i).IsFunction()) {
        Napi::TypeError::New(env, "callback must be a function").ThrowAsJavaScriptException();
        return env.Undefined();
      }
      ops.emplace_back(0, d);
    }
    for (uint32_t i = 0; i < ops.size(); i++) {
      ops[i].first = nextId_++;
      Track(env, ops[i].first, cbs.Get(i), bufs.Get(i), env.Null());
    }
    engine_->submitGroup(ops);
    return env.Undefined();
  }

  Napi::Value RunSync(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!Alive(env)) return env.Undefined();
    FlushStaged();
    OpDesc d;
    if (!ParseDesc(env, info[0], info[1], info[2], &d)) return env.Undefined();
    if (!isCollective(d.kind)) {
      Napi::TypeError::New(env, "runSync runs collectives only").ThrowAsJavaScriptException();
      return env.Undefined();
    }
    Status s = engine_->runSync(d);
    if (s.isOk()) return env.Null();
    return failureObject(env, s);
  }

  // The hot paths' entry points: plain functions whose data is this object,
  // taking at most N arguments, handed to `Method`.
  using RawMethod = napi_value (AddonCommunicator::*)(Napi::Env, size_t, napi_value*);
  template <size_t N, RawMethod Method>
  static napi_value Raw(napi_env rawEnv, napi_callback_info cbinfo) {
    size_t argc = N;
    napi_value argv[N];
    void* data = nullptr;
    if (napi_get_cb_info(rawEnv, cbinfo, &argc, argv, nullptr, &data) != napi_ok) return nullptr;
    return (static_cast<AddonCommunicator*>(data)->*Method)(Napi::Env(rawEnv), argc, argv);
  }
  template <size_t N, RawMethod Method>
  void DefineRaw(Napi::Env env, Napi::Object self, const char* name) {
    napi_value fn;
    if (napi_create_function(env, name, NAPI_AUTO_LENGTH, &Raw<N, Method>, this, &fn) == napi_ok)
      self.Set(name, Napi::Value(env, fn));
  }

  // The hot paths' argument form: (code, count, chunkBytes, timeoutMs, input,
  // output, ...), numbers and views only (no descriptor object, whose
  // property reads intern a string per field and call). Bit 48 of `code`:
  // in place (the output is the input; `output` is not read). Checks the
  // buffers against the op (CheckBuffers).
  bool ParseArgs(Napi::Env env, const char* name, size_t argc, napi_value* argv, OpDesc* d) {
    int64_t code = 0, count = 0, chunkBytes = 0, timeoutMs = 0;
    if (argc < 6 || napi_get_value_int64(env, argv[0], &code) != napi_ok ||
        napi_get_value_int64(env, argv[1], &count) != napi_ok ||
        napi_get_value_int64(env, argv[2], &chunkBytes) != napi_ok ||
        napi_get_value_int64(env, argv[3], &timeoutMs) != napi_ok) {
      Napi::TypeError::New(env, std::string(name) + "(code, count, chunkBytes, timeoutMs, input, output) takes four numbers first")
          .ThrowAsJavaScriptException();
      return false;
    }
    const int kind = int(code & 15), dt = int((code >> 4) & 15), rop = int((code >> 8) & 15),
              algo = int((code >> 12) & 15);
    if (kind < int(OpKind::AllReduce) || kind > int(OpKind::Barrier) || !validDType(dt) || !validReduceOp(rop) ||
        algo > int(Algorithm::Tree)) {
      Napi::RangeError::New(env, std::string(name) + ": invalid op kind, dtype, reduce op or algorithm code")
          .ThrowAsJavaScriptException();
      return false;
    }
    d->kind = OpKind(kind);
    d->dtype = DType(dt);
    d->op = ReduceOp(rop);
    d->algorithm = Algorithm(algo);
    d->root = int32_t(((code >> 16) & 0xffffffff) - 1);
    d->count = count < 0 ? 0 : uint64_t(count);
    d->chunkBytes = uint64_t(std::max<int64_t>(0, chunkBytes));
    d->timeoutMs = timeoutMs;
    const size_t es = dtypeSize(d->dtype);
    if (!FastView(env, argv[4], &d->input, &d->inputBytes, es, "input")) return false;
    if ((code >> 48) & 1) {
      d->output = const_cast<void*>(d->input);
      d->outputBytes = d->inputBytes;
    } else if (!FastView(env, argv[5], &d->output, &d->outputBytes, es, "output")) {
      return false;
    }
    return CheckBuffers(env, d);
  }

  // submitArgs(code, count, chunkBytes, timeoutMs, input, output, callback,
  // stage): submit() for collectives in the argument form (ParseArgs).
  napi_value SubmitArgs(Napi::Env env, size_t argc, napi_value* argv) {
    if (!Alive(env)) return nullptr;
    OpDesc d;
    if (!ParseArgs(env, "submitArgs", argc, argv, &d)) return nullptr;
    napi_valuetype cbType;
    if (argc < 7 || napi_typeof(env, argv[6], &cbType) != napi_ok || cbType != napi_function) {
      Napi::TypeError::New(env, "callback must be a function").ThrowAsJavaScriptException();
      return nullptr;
    }
    bool stage = false;
    if (argc >= 8) napi_get_value_bool(env, argv[7], &stage);
    Enqueue(env, d, Napi::Value(env, argv[6]), Napi::Value(env, argv[4]), Napi::Value(env, argv[5]), stage);
    return nullptr;
  }

  // runSyncArgs(code, count, chunkBytes, timeoutMs, input, output): runSync
  // for the synchronous hot path (lib/binding.ts documents `code`). A plain
  // function on the instance with `this` as its data, not an ObjectWrap
  // method: it skips the unwrap, the property reads of a descriptor object
  // and node-addon-api's argument copies (about 3 us of the 4 a 2-float
  // allReduceSync cost at world size 1). Returns null or a failure record;
  // `before: true` when the communicator had failed before the call (nothing ran).
  napi_value RunSyncArgs(Napi::Env env, size_t argc, napi_value* argv) {
    if (!Alive(env)) return nullptr;
    FlushStaged();
    if (engine_->hasFailed()) {
      Napi::Object f = failureObject(env, engine_->failure());
      f.Set("before", true);
      return f;
    }
    syncPrepared_ = false;
    syncDesc_ = OpDesc();
    if (!ParseArgs(env, "runSyncArgs", argc, argv, &syncDesc_)) return nullptr;
    syncPrepared_ = true;
    return RunPrepared(env);
  }

  // runSyncAgain(): runSyncArgs with the arguments of the last runSyncArgs
  // call on this communicator, as parsed and checked then: a loop repeating
  // one synchronous call skips reading its numbers and views (about a third
  // of the call's cost at world size 1). lib/comm.ts calls it only when the
  // call matches that one and its arrays still have the lengths they had (a
  // detached or shrunk buffer reads length 0), so the data pointers are still
  // those of live, attached buffers: V8 moved them off the heap when they
  // were first read and never moves them again.
  napi_value RunSyncAgain(Napi::Env env, size_t, napi_value*) {
    if (!Alive(env)) return nullptr;
    if (!syncPrepared_) {
      Napi::Error::New(env, "runSyncAgain: no runSyncArgs call to repeat").ThrowAsJavaScriptException();
      return nullptr;
    }
    FlushStaged();
    if (engine_->hasFailed()) {
      Napi::Object f = failureObject(env, engine_->failure());
      f.Set("before", true);
      return f;
    }
    return RunPrepared(env);
  }

  napi_value RunPrepared(Napi::Env env) {
    Engine::OpTimes times;
    Status s = engine_->runSync(syncDesc_, &times);
    if (syncClock_) {
      syncClock_[0] = double(times.startNs) / 1e6;
      syncClock_[1] = double(times.endNs) / 1e6;
    }
    if (s.isOk()) return env.Null();
    return failureObject(env, s);
  }

  // setSyncClock(Float64Array(2)): runSyncArgs writes each op's start and end
  // there (CLOCK_MONOTONIC, ms; the clock of process.hrtime()), read by the
  // flight recorder. The array is kept alive by a reference.
  Napi::Value SetSyncClock(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!info[0].IsTypedArray() || info[0].As<Napi::TypedArray>().TypedArrayType() != napi_float64_array ||
        info[0].As<Napi::Float64Array>().ElementLength() < 2) {
      Napi::TypeError::New(env, "setSyncClock takes a Float64Array of 2 elements").ThrowAsJavaScriptException();
      return env.Undefined();
    }
    Napi::Float64Array clock = info[0].As<Napi::Float64Array>();
    syncClockRef_ = Napi::Persistent(clock);
    syncClock_ = clock.Data();
    return env.Undefined();
  }

  // A TypedArray's data and byte length, read as `es`-byte elements (the
  // op's dtype, which lib/comm.ts checked against the array's kind): asking
  // Node-API for the kind walks eleven type tests per call. The byte count
  // stays within the view's ArrayBuffer whatever the array's real kind, so a
  // mismatched call can at worst read its own buffer, never past it.
  // null/undefined: no buffer. DataViews through viewData.
  template <class Ptr>
  static bool FastView(Napi::Env env, napi_value v, Ptr* data, size_t* bytes, size_t es, const char* what) {
    size_t length = 0, offset = 0, bufferBytes = 0;
    void* p = nullptr;
    void* base = nullptr;
    napi_value buffer;
    if (napi_get_typedarray_info(env, v, nullptr, &length, &p, &buffer, &offset) == napi_ok &&
        napi_get_arraybuffer_info(env, buffer, &base, &bufferBytes) == napi_ok) {
      *data = static_cast<char*>(p);
      *bytes = std::min(length * es, offset <= bufferBytes ? bufferBytes - offset : 0);
      return true;
    }
    napi_valuetype t;
    if (napi_typeof(env, v, &t) != napi_ok) return false;
    if (t == napi_null || t == napi_undefined) {
      *data = nullptr;
      *bytes = 0;
      return true;
    }
    void* vd = nullptr;
    if (viewData(Napi::Value(env, v), &vd, bytes)) {
      *data = static_cast<char*>(vd);
      return true;
    }
    Napi::TypeError::New(env, std::string(what) + " must be a TypedArray").ThrowAsJavaScriptException();
    return false;
  }

  Napi::Value Abort(const Napi::CallbackInfo& info) {
    if (engine_ && !destroyed_) FlushStaged();
    if (engine_ && !destroyed_) engine_->abort(info[0].IsString() ? info[0].As<Napi::String>().Utf8Value() : "");
    return info.Env().Undefined();
  }

  Napi::Value Destroy(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (destroyed_ || !engine_) return env.Undefined();
    FlushStaged();  // the engine rejects them with the rest of its queue
    destroyed_ = true;
    engine_->destroy();  // joins the threads: every pending op is in the channel now
    completions_->drainNow();
    if (hookInstalled_) {
      napi_remove_env_cleanup_hook(env, &AddonCommunicator::CleanupHook, this);
      hookInstalled_ = false;
    }
    completions_->close();
    return env.Undefined();
  }

  Napi::Value Failure(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!engine_ || !engine_->hasFailed()) return env.Null();
    Status s = engine_->failure();
    if (s.isOk()) return env.Null();
    return failureObject(env, s);
  }

  Napi::Value PeerStates(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Napi::Array out = Napi::Array::New(env);
    if (!engine_ || destroyed_) return out;
    uint32_t i = 0;
    for (const PeerState& p : engine_->peerStates()) {
      Napi::Object o = Napi::Object::New(env);
      o.Set("rank", p.rank);
      o.Set("pid", p.pid);
      o.Set("collSeq", Napi::Number::New(env, double(p.collSeq)));
      o.Set("inOp", p.inOp);
      o.Set("alive", p.alive);
      o.Set("destroyed", p.destroyed);
      out.Set(i++, o);
    }
    return out;
  }

  Napi::Value Stats(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Napi::Array out = Napi::Array::New(env);
    if (!engine_ || destroyed_) return out;
    uint32_t i = 0;
    auto numbers = [&](const std::vector<uint64_t>& v) {
      Napi::Array a = Napi::Array::New(env, v.size());
      for (uint32_t j = 0; j < v.size(); j++) a.Set(j, Napi::Number::New(env, double(v[j])));
      return a;
    };
    for (const OpStats& st : engine_->stats()) {
      Napi::Object o = Napi::Object::New(env);
      o.Set("kind", opKindName(st.kind));
      o.Set("count", Napi::Number::New(env, double(st.count)));
      o.Set("failed", Napi::Number::New(env, double(st.failed)));
      o.Set("ring", Napi::Number::New(env, double(st.byAlgorithm[0])));
      o.Set("tree", Napi::Number::New(env, double(st.byAlgorithm[1])));
      o.Set("bytesSent", numbers(st.bytesSent));
      o.Set("bytesReceived", numbers(st.bytesReceived));
      o.Set("messagesSent", Napi::Number::New(env, double(st.messagesSent)));
      o.Set("messagesReceived", Napi::Number::New(env, double(st.messagesReceived)));
      o.Set("ranInline", Napi::Number::New(env, double(st.ranInline)));
      o.Set("timeMs", Napi::Number::New(env, double(st.timeNs) / 1e6));
      out.Set(i++, o);
    }
    return out;
  }

  Napi::Value ResetStats(const Napi::CallbackInfo& info) {
    if (engine_ && !destroyed_) engine_->resetStats();
    return info.Env().Undefined();
  }

  // The outboxes the host's segment has (0 where its creator had no room).
  Napi::Value OutboxBytes(const Napi::CallbackInfo& info) {
    return Napi::Number::New(info.Env(), engine_ ? double(engine_->outboxBytes()) : 0.0);
  }

  // Whether large buffers go onto transparent huge pages (option and kernel).
  Napi::Value HugePages(const Napi::CallbackInfo& info) {
    return Napi::Boolean::New(info.Env(), engine_ && engine_->hugePages());
  }

  // JS thread: settle every completed op, then release its buffers.
  void Deliver(Napi::Env env, std::vector<Completion>& batch) {
    for (auto& [id, status] : batch) {
      auto it = pending_.find(id);
      if (it == pending_.end()) continue;
      Napi::HandleScope scope(env);
      PendingJs p = std::move(it->second);
      pending_.erase(it);
      Napi::Value arg = status.isOk() ? env.Null() : Napi::Value(failureObject(env, status));
      p.callback.Value().Call({arg});
      if (env.IsExceptionPending()) {
        Napi::Error e = env.GetAndClearPendingException();
        fprintf(stderr, "ringtree: a completion callback threw: %s\n", e.Message().c_str());
      }
      if (pending_.empty()) {
        completions_->unref();
        Unref();
      }
    }
  }

  std::unique_ptr<Engine> engine_;
  // Null until the constructor made it (a failed construction has none).
  std::unique_ptr<CompletionChannel<Completion>> completions_;
  bool hookInstalled_ = false;
  bool destroyed_ = false;
  // setSyncClock's array: [start, end] of the last synchronous op (ms).
  Napi::Reference<Napi::Float64Array> syncClockRef_;
  double* syncClock_ = nullptr;
  // The last runSyncArgs op, for runSyncAgain (valid when syncPrepared_).
  OpDesc syncDesc_;
  bool syncPrepared_ = false;
  int size_ = 1;
  int rank_ = 0;
  uint64_t nextId_ = 1;
  // Collectives submitted with stage = true, not yet handed to the engine.
  static constexpr size_t kMaxStaged = 512;
  std::vector<std::pair<uint64_t, OpDesc>> staged_;
  std::unordered_map<uint64_t, PendingJs> pending_;
};

void registerCommunicator(Napi::Env env, Napi::Object exports) {
  exports.Set("Communicator", AddonCommunicator::Define(env));
}

}  // namespace ringtree::addon
