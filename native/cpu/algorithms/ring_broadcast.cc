// Ring (chain) broadcast: root -> root+1 -> ... -> root-1, pipelined by chunk.
#include "cpu/algorithms/Collective.h"

namespace ringtree {

Status ringBroadcast(const CollectiveArgs& a) {
  const OpDesc& op = *a.op;
  Transport& t = *a.transport;
  const int n = t.size(), r = t.rank();
  const size_t es = dtypeSize(op.dtype);
  const uint64_t count = op.count;
  const int pos = mod(r - op.root, n);  // 0 = root, n-1 = end of the chain
  RT_CHECK(verifyRing(a));
  if (pos == 0) copyBytes(op.output, op.input, count * es);
  if (n == 1) return Status::ok();
  const int right = mod(r + 1, n), left = mod(r - 1, n);
  const uint64_t chunks = std::max<uint64_t>(1, ceilDiv(count, a.chunkElems));

  for (uint64_t c = 0; c < chunks; c++) {
    uint64_t b, e;
    chunkRange(0, count, c, a.chunkElems, &b, &e);
    const uint64_t bytes = (e - b) * es;
    char* slot;
    if (pos == 0) {
      RT_CHECK(t.acquireSend(right, &slot));
      copyBytes(slot, elemPtr(op.input, b, es), bytes);
      t.commitSend(right, stampHeader(op, 0, uint32_t(c), bytes));
      continue;
    }
    const MsgHeader* h;
    const char* in;
    RT_CHECK(t.acquireRecv(left, &h, &in));
    RT_CHECK(checkHeader(op, *h, left, r, uint32_t(pos - 1), uint32_t(c), bytes));
    // Forward first: the next rank's wait is the critical path.
    if (pos < n - 1) {
      RT_CHECK(t.acquireSend(right, &slot));
      copyBytes(slot, in, bytes);
      t.commitSend(right, stampHeader(op, uint32_t(pos), uint32_t(c), bytes));
    }
    copyToOutput(elemPtr(op.output, b, es), in, bytes, a.streamOutput);
    t.releaseRecv(left);
  }
  return Status::ok();
}

}  // namespace ringtree
