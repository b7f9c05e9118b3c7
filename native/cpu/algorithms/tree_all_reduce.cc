// Double-binary-tree allreduce (NCCL's scheme; shapes in BinaryTree.h).
//
// The buffer is split in two halves; half h travels through tree h: each
// chunk is reduced up to the tree's root (every rank adds its own input to
// what its children sent) and the root's result is broadcast back down.
// Since the interior nodes of the two trees are disjoint, every rank is a
// leaf in at least one tree, so per chunk pair no rank sends or receives
// much more than ~3 chunks and all of its links carry data, where a single
// tree would leave the leaves' links half idle and load the interior nodes
// twice. Latency is O(log n) hops per chunk, against the ring's 2(n-1): the
// tree wins on small messages, the ring (bandwidth-optimal) on large ones.
//
// Schedule. Every message is named by a key (step s, tree h, phase):
//   step s = 0 .. chunks + L - 1; in step s a rank runs, for h = 0 then 1,
//   the up phase of chunk s (if s < chunks) and then the down phase of chunk
//   s - L (if s >= L).
// L (the lookahead) is 2 * tree height: a leaf pushes chunk s + L up while
// chunk s's result comes back down, so the up and down waves overlap and the
// pipeline stays full instead of paying a round trip per chunk.
// Within a key the actions are ordered by tree level: in the up phase the
// receives from the children come before the send to the parent, in the down
// phase the receive from the parent comes before the sends to the children,
// and a received slot is released only after the sends of the same key.
//
// Deadlock freedom, for any slot count >= 1 and any number of chunks. Order
// all actions of all ranks by (key, level). Every rank performs its actions
// in non-decreasing order, and a directed pair (a -> b) carries at most one
// message per key (in tree h, a is either b's child or b's parent, never
// both), so a sender and its receiver meet that pair's messages in the same
// order: FIFO per pair holds by construction. Suppose every unfinished rank
// were blocked, and take a blocked action of least order. (1) A receive of m
// from a: a has not sent m, so a is blocked at an action no later than
// send(m); by minimality it is an action of equal order, i.e. a's send of m
// or a sibling send of the same key and level, which reduces to case (2).
// (2) A send to b blocked on a full channel: the oldest unreleased message on
// that channel has a strictly smaller key (one message per key per pair), and
// b releases it before any action of a larger key, so b is blocked at an
// action of strictly smaller order: a contradiction. Hence some rank can
// always move, and since every rank's list of actions is finite, all finish.
// The same argument covers tree_broadcast.cc and tree_reduce.cc (one tree,
// key = chunk).
//
// Every received header goes through checkHeader with step = 2 * tree +
// phase (0 up, 1 down) and chunk = the chunk index, so ranks that disagree
// about the call fail with CollectiveMismatchError instead of hanging.
#include "cpu/algorithms/BinaryTree.h"
#include "cpu/algorithms/Collective.h"

namespace ringtree {

namespace {

enum Phase : uint32_t { Up = 0, Down = 1 };

inline uint32_t stepOf(int tree, Phase phase) { return uint32_t(tree * 2) + phase; }

}  // namespace

Status treeAllReduce(const CollectiveArgs& a) {
  const OpDesc& op = *a.op;
  Transport& t = *a.transport;
  const int n = t.size(), r = t.rank();
  const size_t es = dtypeSize(op.dtype);
  const uint64_t count = op.count;
  if (n == 1) {
    copyBytes(op.output, op.input, count * es);
    return Status::ok();
  }
  // Half h = [halfBegin[h], halfBegin[h + 1]); half 0 is the larger one.
  const uint64_t halfBegin[3] = {0, segmentStart(count, 2, 1), count};
  const uint64_t chunks = std::max<uint64_t>(1, ceilDiv(halfBegin[1], a.chunkElems));
  const std::vector<int> parents[2] = {doubleTreeParents(n, 0), doubleTreeParents(n, 1)};
  const TreeLinks links[2] = {linksOf(parents[0], r), linksOf(parents[1], r)};
  const uint64_t lookahead = uint64_t(2 * std::max(treeHeight(parents[0]), treeHeight(parents[1])));

  auto up = [&](int h, uint64_t c) -> Status {
    const TreeLinks& tl = links[h];
    uint64_t b, e;
    chunkRange(halfBegin[h], halfBegin[h + 1], c, a.chunkElems, &b, &e);
    const uint64_t bytes = (e - b) * es;
    const char* in[2] = {nullptr, nullptr};
    for (int i = 0; i < tl.childCount; i++) {
      const MsgHeader* hdr;
      RT_CHECK(t.acquireRecv(tl.children[i], &hdr, &in[i]));
      RT_CHECK(checkHeader(op, *hdr, tl.children[i], r, stepOf(h, Up), uint32_t(c), bytes));
    }
    const char* mine = elemPtr(op.input, b, es);
    char* dst;
    if (tl.parent < 0) {
      dst = elemPtr(op.output, b, es);
    } else {
      RT_CHECK(t.acquireSend(tl.parent, &dst));
    }
    // Fixed order (own + first child) + second child: every run and every
    // rank's copy of the result is bit-identical.
    if (tl.childCount == 0) {
      copyBytes(dst, mine, bytes);
    } else {
      reduce(dst, mine, in[0], e - b, op.dtype, op.op);
      if (tl.childCount == 2) reduce(dst, dst, in[1], e - b, op.dtype, op.op);
    }
    if (tl.parent < 0) {
      if (op.op == ReduceOp::Avg) divideBy(dst, e - b, op.dtype, n);
    } else {
      t.commitSend(tl.parent, stampHeader(op, stepOf(h, Up), uint32_t(c), bytes));
    }
    for (int i = 0; i < tl.childCount; i++) t.releaseRecv(tl.children[i]);
    return Status::ok();
  };

  auto down = [&](int h, uint64_t c) -> Status {
    const TreeLinks& tl = links[h];
    uint64_t b, e;
    chunkRange(halfBegin[h], halfBegin[h + 1], c, a.chunkElems, &b, &e);
    const uint64_t bytes = (e - b) * es;
    char* out = elemPtr(op.output, b, es);
    const char* src = out;  // the root's result, already in its output
    if (tl.parent >= 0) {
      const MsgHeader* hdr;
      RT_CHECK(t.acquireRecv(tl.parent, &hdr, &src));
      RT_CHECK(checkHeader(op, *hdr, tl.parent, r, stepOf(h, Down), uint32_t(c), bytes));
    }
    // Forward first: the children's wait is the critical path.
    for (int i = 0; i < tl.childCount; i++) {
      char* slot;
      RT_CHECK(t.acquireSend(tl.children[i], &slot));
      copyBytes(slot, src, bytes);
      t.commitSend(tl.children[i], stampHeader(op, stepOf(h, Down), uint32_t(c), bytes));
    }
    if (tl.parent >= 0) {
      copyBytes(out, src, bytes);
      t.releaseRecv(tl.parent);
    }
    return Status::ok();
  };

  for (uint64_t s = 0; s < chunks + lookahead; s++) {
    for (int h = 0; h < 2; h++) {
      if (s < chunks) RT_CHECK(up(h, s));
      if (s >= lookahead) RT_CHECK(down(h, s - lookahead));
    }
  }
  return Status::ok();
}

}  // namespace ringtree
