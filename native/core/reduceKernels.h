// The per-level kernel entry points behind reduce() (native/core/reduce.cc).
// Private to native/core/reduce*.cc.
#pragma once

#include <cstddef>

#include "core/dtype.h"

namespace ringtree::detail {

// Each returns false when it has no vector kernel for (dtype, op); reduce()
// then runs the baseline loop, which defines the result. `op` is never Avg.
// Only call a level the CPU supports (see cpuSimdLevels()).
#if defined(__x86_64__)
bool reduceAvx2(void* dst, const void* a, const void* b, size_t count, DType dtype, ReduceOp op);
bool reduceAvx512(void* dst, const void* a, const void* b, size_t count, DType dtype, ReduceOp op);
#endif

}  // namespace ringtree::detail
