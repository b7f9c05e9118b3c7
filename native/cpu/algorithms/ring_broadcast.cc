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
    if (pos == 0) {
      RT_CHECK(sendCopy(a, right, elemPtr(op.input, b, es), bytes, 0, c));
      continue;
    }
    const MsgHeader* h;
    const char* in;
    RT_CHECK(recvChecked(a, left, uint32_t(pos - 1), c, bytes, &h, &in));
    // Forward first: the next rank's wait is the critical path.
    if (pos < n - 1) RT_CHECK(sendCopy(a, right, in, bytes, uint32_t(pos), c));
    copyToOutput(elemPtr(op.output, b, es), in, bytes, a.streamOutput);
    t.releaseRecv(left);
  }
  return Status::ok();
}

}  // namespace ringtree
