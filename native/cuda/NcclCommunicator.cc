#include "cuda/NcclCommunicator.h"

#include <cstdlib>
#include <mutex>
#include <thread>

#include "cuda/CudaDriver.h"
#include "cuda/NcclLibrary.h"

namespace ringtree::cuda {

using Clock = std::chrono::steady_clock;

namespace {
// NCCL reads NCCL_ALGO while a communicator is being made; the algorithm is
// fixed per communicator by setting it under this lock and restoring it after.
std::mutex& algoEnvMutex() {
  static std::mutex* m = new std::mutex();
  return *m;
}
}  // namespace

NcclCommunicator::NcclCommunicator(const NcclCommOptions& options) : options_(options) {
  StreamWorker::Hooks hooks;
  hooks.start = [this](CUstream s) { return start(s); };
  hooks.poll = [this]() -> Status {
    if (!comm_) return Status::ok();  // a NOCOLOR split: no communicator (and no ops) here
    NcclLibrary& nccl = NcclLibrary::instance();
    ncclResult_t state = ncclSuccess;
    ncclResult_t r = nccl.commGetAsyncError(comm_, &state);
    if (r != ncclSuccess) return nccl.check(r, "ncclCommGetAsyncError", comm_);
    if (state != ncclSuccess && state != ncclInProgress) {
      Status s = nccl.check(state, "NCCL (asynchronous error)", comm_);
      return s.code() == StatusCode::InvalidArgument ? Status(StatusCode::Internal, s.message()) : s;
    }
    return Status::ok();
  };
  hooks.onFatal = [this](const Status&) {
    if (comm_) {
      NcclLibrary::instance().commAbort(comm_);
      comm_ = nullptr;
    }
  };
  hooks.stop = [this](bool) {
    if (!comm_) return;
    // Graceful: finalize (bounded) then destroy; abort when finalize does not finish.
    NcclLibrary& nccl = NcclLibrary::instance();
    Status s = settle(nccl.commFinalize(comm_), "ncclCommFinalize", Clock::now() + std::chrono::seconds(10));
    if (s.isOk()) nccl.commDestroy(comm_);
    else nccl.commAbort(comm_);
    comm_ = nullptr;
  };
  worker_ = std::make_unique<StreamWorker>(options.device, "NCCL communicator", std::move(hooks));
}

NcclCommunicator::~NcclCommunicator() { destroy(); }

void NcclCommunicator::abort(const Status& reason) {
  {
    std::lock_guard<std::mutex> lk(abortMutex_);
    if (abortReason_.isOk()) abortReason_ = reason;
  }
  abortRequested_.store(true);
  worker_->fail(reason);
}

void NcclCommunicator::destroy() {
  {
    std::lock_guard<std::mutex> lk(abortMutex_);
    if (abortReason_.isOk()) abortReason_ = Status(StatusCode::Aborted, "the NCCL communicator was destroyed while it was being made");
  }
  abortRequested_.store(true);
  worker_->shutdown();
}

Status NcclCommunicator::abortReason() {
  std::lock_guard<std::mutex> lk(abortMutex_);
  return abortReason_;
}

Status NcclCommunicator::settle(ncclResult_t r, const char* what, Clock::time_point deadline, bool interruptible,
                                ncclComm_t polled) {
  NcclLibrary& nccl = NcclLibrary::instance();
  ncclComm_t target = polled ? polled : comm_;
  int spins = 0;
  while (r == ncclInProgress) {
    // ncclCommAbort may be called on a communicator still in ncclInProgress:
    // the caller (start) aborts it when this returns an error.
    if (interruptible && abortRequested_.load()) return abortReason();
    if (Clock::now() > deadline) {
      return Status(StatusCode::Timeout, std::string(what) + " was still in progress at its deadline");
    }
    ncclResult_t state = ncclSuccess;
    ncclResult_t q = nccl.commGetAsyncError(target, &state);
    if (q != ncclSuccess) return nccl.check(q, "ncclCommGetAsyncError", target);
    r = state;
    if (r == ncclInProgress) {
      if (++spins < 100) std::this_thread::yield();
      else std::this_thread::sleep_for(std::chrono::microseconds(spins < 1000 ? 20 : 500));
    }
  }
  return nccl.check(r, what, target);
}

Status NcclCommunicator::start(CUstream) {
  NcclLibrary& nccl = NcclLibrary::instance();
  ncclConfig_t config = ncclConfigInitializer();
  config.blocking = 0;  // non-blocking: ncclCommAbort can always interrupt us
  const auto deadline = Clock::now() + std::chrono::milliseconds(options_.initTimeoutMs);
  std::lock_guard<std::mutex> lk(algoEnvMutex());
  const char* old = std::getenv("NCCL_ALGO");
  std::string saved = old ? old : "";
  if (!options_.algorithm.empty()) setenv("NCCL_ALGO", options_.algorithm.c_str(), 1);
  Status s;
  if (options_.parent) {
    // Collective over the parent's ranks; the parent is idle (JS orders it).
    ncclComm_t parent = options_.parent->handle();
    if (!parent) {
      s = Status(StatusCode::Aborted, "the parent NCCL communicator is not usable (failed or destroyed)");
    } else {
      // Non-blocking NCCL publishes the new communicator from its own thread
      // when the split job finishes (measured with NCCL 2.28.9: still NULL when
      // the parent already reports success), so it is written to a cell that
      // outlives us if we give up first (leaked then, 8 bytes).
      auto* cell = new ncclComm_t(nullptr);
      ncclResult_t r = nccl.commSplit(parent, options_.splitColor, options_.splitKey, cell, &config);
      s = r == ncclSuccess || r == ncclInProgress ? Status::ok() : nccl.check(r, "ncclCommSplit", parent);
      if (s.isOk() && options_.splitColor >= 0) {
        ncclComm_t made = nullptr;
        for (int spins = 0; s.isOk() && !(made = __atomic_load_n(cell, __ATOMIC_ACQUIRE)); spins++) {
          if (abortRequested_.load()) s = abortReason();
          else if (Clock::now() > deadline) s = Status(StatusCode::Timeout, "ncclCommSplit was still in progress at its deadline");
          else {
            ncclResult_t state = ncclSuccess;
            ncclResult_t q = nccl.commGetAsyncError(parent, &state);
            if (q != ncclSuccess) s = nccl.check(q, "ncclCommGetAsyncError", parent);
            else if (state != ncclSuccess && state != ncclInProgress) s = nccl.check(state, "ncclCommSplit", parent);
            else std::this_thread::sleep_for(std::chrono::microseconds(spins < 100 ? 20 : 200));
          }
        }
        comm_ = made;
        // Then the new communicator's own state, until it leaves ncclInProgress,
        // and the parent's: non-blocking NCCL refuses the parent's next call
        // ("Attempt to use communicator before the previous operation returned
        // ncclSuccess") until its split job reported ncclSuccess (seen once in
        // 1102 checks on an H200 with NCCL 2.28.9).
        if (s.isOk()) s = settle(ncclInProgress, "ncclCommSplit", deadline, true);
        if (s.isOk()) s = settle(ncclInProgress, "ncclCommSplit (the parent's state)", deadline, true, parent);
      } else if (s.isOk()) {
        // NOCOLOR: the parent's state, polled even when the call said
        // ncclSuccess (its split job may still be running on NCCL's thread).
        s = settle(ncclInProgress, "ncclCommSplit", deadline, true, parent);
      }
      if (comm_) delete cell;  // published and read; otherwise NCCL may still write it
    }
  } else {
    ncclResult_t r = nccl.commInitRankConfig(&comm_, options_.size, options_.id, options_.rank, &config);
    s = comm_ || r == ncclSuccess || r == ncclInProgress ? settle(ncclInProgress, "ncclCommInitRankConfig", deadline, true)
                                                         : nccl.check(r, "ncclCommInitRankConfig", nullptr);
  }
  if (!options_.algorithm.empty()) {
    if (old) setenv("NCCL_ALGO", saved.c_str(), 1);
    else unsetenv("NCCL_ALGO");
  }
  if (!s.isOk()) {
    if (comm_) nccl.commAbort(comm_);
    comm_ = nullptr;
    if (s.code() == StatusCode::Timeout) {
      return Status(StatusCode::Timeout, "making the NCCL communicator did not finish within " +
                                             std::to_string(options_.initTimeoutMs) + " ms",
                    "Every rank must make its first device-array call (or init({ backend: 'nccl' })) together.");
    }
    if (abortRequested_.load()) return abortReason();
    return Status(s.code() == StatusCode::InvalidArgument ? StatusCode::BackendUnavailable : s.code(),
                  "cannot make the NCCL communicator: " + s.message(), s.remedy());
  }
  return Status::ok();
}

Status NcclCommunicator::issueCalls(const std::vector<NcclCall>& calls, const std::string& name, CUstream stream,
                                    Clock::time_point deadline) {
  NcclLibrary& nccl = NcclLibrary::instance();
  const bool group = calls.size() > 1 || (calls.size() == 1 && (calls[0].kind == NcclCall::Send || calls[0].kind == NcclCall::Recv));
  if (calls.empty()) return Status::ok();
  if (group) RT_CHECK(settle(nccl.groupStart(), "ncclGroupStart", deadline));
  for (const NcclCall& c : calls) {
    const void* sb = reinterpret_cast<const void*>(c.send);
    void* rb = reinterpret_cast<void*>(c.recv);
    ncclResult_t r = ncclSuccess;
    switch (c.kind) {
      case NcclCall::AllReduce: r = nccl.allReduce(sb, rb, c.count, c.dtype, c.op, comm_, stream); break;
      case NcclCall::ReduceScatter: r = nccl.reduceScatter(sb, rb, c.count, c.dtype, c.op, comm_, stream); break;
      case NcclCall::AllGather: r = nccl.allGather(sb, rb, c.count, c.dtype, comm_, stream); break;
      case NcclCall::Broadcast: r = nccl.broadcast(sb, rb, c.count, c.dtype, c.root, comm_, stream); break;
      case NcclCall::Reduce: r = nccl.reduce(sb, rb, c.count, c.dtype, c.op, c.root, comm_, stream); break;
      case NcclCall::Send: r = nccl.send(sb, c.count, c.dtype, c.root, comm_, stream); break;
      case NcclCall::Recv: r = nccl.recv(rb, c.count, c.dtype, c.root, comm_, stream); break;
    }
    // Inside a group the calls only record; the group end enqueues.
    if (group && r == ncclInProgress) continue;
    Status s = settle(r, name.c_str(), deadline);
    if (!s.isOk()) {
      if (group) nccl.groupEnd();
      return s;
    }
  }
  if (group) RT_CHECK(settle(nccl.groupEnd(), "ncclGroupEnd", deadline));
  return Status::ok();
}

void NcclCommunicator::submit(std::vector<NcclCall> calls, std::string name, int64_t timeoutMs,
                              std::function<void(const Status&)> settleFn, std::function<void()> release) {
  GpuOp op;
  op.name = name;
  op.timeoutMs = timeoutMs;
  op.settle = std::move(settleFn);
  op.release = std::move(release);
  op.issue = [this, calls = std::move(calls), timeoutMs, name](CUstream stream) -> Status {
    return issueCalls(calls, name, stream, Clock::now() + std::chrono::milliseconds(timeoutMs));
  };
  worker_->post(std::move(op));
}

void NcclCommunicator::submitTimed(std::vector<NcclCall> calls, std::string name, int iterations, int64_t timeoutMs,
                                   std::function<void(const Status&, double)> settleFn, std::function<void()> release) {
  struct Timing {
    CUevent start = nullptr;
    CUevent end = nullptr;
    ~Timing() {
      CudaDriver& cu = CudaDriver::instance();
      if (start) cu.cuEventDestroy(start);
      if (end) cu.cuEventDestroy(end);
    }
  };
  auto timing = std::make_shared<Timing>();
  GpuOp op;
  op.name = name;
  op.timeoutMs = timeoutMs;
  // Settles on the worker thread after the op's own completion event, which
  // follows `end` on the stream: both timing events are complete by then.
  op.settle = [timing, settleFn = std::move(settleFn)](const Status& s) {
    if (!s.isOk()) return settleFn(s, 0);
    CudaDriver& cu = CudaDriver::instance();
    float ms = 0;
    Status t = cu.check(cu.cuEventElapsedTime(&ms, timing->start, timing->end), "cuEventElapsedTime");
    settleFn(t, t.isOk() ? double(ms) : 0);
  };
  // The events are destroyed when the worker lets go of the op (after settle).
  op.release = [timing, release = std::move(release)]() mutable {
    timing.reset();
    release();
  };
  op.issue = [this, timing, calls = std::move(calls), timeoutMs, name, iterations](CUstream stream) -> Status {
    CudaDriver& cu = CudaDriver::instance();
    if (!cu.cuEventElapsedTime) {
      return Status(StatusCode::InvalidArgument, "this CUDA driver has no cuEventElapsedTime: timed runs are unavailable");
    }
    const auto deadline = Clock::now() + std::chrono::milliseconds(timeoutMs);
    RT_CHECK(cu.check(cu.cuEventCreate(&timing->start, CU_EVENT_DEFAULT), "cuEventCreate"));
    RT_CHECK(cu.check(cu.cuEventCreate(&timing->end, CU_EVENT_DEFAULT), "cuEventCreate"));
    RT_CHECK(cu.check(cu.cuEventRecord(timing->start, stream), "cuEventRecord"));
    for (int i = 0; i < iterations; i++) RT_CHECK(issueCalls(calls, name, stream, deadline));
    return cu.check(cu.cuEventRecord(timing->end, stream), "cuEventRecord");
  };
  worker_->post(std::move(op));
}

}  // namespace ringtree::cuda
