// All-gather between two ranks of one host that can read each other's memory:
// per op, through the slots (two cached memcpys, ringAllGather's windowed
// exchange) or direct (one process_vm_readv each, directAllGather's way).
//
// The slots are faster here, but in some runs, or for seconds at a time,
// they copy 4-5x slower while the direct read keeps its pace
// (docs/PERFORMANCE.md, "Large messages (session 4)"). So each rank times
// every op per size class and proposes the path that was faster lately; the
// op runs direct if either rank proposes it. Every 16th op (by sequence
// number, the same on both ranks) runs through the slots and every 16th
// direct, so that each path keeps a recent time. A path's first op in a size
// class is not timed: it pays for first touches of fresh buffers.
//
// Where both blocks are on huge pages (HugePages::covers), the kernel read
// pins one page per 2 MiB and is the faster path at every size: it runs
// direct, without exploring.
#include <cmath>

#include "cpu/Clock.h"
#include "cpu/algorithms/Collective.h"
#include "cpu/transport/CrossMemory.h"

namespace ringtree {

namespace {

constexpr uint64_t kExploreEvery = 16;

int sizeClass(uint64_t bytes) { return std::min(63, 63 - __builtin_clzll(bytes | 1)); }

}  // namespace

bool PairPathTimes::proposeFor(uint64_t seq, uint64_t bytes) const {
  if (force >= 0) return force == 1;
  const uint64_t phase = seq % kExploreEvery;
  return phase == 0 ? false : phase == kExploreEvery / 2 ? true : proposeDirect(bytes);
}

Status exchangePairOffers(const OpDesc& op, Transport& t, const PairOffer& mine, PairOffer* theirs) {
  const int r = t.rank(), peer = 1 - r;
  char* slot;
  RT_CHECK(t.acquireSend(peer, &slot));
  std::memcpy(slot, &mine, sizeof mine);
  t.commitSend(peer, stampHeader(op, kDirectStep, 0, sizeof mine));
  const MsgHeader* h;
  const char* in;
  RT_CHECK(t.acquireRecv(peer, &h, &in));
  RT_CHECK(checkHeader(op, *h, peer, r, kDirectStep, 0, sizeof *theirs));
  std::memcpy(theirs, in, sizeof *theirs);
  t.releaseRecv(peer);
  if (theirs->bytes != mine.bytes)
    return Status(StatusCode::Internal, "protocol error from rank " + std::to_string(peer) + " in " + describeOp(op) +
                                            ": it offered " + std::to_string(theirs->bytes) + " bytes, expected " +
                                            std::to_string(mine.bytes), {}, peer);
  return Status::ok();
}

bool PairPathTimes::proposeDirect(uint64_t bytes) const {
  const int c = sizeClass(bytes);
  // No time yet for a path: try the slots first, then direct.
  if (nsPerByte[0][c] <= 0) return false;
  if (nsPerByte[1][c] <= 0) return true;
  return nsPerByte[1][c] < nsPerByte[0][c];
}

void PairPathTimes::record(bool direct, uint64_t bytes, int64_t ns) {
  const int c = sizeClass(bytes);
  const double sample = double(ns) / double(bytes);
  if (!warm[direct ? 1 : 0][c]) {
    warm[direct ? 1 : 0][c] = true;
    return;
  }
  double& t = nsPerByte[direct ? 1 : 0][c];
  // Weighted towards the latest sample: a slow spell must be noticed within an op or two.
  t = t <= 0 ? sample : 0.5 * t + 0.5 * sample;
}

Status pairAllGather(const CollectiveArgs& a) {
  const OpDesc& op = *a.op;
  Transport& t = *a.transport;
  const int r = t.rank(), peer = 1 - r;
  const size_t es = dtypeSize(op.dtype);
  const uint64_t bytes = op.count * es;
  const bool propose = a.pairTimes->proposeFor(op.seq, bytes);
  // Offers: for in place, the input is our block of the output, which this op never writes.
  // RINGTREE_PAIR_PATH=slots: no huge-page shortcut either (we offer none).
  const bool huge = a.pairTimes->force != 0 && a.hugePages && a.hugePages->covers(op.input, bytes);
  const PairOffer mine{reinterpret_cast<uint64_t>(op.input), bytes, propose ? 1u : 0u, huge ? 1u : 0u};
  PairOffer theirs;
  RT_CHECK(exchangePairOffers(op, t, mine, &theirs));
  // Both blocks on huge pages: each kernel read pins a page per 2 MiB, and
  // direct beat the slots at every size from 1 to 128 MiB (docs/PERFORMANCE.md,
  // "Huge pages"), so no exploring.
  const bool direct = (huge && theirs.huge != 0) || propose || theirs.direct != 0;
  const int64_t start = monotonicNs();
  if (direct) {
    copyBytes(elemPtr(op.output, uint64_t(r) * op.count, es), op.input, bytes);
    RT_CHECK(readCrossMemory(t.directPid(peer), peer, theirs.address, elemPtr(op.output, uint64_t(peer) * op.count, es),
                             bytes));
    t.countDirect(peer, 0, bytes);
    RT_CHECK(sayDone(op, t, peer));
    RT_CHECK(awaitDone(op, t, peer, bytes));
  } else {
    RT_CHECK(ringAllGather(a));
  }
  a.pairTimes->record(direct, bytes, monotonicNs() - start);
  return Status::ok();
}

}  // namespace ringtree
