// libnccl, loaded at run time with dlopen. NCCL 2.18 or newer is required
// (ncclCommSplit, non-blocking communicators); newer entry points are probed.
#pragma once

#include <string>
#include <vector>

#include "cuda/DynamicLibrary.h"
#include "cuda/NcclApi.h"

namespace ringtree::cuda {

class NcclLibrary : public DynamicLibrary {
 public:
  static NcclLibrary& instance();

  // Try each candidate in order (file names for dlopen's search, or paths).
  // Idempotent: later calls return the first result.
  Status load(const std::vector<std::string>& candidates);
  // NCCL_VERSION code, e.g. 22703 for 2.27.3; 0 when not loaded.
  int version() const { return version_; }
  static std::string versionString(int code);

  // An ncclResult_t as a Status; InvalidArgument stays non-fatal, the rest
  // poison the communicator (NCCL's own error table).
  Status check(ncclResult_t r, const char* what, ncclComm_t comm) const;

  PFN_ncclGetVersion getVersion = nullptr;
  PFN_ncclGetUniqueId getUniqueId = nullptr;
  PFN_ncclCommInitRankConfig commInitRankConfig = nullptr;
  PFN_ncclCommSplit commSplit = nullptr;
  PFN_ncclCommFinalize commFinalize = nullptr;
  PFN_ncclCommDestroy commDestroy = nullptr;
  PFN_ncclCommAbort commAbort = nullptr;
  PFN_ncclCommGetAsyncError commGetAsyncError = nullptr;
  PFN_ncclGetErrorString getErrorString = nullptr;
  PFN_ncclAllReduce allReduce = nullptr;
  PFN_ncclReduceScatter reduceScatter = nullptr;
  PFN_ncclAllGather allGather = nullptr;
  PFN_ncclBroadcast broadcast = nullptr;
  PFN_ncclReduce reduce = nullptr;
  PFN_ncclSend send = nullptr;
  PFN_ncclRecv recv = nullptr;
  PFN_ncclGroupStart groupStart = nullptr;
  PFN_ncclGroupEnd groupEnd = nullptr;
  // Optional: ncclGetLastError (2.13+).
  PFN_ncclGetLastError getLastError = nullptr;

 private:
  NcclLibrary() = default;
  bool tryLoad(const std::string& candidate) override;

  int version_ = 0;
};

}  // namespace ringtree::cuda
