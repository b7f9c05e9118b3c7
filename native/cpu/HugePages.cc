#include "cpu/HugePages.h"

#include <errno.h>
#include <sys/mman.h>

#include <algorithm>
#include <cstring>
#include <fstream>
#include <string>

#include "cpu/Clock.h"

#ifndef MADV_COLLAPSE
#define MADV_COLLAPSE 25
#endif

namespace ringtree {

namespace {

constexpr size_t kRecentRanges = 64;
// A buffer advised within this long is taken as still advised. After that it
// is advised again: its memory may have been freed and mapped anew at the same
// address (a fresh mapping has neither the advice nor huge pages).
constexpr int64_t kFreshNs = 1'000'000'000;

bool kernelAllowsHugePages() {
  std::ifstream f("/sys/kernel/mm/transparent_hugepage/enabled");
  std::string s;
  if (!std::getline(f, s)) return false;
  return s.find("[never]") == std::string::npos;
}

}  // namespace

void HugePages::enable(bool on) { enabled_ = on && kernelAllowsHugePages(); }

void HugePages::prepare(const void* p, size_t bytes) {
  if (!enabled_ || bytes < kMinBytes) return;
  const uintptr_t a = reinterpret_cast<uintptr_t>(p);
  const uintptr_t begin = (a + kPageBytes - 1) & ~(kPageBytes - 1);
  const uintptr_t end = (a + bytes) & ~(kPageBytes - 1);
  if (end <= begin) return;
  const int64_t now = monotonicNs();
  std::lock_guard<std::mutex> lock(mutex_);
  for (Range& r : recent_)
    if (r.begin <= begin && end <= r.end && now - r.atNs < kFreshNs) return;
  void* start = reinterpret_cast<void*>(begin);
  const size_t len = end - begin;
  if (madvise(start, len, MADV_HUGEPAGE) != 0) {
    // EINVAL: not anonymous private memory we may advise (a shared or file
    // mapping); remember it anyway so that it is not asked again each op.
  } else if (collapse_ && madvise(start, len, MADV_COLLAPSE) != 0 && errno == EINVAL) {
    collapse_ = false;  // a kernel before 6.1
  }
  recent_.erase(std::remove_if(recent_.begin(), recent_.end(),
                               [&](const Range& r) { return r.begin < end && begin < r.end; }),
                recent_.end());
  if (recent_.size() >= kRecentRanges) recent_.erase(recent_.begin());
  recent_.push_back({begin, end, now});
}

}  // namespace ringtree
