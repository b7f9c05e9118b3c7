// TEMPORARY skeleton, replaced by the reduction-kernel work.
#include "core/reduce.h"
namespace ringtree {
void reduce(void*, const void*, const void*, size_t, DType, ReduceOp) {}
void divideBy(void*, size_t, DType, int) {}
SimdLevel activeSimdLevel() { return SimdLevel::Baseline; }
bool setSimdLevel(SimdLevel) { return false; }
const char* simdLevelName(SimdLevel) { return "baseline"; }
bool parseSimdLevel(const std::string&, SimdLevel*) { return false; }
std::vector<std::string> compiledSimdLevels() { return {"baseline"}; }
std::vector<std::string> cpuSimdLevels() { return {"baseline"}; }
}  // namespace ringtree
