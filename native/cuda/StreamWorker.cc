#include "cuda/StreamWorker.h"

#include "cuda/CudaDriver.h"

namespace ringtree::cuda {

using Clock = std::chrono::steady_clock;

StreamWorker::StreamWorker(int device, std::string name, Hooks hooks)
    : device_(device), name_(std::move(name)), hooks_(std::move(hooks)) {
  thread_ = std::thread([this] { run(); });
}

StreamWorker::~StreamWorker() { shutdown(); }

void StreamWorker::post(GpuOp op) {
  submitted_++;
  {
    std::lock_guard<std::mutex> lk(mutex_);
    if (!stopping_) {
      queue_.push_back(std::move(op));
      cv_.notify_one();
      return;
    }
  }
  // Already stopped: settle here, the thread is gone.
  Status s = failure();
  if (s.isOk()) s = Status(StatusCode::Aborted, "the " + name_ + " was destroyed");
  op.settle(s);
  op.release();
  completed_++;
}

void StreamWorker::fail(const Status& reason) {
  std::lock_guard<std::mutex> lk(mutex_);
  if (requestedFailure_.isOk()) requestedFailure_ = reason;
  cv_.notify_one();
}

Status StreamWorker::failure() {
  std::lock_guard<std::mutex> lk(mutex_);
  return failure_;
}

void StreamWorker::shutdown() {
  {
    std::lock_guard<std::mutex> lk(mutex_);
    stopping_ = true;
    cv_.notify_one();
  }
  if (thread_.joinable()) thread_.join();
}

void StreamWorker::settleAll(const Status& s) {
  for (InFlight& f : inFlight_) {
    if (!f.settled) {
      f.settled = true;
      f.op.settle(s);
      completed_++;
    }
  }
}

void StreamWorker::goFatal(const Status& s) {
  {
    std::lock_guard<std::mutex> lk(mutex_);
    if (!failure_.isOk()) return;
    failure_ = s;
  }
  // Abort first (NCCL kernels stop, so the events below complete), then settle.
  if (hooks_.onFatal) hooks_.onFatal(s);
  settleAll(s);
}

void StreamWorker::run() {
  CudaDriver& cu = CudaDriver::instance();
  Status s = cu.makeCurrent(device_);
  if (s.isOk()) s = cu.check(cu.cuStreamCreate(&stream_, CU_STREAM_NON_BLOCKING), "cuStreamCreate");
  if (s.isOk() && hooks_.start) s = hooks_.start(stream_);
  if (!s.isOk()) {
    std::lock_guard<std::mutex> lk(mutex_);
    failure_ = s;
  }
  int idleSpins = 0;
  for (;;) {
    std::deque<GpuOp> fresh;
    Status requested;
    bool stopping;
    {
      std::unique_lock<std::mutex> lk(mutex_);
      if (queue_.empty() && inFlight_.empty() && !stopping_ && requestedFailure_.isOk()) {
        cv_.wait(lk, [&] { return !queue_.empty() || stopping_ || !requestedFailure_.isOk(); });
      }
      fresh.swap(queue_);
      requested = requestedFailure_;
      stopping = stopping_;
    }
    if (!requested.isOk()) goFatal(requested);
    Status failed = failure();
    for (GpuOp& op : fresh) {
      if (!failed.isOk()) {
        op.settle(failed);
        op.release();
        completed_++;
        continue;
      }
      InFlight f;
      f.deadline = Clock::now() + std::chrono::milliseconds(op.timeoutMs);
      Status is = op.issue(stream_);
      if (is.isOk()) is = cu.check(cu.cuEventCreate(&f.event, CU_EVENT_DISABLE_TIMING), "cuEventCreate");
      if (is.isOk()) is = cu.check(cu.cuEventRecord(f.event, stream_), "cuEventRecord");
      f.op = std::move(op);
      if (!is.isOk()) {
        if ((is.code() == StatusCode::InvalidArgument || f.op.issueFailureIsLocal) && !f.event) {
          f.op.settle(is);
          f.op.release();
          completed_++;
          continue;
        }
        // Work may be queued before the failure: keep it until the stream drains.
        inFlight_.push_back(std::move(f));
        goFatal(is);
        failed = failure();
        continue;
      }
      inFlight_.push_back(std::move(f));
    }
    // Completions, in stream order.
    bool progressed = !fresh.empty();
    while (!inFlight_.empty()) {
      InFlight& head = inFlight_.front();
      CUresult q = head.event ? cu.cuEventQuery(head.event) : CUDA_SUCCESS;
      if (q == CUDA_ERROR_NOT_READY) break;
      if (q != CUDA_SUCCESS) goFatal(cu.check(q, ("completion of " + head.op.name).c_str()));
      if (!head.settled) {
        head.settled = true;
        head.op.settle(Status::ok());
        completed_++;
      }
      if (head.event) cu.cuEventDestroy(head.event);
      head.op.release();
      inFlight_.pop_front();
      progressed = true;
    }
    if (!inFlight_.empty() && failure().isOk()) {
      if (hooks_.poll) {
        Status p = hooks_.poll();
        if (!p.isOk()) goFatal(p);
      }
      const auto now = Clock::now();
      for (InFlight& f : inFlight_) {
        if (!f.settled && now > f.deadline) {
          goFatal(Status(StatusCode::Timeout,
                         f.op.name + " did not complete on GPU " + std::to_string(device_) + " within " +
                             std::to_string(f.op.timeoutMs) + " ms; the " + name_ + " was aborted"));
          break;
        }
      }
    }
    if (stopping) {
      // A graceful stop fails what is still pending, aborting NCCL first so
      // that the stream drains; then the events are waited out, bounded.
      if (!inFlight_.empty()) goFatal(Status(StatusCode::Aborted, "the " + name_ + " was destroyed with work pending"));
      const auto limit = Clock::now() + std::chrono::seconds(10);
      while (!inFlight_.empty()) {
        InFlight& head = inFlight_.front();
        if (head.event) {
          while (cu.cuEventQuery(head.event) == CUDA_ERROR_NOT_READY && Clock::now() < limit) {
            std::this_thread::sleep_for(std::chrono::microseconds(200));
          }
          cu.cuEventDestroy(head.event);
        }
        head.op.release();
        inFlight_.pop_front();
      }
      break;
    }
    if (inFlight_.empty()) {
      idleSpins = 0;
      continue;
    }
    // Spin briefly (a GPU op often finishes within microseconds), then sleep.
    if (progressed) idleSpins = 0;
    if (++idleSpins < 200) {
      std::this_thread::yield();
    } else {
      std::unique_lock<std::mutex> lk(mutex_);
      cv_.wait_for(lk, std::chrono::microseconds(idleSpins < 2000 ? 50 : 500));
    }
  }
  if (hooks_.stop) hooks_.stop(!failure().isOk());
  if (stream_) cu.cuStreamDestroy(stream_);
}

}  // namespace ringtree::cuda
