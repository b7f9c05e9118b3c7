// Element-wise reduction kernels with run-time SIMD dispatch.
//
// float16/bfloat16 are widened to float32, combined, and rounded back
// (round-to-nearest-even) within each call, so every ring/tree step
// accumulates in float32. Integer sum/prod wrap (two's complement), as the
// TypeScript typed arrays do.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

#include "core/dtype.h"

namespace ringtree {

enum class SimdLevel : int { Baseline = 0, Avx2 = 1, Avx512 = 2 };

// dst[i] = a[i] (op) b[i] for i < count. dst may alias a or b exactly (not
// partially). Avg combines as Sum.
void reduce(void* dst, const void* a, const void* b, size_t count, DType dtype, ReduceOp op);

// data[i] /= divisor, in place: floats divide, integers truncate toward zero,
// float16/bfloat16 go through float32. Used to finish 'avg'.
void divideBy(void* data, size_t count, DType dtype, int divisor);

// The level reduce() uses: the best the CPU offers among those compiled in,
// unless RINGTREE_SIMD=baseline|avx2|avx512 (read once) or setSimdLevel()
// forces one. Forcing a level the CPU lacks falls back to the best available.
SimdLevel activeSimdLevel();
// Returns false (and changes nothing) when the CPU cannot run `level`.
bool setSimdLevel(SimdLevel level);
const char* simdLevelName(SimdLevel level);
bool parseSimdLevel(const std::string& name, SimdLevel* out);
std::vector<std::string> compiledSimdLevels();
std::vector<std::string> cpuSimdLevels();

}  // namespace ringtree
