#include "addon/StatusJs.h"

namespace ringtree::addon {

Napi::Object failureObject(Napi::Env env, const Status& s) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("code", Napi::Number::New(env, int(s.code())));
  o.Set("message", Napi::String::New(env, s.message()));
  if (!s.remedy().empty()) o.Set("remedy", Napi::String::New(env, s.remedy()));
  if (s.peer() >= 0) o.Set("peer", Napi::Number::New(env, s.peer()));
  return o;
}

Napi::Value failureOrNull(Napi::Env env, const Status& s) {
  return s.isOk() ? env.Null() : Napi::Value(failureObject(env, s));
}

void throwStatus(Napi::Env env, const Status& s) {
  Napi::Error e = Napi::Error::New(env, s.message());
  e.Set("nativeCode", Napi::Number::New(env, int(s.code())));
  if (!s.remedy().empty()) e.Set("remedy", Napi::String::New(env, s.remedy()));
  if (s.peer() >= 0) e.Set("peer", Napi::Number::New(env, s.peer()));
  e.ThrowAsJavaScriptException();
}

}  // namespace ringtree::addon
