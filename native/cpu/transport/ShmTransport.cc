#include "cpu/transport/ShmTransport.h"

#include "cpu/Futex.h"

namespace ringtree {

ShmTransport::ShmTransport(int localRank, int localSize, std::unique_ptr<ShmSegment> segment, const ShmLayout& layout)
    : rank_(localRank), size_(localSize), segment_(std::move(segment)), layout_(layout) {}

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
  // We are done reading the slot before the sender may overwrite it.
  h->tail.store(tail + 1, std::memory_order_release);
  ring(peer, cls);
}

void ShmTransport::ring(int r, int cls) {
  RankControl* rc = rankControl(r);
  if (cls == kCollectiveClass) {
    // Collective waiters announce themselves in `sleepers` and look at their
    // condition once more before they sleep (PeerTransport::waitFor). So
    // with nobody asleep there is nothing to ring, and a message costs no
    // read-modify-write on the peer's control line: between two spinning
    // ranks that line bounced between the cores twice per message. The fence
    // orders our data (published before this call) before the load of
    // `sleepers`, against the waiter's increment before its last look.
    std::atomic_thread_fence(std::memory_order_seq_cst);
    if (rc->sleepers[cls].load(std::memory_order_seq_cst) == 0) return;
  }
  ringAlways(rc, cls);
}

void ShmTransport::ringAlways(RankControl* rc, int cls) {
  rc->doorbell[cls].fetch_add(1, std::memory_order_seq_cst);
  if (rc->sleepers[cls].load(std::memory_order_seq_cst) != 0) futexWakeAll(&rc->doorbell[cls]);
}

void ShmTransport::ringAll() {
  // Failures and destroy(): always bump, so that a waiter that read the
  // doorbell before it checked for a failure cannot sleep through this one.
  for (int r = 0; r < size_; r++)
    for (int c = 0; c < kChannelClasses; c++) ringAlways(rankControl(r), c);
}

uint32_t ShmTransport::doorbell(int cls) const {
  return rankControl(rank_)->doorbell[cls].load(std::memory_order_seq_cst);
}

void ShmTransport::announceSleeper(int cls) {
  rankControl(rank_)->sleepers[cls].fetch_add(1, std::memory_order_seq_cst);
  std::atomic_thread_fence(std::memory_order_seq_cst);
}

void ShmTransport::retractSleeper(int cls) { rankControl(rank_)->sleepers[cls].fetch_sub(1, std::memory_order_seq_cst); }

void ShmTransport::waitDoorbell(int cls, uint32_t seen, int64_t timeoutNs) {
  RankControl* me = rankControl(rank_);
  if (me->doorbell[cls].load(std::memory_order_seq_cst) == seen) futexWait(&me->doorbell[cls], seen, timeoutNs);
}

void ShmTransport::sleep(int cls, uint32_t seen, int64_t timeoutNs) {
  RankControl* me = rankControl(rank_);
  me->sleepers[cls].fetch_add(1, std::memory_order_seq_cst);
  if (me->doorbell[cls].load(std::memory_order_seq_cst) == seen) futexWait(&me->doorbell[cls], seen, timeoutNs);
  me->sleepers[cls].fetch_sub(1, std::memory_order_seq_cst);
}

}  // namespace ringtree
