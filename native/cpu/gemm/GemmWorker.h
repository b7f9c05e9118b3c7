// The native thread asynchronous GEMMs run on, with its FIFO queue. Never
// the libuv pool: a long GEMM there would stall fs, dns and zlib work (and
// the pool has only 4 threads). One worker per Node environment; jobs run
// one at a time, in submission order (the BLAS parallelizes each one).
//
// GEMM does not order against collectives: a communicator's progress
// thread and this worker run concurrently, so the same arrays must not be
// handed to both until the first operation has settled.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>

#include "core/status.h"
#include "cpu/gemm/GemmDesc.h"

namespace ringtree {

class GemmWorker {
 public:
  // Called on the worker thread after each job, exactly once per submitted id
  // (unless stop() discards the job first).
  using Completion = std::function<void(uint64_t id, const Status& status)>;

  explicit GemmWorker(Completion onComplete);
  ~GemmWorker();
  GemmWorker(const GemmWorker&) = delete;
  GemmWorker& operator=(const GemmWorker&) = delete;

  // Queue a job; starts the thread on first use. Returns an error status
  // (and completes nothing) when the thread cannot start or the worker stopped.
  Status submit(uint64_t id, const GemmDesc& desc);

  // Finish the running job, discard the queued ones (their completions never
  // run), join the thread. Idempotent.
  void stop();

 private:
  struct Job {
    uint64_t id = 0;
    GemmDesc desc;
  };
  void run();

  Completion onComplete_;
  std::mutex mutex_;
  std::condition_variable wake_;
  std::deque<Job> queue_;
  std::thread thread_;
  bool stopping_ = false;
};

}  // namespace ringtree
