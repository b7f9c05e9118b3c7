// Ring reduce-scatter: n-1 steps, each rank sends (n-1)/n of the input.
// Rank r ends holding segment r: the ring starts one segment earlier than in
// allreduce's reduce-scatter half.
#include "cpu/algorithms/Collective.h"

namespace ringtree {

Status ringReduceScatter(const CollectiveArgs& a) {
  const OpDesc& op = *a.op;
  Transport& t = *a.transport;
  const int n = t.size(), r = t.rank();
  const size_t es = dtypeSize(op.dtype);
  const uint64_t count = op.count;  // per rank
  if (n == 1) {
    copyBytes(op.output, op.input, count * es);
    if (op.op == ReduceOp::Avg) divideBy(op.output, count, op.dtype, 1);
    return Status::ok();
  }
  const int right = mod(r + 1, n), left = mod(r - 1, n);
  const uint64_t chunks = std::max<uint64_t>(1, ceilDiv(count, a.chunkElems));
  auto seg = [&](int s, uint64_t c, uint64_t* b, uint64_t* e) {
    chunkRange(uint64_t(s) * count, uint64_t(s + 1) * count, c, a.chunkElems, b, e);
  };

  for (uint64_t c = 0; c < chunks; c++) {
    uint64_t b, e;
    seg(mod(r - 1, n), c, &b, &e);
    RT_CHECK(sendCopy(a, right, elemPtr(op.input, b, es), (e - b) * es, 0, c));

    for (int s = 0; s < n - 1; s++) {
      const int sg = mod(r - s - 2, n);
      seg(sg, c, &b, &e);
      const MsgHeader* h;
      const char* in;
      RT_CHECK(recvChecked(a, left, uint32_t(s), c, (e - b) * es, &h, &in));
      if (s < n - 2) {
        RT_CHECK(sendReduced(a, right, in, elemPtr(op.input, b, es), e - b, uint32_t(s + 1), c));
      } else {
        // sg == r: the output may be the in-place position of the input, which
        // reduce() allows (exact aliasing).
        char* out = elemPtr(op.output, b - uint64_t(r) * count, es);
        reduce(out, in, elemPtr(op.input, b, es), e - b, op.dtype, op.op);
        if (op.op == ReduceOp::Avg) divideBy(out, e - b, op.dtype, n);
      }
      t.releaseRecv(left);
    }
  }
  return Status::ok();
}

}  // namespace ringtree
