#include "cpu/Clock.h"

#include <atomic>
#include <cstdio>
#include <cstring>

#if defined(__x86_64__)
#include <x86intrin.h>
#endif

namespace ringtree {

#if defined(__x86_64__)
namespace {

// opClockNs(): CLOCK_MONOTONIC extrapolated from the TSC. The vDSO's
// clock_gettime costs ~24 ns on this project's VMs (an ordered TSC read plus
// its bookkeeping), a plain rdtsc ~10 ns, and a synchronous 2-rank op reads
// the clock twice in ~0.3 us. Used only where the kernel itself keeps time
// with the TSC (so it is invariant and synchronized across CPUs). Until a
// rate is known (the first kCalibrateNs), and whenever the anchor is torn by
// a concurrent update, it falls back to clock_gettime. The anchor is re-taken
// every second and the rate refined over the whole time since the first
// anchor, so the extrapolation follows CLOCK_MONOTONIC (NTP slews included)
// to within microseconds.
constexpr int64_t kCalibrateNs = 20 * 1000000LL;
constexpr int64_t kReanchorNs = 1000 * 1000000LL;

struct TscClock {
  // 0 unknown, 1 usable, 2 not usable.
  std::atomic<int> state{0};
  uint64_t firstTsc = 0;
  int64_t firstNs = 0;
  // Seqlock over the anchor and the rate (odd: being written).
  std::atomic<uint32_t> seq{0};
  std::atomic<uint64_t> anchorTsc{0};
  std::atomic<int64_t> anchorNs{0};
  std::atomic<uint64_t> nsPerTickQ32{0};  // ns per tick, 32.32 fixed point
  std::atomic<uint64_t> reanchorTicks{0};
  std::atomic_flag writing = ATOMIC_FLAG_INIT;
};

TscClock g_clock;

bool kernelUsesTsc() {
  FILE* f = fopen("/sys/devices/system/clocksource/clocksource0/current_clocksource", "r");
  if (!f) return false;
  char name[32] = {0};
  const bool ok = fgets(name, sizeof name, f) != nullptr && strncmp(name, "tsc", 3) == 0 &&
                  (name[3] == '\n' || name[3] == '\0');
  fclose(f);
  return ok;
}

// Take (tsc, ns) as a pair, the TSC read in the middle of two clock reads.
void pair(uint64_t* tsc, int64_t* ns) {
  const int64_t a = monotonicNs();
  *tsc = __rdtsc();
  const int64_t b = monotonicNs();
  *ns = a + (b - a) / 2;
}

// One writer at a time (the flag); readers retry nothing: a torn read falls
// back to clock_gettime.
void reanchor(TscClock& c) {
  if (c.writing.test_and_set(std::memory_order_acquire)) return;
  uint64_t tsc;
  int64_t ns;
  pair(&tsc, &ns);
  if (tsc > c.firstTsc && ns > c.firstNs) {
    const uint64_t rate = uint64_t(((unsigned __int128)(ns - c.firstNs) << 32) / (tsc - c.firstTsc));
    const uint32_t s = c.seq.load(std::memory_order_relaxed);
    c.seq.store(s + 1, std::memory_order_relaxed);
    std::atomic_thread_fence(std::memory_order_release);
    c.anchorTsc.store(tsc, std::memory_order_relaxed);
    c.anchorNs.store(ns, std::memory_order_relaxed);
    c.nsPerTickQ32.store(rate, std::memory_order_relaxed);
    c.reanchorTicks.store(rate ? uint64_t(((unsigned __int128)kReanchorNs << 32) / rate) : 0, std::memory_order_relaxed);
    c.seq.store(s + 2, std::memory_order_release);
    c.state.store(1, std::memory_order_release);
  }
  c.writing.clear(std::memory_order_release);
}

int64_t slowPath(TscClock& c) {
  int st = c.state.load(std::memory_order_acquire);
  if (st == 2) return monotonicNs();
  if (st == 0) {
    if (c.writing.test_and_set(std::memory_order_acquire)) return monotonicNs();
    if (c.firstTsc == 0 && c.state.load(std::memory_order_relaxed) == 0) {
      if (!kernelUsesTsc()) {
        c.state.store(2, std::memory_order_release);
        c.writing.clear(std::memory_order_release);
        return monotonicNs();
      }
      pair(&c.firstTsc, &c.firstNs);
    }
    const bool ready = monotonicNs() - c.firstNs >= kCalibrateNs;
    c.writing.clear(std::memory_order_release);
    if (ready) reanchor(c);
    return monotonicNs();
  }
  return monotonicNs();
}

}  // namespace

int64_t opClockNs() {
  TscClock& c = g_clock;
  if (c.state.load(std::memory_order_acquire) != 1) return slowPath(c);
  const uint32_t s1 = c.seq.load(std::memory_order_acquire);
  const uint64_t tsc0 = c.anchorTsc.load(std::memory_order_relaxed);
  const int64_t ns0 = c.anchorNs.load(std::memory_order_relaxed);
  const uint64_t rate = c.nsPerTickQ32.load(std::memory_order_relaxed);
  const uint64_t every = c.reanchorTicks.load(std::memory_order_relaxed);
  std::atomic_thread_fence(std::memory_order_acquire);
  if ((s1 & 1) || c.seq.load(std::memory_order_relaxed) != s1) return monotonicNs();
  const uint64_t now = __rdtsc();
  // A TSC behind the anchor (another CPU's read, a few ticks apart) counts as
  // the anchor itself: the clock never goes back past a published anchor.
  const uint64_t ticks = now > tsc0 ? now - tsc0 : 0;
  if (ticks >= every) {
    reanchor(c);
    return monotonicNs();
  }
  return ns0 + int64_t(((unsigned __int128)ticks * rate) >> 32);
}

#else

int64_t opClockNs() { return monotonicNs(); }

#endif

}  // namespace ringtree
