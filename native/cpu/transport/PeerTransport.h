// The transport the engine uses: every peer is reached either through the
// host's shared-memory segment (ranks on this host) or through a TcpPeer
// (ranks elsewhere, or everyone with RINGTREE_TRANSPORT=tcp). Algorithms see
// one interface and never know which.
//
// Waiting is the same for both: a rank sleeps on its own doorbell (a futex in
// its shared-memory control block), rung by local peers directly and by the
// TCP threads when a slot arrives or leaves.
#pragma once

#include <atomic>
#include <memory>
#include <vector>

#include "cpu/transport/ShmTransport.h"
#include "cpu/transport/TcpPeer.h"
#include "cpu/transport/Transport.h"

namespace ringtree {

class PeerTransport : public Transport {
 public:
  // `localRanks`: the global ranks on this host, in shared-memory index order
  // (this rank among them).
  PeerTransport(int rank, int size, std::vector<int> localRanks, std::unique_ptr<ShmTransport> local, bool spin);
  ~PeerTransport() override;

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  size_t slotBytes() const override { return local_->slotBytes(); }
  size_t slotCount() const override { return local_->slotCount(); }
  void setWaiter(Waiter* waiter) override { waiter_ = waiter; }
  Status checkPeer(int peer) override { return waiter_ ? waiter_->check(peer) : Status::ok(); }

  // Collective class, blocking.
  Status acquireSend(int peer, char** data) override;
  void commitSend(int peer, const MsgHeader& header) override;
  Status acquireRecv(int peer, const MsgHeader** header, const char** data) override;
  void releaseRecv(int peer) override;
  bool canSend(int peer) override { return trySendSlot(peer, kCollectiveClass) != nullptr; }
  const MsgHeader* pollRecv(int peer, const char** data) override { return tryRecvSlot(peer, kCollectiveClass, data); }
  int directPid(int peer) const override;
  char* outbox(int peer) override { return isLocal(peer) ? local_->outbox(localIndex_[peer]) : nullptr; }
  uint64_t outboxBytes() const override { return local_->outboxBytes(); }
  std::atomic<uint64_t>& outboxFilled(int peer) override { return local_->rankControl(localIndex_[peer])->outboxFilled; }
  std::atomic<uint64_t>& outboxTaken(int peer) override { return local_->rankControl(localIndex_[peer])->outboxTaken; }
  Status awaitAbove(int peer, const std::atomic<uint64_t>& word, uint64_t above, uint64_t* value) override;
  void notify(int peer) override {
    if (isLocal(peer)) local_->ring(localIndex_[peer], kCollectiveClass);
  }
  void countDirect(int peer, uint64_t sent, uint64_t received) override;

  // Any class, non-blocking (the p2p engine).
  char* trySendSlot(int peer, int cls);
  void commit(int peer, int cls, const MsgHeader& header);
  const MsgHeader* tryRecvSlot(int peer, int cls, const char** data);
  void release(int peer, int cls);

  void addTcpPeer(std::unique_ptr<TcpPeer> peer);
  void startTcp();
  void stopTcp(bool graceful);
  TcpPeer* tcp(int peer) const { return tcp_[peer].get(); }
  bool isLocal(int peer) const { return localIndex_[peer] >= 0; }
  int localIndex(int peer) const { return localIndex_[peer]; }
  const std::vector<int>& localRanks() const { return localRanks_; }

  // Doorbells of this rank.
  void wakeSelf(int cls) { local_->ring(local_->rank(), cls); }
  // Wakes every waiter of every local rank (failures, destroy).
  void wakeAllLocal() { local_->ringAll(); }
  uint32_t doorbell(int cls) const { return local_->doorbell(cls); }
  void sleep(int cls, uint32_t seen, int64_t timeoutNs) { local_->sleep(cls, seen, timeoutNs); }

  RankControl* self() const { return local_->rankControl(local_->rank()); }
  // Local peers only.
  RankControl* localControl(int peer) const { return local_->rankControl(localIndex_[peer]); }
  ControlBlock* control() const { return local_->control(); }
  ShmSegment& segment() { return local_->segment(); }

  struct PeerTraffic {
    std::atomic<uint64_t> bytesSent{0}, bytesReceived{0}, messagesSent{0}, messagesReceived{0};
  };
  const PeerTraffic& traffic(int peer, int cls) const { return traffic_[cls][peer]; }

  // Fault injection (RINGTREE_FAULT): SIGKILL this process after `n` more commits.
  void crashAfterCommits(int n, int sig) {
    crashAfterCommits_ = n;
    crashSignal_ = sig;
  }

 private:
  template <class Pred>
  Status waitFor(Pred pred, int peer, const char* what);
  void leaveCpuOf(int peer);
  void countSent(int peer, int cls, uint64_t bytes);
  void countReceived(int peer, int cls, uint64_t bytes);

  const int rank_;
  const int size_;
  std::vector<int> localRanks_;
  std::vector<int> localIndex_;  // global rank -> shm index, or -1
  std::unique_ptr<ShmTransport> local_;
  std::vector<std::unique_ptr<TcpPeer>> tcp_;
  bool spin_;
  int64_t spinNs_;
  int64_t yieldNs_;  // 0 where spin_
  Waiter* waiter_ = nullptr;
  int crashAfterCommits_ = 0;
  int crashSignal_ = 0;
  // leaveCpuOf(): the CPU we last published (one waiter at a time per
  // transport: the collective class has one executor).
  int lastSpinCpu_ = -2;
  std::unique_ptr<PeerTraffic[]> traffic_[kChannelClasses];
};

}  // namespace ringtree
