// Status codes that cross from the engine to the addon. The addon maps each
// code onto one TypeScript error class (lib/errors.ts); keep the numbers in
// sync with NATIVE_CODES there.
#pragma once

#include <string>
#include <utility>

namespace ringtree {

enum class StatusCode : int {
  Ok = 0,
  InvalidArgument = 1,
  PeerLost = 2,
  CollectiveMismatch = 3,
  Timeout = 4,
  Aborted = 5,
  BackendUnavailable = 6,
  Internal = 7,
};

const char* statusCodeName(StatusCode code);

class Status {
 public:
  Status() = default;
  Status(StatusCode code, std::string message, std::string remedy = {}, int peer = -1)
      : code_(code), message_(std::move(message)), remedy_(std::move(remedy)), peer_(peer) {}

  static Status ok() { return Status(); }
  bool isOk() const { return code_ == StatusCode::Ok; }
  StatusCode code() const { return code_; }
  const std::string& message() const { return message_; }
  const std::string& remedy() const { return remedy_; }
  // The rank the error is about (the dead peer, the lagging rank), or -1.
  int peer() const { return peer_; }

 private:
  StatusCode code_ = StatusCode::Ok;
  std::string message_;
  std::string remedy_;
  int peer_ = -1;
};

// Propagate a non-Ok status to the caller (NCCL's checks.h style).
#define RT_CHECK(expr)                     \
  do {                                     \
    ::ringtree::Status _rt_s = (expr);     \
    if (!_rt_s.isOk()) return _rt_s;       \
  } while (0)

}  // namespace ringtree
