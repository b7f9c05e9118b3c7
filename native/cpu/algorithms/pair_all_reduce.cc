// Allreduce between two ranks of one host whose arrays are all on huge pages
// (kPairAllReduceMinBytes up to kPairAllReduceMaxBytes): each rank reduces
// its own segment (ringAllReduce's segments) by reading the peer's input
// with the kernel (process_vm_readv) piece by piece into a cached scratch
// buffer, says so, and then reads the peer's finished segment out of the
// peer's output with the kernel. No slot carries data: per byte one kernel
// copy and one reduction, against the ring's three copies and a reduction
// through the slots. On huge pages a kernel read pins one page per 2 MiB; on
// small pages it pins every 4 KiB page and the ring was 1.4-2.5x faster.
//
// Each rank first offers its buffers and whether they are on huge pages
// (HugePages::covers); with both on huge pages (or RINGTREE_PAIR_PATH=direct
// on either rank) the op runs here, else through the ring. The offers are
// checked like every header: a mismatch stops both ranks before a byte is
// read.
#include <vector>

#include "cpu/algorithms/Collective.h"

namespace ringtree {

namespace {

// Bytes read per kernel call: the scratch stays in the core's L2 between the
// read and the reduction.
constexpr uint64_t kPieceBytes = 256 * 1024;

char* scratch() {
  thread_local std::vector<char> buffer(kPieceBytes);
  return buffer.data();
}

// Read `bytes` at `remote` in the other rank piece by piece and reduce each
// piece with `ours` (the peer's data first, as the ring combines them) into `out`.
Status reduceFromPeer(const CollectiveArgs& a, uint64_t remote, const char* ours, char* out, uint64_t bytes) {
  const OpDesc& op = *a.op;
  Transport& t = *a.transport;
  const int peer = 1 - t.rank();
  const size_t es = dtypeSize(op.dtype);
  char* piece = scratch();
  const uint64_t pieceBytes = kPieceBytes / es * es;
  for (uint64_t off = 0; off < bytes; off += pieceBytes) {
    const uint64_t len = std::min(pieceBytes, bytes - off);
    RT_CHECK(readCrossMemory(t.directPid(peer), peer, remote + off, piece, len));
    reduce(out + off, piece, ours + off, len / es, op.dtype, op.op);
    if (op.op == ReduceOp::Avg) divideBy(out + off, len / es, op.dtype, 2);
  }
  return Status::ok();
}

}  // namespace

Status pairAllReduce(const CollectiveArgs& a) {
  const OpDesc& op = *a.op;
  Transport& t = *a.transport;
  const int r = t.rank(), peer = 1 - r;
  const size_t es = dtypeSize(op.dtype);
  const uint64_t count = op.count, bytes = count * es;
  const int force = a.pairTimes ? a.pairTimes->force : -1;
  // In place the output is the input: one look at the mappings will do.
  const bool huge = force != 0 && a.hugePages && a.hugePages->covers(op.input, bytes) &&
                    (op.output == op.input || a.hugePages->covers(op.output, bytes));
  PairOffer mine{reinterpret_cast<uint64_t>(op.input), bytes, force == 1 ? 1u : 0u, huge ? 1u : 0u};
  mine.output = reinterpret_cast<uint64_t>(op.output);
  PairOffer theirs;
  RT_CHECK(exchangePairOffers(op, t, mine, &theirs));
  if (!(mine.direct || theirs.direct || (huge && theirs.huge))) return ringAllReduce(a);

  const uint64_t ourBegin = segmentStart(count, 2, r) * es, ourEnd = segmentStart(count, 2, r + 1) * es;
  const uint64_t theirBegin = segmentStart(count, 2, peer) * es, theirEnd = segmentStart(count, 2, peer + 1) * es;
  char* out = static_cast<char*>(op.output);
  // 1. Our segment: the peer's input and ours, into our output (in place,
  // the same bytes of our input, read just before they are written; the
  // peer reads only its own segment of our input).
  RT_CHECK(reduceFromPeer(a, theirs.address + ourBegin, static_cast<const char*>(op.input) + ourBegin, out + ourBegin,
                          ourEnd - ourBegin));
  // 2. "Done": we no longer read the peer's input, and our segment of our
  // output is final. Its "done" says the same the other way: from then on
  // we may overwrite our copy of its segment (in place, the part of our
  // input it read) with its result.
  RT_CHECK(sayDone(op, t, peer));
  RT_CHECK(awaitDone(op, t, peer, theirEnd - theirBegin));
  RT_CHECK(readCrossMemory(t.directPid(peer), peer, theirs.output + theirBegin, out + theirBegin, theirEnd - theirBegin));
  t.countDirect(peer, 0, bytes);
  // 3. Our output must stay as it is until the peer has read our segment.
  RT_CHECK(sayDone(op, t, peer));
  return awaitDone(op, t, peer, ourEnd - ourBegin);
}

}  // namespace ringtree
