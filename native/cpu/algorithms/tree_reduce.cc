// Binary-tree reduce, pipelined by chunk: the mirror image of
// tree_broadcast.cc on the same heap tree rooted at `root`. Each rank adds its
// own input to what its children sent, in a fixed order ((own + first child)
// + second child), and passes the partial result to its parent; the root
// finishes it into its output (and divides for avg). Chunk by chunk, with
// received slots released after the send of the same chunk, so the argument
// at the top of tree_all_reduce.cc (key = chunk) shows it is deadlock-free
// for any slot count. Headers carry step = the sender's virtual rank.
#include "cpu/algorithms/BinaryTree.h"
#include "cpu/algorithms/Collective.h"

namespace ringtree {

Status treeReduce(const CollectiveArgs& a) {
  const OpDesc& op = *a.op;
  Transport& t = *a.transport;
  const int n = t.size(), r = t.rank();
  const size_t es = dtypeSize(op.dtype);
  const uint64_t count = op.count;
  if (n == 1) {
    copyBytes(op.output, op.input, count * es);
    return Status::ok();
  }
  // Agree on the call (root included) before any data moves: ranks that
  // disagree about the root would build different trees and wait forever.
  RT_CHECK(verifyRing(a));
  const bool isRoot = r == op.root;
  const TreeLinks tl = linksOf(heapTreeParents(n, op.root), r);
  auto virtualRank = [&](int rank) { return uint32_t(mod(rank - op.root, n)); };
  const uint64_t chunks = std::max<uint64_t>(1, ceilDiv(count, a.chunkElems));

  for (uint64_t c = 0; c < chunks; c++) {
    uint64_t b, e;
    chunkRange(0, count, c, a.chunkElems, &b, &e);
    const uint64_t bytes = (e - b) * es;
    const char* in[2] = {nullptr, nullptr};
    for (int i = 0; i < tl.childCount; i++) {
      const MsgHeader* h;
      RT_CHECK(t.acquireRecv(tl.children[i], &h, &in[i]));
      RT_CHECK(checkHeader(op, *h, tl.children[i], r, virtualRank(tl.children[i]), uint32_t(c), bytes));
    }
    const char* mine = elemPtr(op.input, b, es);
    char* dst;
    if (isRoot) {
      dst = elemPtr(op.output, b, es);
    } else {
      RT_CHECK(t.acquireSend(tl.parent, &dst));
    }
    if (tl.childCount == 0) {
      copyBytes(dst, mine, bytes);
    } else {
      reduce(dst, mine, in[0], e - b, op.dtype, op.op);
      if (tl.childCount == 2) reduce(dst, dst, in[1], e - b, op.dtype, op.op);
    }
    if (isRoot) {
      if (op.op == ReduceOp::Avg) divideBy(dst, e - b, op.dtype, n);
    } else {
      t.commitSend(tl.parent, stampHeader(op, virtualRank(r), uint32_t(c), bytes));
    }
    for (int i = 0; i < tl.childCount; i++) t.releaseRecv(tl.children[i]);
  }
  return Status::ok();
}

}  // namespace ringtree
