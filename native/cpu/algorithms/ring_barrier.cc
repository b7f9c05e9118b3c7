// Barrier: a zero-byte ring allreduce. After its reduce-scatter half every
// rank has (transitively) heard from every other, and the all-gather half
// tells everyone that everyone has arrived.
#include "cpu/algorithms/Collective.h"

namespace ringtree {

Status ringBarrier(const CollectiveArgs& a) { return ringAllReduce(a); }

}  // namespace ringtree
