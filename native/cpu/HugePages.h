// Transparent huge pages for large user buffers.
//
// Every CPU collective streams its user buffers, and at 4 KiB pages each
// page costs a TLB miss (in a VM, a two-level page walk) and, on the
// cross-memory paths, one pin per page in the kernel. Backed by 2 MiB pages
// the same streams ran faster on this VM (2 threads, 128 MiB each; `membw
// BYTES R 1` in bench/peers/membw.c, docs/PERFORMANCE.md "Huge pages"):
// memcpy 11.5-13.2 -> 15.5 GB/s, reads 23-29 -> 30-40, process_vm_readv
// 6.8-9.4 -> 13.6-14.5.
//
// So before a large op the engine asks the kernel to back the 2 MiB-aligned
// interior of each buffer with huge pages: madvise(MADV_HUGEPAGE) marks the
// range for future faults and MADV_COLLAPSE (Linux 6.1) converts the pages
// already there, once (a copy of the range). Only whole 2 MiB pages inside
// the buffer are touched, so no byte outside it changes residency. Contents
// never change; failures (no THP, pinned pages, no free huge page) leave the
// buffer as it was. Off with RINGTREE_HUGE_PAGES=0 or where the kernel's
// transparent_hugepage setting is "never".
#pragma once

#include <cstddef>
#include <cstdint>
#include <mutex>
#include <vector>

namespace ringtree {

class HugePages {
 public:
  // Buffers smaller than this are left alone: they span at most one whole
  // huge page, and small ops would pay for the madvise calls.
  static constexpr size_t kMinBytes = size_t(4) << 20;
  static constexpr uintptr_t kPageBytes = uintptr_t(2) << 20;

  // Off until enabled: `on` is the caller's setting (RINGTREE_HUGE_PAGES),
  // and the kernel's transparent_hugepage setting is read here.
  void enable(bool on);
  bool enabled() const { return enabled_; }

  // Advise (and collapse, the first time) the huge pages inside
  // [p, p + bytes). Cheap for a buffer seen within the last second.
  void prepare(const void* p, size_t bytes);

  // Whether most of [p, p + bytes) (3/4 or more) is on huge pages as far as
  // ringtree knows: collapsed by prepare() within the last second, or in an
  // allocHost() mapping. Cross-memory reads of such a buffer pin 512x fewer
  // pages, which makes them the faster path (pairAllGather).
  bool covers(const void* p, size_t bytes);

  // allocHost() mappings (process-wide, whatever the communicator): noted
  // when made, forgotten when unmapped.
  static void noteMapping(const void* base, size_t bytes, bool mapped);

 private:
  struct Range {
    uintptr_t begin, end;
    int64_t atNs;  // when it was last advised
    bool huge;     // the collapse succeeded
  };
  bool enabled_ = false;
  bool collapse_ = true;  // cleared when the kernel lacks MADV_COLLAPSE
  std::mutex mutex_;
  std::vector<Range> recent_;  // oldest first
};

}  // namespace ringtree
