// One CUDA stream driven by one native thread. Work is issued on the thread,
// an event is recorded after it, and completion is polled (spin, then sleep)
// against each op's deadline: nothing ever waits without a bound. A deadline,
// an error or abort() makes the worker fatal: its hook (e.g. ncclCommAbort)
// runs once and every pending op fails with the same status.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "core/status.h"
#include "cuda/CudaApi.h"

namespace ringtree::cuda {

struct GpuOp {
  std::string name;
  int64_t timeoutMs = 300000;
  // Runs on the worker thread: enqueue async work on `stream`. A non-Ok
  // InvalidArgument fails only this op; any other error is fatal unless
  // `issueFailureIsLocal` says a failed issue() queued nothing.
  std::function<Status(CUstream stream)> issue;
  // A library call that validates before it launches (cuBLAS) fails without
  // touching the stream: such a failure rejects this op, not the worker.
  bool issueFailureIsLocal = false;
  // Called exactly once on the worker thread when the op settles.
  std::function<void(const Status&)> settle;
  // Called exactly once, after settle, when the GPU will never touch the op's
  // memory again (its event completed, or the worker shut down).
  std::function<void()> release;
};

class StreamWorker {
 public:
  struct Hooks {
    // Polled while ops are in flight; a non-Ok status is fatal (ncclCommGetAsyncError).
    std::function<Status()> poll;
    // Runs once on the worker thread when the worker turns fatal (ncclCommAbort).
    std::function<void(const Status&)> onFatal;
    // Runs on the worker thread before the loop (e.g. NCCL communicator set-up).
    std::function<Status(CUstream)> start;
    // Runs on the worker thread after the loop ends, before the stream is destroyed.
    std::function<void(bool fatal)> stop;
  };

  // Starts the thread; the stream is made on it. Hooks may be empty.
  StreamWorker(int device, std::string name, Hooks hooks);
  ~StreamWorker();

  void post(GpuOp op);
  // Make the worker fatal with `reason` (from any thread); pending ops fail with it.
  void fail(const Status& reason);
  // Stop the thread: pending ops fail with Aborted (or the earlier failure).
  void shutdown();
  Status failure();
  int device() const { return device_; }
  uint64_t submitted() const { return submitted_.load(); }
  uint64_t completed() const { return completed_.load(); }

 private:
  struct InFlight {
    GpuOp op;
    CUevent event = nullptr;
    std::chrono::steady_clock::time_point deadline;
    bool settled = false;
  };
  void run();
  void goFatal(const Status& s);
  void settleAll(const Status& s);

  const int device_;
  const std::string name_;
  Hooks hooks_;
  std::mutex mutex_;
  std::condition_variable cv_;
  std::deque<GpuOp> queue_;
  bool stopping_ = false;
  Status requestedFailure_;
  Status failure_;
  std::deque<InFlight> inFlight_;  // worker thread only
  CUstream stream_ = nullptr;
  std::atomic<uint64_t> submitted_{0}, completed_{0};
  std::thread thread_;
};

}  // namespace ringtree::cuda
