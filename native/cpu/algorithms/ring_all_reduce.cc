// Ring allreduce: reduce-scatter then all-gather around the ring, fused and
// pipelined chunk by chunk. Each rank sends 2(n-1)/n of the data, the
// bandwidth-optimal amount. At two ranks, a message that fits one chunk is
// exchanged whole instead (latency-optimal: one hop).
//
// The loop is chunk-major (all 2(n-1) steps of chunk c before chunk c+1):
// with a finite number of slots, a step-major loop would deadlock as soon as
// one segment spans more chunks than a channel has slots, because every rank
// would block sending before anyone receives.
#include "cpu/Futex.h"
#include "cpu/algorithms/Collective.h"

namespace ringtree {

// Two ranks and one message each way: exchange whole buffers and reduce
// locally, one hop instead of the ring's two. Both ranks combine in rank
// order (rank 0's data first), so their results are bit-identical.
//
// Small ops queued back to back travel as one batch (a.ahead): this op's
// message carries the data of the queued ops after it, one record each, and
// the receiver takes one record per op (a.stream). A batch is a transport
// detail: each op still checks its record against its own call, and a rank
// that sends one message per op talks to a rank that batches just as well.
static Status oneHop(const CollectiveArgs& a, int right, int left) {
  const OpDesc& op = *a.op;
  Transport& t = *a.transport;
  const int r = t.rank();
  const size_t es = dtypeSize(op.dtype);
  const uint64_t count = op.count, bytes = count * es;
  if (!op.resume && !op.sentAhead) {
    char* slot;
    RT_CHECK(t.acquireSend(right, &slot));
    if (a.ahead && !a.ahead->empty()) {
      uint64_t off = 0;
      auto put = [&](const OpDesc& d) {
        const uint64_t b = d.count * dtypeSize(d.dtype);
        MsgHeader rec = stampHeader(d, 0, 0, b);
        std::memcpy(slot + off, &rec, sizeof rec);
        copyBytes(slot + off + sizeof rec, d.input, b);
        off += batchRecordBytes(b);
      };
      put(op);
      for (const OpDesc* d : *a.ahead) put(*d);
      MsgHeader h = stampHeader(op, kBatchStep, 0, off);
      h.tag = int32_t(a.ahead->size() + 1);
      t.commitSend(right, h);
    } else if (bytes <= kHeaderPayloadBytes) {
      // Small enough for the header's unused fields: the receiver finds the
      // data in the line it polls, one cache-line transfer instead of two.
      MsgHeader h = stampHeader(op, 0, 0, bytes);
      h.tag = kHeaderPayloadTag;
      std::memcpy(headerPayload(&h), op.input, bytes);
      t.commitSend(right, h);
    } else {
      copyBytes(slot, op.input, bytes);
      t.commitSend(right, stampHeader(op, 0, 0, bytes));
    }
  }
  OneHopStream local;
  OneHopStream& st = a.stream ? *a.stream : local;
  const MsgHeader* h;
  const char* in;
  if (st.remaining == 0) {
    if (a.deferred) {
      // Inline attempt: the peer gets a short while to answer; after that
      // the collective thread waits for it instead of the caller.
      const int64_t until = monotonicNs() + a.inlineBudgetNs;
      for (int i = 1; (h = t.pollRecv(left, &in)) == nullptr; i++) {
        if ((i & 63) == 0 && monotonicNs() > until) {
          *a.deferred = true;
          return Status::ok();
        }
        cpuRelax();
      }
    } else {
      RT_CHECK(t.acquireRecv(left, &h, &in));
    }
    if (h->step == kBatchStep && h->kind == uint8_t(OpKind::AllReduce) && h->tag > 0) {
      st.next = in;
      st.end = in + h->bytes;
      st.remaining = uint32_t(h->tag);
    } else if (h->tag == kHeaderPayloadTag && h->bytes <= kHeaderPayloadBytes) {
      in = headerPayload(h);
    }
  }
  if (st.remaining > 0) {
    h = reinterpret_cast<const MsgHeader*>(st.next);
    if (st.end - st.next < ptrdiff_t(sizeof(MsgHeader)) ||
        uint64_t(st.end - st.next) < batchRecordBytes(h->bytes)) {
      st.remaining = 0;
      t.releaseRecv(left);
      return Status(StatusCode::Internal,
                    "protocol error from rank " + std::to_string(left) + " in " + describeOp(op) +
                        ": a batch record runs past the end of its message",
                    {}, left);
    }
    in = st.next + sizeof(MsgHeader);
    st.next += batchRecordBytes(h->bytes);
    st.remaining--;
  }
  RT_CHECK(checkHeader(op, *h, left, r, 0, 0, bytes));
  const void* first = r == 0 ? op.input : static_cast<const void*>(in);
  const void* second = r == 0 ? static_cast<const void*>(in) : op.input;
  reduce(op.output, first, second, count, op.dtype, op.op);
  if (op.op == ReduceOp::Avg) divideBy(op.output, count, op.dtype, t.size());
  if (st.remaining == 0) t.releaseRecv(left);
  return Status::ok();
}

Status ringAllReduce(const CollectiveArgs& a) {
  const OpDesc& op = *a.op;
  Transport& t = *a.transport;
  const int n = t.size(), r = t.rank();
  const size_t es = dtypeSize(op.dtype);
  const uint64_t count = op.count;
  if (n == 1) {
    copyBytes(op.output, op.input, count * es);
    return Status::ok();
  }
  const int right = mod(r + 1, n), left = mod(r - 1, n);
  if (oneHopAllReduce(t, op, a.chunkElems)) return oneHop(a, right, left);
  const uint64_t maxSeg = count / n + (count % n ? 1 : 0);
  const uint64_t chunks = std::max<uint64_t>(1, ceilDiv(maxSeg, a.chunkElems));
  auto seg = [&](int s, uint64_t c, uint64_t* b, uint64_t* e) {
    chunkRange(segmentStart(count, n, s), segmentStart(count, n, s + 1), c, a.chunkElems, b, e);
  };
  const uint32_t lastStep = uint32_t(2 * (n - 1));

  for (uint64_t c = 0; c < chunks; c++) {
    uint64_t b, e;
    // Step 0: our own segment r goes to the right as is.
    seg(r, c, &b, &e);
    RT_CHECK(sendCopy(a, right, elemPtr(op.input, b, es), (e - b) * es, 0, c));

    // Reduce-scatter steps: receive the partial sum of segment r-s-1, add ours.
    for (int s = 0; s < n - 1; s++) {
      const int sg = mod(r - s - 1, n);
      seg(sg, c, &b, &e);
      const uint64_t bytes = (e - b) * es;
      const MsgHeader* h;
      const char* in;
      RT_CHECK(recvChecked(a, left, uint32_t(s), c, bytes, &h, &in));
      if (s < n - 2) {
        RT_CHECK(sendReduced(a, right, in, elemPtr(op.input, b, es), e - b, uint32_t(s + 1), c));
      } else {
        // Segment sg = r+1 is now fully reduced: finish it in the slot that
        // starts the all-gather, and copy it to the output from there.
        char* slot;
        RT_CHECK(t.acquireSend(right, &slot));
        reduce(slot, in, elemPtr(op.input, b, es), e - b, op.dtype, op.op);
        if (op.op == ReduceOp::Avg) divideBy(slot, e - b, op.dtype, n);
        copyToOutput(elemPtr(op.output, b, es), slot, bytes, a.streamOutput);
        t.commitSend(right, stampHeader(op, uint32_t(s + 1), uint32_t(c), bytes));
      }
      t.releaseRecv(left);
    }

    // All-gather steps: receive finished segment r-s, keep it, pass it on.
    for (int s = 0; s < n - 1; s++) {
      const int sg = mod(r - s, n);
      seg(sg, c, &b, &e);
      const uint64_t bytes = (e - b) * es;
      const uint32_t step = uint32_t(n - 1 + s);
      const MsgHeader* h;
      const char* in;
      RT_CHECK(recvChecked(a, left, step, c, bytes, &h, &in));
      copyToOutput(elemPtr(op.output, b, es), in, bytes, a.streamOutput);
      if (step + 1 < lastStep) RT_CHECK(sendCopy(a, right, in, bytes, step + 1, c));
      t.releaseRecv(left);
    }
  }
  return Status::ok();
}

}  // namespace ringtree
