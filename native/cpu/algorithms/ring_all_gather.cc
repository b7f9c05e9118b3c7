// Ring all-gather: n-1 steps; each rank forwards what it received.
#include "cpu/algorithms/Collective.h"

namespace ringtree {

Status ringAllGather(const CollectiveArgs& a) {
  const OpDesc& op = *a.op;
  Transport& t = *a.transport;
  const int n = t.size(), r = t.rank();
  const size_t es = dtypeSize(op.dtype);
  const uint64_t count = op.count;  // per rank
  // Our own block first; a no-op when the input is the in-place position.
  copyBytes(elemPtr(op.output, uint64_t(r) * count, es), op.input, count * es);
  if (n == 1) return Status::ok();
  const int right = mod(r + 1, n), left = mod(r - 1, n);
  const uint64_t chunks = std::max<uint64_t>(1, ceilDiv(count, a.chunkElems));
  if (n == 2) {
    // One step only, so sends may run ahead of receives without changing the
    // order either side sees: keep up to slotCount - 1 chunks in flight, and
    // neither rank waits for the other chunk by chunk.
    const uint64_t window = std::max<size_t>(1, t.slotCount() - 1);
    uint64_t sent = 0;
    for (uint64_t c = 0; c < chunks; c++) {
      for (; sent < chunks && sent <= c + window - 1; sent++) {
        uint64_t b, e;
        chunkRange(0, count, sent, a.chunkElems, &b, &e);
        char* slot;
        RT_CHECK(t.acquireSend(right, &slot));
        copyChunk(slot, elemPtr(op.input, b, es), (e - b) * es);
        t.commitSend(right, stampHeader(op, 0, uint32_t(sent), (e - b) * es));
      }
      uint64_t b, e;
      chunkRange(0, count, c, a.chunkElems, &b, &e);
      const MsgHeader* h;
      const char* in;
      RT_CHECK(recvChecked(a, left, 0, c, (e - b) * es, &h, &in));
      copyChunkToOutput(elemPtr(op.output, uint64_t(left) * count + b, es), in, (e - b) * es, a.streamOutput);
      t.releaseRecv(left);
    }
    return Status::ok();
  }

  for (uint64_t c = 0; c < chunks; c++) {
    uint64_t b, e;
    chunkRange(0, count, c, a.chunkElems, &b, &e);
    const uint64_t bytes = (e - b) * es;
    RT_CHECK(sendCopy(a, right, elemPtr(op.input, b, es), bytes, 0, c));
    for (int s = 0; s < n - 1; s++) {
      const int sg = mod(r - s - 1, n);
      const MsgHeader* h;
      const char* in;
      RT_CHECK(recvChecked(a, left, uint32_t(s), c, bytes, &h, &in));
      copyBytes(elemPtr(op.output, uint64_t(sg) * count + b, es), in, bytes);
      if (s < n - 2) RT_CHECK(sendCopy(a, right, in, bytes, uint32_t(s + 1), c));
      t.releaseRecv(left);
    }
  }
  return Status::ok();
}

}  // namespace ringtree
