// A vendor library loaded at run time with dlopen (DESIGN.md: nothing from
// CUDA is linked, so one binary serves GPU hosts and GPU-less ones): the CUDA
// driver, NCCL and cuBLASLt. Candidates are tried in order, once per process;
// every failed candidate leaves a line in attempts() for the error message
// and for `ringtree doctor`.
#pragma once

#include <mutex>
#include <string>
#include <vector>

#include "core/status.h"

namespace ringtree::cuda {

class DynamicLibrary {
 public:
  virtual ~DynamicLibrary() = default;

  bool loaded() const { return loaded_; }
  const std::string& path() const { return path_; }
  const std::vector<std::string>& attempts() const { return attempts_; }

 protected:
  // Idempotent: the first call tries the candidates (tryLoad, then
  // afterLoad for the winner) and later calls return its result. None
  // loading: BackendUnavailable, "<notFound> Tried:" and the attempts.
  Status loadOnce(const std::vector<std::string>& candidates, const std::string& notFound, const char* remedy);
  // One candidate: open it, resolve its entry points, set path_. False
  // (with a line in attempts_) when it does not qualify.
  virtual bool tryLoad(const std::string& candidate) = 0;
  // The chosen library's first call (cuInit); its failure is load()'s.
  virtual Status afterLoad() { return Status::ok(); }

  // dlopen(file), or null with "<file>: <dlerror>" in attempts_.
  void* open(const std::string& file);
  // An entry point into `field`; a missing one is added to `missing`.
  template <class Fn>
  static void bind(Fn& field, void* symbol, const char* name, std::string& missing) {
    field = reinterpret_cast<Fn>(symbol);
    if (!field) missing += (missing.empty() ? "" : ", ") + std::string(name);
  }
  // The file `symbol` was loaded from (dladdr: dlinfo needs glibc 2.34 and
  // the prebuild's floor is 2.28), else `fallback`.
  static std::string fileOf(void* symbol, const std::string& fallback);

  std::string path_;
  std::vector<std::string> attempts_;

 private:
  std::mutex mutex_;
  bool attempted_ = false;
  bool loaded_ = false;
  Status result_;
};

}  // namespace ringtree::cuda
