// Reduce-scatter between two ranks of one host that can read each other's
// memory: per op, through the slots (ringReduceScatter) or direct, where
// each rank reads its own segment of the peer's input with the kernel
// (process_vm_readv), piece by piece into a cached scratch buffer, and
// reduces it with the same segment of its own input into its output. No
// slot carries data: one kernel copy and one reduction per byte of output.
//
// The slots were 1.2-1.4x faster at 1-64 MiB in most launches, but in some
// they ran 3-5x slower at every size, for many seconds (the 2-rank slot
// exchange's slow mode, docs/PERFORMANCE.md "Reduce-scatter at 2 ranks"),
// while the kernel read of clean lines keeps its pace. So, as pairAllGather
// does, each rank times every op per size class (PairPathTimes), proposes
// the path that was faster lately, explores the other every 16th op, and
// the op runs direct if either rank proposes it. The offers are checked
// like every header: a mismatch stops both ranks before a byte is read.
#include <vector>

#include "cpu/Clock.h"
#include "cpu/algorithms/Collective.h"

namespace ringtree {

namespace {

// Bytes read per kernel call: the scratch stays in the core's L2 (1 MiB here)
// between the read and the reduction.
constexpr uint64_t kPairPieceBytes = 256 * 1024;

char* scratch() {
  thread_local std::vector<char> buffer(kPairPieceBytes);
  return buffer.data();
}

}  // namespace

Status reduceFromPeer(const CollectiveArgs& a, uint64_t remote, const char* ours, char* out, uint64_t bytes) {
  const OpDesc& op = *a.op;
  Transport& t = *a.transport;
  const int peer = 1 - t.rank();
  const size_t es = dtypeSize(op.dtype);
  char* piece = scratch();
  const uint64_t pieceBytes = kPairPieceBytes / es * es;
  for (uint64_t off = 0; off < bytes; off += pieceBytes) {
    const uint64_t len = std::min(pieceBytes, bytes - off);
    RT_CHECK(readCrossMemory(t.directPid(peer), peer, remote + off, piece, len));
    reduce(out + off, piece, ours + off, len / es, op.dtype, op.op);
    if (op.op == ReduceOp::Avg) divideBy(out + off, len / es, op.dtype, 2);
  }
  return Status::ok();
}

Status pairReduceScatter(const CollectiveArgs& a) {
  const OpDesc& op = *a.op;
  Transport& t = *a.transport;
  const int r = t.rank(), peer = 1 - r;
  const size_t es = dtypeSize(op.dtype);
  const uint64_t count = op.count, segBytes = count * es, bytes = 2 * segBytes;
  const bool propose = a.pairTimes->proposeFor(op.seq, bytes);
  const PairOffer mine{reinterpret_cast<uint64_t>(op.input), bytes, propose ? 1u : 0u, 0};
  PairOffer theirs;
  RT_CHECK(exchangePairOffers(op, t, mine, &theirs));
  const bool direct = propose || theirs.direct != 0;
  const int64_t start = monotonicNs();
  if (!direct) {
    RT_CHECK(ringReduceScatter(a));
    a.pairTimes->record(false, bytes, monotonicNs() - start);
    return Status::ok();
  }
  // Our segment of each input. In place, the output is our segment of our
  // input, read just before it is written (reduce() allows the exact
  // aliasing); the peer reads only its own segment of ours.
  const uint64_t begin = uint64_t(r) * segBytes;
  RT_CHECK(reduceFromPeer(a, theirs.address + begin, static_cast<const char*>(op.input) + begin,
                          static_cast<char*>(op.output), segBytes));
  t.countDirect(peer, 0, segBytes);
  RT_CHECK(sayDone(op, t, peer));
  // Our input must stay as it is until the peer has read its segment.
  RT_CHECK(awaitDone(op, t, peer, segBytes));
  a.pairTimes->record(true, bytes, monotonicNs() - start);
  return Status::ok();
}

}  // namespace ringtree
