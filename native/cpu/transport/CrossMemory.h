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
  // A 2-rank broadcast's root: it writes the reader's output from this byte
  // on itself, where the reader published its output's address (0: it
  // writes nothing). Every other publish: 0.
  uint64_t rootWritesFrom = 0;
};

// The word peers read to test that process_vm_readv works between us.
constexpr uint64_t kCrossMemoryMagic = 0x434d415052424f45ULL;

// Copies `bytes` between `local` in this process and `remote` in process
// `pid` (rank `peer`): from there to here (process_vm_readv), or from here
// to there where `write` (process_vm_writev; the same ptrace permission).
inline Status copyCrossMemory(int pid, int peer, uint64_t remote, void* local, size_t bytes, bool write) {
  char* d = static_cast<char*>(local);
  while (bytes > 0) {
    iovec here{d, bytes};
    iovec far{reinterpret_cast<void*>(remote), bytes};
    ssize_t got = write ? process_vm_writev(pid, &here, 1, &far, 1, 0) : process_vm_readv(pid, &here, 1, &far, 1, 0);
    if (got <= 0) {
      if (got < 0 && errno == EINTR) continue;
      const int e = got < 0 ? errno : EIO;
      const char* what = write ? "writing into" : "reading";
      if (e == ESRCH)
        return Status(StatusCode::PeerLost,
                      "rank " + std::to_string(peer) + " (pid " + std::to_string(pid) + ") exited while this rank was " +
                          what + " its buffer",
                      "Check rank " + std::to_string(peer) + "'s own output for why it exited; restart the job.", peer);
      return Status(StatusCode::Internal,
                    std::string(what) + " rank " + std::to_string(peer) + "'s buffer with " +
                        (write ? "process_vm_writev" : "process_vm_readv") + " failed: " + strerror(e),
                    "Set RINGTREE_CROSS_MEMORY=0 to move bytes through shared-memory slots instead.", peer);
    }
    d += got;
    remote += uint64_t(got);
    bytes -= size_t(got);
  }
  return Status::ok();
}

// Copies `bytes` at `remote` in process `pid` (rank `peer`) to `dst`.
inline Status readCrossMemory(int pid, int peer, uint64_t remote, void* dst, size_t bytes) {
  return copyCrossMemory(pid, peer, remote, dst, bytes, false);
}

// Copies `bytes` at `src` to `remote` in process `pid` (rank `peer`).
inline Status writeCrossMemory(int pid, int peer, uint64_t remote, const void* src, size_t bytes) {
  return copyCrossMemory(pid, peer, remote, const_cast<void*>(src), bytes, true);
}

}  // namespace ringtree
