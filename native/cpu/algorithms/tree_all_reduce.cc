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
// Schedule. Every message is named by (step s, phase, level):
//   step s = 0 .. chunks + L - 1; in step s a rank runs the up phase of
//   chunk s in both trees (if s < chunks), then the down phase of chunk
//   s - L in both trees (if s >= L).
// L (the lookahead) is 2 * tree height: a leaf pushes chunk s + L up while
// chunk s's result comes back down, so the up and down waves overlap and the
// pipeline stays full instead of paying a round trip per chunk.
// The level orders the work inside a (step, phase). Up: a message's level is
// the height of its sender's subtree (0 at a leaf); a rank does the tree it
// is a leaf in first (a plain send), then its interior tree (receive from the
// children, lower levels, then send to the parent). Down: a message's level
// is its sender's depth; a rank does the tree where it sits higher first
// (ties: its leaf tree first), each as receive from the parent then sends to
// the children. So the two trees run concurrently: at n = 2 both ranks send
// their half at once, as the ring does, instead of waiting for each other.
// A received slot is released right after the sends of the same tree.
//
// Deadlock freedom, for any slot count >= 1 and any number of chunks.
// (a) A directed pair (x -> y) carries at most one message per (step,
// phase): an up message goes to an interior node, a down message comes from
// one, and a rank is interior in one tree only. So both ends meet a pair's
// messages in (step, phase) order: FIFO per pair holds by construction.
// (b) Every rank performs its actions in non-decreasing (step, phase, level)
// order, and a receive never comes before a send of the same order (up:
// children's subtrees are lower than ours; down: our depth is our parent's
// plus one, and the leaf tree's receive, at depth dL - 1, is done before the
// interior tree's sends, at depth dI, only when dL <= dI).
// Suppose every unfinished rank were blocked, and take a blocked action of
// least order. (1) A receive of m from x: x has not sent m, so x is blocked
// at an action no later than send(m); by minimality it has the same order,
// and by (b) it is a send, which is case (2). (2) A send to y blocked on a
// full channel: the oldest unreleased message on it has a strictly smaller
// (step, phase) by (a), and y releases it before it starts any later
// (step, phase), so y is blocked at an action of strictly smaller order: a
// contradiction. Hence some rank can always move, and since every rank's
// list of actions is finite, all finish. The same argument covers
// tree_broadcast.cc and tree_reduce.cc (one tree, ordered by chunk).
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
  // The order of the two trees inside a step (see the schedule above).
  const int height0 = subtreeHeights(parents[0])[r], height1 = subtreeHeights(parents[1])[r];
  const int upFirst = height1 < height0 ? 1 : 0;
  const int depth0 = links[0].depth, depth1 = links[1].depth;
  const int downFirst = depth1 < depth0 || (depth1 == depth0 && links[1].childCount < links[0].childCount) ? 1 : 0;

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
    if (s < chunks) {
      RT_CHECK(up(upFirst, s));
      RT_CHECK(up(1 - upFirst, s));
    }
    if (s >= lookahead) {
      RT_CHECK(down(downFirst, s - lookahead));
      RT_CHECK(down(1 - downFirst, s - lookahead));
    }
  }
  return Status::ok();
}

}  // namespace ringtree
