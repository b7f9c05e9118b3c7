#include "cpu/transport/ShmSegment.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <cstring>

namespace ringtree {

static std::string errnoText(int err) { return std::string(strerror(err)); }

static std::string mib(uint64_t bytes) { return std::to_string((bytes + (1 << 20) - 1) >> 20) + " MiB"; }

ShmSegment::~ShmSegment() {
  unmap();
}

Status ShmSegment::create(const std::string& name, uint64_t bytes) {
  name_ = name;
  int fd = shm_open(name.c_str(), O_RDWR | O_CREAT | O_EXCL, 0600);
  if (fd < 0) {
    int err = errno;
    return Status(StatusCode::BackendUnavailable,
                  "cannot create shared-memory segment " + name + ": " + errnoText(err),
                  err == EEXIST ? "A stale segment of the same job exists: remove /dev/shm" + name +
                                      " or use a fresh RINGTREE_JOB_ID."
                                : "Check that /dev/shm is mounted and writable.");
  }
  // Refuse up front what cannot fit: on tmpfs, posix_fallocate would first
  // take all the free memory it can before failing.
  struct statvfs vfs;
  if (fstatvfs(fd, &vfs) == 0 && uint64_t(vfs.f_bavail) * vfs.f_frsize < bytes) {
    uint64_t avail = uint64_t(vfs.f_bavail) * vfs.f_frsize;
    close(fd);
    shm_unlink(name.c_str());
    return Status(StatusCode::BackendUnavailable,
                  "shared memory needs " + mib(bytes) + " for " + name + " but /dev/shm has only " + mib(avail) +
                      " free",
                  "/dev/shm is too small for this world size: give the container more (docker run --shm-size=1g "
                  "or --ipc=host), or lower RINGTREE_SLOT_BYTES / RINGTREE_SLOTS.");
  }
  // posix_fallocate returns the error number instead of setting errno.
  int rc = posix_fallocate(fd, 0, off_t(bytes));
  if (rc != 0) {
    close(fd);
    shm_unlink(name.c_str());
    return Status(StatusCode::BackendUnavailable,
                  "cannot reserve " + mib(bytes) + " of shared memory in /dev/shm for " + name + ": " + errnoText(rc),
                  "/dev/shm is too small for this world size: give the container more (docker run --shm-size=1g "
                  "or --ipc=host), or lower RINGTREE_SLOT_BYTES / RINGTREE_SLOTS.");
  }
  Status s = map(fd, bytes);
  close(fd);
  if (!s.isOk()) {
    shm_unlink(name.c_str());
    unlinked_ = true;
  }
  return s;
}

Status ShmSegment::open(const std::string& name, uint64_t bytes) {
  name_ = name;
  unlinked_ = true;  // the creator owns the name
  int fd = shm_open(name.c_str(), O_RDWR, 0600);
  if (fd < 0) {
    int err = errno;
    return Status(StatusCode::BackendUnavailable,
                  "cannot open shared-memory segment " + name + ": " + errnoText(err),
                  "All ranks of a host must share /dev/shm (same container or --ipc=host).");
  }
  struct stat st;
  if (fstat(fd, &st) != 0 || uint64_t(st.st_size) < bytes) {
    close(fd);
    return Status(StatusCode::BackendUnavailable,
                  "shared-memory segment " + name + " is " + std::to_string(st.st_size) + " bytes, expected " +
                      std::to_string(bytes),
                  "Every rank must use the same RINGTREE_SLOT_BYTES / RINGTREE_SLOTS and ringtree version.");
  }
  // The whole segment: its creator decided the parts beyond `bytes` (outboxes).
  Status s = map(fd, uint64_t(st.st_size));
  close(fd);
  return s;
}

Status ShmSegment::map(int fd, uint64_t bytes) {
  // MAP_POPULATE pays the page faults once, here, not in the first collective.
  void* p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd, 0);
  if (p == MAP_FAILED) {
    int err = errno;
    return Status(StatusCode::BackendUnavailable, "cannot map " + mib(bytes) + " of shared memory: " + errnoText(err),
                  "Check the memory limits of this process (ulimit -v, cgroup memory.max).");
  }
  base_ = p;
  bytes_ = bytes;
  return Status::ok();
}

void ShmSegment::unlink() {
  if (!unlinked_ && !name_.empty()) {
    shm_unlink(name_.c_str());
    unlinked_ = true;
  }
}

void ShmSegment::unmap() {
  if (base_) {
    munmap(base_, bytes_);
    base_ = nullptr;
  }
}

}  // namespace ringtree
