#include "cuda/DeviceGemm.h"

#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <utility>

#include "cuda/CublasLtLibrary.h"
#include "cuda/CudaDriver.h"

namespace ringtree::cuda {

namespace {

constexpr size_t kMiB = size_t(1) << 20;
// Bounds the plan cache; past it the cache starts over (a plan costs a few KiB of host memory).
constexpr size_t kMaxPlans = 512;

int cudaDataType(DType t) {
  switch (t) {
    case DType::Float64: return CUDA_R_64F;
    case DType::Float16: return CUDA_R_16F;
    case DType::BFloat16: return CUDA_R_16BF;
    default: return CUDA_R_32F;
  }
}

// The largest power of two (up to 256) dividing the address: what cuBLASLt's
// MIN_ALIGNMENT preferences want, so that a view at an odd offset never gets
// an algorithm that assumes a 16-byte aligned start.
uint32_t alignmentOf(CUdeviceptr p) {
  uint32_t a = 256;
  while (a > 1 && (p % a) != 0) a /= 2;
  return a;
}

std::string epilogueName(uint32_t e) {
  switch (e) {
    case CUBLASLT_EPILOGUE_DEFAULT: return "none";
    case CUBLASLT_EPILOGUE_RELU: return "relu";
    case CUBLASLT_EPILOGUE_RELU_AUX: return "reluAux";
    case CUBLASLT_EPILOGUE_BIAS: return "bias";
    case CUBLASLT_EPILOGUE_RELU_BIAS: return "biasRelu";
    case CUBLASLT_EPILOGUE_RELU_AUX_BIAS: return "biasReluAux";
    case CUBLASLT_EPILOGUE_DRELU: return "dRelu";
    case CUBLASLT_EPILOGUE_DRELU_BGRAD: return "dReluBgrad";
    case CUBLASLT_EPILOGUE_GELU: return "gelu";
    case CUBLASLT_EPILOGUE_GELU_AUX: return "geluAux";
    case CUBLASLT_EPILOGUE_GELU_BIAS: return "biasGelu";
    case CUBLASLT_EPILOGUE_GELU_AUX_BIAS: return "biasGeluAux";
    case CUBLASLT_EPILOGUE_DGELU: return "dGelu";
    case CUBLASLT_EPILOGUE_DGELU_BGRAD: return "dGeluBgrad";
  }
  return "epilogue " + std::to_string(e);
}

bool epilogueHasBias(uint32_t e) { return (e & (4u | 16u)) != 0; }
bool epilogueHasAux(uint32_t e) { return (e & 128u) != 0; }

// Everything the descriptors and the chosen algorithm depend on (not the
// pointers themselves, only their alignment).
struct PlanKey {
  int32_t dtype, tf32, transA, transB;
  int64_t m, n, k, lda, ldb, ldc, batch, strideA, strideB, strideC, auxLd;
  uint32_t epilogue, alignA, alignB, alignC;
};

std::string keyBytes(const PlanKey& k) { return std::string(reinterpret_cast<const char*>(&k), sizeof k); }

struct Plan {
  cublasLtMatmulDesc_t desc = nullptr;
  cublasLtMatrixLayout_t layoutA = nullptr, layoutB = nullptr, layoutC = nullptr;
  cublasLtMatmulAlgo_t algo{};
  size_t workspaceBytes = 0;
  void destroy() {
    CublasLtLibrary& lt = CublasLtLibrary::instance();
    if (desc) lt.matmulDescDestroy(desc);
    for (cublasLtMatrixLayout_t l : {layoutA, layoutB, layoutC}) {
      if (l) lt.matrixLayoutDestroy(l);
    }
    desc = nullptr;
    layoutA = layoutB = layoutC = nullptr;
  }
};

// One per (device, stream), used only from the thread that owns the stream:
// the handle, its workspace (bound to every matmul, never shared between
// streams, so concurrent GEMMs on other streams cannot clobber it) and the
// plan cache. Released by the stream's owner when it stops (releaseDeviceGemm).
// There is no cublasHandle_t and so no cublasSetWorkspace: that call binds a
// workspace to a cuBLAS handle, while cublasLtMatmul takes it per call, next
// to the heuristic that was told its size (MAX_WORKSPACE_BYTES).
struct LtContext {
  cublasLtHandle_t handle = nullptr;
  CUdeviceptr workspace = 0;
  size_t workspaceBytes = 0;
  // Zeros standing in for A and B when k = 0 (C = beta * C, then the epilogue).
  CUdeviceptr zeros = 0;
  size_t zerosBytes = 0;
  std::unordered_map<std::string, Plan> plans;
};

std::mutex contextsMutex;
std::map<std::pair<int, CUstream>, std::unique_ptr<LtContext>>& contexts() {
  static auto* m = new std::map<std::pair<int, CUstream>, std::unique_ptr<LtContext>>();
  return *m;
}

Status contextFor(int device, CUstream stream, LtContext** out) {
  {
    std::lock_guard<std::mutex> lk(contextsMutex);
    auto it = contexts().find({device, stream});
    if (it != contexts().end()) {
      *out = it->second.get();
      return Status::ok();
    }
  }
  CudaDriver& cu = CudaDriver::instance();
  CublasLtLibrary& lt = CublasLtLibrary::instance();
  auto ctx = std::make_unique<LtContext>();
  RT_CHECK(lt.check(lt.create(&ctx->handle), "cublasLtCreate"));
  CUdevice dev = 0;
  int major = 0;
  RT_CHECK(cu.check(cu.cuDeviceGet(&dev, device), "cuDeviceGet"));
  RT_CHECK(cu.check(cu.cuDeviceGetAttribute(&major, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, dev), "cuDeviceGetAttribute"));
  ctx->workspaceBytes = cublasWorkspaceBytes(major);
  if (ctx->workspaceBytes > 0) {
    Status s = cu.check(cu.cuMemAlloc(&ctx->workspace, ctx->workspaceBytes), "cuMemAlloc (cuBLASLt workspace)");
    if (!s.isOk()) {
      lt.destroy(ctx->handle);
      return s;
    }
  }
  std::lock_guard<std::mutex> lk(contextsMutex);
  *out = ctx.get();
  contexts()[{device, stream}] = std::move(ctx);
  return Status::ok();
}

Status makePlan(LtContext& ctx, const DeviceGemmDesc& d, const GemmDesc& g, uint32_t aligns[3], Plan* plan) {
  CublasLtLibrary& lt = CublasLtLibrary::instance();
  const int type = cudaDataType(g.dtype);
  const bool f64 = g.dtype == DType::Float64;
  const int compute = f64 ? CUBLAS_COMPUTE_64F : d.tf32 ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F;
  RT_CHECK(lt.check(lt.matmulDescCreate(&plan->desc, compute, f64 ? CUDA_R_64F : CUDA_R_32F), "cublasLtMatmulDescCreate"));
  // cuBLASLt is column-major: the row-major m x n C is the column-major
  // n x m C^T = op(B)^T @ op(A)^T, so B goes in as Lt's A and A as Lt's B,
  // each described column-major by its stored (rows, cols) swapped.
  const int32_t opA = g.transB ? CUBLAS_OP_T : CUBLAS_OP_N;
  const int32_t opB = g.transA ? CUBLAS_OP_T : CUBLAS_OP_N;
  RT_CHECK(lt.check(lt.matmulDescSetAttribute(plan->desc, CUBLASLT_MATMUL_DESC_TRANSA, &opA, sizeof opA), "TRANSA"));
  RT_CHECK(lt.check(lt.matmulDescSetAttribute(plan->desc, CUBLASLT_MATMUL_DESC_TRANSB, &opB, sizeof opB), "TRANSB"));
  const uint32_t epilogue = d.epilogue;
  RT_CHECK(lt.check(lt.matmulDescSetAttribute(plan->desc, CUBLASLT_MATMUL_DESC_EPILOGUE, &epilogue, sizeof epilogue), "EPILOGUE"));
  if (epilogueHasBias(epilogue)) {
    const int32_t biasType = type;
    RT_CHECK(lt.check(lt.matmulDescSetAttribute(plan->desc, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, &biasType, sizeof biasType),
                      "BIAS_DATA_TYPE"));
  }
  if (epilogueHasAux(epilogue)) {
    const int64_t ld = d.auxLd;
    RT_CHECK(lt.check(lt.matmulDescSetAttribute(plan->desc, CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_LD, &ld, sizeof ld), "EPILOGUE_AUX_LD"));
  }
  const uint64_t ltARows = g.transB ? g.k : g.n, ltACols = g.transB ? g.n : g.k;
  const uint64_t ltBRows = g.transA ? g.m : g.k, ltBCols = g.transA ? g.k : g.m;
  RT_CHECK(lt.check(lt.matrixLayoutCreate(&plan->layoutA, type, ltARows, ltACols, g.ldb), "cublasLtMatrixLayoutCreate"));
  RT_CHECK(lt.check(lt.matrixLayoutCreate(&plan->layoutB, type, ltBRows, ltBCols, g.lda), "cublasLtMatrixLayoutCreate"));
  RT_CHECK(lt.check(lt.matrixLayoutCreate(&plan->layoutC, type, uint64_t(g.n), uint64_t(g.m), g.ldc), "cublasLtMatrixLayoutCreate"));
  if (g.batch > 1) {
    const int32_t count = int32_t(g.batch);
    const std::pair<cublasLtMatrixLayout_t, int64_t> layouts[] = {
        {plan->layoutA, g.strideB}, {plan->layoutB, g.strideA}, {plan->layoutC, g.strideC}};
    for (const auto& [layout, stride] : layouts) {
      RT_CHECK(lt.check(lt.matrixLayoutSetAttribute(layout, CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, &count, sizeof count), "BATCH_COUNT"));
      RT_CHECK(lt.check(lt.matrixLayoutSetAttribute(layout, CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET, &stride, sizeof stride),
                        "STRIDED_BATCH_OFFSET"));
    }
  }
  cublasLtMatmulPreference_t pref = nullptr;
  RT_CHECK(lt.check(lt.preferenceCreate(&pref), "cublasLtMatmulPreferenceCreate"));
  const uint64_t maxWorkspace = ctx.workspaceBytes;
  Status s = lt.check(lt.preferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &maxWorkspace, sizeof maxWorkspace),
                      "MAX_WORKSPACE_BYTES");
  // Lt's A is our B, Lt's B our A; C and D are the same matrix.
  const int prefs[] = {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES,
                       CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES};
  const uint32_t values[] = {aligns[1], aligns[0], aligns[2], aligns[2]};
  for (int i = 0; i < 4 && s.isOk(); i++) {
    s = lt.check(lt.preferenceSetAttribute(pref, prefs[i], &values[i], sizeof values[i]), "MIN_ALIGNMENT");
  }
  cublasLtMatmulHeuristicResult_t result{};
  int returned = 0;
  cublasStatus_t h = CUBLAS_STATUS_SUCCESS;
  if (s.isOk()) {
    h = lt.algoGetHeuristic(ctx.handle, plan->desc, plan->layoutA, plan->layoutB, plan->layoutC, plan->layoutC, pref, 1,
                            &result, &returned);
    // NOT_SUPPORTED and INVALID_VALUE here mean "not this combination" (an
    // epilogue with this layout, an aux ld): reported below with the shape.
    if (h != CUBLAS_STATUS_SUCCESS && h != CUBLAS_STATUS_NOT_SUPPORTED && h != CUBLAS_STATUS_INVALID_VALUE) {
      s = lt.check(h, "cublasLtMatmulAlgoGetHeuristic");
    }
  }
  lt.preferenceDestroy(pref);
  RT_CHECK(s);
  if (h != CUBLAS_STATUS_SUCCESS || returned < 1) {
    const std::string why = h == CUBLAS_STATUS_SUCCESS ? "" : " (cublasLtMatmulAlgoGetHeuristic: " + lt.check(h, "").message().substr(9) + ")";
    return Status(StatusCode::InvalidArgument,
                  std::string("gemm: cuBLASLt has no algorithm for ") + dtypeName(g.dtype) + (d.tf32 ? " (tf32)" : "") +
                      " m x n x k = " + std::to_string(g.m) + " x " + std::to_string(g.n) + " x " + std::to_string(g.k) +
                      (g.transA ? ", transA" : "") + (g.transB ? ", transB" : "") + ", lda " + std::to_string(g.lda) +
                      ", ldb " + std::to_string(g.ldb) + ", ldc " + std::to_string(g.ldc) +
                      (g.batch > 1 ? ", batch " + std::to_string(g.batch) : "") + ", epilogue " + epilogueName(epilogue) +
                      (epilogueHasAux(epilogue) ? " (auxLd " + std::to_string(d.auxLd) + ")" : "") +
                      " with a " + std::to_string(ctx.workspaceBytes) + "-byte workspace on this GPU and cuBLASLt " +
                      std::to_string(CublasLtLibrary::instance().version()) + why,
                  "Try another epilogue/transpose combination, aligned leading dimensions (multiples of 16 bytes), or "
                  "run the epilogue separately.");
  }
  plan->algo = result.algo;
  plan->workspaceBytes = result.workspaceSize;
  return Status::ok();
}

}  // namespace

void releaseDeviceGemm(int device, CUstream stream) {
  std::unique_ptr<LtContext> ctx;
  {
    std::lock_guard<std::mutex> lk(contextsMutex);
    auto it = contexts().find({device, stream});
    if (it == contexts().end()) return;
    ctx = std::move(it->second);
    contexts().erase(it);
  }
  CudaDriver& cu = CudaDriver::instance();
  CublasLtLibrary& lt = CublasLtLibrary::instance();
  for (auto& kv : ctx->plans) kv.second.destroy();
  if (ctx->handle) lt.destroy(ctx->handle);
  if (ctx->workspace) cu.cuMemFree(ctx->workspace);
  if (ctx->zeros) cu.cuMemFree(ctx->zeros);
}

size_t cublasWorkspaceBytes(int computeCapabilityMajor) {
  if (const char* env = std::getenv("RINGTREE_CUBLAS_WORKSPACE_BYTES")) {
    char* end = nullptr;
    unsigned long long v = std::strtoull(env, &end, 10);
    if (end && end != env && *end == '\0') return size_t(v);
  }
  return computeCapabilityMajor == 9 ? 32 * kMiB : 4 * kMiB;
}

Status runDeviceGemm(int device, CUstream stream, const DeviceGemmDesc& d) {
  GemmDesc g = d.shape;
  if (g.m == 0 || g.n == 0 || g.batch == 0) return Status::ok();  // nothing to write
  CudaDriver& cu = CudaDriver::instance();
  CublasLtLibrary& lt = CublasLtLibrary::instance();
  if (!lt.loaded()) return Status(StatusCode::BackendUnavailable, "cuBLASLt is not loaded");
  LtContext* ctx = nullptr;
  RT_CHECK(contextFor(device, stream, &ctx));
  CUdeviceptr a = d.a, b = d.b;
  double alpha = g.alpha;
  if (g.k == 0) {
    // cuBLASLt wants k >= 1: multiply k = 1 zeros instead, which leaves
    // beta * C (+ bias, activation) exactly as the API promises for k = 0.
    const size_t need = size_t(g.m > g.n ? g.m : g.n) * dtypeSize(g.dtype);
    if (ctx->zerosBytes < need) {
      if (ctx->zeros) {
        // Earlier GEMMs on this stream may still read it: free only after they ran.
        RT_CHECK(cu.check(cu.cuStreamSynchronize(stream), "cuStreamSynchronize"));
        cu.cuMemFree(ctx->zeros);
        ctx->zeros = 0;
        ctx->zerosBytes = 0;
      }
      RT_CHECK(cu.check(cu.cuMemAlloc(&ctx->zeros, need), "cuMemAlloc (zeros for k = 0)"));
      ctx->zerosBytes = need;
      RT_CHECK(cu.check(cu.cuMemsetD8Async(ctx->zeros, 0, need, stream), "cuMemsetD8Async"));
    }
    a = b = ctx->zeros;
    g.k = 1;
    g.transA = g.transB = false;
    g.lda = 1;
    g.ldb = g.n;
    g.strideA = g.strideB = 0;
    alpha = 0;
  }
  uint32_t aligns[3] = {alignmentOf(a), alignmentOf(b), alignmentOf(d.c)};
  PlanKey key{};
  key.dtype = int32_t(g.dtype);
  key.tf32 = d.tf32;
  key.transA = g.transA;
  key.transB = g.transB;
  key.m = g.m, key.n = g.n, key.k = g.k, key.lda = g.lda, key.ldb = g.ldb, key.ldc = g.ldc;
  key.batch = g.batch > 1 ? g.batch : 1;
  key.strideA = g.batch > 1 ? g.strideA : 0;
  key.strideB = g.batch > 1 ? g.strideB : 0;
  key.strideC = g.batch > 1 ? g.strideC : 0;
  key.auxLd = epilogueHasAux(d.epilogue) ? d.auxLd : 0;
  key.epilogue = d.epilogue;
  key.alignA = aligns[0], key.alignB = aligns[1], key.alignC = aligns[2];
  const std::string k = keyBytes(key);
  auto it = ctx->plans.find(k);
  if (it == ctx->plans.end()) {
    if (ctx->plans.size() >= kMaxPlans) {
      for (auto& kv : ctx->plans) kv.second.destroy();
      ctx->plans.clear();
    }
    Plan plan;
    Status s = makePlan(*ctx, d, g, aligns, &plan);
    if (!s.isOk()) {
      plan.destroy();
      return s;
    }
    it = ctx->plans.emplace(k, plan).first;
  }
  Plan& plan = it->second;
  // The pointers change from call to call; the plan (this thread's alone) carries them for this one.
  if (epilogueHasBias(d.epilogue)) {
    const void* bias = reinterpret_cast<const void*>(uintptr_t(d.bias));
    RT_CHECK(lt.check(lt.matmulDescSetAttribute(plan.desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, sizeof bias), "BIAS_POINTER"));
  }
  if (epilogueHasAux(d.epilogue)) {
    const void* aux = reinterpret_cast<const void*>(uintptr_t(d.aux));
    RT_CHECK(lt.check(lt.matmulDescSetAttribute(plan.desc, CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_POINTER, &aux, sizeof aux),
                      "EPILOGUE_AUX_POINTER"));
  }
  const float alpha32 = float(alpha), beta32 = float(g.beta);
  const bool f64 = g.dtype == DType::Float64;
  const void* alphaPtr = f64 ? static_cast<const void*>(&alpha) : &alpha32;
  const void* betaPtr = f64 ? static_cast<const void*>(&g.beta) : &beta32;
  void* cPtr = reinterpret_cast<void*>(uintptr_t(d.c));
  return lt.check(lt.matmul(ctx->handle, plan.desc, alphaPtr, reinterpret_cast<const void*>(uintptr_t(b)), plan.layoutA,
                            reinterpret_cast<const void*>(uintptr_t(a)), plan.layoutB, betaPtr, cPtr, plan.layoutC, cPtr,
                            plan.layoutC, &plan.algo, reinterpret_cast<void*>(uintptr_t(ctx->workspace)),
                            ctx->workspaceBytes, stream),
                  "cublasLtMatmul");
}

}  // namespace ringtree::cuda
