// Shared-memory channels among the ranks of one host: SPSC slot rings per
// ordered pair and class in one segment, and a futex doorbell per rank.
// Indices here are local (position on this host); PeerTransport maps global
// ranks onto them.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>

#include "cpu/transport/ShmLayout.h"
#include "cpu/transport/ShmSegment.h"

namespace ringtree {

class ShmTransport {
 public:
  ShmTransport(int localRank, int localSize, std::unique_ptr<ShmSegment> segment, const ShmLayout& layout);

  int rank() const { return rank_; }
  int size() const { return size_; }
  size_t slotBytes() const { return layout_.slotBytes(); }
  size_t slotCount() const { return layout_.slots(); }
  uint64_t outboxBytes() const { return layout_.outboxBytes(); }
  char* outbox(int r) const { return layout_.outbox(segment_->base(), r); }

  // Non-blocking slot access; `peer` is a local index.
  char* trySendSlot(int peer, int cls);
  void commit(int peer, int cls, const MsgHeader& header);
  const MsgHeader* tryRecvSlot(int peer, int cls, const char** data);
  void release(int peer, int cls);

  // Doorbells: wake local rank `r`'s waiters of class `cls`; sleep on our own.
  void ring(int r, int cls);
  void ringAll();
  uint32_t doorbell(int cls) const;
  void sleep(int cls, uint32_t seen, int64_t timeoutNs);
  // sleep() in three steps, for waiters that re-check their condition after
  // announcing themselves (required of collective-class waiters: ring() skips
  // the doorbell of a rank with no announced sleeper).
  void announceSleeper(int cls);
  void retractSleeper(int cls);
  void waitDoorbell(int cls, uint32_t seen, int64_t timeoutNs);

  ControlBlock* control() const { return layout_.control(segment_->base()); }
  RankControl* rankControl(int r) const { return layout_.rank(segment_->base(), r); }
  ShmSegment& segment() { return *segment_; }

 private:
  char* channel(int src, int dst, int cls) const { return layout_.channel(segment_->base(), src, dst, cls); }
  void ringAlways(RankControl* rc, int cls);

  int rank_;
  int size_;
  std::unique_ptr<ShmSegment> segment_;
  ShmLayout layout_;
  // Per (local peer, class): the last tail read from that channel (trySendSlot).
  std::unique_ptr<std::atomic<uint64_t>[]> tailCache_;
};

}  // namespace ringtree
