// An NCCL communicator in non-blocking mode on its own stream and thread
// (StreamWorker). Every call is followed by polling ncclCommGetAsyncError
// until it leaves ncclInProgress, bounded by the op's deadline; a deadline,
// an NCCL error or abort() calls ncclCommAbort, so no wait is unbounded.
#pragma once

#include <atomic>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "core/status.h"
#include "cuda/NcclApi.h"
#include "cuda/StreamWorker.h"

namespace ringtree::cuda {

class NcclCommunicator;

struct NcclCommOptions {
  int device = 0;
  int rank = 0;
  int size = 1;
  ncclUniqueId id{};
  // NCCL_ALGO value while the communicator is made ("" = NCCL's choice).
  std::string algorithm;
  int64_t initTimeoutMs = 300000;
  // Set: made by ncclCommSplit(parent, splitColor, splitKey) instead of from
  // `id`. Every rank of the parent takes part (NCCL_SPLIT_NOCOLOR: no child).
  // The caller keeps the parent idle meanwhile (ringtree orders it in JS).
  std::shared_ptr<NcclCommunicator> parent;
  int splitColor = 0;
  int splitKey = 0;
};

struct NcclCall {
  enum Kind { AllReduce, ReduceScatter, AllGather, Broadcast, Reduce, Send, Recv } kind = AllReduce;
  CUdeviceptr send = 0;
  CUdeviceptr recv = 0;
  size_t count = 0;
  ncclDataType_t dtype = ncclFloat32;
  ncclRedOp_t op = ncclSum;
  int root = 0;  // or peer for send/recv
};

class NcclCommunicator {
 public:
  explicit NcclCommunicator(const NcclCommOptions& options);
  ~NcclCommunicator();

  // One collective, or several send/recv calls in one NCCL group.
  void submit(std::vector<NcclCall> calls, std::string name, int64_t timeoutMs,
              std::function<void(const Status&)> settle, std::function<void()> release);
  // `iterations` back-to-back runs of `calls` between two timing events on the
  // communicator's stream; settles with the GPU time they took (ms), measured
  // with cuEventElapsedTime (BackendUnavailable where the driver lacks it).
  void submitTimed(std::vector<NcclCall> calls, std::string name, int iterations, int64_t timeoutMs,
                   std::function<void(const Status&, double ms)> settle, std::function<void()> release);
  // Also interrupts a communicator still being made (ncclCommInitRankConfig in progress).
  void abort(const Status& reason);
  void destroy();
  Status failure() { return worker_->failure(); }
  // The NCCL handle (null before it is made, after a failure, or for a NOCOLOR split).
  ncclComm_t handle() const { return comm_; }

 private:
  Status start(CUstream stream);
  // Poll ncclCommGetAsyncError until the communicator leaves ncclInProgress.
  // `interruptible`: an abort()/destroy() requested meanwhile ends the wait with its reason.
  Status settle(ncclResult_t r, const char* what, std::chrono::steady_clock::time_point deadline,
                bool interruptible = false, ncclComm_t polled = nullptr);
  Status abortReason();
  // Enqueue `calls` (one NCCL group when several or p2p) and wait until NCCL took them.
  Status issueCalls(const std::vector<NcclCall>& calls, const std::string& name, CUstream stream,
                    std::chrono::steady_clock::time_point deadline);

  NcclCommOptions options_;
  ncclComm_t comm_ = nullptr;
  std::atomic<bool> abortRequested_{false};
  std::mutex abortMutex_;
  Status abortReason_;
  std::unique_ptr<StreamWorker> worker_;
};

}  // namespace ringtree::cuda
