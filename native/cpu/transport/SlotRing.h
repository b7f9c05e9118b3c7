// A single-producer single-consumer ring of message slots in private memory:
// the TCP transport's staging area on each side of a socket, with the same
// slot semantics the shared-memory channels have.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>

#include "cpu/Op.h"

namespace ringtree {

class SlotRing {
 public:
  SlotRing(uint32_t slots, uint64_t slotBytes)
      : slots_(slots), slotBytes_(slotBytes), stride_(sizeof(MsgHeader) + slotBytes),
        memory_(new char[stride_ * slots]) {}

  uint64_t slotBytes() const { return slotBytes_; }

  // Producer side.
  char* trySendSlot() {
    uint64_t h = head_.load(std::memory_order_relaxed);
    if (h - tail_.load(std::memory_order_acquire) >= slots_) return nullptr;
    return data(h);
  }
  char* producerSlot() { return data(head_.load(std::memory_order_relaxed)); }
  MsgHeader* producerHeader() { return header(head_.load(std::memory_order_relaxed)); }
  void commit(const MsgHeader& h) {
    uint64_t i = head_.load(std::memory_order_relaxed);
    *header(i) = h;
    head_.store(i + 1, std::memory_order_release);
  }
  // Commit a slot whose header was written in place.
  void commitInPlace() { head_.store(head_.load(std::memory_order_relaxed) + 1, std::memory_order_release); }
  bool full() const { return head_.load(std::memory_order_relaxed) - tail_.load(std::memory_order_acquire) >= slots_; }

  // Consumer side.
  const MsgHeader* tryRecv(const char** payload) {
    uint64_t t = tail_.load(std::memory_order_relaxed);
    if (head_.load(std::memory_order_acquire) <= t) return nullptr;
    *payload = data(t);
    return header(t);
  }
  void release() { tail_.store(tail_.load(std::memory_order_relaxed) + 1, std::memory_order_release); }
  bool empty() const { return head_.load(std::memory_order_acquire) <= tail_.load(std::memory_order_relaxed); }

 private:
  MsgHeader* header(uint64_t i) { return reinterpret_cast<MsgHeader*>(memory_.get() + stride_ * (i % slots_)); }
  char* data(uint64_t i) { return memory_.get() + stride_ * (i % slots_) + sizeof(MsgHeader); }

  const uint32_t slots_;
  const uint64_t slotBytes_;
  const uint64_t stride_;
  std::unique_ptr<char[]> memory_;
  alignas(64) std::atomic<uint64_t> head_{0};
  alignas(64) std::atomic<uint64_t> tail_{0};
};

}  // namespace ringtree
