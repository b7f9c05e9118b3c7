// The CPU communicator: one transport (shared memory on this host, TCP to
// other hosts), a collective executor thread, a point-to-point thread, a
// watchdog and, where completions are held (RINGTREE_COALESCE_US), a timer.
// Backend-neutral of Node-API: completions leave through a sink callback.
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
#include "cpu/HugePages.h"
#include "cpu/Op.h"
#include "cpu/algorithms/Collective.h"
#include "cpu/transport/PeerTransport.h"

namespace ringtree {

struct PairPathTimes;

class P2pEngine;

struct EngineOptions {
  int rank = 0;
  int size = 1;
  std::string shmName;
  // Global ranks that share this host's segment, in segment order (this rank
  // among them). Empty: every rank is local.
  std::vector<int> localRanks;
  bool create = false;
  uint64_t slotBytes = 256 * 1024;
  uint32_t slots = 8;
  // Bytes of each rank's outbox in the shared segment (ShmLayout); 0: none.
  uint64_t outboxBytes = 8 << 20;
  uint64_t chunkBytes = 256 * 1024;
  // Back large user buffers with transparent huge pages (HugePages.h).
  bool hugePages = true;
  bool spin = true;
  // Hold finished collectives by default (completeCollective): where the
  // ranks' collective and JS threads outnumber the cores. RINGTREE_COALESCE_US
  // overrides it either way.
  bool holdCompletions = false;
  int64_t heartbeatTimeoutMs = 30000;
  // RINGTREE_FAULT: SIGKILL this rank during (faultOp, faultSeq); with
  // faultStop, SIGSTOP it (a frozen rank, continued from outside).
  bool faultArmed = false;
  bool faultStop = false;
  OpKind faultOp = OpKind::AllReduce;
  uint64_t faultSeq = 0;
};

struct PeerState {
  int rank;
  int pid;
  uint64_t collSeq;
  bool inOp;
  bool alive;
  bool destroyed;
};

// What ran, per op kind (comm.stats()).
struct OpStats {
  OpKind kind = OpKind::Barrier;
  uint64_t count = 0;
  uint64_t failed = 0;
  uint64_t byAlgorithm[2] = {0, 0};  // Algorithm::Ring, Algorithm::Tree
  std::vector<uint64_t> bytesSent;      // per peer rank
  std::vector<uint64_t> bytesReceived;  // per peer rank
  uint64_t messagesSent = 0;
  uint64_t messagesReceived = 0;
  int64_t timeNs = 0;  // collectives: wall time in the engine
  uint64_t ranInline = 0;  // async collectives run on the submitting thread (tryInline)
};

// One completion: the op's id (from submit) and how it ended.
using Completion = std::pair<uint64_t, Status>;
// Receives completions in order, several at once where the engine has them
// together (held ones), so that the JS thread is woken once for them.
using CompletionSink = std::function<void(const Completion* completions, size_t count)>;

class Engine {
 public:
  static Status create(const EngineOptions& options, std::unique_ptr<Engine>* out);
  ~Engine();

  int rank() const { return options_.rank; }
  int size() const { return options_.size; }

  // Hands over a connected, authenticated pair of sockets to a remote rank
  // (one per channel class); the engine owns the fds from here on.
  Status addTcpPeer(int peer, int fdCollective, int fdP2p);
  // After every rank has attached: read peer pids, start the threads.
  Status start(CompletionSink sink);
  void unlink();

  // Queue an op; the sink receives (id, status) exactly once, after the
  // engine stopped touching the op's buffers.
  void submit(uint64_t id, const OpDesc& desc);
  void submitGroup(const std::vector<std::pair<uint64_t, OpDesc>>& ops);
  // Queue several collectives at once, in order (one lock, one wake-up).
  void submitMany(const std::vector<std::pair<uint64_t, OpDesc>>& ops);
  // Runs a collective on the calling thread once queued collectives drained.
  // `times`, if given, receives when it started and ended (monotonicNs()),
  // for the JS flight recorder: reading the clock here saves the JS side two
  // Date.now() calls per synchronous op.
  struct OpTimes {
    int64_t startNs = 0;
    int64_t endNs = 0;
  };
  Status runSync(OpDesc desc, OpTimes* times = nullptr);

  // A small async collective on the calling thread when nothing is queued or
  // running: a 2-rank allreduce that fits one message, whose peer answers
  // within a few microseconds (where ranks may spin), or any collective of
  // at most 256 KiB that every peer (all local) is already running. Saves the
  // two thread hand-offs (to the collective thread and back through the
  // thread-safe function) that dominate a small awaited op.
  enum class InlineResult {
    NotTried,  // not eligible: submit() it
    Done,      // finished here: *status is the result, the sink is not called
    Deferred,  // half done and queued first: the sink reports it as usual
  };
  InlineResult tryInline(uint64_t id, OpDesc desc, Status* status);

  void abort(const std::string& reason);
  // Graceful and local: stops threads; queued and running ops get AbortedError.
  void destroy();

  Status failure();
  // failure() is not Ok: one atomic load, for per-call checks.
  bool hasFailed() const { return failed_.load(std::memory_order_acquire); }
  std::vector<PeerState> peerStates();
  std::vector<OpStats> stats();
  void resetStats();
  // Bytes of each local rank's outbox in the segment (ShmLayout).
  uint64_t outboxBytes() const;
  // Whether large user buffers go onto huge pages (the option and the kernel allow it).
  bool hugePages() const { return hugePages_.enabled(); }
  // Called by the p2p engine when a send or recv settles.
  void recordP2p(OpKind kind, bool ok);

  // Used by the p2p engine and the waiters.
  // peersMatter: a peer that left (destroy()) interrupts too (collectives).
  Status checkInterrupts(bool peersMatter = true);
  // PeerLostError when `peer` left (destroy() or exit) while we need it.
  Status checkPeerLeft(int peer);
  void fail(const Status& status, bool publish);
  Status timeoutStatus(const OpDesc& op, const char* waitingFor, int peer);
  PeerTransport* transport() { return transport_.get(); }
  // A peer left gracefully (destroy() or exit): shared-memory flag or TCP goodbye.
  bool peerDestroyed(int peer) const;
  bool stopping() const { return stopping_.load(std::memory_order_acquire); }

 private:
  explicit Engine(const EngineOptions& options);
  // inlineBudgetNs/deferred: see CollectiveArgs. An op that defers keeps
  // its traffic snapshot and start time for its resumed half.
  Status execute(OpDesc& op, int64_t inlineBudgetNs = 0, bool* deferred = nullptr, OpTimes* times = nullptr,
                 const std::vector<const OpDesc*>* ahead = nullptr);
  // The queued ops that may travel in one message after `first` (a 2-rank
  // one-hop allreduce), popped from the queue (queueMutex_ held).
  void takeBatch(const OpDesc& first, std::vector<std::pair<uint64_t, OpDesc>>* batch);
  // Bytes per published buffer from which a collective of `kind` runs direct.
  uint64_t directMinBytes(OpKind kind) const;
  uint64_t outboxMinBytes() const;
  void collectiveLoop();
  void watchdogLoop();
  bool peersAlreadyIn(uint64_t seq) const;
  // Completion moderation (RINGTREE_COALESCE_US): a collective that finishes
  // while more wait in the queue may be held for a bounded time so that the
  // next ones reach the sink with it (one wake-up of the JS thread instead of
  // several). `durationNs`: how long the op ran; `more`: ops follow it
  // (queued, or later in the same batch).
  void completeCollective(uint64_t id, const Status& status, int64_t durationNs, bool more);
  // Hands every held completion to the sink, in order (holdMutex_ held).
  void flushHeldLocked();
  void armHoldTimer(int64_t atNs);
  void holdTimerLoop();
  Status adoptPublishedFailure();
  void complete(uint64_t id, const Status& status);

  EngineOptions options_;
  uint64_t directMinOverride_ = 0;  // RINGTREE_DIRECT_MIN_BYTES, 0: the defaults
  uint64_t outboxMaxBytes_ = UINT64_MAX;  // RINGTREE_OUTBOX_MAX_BYTES (experiments): largest buffer through the outboxes
  HugePages hugePages_;  // large user buffers onto 2 MiB pages
  std::unique_ptr<PairPathTimes> pairTimes_;  // pairAllGather's path times (one executor at a time)
  std::unique_ptr<PeerTransport> transport_;
  CompletionSink sink_;
  std::unique_ptr<P2pEngine> p2p_;

  // Collective queue (JS thread produces, executor consumes).
  std::mutex queueMutex_;
  std::condition_variable queueCv_;
  std::deque<std::pair<uint64_t, OpDesc>> queue_;
  std::atomic<size_t> queued_{0};  // queue_.size(), readable without the lock
  bool running_ = false;
  std::mutex execMutex_;  // held while a collective runs (thread or sync)
  // Seq 0 is init()'s own closing barrier; users' collectives count from 1.
  uint64_t nextCollSeq_ = 0;

  std::atomic<bool> stopping_{false};
  std::atomic<bool> failed_{false};
  std::mutex failureMutex_;
  Status failure_;

  std::vector<uint64_t> trafficScratch_;
  // The receive side's place in a batch from the peer (one-hop allreduce);
  // used under execMutex_ like the collective channels.
  OneHopStream oneHopStream_;
  int64_t opStartNs_ = 0;
  std::mutex statsMutex_;
  std::vector<OpStats> stats_;  // indexed by OpKind
  std::vector<uint64_t> p2pBaseline_;  // class-1 counters at the last reset: sent, received, msgs... per peer

  std::vector<int> peerPidfds_;
  int64_t lastHeartbeatSentNs_ = 0;
  int wakeFd_ = -1;  // eventfd that stops the watchdog
  // Held completions (completeCollective). Sink calls for collectives
  // happen under holdMutex_, so the timer thread and the collective thread
  // never reorder them.
  int64_t coalesceCapNs_ = 0;     // 0: never hold
  std::mutex holdMutex_;
  std::vector<Completion> held_;
  // The collective thread adds to a hold until the soft deadline and
  // delivers it with the first op that finishes after it; the timer fires at
  // the hard deadline, only when no op finished in between (a long or
  // blocked op), so a steady stream of ops costs no timer wake-up. The soft
  // deadline leaves two op durations (at least half the window) for that.
  int64_t holdSoftDeadlineNs_ = 0;
  int64_t holdDeadlineNs_ = 0;
  bool holdTimerBroken_ = false;  // the timer thread gave up: hold nothing
  int holdTimerFd_ = -1;  // timerfd: armed without waking anyone, fires only when a hold expires
  std::thread holdTimerThread_;
  std::thread collectiveThread_;
  std::thread watchdogThread_;
  bool started_ = false;
  bool destroyed_ = false;
};

}  // namespace ringtree
