// Element types and reduction operators shared by every backend. The numeric
// values are part of the addon ABI (lib/binding.ts mirrors them).
#pragma once

#include <cstddef>
#include <cstdint>

namespace ringtree {

enum class DType : uint8_t {
  Float32 = 0,
  Float64 = 1,
  Float16 = 2,
  BFloat16 = 3,
  Int8 = 4,
  Uint8 = 5,
  Int32 = 6,
  Int64 = 7,
};
constexpr int kDTypeCount = 8;

enum class ReduceOp : uint8_t {
  Sum = 0,
  Prod = 1,
  Min = 2,
  Max = 3,
  // Reduced as Sum; the final result is divided by the world size with
  // divideBy() (truncating on integers).
  Avg = 4,
};
constexpr int kReduceOpCount = 5;

inline size_t dtypeSize(DType t) {
  switch (t) {
    case DType::Float32: return 4;
    case DType::Float64: return 8;
    case DType::Float16: return 2;
    case DType::BFloat16: return 2;
    case DType::Int8: return 1;
    case DType::Uint8: return 1;
    case DType::Int32: return 4;
    case DType::Int64: return 8;
  }
  return 0;
}

inline const char* dtypeName(DType t) {
  switch (t) {
    case DType::Float32: return "float32";
    case DType::Float64: return "float64";
    case DType::Float16: return "float16";
    case DType::BFloat16: return "bfloat16";
    case DType::Int8: return "int8";
    case DType::Uint8: return "uint8";
    case DType::Int32: return "int32";
    case DType::Int64: return "int64";
  }
  return "?";
}

inline const char* reduceOpName(ReduceOp op) {
  switch (op) {
    case ReduceOp::Sum: return "sum";
    case ReduceOp::Prod: return "prod";
    case ReduceOp::Min: return "min";
    case ReduceOp::Max: return "max";
    case ReduceOp::Avg: return "avg";
  }
  return "?";
}

inline bool validDType(int v) { return v >= 0 && v < kDTypeCount; }
inline bool validReduceOp(int v) { return v >= 0 && v < kReduceOpCount; }

}  // namespace ringtree
