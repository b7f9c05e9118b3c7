// One POSIX shared-memory segment: created and reserved once per communicator
// by one rank, mapped by the others, and unlinked as soon as every rank has
// mapped it, so a SIGKILLed job leaves nothing in /dev/shm.
#pragma once

#include <cstdint>
#include <string>

#include "core/status.h"

namespace ringtree {

class ShmSegment {
 public:
  ShmSegment() = default;
  ~ShmSegment();
  ShmSegment(const ShmSegment&) = delete;
  ShmSegment& operator=(const ShmSegment&) = delete;

  // Creates `name` (O_EXCL), reserves `bytes` with posix_fallocate so a full
  // /dev/shm fails here as a typed error instead of a SIGBUS later, and maps it.
  Status create(const std::string& name, uint64_t bytes);
  // Opens and maps an existing segment of at least `bytes`, all of it.
  Status open(const std::string& name, uint64_t bytes);
  // Removes the name; the mapping stays valid. Idempotent.
  void unlink();
  void unmap();

  void* base() const { return base_; }
  uint64_t bytes() const { return bytes_; }

 private:
  Status map(int fd, uint64_t bytes);
  std::string name_;
  void* base_ = nullptr;
  uint64_t bytes_ = 0;
  bool unlinked_ = false;
};

}  // namespace ringtree
