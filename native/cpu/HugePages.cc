#include "cpu/HugePages.h"

#include <errno.h>
#include <sys/mman.h>

#include <algorithm>
#include <cstring>
#include <fstream>
#include <map>
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

// allocHost() mappings, process-wide: begin -> end. They never overlap (each
// is its own mmap), so those that meet a range are found in O(log n): a
// process may hold hundreds, and covers() runs on every direct 2-rank op.
std::mutex mappingsMutex;
std::map<uintptr_t, uintptr_t> mappings;

bool kernelAllowsHugePages() {
  std::ifstream f("/sys/kernel/mm/transparent_hugepage/enabled");
  std::string s;
  if (!std::getline(f, s)) return false;
  return s.find("[never]") == std::string::npos;
}

}  // namespace

void HugePages::enable(bool on) { enabled_ = on && kernelAllowsHugePages(); }

void HugePages::prepare(const void* p, size_t bytes) {
  if (!enabled_ || p == nullptr || bytes < kMinBytes) return;
  const uintptr_t a = reinterpret_cast<uintptr_t>(p);
  const uintptr_t begin = (a + kPageBytes - 1) & ~(kPageBytes - 1);
  const uintptr_t end = (a + bytes) & ~(kPageBytes - 1);
  if (end <= begin) return;
  const int64_t now = monotonicNs();
  std::lock_guard<std::mutex> lock(mutex_);
  for (const Range& r : recent_)
    if (r.begin <= begin && end <= r.end && now - r.atNs < kFreshNs) return;
  void* start = reinterpret_cast<void*>(begin);
  const size_t len = end - begin;
  // A range the kernel refuses (EINVAL: not private anonymous memory, such
  // as a shared or file mapping) is remembered too, so that it is not asked
  // again each op. Collapse failures (EAGAIN: pinned or busy pages; ENOMEM:
  // no free huge page) leave small pages, which still work.
  bool huge = false;
  if (madvise(start, len, MADV_HUGEPAGE) == 0 && collapse_) {
    huge = madvise(start, len, MADV_COLLAPSE) == 0;
    if (!huge && errno == EINVAL) collapse_ = false;  // a kernel before 6.1
  }
  recent_.erase(std::remove_if(recent_.begin(), recent_.end(),
                               [&](const Range& r) { return r.begin < end && begin < r.end; }),
                recent_.end());
  if (recent_.size() >= kRecentRanges) recent_.erase(recent_.begin());
  recent_.push_back({begin, end, now, huge});
}

bool HugePages::covers(const void* p, size_t bytes) {
  if (!enabled_ || p == nullptr || bytes == 0) return false;
  const uintptr_t a = reinterpret_cast<uintptr_t>(p), b = a + bytes;
  // Bytes of [a, b) in known huge ranges. A collapsed range inside an
  // allocHost mapping counts twice, but the mapping alone covers it.
  uint64_t inside = 0;
  auto add = [&](uintptr_t begin, uintptr_t end) {
    if (begin < b && a < end) inside += std::min(b, end) - std::max(a, begin);
  };
  {
    std::lock_guard<std::mutex> lock(mappingsMutex);
    // The last mapping that begins at or before a, then those that begin before b.
    auto it = mappings.upper_bound(a);
    if (it != mappings.begin()) --it;
    for (; it != mappings.end() && it->first < b; ++it) add(it->first, it->second);
  }
  const int64_t now = monotonicNs();
  std::lock_guard<std::mutex> lock(mutex_);
  for (const Range& r : recent_)
    if (r.huge && now - r.atNs < kFreshNs) add(r.begin, r.end);
  return inside >= bytes / 4 * 3;
}

void HugePages::noteMapping(const void* base, size_t bytes, bool mapped) {
  const uintptr_t begin = reinterpret_cast<uintptr_t>(base), end = begin + bytes;
  std::lock_guard<std::mutex> lock(mappingsMutex);
  if (mapped) {
    mappings[begin] = end;
  } else {
    auto it = mappings.find(begin);
    if (it != mappings.end() && it->second == end) mappings.erase(it);
  }
}

}  // namespace ringtree
