#include "cpu/gemm/GemmWorker.h"

#include <cstdio>
#include <exception>
#include <system_error>

#include "cpu/gemm/GemmRunner.h"

namespace ringtree {

GemmWorker::GemmWorker(Completion onComplete) : onComplete_(std::move(onComplete)) {}

GemmWorker::~GemmWorker() { stop(); }

Status GemmWorker::submit(uint64_t id, const GemmDesc& desc) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (stopping_) return Status(StatusCode::Aborted, "gemm: the GEMM worker has stopped (environment shutting down)");
  if (!thread_.joinable()) {
    try {
      thread_ = std::thread(&GemmWorker::run, this);
    } catch (const std::system_error& e) {
      return Status(StatusCode::Internal, std::string("gemm: cannot start the GEMM thread: ") + e.what());
    }
  }
  try {
    queue_.push_back(Job{id, desc});
  } catch (const std::bad_alloc&) {
    return Status(StatusCode::Internal, "gemm: out of memory queueing the job");
  }
  wake_.notify_one();
  return Status::ok();
}

void GemmWorker::stop() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
    queue_.clear();
  }
  wake_.notify_one();
  if (thread_.joinable()) thread_.join();
}

void GemmWorker::run() {
  // Thread entry: nothing may escape (an exception here would terminate the process).
  try {
    for (;;) {
      Job job;
      {
        std::unique_lock<std::mutex> lock(mutex_);
        wake_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
        if (stopping_) return;
        job = queue_.front();
        queue_.pop_front();
      }
      // Per job, so one failure still settles that job and the rest run.
      Status status;
      try {
        status = runGemm(job.desc);
      } catch (const std::exception& e) {
        status = Status(StatusCode::Internal, std::string("gemm: ") + e.what());
      } catch (...) {
        status = Status(StatusCode::Internal, "gemm: unknown exception");
      }
      onComplete_(job.id, status);
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "ringtree: the GEMM thread failed: %s\n", e.what());
  } catch (...) {
    std::fprintf(stderr, "ringtree: the GEMM thread failed with an unknown exception\n");
  }
}

}  // namespace ringtree
