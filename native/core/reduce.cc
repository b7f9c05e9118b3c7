// reduce()/divideBy() and the run-time choice of SIMD level. The baseline
// kernels live here (portable C++, auto-vectorized for the target's base
// ISA); reduceAvx2.cc and reduceAvx512.cc add x86 vector kernels, compiled
// with per-file target pragmas so the binary still runs on any x86-64.
#include "core/reduce.h"

#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <mutex>

#include "core/reduceKernels.h"
#include "core/reduceScalar.h"

namespace ringtree {
namespace {

template <class T, class Op>
void baselineTyped(void* dst, const void* a, const void* b, size_t count, Op op) {
  scalarLoop(static_cast<T*>(dst), static_cast<const T*>(a), static_cast<const T*>(b), 0, count, op);
}

template <class Op>
void baselineForOp(void* dst, const void* a, const void* b, size_t count, DType dtype, Op op) {
  switch (dtype) {
    case DType::Float32: return baselineTyped<float>(dst, a, b, count, op);
    case DType::Float64: return baselineTyped<double>(dst, a, b, count, op);
    case DType::Float16:
      return scalarLoopF16(static_cast<uint16_t*>(dst), static_cast<const uint16_t*>(a),
                           static_cast<const uint16_t*>(b), 0, count, op);
    case DType::BFloat16:
      return scalarLoopBf16(static_cast<uint16_t*>(dst), static_cast<const uint16_t*>(a),
                            static_cast<const uint16_t*>(b), 0, count, op);
    case DType::Int8: return baselineTyped<int8_t>(dst, a, b, count, op);
    case DType::Uint8: return baselineTyped<uint8_t>(dst, a, b, count, op);
    case DType::Int32: return baselineTyped<int32_t>(dst, a, b, count, op);
    case DType::Int64: return baselineTyped<int64_t>(dst, a, b, count, op);
  }
}

void reduceBaseline(void* dst, const void* a, const void* b, size_t count, DType dtype, ReduceOp op) {
  switch (op) {
    case ReduceOp::Sum:
    case ReduceOp::Avg: return baselineForOp(dst, a, b, count, dtype, SumOp{});
    case ReduceOp::Prod: return baselineForOp(dst, a, b, count, dtype, ProdOp{});
    case ReduceOp::Min: return baselineForOp(dst, a, b, count, dtype, MinOp{});
    case ReduceOp::Max: return baselineForOp(dst, a, b, count, dtype, MaxOp{});
  }
}

// Integer division truncates toward zero (C++ `/`). The divisor is a world
// size in practice; -1 is done by wrapping negation because INT_MIN / -1
// traps, and 0 leaves the data alone rather than crash the process.
template <class T, class U>
void divideIntegers(T* data, size_t count, int divisor) {
  if (divisor == 0 || divisor == 1) return;
  if (divisor == -1) {
    for (size_t i = 0; i < count; ++i) data[i] = static_cast<T>(static_cast<U>(0) - static_cast<U>(data[i]));
    return;
  }
  const int64_t n = divisor;  // wide: a world size may not fit in T
  for (size_t i = 0; i < count; ++i) data[i] = static_cast<T>(data[i] / n);
}

bool cpuRuns(SimdLevel level) {
#if defined(__x86_64__)
  switch (level) {
    case SimdLevel::Baseline: return true;
    case SimdLevel::Avx2:
      return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("f16c") && __builtin_cpu_supports("fma");
    case SimdLevel::Avx512:
      return cpuRuns(SimdLevel::Avx2) && __builtin_cpu_supports("avx512f") &&
             __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl") &&
             __builtin_cpu_supports("avx512dq");
  }
  return false;
#else
  return level == SimdLevel::Baseline;
#endif
}

SimdLevel bestCpuLevel() {
  if (cpuRuns(SimdLevel::Avx512)) return SimdLevel::Avx512;
  if (cpuRuns(SimdLevel::Avx2)) return SimdLevel::Avx2;
  return SimdLevel::Baseline;
}

// -1 until first use. Relaxed is enough: any level the CPU runs gives the
// same bits, so a racing reader seeing the old level is harmless.
std::atomic<int> currentLevel{-1};
std::once_flag levelInitOnce;

SimdLevel initialLevel() {
  SimdLevel level = bestCpuLevel();
  const char* forced = std::getenv("RINGTREE_SIMD");
  SimdLevel parsed;
  if (forced != nullptr && parseSimdLevel(forced, &parsed)) {
    // Forcing a level the CPU lacks falls back to the best it has.
    level = cpuRuns(parsed) ? parsed : bestCpuLevel();
  }
  return level;
}

}  // namespace

SimdLevel activeSimdLevel() {
  int level = currentLevel.load(std::memory_order_relaxed);
  if (level >= 0) return static_cast<SimdLevel>(level);
  std::call_once(levelInitOnce, [] {
    int expected = -1;
    currentLevel.compare_exchange_strong(expected, static_cast<int>(initialLevel()));
  });
  return static_cast<SimdLevel>(currentLevel.load(std::memory_order_relaxed));
}

bool setSimdLevel(SimdLevel level) {
  if (!cpuRuns(level)) return false;
  activeSimdLevel();  // consume RINGTREE_SIMD first so it cannot override this later
  currentLevel.store(static_cast<int>(level), std::memory_order_relaxed);
  return true;
}

const char* simdLevelName(SimdLevel level) {
  switch (level) {
    case SimdLevel::Baseline: return "baseline";
    case SimdLevel::Avx2: return "avx2";
    case SimdLevel::Avx512: return "avx512";
  }
  return "baseline";
}

bool parseSimdLevel(const std::string& name, SimdLevel* out) {
  if (name == "baseline") *out = SimdLevel::Baseline;
  else if (name == "avx2") *out = SimdLevel::Avx2;
  else if (name == "avx512") *out = SimdLevel::Avx512;
  else return false;
  return true;
}

std::vector<std::string> compiledSimdLevels() {
#if defined(__x86_64__)
  return {"baseline", "avx2", "avx512"};
#else
  return {"baseline"};
#endif
}

std::vector<std::string> cpuSimdLevels() {
  std::vector<std::string> levels;
  for (SimdLevel level : {SimdLevel::Baseline, SimdLevel::Avx2, SimdLevel::Avx512}) {
    if (cpuRuns(level)) levels.push_back(simdLevelName(level));
  }
  return levels;
}

void reduce(void* dst, const void* a, const void* b, size_t count, DType dtype, ReduceOp op) {
  if (count == 0) return;
  if (op == ReduceOp::Avg) op = ReduceOp::Sum;
#if defined(__x86_64__)
  switch (activeSimdLevel()) {
    case SimdLevel::Avx512:
      if (detail::reduceAvx512(dst, a, b, count, dtype, op)) return;
      break;
    case SimdLevel::Avx2:
      if (detail::reduceAvx2(dst, a, b, count, dtype, op)) return;
      break;
    case SimdLevel::Baseline: break;
  }
#endif
  reduceBaseline(dst, a, b, count, dtype, op);
}

void divideBy(void* data, size_t count, DType dtype, int divisor) {
  if (count == 0) return;
  switch (dtype) {
    case DType::Float32: {
      float* p = static_cast<float*>(data);
      const float n = static_cast<float>(divisor);
      for (size_t i = 0; i < count; ++i) p[i] = p[i] / n;
      return;
    }
    case DType::Float64: {
      double* p = static_cast<double*>(data);
      const double n = static_cast<double>(divisor);
      for (size_t i = 0; i < count; ++i) p[i] = p[i] / n;
      return;
    }
    case DType::Float16: {
      uint16_t* p = static_cast<uint16_t*>(data);
      const float n = static_cast<float>(divisor);
      for (size_t i = 0; i < count; ++i) p[i] = f32ToF16(f16ToF32(p[i]) / n);
      return;
    }
    case DType::BFloat16: {
      uint16_t* p = static_cast<uint16_t*>(data);
      const float n = static_cast<float>(divisor);
      for (size_t i = 0; i < count; ++i) p[i] = f32ToBf16(bf16ToF32(p[i]) / n);
      return;
    }
    case DType::Int8: return divideIntegers<int8_t, uint8_t>(static_cast<int8_t*>(data), count, divisor);
    case DType::Uint8: {
      // A uint8 divided by a negative world size has no meaning; treat |n|.
      uint8_t* p = static_cast<uint8_t*>(data);
      const int n = divisor < 0 ? -divisor : divisor;
      if (n <= 1) return;
      for (size_t i = 0; i < count; ++i) p[i] = static_cast<uint8_t>(p[i] / n);
      return;
    }
    case DType::Int32: return divideIntegers<int32_t, uint32_t>(static_cast<int32_t*>(data), count, divisor);
    case DType::Int64: return divideIntegers<int64_t, uint64_t>(static_cast<int64_t*>(data), count, divisor);
  }
}

}  // namespace ringtree
