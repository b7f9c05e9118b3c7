#include "cpu/transport/PeerTransport.h"

#include <sched.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>

#include "cpu/Futex.h"

namespace ringtree {

// A futex sleep is capped so that interrupts are noticed even if a wake-up is
// lost (a peer died between publishing and ringing).
constexpr int64_t kMaxSleepNs = 100 * 1000000LL;
// A little longer than a futex round trip: spinning longer than that only
// burns the core a peer needs.
constexpr int64_t kSpinNs = 50 * 1000LL;

// Where ranks outnumber the cores (no spinning), how long a waiter first
// gives its core away with sched_yield() before it sleeps: a rank with work
// queued on that core runs at once, and a waiter whose peer answers within
// the window is not woken through a futex (a wake-up of a halted vCPU).
// 4 ranks on 2 cores, bench 1-128 MiB, two interleaved pairs: 1.19x faster
// in the geometric mean (allreduce 1.09-1.29x, reduce-scatter 1.44-1.93x
// from 2 MiB, all-gather 0.86-1.47x, broadcast 0.90-1.57x); 50 us gained
// less, 1000 no more (docs/PERFORMANCE.md, "Yielding before sleeping").
constexpr int64_t kYieldNs = 200 * 1000LL;

// RINGTREE_SPIN_US / RINGTREE_YIELD_US override kSpinNs / kYieldNs
// (measurements of the wait policy).
static int64_t nsFromEnv(const char* name, int64_t fallback) {
  const char* v = getenv(name);
  if (!v || !*v) return fallback;
  return std::max<int64_t>(0, std::atoll(v)) * 1000;
}

PeerTransport::PeerTransport(int rank, int size, std::vector<int> localRanks, std::unique_ptr<ShmTransport> local,
                             bool spin)
    : rank_(rank), size_(size), localRanks_(std::move(localRanks)), localIndex_(size, -1), local_(std::move(local)),
      tcp_(size), spin_(spin), spinNs_(nsFromEnv("RINGTREE_SPIN_US", kSpinNs)),
      yieldNs_(spin ? 0 : nsFromEnv("RINGTREE_YIELD_US", kYieldNs)) {
  for (size_t i = 0; i < localRanks_.size(); i++) localIndex_[localRanks_[i]] = int(i);
  for (auto& t : traffic_) t.reset(new PeerTraffic[size]);
}

PeerTransport::~PeerTransport() { stopTcp(false); }

void PeerTransport::addTcpPeer(std::unique_ptr<TcpPeer> peer) {
  int r = peer->rank();
  tcp_[r] = std::move(peer);
}

void PeerTransport::startTcp() {
  for (auto& t : tcp_)
    if (t) t->start();
}

void PeerTransport::stopTcp(bool graceful) {
  for (auto& t : tcp_)
    if (t) t->stop(graceful);
}

// Spinning for a peer that waits for this very CPU (preempted by us, or
// woken onto it) only delays it, and the scheduler may keep two ranks that
// wake each other on one CPU for hundreds of milliseconds: each wait then
// spins its whole budget before the peer can run, and 2-rank ops ran 3-5x
// slower in such stretches (docs/PERFORMANCE.md, "Two ranks on one CPU").
// A waiter that finds its peer on its own CPU moves itself to another one
// of its allowed CPUs (and is allowed everywhere again at once after).
void PeerTransport::leaveCpuOf(int peer) {
  if (!isLocal(peer) || peer == rank_) return;
  const int mine = sched_getcpu();
  if (mine < 0 || localControl(peer)->spinCpu.load(std::memory_order_relaxed) != mine) return;
  cpu_set_t allowed;
  if (sched_getaffinity(0, sizeof allowed, &allowed) != 0 || CPU_COUNT(&allowed) < 2) return;
  cpu_set_t others = allowed;
  CPU_CLR(mine, &others);
  if (CPU_COUNT(&others) == 0 || sched_setaffinity(0, sizeof others, &others) != 0) return;
  sched_setaffinity(0, sizeof allowed, &allowed);
}

template <class Pred>
Status PeerTransport::waitFor(Pred pred, int peer, const char* what) {
  if (pred()) return Status::ok();
  if (spin_) {
    const int cpu = sched_getcpu();
    if (cpu != lastSpinCpu_) {
      lastSpinCpu_ = cpu;
      self()->spinCpu.store(cpu, std::memory_order_relaxed);
    }
    // The clock is read first after 64 looks: a peer that is running
    // usually answers sooner, and a read costs as much as a dozen looks.
    // After 256 (a microsecond or two), is the peer waiting for our CPU?
    int64_t until = 0;
    for (int i = 1;; i++) {
      cpuRelax();
      if (pred()) return Status::ok();
      if ((i & 63) == 0) {
        const int64_t now = monotonicNs();
        if (until == 0) until = now + spinNs_;
        else if (now > until) break;
        if (i == 256) leaveCpuOf(peer);
      }
    }
  }
  // Bounded by yieldNs_ (200 us), so interrupts and the deadline wait for
  // the sleep loop below.
  if (yieldNs_ > 0) {
    const int64_t until = monotonicNs() + yieldNs_;
    do {
      sched_yield();
      if (pred()) return Status::ok();
    } while (monotonicNs() < until);
  }
  for (;;) {
    uint32_t seen = doorbell(kCollectiveClass);
    if (pred()) return Status::ok();
    if (waiter_) {
      RT_CHECK(waiter_->check(peer));
      if (waiter_->deadline.expired()) return waiter_->timedOut(what, peer);
    }
    int64_t sleepNs = waiter_ ? std::min(waiter_->deadline.remainingNs(), kMaxSleepNs) : kMaxSleepNs;
    // Announce, then look once more: a peer that published after our last
    // look but before it could see the announcement did not ring (ring()).
    local_->announceSleeper(kCollectiveClass);
    if (pred()) {
      local_->retractSleeper(kCollectiveClass);
      return Status::ok();
    }
    local_->waitDoorbell(kCollectiveClass, seen, std::max<int64_t>(sleepNs, 1000));
    local_->retractSleeper(kCollectiveClass);
  }
}

Status PeerTransport::acquireSend(int peer, char** data) {
  char* slot = nullptr;
  RT_CHECK(waitFor([&] { return (slot = trySendSlot(peer, kCollectiveClass)) != nullptr; }, peer,
                   "a free slot towards"));
  *data = slot;
  return Status::ok();
}

void PeerTransport::commitSend(int peer, const MsgHeader& header) { commit(peer, kCollectiveClass, header); }

Status PeerTransport::acquireRecv(int peer, const MsgHeader** header, const char** data) {
  const MsgHeader* h = nullptr;
  RT_CHECK(waitFor([&] { return (h = tryRecvSlot(peer, kCollectiveClass, data)) != nullptr; }, peer, "data from"));
  *header = h;
  return Status::ok();
}

void PeerTransport::releaseRecv(int peer) { release(peer, kCollectiveClass); }

Status PeerTransport::awaitAbove(int peer, const std::atomic<uint64_t>& word, uint64_t above, uint64_t* value) {
  return waitFor([&] { return (*value = word.load(std::memory_order_acquire)) > above; }, peer,
                 "outbox progress from");
}

int PeerTransport::directPid(int peer) const {
  if (peer == rank_ || localIndex_[peer] < 0) return -1;
  if (!self()->crossMemoryOk.load(std::memory_order_acquire)) return -1;
  RankControl* rc = localControl(peer);
  if (!rc->crossMemoryOk.load(std::memory_order_acquire)) return -1;
  return rc->pid.load(std::memory_order_relaxed);
}

void PeerTransport::countDirect(int peer, uint64_t sent, uint64_t received) {
  PeerTraffic& t = traffic_[kCollectiveClass][peer];
  t.bytesSent.store(t.bytesSent.load(std::memory_order_relaxed) + sent, std::memory_order_relaxed);
  t.bytesReceived.store(t.bytesReceived.load(std::memory_order_relaxed) + received, std::memory_order_relaxed);
}

char* PeerTransport::trySendSlot(int peer, int cls) {
  if (localIndex_[peer] >= 0) return local_->trySendSlot(localIndex_[peer], cls);
  return tcp_[peer] ? tcp_[peer]->trySendSlot(cls) : nullptr;
}

void PeerTransport::commit(int peer, int cls, const MsgHeader& header) {
  if (localIndex_[peer] >= 0) local_->commit(localIndex_[peer], cls, header);
  else tcp_[peer]->commit(cls, header);
  countSent(peer, cls, header.bytes);
  if (crashAfterCommits_ > 0 && --crashAfterCommits_ == 0) {
    // RINGTREE_FAULT: die mid-operation, the way a real crash would (or
    // freeze, the way a stopped or swapped-out process would).
    raise(crashSignal_);  // this thread: it stops (or dies) before it runs on
  }
}

const MsgHeader* PeerTransport::tryRecvSlot(int peer, int cls, const char** data) {
  if (localIndex_[peer] >= 0) return local_->tryRecvSlot(localIndex_[peer], cls, data);
  return tcp_[peer] ? tcp_[peer]->tryRecvSlot(cls, data) : nullptr;
}

void PeerTransport::release(int peer, int cls) {
  const char* data;
  const MsgHeader* h = tryRecvSlot(peer, cls, &data);
  countReceived(peer, cls, h ? h->bytes : 0);
  if (localIndex_[peer] >= 0) local_->release(localIndex_[peer], cls);
  else tcp_[peer]->release(cls);
}

void PeerTransport::countSent(int peer, int cls, uint64_t bytes) {
  PeerTraffic& t = traffic_[cls][peer];
  t.bytesSent.store(t.bytesSent.load(std::memory_order_relaxed) + bytes, std::memory_order_relaxed);
  t.messagesSent.store(t.messagesSent.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
}

void PeerTransport::countReceived(int peer, int cls, uint64_t bytes) {
  PeerTraffic& t = traffic_[cls][peer];
  t.bytesReceived.store(t.bytesReceived.load(std::memory_order_relaxed) + bytes, std::memory_order_relaxed);
  t.messagesReceived.store(t.messagesReceived.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
}

}  // namespace ringtree
