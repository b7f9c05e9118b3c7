// Ring (chain) reduce: root+1 -> root+2 -> ... -> root, each rank adding its
// contribution as the partial result passes, pipelined by chunk.
#include "cpu/algorithms/Collective.h"

namespace ringtree {

Status ringReduce(const CollectiveArgs& a) {
  const OpDesc& op = *a.op;
  Transport& t = *a.transport;
  const int n = t.size(), r = t.rank();
  const size_t es = dtypeSize(op.dtype);
  const uint64_t count = op.count;
  if (n == 1) {
    copyBytes(op.output, op.input, count * es);
    return Status::ok();
  }
  RT_CHECK(verifyRing(a));
  const int pos = mod(r - op.root - 1, n);  // 0 = start of the chain, n-1 = root
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
    if (pos < n - 1) {
      RT_CHECK(sendReduced(a, right, in, elemPtr(op.input, b, es), e - b, uint32_t(pos), c));
    } else {
      char* out = elemPtr(op.output, b, es);
      reduce(out, in, elemPtr(op.input, b, es), e - b, op.dtype, op.op);
      if (op.op == ReduceOp::Avg) divideBy(out, e - b, op.dtype, n);
    }
    t.releaseRecv(left);
  }
  return Status::ok();
}

}  // namespace ringtree
