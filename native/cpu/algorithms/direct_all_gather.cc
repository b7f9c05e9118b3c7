// Direct all-gather between processes of one host: every rank publishes the
// address of its block and reads each peer's block straight into its output
// with one kernel copy (cross-memory attach), then waits until every peer
// has read its own block. Each byte is copied once, instead of twice per hop
// through shared-memory slots, and no rank waits for another chunk by chunk.
// Through the outboxes (a.viaOutbox) a rank copies its block into its outbox
// and peers copy it from there: one copy more, no kernel call.
#include "cpu/algorithms/Collective.h"
#include "cpu/transport/CrossMemory.h"

#include <vector>

namespace ringtree {

Status directAllGather(const CollectiveArgs& a) {
  const OpDesc& op = *a.op;
  Transport& t = *a.transport;
  const int n = t.size(), r = t.rank();
  const size_t es = dtypeSize(op.dtype);
  const uint64_t bytes = op.count * es;
  copyBytes(elemPtr(op.output, uint64_t(r) * op.count, es), op.input, bytes);
  // Publish our block (for in place, the input is our block of the output,
  // which this op never writes), or a copy of it in our outbox.
  // A block on huge pages is published for cross-memory reads even where
  // outboxes are used (writesOutbox); each reader follows each writer.
  const bool outbox = writesOutbox(a, op.input, bytes);
  if (a.viaOutbox) resetOutbox(t);  // also what we took from others' (outboxTaken)
  const void* mine = outbox ? nullptr : op.input;
  for (int k = 1; k < n; k++) RT_CHECK(publishDirect(op, t, mod(r + k, n), mine, bytes));
  if (outbox) fillOutbox(t, op.input, bytes);
  // Read the peers' blocks, each rank starting at a different peer but
  // taking first any block already published: with more ranks than cores a
  // peer that has not started yet would cost a sleep and a wake-up. Then
  // wait until every peer has read ours.
  std::vector<bool> read(size_t(n), false);
  read[size_t(r)] = true;
  for (int left = n - 1; left > 0; left--) {
    int p = -1;
    for (int k = 1; k < n && p < 0; k++) {
      const int q = mod(r - k, n);
      const char* data;
      if (!read[size_t(q)] && t.pollRecv(q, &data)) p = q;
    }
    for (int k = 1; k < n && p < 0; k++)
      if (!read[size_t(mod(r - k, n))]) p = mod(r - k, n);
    RT_CHECK(readPublished(a, p, bytes, elemPtr(op.output, uint64_t(p) * op.count, es)));
    read[size_t(p)] = true;
  }
  for (int k = 1; k < n; k++) RT_CHECK(awaitDone(op, t, mod(r + k, n), bytes));
  return Status::ok();
}

}  // namespace ringtree
