#include "cpu/transport/ShmTransport.h"

#include <signal.h>
#include <unistd.h>

#include <algorithm>

#include "cpu/Futex.h"

namespace ringtree {

// A futex sleep is capped so that interrupts are noticed even if a wake-up is
// lost (a peer died between publishing and ringing).
constexpr int64_t kMaxSleepNs = 100 * 1000000LL;
// About the cost of one futex round trip: spinning longer than that only
// burns the core a peer needs.
constexpr int64_t kSpinNs = 50 * 1000LL;

ShmTransport::ShmTransport(int rank, int size, std::unique_ptr<ShmSegment> segment, const ShmLayout& layout, bool spin)
    : rank_(rank), size_(size), segment_(std::move(segment)), layout_(layout), spin_(spin) {
  for (auto& t : traffic_) t.reset(new PeerTraffic[size]);
}

template <class Pred>
Status ShmTransport::waitFor(Pred pred, int peer, const char* what) {
  if (pred()) return Status::ok();
  if (spin_) {
    int64_t until = monotonicNs() + kSpinNs;
    for (int i = 1;; i++) {
      cpuRelax();
      if (pred()) return Status::ok();
      if ((i & 63) == 0 && monotonicNs() > until) break;
    }
  }
  RankControl* me = rankControl(rank_);
  for (;;) {
    uint32_t seen = me->doorbell[kCollectiveClass].load(std::memory_order_seq_cst);
    if (pred()) return Status::ok();
    if (waiter_) {
      RT_CHECK(waiter_->check());
      if (waiter_->deadline.expired()) return waiter_->timedOut(what, peer);
    }
    int64_t sleepNs = waiter_ ? std::min(waiter_->deadline.remainingNs(), kMaxSleepNs) : kMaxSleepNs;
    me->sleepers[kCollectiveClass].fetch_add(1, std::memory_order_seq_cst);
    if (!pred()) futexWait(&me->doorbell[kCollectiveClass], seen, std::max<int64_t>(sleepNs, 1000));
    me->sleepers[kCollectiveClass].fetch_sub(1, std::memory_order_seq_cst);
  }
}

Status ShmTransport::acquireSend(int peer, char** data) {
  char* ch = channel(rank_, peer, kCollectiveClass);
  ChannelHead* h = layout_.channelHead(ch);
  const uint64_t head = h->head.load(std::memory_order_relaxed);
  const uint32_t slots = layout_.slots();
  RT_CHECK(waitFor([&] { return head - h->tail.load(std::memory_order_acquire) < slots; }, peer,
                   "a free slot towards"));
  *data = layout_.slotData(ch, head);
  return Status::ok();
}

void ShmTransport::commitSend(int peer, const MsgHeader& header) { commit(peer, kCollectiveClass, header); }

Status ShmTransport::acquireRecv(int peer, const MsgHeader** header, const char** data) {
  char* ch = channel(peer, rank_, kCollectiveClass);
  ChannelHead* h = layout_.channelHead(ch);
  const uint64_t tail = h->tail.load(std::memory_order_relaxed);
  RT_CHECK(waitFor([&] { return h->head.load(std::memory_order_acquire) > tail; }, peer, "data from"));
  *header = layout_.slotHeader(ch, tail);
  *data = layout_.slotData(ch, tail);
  return Status::ok();
}

void ShmTransport::releaseRecv(int peer) { release(peer, kCollectiveClass); }

char* ShmTransport::trySendSlot(int peer, int cls) {
  char* ch = channel(rank_, peer, cls);
  ChannelHead* h = layout_.channelHead(ch);
  uint64_t head = h->head.load(std::memory_order_relaxed);
  if (head - h->tail.load(std::memory_order_acquire) >= layout_.slots()) return nullptr;
  return layout_.slotData(ch, head);
}

void ShmTransport::commit(int peer, int cls, const MsgHeader& header) {
  char* ch = channel(rank_, peer, cls);
  ChannelHead* h = layout_.channelHead(ch);
  uint64_t head = h->head.load(std::memory_order_relaxed);
  *layout_.slotHeader(ch, head) = header;
  // The header and payload must be visible before the receiver sees head move.
  h->head.store(head + 1, std::memory_order_release);
  ring(peer, cls);
  PeerTraffic& t = traffic_[cls][peer];
  t.bytesSent.store(t.bytesSent.load(std::memory_order_relaxed) + header.bytes, std::memory_order_relaxed);
  t.messagesSent.store(t.messagesSent.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
  if (crashAfterCommits_ > 0 && --crashAfterCommits_ == 0) {
    // RINGTREE_FAULT: die mid-operation, the way a real crash would.
    kill(getpid(), SIGKILL);
  }
}

const MsgHeader* ShmTransport::tryRecvSlot(int peer, int cls, const char** data) {
  char* ch = channel(peer, rank_, cls);
  ChannelHead* h = layout_.channelHead(ch);
  uint64_t tail = h->tail.load(std::memory_order_relaxed);
  if (h->head.load(std::memory_order_acquire) <= tail) return nullptr;
  *data = layout_.slotData(ch, tail);
  return layout_.slotHeader(ch, tail);
}

void ShmTransport::release(int peer, int cls) {
  char* ch = channel(peer, rank_, cls);
  ChannelHead* h = layout_.channelHead(ch);
  uint64_t tail = h->tail.load(std::memory_order_relaxed);
  PeerTraffic& t = traffic_[cls][peer];
  t.bytesReceived.store(t.bytesReceived.load(std::memory_order_relaxed) + layout_.slotHeader(ch, tail)->bytes,
                        std::memory_order_relaxed);
  t.messagesReceived.store(t.messagesReceived.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
  // We are done reading the slot before the sender may overwrite it.
  h->tail.store(tail + 1, std::memory_order_release);
  ring(peer, cls);
}

void ShmTransport::ring(int r, int cls) {
  RankControl* rc = rankControl(r);
  rc->doorbell[cls].fetch_add(1, std::memory_order_seq_cst);
  if (rc->sleepers[cls].load(std::memory_order_seq_cst) != 0) futexWakeAll(&rc->doorbell[cls]);
}

void ShmTransport::ringAll() {
  for (int r = 0; r < size_; r++)
    for (int c = 0; c < kChannelClasses; c++) ring(r, c);
}

uint32_t ShmTransport::doorbell(int cls) const {
  return rankControl(rank_)->doorbell[cls].load(std::memory_order_seq_cst);
}

void ShmTransport::sleep(int cls, uint32_t seen, int64_t timeoutNs) {
  RankControl* me = rankControl(rank_);
  me->sleepers[cls].fetch_add(1, std::memory_order_seq_cst);
  if (me->doorbell[cls].load(std::memory_order_seq_cst) == seen) futexWait(&me->doorbell[cls], seen, timeoutNs);
  me->sleepers[cls].fetch_sub(1, std::memory_order_seq_cst);
}

}  // namespace ringtree
