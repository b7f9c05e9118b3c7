// Binary-tree broadcast, pipelined by chunk. The ranks are relabelled so the
// root is virtual rank 0 of a heap tree (virtual v's parent is (v-1)/2; see
// BinaryTree.h): the data reaches every rank after ceil(log2(n+1)) - 1 hops
// instead of the chain's n-1, at the cost of interior ranks sending every
// chunk twice. Each rank handles chunk c completely (receive from the parent,
// forward to the children, keep a copy, release) before chunk c+1, so both
// ends of every edge see the chunks in the same order and the argument at the
// top of tree_all_reduce.cc (key = chunk) shows it is deadlock-free for any
// slot count. Headers carry step = the sender's virtual rank.
#include "cpu/algorithms/BinaryTree.h"
#include "cpu/algorithms/Collective.h"

namespace ringtree {

Status treeBroadcast(const CollectiveArgs& a) {
  const OpDesc& op = *a.op;
  Transport& t = *a.transport;
  const int n = t.size(), r = t.rank();
  const size_t es = dtypeSize(op.dtype);
  const uint64_t count = op.count;
  // Agree on the call (root included) before any data moves: ranks that
  // disagree about the root would build different trees and wait forever.
  RT_CHECK(verifyRing(a));
  const bool isRoot = r == op.root;
  if (isRoot) copyBytes(op.output, op.input, count * es);
  if (n == 1) return Status::ok();
  const TreeLinks tl = linksOf(heapTreeParents(n, op.root), r);
  auto virtualRank = [&](int rank) { return uint32_t(mod(rank - op.root, n)); };
  const uint64_t chunks = std::max<uint64_t>(1, ceilDiv(count, a.chunkElems));

  for (uint64_t c = 0; c < chunks; c++) {
    uint64_t b, e;
    chunkRange(0, count, c, a.chunkElems, &b, &e);
    const uint64_t bytes = (e - b) * es;
    const char* src = elemPtr(op.input, b, es);
    if (!isRoot) {
      const MsgHeader* h;
      RT_CHECK(t.acquireRecv(tl.parent, &h, &src));
      RT_CHECK(checkHeader(op, *h, tl.parent, r, virtualRank(tl.parent), uint32_t(c), bytes));
    }
    // Forward first: the children's wait is the critical path.
    for (int i = 0; i < tl.childCount; i++) {
      char* slot;
      RT_CHECK(t.acquireSend(tl.children[i], &slot));
      copyBytes(slot, src, bytes);
      t.commitSend(tl.children[i], stampHeader(op, virtualRank(r), uint32_t(c), bytes));
    }
    if (!isRoot) {
      copyBytes(elemPtr(op.output, b, es), src, bytes);
      t.releaseRecv(tl.parent);
    }
  }
  return Status::ok();
}

}  // namespace ringtree
