// Shared-memory transport among the ranks of one host: SPSC slot rings per
// ordered pair and class, futex doorbells, optional short spinning.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>

#include "cpu/transport/ShmLayout.h"
#include "cpu/transport/ShmSegment.h"
#include "cpu/transport/Transport.h"

namespace ringtree {

class ShmTransport : public Transport {
 public:
  ShmTransport(int rank, int size, std::unique_ptr<ShmSegment> segment, const ShmLayout& layout, bool spin);

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  size_t slotBytes() const override { return layout_.slotBytes(); }
  void setWaiter(Waiter* waiter) override { waiter_ = waiter; }

  // Collective class, blocking.
  Status acquireSend(int peer, char** data) override;
  void commitSend(int peer, const MsgHeader& header) override;
  Status acquireRecv(int peer, const MsgHeader** header, const char** data) override;
  void releaseRecv(int peer) override;

  // Any class, non-blocking (the p2p engine's state machine).
  char* trySendSlot(int peer, int cls);
  void commit(int peer, int cls, const MsgHeader& header);
  const MsgHeader* tryRecvSlot(int peer, int cls, const char** data);
  void release(int peer, int cls);

  // Doorbells: wake `rank`'s waiters of class `cls`; sleep on our own.
  void ring(int rank, int cls);
  void ringAll();
  uint32_t doorbell(int cls) const;
  void sleep(int cls, uint32_t seen, int64_t timeoutNs);

  ControlBlock* control() const { return layout_.control(segment_->base()); }
  RankControl* rankControl(int r) const { return layout_.rank(segment_->base(), r); }
  ShmSegment& segment() { return *segment_; }

  // Bytes and messages per peer and class; each counter has one writer (the
  // thread that owns the class), readers take snapshots for stats().
  struct PeerTraffic {
    std::atomic<uint64_t> bytesSent{0}, bytesReceived{0}, messagesSent{0}, messagesReceived{0};
  };
  const PeerTraffic& traffic(int peer, int cls) const { return traffic_[cls][peer]; }

  // Fault injection (RINGTREE_FAULT): SIGKILL this process after `n` more commits.
  void crashAfterCommits(int n) { crashAfterCommits_ = n; }

 private:
  template <class Pred>
  Status waitFor(Pred pred, int peer, const char* what);
  char* channel(int src, int dst, int cls) const { return layout_.channel(segment_->base(), src, dst, cls); }

  int rank_;
  int size_;
  std::unique_ptr<ShmSegment> segment_;
  ShmLayout layout_;
  bool spin_;
  Waiter* waiter_ = nullptr;
  int crashAfterCommits_ = 0;
  std::unique_ptr<PeerTraffic[]> traffic_[kChannelClasses];
};

}  // namespace ringtree
