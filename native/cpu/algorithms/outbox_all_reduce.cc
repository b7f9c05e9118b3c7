// Allreduce among the ranks of one host through their outboxes: the ring's
// partition (each rank reduces one segment, then every rank gathers every
// segment) without the ring's 2(n-1) hops one after another.
//
//   1. Every rank copies its input into its outbox, piece by piece.
//   2. Each reduces its own segment over all n outboxes, in rank order (so
//      the result does not depend on who arrived first), into a second part
//      of its outbox, and copies it to its output.
//   3. Each copies every peer's reduced segment into its output.
//
// Each rank waits only for the pieces it reads (outboxFilled), so ranks
// that arrive late slow the others by their lateness alone, and there are
// two messages per pair and op (the publish, which carries the header every
// rank checks, and "done", after which the peer may reuse its outbox)
// instead of 2(n-1) chunk messages per rank through n-1 hops.
#include "cpu/algorithms/Collective.h"

namespace ringtree {

// Where a rank's reduced segment starts in its outbox: after its input.
static uint64_t reducedOffset(uint64_t bytes) { return (bytes + 63) / 64 * 64; }

uint64_t outboxAllReduceBytes(uint64_t count, size_t elemSize, int n) {
  return reducedOffset(count * elemSize) + (count / uint64_t(n) + 1) * elemSize;
}

Status outboxAllReduce(const CollectiveArgs& a) {
  const OpDesc& op = *a.op;
  Transport& t = *a.transport;
  const int n = t.size(), r = t.rank();
  const size_t es = dtypeSize(op.dtype);
  const uint64_t count = op.count, bytes = count * es, reducedAt = reducedOffset(bytes);
  // Our own segment only we read, from our input: it stays out of the outbox.
  const uint64_t begin = segmentStart(count, n, r), end = segmentStart(count, n, r + 1);
  const uint64_t segBytes = (end - begin) * es;
  RT_CHECK(shareInputThroughOutbox(op, t, bytes, begin * es, end * es));

  // Our segment, reduced over every rank's input (ours from op.input: in
  // place, the output we write below is that input, but only once the
  // segment is reduced).
  char* mine = t.outbox(r) + reducedAt;
  if (segBytes > 0) {
    RT_CHECK(awaitOutboxesFilled(t, end * es));
    auto from = [&](int q) { return q == r ? elemPtr(op.input, begin, es) : t.outbox(q) + begin * es; };
    reduce(mine, from(0), from(1), end - begin, op.dtype, op.op);
    for (int q = 2; q < n; q++) reduce(mine, mine, from(q), end - begin, op.dtype, op.op);
    if (op.op == ReduceOp::Avg) divideBy(mine, end - begin, op.dtype, n);
    // Published before our output is written: peers copy while we do.
    t.outboxFilled(r).store(reducedAt + segBytes, std::memory_order_release);
    for (int k = 1; k < n; k++) t.notify(mod(r + k, n));
    copyChunkToOutput(elemPtr(op.output, begin, es), mine, segBytes, a.streamOutput);
  }

  // Every peer's segment, then "done" to that peer (readPublished's word).
  // stats(): from each peer we read our segment of its input and its
  // reduced segment, and it reads theirs of ours.
  auto segmentBytes = [&](int p) { return (segmentStart(count, n, p + 1) - segmentStart(count, n, p)) * es; };
  for (int k = 1; k < n; k++) {
    const int p = mod(r - k, n);
    const uint64_t pb = segmentStart(count, n, p), pBytes = segmentBytes(p);
    if (pBytes > 0) {
      RT_CHECK(awaitAtLeast(t, p, t.outboxFilled(p), reducedAt + pBytes));
      copyChunkToOutput(elemPtr(op.output, pb, es), t.outbox(p) + reducedAt, pBytes, a.streamOutput);
    }
    t.countDirect(p, 0, segBytes + pBytes);
    RT_CHECK(sayDone(op, t, p));
  }
  // Our outbox must stay as it is until every peer is done with it.
  for (int k = 1; k < n; k++) {
    const int p = mod(r + k, n);
    RT_CHECK(awaitDone(op, t, p, segmentBytes(p) + segBytes));
  }
  return Status::ok();
}

}  // namespace ringtree
