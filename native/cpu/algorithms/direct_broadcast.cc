// Direct broadcast between processes of one host: the root publishes the
// address of its buffer and every other rank reads it straight into its
// output with one kernel copy (cross-memory attach); the root returns once
// every rank has read it. Or the root copies it into its outbox piece by
// piece and every other rank copies each piece out as it lands
// (a.viaOutbox). A chain through slots copies each byte twice per rank and
// moves at the pace of its slowest hop.
//
// At 2 ranks with both buffers on huge pages and the root in place
// (a.rootWritesHalf), the root, idle otherwise, writes the second half of
// the reader's output (process_vm_writev) while the reader reads the first:
// the reader publishes its output's address, the root says from where it
// writes, and each says "done" to the other when its half is in.
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
  // The half the root would write (aligned to 64 bytes); it writes it only
  // where the reader also published its output.
  const bool split = a.rootWritesHalf && n == 2 && bytes >= 128;
  const uint64_t half = bytes / 2 / 64 * 64;
  const void* mine = nullptr;
  uint64_t rootWritesFrom = 0;
  if (r == root && !outbox) {
    mine = op.input;
    if (split && op.output == op.input) rootWritesFrom = half;
  } else if (r != root && split && a.hugePages->covers(op.output, bytes)) {
    mine = op.output;
  }
  for (int k = 1; k < n; k++) RT_CHECK(publishDirect(op, t, mod(r + k, n), mine, bytes, rootWritesFrom));
  if (r == root) {
    // Each reader's publish (its header), received before we wait for it
    // to take from our outbox, or after our copies.
    bool received = false;
    DirectBuffer theirs;
    auto receiveAll = [&]() -> Status {
      for (int k = 1; k < n; k++) RT_CHECK(receivePublished(op, t, mod(r - k, n), bytes, &theirs));
      received = true;
      return Status::ok();
    };
    if (outbox) RT_CHECK(fillOutbox(t, op.input, bytes, receiveAll));
    copyBytes(op.output, op.input, bytes);
    if (!received) RT_CHECK(receiveAll());
    // What each reader reads of our input (stats count the rest as written).
    uint64_t theyRead = bytes;
    if (rootWritesFrom && theirs.address) {
      const int p = mod(r + 1, n);
      const char* from = static_cast<const char*>(op.input) + rootWritesFrom;
      // The reader's output is the reader's to reuse once its op has failed
      // (say it timed out while we were stopped): its failure, published
      // when it gave up, stops us here. Only the one write below can still
      // overlap a failure that comes during it.
      RT_CHECK(t.checkPeer(p));
      RT_CHECK(writeCrossMemory(t.directPid(p), p, theirs.address + rootWritesFrom, from, bytes - rootWritesFrom));
      t.countDirect(p, bytes - rootWritesFrom, 0);
      RT_CHECK(sayDone(op, t, p));
      theyRead = rootWritesFrom;
    }
    // The input must stay untouched until every rank has read it.
    for (int k = 1; k < n; k++) RT_CHECK(awaitDone(op, t, mod(r + k, n), theyRead));
    return Status::ok();
  }
  // The root's buffer first: its readers are the critical path.
  DirectBuffer theirs;
  RT_CHECK(receivePublished(op, t, root, bytes, &theirs));
  // Where the root writes the rest of our output, we read up to there.
  const uint64_t upTo = mine && theirs.address && theirs.rootWritesFrom ? theirs.rootWritesFrom : bytes;
  RT_CHECK(readReceived(a, root, theirs, upTo, op.output));
  RT_CHECK(sayDone(op, t, root));
  for (int k = 1; k < n; k++) {
    const int p = mod(r - k, n);
    if (p != root) RT_CHECK(receivePublished(op, t, p, bytes, &theirs));
  }
  // The rest of our output is in once the root says it is done with it.
  if (upTo < bytes) {
    RT_CHECK(awaitDone(op, t, root, 0));
    t.countDirect(root, 0, bytes - upTo);
  }
  return Status::ok();
}

}  // namespace ringtree
