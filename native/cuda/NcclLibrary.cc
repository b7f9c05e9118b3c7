#include "cuda/NcclLibrary.h"

#include <dlfcn.h>

namespace ringtree::cuda {

namespace {
constexpr int kMinimumVersion = ncclVersionCode(2, 18, 0);
const char* kNcclRemedy =
    "Install NCCL 2.18 or newer: `pip install nvidia-nccl-cu12` (ringtree finds pip's nvidia/nccl/lib), the "
    "libnccl2 system package, or set RINGTREE_NCCL_PATH to libnccl.so.2 (a file or its folder). Host arrays keep "
    "working on the CPU backend.";
}  // namespace

NcclLibrary& NcclLibrary::instance() {
  static NcclLibrary* lib = new NcclLibrary();  // never destroyed: worker threads may outlive statics
  return *lib;
}

std::string NcclLibrary::versionString(int code) {
  if (code <= 0) return "unknown";
  return std::to_string(code / 10000) + "." + std::to_string((code % 10000) / 100) + "." + std::to_string(code % 100);
}

bool NcclLibrary::tryLoad(const std::string& candidate) {
  void* handle = open(candidate);
  if (!handle) return false;
  std::string missing;
#define RT_REQUIRE(field, sym) bind(field, dlsym(handle, sym), sym, missing);
  RT_REQUIRE(getVersion, "ncclGetVersion") RT_REQUIRE(getUniqueId, "ncclGetUniqueId")
  RT_REQUIRE(commInitRankConfig, "ncclCommInitRankConfig") RT_REQUIRE(commSplit, "ncclCommSplit")
  RT_REQUIRE(commFinalize, "ncclCommFinalize") RT_REQUIRE(commDestroy, "ncclCommDestroy")
  RT_REQUIRE(commAbort, "ncclCommAbort") RT_REQUIRE(commGetAsyncError, "ncclCommGetAsyncError")
  RT_REQUIRE(getErrorString, "ncclGetErrorString") RT_REQUIRE(allReduce, "ncclAllReduce")
  RT_REQUIRE(reduceScatter, "ncclReduceScatter") RT_REQUIRE(allGather, "ncclAllGather")
  RT_REQUIRE(broadcast, "ncclBroadcast") RT_REQUIRE(reduce, "ncclReduce") RT_REQUIRE(send, "ncclSend")
  RT_REQUIRE(recv, "ncclRecv") RT_REQUIRE(groupStart, "ncclGroupStart") RT_REQUIRE(groupEnd, "ncclGroupEnd")
#undef RT_REQUIRE
  getLastError = reinterpret_cast<PFN_ncclGetLastError>(dlsym(handle, "ncclGetLastError"));
  int v = 0;
  if (getVersion && getVersion(&v) != ncclSuccess) v = 0;
  if (v != 0 && v < kMinimumVersion) {
    attempts_.push_back(candidate + ": NCCL " + versionString(v) + " is older than 2.18 (ncclCommSplit, non-blocking communicators)");
    dlclose(handle);
    return false;
  }
  if (!missing.empty()) {
    attempts_.push_back(candidate + ": missing " + missing + (v ? " (NCCL " + versionString(v) + ")" : ""));
    dlclose(handle);
    return false;
  }
  path_ = fileOf(reinterpret_cast<void*>(getVersion), candidate);
  version_ = v;
  return true;
}

Status NcclLibrary::load(const std::vector<std::string>& candidates) {
  return loadOnce(candidates, "NCCL 2.18+ (libnccl.so.2) was not found.", kNcclRemedy);
}

Status NcclLibrary::check(ncclResult_t r, const char* what, ncclComm_t comm) const {
  if (r == ncclSuccess) return Status::ok();
  std::string msg = std::string(what) + " failed: " + (getErrorString ? getErrorString(r) : "NCCL error") + " (" +
                    std::to_string(r) + ")";
  if (getLastError) {
    const char* last = getLastError(comm);
    if (last && last[0]) msg += ": " + std::string(last);
  }
  if (r == ncclInvalidArgument) return Status(StatusCode::InvalidArgument, msg);
  if (r == ncclRemoteError) {
    return Status(StatusCode::PeerLost, msg, "A peer's NCCL failed or exited; check the other ranks' output.");
  }
  return Status(StatusCode::Internal, msg, "NCCL_DEBUG=WARN (or INFO) shows NCCL's own account of the failure.");
}

}  // namespace ringtree::cuda
