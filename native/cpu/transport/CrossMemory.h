// Linux cross-memory attach: one kernel copy from another process's memory
// (process_vm_readv), the single-copy path Open MPI's vader BTL takes for
// large messages between processes of one host. Through shared-memory slots
// every byte is copied twice (sender into the slot, receiver out of it).
#pragma once

#include <errno.h>
#include <sys/uio.h>

#include <cstdint>
#include <cstring>
#include <string>

#include "core/status.h"

namespace ringtree {

// What a rank publishes so that peers can read one of its buffers.
struct DirectBuffer {
  uint64_t address;
  uint64_t bytes;
};

// The word peers read to test that process_vm_readv works between us.
constexpr uint64_t kCrossMemoryMagic = 0x434d415052424f45ULL;

// Copies `bytes` at `remote` in process `pid` (rank `peer`) to `dst`.
inline Status readCrossMemory(int pid, int peer, uint64_t remote, void* dst, size_t bytes) {
  char* d = static_cast<char*>(dst);
  while (bytes > 0) {
    iovec local{d, bytes};
    iovec far{reinterpret_cast<void*>(remote), bytes};
    ssize_t got = process_vm_readv(pid, &local, 1, &far, 1, 0);
    if (got <= 0) {
      if (got < 0 && errno == EINTR) continue;
      const int e = got < 0 ? errno : EIO;
      if (e == ESRCH)
        return Status(StatusCode::PeerLost,
                      "rank " + std::to_string(peer) + " (pid " + std::to_string(pid) +
                          ") exited while this rank was reading its buffer",
                      "Check rank " + std::to_string(peer) + "'s own output for why it exited; restart the job.", peer);
      return Status(StatusCode::Internal,
                    "reading rank " + std::to_string(peer) + "'s buffer with process_vm_readv failed: " + strerror(e),
                    "Set RINGTREE_CROSS_MEMORY=0 to move bytes through shared-memory slots instead.", peer);
    }
    d += got;
    remote += uint64_t(got);
    bytes -= size_t(got);
  }
  return Status::ok();
}

}  // namespace ringtree
