// The subset of the NCCL API that ringtree calls, declared by us from NVIDIA's
// public NCCL documentation (we never include nccl.h: libnccl is found at run
// time with dlopen, see NcclLibrary). The enum values and the ncclConfig_t
// layout are checked against the real nccl.h on the GPU machine by
// test/abi/abiCheck.c (scripts/gpu-check.mjs, RINGTREE_NCCL_INCLUDE).
#pragma once

#include <climits>
#include <cstddef>

#include "cuda/CudaApi.h"

namespace ringtree::cuda {

using ncclComm_t = struct ncclComm*;
struct ncclUniqueId {
  char internal[128];
};

using ncclResult_t = int;
constexpr ncclResult_t ncclSuccess = 0;
constexpr ncclResult_t ncclUnhandledCudaError = 1;
constexpr ncclResult_t ncclSystemError = 2;
constexpr ncclResult_t ncclInternalError = 3;
constexpr ncclResult_t ncclInvalidArgument = 4;
constexpr ncclResult_t ncclInvalidUsage = 5;
constexpr ncclResult_t ncclRemoteError = 6;
constexpr ncclResult_t ncclInProgress = 7;

using ncclRedOp_t = int;
constexpr ncclRedOp_t ncclSum = 0, ncclProd = 1, ncclMax = 2, ncclMin = 3, ncclAvg = 4;

using ncclDataType_t = int;
constexpr ncclDataType_t ncclInt8 = 0, ncclUint8 = 1, ncclInt32 = 2, ncclUint32 = 3, ncclInt64 = 4,
                         ncclUint64 = 5, ncclFloat16 = 6, ncclFloat32 = 7, ncclFloat64 = 8, ncclBfloat16 = 9;

// NCCL_VERSION(X, Y, Z) for 2.9 and later.
constexpr int ncclVersionCode(int major, int minor, int patch) { return major * 10000 + minor * 100 + patch; }

constexpr int NCCL_CONFIG_UNDEF_INT = INT_MIN;
constexpr int NCCL_SPLIT_NOCOLOR = -1;
constexpr unsigned NCCL_CONFIG_MAGIC = 0xcafebeef;

// ncclConfig_t as of NCCL 2.18 (the floor). NCCL reads `size` and `version`
// first and only the fields that version had, so newer libraries accept this
// shorter struct; fields we do not set stay "undefined" (NCCL's defaults).
struct ncclConfig_t {
  size_t size;
  unsigned int magic;
  unsigned int version;
  int blocking;
  int cgaClusterSize;
  int minCTAs;
  int maxCTAs;
  const char* netName;
  int splitShare;
};

// NCCL_CONFIG_INITIALIZER for the struct above.
inline ncclConfig_t ncclConfigInitializer() {
  ncclConfig_t c;
  c.size = sizeof(ncclConfig_t);
  c.magic = NCCL_CONFIG_MAGIC;
  c.version = unsigned(ncclVersionCode(2, 18, 0));
  c.blocking = NCCL_CONFIG_UNDEF_INT;
  c.cgaClusterSize = NCCL_CONFIG_UNDEF_INT;
  c.minCTAs = NCCL_CONFIG_UNDEF_INT;
  c.maxCTAs = NCCL_CONFIG_UNDEF_INT;
  c.netName = nullptr;
  c.splitShare = NCCL_CONFIG_UNDEF_INT;
  return c;
}

extern "C" {
using PFN_ncclGetVersion = ncclResult_t (*)(int*);
using PFN_ncclGetUniqueId = ncclResult_t (*)(ncclUniqueId*);
using PFN_ncclCommInitRankConfig = ncclResult_t (*)(ncclComm_t*, int, ncclUniqueId, int, ncclConfig_t*);
using PFN_ncclCommSplit = ncclResult_t (*)(ncclComm_t, int, int, ncclComm_t*, ncclConfig_t*);
using PFN_ncclCommFinalize = ncclResult_t (*)(ncclComm_t);
using PFN_ncclCommDestroy = ncclResult_t (*)(ncclComm_t);
using PFN_ncclCommAbort = ncclResult_t (*)(ncclComm_t);
using PFN_ncclCommGetAsyncError = ncclResult_t (*)(ncclComm_t, ncclResult_t*);
using PFN_ncclGetErrorString = const char* (*)(ncclResult_t);
using PFN_ncclGetLastError = const char* (*)(ncclComm_t);
using PFN_ncclAllReduce = ncclResult_t (*)(const void*, void*, size_t, ncclDataType_t, ncclRedOp_t, ncclComm_t, CUstream);
using PFN_ncclReduceScatter = ncclResult_t (*)(const void*, void*, size_t, ncclDataType_t, ncclRedOp_t, ncclComm_t, CUstream);
using PFN_ncclAllGather = ncclResult_t (*)(const void*, void*, size_t, ncclDataType_t, ncclComm_t, CUstream);
using PFN_ncclBroadcast = ncclResult_t (*)(const void*, void*, size_t, ncclDataType_t, int, ncclComm_t, CUstream);
using PFN_ncclReduce = ncclResult_t (*)(const void*, void*, size_t, ncclDataType_t, ncclRedOp_t, int, ncclComm_t, CUstream);
using PFN_ncclSend = ncclResult_t (*)(const void*, size_t, ncclDataType_t, int, ncclComm_t, CUstream);
using PFN_ncclRecv = ncclResult_t (*)(void*, size_t, ncclDataType_t, int, ncclComm_t, CUstream);
using PFN_ncclGroupStart = ncclResult_t (*)();
using PFN_ncclGroupEnd = ncclResult_t (*)();
}

}  // namespace ringtree::cuda
