// Monotonic time and deadlines. CLOCK_MONOTONIC is shared by every process on
// a host, so heartbeats written in shared memory compare across ranks.
#pragma once

#include <time.h>

#include <cstdint>
#include <limits>

namespace ringtree {

inline int64_t monotonicNs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return int64_t(ts.tv_sec) * 1000000000LL + ts.tv_nsec;
}

// CLOCK_MONOTONIC nanoseconds for timing ops (their start and end, and the
// deadline taken from the start): the TSC extrapolated from clock_gettime
// where the kernel keeps time with the TSC (x86-64), clock_gettime elsewhere
// and during the first 20 ms. Within microseconds of monotonicNs(), and
// monotonic per thread except across a once-a-second re-anchoring (by at
// most the drift since the last one).
int64_t opClockNs();

class Deadline {
 public:
  Deadline() : atNs_(std::numeric_limits<int64_t>::max()) {}
  static Deadline afterMs(int64_t ms) { return afterMsFrom(monotonicNs(), ms); }
  // From a time the caller already read (a clock read costs ~25 ns here).
  static Deadline afterMsFrom(int64_t nowNs, int64_t ms) {
    Deadline d;
    d.atNs_ = nowNs + ms * 1000000LL;
    return d;
  }
  bool expired() const { return monotonicNs() >= atNs_; }
  int64_t remainingNs() const {
    int64_t r = atNs_ - monotonicNs();
    return r < 0 ? 0 : r;
  }
  int64_t atNs() const { return atNs_; }

 private:
  int64_t atNs_;
};

}  // namespace ringtree
