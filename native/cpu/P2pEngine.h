// Point-to-point sends and receives, matched by (peer, tag), progressed by
// one thread as a non-blocking state machine so that any number of sends and
// receives in any order make progress together and cannot deadlock.
//
// A message goes out as slot-sized fragments on the peer's p2p channel; its
// fragments are contiguous (one message at a time per peer). A message that
// arrives before its receive is posted is copied to an unexpected-message
// buffer (MPI's eager protocol), so the channel never stalls on it, as long
// as the buffered messages stay under a cap (RINGTREE_P2P_BUFFER_BYTES,
// default kDefaultBufferBytes). Past it a message from a rank on this host
// without a receive waits in the channel, and its sender's send with it,
// until the receive is posted (or the send's deadline passes): a receiver
// that falls behind holds its senders back instead of growing its memory
// without bound. Messages over TCP are always buffered.
#pragma once

#include <atomic>
#include <deque>
#include <functional>
#include <list>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "core/status.h"
#include "cpu/Op.h"
#include "cpu/transport/PeerTransport.h"

namespace ringtree {

class Engine;

class P2pEngine {
 public:
  using Sink = std::function<void(uint64_t, const Status&)>;
  // RINGTREE_P2P_BUFFER_BYTES's default.
  static constexpr uint64_t kDefaultBufferBytes = 256ull << 20;
  P2pEngine(Engine* engine, PeerTransport* transport, Sink sink);
  ~P2pEngine();

  void start();
  // Posts the ops together (one group); thread-safe.
  void post(const std::vector<std::pair<uint64_t, OpDesc>>& ops);
  // Stops the thread; every pending op completes with AbortedError.
  void stop();

 private:
  struct Unexpected;
  struct Pending {
    uint64_t id;
    OpDesc desc;
    uint64_t done = 0;  // bytes sent / received
    Deadline deadline;
    Unexpected* bound = nullptr;  // recv waiting on a partly arrived message
  };
  struct Unexpected {
    int32_t tag;
    uint64_t total;
    bool counted = false;  // in bufferedBytes_ (a message from another rank)
    uint64_t got = 0;
    std::vector<char> data;
    Pending* boundRecv = nullptr;
  };
  struct Incoming {
    bool active = false;
    uint64_t total = 0;
    uint64_t got = 0;
    Pending* recv = nullptr;
    Unexpected* unexpected = nullptr;
  };
  struct PeerQueues {
    std::deque<Pending*> sends;
    std::list<Pending*> recvs;  // posted, unmatched, in post order
    std::list<std::unique_ptr<Unexpected>> unexpected;
    Incoming incoming;
  };

  void loop();
  bool progress();
  void accept(Pending* op);
  bool pumpSends(int peer);
  bool pumpRecvs(int peer);
  void deliver(Pending* recv, Unexpected* u);
  // Forget a buffered message (delivered): its bytes leave bufferedBytes_.
  void dropUnexpected(PeerQueues& q, const Unexpected* u);
  void finish(Pending* op, const Status& s);
  void failAll(const Status& s);
  Status sizeMismatch(const Pending& recv, uint64_t total, int peer);
  int64_t checkDeadlines();

  Engine* engine_;
  PeerTransport* transport_;
  Sink sink_;
  int rank_, size_;
  std::vector<PeerQueues> peers_;
  std::vector<uint64_t> sendSeq_;
  std::list<std::unique_ptr<Pending>> all_;
  // Bytes of messages from other ranks buffered without a receive, and the
  // most that may be (RINGTREE_P2P_BUFFER_BYTES).
  uint64_t bufferedBytes_ = 0;
  uint64_t bufferCap_;

  std::mutex inboxMutex_;
  std::vector<std::pair<uint64_t, OpDesc>> inbox_;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

}  // namespace ringtree
