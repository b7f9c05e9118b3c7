#include "cpu/transport/ShmTransport.h"

#include "cpu/Futex.h"

namespace ringtree {

ShmTransport::ShmTransport(int localRank, int localSize, std::unique_ptr<ShmSegment> segment, const ShmLayout& layout)
    : rank_(localRank), size_(localSize), segment_(std::move(segment)), layout_(layout),
      tailCache_(new std::atomic<uint64_t>[size_t(localSize) * kChannelClasses]) {
  for (size_t i = 0; i < size_t(localSize) * kChannelClasses; i++) tailCache_[i].store(0, std::memory_order_relaxed);
}

// The sender keeps its own copy of each channel's tail and reads the shared
// one only when the copy says the ring is full: the receiver's tail line then
// stays in the receiver's cache instead of crossing cores on every message.
// The copy is atomic because canSend() may ask from the JS thread while the
// collective thread sends; every value in it was read from the real tail, so
// a stale one only costs an extra look.
char* ShmTransport::trySendSlot(int peer, int cls) {
  char* ch = channel(rank_, peer, cls);
  ChannelHead* h = layout_.channelHead(ch);
  uint64_t head = h->head.load(std::memory_order_relaxed);
  std::atomic<uint64_t>& cached = tailCache_[peer * kChannelClasses + cls];
  if (head - cached.load(std::memory_order_relaxed) >= layout_.slots()) {
    uint64_t tail = h->tail.load(std::memory_order_acquire);
    cached.store(tail, std::memory_order_relaxed);
    if (head - tail >= layout_.slots()) return nullptr;
  }
  return layout_.slotData(ch, head);
}

void ShmTransport::commit(int peer, int cls, const MsgHeader& header) {
  char* ch = channel(rank_, peer, cls);
  ChannelHead* h = layout_.channelHead(ch);
  uint64_t head = h->head.load(std::memory_order_relaxed);
  MsgHeader* slot = layout_.slotHeader(ch, head);
  MsgHeader copy = header;
  copy.stamp = uint32_t(head + 1 - layout_.slots());  // the slot's previous stamp: not yet ready
  *slot = copy;
  // The header and payload must be visible before the receiver sees the
  // stamp. `head` is ours alone (trySendSlot); the receiver never reads it.
  __atomic_store_n(&slot->stamp, uint32_t(head + 1), __ATOMIC_RELEASE);
  h->head.store(head + 1, std::memory_order_relaxed);
  ring(peer, cls);
}

const MsgHeader* ShmTransport::tryRecvSlot(int peer, int cls, const char** data) {
  char* ch = channel(peer, rank_, cls);
  ChannelHead* h = layout_.channelHead(ch);
  uint64_t tail = h->tail.load(std::memory_order_relaxed);
  MsgHeader* slot = layout_.slotHeader(ch, tail);
  // Slots start zeroed and message m stamps m + 1, so a stamp other than
  // tail + 1 is an older message's (or none): nothing new yet.
  if (__atomic_load_n(&slot->stamp, __ATOMIC_ACQUIRE) != uint32_t(tail + 1)) return nullptr;
  *data = layout_.slotData(ch, tail);
  return slot;
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
