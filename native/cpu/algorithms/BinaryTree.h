// Tree shapes shared by the tree algorithms: the in-order binary tree and the
// double binary tree built from it (NCCL's btree/dtree idea), and the heap
// tree used by the rooted collectives.
//
// In-order tree over labels 1..m-1 (label 0 is virtual and dropped): a label
// whose lowest set bit is `low` has its parent at (x ^ low) | (low << 1), or
// at x ^ low when that is out of range; labels with low == 1 (the odd ones)
// are leaves, so about half the nodes are leaves and interior nodes are the
// even labels. The root is the highest power of two below m.
//
// Double binary tree over n ranks: tree 0 is the in-order tree over labels
// 1..n with rank = label - 1, so its interior nodes are exactly the odd
// ranks. Tree 1 is tree 0 mirrored (rank r plays tree 0's rank n-1-r) when n
// is even, which maps odd ranks onto even ones, or shifted by one (rank r
// plays tree 0's rank r-1) when n is odd. Either way the interior nodes of
// the two trees are disjoint: every rank is a leaf in at least one tree, so
// every rank sends and receives at most ~3 messages per chunk pair and all
// links carry traffic. (NCCL keeps its virtual rank 0 as tree 0's root with a
// single child; with odd n its shifted second tree then makes rank 0 interior
// in both trees. Dropping the virtual root keeps the property at every n and
// gives the root two children.)
#pragma once

#include <algorithm>
#include <vector>

namespace ringtree {

struct TreeLinks {
  int parent = -1;    // -1 at the root
  int children[2] = {-1, -1};
  int childCount = 0;  // children[0..childCount) are valid, ascending
  int depth = 0;       // edges from the root
};

// Parent label of label x (1 <= x < m) in the in-order tree; 0 means "root".
inline int inorderParent(int m, int x) {
  int low = x & -x;
  int up = (x ^ low) | (low << 1);
  if (up >= m) up = x ^ low;
  return up;
}

// Parents (as ranks, -1 for the root) of every rank of one tree of a double
// binary tree over n >= 2 ranks.
inline std::vector<int> doubleTreeParents(int n, int tree) {
  std::vector<int> tree0(n), out(n);
  for (int r = 0; r < n; r++) tree0[r] = inorderParent(n + 1, r + 1) - 1;  // label 0 -> -1 (root)
  for (int r = 0; r < n; r++) {
    if (tree == 0) {
      out[r] = tree0[r];
    } else if (n % 2 == 0) {
      int p = tree0[n - 1 - r];
      out[r] = p < 0 ? -1 : n - 1 - p;
    } else {
      int p = tree0[(r - 1 + n) % n];
      out[r] = p < 0 ? -1 : (p + 1) % n;
    }
  }
  return out;
}

// Heap tree over virtual ranks 0..n-1 (virtual 0 = `root`, v = r - root mod n):
// the parent of v is (v-1)/2. Returned as real-rank parents.
inline std::vector<int> heapTreeParents(int n, int root) {
  std::vector<int> out(n);
  for (int r = 0; r < n; r++) {
    int v = ((r - root) % n + n) % n;
    out[r] = v == 0 ? -1 : ((v - 1) / 2 + root) % n;
  }
  return out;
}

// The links of `rank` in the tree described by `parents` (children ascending).
inline TreeLinks linksOf(const std::vector<int>& parents, int rank) {
  TreeLinks t;
  t.parent = parents[rank];
  for (int r = 0; r < int(parents.size()); r++) {
    if (parents[r] == rank && t.childCount < 2) t.children[t.childCount++] = r;
  }
  for (int p = parents[rank]; p >= 0; p = parents[p]) t.depth++;
  return t;
}

// Height of every rank's subtree, in edges (0 at a leaf).
inline std::vector<int> subtreeHeights(const std::vector<int>& parents) {
  std::vector<int> h(parents.size(), 0);
  for (int r = 0; r < int(parents.size()); r++) {
    int below = 0;
    for (int p = parents[r]; p >= 0; p = parents[p]) h[p] = std::max(h[p], ++below);
  }
  return h;
}

// Longest root-to-leaf path, in edges.
inline int treeHeight(const std::vector<int>& parents) {
  int h = 0;
  for (int r = 0; r < int(parents.size()); r++) {
    int d = 0;
    for (int p = parents[r]; p >= 0; p = parents[p]) d++;
    h = std::max(h, d);
  }
  return h;
}

}  // namespace ringtree
