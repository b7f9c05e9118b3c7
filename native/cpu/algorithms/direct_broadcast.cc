// Direct broadcast between processes of one host: the root publishes the
// address of its buffer and every other rank reads it straight into its
// output with one kernel copy (cross-memory attach); the root returns once
// every rank has read it. Or the root copies it into its outbox piece by
// piece and every other rank copies each piece out as it lands
// (a.viaOutbox). A chain through slots copies each byte twice per rank and
// moves at the pace of its slowest hop.
//
// Every rank also sends its header to every other rank, and checks the n-1
// it receives: no rank finishes unless every rank agrees about the call
// (verifyRing's guarantee). Unlike verifyRing's n-1 hops one after another,
// these messages all travel at once, and the root's doubles as its publish.
// With more ranks than cores each hop was a wake-up of a sleeping rank.
#include "cpu/algorithms/Collective.h"
#include "cpu/transport/CrossMemory.h"

namespace ringtree {

Status directBroadcast(const CollectiveArgs& a) {
  const OpDesc& op = *a.op;
  Transport& t = *a.transport;
  const int n = t.size(), r = t.rank(), root = op.root;
  const uint64_t bytes = op.count * dtypeSize(op.dtype);
  // Non-roots publish no buffer (address 0): their message is their header.
  // Through the outboxes the root publishes a copy in its own.
  // The root on huge pages publishes its address even where outboxes are
  // used (writesOutbox).
  // Every rank resets its outbox words: readers report what they took in theirs.
  const bool outbox = r == root && writesOutbox(a, op.input, bytes);
  if (a.viaOutbox) resetOutbox(t);
  const void* mine = r == root && !outbox ? op.input : nullptr;
  for (int k = 1; k < n; k++) RT_CHECK(publishDirect(op, t, mod(r + k, n), mine, bytes));
  if (r == root) {
    // Each reader's publish (its header), received before we wait for it
    // to take from our outbox, or after our copies.
    bool received = false;
    auto receiveAll = [&]() -> Status {
      DirectBuffer theirs;
      for (int k = 1; k < n; k++) RT_CHECK(receivePublished(op, t, mod(r - k, n), bytes, &theirs));
      received = true;
      return Status::ok();
    };
    if (outbox) RT_CHECK(fillOutbox(t, op.input, bytes, receiveAll));
    copyBytes(op.output, op.input, bytes);
    if (!received) RT_CHECK(receiveAll());
    // The input must stay untouched until every rank has read it.
    for (int k = 1; k < n; k++) RT_CHECK(awaitDone(op, t, mod(r + k, n), bytes));
    return Status::ok();
  }
  // The root's buffer first: its readers are the critical path.
  RT_CHECK(readPublished(a, root, bytes, op.output));
  DirectBuffer theirs;
  for (int k = 1; k < n; k++) {
    const int p = mod(r - k, n);
    if (p != root) RT_CHECK(receivePublished(op, t, p, bytes, &theirs));
  }
  return Status::ok();
}

}  // namespace ringtree
