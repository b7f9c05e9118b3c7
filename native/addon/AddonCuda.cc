// Node-API face of the GPU backend: loading (cudaLoad/ncclLoad/cublasLoad/
// cudaInfo), DeviceBuffer (device memory handles), stream-ordered copies,
// fills and cuBLASLt GEMMs (one stream and thread per device), and the NCCL
// communicator. Completions come back through one thread-safe
// function; every JS object an op touches stays referenced until the GPU is
// done with it (the "release" notification), which may be after it settled.
#include <napi.h>

#include <cstring>
#include <map>
#include <memory>
#include <unordered_map>
#include <vector>

#include "addon/CompletionChannel.h"
#include "addon/registry.h"
#include "addon/StatusJs.h"
#include "cuda/CublasLtLibrary.h"
#include "cuda/CudaDriver.h"
#include "cuda/DeviceGemm.h"
#include "cuda/DeviceAllocation.h"
#include "cuda/KernelModule.h"
#include "cuda/NcclCommunicator.h"
#include "cuda/NcclLibrary.h"
#include "cuda/StreamWorker.h"

namespace ringtree::addon {

using namespace ringtree::cuda;

namespace {

std::vector<std::string> stringList(Napi::Value v) {
  std::vector<std::string> out;
  if (!v.IsArray()) return out;
  Napi::Array a = v.As<Napi::Array>();
  for (uint32_t i = 0; i < a.Length(); i++) {
    Napi::Value e = a.Get(i);
    if (e.IsString()) out.push_back(e.As<Napi::String>().Utf8Value());
  }
  return out;
}

Napi::Array attemptsArray(Napi::Env env, const std::vector<std::string>& list) {
  Napi::Array a = Napi::Array::New(env, list.size());
  for (size_t i = 0; i < list.size(); i++) a.Set(uint32_t(i), Napi::String::New(env, list[i]));
  return a;
}

bool hostView(Napi::Value v, void** data, size_t* bytes) {
  if (!v.IsTypedArray()) return false;
  Napi::TypedArray ta = v.As<Napi::TypedArray>();
  *data = static_cast<char*>(ta.ArrayBuffer().Data()) + ta.ByteOffset();
  *bytes = ta.ByteLength();
  return true;
}

// Settles and releases arriving from worker threads, delivered on the JS
// thread in batches through one completion channel per environment.
class Completions {
 public:
  struct Pending {
    Napi::FunctionReference callback;
    std::vector<Napi::Reference<Napi::Value>> keep;
    bool settled = false;
    bool released = false;
  };

  explicit Completions(Napi::Env env)
      : channel_(env, "ringtree-gpu-completions", [this](Napi::Env e, std::vector<Event>& batch) { deliver(e, batch); }) {}

  // Registers a pending op; returns its id. The process stays alive while any is pending.
  uint64_t add(Napi::Env env, Napi::Function cb, const std::vector<Napi::Value>& keep) {
    uint64_t id = ++nextId_;
    Pending& p = pending_[id];
    p.callback = Napi::Persistent(cb);
    for (const Napi::Value& v : keep) {
      if (v.IsObject()) p.keep.push_back(Napi::Reference<Napi::Value>::New(v, 1));
    }
    if (pending_.size() == 1) channel_.ref();
    return id;
  }

  std::function<void(const Status&)> settler(uint64_t id) {
    return [this, id](const Status& s) { channel_.post({id, s, false, 0}); };
  }
  // The callback also gets a number (e.g. a timed run's milliseconds).
  std::function<void(const Status&, double)> valueSettler(uint64_t id) {
    return [this, id](const Status& s, double v) { channel_.post({id, s, false, v}); };
  }
  std::function<void()> releaser(uint64_t id) {
    return [this, id]() { channel_.post({id, Status::ok(), true, 0}); };
  }

  void close() { channel_.close(); }

 private:
  struct Event {
    uint64_t id;
    Status status;
    bool release;
    double value;
  };

  void deliver(Napi::Env env, std::vector<Event>& batch) {
    for (Event& e : batch) {
      auto it = pending_.find(e.id);
      if (it == pending_.end()) continue;
      Pending& p = it->second;
      if (e.release) {
        p.released = true;
      } else if (!p.settled) {
        p.settled = true;
        Napi::HandleScope scope(env);
        Napi::FunctionReference cb = std::move(p.callback);
        cb.Call({failureOrNull(env, e.status), Napi::Number::New(env, e.value)});
        if (env.IsExceptionPending()) {
          // A throwing callback must not lose the other completions.
          Napi::Error err = env.GetAndClearPendingException();
          (void)err;
        }
      }
      auto again = pending_.find(e.id);
      if (again != pending_.end() && again->second.settled && again->second.released) pending_.erase(again);
    }
    if (pending_.empty()) channel_.unref();
  }

  std::unordered_map<uint64_t, Pending> pending_;  // JS thread only
  uint64_t nextId_ = 0;
  CompletionChannel<Event> channel_;  // last: closed before the rest goes
};

struct GpuState {
  std::unique_ptr<Completions> completions;
  std::map<int, std::unique_ptr<StreamWorker>> deviceWorkers;  // DeviceArray copies and fills
  std::vector<std::weak_ptr<NcclCommunicator>> comms;
  Napi::FunctionReference deviceBufferCtor;
  Napi::FunctionReference ncclCommCtor;
};

GpuState* stateOf(Napi::Env env) { return env.GetInstanceData<GpuState>(); }

Status requireDriver() {
  CudaDriver& cu = CudaDriver::instance();
  if (cu.loaded()) return Status::ok();
  return Status(StatusCode::BackendUnavailable,
                "the CUDA driver is not loaded (call cudaLoad first)");
}

StreamWorker* deviceWorker(Napi::Env env, int device) {
  GpuState* st = stateOf(env);
  auto it = st->deviceWorkers.find(device);
  if (it != st->deviceWorkers.end()) return it->second.get();
  // The stream's cuBLASLt handle and workspace (made by the first GEMM) go with it.
  auto stream = std::make_shared<CUstream>(nullptr);
  StreamWorker::Hooks hooks;
  hooks.start = [stream](CUstream s) {
    *stream = s;
    return Status::ok();
  };
  hooks.stop = [device, stream](bool) {
    if (*stream) releaseDeviceGemm(device, *stream);
  };
  auto w = std::make_unique<StreamWorker>(device, "device stream", std::move(hooks));
  StreamWorker* raw = w.get();
  st->deviceWorkers[device] = std::move(w);
  return raw;
}

}  // namespace

// A device memory handle. Views are made in TypeScript (offset + length over
// one handle); release() lets go of the memory once pending ops finished.
class DeviceBuffer : public Napi::ObjectWrap<DeviceBuffer> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "DeviceBuffer",
                       {
                           InstanceMethod("release", &DeviceBuffer::Release),
                           InstanceAccessor("pointer", &DeviceBuffer::Pointer, nullptr),
                           InstanceAccessor("bytes", &DeviceBuffer::Bytes, nullptr),
                           InstanceAccessor("device", &DeviceBuffer::Device, nullptr),
                           InstanceAccessor("released", &DeviceBuffer::Released, nullptr),
                       });
  }

  // new DeviceBuffer(device, bytes) allocates; new DeviceBuffer(device, bytes, pointer: bigint) borrows.
  explicit DeviceBuffer(const Napi::CallbackInfo& info) : Napi::ObjectWrap<DeviceBuffer>(info) {
    Napi::Env env = info.Env();
    Status s = requireDriver();
    if (!s.isOk()) {
      throwStatus(env, s);
      return;
    }
    if (!info[0].IsNumber() || !info[1].IsNumber()) {
      Napi::TypeError::New(env, "DeviceBuffer(device, bytes[, pointer])").ThrowAsJavaScriptException();
      return;
    }
    int device = info[0].As<Napi::Number>().Int32Value();
    int64_t bytes = info[1].As<Napi::Number>().Int64Value();
    if (bytes < 0) {
      throwStatus(env, Status(StatusCode::InvalidArgument, "byte length must be >= 0"));
      return;
    }
    if (info[2].IsBigInt()) {
      bool lossless = true;
      uint64_t ptr = info[2].As<Napi::BigInt>().Uint64Value(&lossless);
      allocation_ = DeviceAllocation::borrow(device, CUdeviceptr(ptr), size_t(bytes));
      return;
    }
    s = DeviceAllocation::allocate(device, size_t(bytes), &allocation_);
    if (!s.isOk()) {
      throwStatus(env, s);
      return;
    }
    reported_ = int64_t(bytes);
    Napi::MemoryManagement::AdjustExternalMemory(env, reported_);
  }

  ~DeviceBuffer() override {
    // The finalizer is the safety net for arrays never disposed: pending ops
    // hold their own reference, so the memory outlives them.
    allocation_.reset();
  }

  std::shared_ptr<DeviceAllocation> allocation() const { return allocation_; }

  static DeviceBuffer* From(Napi::Env env, Napi::Value v) {
    GpuState* st = stateOf(env);
    if (!v.IsObject() || !v.As<Napi::Object>().InstanceOf(st->deviceBufferCtor.Value())) return nullptr;
    return DeviceBuffer::Unwrap(v.As<Napi::Object>());
  }

 private:
  Napi::Value Release(const Napi::CallbackInfo& info) {
    if (allocation_) {
      allocation_.reset();
      if (reported_) Napi::MemoryManagement::AdjustExternalMemory(info.Env(), -reported_);
      reported_ = 0;
    }
    return info.Env().Undefined();
  }
  Napi::Value Pointer(const Napi::CallbackInfo& info) {
    return Napi::BigInt::New(info.Env(), uint64_t(allocation_ ? allocation_->pointer() : 0));
  }
  Napi::Value Bytes(const Napi::CallbackInfo& info) {
    return Napi::Number::New(info.Env(), double(allocation_ ? allocation_->bytes() : 0));
  }
  Napi::Value Device(const Napi::CallbackInfo& info) {
    return Napi::Number::New(info.Env(), allocation_ ? allocation_->device() : -1);
  }
  Napi::Value Released(const Napi::CallbackInfo& info) { return Napi::Boolean::New(info.Env(), !allocation_); }

  std::shared_ptr<DeviceAllocation> allocation_;
  int64_t reported_ = 0;
};

namespace {

// A device range as passed from TS: (buffer, byteOffset, byteLength), checked.
bool deviceRange(Napi::Env env, Napi::Value buf, Napi::Value off, size_t bytes, std::shared_ptr<DeviceAllocation>* alloc,
                 CUdeviceptr* ptr) {
  DeviceBuffer* b = DeviceBuffer::From(env, buf);
  if (!b || !b->allocation()) {
    throwStatus(env, Status(StatusCode::InvalidArgument, b ? "the DeviceArray was disposed" : "expected a DeviceBuffer"));
    return false;
  }
  int64_t o = off.IsNumber() ? off.As<Napi::Number>().Int64Value() : -1;
  *alloc = b->allocation();
  if (o < 0 || uint64_t(o) + bytes > (*alloc)->bytes()) {
    throwStatus(env, Status(StatusCode::InvalidArgument, "device range out of bounds"));
    return false;
  }
  *ptr = (*alloc)->pointer() + CUdeviceptr(o);
  return true;
}

// cudaLoad(candidates) -> failure | null
Napi::Value CudaLoad(const Napi::CallbackInfo& info) {
  return failureOrNull(info.Env(), CudaDriver::instance().load(stringList(info[0])));
}

Napi::Value NcclLoad(const Napi::CallbackInfo& info) {
  return failureOrNull(info.Env(), NcclLibrary::instance().load(stringList(info[0])));
}

// cudaInfo(): what loaded, from where, and the devices.
Napi::Value CudaInfo(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  CudaDriver& cu = CudaDriver::instance();
  NcclLibrary& nccl = NcclLibrary::instance();
  Napi::Object o = Napi::Object::New(env);
  Napi::Object drv = Napi::Object::New(env);
  drv.Set("loaded", cu.loaded());
  drv.Set("path", cu.loaded() ? Napi::Value(Napi::String::New(env, cu.path())) : env.Null());
  drv.Set("version", cu.driverVersion());
  drv.Set("viaGetProcAddress", cu.viaGetProcAddress());
  drv.Set("memoryPools", cu.cuMemAllocAsync != nullptr);
  drv.Set("kernels", cu.cuModuleLoadData != nullptr && cu.cuLaunchKernel != nullptr);
  drv.Set("attempts", attemptsArray(env, cu.attempts()));
  o.Set("driver", drv);
  Napi::Array devices = Napi::Array::New(env);
  if (cu.loaded()) {
    int count = 0;
    if (cu.cuDeviceGetCount(&count) != CUDA_SUCCESS) count = 0;
    for (int i = 0; i < count; i++) {
      CUdevice dev = 0;
      if (cu.cuDeviceGet(&dev, i) != CUDA_SUCCESS) continue;
      char name[256] = {0};
      cu.cuDeviceGetName(name, sizeof(name) - 1, dev);
      int major = 0, minor = 0, bus = 0, pciDev = 0, domain = 0;
      size_t mem = 0;
      cu.cuDeviceGetAttribute(&major, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, dev);
      cu.cuDeviceGetAttribute(&minor, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR, dev);
      cu.cuDeviceGetAttribute(&bus, CU_DEVICE_ATTRIBUTE_PCI_BUS_ID, dev);
      cu.cuDeviceGetAttribute(&pciDev, CU_DEVICE_ATTRIBUTE_PCI_DEVICE_ID, dev);
      cu.cuDeviceGetAttribute(&domain, CU_DEVICE_ATTRIBUTE_PCI_DOMAIN_ID, dev);
      cu.cuDeviceTotalMem(&mem, dev);
      char pci[32];
      snprintf(pci, sizeof(pci), "%04x:%02x:%02x.0", domain, bus, pciDev);
      Napi::Object d = Napi::Object::New(env);
      d.Set("index", i);
      d.Set("name", name);
      d.Set("computeCapability", std::to_string(major) + "." + std::to_string(minor));
      d.Set("totalMemory", double(mem));
      d.Set("pciBusId", pci);
      devices.Set(devices.Length(), d);
    }
  }
  o.Set("devices", devices);
  Napi::Object n = Napi::Object::New(env);
  n.Set("loaded", nccl.loaded());
  n.Set("path", nccl.loaded() ? Napi::Value(Napi::String::New(env, nccl.path())) : env.Null());
  n.Set("version", nccl.loaded() ? Napi::Value(Napi::String::New(env, NcclLibrary::versionString(nccl.version()))) : env.Null());
  n.Set("versionCode", nccl.version());
  n.Set("attempts", attemptsArray(env, nccl.attempts()));
  o.Set("nccl", n);
  return o;
}

// deviceCopy(kind, dst, dstOffset, src, srcOffset, bytes, timeoutMs, callback)
//   kind 'htod': dst DeviceBuffer, src TypedArray (srcOffset ignored)
//   kind 'dtoh': dst TypedArray, src DeviceBuffer
//   kind 'dtod': both DeviceBuffers
Napi::Value DeviceCopy(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Status s = requireDriver();
  if (!s.isOk()) {
    throwStatus(env, s);
    return env.Undefined();
  }
  std::string kind = info[0].ToString().Utf8Value();
  size_t bytes = size_t(info[5].ToNumber().Int64Value());
  int64_t timeoutMs = info[6].ToNumber().Int64Value();
  if (!info[7].IsFunction()) {
    Napi::TypeError::New(env, "callback required").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  std::shared_ptr<DeviceAllocation> a, b;
  CUdeviceptr dptr = 0, sptr = 0;
  void* host = nullptr;
  size_t hostBytes = 0;
  int device = 0;
  if (kind == "htod") {
    if (!deviceRange(env, info[1], info[2], bytes, &a, &dptr)) return env.Undefined();
    if (!hostView(info[3], &host, &hostBytes) || hostBytes < bytes) {
      throwStatus(env, Status(StatusCode::InvalidArgument, "source must be a TypedArray of at least the copied bytes"));
      return env.Undefined();
    }
    device = a->device();
  } else if (kind == "dtoh") {
    if (!deviceRange(env, info[3], info[4], bytes, &b, &sptr)) return env.Undefined();
    if (!hostView(info[1], &host, &hostBytes) || hostBytes < bytes) {
      throwStatus(env, Status(StatusCode::InvalidArgument, "destination must be a TypedArray of at least the copied bytes"));
      return env.Undefined();
    }
    device = b->device();
  } else if (kind == "dtod") {
    if (!deviceRange(env, info[1], info[2], bytes, &a, &dptr)) return env.Undefined();
    if (!deviceRange(env, info[3], info[4], bytes, &b, &sptr)) return env.Undefined();
    device = a->device();
  } else {
    throwStatus(env, Status(StatusCode::InvalidArgument, "unknown copy kind " + kind));
    return env.Undefined();
  }
  GpuState* st = stateOf(env);
  uint64_t id = st->completions->add(env, info[7].As<Napi::Function>(), {info[1], info[3]});
  GpuOp op;
  op.name = "copy (" + kind + ")";
  op.timeoutMs = timeoutMs;
  op.settle = st->completions->settler(id);
  op.release = [rel = st->completions->releaser(id), a, b]() mutable {
    a.reset();
    b.reset();
    rel();
  };
  op.issue = [kind, dptr, sptr, host, bytes](CUstream stream) -> Status {
    CudaDriver& cu = CudaDriver::instance();
    if (bytes == 0) return Status::ok();
    if (kind == "htod") return cu.check(cu.cuMemcpyHtoDAsync(dptr, host, bytes, stream), "cuMemcpyHtoDAsync");
    if (kind == "dtoh") return cu.check(cu.cuMemcpyDtoHAsync(host, sptr, bytes, stream), "cuMemcpyDtoHAsync");
    return cu.check(cu.cuMemcpyDtoDAsync(dptr, sptr, bytes, stream), "cuMemcpyDtoDAsync");
  };
  deviceWorker(env, device)->post(std::move(op));
  return env.Undefined();
}

// deviceFill(dst, byteOffset, count, elementBytes (1|2|4|8), bits, timeoutMs, callback):
// bits a number for 1-4 byte elements (cuMemsetD8/16/32), a bigint for 8-byte
// ones (the embedded ringtree_fill_u64 kernel; the driver has no 64-bit memset).
Napi::Value DeviceFill(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Status s = requireDriver();
  if (!s.isOk()) {
    throwStatus(env, s);
    return env.Undefined();
  }
  size_t count = size_t(info[2].ToNumber().Int64Value());
  int elementBytes = info[3].ToNumber().Int32Value();
  if (elementBytes != 1 && elementBytes != 2 && elementBytes != 4 && elementBytes != 8) {
    throwStatus(env, Status(StatusCode::InvalidArgument, "fill element size must be 1, 2, 4 or 8 bytes"));
    return env.Undefined();
  }
  uint64_t bits = 0;
  if (elementBytes == 8) {
    if (!info[4].IsBigInt()) {
      throwStatus(env, Status(StatusCode::InvalidArgument, "an 8-byte fill takes its bit pattern as a bigint"));
      return env.Undefined();
    }
    bool lossless = true;
    bits = info[4].As<Napi::BigInt>().Uint64Value(&lossless);
  } else {
    bits = info[4].ToNumber().Uint32Value();
  }
  std::shared_ptr<DeviceAllocation> a;
  CUdeviceptr dptr = 0;
  if (!deviceRange(env, info[0], info[1], count * size_t(elementBytes), &a, &dptr)) return env.Undefined();
  const int device = a->device();
  if (elementBytes == 8) {
    s = KernelModule::instance().prepare(device, "ringtree_fill_u64");
    if (!s.isOk()) {
      throwStatus(env, s);
      return env.Undefined();
    }
  }
  GpuState* st = stateOf(env);
  uint64_t id = st->completions->add(env, info[6].As<Napi::Function>(), {info[0]});
  GpuOp op;
  op.name = "fill";
  op.timeoutMs = info[5].ToNumber().Int64Value();
  op.settle = st->completions->settler(id);
  op.release = [rel = st->completions->releaser(id), a]() mutable {
    a.reset();
    rel();
  };
  op.issue = [dptr, count, elementBytes, bits, device](CUstream stream) -> Status {
    CudaDriver& cu = CudaDriver::instance();
    if (count == 0) return Status::ok();
    if (elementBytes == 1) return cu.check(cu.cuMemsetD8Async(dptr, (unsigned char)bits, count, stream), "cuMemsetD8Async");
    if (elementBytes == 2) return cu.check(cu.cuMemsetD16Async(dptr, (unsigned short)bits, count, stream), "cuMemsetD16Async");
    if (elementBytes == 4) return cu.check(cu.cuMemsetD32Async(dptr, unsigned(bits), count, stream), "cuMemsetD32Async");
    return KernelModule::instance().launchFill64(device, stream, dptr, count, bits);
  };
  deviceWorker(env, device)->post(std::move(op));
  return env.Undefined();
}

// The element-wise kernels deviceConvert runs: (kind, kernel, input and output element bytes).
struct ConvertKind {
  const char* kind;
  const char* kernel;
  size_t inBytes;
  size_t outBytes;
};
constexpr ConvertKind kConvertKinds[] = {
    {"float32>bfloat16", "ringtree_cast_f32_bf16", 4, 2}, {"float32>float16", "ringtree_cast_f32_f16", 4, 2},
    {"bfloat16>float32", "ringtree_cast_bf16_f32", 2, 4}, {"float16>float32", "ringtree_cast_f16_f32", 2, 4},
    {"float32>float32", "ringtree_scale_f32", 4, 4},
};

// deviceConvert(kind, dst, dstOffset, src, srcOffset, count, scale, timeoutMs, callback):
// dst[i] = convert(src[i] * scale) with an embedded kernel on the device stream.
Napi::Value DeviceConvert(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Status s = requireDriver();
  if (!s.isOk()) {
    throwStatus(env, s);
    return env.Undefined();
  }
  const std::string kind = info[0].ToString().Utf8Value();
  const ConvertKind* k = nullptr;
  for (const ConvertKind& c : kConvertKinds) {
    if (kind == c.kind) k = &c;
  }
  if (!k) {
    throwStatus(env, Status(StatusCode::InvalidArgument, "unknown conversion " + kind));
    return env.Undefined();
  }
  if (!info[8].IsFunction()) {
    Napi::TypeError::New(env, "callback required").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  const size_t count = size_t(info[5].ToNumber().Int64Value());
  const float scale = info[6].ToNumber().FloatValue();
  std::shared_ptr<DeviceAllocation> a, b;
  CUdeviceptr dptr = 0, sptr = 0;
  if (!deviceRange(env, info[1], info[2], count * k->outBytes, &a, &dptr)) return env.Undefined();
  if (!deviceRange(env, info[3], info[4], count * k->inBytes, &b, &sptr)) return env.Undefined();
  if (a->device() != b->device()) {
    throwStatus(env, Status(StatusCode::InvalidArgument, "source and destination are on different devices"));
    return env.Undefined();
  }
  const int device = a->device();
  s = KernelModule::instance().prepare(device, k->kernel);
  if (!s.isOk()) {
    throwStatus(env, s);
    return env.Undefined();
  }
  GpuState* st = stateOf(env);
  uint64_t id = st->completions->add(env, info[8].As<Napi::Function>(), {info[1], info[3]});
  GpuOp op;
  op.name = std::string("convert (") + kind + ")";
  op.timeoutMs = info[7].ToNumber().Int64Value();
  op.settle = st->completions->settler(id);
  op.release = [rel = st->completions->releaser(id), a, b]() mutable {
    a.reset();
    b.reset();
    rel();
  };
  const char* kernel = k->kernel;
  op.issue = [device, kernel, sptr, dptr, count, scale](CUstream stream) -> Status {
    return KernelModule::instance().launchMap(device, stream, kernel, sptr, dptr, count, scale);
  };
  deviceWorker(env, device)->post(std::move(op));
  return env.Undefined();
}

Napi::Value CublasLoad(const Napi::CallbackInfo& info) {
  return failureOrNull(info.Env(), CublasLtLibrary::instance().load(stringList(info[0])));
}

int64_t intField(Napi::Object o, const char* key, int64_t fallback) {
  Napi::Value v = o.Get(key);
  return v.IsNumber() ? v.As<Napi::Number>().Int64Value() : fallback;
}

// Shared by deviceGemm and deviceGemmTimed: (desc, a, aOffset, b, bOffset, c,
// cOffset, bias|null, biasOffset, aux|null, auxOffset) from info[0..10]. Sizes
// are checked again here against the allocations (lib/gemm.ts names the
// argument; this only keeps a bad call from touching memory it does not own).
bool parseDeviceGemm(const Napi::CallbackInfo& info, DeviceGemmDesc* d, int* device,
                     std::vector<std::shared_ptr<DeviceAllocation>>* keep) {
  Napi::Env env = info.Env();
  if (!info[0].IsObject()) {
    Napi::TypeError::New(env, "deviceGemm: descriptor must be an object").ThrowAsJavaScriptException();
    return false;
  }
  Napi::Object o = info[0].As<Napi::Object>();
  GemmDesc& g = d->shape;
  int dtype = int(intField(o, "dtype", -1));
  if (dtype < 0 || dtype >= kDTypeCount || !gemmDtypeSupported(DType(dtype))) {
    throwStatus(env, Status(StatusCode::InvalidArgument, "deviceGemm: unsupported dtype code"));
    return false;
  }
  g.dtype = DType(dtype);
  g.transA = o.Get("transA").ToBoolean();
  g.transB = o.Get("transB").ToBoolean();
  g.m = intField(o, "m", -1);
  g.n = intField(o, "n", -1);
  g.k = intField(o, "k", -1);
  g.lda = intField(o, "lda", -1);
  g.ldb = intField(o, "ldb", -1);
  g.ldc = intField(o, "ldc", -1);
  g.batch = intField(o, "batch", 1);
  g.strideA = intField(o, "strideA", 0);
  g.strideB = intField(o, "strideB", 0);
  g.strideC = intField(o, "strideC", 0);
  g.alpha = o.Get("alpha").IsNumber() ? o.Get("alpha").As<Napi::Number>().DoubleValue() : 1.0;
  g.beta = o.Get("beta").IsNumber() ? o.Get("beta").As<Napi::Number>().DoubleValue() : 0.0;
  d->tf32 = o.Get("tf32").ToBoolean();
  d->epilogue = uint32_t(intField(o, "epilogue", CUBLASLT_EPILOGUE_DEFAULT));
  d->auxLd = intField(o, "auxLd", 0);
  // The bounds each range must satisfy: whatever remains of the allocation past its offset.
  auto range = [&](int at, CUdeviceptr* ptr, size_t* bytes) -> bool {
    std::shared_ptr<DeviceAllocation> alloc;
    if (!deviceRange(env, info[at], info[at + 1], 0, &alloc, ptr)) return false;
    *bytes = alloc->bytes() - size_t(*ptr - alloc->pointer());
    if (keep->empty()) *device = alloc->device();
    if (alloc->device() != *device) {
      throwStatus(env, Status(StatusCode::InvalidArgument, "deviceGemm: every array must be on one device"));
      return false;
    }
    keep->push_back(alloc);
    return true;
  };
  if (!range(5, &d->c, &g.cBytes) || !range(1, &d->a, &g.aBytes) || !range(3, &d->b, &g.bBytes)) return false;
  size_t biasBytes = 0, auxBytes = 0;
  const bool wantsBias = (d->epilogue & (4u | 16u)) != 0, wantsAux = (d->epilogue & 128u) != 0;
  if (wantsBias && !range(7, &d->bias, &biasBytes)) return false;
  if (wantsAux && !range(9, &d->aux, &auxBytes)) return false;
  g.a = reinterpret_cast<const void*>(uintptr_t(d->a) | 1);  // validateGemm only checks them for null
  g.b = reinterpret_cast<const void*>(uintptr_t(d->b) | 1);
  g.c = reinterpret_cast<void*>(uintptr_t(d->c) | 1);
  Status s = validateGemm(g);
  if (s.isOk() && wantsBias && biasBytes < size_t(g.n) * dtypeSize(g.dtype)) s = Status(StatusCode::InvalidArgument, "gemm: `bias` is shorter than n");
  if (s.isOk() && wantsAux) {
    const bool mask = (d->epilogue & 8u) != 0 || d->epilogue == CUBLASLT_EPILOGUE_RELU_AUX || d->epilogue == CUBLASLT_EPILOGUE_RELU_AUX_BIAS;
    const uint64_t rowsBytes = g.m == 0 || g.n == 0 ? 0
                               : mask ? (uint64_t(g.m - 1) * uint64_t(d->auxLd) + uint64_t(g.n) + 7) / 8
                                      : (uint64_t(g.m - 1) * uint64_t(d->auxLd) + uint64_t(g.n)) * dtypeSize(g.dtype);
    if (d->auxLd < g.n || rowsBytes > auxBytes) s = Status(StatusCode::InvalidArgument, "gemm: `aux` is too small for m, n and auxLd");
  }
  if (!s.isOk()) {
    throwStatus(env, s);
    return false;
  }
  return true;
}

// deviceGemm(desc, a, aOff, b, bOff, c, cOff, bias, biasOff, aux, auxOff, timeoutMs, callback(failure)):
// one GEMM on the device's stream worker (its own thread, never the libuv pool), ordered after the
// copies and fills already posted there; settles when its completion event fired.
Napi::Value DeviceGemmFn(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Status s = requireDriver();
  if (s.isOk() && !CublasLtLibrary::instance().loaded()) {
    s = Status(StatusCode::BackendUnavailable, "cuBLASLt is not loaded (call cublasLoad first)");
  }
  if (!s.isOk()) {
    throwStatus(env, s);
    return env.Undefined();
  }
  if (!info[12].IsFunction()) {
    Napi::TypeError::New(env, "deviceGemm: callback required").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  DeviceGemmDesc d;
  int device = 0;
  std::vector<std::shared_ptr<DeviceAllocation>> keep;
  if (!parseDeviceGemm(info, &d, &device, &keep)) return env.Undefined();
  GpuState* st = stateOf(env);
  uint64_t id = st->completions->add(env, info[12].As<Napi::Function>(), {info[1], info[3], info[5], info[7], info[9]});
  GpuOp op;
  op.name = "gemm";
  op.timeoutMs = info[11].ToNumber().Int64Value();
  op.issueFailureIsLocal = true;  // runDeviceGemm queues the matmul last: a failure left nothing on the stream
  op.settle = st->completions->settler(id);
  op.release = [rel = st->completions->releaser(id), keep]() mutable {
    keep.clear();
    rel();
  };
  op.issue = [d, device](CUstream stream) -> Status { return runDeviceGemm(device, stream, d); };
  deviceWorker(env, device)->post(std::move(op));
  return env.Undefined();
}

// deviceGemmTimed(...same 11..., iterations, timeoutMs, callback(failure, ms)): `iterations` GEMMs
// issued back to back from the native thread between two CUDA events; ms is their GPU time. For
// benchmarks (scripts/gpu-gemm-check.mjs): no JS or thread hop between the GEMMs.
Napi::Value DeviceGemmTimedFn(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Status s = requireDriver();
  if (s.isOk() && !CublasLtLibrary::instance().loaded()) {
    s = Status(StatusCode::BackendUnavailable, "cuBLASLt is not loaded (call cublasLoad first)");
  }
  if (!s.isOk()) {
    throwStatus(env, s);
    return env.Undefined();
  }
  int iterations = info[11].IsNumber() ? info[11].As<Napi::Number>().Int32Value() : 0;
  if (iterations < 1 || !info[13].IsFunction()) {
    throwStatus(env, Status(StatusCode::InvalidArgument, "deviceGemmTimed: iterations >= 1 and a callback are required"));
    return env.Undefined();
  }
  DeviceGemmDesc d;
  int device = 0;
  std::vector<std::shared_ptr<DeviceAllocation>> keep;
  if (!parseDeviceGemm(info, &d, &device, &keep)) return env.Undefined();
  struct Timing {
    CUevent start = nullptr;
    CUevent end = nullptr;
    ~Timing() {
      CudaDriver& cu = CudaDriver::instance();
      if (start) cu.cuEventDestroy(start);
      if (end) cu.cuEventDestroy(end);
    }
  };
  auto timing = std::make_shared<Timing>();
  GpuState* st = stateOf(env);
  uint64_t id = st->completions->add(env, info[13].As<Napi::Function>(), {info[1], info[3], info[5], info[7], info[9]});
  GpuOp op;
  op.name = "gemm (timed)";
  op.timeoutMs = info[12].ToNumber().Int64Value();
  // Settles after the op's own completion event, which follows `end` on the stream.
  op.settle = [timing, settleFn = st->completions->valueSettler(id)](const Status& status) {
    if (!status.isOk()) return settleFn(status, 0);
    CudaDriver& cu = CudaDriver::instance();
    float ms = 0;
    Status t = cu.check(cu.cuEventElapsedTime(&ms, timing->start, timing->end), "cuEventElapsedTime");
    settleFn(t, t.isOk() ? double(ms) : 0);
  };
  op.release = [timing, rel = st->completions->releaser(id), keep]() mutable {
    timing.reset();
    keep.clear();
    rel();
  };
  op.issue = [d, device, iterations, timing](CUstream stream) -> Status {
    CudaDriver& cu = CudaDriver::instance();
    if (!cu.cuEventElapsedTime) {
      return Status(StatusCode::InvalidArgument, "this CUDA driver has no cuEventElapsedTime: timed runs are unavailable");
    }
    // The first call makes the handle, workspace and plan: outside the timed window.
    RT_CHECK(runDeviceGemm(device, stream, d));
    RT_CHECK(cu.check(cu.cuEventCreate(&timing->start, CU_EVENT_DEFAULT), "cuEventCreate"));
    RT_CHECK(cu.check(cu.cuEventCreate(&timing->end, CU_EVENT_DEFAULT), "cuEventCreate"));
    RT_CHECK(cu.check(cu.cuEventRecord(timing->start, stream), "cuEventRecord"));
    for (int i = 0; i < iterations; i++) RT_CHECK(runDeviceGemm(device, stream, d));
    return cu.check(cu.cuEventRecord(timing->end, stream), "cuEventRecord");
  };
  deviceWorker(env, device)->post(std::move(op));
  return env.Undefined();
}

Napi::Value NcclUniqueIdFn(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  NcclLibrary& nccl = NcclLibrary::instance();
  if (!nccl.loaded()) {
    throwStatus(env, Status(StatusCode::BackendUnavailable, "NCCL is not loaded (call ncclLoad first)"));
    return env.Undefined();
  }
  ncclUniqueId id{};
  Status s = nccl.check(nccl.getUniqueId(&id), "ncclGetUniqueId", nullptr);
  if (!s.isOk()) {
    throwStatus(env, s);
    return env.Undefined();
  }
  return Napi::Buffer<char>::Copy(env, id.internal, sizeof(id.internal));
}

}  // namespace

// new NcclComm({ device, rank, size, uniqueId, algorithm, initTimeoutMs }): the
// communicator is made on its own thread; ops queue behind it.
class AddonNcclComm : public Napi::ObjectWrap<AddonNcclComm> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "NcclComm",
                       {
                           InstanceMethod("submit", &AddonNcclComm::Submit),
                           InstanceMethod("submitTimed", &AddonNcclComm::SubmitTimed),
                           InstanceMethod("abort", &AddonNcclComm::Abort),
                           InstanceMethod("destroy", &AddonNcclComm::Destroy),
                           InstanceMethod("failure", &AddonNcclComm::Failure),
                       });
  }

  explicit AddonNcclComm(const Napi::CallbackInfo& info) : Napi::ObjectWrap<AddonNcclComm>(info) {
    Napi::Env env = info.Env();
    if (!CudaDriver::instance().loaded() || !NcclLibrary::instance().loaded()) {
      throwStatus(env, Status(StatusCode::BackendUnavailable, "the CUDA driver and NCCL must be loaded first"));
      return;
    }
    if (!info[0].IsObject()) {
      Napi::TypeError::New(env, "NcclComm(options)").ThrowAsJavaScriptException();
      return;
    }
    Napi::Object o = info[0].As<Napi::Object>();
    NcclCommOptions opts;
    opts.device = o.Get("device").ToNumber().Int32Value();
    opts.rank = o.Get("rank").ToNumber().Int32Value();
    opts.size = o.Get("size").ToNumber().Int32Value();
    opts.initTimeoutMs = o.Get("initTimeoutMs").ToNumber().Int64Value();
    Napi::Value algo = o.Get("algorithm");
    if (algo.IsString()) opts.algorithm = algo.As<Napi::String>().Utf8Value();
    Napi::Value id = o.Get("uniqueId");
    if (!id.IsTypedArray() || id.As<Napi::TypedArray>().ByteLength() != sizeof(ncclUniqueId)) {
      throwStatus(env, Status(StatusCode::InvalidArgument, "uniqueId must be 128 bytes"));
      return;
    }
    Napi::TypedArray ta = id.As<Napi::TypedArray>();
    std::memcpy(opts.id.internal, static_cast<char*>(ta.ArrayBuffer().Data()) + ta.ByteOffset(), sizeof(ncclUniqueId));
    // { parent: NcclComm, splitColor, splitKey }: made by ncclCommSplit of the parent.
    Napi::Value parent = o.Get("parent");
    if (parent.IsObject()) {
      Napi::Object po = parent.As<Napi::Object>();
      if (!po.InstanceOf(stateOf(env)->ncclCommCtor.Value())) {
        throwStatus(env, Status(StatusCode::InvalidArgument, "parent must be an NcclComm"));
        return;
      }
      opts.parent = AddonNcclComm::Unwrap(po)->comm_;
      if (!opts.parent) {
        throwStatus(env, Status(StatusCode::Aborted, "the parent NCCL communicator was destroyed"));
        return;
      }
      opts.splitColor = o.Get("splitColor").ToNumber().Int32Value();
      opts.splitKey = o.Get("splitKey").ToNumber().Int32Value();
    }
    comm_ = std::make_shared<NcclCommunicator>(opts);
    stateOf(env)->comms.push_back(comm_);
  }

  ~AddonNcclComm() override {
    if (comm_) comm_->destroy();
  }

 private:
  // calls: [{kind, send?, sendOffset, sendBytes, recv?, recvOffset, recvBytes, count, dtype, op, root}]
  // -> NcclCalls, holding each allocation (native) and buffer object (JS). False: a JS exception is pending.
  static bool parseCalls(Napi::Env env, Napi::Array arr, std::vector<NcclCall>* calls,
                         std::vector<std::shared_ptr<DeviceAllocation>>* keep, std::vector<Napi::Value>* keepJs) {
    static const std::map<std::string, NcclCall::Kind> kinds = {
        {"allReduce", NcclCall::AllReduce}, {"reduceScatter", NcclCall::ReduceScatter}, {"allGather", NcclCall::AllGather},
        {"broadcast", NcclCall::Broadcast}, {"reduce", NcclCall::Reduce}, {"send", NcclCall::Send}, {"recv", NcclCall::Recv}};
    for (uint32_t i = 0; i < arr.Length(); i++) {
      Napi::Object c = arr.Get(i).As<Napi::Object>();
      NcclCall call;
      auto k = kinds.find(c.Get("kind").ToString().Utf8Value());
      if (k == kinds.end()) {
        throwStatus(env, Status(StatusCode::InvalidArgument, "unknown NCCL call kind"));
        return false;
      }
      call.kind = k->second;
      call.count = size_t(c.Get("count").ToNumber().Int64Value());
      call.dtype = c.Get("dtype").ToNumber().Int32Value();
      call.op = c.Get("op").ToNumber().Int32Value();
      call.root = c.Get("root").ToNumber().Int32Value();
      int64_t sendBytes = c.Get("sendBytes").ToNumber().Int64Value();
      int64_t recvBytes = c.Get("recvBytes").ToNumber().Int64Value();
      std::shared_ptr<DeviceAllocation> a;
      if (!c.Get("send").IsNull() && !c.Get("send").IsUndefined()) {
        if (!deviceRange(env, c.Get("send"), c.Get("sendOffset"), size_t(sendBytes), &a, &call.send)) return false;
        keep->push_back(a);
        keepJs->push_back(c.Get("send"));
      }
      if (!c.Get("recv").IsNull() && !c.Get("recv").IsUndefined()) {
        if (!deviceRange(env, c.Get("recv"), c.Get("recvOffset"), size_t(recvBytes), &a, &call.recv)) return false;
        keep->push_back(a);
        keepJs->push_back(c.Get("recv"));
      }
      calls->push_back(call);
    }
    return true;
  }

  // submit(name, calls, timeoutMs, callback(failure))
  Napi::Value Submit(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!comm_) {
      throwStatus(env, Status(StatusCode::Aborted, "the NCCL communicator was destroyed"));
      return env.Undefined();
    }
    std::string name = info[0].ToString().Utf8Value();
    if (!info[1].IsArray() || !info[3].IsFunction()) {
      Napi::TypeError::New(env, "submit(name, calls, timeoutMs, callback)").ThrowAsJavaScriptException();
      return env.Undefined();
    }
    std::vector<NcclCall> calls;
    std::vector<std::shared_ptr<DeviceAllocation>> keep;
    std::vector<Napi::Value> keepJs;
    if (!parseCalls(env, info[1].As<Napi::Array>(), &calls, &keep, &keepJs)) return env.Undefined();
    GpuState* st = stateOf(env);
    uint64_t id = st->completions->add(env, info[3].As<Napi::Function>(), keepJs);
    comm_->submit(std::move(calls), name, info[2].ToNumber().Int64Value(), st->completions->settler(id),
                  [rel = st->completions->releaser(id), keep]() mutable {
                    keep.clear();
                    rel();
                  });
    return env.Undefined();
  }

  // submitTimed(name, calls, iterations, timeoutMs, callback(failure, ms)): `iterations`
  // back-to-back runs between two CUDA events; ms is the GPU time of all of them.
  Napi::Value SubmitTimed(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!comm_) {
      throwStatus(env, Status(StatusCode::Aborted, "the NCCL communicator was destroyed"));
      return env.Undefined();
    }
    std::string name = info[0].ToString().Utf8Value();
    if (!info[1].IsArray() || !info[2].IsNumber() || !info[4].IsFunction()) {
      Napi::TypeError::New(env, "submitTimed(name, calls, iterations, timeoutMs, callback)").ThrowAsJavaScriptException();
      return env.Undefined();
    }
    int iterations = info[2].As<Napi::Number>().Int32Value();
    if (iterations < 1) {
      throwStatus(env, Status(StatusCode::InvalidArgument, "iterations must be >= 1"));
      return env.Undefined();
    }
    std::vector<NcclCall> calls;
    std::vector<std::shared_ptr<DeviceAllocation>> keep;
    std::vector<Napi::Value> keepJs;
    if (!parseCalls(env, info[1].As<Napi::Array>(), &calls, &keep, &keepJs)) return env.Undefined();
    GpuState* st = stateOf(env);
    uint64_t id = st->completions->add(env, info[4].As<Napi::Function>(), keepJs);
    comm_->submitTimed(std::move(calls), name, iterations, info[3].ToNumber().Int64Value(), st->completions->valueSettler(id),
                       [rel = st->completions->releaser(id), keep]() mutable {
                         keep.clear();
                         rel();
                       });
    return env.Undefined();
  }

  // abort(code, message, peer): ncclCommAbort on the communicator's thread; pending ops fail with this status.
  Napi::Value Abort(const Napi::CallbackInfo& info) {
    if (comm_) {
      comm_->abort(Status(StatusCode(info[0].ToNumber().Int32Value()), info[1].ToString().Utf8Value(), "",
                          info[2].IsNumber() ? info[2].ToNumber().Int32Value() : -1));
    }
    return info.Env().Undefined();
  }

  Napi::Value Destroy(const Napi::CallbackInfo& info) {
    if (comm_) {
      comm_->destroy();
      comm_.reset();
    }
    return info.Env().Undefined();
  }

  Napi::Value Failure(const Napi::CallbackInfo& info) {
    return comm_ ? failureOrNull(info.Env(), comm_->failure()) : info.Env().Null();
  }

  std::shared_ptr<NcclCommunicator> comm_;
};

void registerCuda(Napi::Env env, Napi::Object exports) {
  auto* st = new GpuState();
  st->completions = std::make_unique<Completions>(env);
  Napi::Function bufferCtor = DeviceBuffer::Define(env);
  st->deviceBufferCtor = Napi::Persistent(bufferCtor);
  env.SetInstanceData<GpuState>(st);
  // At exit: stop every worker (joins threads, aborts NCCL), then close the completion channel.
  napi_add_env_cleanup_hook(
      env,
      [](void* arg) {
        auto* s = static_cast<GpuState*>(arg);
        for (auto& w : s->comms) {
          if (auto c = w.lock()) c->destroy();
        }
        for (auto& kv : s->deviceWorkers) kv.second->shutdown();
        s->completions->close();
      },
      st);
  exports.Set("DeviceBuffer", bufferCtor);
  Napi::Function ncclCtor = AddonNcclComm::Define(env);
  st->ncclCommCtor = Napi::Persistent(ncclCtor);
  exports.Set("NcclComm", ncclCtor);
  exports.Set("cudaLoad", Napi::Function::New(env, CudaLoad, "cudaLoad"));
  exports.Set("ncclLoad", Napi::Function::New(env, NcclLoad, "ncclLoad"));
  exports.Set("cudaInfo", Napi::Function::New(env, CudaInfo, "cudaInfo"));
  exports.Set("deviceCopy", Napi::Function::New(env, DeviceCopy, "deviceCopy"));
  exports.Set("deviceFill", Napi::Function::New(env, DeviceFill, "deviceFill"));
  exports.Set("deviceConvert", Napi::Function::New(env, DeviceConvert, "deviceConvert"));
  exports.Set("ncclUniqueId", Napi::Function::New(env, NcclUniqueIdFn, "ncclUniqueId"));
  exports.Set("cublasLoad", Napi::Function::New(env, CublasLoad, "cublasLoad"));
  exports.Set("deviceGemm", Napi::Function::New(env, DeviceGemmFn, "deviceGemm"));
  exports.Set("deviceGemmTimed", Napi::Function::New(env, DeviceGemmTimedFn, "deviceGemmTimed"));
}

}  // namespace ringtree::addon
