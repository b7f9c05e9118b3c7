#include "core/reduceKernels.h"
#if defined(__x86_64__)
namespace ringtree::detail {
bool reduceAvx2(void*, const void*, const void*, size_t, DType, ReduceOp) { return false; }
}
#endif
