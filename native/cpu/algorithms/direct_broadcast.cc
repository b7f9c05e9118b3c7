// Direct broadcast between processes of one host: after the ring's
// verification pass, the root publishes the address of its buffer and every
// other rank reads it straight into its output with one kernel copy
// (cross-memory attach); the root returns once every rank has read it.
// A chain through slots copies each byte twice per rank and moves at the
// pace of its slowest hop.
#include "cpu/algorithms/Collective.h"
#include "cpu/transport/CrossMemory.h"

namespace ringtree {

Status directBroadcast(const CollectiveArgs& a) {
  const OpDesc& op = *a.op;
  Transport& t = *a.transport;
  const int n = t.size(), r = t.rank();
  const uint64_t bytes = op.count * dtypeSize(op.dtype);
  RT_CHECK(verifyRing(a));
  if (r == op.root) {
    copyBytes(op.output, op.input, bytes);
    const DirectBuffer mine{reinterpret_cast<uint64_t>(op.input), bytes};
    for (int k = 1; k < n; k++) {
      const int p = mod(r + k, n);
      char* slot;
      RT_CHECK(t.acquireSend(p, &slot));
      std::memcpy(slot, &mine, sizeof mine);
      t.commitSend(p, stampHeader(op, kDirectStep, 0, sizeof mine));
    }
    // The input must stay untouched until every rank has read it.
    for (int k = 1; k < n; k++) {
      const int p = mod(r + k, n);
      const MsgHeader* h;
      const char* in;
      RT_CHECK(t.acquireRecv(p, &h, &in));
      RT_CHECK(checkHeader(op, *h, p, r, kDirectStep + 1, 0, 0));
      t.releaseRecv(p);
      t.countDirect(p, bytes, 0);
    }
    return Status::ok();
  }
  const int root = op.root;
  RT_CHECK(readPublished(op, t, root, bytes, op.output));
  char* slot;
  RT_CHECK(t.acquireSend(root, &slot));
  t.commitSend(root, stampHeader(op, kDirectStep + 1, 0, 0));
  return Status::ok();
}

}  // namespace ringtree
