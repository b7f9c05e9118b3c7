// The layout of the one shared-memory segment the ranks of a host share.
//
//   ControlBlock | RankControl[size] | Channel[size*(size-1)*2] | Outbox[size]
//
// Each ordered pair of ranks has two single-producer single-consumer channels:
// class 0 carries collectives (used by one executor thread at a time), class 1
// point-to-point traffic (the p2p thread), so a queued send never blocks a
// collective's bytes behind it.
//
// Each rank also has an outbox: a buffer it writes once and every local peer
// reads (a broadcast root's data, an all-gather block). A channel's slots
// have one reader each, so n-1 readers of one buffer would cost n-1 copies
// into slots; reading the writer's own memory through the kernel
// (process_vm_readv) pins every page it copies, which costs more than the
// copy at cached sizes.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>

#include "cpu/Op.h"

namespace ringtree {

constexpr uint64_t kShmMagic = 0x52494e4754524545ULL;  // "RINGTREE"
constexpr uint32_t kShmVersion = 4;
constexpr int kChannelClasses = 2;
constexpr int kCollectiveClass = 0;
constexpr int kP2pClass = 1;

struct alignas(64) FailureRecord {
  // 0 = none, 1 = being written, 2 = published. The first failure wins.
  std::atomic<uint32_t> state;
  int32_t code;
  int32_t originRank;
  int32_t peer;
  uint64_t seq;
  char message[1024];
  char remedy[512];
};

struct alignas(64) RankControl {
  // First line: what peers read on every message (sleepers, in ring()) or
  // every op (destroyed, in checkInterrupts()), and this rank rarely writes.
  // Futex words: bumped by anyone who changes something this rank may be
  // waiting for (data arrived, a slot freed, a failure was published).
  std::atomic<uint32_t> doorbell[kChannelClasses];
  std::atomic<uint32_t> sleepers[kChannelClasses];
  std::atomic<int32_t> pid;
  std::atomic<uint32_t> attached;
  std::atomic<uint32_t> destroyed;  // left gracefully (destroy() or exit hook)
  std::atomic<uint32_t> crossMemoryOk;
  // Cross-memory attach (process_vm_readv): the address of a magic word
  // peers read to prove they may read this process, and whether this rank
  // could read every local peer that way (crossMemoryOk; set in start(),
  // before init()'s closing barrier, so every rank sees every flag before
  // its first op).
  std::atomic<uint64_t> probeAddr;
  // Second line: what this rank writes on every op (and its watchdog every
  // heartbeat), read by peers only for diagnostics. Sharing the first line
  // cost a cross-core transfer per op on each side: the peer's next read of
  // `destroyed` or `sleepers` missed after each store here.
  alignas(64) std::atomic<uint32_t> inOp;  // executing a collective now
  // The CPU this rank's waiting thread last spun on (PeerTransport::waitFor),
  // or -1: written only when it changes.
  std::atomic<int32_t> spinCpu;
  std::atomic<uint64_t> collSeq;           // seq of the current (inOp) or last collective
  std::atomic<int64_t> heartbeatNs;
  // Third line: how many bytes of the current op's data this rank has put in
  // its outbox so far, written as it copies, polled by the readers; and how
  // many it has taken from the outbox it reads, for a writer whose data is
  // larger than its outbox (it wraps around, overwriting only what every
  // reader has taken).
  alignas(64) std::atomic<uint64_t> outboxFilled;
  std::atomic<uint64_t> outboxTaken;
};
static_assert(sizeof(RankControl) == 192, "RankControl is three cache lines");

struct alignas(64) ControlBlock {
  uint64_t magic;
  uint32_t version;
  uint32_t size;
  uint64_t slotBytes;
  uint32_t slots;
  uint32_t reserved;
  uint64_t totalBytes;
  uint64_t outboxBytes;
  FailureRecord failure;
};

struct alignas(64) ChannelHead {
  alignas(64) std::atomic<uint64_t> head;  // slots committed by the sender (its own count: receivers poll slot stamps)
  alignas(64) std::atomic<uint64_t> tail;  // slots released by the receiver
};

inline size_t alignUp(size_t v, size_t a) { return (v + a - 1) / a * a; }

class ShmLayout {
 public:
  ShmLayout(uint32_t size, uint64_t slotBytes, uint32_t slots, uint64_t outboxBytes)
      : size_(size), slotBytes_(alignUp(slotBytes, 64)), slots_(slots), outboxBytes_(alignUp(outboxBytes, 4096)) {
    ranksOffset_ = alignUp(sizeof(ControlBlock), 4096);
    channelsOffset_ = alignUp(ranksOffset_ + sizeof(RankControl) * size, 4096);
    slotStride_ = sizeof(MsgHeader) + slotBytes_;
    channelStride_ = alignUp(sizeof(ChannelHead) + slotStride_ * slots_, 4096);
    uint64_t channels = uint64_t(size) * (size > 0 ? size - 1 : 0) * kChannelClasses;
    outboxesOffset_ = channelsOffset_ + channelStride_ * channels;
    totalBytes_ = outboxesOffset_ + outboxBytes_ * size;
  }
  uint64_t totalBytes() const { return totalBytes_; }
  uint64_t slotBytes() const { return slotBytes_; }
  uint32_t slots() const { return slots_; }
  uint64_t outboxBytes() const { return outboxBytes_; }

  ControlBlock* control(void* base) const { return static_cast<ControlBlock*>(base); }
  RankControl* rank(void* base, int r) const {
    return reinterpret_cast<RankControl*>(static_cast<char*>(base) + ranksOffset_) + r;
  }
  // Channel from `src` to `dst` (src != dst) of class `cls`.
  char* channel(void* base, int src, int dst, int cls) const {
    int d = dst < src ? dst : dst - 1;  // skip the src == dst diagonal
    uint64_t index = (uint64_t(src) * (size_ - 1) + d) * kChannelClasses + cls;
    return static_cast<char*>(base) + channelsOffset_ + channelStride_ * index;
  }
  ChannelHead* channelHead(char* ch) const { return reinterpret_cast<ChannelHead*>(ch); }
  MsgHeader* slotHeader(char* ch, uint64_t i) const {
    return reinterpret_cast<MsgHeader*>(ch + sizeof(ChannelHead) + slotStride_ * (i % slots_));
  }
  char* slotData(char* ch, uint64_t i) const { return reinterpret_cast<char*>(slotHeader(ch, i)) + sizeof(MsgHeader); }
  // Rank `r`'s outbox (outboxBytes() of it; none when that is 0).
  char* outbox(void* base, int r) const {
    return outboxBytes_ ? static_cast<char*>(base) + outboxesOffset_ + outboxBytes_ * uint64_t(r) : nullptr;
  }

 private:
  uint32_t size_;
  uint64_t slotBytes_;
  uint32_t slots_;
  uint64_t outboxBytes_;
  uint64_t ranksOffset_ = 0;
  uint64_t channelsOffset_ = 0;
  uint64_t slotStride_ = 0;
  uint64_t channelStride_ = 0;
  uint64_t outboxesOffset_ = 0;
  uint64_t totalBytes_ = 0;
};

}  // namespace ringtree
