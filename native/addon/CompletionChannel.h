// Completions from worker threads (the CPU engine, the GEMM worker, the GPU
// stream workers) to the JS thread: a queue under a mutex, and one call of a
// thread-safe function per batch, made after that mutex is released.
//
// With every core busy, the woken JS thread lands on the signalling thread's
// core and preempts it at once. Signalling inside our mutex (as the three
// copies of this code before it did) made the JS thread block on that mutex
// straight away, a context switch each way, and handing over completions one
// by one did it per completion even where the engine had 40 of them at once
// (2 ranks on 2 cores, 1 MiB all-gather, 500 in flight: 1.2-2.5 wake-ups of
// the JS thread per op; 0.02 with postMany outside the lock).
#pragma once

#include <napi.h>

#include <atomic>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <utility>
#include <vector>

namespace ringtree::addon {

template <typename Event>
class CompletionChannel {
 public:
  // Runs on the JS thread with the events queued so far, inside a handle
  // scope and a callback scope (Promise reactions run when it returns).
  using Deliver = std::function<void(Napi::Env, std::vector<Event>&)>;

  // JS thread. The channel starts unreferenced: it keeps the process alive
  // only between ref() and unref().
  CompletionChannel(Napi::Env env, const char* name, Deliver deliver) : core_(std::make_shared<Core>()) {
    core_->env = env;
    core_->deliver = std::move(deliver);
    tsfn_ = Napi::ThreadSafeFunction::New(env, Napi::Function::New(env, [](const Napi::CallbackInfo&) {}), name, 0, 1);
    tsfn_.Unref(env);
  }

  CompletionChannel(const CompletionChannel&) = delete;
  CompletionChannel& operator=(const CompletionChannel&) = delete;

  // JS thread.
  ~CompletionChannel() { close(); }

  // Any thread. Events posted after close() are dropped.
  void post(Event e) {
    bool signal;
    {
      std::lock_guard<std::mutex> lk(core_->mutex);
      if (!core_->live) return;
      core_->events.push_back(std::move(e));
      signal = beginSignalLocked();
    }
    if (signal) endSignal();
  }

  // Any thread: several events, one signal at most.
  template <typename It>
  void postMany(It first, It last) {
    if (first == last) return;
    bool signal;
    {
      std::lock_guard<std::mutex> lk(core_->mutex);
      if (!core_->live) return;
      for (; first != last; ++first) core_->events.push_back(*first);
      signal = beginSignalLocked();
    }
    if (signal) endSignal();
  }

  // JS thread: keep the process alive (pending work) or not.
  void ref() {
    if (core_->live) tsfn_.Ref(core_->env);
  }
  void unref() {
    if (core_->live) tsfn_.Unref(core_->env);
  }

  // JS thread, from a JS call (a handle scope is open): deliver what is
  // queued now, without waiting for the signal.
  void drainNow() { drain(*core_); }

  // JS thread. Later posts are dropped, and so are signals still queued in
  // the thread-safe function; one being made finishes first (it takes
  // microseconds), then the thread-safe function is released.
  void close() {
    {
      std::lock_guard<std::mutex> lk(core_->mutex);
      if (!core_->live) return;
      core_->live = false;
      core_->events.clear();
    }
    while (core_->signalling.load(std::memory_order_acquire) != 0) std::this_thread::yield();
    tsfn_.Release();
  }

 private:
  // Shared with the signals queued in the thread-safe function, which may be
  // called after the channel (and its owner) are gone.
  struct Core {
    Napi::Env env = nullptr;
    Deliver deliver;
    std::mutex mutex;
    std::vector<Event> events;
    bool scheduled = false;
    bool live = true;
    std::atomic<int> signalling{0};
  };

  static void drain(Core& c) {
    std::vector<Event> batch;
    {
      std::lock_guard<std::mutex> lk(c.mutex);
      if (!c.live) return;
      batch.swap(c.events);
      c.scheduled = false;
    }
    if (!batch.empty()) c.deliver(c.env, batch);
  }

  // core_->mutex held: whether this post must signal (the first since the
  // last delivery); if so, counts the signal in flight for close().
  bool beginSignalLocked() {
    if (core_->scheduled) return false;
    core_->scheduled = true;
    core_->signalling.fetch_add(1, std::memory_order_acq_rel);
    return true;
  }

  void endSignal() {
    tsfn_.NonBlockingCall([core = core_](Napi::Env, Napi::Function) { drain(*core); });
    core_->signalling.fetch_sub(1, std::memory_order_acq_rel);
  }

  std::shared_ptr<Core> core_;
  Napi::ThreadSafeFunction tsfn_;
};

}  // namespace ringtree::addon
