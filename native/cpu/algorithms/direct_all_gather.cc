// Direct all-gather between processes of one host: every rank publishes the
// address of its block and reads each peer's block straight into its output
// with one kernel copy (cross-memory attach), then waits until every peer
// has read its own block. Each byte is copied once, instead of twice per hop
// through shared-memory slots, and no rank waits for another chunk by chunk.
#include "cpu/algorithms/Collective.h"
#include "cpu/transport/CrossMemory.h"

namespace ringtree {

Status directAllGather(const CollectiveArgs& a) {
  const OpDesc& op = *a.op;
  Transport& t = *a.transport;
  const int n = t.size(), r = t.rank();
  const size_t es = dtypeSize(op.dtype);
  const uint64_t bytes = op.count * es;
  copyBytes(elemPtr(op.output, uint64_t(r) * op.count, es), op.input, bytes);
  // Publish our block (for in place, the input is our block of the output,
  // which this op never writes).
  const DirectBuffer mine{reinterpret_cast<uint64_t>(op.input), bytes};
  for (int k = 1; k < n; k++) {
    const int p = mod(r + k, n);
    char* slot;
    RT_CHECK(t.acquireSend(p, &slot));
    std::memcpy(slot, &mine, sizeof mine);
    t.commitSend(p, stampHeader(op, kDirectStep, 0, sizeof mine));
  }
  // Read the peers' blocks, each rank starting at a different peer.
  for (int k = 1; k < n; k++) {
    const int p = mod(r - k, n);
    RT_CHECK(readPublished(op, t, p, bytes, elemPtr(op.output, uint64_t(p) * op.count, es)));
  }
  return finishDirect(a, bytes);
}

}  // namespace ringtree
