// One remote rank reached over TCP: two connections (one per channel class,
// so a backlog of point-to-point bytes can never stall a collective's, and
// vice versa), each with a sender and a receiver thread that move slots
// between private SlotRings and the socket.
//
// Flow control is TCP's own: a receiver thread stops reading while its ring
// is full. Control frames (heartbeats, failures, goodbye) travel on the
// point-to-point connection, whose ring the p2p engine always drains.
#pragma once

#include <atomic>
#include <condition_variable>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "core/status.h"
#include "cpu/transport/ShmLayout.h"
#include "cpu/transport/SlotRing.h"

namespace ringtree {

class TcpPeer {
 public:
  struct Hooks {
    // A slot arrived or was sent (wake this rank's waiters of `cls`).
    std::function<void(int cls)> wake;
    // The connection broke without a goodbye, or the peer reported a failure.
    std::function<void(const Status& status)> failed;
  };

  TcpPeer(int selfRank, int peerRank, int fd0, int fd1, uint32_t slots, uint64_t slotBytes, Hooks hooks);
  ~TcpPeer();

  void start();
  // Says goodbye (when `graceful`), then closes both connections and joins.
  void stop(bool graceful);

  char* trySendSlot(int cls) { return send_[cls]->trySendSlot(); }
  void commit(int cls, const MsgHeader& header);
  const MsgHeader* tryRecvSlot(int cls, const char** data) { return recv_[cls]->tryRecv(data); }
  void release(int cls);

  void sendHeartbeat(uint64_t collSeq, bool inOp);
  void sendFailure(const Status& status, int originRank);

  int rank() const { return peerRank_; }
  int64_t lastHeardNs() const { return lastHeardNs_.load(std::memory_order_relaxed); }
  uint64_t collSeq() const { return collSeq_.load(std::memory_order_relaxed); }
  bool inOp() const { return inOp_.load(std::memory_order_relaxed); }
  bool saidGoodbye() const { return bye_.load(std::memory_order_acquire); }
  bool closed() const { return closed_.load(std::memory_order_acquire); }

 private:
  void senderLoop(int cls);
  void receiverLoop(int cls);
  bool writeAll(int fd, const void* data, size_t bytes);
  bool readAll(int fd, void* data, size_t bytes);
  void connectionLost(int cls, const std::string& why);
  void queueControl(uint16_t type, std::string payload);

  const int selfRank_;
  const int peerRank_;
  int fd_[kChannelClasses];
  std::unique_ptr<SlotRing> send_[kChannelClasses];
  std::unique_ptr<SlotRing> recv_[kChannelClasses];
  Hooks hooks_;

  std::mutex mutex_;
  std::condition_variable senderCv_[kChannelClasses];
  std::condition_variable receiverCv_[kChannelClasses];
  std::deque<std::pair<uint16_t, std::string>> control_;  // sent on the p2p connection
  std::atomic<bool> stopping_{false};
  std::atomic<bool> bye_{false};
  std::atomic<bool> closed_{false};
  std::atomic<bool> controlLost_{false};  // the point-to-point connection ended
  std::atomic<int64_t> lastHeardNs_;
  std::atomic<uint64_t> collSeq_{0};
  std::atomic<bool> inOp_{false};
  std::vector<std::thread> threads_;
};

}  // namespace ringtree
