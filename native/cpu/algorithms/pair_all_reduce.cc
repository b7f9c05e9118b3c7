// Allreduce between two ranks of one host that can read each other's memory,
// above one slot chunk: per op, through the slots (ringAllReduce) or direct.
// Direct, each rank reduces its own segment (ringAllReduce's segments) by
// reading the peer's with the kernel (reduceFromPeer), says so, and then
// reads the peer's finished segment out of the peer's output with the
// kernel. No slot carries data.
//
// The slots were as fast or faster in most launches, but in some they ran
// 3-8x slower at every size, for seconds to minutes (the 2-rank slot
// exchange's slow mode, docs/PERFORMANCE.md "The 2-rank slow mode and the
// kernel path"), while the kernel reads keep their pace. So, as
// pairAllGather does, each rank times every op per size class
// (PairPathTimes), proposes the path that was faster lately, explores the
// other every 16th op, and the op runs direct if either rank proposes it.
// The offers are checked like every header: a mismatch stops both ranks
// before a byte is read.
#include "cpu/Clock.h"
#include "cpu/algorithms/Collective.h"

namespace ringtree {

Status pairAllReduce(const CollectiveArgs& a) {
  const OpDesc& op = *a.op;
  Transport& t = *a.transport;
  const int r = t.rank(), peer = 1 - r;
  const size_t es = dtypeSize(op.dtype);
  const uint64_t count = op.count, bytes = count * es;
  const bool propose = a.pairTimes->proposeFor(op.seq, bytes);
  PairOffer mine{reinterpret_cast<uint64_t>(op.input), bytes, propose ? 1u : 0u, 0};
  mine.output = reinterpret_cast<uint64_t>(op.output);
  PairOffer theirs;
  RT_CHECK(exchangePairOffers(op, t, mine, &theirs));
  const bool direct = propose || theirs.direct != 0;
  const int64_t start = monotonicNs();
  if (!direct) {
    RT_CHECK(ringAllReduce(a));
    a.pairTimes->record(false, bytes, monotonicNs() - start);
    return Status::ok();
  }
  const uint64_t ourBegin = segmentStart(count, 2, r) * es, ourEnd = segmentStart(count, 2, r + 1) * es;
  const uint64_t theirBegin = segmentStart(count, 2, peer) * es, theirEnd = segmentStart(count, 2, peer + 1) * es;
  char* out = static_cast<char*>(op.output);
  // 1. Our segment: the peer's input and ours, into our output (in place,
  // the same bytes of our input, read just before they are written; the
  // peer reads only its own segment of our input).
  RT_CHECK(reduceFromPeer(a, theirs.address + ourBegin, static_cast<const char*>(op.input) + ourBegin, out + ourBegin,
                          ourEnd - ourBegin));
  // 2. "Done": we no longer read the peer's input, and our segment of our
  // output is final. Its "done" says the same the other way: from then on
  // we may overwrite our copy of its segment (in place, the part of our
  // input it read) with its result.
  RT_CHECK(sayDone(op, t, peer));
  RT_CHECK(awaitDone(op, t, peer, theirEnd - theirBegin));
  RT_CHECK(readCrossMemory(t.directPid(peer), peer, theirs.output + theirBegin, out + theirBegin, theirEnd - theirBegin));
  t.countDirect(peer, 0, bytes);
  // 3. Our output must stay as it is until the peer has read our segment.
  RT_CHECK(sayDone(op, t, peer));
  RT_CHECK(awaitDone(op, t, peer, ourEnd - ourBegin));
  a.pairTimes->record(true, bytes, monotonicNs() - start);
  return Status::ok();
}

}  // namespace ringtree
