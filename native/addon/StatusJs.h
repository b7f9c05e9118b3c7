// How a native Status crosses into JavaScript, shared by every addon file:
// lib/errors.ts turns these shapes into its typed error classes.
#pragma once

#include <napi.h>

#include "core/status.h"

namespace ringtree::addon {

// { code, message, remedy?, peer? }: what completion callbacks receive.
Napi::Object failureObject(Napi::Env env, const Status& s);
// null for Ok, else failureObject().
Napi::Value failureOrNull(Napi::Env env, const Status& s);
// Throws an Error carrying nativeCode, remedy and peer (NAPI_DISABLE_CPP_EXCEPTIONS:
// the caller returns right after).
void throwStatus(Napi::Env env, const Status& s);

}  // namespace ringtree::addon
