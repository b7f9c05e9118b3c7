// Reduce-scatter among the ranks of one host through their outboxes: the
// first half of outboxAllReduce. Every rank copies its input (all but its
// own segment) into its outbox, then reduces its own segment over all n
// inputs straight into its output.
//
// The ring takes n-1 hops one after another, each a message its neighbour
// must wait for; with more ranks than cores every hop is a wake-up. Here a
// rank waits only for the pieces of its segment in each outbox and for the
// "done" of each peer at the end (sayDone / awaitDone), so a late rank
// delays the others by its lateness alone.
#include "cpu/algorithms/Collective.h"

namespace ringtree {

Status outboxReduceScatter(const CollectiveArgs& a) {
  const OpDesc& op = *a.op;
  Transport& t = *a.transport;
  const int n = t.size(), r = t.rank();
  const size_t es = dtypeSize(op.dtype);
  const uint64_t count = op.count, segBytes = count * es, bytes = segBytes * uint64_t(n);
  // Our own segment only we read, from our input: it stays out of the outbox.
  const uint64_t begin = uint64_t(r) * segBytes, end = begin + segBytes;
  RT_CHECK(shareInputThroughOutbox(op, t, bytes, begin, end));

  if (count > 0) {
    RT_CHECK(awaitOutboxesFilled(t, end));
    // From our own input on, then the peers in ring order (as the ring
    // does, rotated): in place, the output is our segment of the input, so
    // that must be read first (reduce() allows the exact aliasing), and no
    // peer reads it.
    char* out = static_cast<char*>(op.output);
    reduce(out, static_cast<const char*>(op.input) + begin, t.outbox(mod(r + 1, n)) + begin, count, op.dtype, op.op);
    for (int k = 2; k < n; k++) reduce(out, out, t.outbox(mod(r + k, n)) + begin, count, op.dtype, op.op);
    if (op.op == ReduceOp::Avg) divideBy(out, count, op.dtype, n);
  }
  // stats(): from each peer we read our segment of its input, and it reads
  // its segment of ours.
  for (int k = 1; k < n; k++) {
    const int p = mod(r - k, n);
    t.countDirect(p, 0, segBytes);
    RT_CHECK(sayDone(op, t, p));
  }
  // Our outbox must stay as it is until every peer is done with it.
  for (int k = 1; k < n; k++) RT_CHECK(awaitDone(op, t, mod(r + k, n), segBytes));
  return Status::ok();
}

}  // namespace ringtree
