// Pure-unit test hooks for the reduction kernels: reduceForTest(),
// divideForTest(), setSimdLevel(), activeSimdLevel(). The TS tests compare
// them against typed-array references; the engine itself never calls them.
#include <cmath>
#include <string>

#include "addon/registry.h"
#include "core/reduce.h"

namespace ringtree::addon {
namespace {

struct ByteView {
  void* data = nullptr;
  size_t byteLength = 0;
};

size_t typedArrayElementSize(napi_typedarray_type type) {
  switch (type) {
    case napi_int8_array:
    case napi_uint8_array:
    case napi_uint8_clamped_array: return 1;
    case napi_int16_array:
    case napi_uint16_array: return 2;
    case napi_int32_array:
    case napi_uint32_array:
    case napi_float32_array: return 4;
    case napi_float64_array:
    case napi_bigint64_array:
    case napi_biguint64_array: return 8;
    default: return 1;  // newer kinds (Float16Array) report byte length via bytes below
  }
}

// Reads any ArrayBufferView. Throws a TypeError naming `name` and returns
// false for anything else.
bool readView(Napi::Env env, Napi::Value value, const char* name, ByteView* out) {
  bool isTypedArray = false;
  bool isDataView = false;
  napi_is_typedarray(env, value, &isTypedArray);
  napi_is_dataview(env, value, &isDataView);
  if (isTypedArray) {
    napi_typedarray_type type;
    size_t length = 0;
    napi_value buffer;
    size_t offset = 0;
    if (napi_get_typedarray_info(env, value, &type, &length, &out->data, &buffer, &offset) != napi_ok) {
      Napi::TypeError::New(env, std::string("could not read `") + name + "`").ThrowAsJavaScriptException();
      return false;
    }
    out->byteLength = length * typedArrayElementSize(type);
    return true;
  }
  if (isDataView) {
    napi_value buffer;
    size_t offset = 0;
    if (napi_get_dataview_info(env, value, &out->byteLength, &out->data, &buffer, &offset) != napi_ok) {
      Napi::TypeError::New(env, std::string("could not read `") + name + "`").ThrowAsJavaScriptException();
      return false;
    }
    return true;
  }
  Napi::TypeError::New(env, std::string("expected a TypedArray or DataView for `") + name + "`")
      .ThrowAsJavaScriptException();
  return false;
}

// Reads a small non-negative integer code (dtype/op) below `limit`.
bool readCode(Napi::Env env, Napi::Value value, const char* name, int limit, int* out) {
  if (!value.IsNumber()) {
    Napi::TypeError::New(env, std::string("expected a number for `") + name + "`").ThrowAsJavaScriptException();
    return false;
  }
  double v = value.As<Napi::Number>().DoubleValue();
  if (!(v >= 0 && v < limit) || std::floor(v) != v) {
    Napi::RangeError::New(env, std::string("`") + name + "` must be an integer in [0, " + std::to_string(limit) +
                                   "), got " + std::to_string(v))
        .ThrowAsJavaScriptException();
    return false;
  }
  *out = static_cast<int>(v);
  return true;
}

// reduceForTest(out, a, b, dtype, op): out[i] = a[i] (op) b[i].
Napi::Value ReduceForTest(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  ByteView out, a, b;
  int dtypeCode = 0, opCode = 0;
  if (!readView(env, info[0], "out", &out) || !readView(env, info[1], "a", &a) ||
      !readView(env, info[2], "b", &b) || !readCode(env, info[3], "dtype", kDTypeCount, &dtypeCode) ||
      !readCode(env, info[4], "op", kReduceOpCount, &opCode)) {
    return env.Undefined();
  }
  DType dtype = static_cast<DType>(dtypeCode);
  size_t size = dtypeSize(dtype);
  if (out.byteLength % size != 0) {
    Napi::RangeError::New(env, "`out` byteLength " + std::to_string(out.byteLength) + " is not a multiple of " +
                                   std::to_string(size) + " (" + dtypeName(dtype) + ")")
        .ThrowAsJavaScriptException();
    return env.Undefined();
  }
  for (const auto& [view, name] : {std::pair{&a, "a"}, std::pair{&b, "b"}}) {
    if (view->byteLength != out.byteLength) {
      Napi::RangeError::New(env, std::string("`") + name + "` has byteLength " + std::to_string(view->byteLength) +
                                     ", `out` has " + std::to_string(out.byteLength))
          .ThrowAsJavaScriptException();
      return env.Undefined();
    }
  }
  reduce(out.data, a.data, b.data, out.byteLength / size, dtype, static_cast<ReduceOp>(opCode));
  return env.Undefined();
}

// divideForTest(data, dtype, divisor): data[i] /= divisor.
Napi::Value DivideForTest(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  ByteView data;
  int dtypeCode = 0;
  if (!readView(env, info[0], "data", &data) || !readCode(env, info[1], "dtype", kDTypeCount, &dtypeCode)) {
    return env.Undefined();
  }
  if (!info[2].IsNumber()) {
    Napi::TypeError::New(env, "expected a number for `divisor`").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  double divisor = info[2].As<Napi::Number>().DoubleValue();
  if (!(divisor >= 1 && divisor <= 2147483647.0) || std::floor(divisor) != divisor) {
    Napi::RangeError::New(env, "`divisor` must be an integer >= 1, got " + std::to_string(divisor))
        .ThrowAsJavaScriptException();
    return env.Undefined();
  }
  DType dtype = static_cast<DType>(dtypeCode);
  size_t size = dtypeSize(dtype);
  if (data.byteLength % size != 0) {
    Napi::RangeError::New(env, "`data` byteLength " + std::to_string(data.byteLength) + " is not a multiple of " +
                                   std::to_string(size) + " (" + dtypeName(dtype) + ")")
        .ThrowAsJavaScriptException();
    return env.Undefined();
  }
  divideBy(data.data, data.byteLength / size, dtype, static_cast<int>(divisor));
  return env.Undefined();
}

// setSimdLevel(name): false when the CPU (or this build) cannot run it.
Napi::Value SetSimdLevel(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsString()) {
    Napi::TypeError::New(env, "expected 'baseline' | 'avx2' | 'avx512' for `level`").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  std::string name = info[0].As<Napi::String>().Utf8Value();
  SimdLevel level;
  if (!parseSimdLevel(name, &level)) {
    Napi::RangeError::New(env, "expected 'baseline' | 'avx2' | 'avx512' for `level`, got '" + name + "'")
        .ThrowAsJavaScriptException();
    return env.Undefined();
  }
  return Napi::Boolean::New(env, setSimdLevel(level));
}

Napi::Value ActiveSimdLevel(const Napi::CallbackInfo& info) {
  return Napi::String::New(info.Env(), simdLevelName(activeSimdLevel()));
}

}  // namespace

void registerReduceHooks(Napi::Env env, Napi::Object exports) {
  exports.Set("reduceForTest", Napi::Function::New(env, ReduceForTest, "reduceForTest"));
  exports.Set("divideForTest", Napi::Function::New(env, DivideForTest, "divideForTest"));
  exports.Set("setSimdLevel", Napi::Function::New(env, SetSimdLevel, "setSimdLevel"));
  exports.Set("activeSimdLevel", Napi::Function::New(env, ActiveSimdLevel, "activeSimdLevel"));
}

}  // namespace ringtree::addon
