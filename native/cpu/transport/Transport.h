// The interface the algorithms are written against. An algorithm never knows
// whether its bytes travel through shared memory or a socket.
//
// Messages are slot-sized: a sender acquires a slot towards a peer, fills at
// most slotBytes() of payload, and commits it with a header; a receiver gets
// the oldest committed slot from a peer as a read-only view and releases it
// when done. Each (sender, receiver) pair is FIFO. Every blocking call
// honours the current Waiter's deadline and interrupts.
#pragma once

#include <atomic>

#include <cstddef>

#include "core/status.h"
#include "cpu/Clock.h"
#include "cpu/Op.h"

namespace ringtree {

// Per-operation wait policy supplied by the engine.
class Waiter {
 public:
  virtual ~Waiter() = default;
  // Non-Ok when the operation must stop now while waiting for `peer`: a
  // failure (local or published by a peer), an abort, destroy(), or `peer`
  // having left. Other peers leaving does not matter: they may simply be done.
  virtual Status check(int peer) = 0;
  // Builds the error for an expired deadline while waiting for `peer`.
  virtual Status timedOut(const char* waitingFor, int peer) = 0;
  Deadline deadline;
};

class Transport {
 public:
  virtual ~Transport() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;
  virtual size_t slotBytes() const = 0;
  // Slots per (sender, receiver) pair: how many messages a sender may have
  // outstanding before it blocks. Always >= 2.
  virtual size_t slotCount() const = 0;
  virtual void setWaiter(Waiter* waiter) = 0;

  virtual Status acquireSend(int peer, char** data) = 0;
  virtual void commitSend(int peer, const MsgHeader& header) = 0;
  virtual Status acquireRecv(int peer, const MsgHeader** header, const char** data) = 0;
  virtual void releaseRecv(int peer) = 0;
  // Non-blocking forms: whether a slot towards `peer` is free now; the
  // oldest slot from `peer` if one arrived (release it with releaseRecv).
  virtual bool canSend(int peer) = 0;
  virtual const MsgHeader* pollRecv(int peer, const char** data) = 0;

  // Single copy between processes on this host (Linux cross-memory attach):
  // the pid whose memory holds `peer`'s buffers, readable with
  // process_vm_readv, or -1 when bytes to and from `peer` must go through
  // slots (a TCP peer, or a rank that cannot read its local peers).
  virtual int directPid(int peer) const { return -1; }
  // `peer`'s outbox (ShmLayout): a buffer of outboxBytes() that `peer`
  // writes and every rank on its host reads; nullptr for a TCP peer or
  // when outboxes are off. outbox(rank()) is ours.
  virtual char* outbox(int peer) { return nullptr; }
  virtual uint64_t outboxBytes() const { return 0; }
  // How much of the current op's data `peer` has put in its outbox, and
  // taken from the one it reads (RankControl::outboxFilled, outboxTaken);
  // ours with peer == rank(). Only where outbox(peer) is not nullptr.
  virtual std::atomic<uint64_t>& outboxFilled(int peer) = 0;
  virtual std::atomic<uint64_t>& outboxTaken(int peer) = 0;
  // Wait until `word` (one of peer's two above) exceeds `above`; *value gets it.
  virtual Status awaitAbove(int peer, const std::atomic<uint64_t>& word, uint64_t above, uint64_t* value) = 0;
  // Wake `peer` if it sleeps waiting (after our outboxFilled() grew).
  virtual void notify(int peer) = 0;
  // Traffic that bypassed the slots (stats()).
  virtual void countDirect(int peer, uint64_t sent, uint64_t received) {}
  // What a wait checks (a failure any rank published, destroy(), `peer`
  // having left), without waiting: for a rank about to write into `peer`'s
  // memory, which must not happen once `peer` has given the op up.
  virtual Status checkPeer(int peer) { return Status::ok(); }
};

}  // namespace ringtree
