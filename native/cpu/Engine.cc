#include "cpu/Engine.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>

#include "cpu/Futex.h"
#include "cpu/P2pEngine.h"
#include "cpu/algorithms/Collective.h"
#include "cpu/transport/CrossMemory.h"

namespace ringtree {

namespace {

// The wait policy of one collective: interrupts come from the engine, the
// deadline from the op.
class OpWaiter : public Waiter {
 public:
  OpWaiter(Engine* engine, const OpDesc& op) : engine_(engine), op_(op) {}
  Status check(int peer) override {
    RT_CHECK(engine_->checkInterrupts(false));
    return engine_->checkPeerLeft(peer);
  }
  Status timedOut(const char* waitingFor, int peer) override { return engine_->timeoutStatus(op_, waitingFor, peer); }

 private:
  Engine* engine_;
  const OpDesc& op_;
};

int pidfdOpen(int pid) {
#ifdef SYS_pidfd_open
  return int(syscall(SYS_pidfd_open, pid, 0));
#else
  errno = ENOSYS;
  return -1;
#endif
}

// RINGTREE_COALESCE_US's default. 4 ranks on 2 cores, all-gather 1 MiB, 50
// in flight, median us per op over 4 interleaved runs: 257 never holding, 221
// at 2000, 213 at 4000 (synchronous calls: 158); 8000 and 60000 were no
// better than 4000. Windows of 1 ms or of one op's duration gained 0-10 %. In
// the bench (80 in flight): 293-347 us never holding, 260 at 2000, 224-255 at
// 4000; Open MPI 170-185. 2 ranks on 2 cores (bench allgather -b 1M -e 4M,
// ratio to Open MPI at 1 / 2 / 4 MiB): 0.88-0.89 / 1.09-1.16 / 0.84-1.32 at
// 4000, against 0.54-0.63 / 0.68-0.75 / 0.82-0.96 never holding before the
// completion channel; windows of 500 and 1000 fell in between (PERFORMANCE.md,
// "Completions to JS").
constexpr int64_t kDefaultCoalesceUs = 4000;

// What peers read to test cross-memory attach (RankControl::probeAddr).
const volatile uint64_t kCrossMemoryProbe = kCrossMemoryMagic;

void copyString(char* dst, size_t cap, const std::string& s) {
  size_t n = std::min(cap - 1, s.size());
  std::memcpy(dst, s.data(), n);
  dst[n] = 0;
}

}  // namespace

Engine::Engine(const EngineOptions& options) : options_(options), pairTimes_(std::make_unique<PairPathTimes>()) {}

Engine::~Engine() { destroy(); }

Status Engine::create(const EngineOptions& o, std::unique_ptr<Engine>* out) {
  if (o.size < 1 || o.rank < 0 || o.rank >= o.size)
    return Status(StatusCode::InvalidArgument, "rank " + std::to_string(o.rank) + " is outside world size " +
                                                   std::to_string(o.size));
  if (o.slots < 2 || o.slotBytes < 64)
    return Status(StatusCode::InvalidArgument, "slots must be >= 2 and slotBytes >= 64");
  std::vector<int> localRanks = o.localRanks;
  if (localRanks.empty())
    for (int r = 0; r < o.size; r++) localRanks.push_back(r);
  const auto self = std::find(localRanks.begin(), localRanks.end(), o.rank);
  if (self == localRanks.end())
    return Status(StatusCode::InvalidArgument, "localRanks must include this rank " + std::to_string(o.rank));
  const int localIndex = int(self - localRanks.begin());
  const int localSize = int(localRanks.size());
  ShmLayout layout(uint32_t(localSize), o.slotBytes, o.slots, o.outboxBytes);
  auto segment = std::make_unique<ShmSegment>();
  if (o.create) {
    Status made = segment->create(o.shmName, layout.totalBytes());
    if (!made.isOk() && layout.outboxBytes() > 0) {
      // The outboxes are an optimization: a /dev/shm with room for the
      // slots alone (Docker's 64 MiB at 4 ranks) runs without them. The
      // other ranks take the outbox size from the segment.
      ShmLayout bare(uint32_t(localSize), o.slotBytes, o.slots, 0);
      if (segment->create(o.shmName, bare.totalBytes()).isOk()) {
        fprintf(stderr,
                "ringtree: rank %d: no room in /dev/shm for %d outboxes of %llu bytes (%s); running without them. "
                "Give /dev/shm more room (docker run --shm-size=1g) or set RINGTREE_OUTBOX_BYTES=0 to silence this.\n",
                o.rank, localSize, static_cast<unsigned long long>(layout.outboxBytes()), made.message().c_str());
        layout = bare;
        made = Status::ok();
      }
    }
    RT_CHECK(made);
    ControlBlock* cb = layout.control(segment->base());
    cb->magic = kShmMagic;
    cb->version = kShmVersion;
    cb->size = uint32_t(localSize);
    cb->slotBytes = layout.slotBytes();
    cb->slots = layout.slots();
    cb->totalBytes = layout.totalBytes();
    cb->outboxBytes = layout.outboxBytes();
  } else {
    const ShmLayout bare(uint32_t(localSize), o.slotBytes, o.slots, 0);
    RT_CHECK(segment->open(o.shmName, bare.totalBytes()));
    ControlBlock* cb = bare.control(segment->base());
    if (cb->magic != kShmMagic || cb->version != kShmVersion || cb->size != uint32_t(localSize) ||
        cb->slotBytes != bare.slotBytes() || cb->slots != bare.slots()) {
      return Status(StatusCode::InvalidArgument,
                    "shared segment " + o.shmName + " was made for " + std::to_string(cb->size) + " local ranks, " +
                        std::to_string(cb->slots) + " slots of " + std::to_string(cb->slotBytes) +
                        " bytes; this rank expects " + std::to_string(localSize) + " local ranks, " +
                        std::to_string(bare.slots()) + " slots of " + std::to_string(bare.slotBytes()),
                    "Every rank must pass the same worldSize, RINGTREE_SLOT_BYTES and RINGTREE_SLOTS.");
    }
    // The outboxes are as the creator made them (RINGTREE_OUTBOX_BYTES there).
    layout = ShmLayout(uint32_t(localSize), o.slotBytes, o.slots, cb->outboxBytes);
    if (cb->totalBytes != layout.totalBytes() || segment->bytes() < layout.totalBytes())
      return Status(StatusCode::InvalidArgument,
                    "shared segment " + o.shmName + " is " + std::to_string(segment->bytes()) + " bytes, expected " +
                        std::to_string(layout.totalBytes()),
                    "Every rank must run the same ringtree version.");
  }
  std::unique_ptr<Engine> e(new Engine(o));
  e->stats_.resize(9);
  for (size_t k = 0; k < e->stats_.size(); k++) {
    e->stats_[k].kind = OpKind(k);
    e->stats_[k].bytesSent.assign(o.size, 0);
    e->stats_[k].bytesReceived.assign(o.size, 0);
  }
  e->p2pBaseline_.assign(4 * size_t(o.size), 0);
  e->hugePages_.enable(o.hugePages);
  auto shm = std::make_unique<ShmTransport>(localIndex, localSize, std::move(segment), layout);
  e->transport_ = std::make_unique<PeerTransport>(o.rank, o.size, localRanks, std::move(shm), o.spin);
  RankControl* me = e->transport_->self();
  me->pid.store(getpid());
  me->probeAddr.store(reinterpret_cast<uint64_t>(&kCrossMemoryProbe));
  me->crossMemoryOk.store(0);
  me->heartbeatNs.store(monotonicNs());
  me->spinCpu.store(-1);
  me->attached.store(1, std::memory_order_release);
  *out = std::move(e);
  return Status::ok();
}

Status Engine::addTcpPeer(int peer, int fdCollective, int fdP2p) {
  if (peer < 0 || peer >= options_.size || transport_->isLocal(peer) || transport_->tcp(peer) || started_)
    return Status(StatusCode::InvalidArgument, "addTcpPeer: rank " + std::to_string(peer) +
                                                   " is out of range, local, already connected, or the engine started");
  TcpPeer::Hooks hooks;
  hooks.wake = [this](int cls) { transport_->wakeSelf(cls); };
  hooks.failed = [this](const Status& s) { fail(s, false); };
  transport_->addTcpPeer(std::make_unique<TcpPeer>(options_.rank, peer, fdCollective, fdP2p, uint32_t(options_.slots),
                                                   transport_->slotBytes(), std::move(hooks)));
  return Status::ok();
}

Status Engine::start(CompletionSink sink) {
  sink_ = std::move(sink);
  const int n = options_.size;
  peerPidfds_.assign(n, -1);
  for (int r = 0; r < n; r++) {
    if (r == options_.rank) continue;
    if (!transport_->isLocal(r)) {
      if (!transport_->tcp(r))
        return Status(StatusCode::Internal, "no connection to rank " + std::to_string(r) + " was handed over");
      continue;
    }
    RankControl* rc = transport_->localControl(r);
    if (!rc->attached.load(std::memory_order_acquire))
      return Status(StatusCode::Internal, "rank " + std::to_string(r) + " has not attached to the shared segment");
    peerPidfds_[r] = pidfdOpen(rc->pid.load());  // -1: fall back to kill(pid, 0)
  }
  // Single copy between local ranks where the kernel lets us read every local
  // peer (same user, no seccomp or Yama ptrace restriction); peers read our
  // flag only after init()'s closing barrier.
  const char* crossMemory = getenv("RINGTREE_CROSS_MEMORY");
  bool direct = !(crossMemory && std::strcmp(crossMemory, "0") == 0);
  for (int r = 0; r < n && direct; r++) {
    if (r == options_.rank || !transport_->isLocal(r)) continue;
    RankControl* rc = transport_->localControl(r);
    uint64_t word = 0;
    direct = readCrossMemory(rc->pid.load(), r, rc->probeAddr.load(), &word, sizeof word).isOk() &&
             word == kCrossMemoryMagic;
  }
  transport_->self()->crossMemoryOk.store(direct ? 1 : 0, std::memory_order_release);
  // RINGTREE_DIRECT_MIN_BYTES: one threshold for every direct path (tests
  // force them at small sizes with 1). Every rank of a job must see the same.
  if (const char* v = getenv("RINGTREE_DIRECT_MIN_BYTES"); v && *v) directMinOverride_ = strtoull(v, nullptr, 10);
  if (const char* v = getenv("RINGTREE_OUTBOX_MAX_BYTES"); v && *v) outboxMaxBytes_ = strtoull(v, nullptr, 10);
  // RINGTREE_PAIR_PATH: how the 2-rank all-gather (pairAllGather) and
  // allreduce (pairAllReduce) choose between the slots and the kernel:
  // "slots" or "direct" (an op runs direct where either rank proposes it),
  // else by huge pages and, for the all-gather, recent times.
  if (const char* v = getenv("RINGTREE_PAIR_PATH"); v && *v)
    pairTimes_->force = std::strcmp(v, "slots") == 0 ? 0 : std::strcmp(v, "direct") == 0 ? 1 : -1;
  wakeFd_ = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  // RINGTREE_COALESCE_US: the longest a finished collective may wait for the
  // ones queued behind it before its completion goes to JS (0: never). By
  // default where the ranks' collective and JS threads outnumber the cores
  // (holdCompletions): there a wake-up of a JS thread lands on a busy core
  // and preempts a collective thread mid-op (completeCollective), even with
  // a core per rank. With cores to spare it lands on an idle one, and a
  // hold would only delay the Promise of an op whose successor is running.
  {
    int64_t capUs = options_.holdCompletions ? kDefaultCoalesceUs : 0;
    if (const char* v = getenv("RINGTREE_COALESCE_US"); v && *v) capUs = strtoll(v, nullptr, 10);
    coalesceCapNs_ = std::max<int64_t>(0, capUs) * 1000;
  }
  if (coalesceCapNs_ > 0) {
    holdTimerFd_ = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC);
    if (holdTimerFd_ < 0) coalesceCapNs_ = 0;  // no timer, no holding
  }
  p2p_ = std::make_unique<P2pEngine>(this, transport_.get(), [this](uint64_t id, const Status& s) { complete(id, s); });
  started_ = true;
  transport_->startTcp();
  if (holdTimerFd_ >= 0) holdTimerThread_ = std::thread([this] { holdTimerLoop(); });
  collectiveThread_ = std::thread([this] { collectiveLoop(); });
  watchdogThread_ = std::thread([this] { watchdogLoop(); });
  p2p_->start();
  return Status::ok();
}

bool Engine::peerDestroyed(int peer) const {
  if (transport_->isLocal(peer)) return transport_->localControl(peer)->destroyed.load(std::memory_order_acquire) != 0;
  TcpPeer* t = transport_->tcp(peer);
  return t && t->saidGoodbye();
}

void Engine::unlink() { transport_->segment().unlink(); }

uint64_t Engine::directMinBytes(OpKind kind) const {
  if (directMinOverride_) return directMinOverride_;
  // A 2-rank all-gather that could go direct chooses per op (pairAllGather);
  // it is usually faster through the slots at every size. Cached blocks (up
  // to 8 MiB each): two memcpys, into a slot and out of it on the other core,
  // beat one process_vm_readv, which pins every page it copies (13 GB/s here
  // against 48). Larger ones: the slots stay cached and the output is
  // streamed, where the kernel copy reads every output line before writing
  // it: 6.8-7.3 GB/s busbw at 32-128 MiB against 4.9-6.5 direct.
  if (kind == OpKind::AllGather && options_.size == 2) return UINT64_MAX;
  return kDirectMinBytes;
}

uint64_t Engine::outboxBytes() const { return transport_->outboxBytes(); }

// The outboxes take buffers from the direct paths' threshold up (tests
// force both with RINGTREE_DIRECT_MIN_BYTES).
uint64_t Engine::outboxMinBytes() const { return directMinOverride_ ? directMinOverride_ : kDirectMinBytes; }

void Engine::complete(uint64_t id, const Status& status) {
  const Completion one(id, status);
  if (sink_) sink_(&one, 1);
}

// Interrupt moderation for the Promise path. Every completion handed to the
// sink wakes the rank's JS thread, which then takes a core from a collective
// thread (ours or a peer's) in the middle of the next op, and every rank of
// that op waits for the preempted one: at 4 ranks on 2 cores each wake-up
// cost the ring about 13 us of JS per rank, 50 us per op; at 2 ranks on 2
// cores the woken thread lands on its collective thread's core. Holding a
// completion while more ops are queued behind it lets one wake-up settle
// several. A hold never starts when nothing is queued behind the op (the
// last op of a burst, a lone awaited op), never holds an error, lasts at
// most coalesceCapNs_ (the timer thread delivers it if the collective thread
// is busy then), and an error, destroy() or a drained queue delivers
// everything held at once, in order.
void Engine::completeCollective(uint64_t id, const Status& status, int64_t durationNs, bool more) {
  if (coalesceCapNs_ == 0) {
    complete(id, status);
    return;
  }
  std::lock_guard<std::mutex> lk(holdMutex_);
  if (more && status.isOk() && !holdTimerBroken_ && !stopping_.load(std::memory_order_acquire) &&
      !failed_.load(std::memory_order_acquire)) {
    const int64_t now = monotonicNs();
    // A window opens only for an op short enough that the next one may
    // finish inside it: holding a long op (a 16 MiB allreduce at 4 ranks
    // takes 6-9 ms) would only add the timer's wake-up to the JS thread's.
    if (held_.empty() && 2 * durationNs <= coalesceCapNs_) {
      const int64_t window = coalesceCapNs_;
      held_.emplace_back(id, status);
      holdDeadlineNs_ = now + window;
      holdSoftDeadlineNs_ = now + std::max(window / 2, window - 2 * durationNs);
      armHoldTimer(holdDeadlineNs_);
      return;
    } else if (!held_.empty() && now < holdSoftDeadlineNs_) {
      held_.emplace_back(id, status);
      return;
    }
  }
  if (held_.empty()) {
    complete(id, status);
    return;
  }
  held_.emplace_back(id, status);  // one hand-over for the hold and this op
  flushHeldLocked();
  armHoldTimer(0);  // disarm: nothing left to deliver
}

void Engine::flushHeldLocked() {
  if (held_.empty()) return;
  if (sink_) sink_(held_.data(), held_.size());
  held_.clear();
}

// atNs 0 disarms; timerfd_settime never wakes the timer thread by itself.
void Engine::armHoldTimer(int64_t atNs) {
  itimerspec spec{};
  if (atNs > 0) {
    spec.it_value.tv_sec = atNs / 1000000000LL;
    spec.it_value.tv_nsec = atNs % 1000000000LL;
  }
  timerfd_settime(holdTimerFd_, TFD_TIMER_ABSTIME, &spec, nullptr);
}

void Engine::holdTimerLoop() {
  for (;;) {
    uint64_t expirations = 0;
    ssize_t got = read(holdTimerFd_, &expirations, sizeof expirations);
    if (got < 0 && errno == EINTR) continue;
    std::lock_guard<std::mutex> lk(holdMutex_);
    if (got < 0) {
      // Cannot happen with a valid blocking timerfd; if it does, stop holding
      // rather than leave a completion without its deadline.
      flushHeldLocked();
      holdTimerBroken_ = true;
      return;
    }
    // A hold ends at its deadline, or at once on failure or stop; a timer
    // that fired for a hold already delivered finds nothing (or a later
    // deadline, which the collective thread armed).
    if (!held_.empty()) {
      if (monotonicNs() >= holdDeadlineNs_ || stopping_.load(std::memory_order_acquire) ||
          failed_.load(std::memory_order_acquire))
        flushHeldLocked();
      else
        armHoldTimer(holdDeadlineNs_);
    }
    if (stopping_.load(std::memory_order_acquire)) return;
  }
}

void Engine::submit(uint64_t id, const OpDesc& desc) {
  if (isCollective(desc.kind)) {
    std::lock_guard<std::mutex> lk(queueMutex_);
    OpDesc d = desc;
    d.seq = nextCollSeq_++;
    queue_.emplace_back(id, d);
    queued_.store(queue_.size(), std::memory_order_release);
    queueCv_.notify_all();
    return;
  }
  p2p_->post({{id, desc}});
}

void Engine::submitMany(const std::vector<std::pair<uint64_t, OpDesc>>& ops) {
  std::lock_guard<std::mutex> lk(queueMutex_);
  for (const auto& [id, desc] : ops) {
    queue_.emplace_back(id, desc);
    queue_.back().second.seq = nextCollSeq_++;
  }
  queued_.store(queue_.size(), std::memory_order_release);
  queueCv_.notify_all();
}

void Engine::submitGroup(const std::vector<std::pair<uint64_t, OpDesc>>& ops) { p2p_->post(ops); }

Status Engine::runSync(OpDesc desc, OpTimes* times) {
  {
    std::unique_lock<std::mutex> lk(queueMutex_);
    desc.seq = nextCollSeq_++;
    // Read the clock only when there is something to wait for.
    Deadline deadline = queue_.empty() && !running_ ? Deadline() : Deadline::afterMs(desc.timeoutMs);
    while (!queue_.empty() || running_) {
      if (stopping_) break;
      if (queueCv_.wait_for(lk, std::chrono::nanoseconds(std::min<int64_t>(deadline.remainingNs(), 100000000))) ==
              std::cv_status::timeout &&
          deadline.expired()) {
        Status s(StatusCode::Timeout,
                 std::string(opKindName(desc.kind)) + "Sync timed out after " + std::to_string(desc.timeoutMs) +
                     " ms waiting for " + std::to_string(queue_.size() + (running_ ? 1 : 0)) +
                     " queued async collective(s) to finish first",
                 "Await pending async collectives before calling a *Sync method, or raise timeoutMs.");
        fail(s, true);
        if (times) times->startNs = times->endNs = monotonicNs();
        return s;
      }
    }
  }
  std::lock_guard<std::mutex> ex(execMutex_);
  return execute(desc, 0, nullptr, times);
}

// How long an inline attempt waits for the peer on the caller's thread: a
// peer that is running answers within a few microseconds; one that is not
// is the collective thread's business.
constexpr int64_t kInlineBudgetNs = 20 * 1000;
// The largest op (input or output bytes) that runs inline only because its
// peers are already in it: about as long as the hand-offs it saves.
constexpr uint64_t kInlineMaxBytes = 256 * 1024;

// Whether every other rank is a local one already running collective `seq`
// (and so waiting for this rank): then the op ends as soon as this rank has
// done its part, and doing it on the caller's thread saves the hand-offs.
bool Engine::peersAlreadyIn(uint64_t seq) const {
  for (int p = 0; p < options_.size; p++) {
    if (p == options_.rank) continue;
    if (!transport_->isLocal(p)) return false;
    const RankControl* rc = transport_->localControl(p);
    if (rc->inOp.load(std::memory_order_acquire) == 0 || rc->collSeq.load(std::memory_order_acquire) != seq)
      return false;
  }
  return true;
}

Engine::InlineResult Engine::tryInline(uint64_t id, OpDesc desc, Status* status) {
  if (!isCollective(desc.kind) || options_.size < 2) return InlineResult::NotTried;
  const size_t es = dtypeSize(desc.dtype);
  const uint64_t chunkBytes = desc.chunkBytes ? desc.chunkBytes : options_.chunkBytes;
  const size_t chunkElems = size_t(std::clamp<uint64_t>(chunkBytes / es, 1, transport_->slotBytes() / es));
  // A 2-rank allreduce of one message can stop half way (it is resumable):
  // it goes inline whether or not its peer is there yet. Any other small
  // collective goes inline only where every peer is already running it,
  // since it cannot be handed over once started; a large one never does,
  // so that a Promise never holds the JS thread for long. (A peer that froze
  // inside the op, e.g. SIGSTOP, holds this thread as it would a *Sync call:
  // until the peer is found lost or the op's deadline.)
  const bool oneHop = options_.spin && options_.size == 2 && desc.kind == OpKind::AllReduce &&
                      oneHopAllReduce(*transport_, desc, chunkElems) && transport_->canSend(1 - options_.rank);
  if (!oneHop && std::max(desc.inputBytes, desc.outputBytes) > kInlineMaxBytes) return InlineResult::NotTried;
  {
    std::lock_guard<std::mutex> lk(queueMutex_);
    if (!queue_.empty() || running_ || stopping_) return InlineResult::NotTried;
    if (!oneHop && !peersAlreadyIn(nextCollSeq_)) return InlineResult::NotTried;
    desc.seq = nextCollSeq_++;
    running_ = true;  // holds off the collective thread and runSync
  }
  bool deferred = false;
  Status s;
  {
    std::lock_guard<std::mutex> ex(execMutex_);
    s = oneHop ? execute(desc, kInlineBudgetNs, &deferred) : execute(desc);
  }
  {
    std::lock_guard<std::mutex> lk(statsMutex_);
    stats_[size_t(desc.kind)].ranInline++;
  }
  {
    std::lock_guard<std::mutex> lk(queueMutex_);
    running_ = false;
    if (deferred) {
      desc.resume = true;
      queue_.emplace_front(id, desc);
      queued_.store(queue_.size(), std::memory_order_release);
    }
  }
  queueCv_.notify_all();
  if (deferred) return InlineResult::Deferred;
  *status = s;
  return InlineResult::Done;
}

Status Engine::execute(OpDesc& op, int64_t inlineBudgetNs, bool* deferred, OpTimes* times,
                       const std::vector<const OpDesc*>* ahead) {
  RankControl* me = transport_->self();
  // An op whose data already went out (the first half of an inline attempt,
  // or an earlier op's batch) may find its peer finished and gone: the peer
  // needed nothing more from us, and what we need from it may be here
  // already. Waits still notice a peer that left (OpWaiter::check).
  const bool sent = op.resume || op.sentAhead;
  if (Status early = checkInterrupts(!sent); !early.isOk()) {
    if (op.resume) me->inOp.store(0, std::memory_order_release);
    if (times) times->startNs = times->endNs = monotonicNs();
    return early;
  }
  // Read by peers only for diagnostics (timeouts, peerStates()): release
  // stores, not the two full fences seq_cst costs per op.
  me->collSeq.store(op.seq, std::memory_order_release);
  me->inOp.store(1, std::memory_order_release);
  // One clock read serves the deadline and the op's start time.
  const int64_t nowNs = opClockNs();
  OpWaiter waiter(this, op);
  waiter.deadline = Deadline::afterMsFrom(nowNs, op.timeoutMs);
  transport_->setWaiter(&waiter);
  if (!op.resume && options_.faultArmed && op.kind == options_.faultOp && op.seq == options_.faultSeq) {
    const int sig = options_.faultStop ? SIGSTOP : SIGKILL;
    if (options_.size == 1) raise(sig);
    transport_->crashAfterCommits(1, sig);
  }
  if (!op.resume) {
    hugePages_.prepare(op.input, op.inputBytes);
    hugePages_.prepare(op.output, op.outputBytes);
  }
  const size_t es = dtypeSize(op.dtype);
  const uint64_t chunkBytes = op.chunkBytes ? op.chunkBytes : options_.chunkBytes;
  CollectiveArgs args{transport_.get(), &op,
                      size_t(std::clamp<uint64_t>(chunkBytes / es, 1, transport_->slotBytes() / es))};
  // In place too for a broadcast (its receivers overwrite their whole output)
  // and for a large all-gather (every block but ours).
  args.streamOutput =
      op.outputBytes >= kStreamOutputBytes &&
      (op.output != op.input || op.kind == OpKind::Broadcast ||
       (op.kind == OpKind::AllGather && op.outputBytes >= kStreamInPlaceAllGatherBytes));
  args.inlineBudgetNs = inlineBudgetNs;
  args.deferred = deferred;
  args.ahead = ahead;
  args.stream = &oneHopStream_;
  args.pairTimes = pairTimes_.get();
  args.hugePages = &hugePages_;
  const int n = options_.size;
  // Traffic attributed to this op: the collective class has one user at a time.
  // One executor at a time (execMutex_), and a deferred op is the next one
  // to run: its resumed half keeps the snapshot of its first half.
  std::vector<uint64_t>& before = trafficScratch_;
  if (!op.resume) {
    before.resize(4 * size_t(n));
    for (int p = 0; p < n; p++) {
      const auto& t = transport_->traffic(p, kCollectiveClass);
      before[4 * p] = t.bytesSent.load();
      before[4 * p + 1] = t.bytesReceived.load();
      before[4 * p + 2] = t.messagesSent.load();
      before[4 * p + 3] = t.messagesReceived.load();
    }
    opStartNs_ = nowNs;
  }
  const int64_t startNs = opStartNs_;
  Status s;
  try {
    const bool tree = op.algorithm == Algorithm::Tree;
    switch (op.kind) {
      case OpKind::AllReduce:
        s = tree ? treeAllReduce(args)
            : n > 2 && op.count * es <= kOutboxAllReduceMaxBytes &&
                    useOutbox(*transport_, outboxAllReduceBytes(op.count, es, n), outboxMinBytes(), outboxMaxBytes_)
                ? outboxAllReduce(args)
            // Two ranks, 2 to 16 MiB: through the kernel where both ranks'
            // arrays are on huge pages (pairAllReduce offers, then decides).
            : n == 2 && !oneHopAllReduce(*transport_, op, args.chunkElems) &&
                    op.count * es < kPairAllReduceMaxBytes &&
                    useDirect(*transport_, op.count * es,
                              directMinOverride_ ? directMinOverride_ : kPairAllReduceMinBytes)
                ? pairAllReduce(args)
                : ringAllReduce(args);
        break;
      case OpKind::ReduceScatter:
        s = n > 2 && op.count * es * n <= kOutboxReduceScatterMaxBytes &&
                    useOutbox(*transport_, op.count * es * n,
                              directMinOverride_ ? directMinOverride_ : kOutboxReduceScatterMinBytes, outboxMaxBytes_)
                ? outboxReduceScatter(args)
                : ringReduceScatter(args);
        break;
      case OpKind::AllGather:
        // At 2 ranks the slots and cross-memory reads do as well or better
        // (pairAllGather); from 3, each block is copied once for n-1 readers.
        if (n > 2 && useOutbox(*transport_, op.count * es, outboxMinBytes(), outboxMaxBytes_)) {
          args.viaOutbox = true;
          args.directIfHuge = useDirect(*transport_, op.count * es);  // as the broadcast's, below
          s = directAllGather(args);
        } else if (n == 2 && !directMinOverride_ && useDirect(*transport_, op.count * es)) {
          s = pairAllGather(args);
        } else {
          s = useDirect(*transport_, op.count * es, directMinBytes(OpKind::AllGather)) ? directAllGather(args)
                                                                                       : ringAllGather(args);
        }
        break;
      case OpKind::Broadcast:
        // Through the root's outbox, at any size (it wraps): the root copies
        // each piece in while the readers copy the last one out. At 2 ranks
        // that is the slot chain with larger pieces and fewer messages: as
        // fast in place, 1.3-1.6x faster out of place from 2 MiB. The slot
        // chain beat the peer reading alone through the kernel by 1.5-2.5x
        // at every size from 1 to 128 MiB, and the kernel reads pin pages.
        args.viaOutbox = !tree && useOutbox(*transport_, op.count * es, outboxMinBytes(), outboxMaxBytes_, true);
        // From 3 ranks, a writer on huge pages skips its outbox where
        // cross-memory reads work (writesOutbox; 4 ranks, broadcast and
        // all-gather at 1-4 MiB on allocHost arrays: 0.7-0.9x the time through
        // the outboxes, docs/PERFORMANCE.md "Huge pages"). At 2 ranks the
        // outbox broadcast stayed faster than the reader reading it all.
        // At 2 ranks (each on its own core) from 64 KiB to 32 MiB the same
        // where the root's input is on huge pages, and the root in place
        // writes half of the reader's output while the reader reads the
        // other (rootWritesHalf), both through the kernel: in place 1 / 4 /
        // 16 MiB 37.7 / 89.8 / 718-788 us against 51.1 / 150.8 / 942-968
        // through the outbox; equal at 32 MiB, and from 64 MiB the outbox,
        // whose reader streams the output, was as fast or faster (docs/
        // PERFORMANCE.md "Broadcast at 2 ranks on both cores").
        args.directIfHuge = args.viaOutbox &&
                            (n > 2 || (options_.spin && op.count * es <= kPairDirectBroadcastMaxBytes)) &&
                            useDirect(*transport_, op.count * es);
        args.rootWritesHalf = args.directIfHuge && n == 2;
        s = tree ? treeBroadcast(args)
            : args.viaOutbox || (n > 2 && useDirect(*transport_, op.count * es, directMinBytes(OpKind::Broadcast)))
                ? directBroadcast(args)
                : ringBroadcast(args);
        break;
      case OpKind::Reduce: s = tree ? treeReduce(args) : ringReduce(args); break;
      case OpKind::Barrier: s = ringBarrier(args); break;
      default: s = Status(StatusCode::InvalidArgument, "not a collective");
    }
  } catch (const std::exception& e) {
    s = Status(StatusCode::Internal, std::string("exception in ") + opKindName(op.kind) + ": " + e.what());
  }
  transport_->setWaiter(nullptr);
  if (deferred && *deferred && s.isOk()) return s;  // in flight: inOp stays set
  me->inOp.store(0, std::memory_order_release);
  {
    std::lock_guard<std::mutex> lk(statsMutex_);
    OpStats& st = stats_[size_t(op.kind)];
    st.count++;
    if (!s.isOk()) st.failed++;
    st.byAlgorithm[op.algorithm == Algorithm::Tree ? 1 : 0]++;
    const int64_t endNs = std::max(opClockNs(), startNs);
    st.timeNs += endNs - startNs;
    if (times) *times = {startNs, endNs};
    for (int p = 0; p < n; p++) {
      const auto& t = transport_->traffic(p, kCollectiveClass);
      st.bytesSent[p] += t.bytesSent.load() - before[4 * p];
      st.bytesReceived[p] += t.bytesReceived.load() - before[4 * p + 1];
      st.messagesSent += t.messagesSent.load() - before[4 * p + 2];
      st.messagesReceived += t.messagesReceived.load() - before[4 * p + 3];
    }
  }
  // A failure caused by our own destroy() is not published: the peers learn
  // that this rank left from its `destroyed` flag, as PeerLostError.
  if (!s.isOk() && s.code() != StatusCode::InvalidArgument && !stopping_.load()) fail(s, true);
  return s;
}

// Most ops one batch message carries (the slot's size limits it too).
constexpr size_t kMaxBatchOps = 1024;

void Engine::takeBatch(const OpDesc& first, std::vector<std::pair<uint64_t, OpDesc>>* batch) {
  if (options_.size != 2 || first.resume || queue_.empty()) return;
  auto eligible = [&](const OpDesc& d) {
    const size_t es = dtypeSize(d.dtype);
    const uint64_t chunkBytes = d.chunkBytes ? d.chunkBytes : options_.chunkBytes;
    const size_t chunkElems = size_t(std::clamp<uint64_t>(chunkBytes / es, 1, transport_->slotBytes() / es));
    return !d.resume && oneHopAllReduce(*transport_, d, chunkElems);
  };
  if (!eligible(first)) return;
  uint64_t used = batchRecordBytes(first.count * dtypeSize(first.dtype));
  while (!queue_.empty() && batch->size() < kMaxBatchOps && eligible(queue_.front().second)) {
    const OpDesc& d = queue_.front().second;
    const uint64_t rec = batchRecordBytes(d.count * dtypeSize(d.dtype));
    if (used + rec > transport_->slotBytes()) break;
    used += rec;
    batch->push_back(queue_.front());
    queue_.pop_front();
  }
}

void Engine::collectiveLoop() {
  std::vector<std::pair<uint64_t, OpDesc>> batch;
  std::vector<const OpDesc*> ahead;
  try {
    for (;;) {
      std::pair<uint64_t, OpDesc> item;
      if (options_.spin) {
        // Back-to-back collectives (a training loop awaiting each one) come
        // within microseconds of the last completion: watching for a short
        // while answers them without a condition-variable wake-up.
        const int64_t until = monotonicNs() + 30000;
        while (queued_.load(std::memory_order_acquire) == 0 && !stopping_.load(std::memory_order_relaxed) &&
               monotonicNs() < until) {
          for (int i = 0; i < 32; i++) cpuRelax();
        }
      }
      {
        std::unique_lock<std::mutex> lk(queueMutex_);
        queueCv_.wait(lk, [&] { return stopping_ || !queue_.empty(); });
        if (stopping_) return;
        item = queue_.front();
        queue_.pop_front();
        batch.clear();
        takeBatch(item.second, &batch);
        queued_.store(queue_.size(), std::memory_order_release);
        running_ = true;
      }
      if (batch.empty()) {
        Status s;
        OpTimes times;  // execute() times the op anyway; a hold uses its duration
        {
          std::lock_guard<std::mutex> ex(execMutex_);
          s = execute(item.second, 0, nullptr, &times);
        }
        const int64_t durationNs = times.endNs - times.startNs;
        {
          std::lock_guard<std::mutex> lk(queueMutex_);
          running_ = false;
        }
        queueCv_.notify_all();
        completeCollective(item.first, s, durationNs, queued_.load(std::memory_order_acquire) > 0);
        continue;
      }
      // A batch: the first op's message carries every op's data; each op
      // then takes its peer's record and settles on its own. If the first
      // fails, the engine has failed and the rest reject at their start.
      ahead.clear();
      for (auto& b : batch) ahead.push_back(&b.second);
      {
        std::lock_guard<std::mutex> ex(execMutex_);
        // Through completeCollective like single ops, so that they never
        // overtake a held completion.
        completeCollective(item.first, execute(item.second, 0, nullptr, nullptr, &ahead), 0, true);
        for (size_t i = 0; i < batch.size(); i++) {
          batch[i].second.sentAhead = true;
          Status s = execute(batch[i].second);
          completeCollective(batch[i].first, s, 0,
                             i + 1 < batch.size() || queued_.load(std::memory_order_acquire) > 0);
        }
      }
      {
        std::lock_guard<std::mutex> lk(queueMutex_);
        running_ = false;
      }
      queueCv_.notify_all();
    }
  } catch (...) {
    fail(Status(StatusCode::Internal, "the collective thread failed with an exception"), true);
  }
}

Status Engine::checkInterrupts(bool peersMatter) {
  if (stopping_.load(std::memory_order_acquire))
    return Status(StatusCode::Aborted, "the communicator was destroyed while the operation was pending");
  if (failed_.load(std::memory_order_acquire)) return failure();
  RT_CHECK(adoptPublishedFailure());
  for (int r = 0; peersMatter && r < options_.size; r++) RT_CHECK(checkPeerLeft(r));
  return Status::ok();
}

Status Engine::checkPeerLeft(int peer) {
  if (peer < 0 || peer == options_.rank || !peerDestroyed(peer)) return Status::ok();
  Status s(StatusCode::PeerLost,
           "rank " + std::to_string(peer) + " left the communicator (destroy() or process exit) while rank " +
               std::to_string(options_.rank) + " still needed it",
           "Make every rank finish its collectives before destroy(); a rank must not exit early.", peer);
  fail(s, true);
  return s;
}

Status Engine::adoptPublishedFailure() {
  FailureRecord& f = transport_->control()->failure;
  if (f.state.load(std::memory_order_acquire) != 2) return Status::ok();
  if (!failed_.load(std::memory_order_acquire)) {
    std::string msg = f.message;
    if (f.originRank != options_.rank) msg = "rank " + std::to_string(f.originRank) + " reported: " + msg;
    fail(Status(StatusCode(f.code), msg, f.remedy, f.peer), false);
  }
  return failure();
}

void Engine::fail(const Status& status, bool publish) {
  bool first = false;
  {
    std::lock_guard<std::mutex> lk(failureMutex_);
    if (!failed_.load()) {
      failure_ = status;
      failed_.store(true, std::memory_order_release);
      first = true;
    }
  }
  // Remote ranks learn it over TCP (each rank tells every remote rank itself,
  // so a failure heard over TCP is not passed on).
  if (publish && first && transport_) {
    for (int r = 0; r < options_.size; r++)
      if (TcpPeer* t = transport_->tcp(r)) t->sendFailure(status, options_.rank);
  }
  if (publish && transport_) {
    FailureRecord& f = transport_->control()->failure;
    uint32_t expected = 0;
    if (f.state.compare_exchange_strong(expected, 1)) {
      f.code = int32_t(status.code());
      f.originRank = options_.rank;
      f.peer = status.peer();
      f.seq = 0;
      copyString(f.message, sizeof f.message, status.message());
      copyString(f.remedy, sizeof f.remedy, status.remedy());
      f.state.store(2, std::memory_order_release);
    }
  }
  if (transport_) transport_->wakeAllLocal();
  queueCv_.notify_all();
}

Status Engine::failure() {
  std::lock_guard<std::mutex> lk(failureMutex_);
  return failure_;
}

Status Engine::timeoutStatus(const OpDesc& op, const char* waitingFor, int peer) {
  // Group ranks by where they are, so the lagging ones stand out:
  // "rank 2 idle after seq 41; ranks 0, 1, 3 in seq 42".
  std::map<std::string, std::vector<int>> groups;
  int laggard = -1;
  for (int r = 0; r < options_.size; r++) {
    uint64_t seq;
    bool in;
    if (r == options_.rank || transport_->isLocal(r)) {
      RankControl* rc = r == options_.rank ? transport_->self() : transport_->localControl(r);
      seq = rc->collSeq.load();
      in = rc->inOp.load() != 0;
    } else {
      // As of the peer's last heartbeat.
      seq = transport_->tcp(r)->collSeq();
      in = transport_->tcp(r)->inOp();
    }
    groups[in ? "in seq " + std::to_string(seq) : "idle after seq " + std::to_string(seq)].push_back(r);
    if (seq < op.seq && laggard < 0) laggard = r;
  }
  std::string where;
  for (auto& [label, ranks] : groups) {
    if (!where.empty()) where += "; ";
    where += ranks.size() == 1 ? "rank " : "ranks ";
    for (size_t i = 0; i < ranks.size(); i++) where += (i ? ", " : "") + std::to_string(ranks[i]);
    where += " " + label;
  }
  Status s(StatusCode::Timeout,
           describeOp(op) + " timed out after " + std::to_string(op.timeoutMs) + " ms on rank " +
               std::to_string(options_.rank) + " waiting for " + waitingFor + " rank " + std::to_string(peer) +
               " (" + where + ")",
           laggard >= 0 ? "Rank " + std::to_string(laggard) +
                              " never reached this collective: check that every rank issues the same collectives, "
                              "or raise timeoutMs if it is just slow."
                        : "Every rank reached the collective but data stopped flowing; raise timeoutMs if the "
                          "machine is overloaded.",
           laggard >= 0 ? laggard : peer);
  return s;
}

void Engine::watchdogLoop() {
  try {
    const int n = options_.size;
    RankControl* me = transport_->self();
    while (!stopping_.load(std::memory_order_acquire)) {
      std::vector<pollfd> fds;
      fds.push_back({wakeFd_, POLLIN, 0});
      std::vector<int> fdRank;
      for (int r = 0; r < n; r++) {
        if (peerPidfds_[r] >= 0) {
          fds.push_back({peerPidfds_[r], POLLIN, 0});
          fdRank.push_back(r);
        }
      }
      poll(fds.data(), fds.size(), 100);
      if (stopping_.load(std::memory_order_acquire)) return;
      const int64_t beat = monotonicNs();
      me->heartbeatNs.store(beat, std::memory_order_relaxed);
      if (beat - lastHeartbeatSentNs_ > 500 * 1000000LL) {
        // Remote ranks hear our heartbeat, and where we are, over TCP.
        lastHeartbeatSentNs_ = beat;
        for (int r = 0; r < n; r++)
          if (TcpPeer* t = transport_->tcp(r)) t->sendHeartbeat(me->collSeq.load(), me->inOp.load() != 0);
      }
      if (failed_.load()) continue;
      std::vector<bool> exited(n, false);
      for (size_t i = 1; i < fds.size(); i++)
        if (fds[i].revents & (POLLIN | POLLHUP | POLLERR)) exited[fdRank[i - 1]] = true;
      const int64_t now = monotonicNs();
      for (int r = 0; r < n && !failed_.load(); r++) {
        if (r == options_.rank) continue;
        if (TcpPeer* t = transport_->tcp(r)) {
          // A broken connection is reported by the TCP threads themselves;
          // silence is ours to notice.
          if (!t->saidGoodbye() && options_.heartbeatTimeoutMs > 0 &&
              now - t->lastHeardNs() > options_.heartbeatTimeoutMs * 1000000LL) {
            fail(Status(StatusCode::PeerLost,
                        "rank " + std::to_string(r) + " (remote) sent nothing for " +
                            std::to_string(options_.heartbeatTimeoutMs) + " ms: it, its host or the network is stuck",
                        "Check rank " + std::to_string(r) +
                            "'s host and the network between the hosts; raise RINGTREE_HEARTBEAT_TIMEOUT_MS.",
                        r),
                 true);
          }
          continue;
        }
        RankControl* rc = transport_->localControl(r);
        const int pid = rc->pid.load();
        if (peerPidfds_[r] < 0 && kill(pid, 0) != 0 && errno == ESRCH) exited[r] = true;
        if (rc->destroyed.load(std::memory_order_acquire)) continue;
        if (exited[r]) {
          fail(Status(StatusCode::PeerLost,
                      "rank " + std::to_string(r) + " (pid " + std::to_string(pid) +
                          ") died without leaving the communicator",
                      "Check rank " + std::to_string(r) +
                          "'s own output for why it exited (crash, OOM kill, signal); restart the job.",
                      r),
               true);
        } else if (options_.heartbeatTimeoutMs > 0 &&
                   now - rc->heartbeatNs.load(std::memory_order_relaxed) > options_.heartbeatTimeoutMs * 1000000LL) {
          fail(Status(StatusCode::PeerLost,
                      "rank " + std::to_string(r) + " (pid " + std::to_string(pid) + ") sent no heartbeat for " +
                          std::to_string(options_.heartbeatTimeoutMs) + " ms: it is stopped or hung",
                      "Check whether rank " + std::to_string(r) +
                          " was suspended (SIGSTOP, debugger) or starved; raise RINGTREE_HEARTBEAT_TIMEOUT_MS.",
                      r),
               true);
        }
      }
      if (!failed_.load()) adoptPublishedFailure();
    }
  } catch (...) {
    fail(Status(StatusCode::Internal, "the watchdog thread failed with an exception"), true);
  }
}

void Engine::abort(const std::string& reason) {
  fail(Status(StatusCode::Aborted, "rank " + std::to_string(options_.rank) + " aborted the communicator" +
                                       (reason.empty() ? std::string() : ": " + reason),
              "Create a new communicator (init()) to continue."),
       true);
}

void Engine::destroy() {
  if (destroyed_) return;
  destroyed_ = true;
  if (transport_) transport_->self()->destroyed.store(1, std::memory_order_release);
  stopping_.store(true, std::memory_order_release);
  if (transport_) transport_->wakeAllLocal();
  queueCv_.notify_all();
  if (wakeFd_ >= 0) {
    uint64_t one = 1;
    ssize_t ignored = write(wakeFd_, &one, sizeof one);
    (void)ignored;
  }
  if (p2p_) p2p_->stop();
  if (collectiveThread_.joinable()) collectiveThread_.join();
  if (watchdogThread_.joinable()) watchdogThread_.join();
  if (holdTimerThread_.joinable()) {
    armHoldTimer(1);  // fires at once: the thread sees stopping_ and returns
    holdTimerThread_.join();
  }
  {
    std::lock_guard<std::mutex> lk(holdMutex_);
    flushHeldLocked();  // before the queued ops' rejections: they came later
  }
  std::deque<std::pair<uint64_t, OpDesc>> rest;
  {
    std::lock_guard<std::mutex> lk(queueMutex_);
    rest.swap(queue_);
  }
  std::vector<Completion> rejected;
  rejected.reserve(rest.size());
  for (auto& item : rest)
    rejected.emplace_back(item.first, Status(StatusCode::Aborted, std::string(opKindName(item.second.kind)) +
                                                                      " never ran: the communicator was destroyed first"));
  if (sink_ && !rejected.empty()) sink_(rejected.data(), rejected.size());
  // Goodbye to remote ranks, so that our exit is not a lost peer to them.
  if (transport_) transport_->stopTcp(true);
  for (int fd : peerPidfds_)
    if (fd >= 0) close(fd);
  peerPidfds_.clear();
  if (wakeFd_ >= 0) close(wakeFd_);
  wakeFd_ = -1;
  if (holdTimerFd_ >= 0) close(holdTimerFd_);
  holdTimerFd_ = -1;
  if (transport_) transport_->segment().unlink();
  p2p_.reset();
  transport_.reset();
}

void Engine::recordP2p(OpKind kind, bool ok) {
  std::lock_guard<std::mutex> lk(statsMutex_);
  OpStats& st = stats_[size_t(kind)];
  st.count++;
  if (!ok) st.failed++;
}

std::vector<OpStats> Engine::stats() {
  std::lock_guard<std::mutex> lk(statsMutex_);
  std::vector<OpStats> out;
  for (size_t k = 1; k < stats_.size(); k++) {
    OpStats st = stats_[k];
    if (transport_ && (st.kind == OpKind::Send || st.kind == OpKind::Recv)) {
      // Point-to-point traffic is counted per class: sends own what left,
      // receives what arrived.
      const bool send = st.kind == OpKind::Send;
      for (int p = 0; p < options_.size; p++) {
        if (p == options_.rank) continue;
        const auto& t = transport_->traffic(p, kP2pClass);
        if (send) {
          st.bytesSent[p] = t.bytesSent.load() - p2pBaseline_[4 * p];
          st.messagesSent += t.messagesSent.load() - p2pBaseline_[4 * p + 2];
        } else {
          st.bytesReceived[p] = t.bytesReceived.load() - p2pBaseline_[4 * p + 1];
          st.messagesReceived += t.messagesReceived.load() - p2pBaseline_[4 * p + 3];
        }
      }
    }
    out.push_back(std::move(st));
  }
  return out;
}

void Engine::resetStats() {
  std::lock_guard<std::mutex> lk(statsMutex_);
  for (OpStats& st : stats_) {
    st.count = st.failed = st.messagesSent = st.messagesReceived = st.ranInline = 0;
    st.byAlgorithm[0] = st.byAlgorithm[1] = 0;
    st.timeNs = 0;
    std::fill(st.bytesSent.begin(), st.bytesSent.end(), 0);
    std::fill(st.bytesReceived.begin(), st.bytesReceived.end(), 0);
  }
  if (!transport_) return;
  for (int p = 0; p < options_.size; p++) {
    const auto& t = transport_->traffic(p, kP2pClass);
    p2pBaseline_[4 * p] = t.bytesSent.load();
    p2pBaseline_[4 * p + 1] = t.bytesReceived.load();
    p2pBaseline_[4 * p + 2] = t.messagesSent.load();
    p2pBaseline_[4 * p + 3] = t.messagesReceived.load();
  }
}

std::vector<PeerState> Engine::peerStates() {
  std::vector<PeerState> out;
  if (!transport_) return out;
  for (int r = 0; r < options_.size; r++) {
    if (TcpPeer* t = transport_->tcp(r)) {
      out.push_back({r, -1, t->collSeq(), t->inOp(), !t->closed(), t->saidGoodbye()});
      continue;
    }
    RankControl* rc = r == options_.rank ? transport_->self() : transport_->localControl(r);
    int pid = rc->pid.load();
    bool alive = pid > 0 && (kill(pid, 0) == 0 || errno != ESRCH);
    out.push_back({r, pid, rc->collSeq.load(), rc->inOp.load() != 0, alive, rc->destroyed.load() != 0});
  }
  return out;
}

}  // namespace ringtree
