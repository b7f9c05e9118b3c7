// Keeps the addon loadable on glibc 2.28 (RHEL 8, Debian 10) although it is
// built on a newer glibc (Debian 12: 2.36).
//
// Why: the addon links libstdc++ and libgcc statically (so users' older
// libstdc++ never matters), but those archives were compiled against the build
// machine's glibc and reference symbols versioned 2.32-2.36
// (__libc_single_threaded, arc4random, _dl_find_object, and the pthread/dl
// functions that moved into libc.so.6 in 2.34 under a new version). A
// .symver directive in our own sources cannot reach references inside those
// archives, but the linker's --wrap can: both build front doors pass
// `-Wl,@native/compat/glibcFloor.wrap` (one `--wrap=SYMBOL` per line), which
// turns every undefined reference to SYMBOL, in our objects and in the static
// archives alike, into a reference to __wrap_SYMBOL, defined here. Each
// wrapper either jumps to the oldest version of the symbol (same code in libc,
// an older version tag) or implements it with what glibc 2.28 has.
//
// scripts/check-glibc.sh enforces the floor in CI and names any new symbol
// above it; add it to glibcFloor.wrap and here, or call the syscall directly.
//
// Only glibc on x86-64 and arm64 needs this; elsewhere the file is empty and
// the build files do not pass the wrap list.
#if defined(__linux__)
#include <features.h>  // defines __GLIBC__
#endif
#if defined(__linux__) && defined(__GLIBC__) && (defined(__x86_64__) || defined(__aarch64__))

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <link.h>
#include <pthread.h>
#include <semaphore.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#if defined(__x86_64__)
#define RINGTREE_GLIBC_BASE "GLIBC_2.2.5"
#define RINGTREE_GLIBC_COND "GLIBC_2.3.2"
#define RINGTREE_GLIBC_DLADDR1 "GLIBC_2.3.3"
#else
#define RINGTREE_GLIBC_BASE "GLIBC_2.17"
#define RINGTREE_GLIBC_COND "GLIBC_2.17"
#define RINGTREE_GLIBC_DLADDR1 "GLIBC_2.17"
#endif

// __wrap_SYM: a tail jump to SYM@VERSION, whatever SYM's signature is.
#if defined(__x86_64__)
#define RINGTREE_JUMP(target) "jmp " target "@PLT\n"
#else
#define RINGTREE_JUMP(target) "b " target "\n"
#endif
#define RINGTREE_FORWARD(sym, version)                                    \
  __asm__(".symver ringtree_glibc_" #sym ", " #sym "@" version "\n"      \
          ".pushsection .text\n"                                          \
          ".globl __wrap_" #sym "\n"                                      \
          ".hidden __wrap_" #sym "\n"                                     \
          ".type __wrap_" #sym ", %function\n"                            \
          "__wrap_" #sym ":\n" RINGTREE_JUMP("ringtree_glibc_" #sym)      \
          ".size __wrap_" #sym ", .-__wrap_" #sym "\n"                   \
          ".popsection\n");

// Moved from libpthread/libdl/librt into libc.so.6 in 2.34 (new version tag,
// same code; the old tag still resolves on 2.28 through the libraries Node
// itself loads).
RINGTREE_FORWARD(pthread_once, RINGTREE_GLIBC_BASE)
RINGTREE_FORWARD(__pthread_key_create, RINGTREE_GLIBC_BASE)
RINGTREE_FORWARD(pthread_key_create, RINGTREE_GLIBC_BASE)
RINGTREE_FORWARD(pthread_key_delete, RINGTREE_GLIBC_BASE)
RINGTREE_FORWARD(pthread_getspecific, RINGTREE_GLIBC_BASE)
RINGTREE_FORWARD(pthread_setspecific, RINGTREE_GLIBC_BASE)
RINGTREE_FORWARD(pthread_create, RINGTREE_GLIBC_BASE)
RINGTREE_FORWARD(pthread_join, RINGTREE_GLIBC_BASE)
RINGTREE_FORWARD(pthread_detach, RINGTREE_GLIBC_BASE)
RINGTREE_FORWARD(pthread_mutex_trylock, RINGTREE_GLIBC_BASE)
RINGTREE_FORWARD(pthread_sigmask, RINGTREE_GLIBC_BASE)
RINGTREE_FORWARD(shm_open, RINGTREE_GLIBC_BASE)
RINGTREE_FORWARD(shm_unlink, RINGTREE_GLIBC_BASE)
RINGTREE_FORWARD(dlopen, RINGTREE_GLIBC_BASE)
RINGTREE_FORWARD(dlsym, RINGTREE_GLIBC_BASE)
RINGTREE_FORWARD(dlclose, RINGTREE_GLIBC_BASE)
RINGTREE_FORWARD(dlerror, RINGTREE_GLIBC_BASE)
RINGTREE_FORWARD(dladdr, RINGTREE_GLIBC_BASE)
RINGTREE_FORWARD(dladdr1, RINGTREE_GLIBC_DLADDR1)
// libm got new, faster versions in 2.29; the old ones are still exported.
RINGTREE_FORWARD(exp, RINGTREE_GLIBC_BASE)
RINGTREE_FORWARD(log, RINGTREE_GLIBC_BASE)
RINGTREE_FORWARD(pow, RINGTREE_GLIBC_BASE)
RINGTREE_FORWARD(exp2, RINGTREE_GLIBC_BASE)
RINGTREE_FORWARD(log2, RINGTREE_GLIBC_BASE)

extern "C" {

int ringtree_glibc_pthread_cond_timedwait(pthread_cond_t*, pthread_mutex_t*, const struct timespec*);
__asm__(".symver ringtree_glibc_pthread_cond_timedwait, pthread_cond_timedwait@" RINGTREE_GLIBC_COND);
int ringtree_glibc_pthread_mutex_timedlock(pthread_mutex_t*, const struct timespec*);
__asm__(".symver ringtree_glibc_pthread_mutex_timedlock, pthread_mutex_timedlock@" RINGTREE_GLIBC_BASE);
int ringtree_glibc_sem_timedwait(sem_t*, const struct timespec*);
__asm__(".symver ringtree_glibc_sem_timedwait, sem_timedwait@" RINGTREE_GLIBC_BASE);

// libstdc++ skips atomics when this says the process is single-threaded.
// Node never is; 0 ("maybe multi-threaded") is always correct.
char __wrap___libc_single_threaded = 0;

// ---- arc4random (2.36): std::random_device's default source ----

static void fillRandom(void* buffer, size_t length) {
  auto* bytes = static_cast<unsigned char*>(buffer);
  while (length > 0) {
    ssize_t got = getrandom(bytes, length, 0);
    if (got < 0) {
      if (errno == EINTR) continue;
      // Kernels before 3.17 have no getrandom; arc4random must not fail.
      int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
      if (fd < 0) abort();
      while (length > 0) {
        ssize_t n = read(fd, bytes, length);
        if (n <= 0) {
          if (n < 0 && errno == EINTR) continue;
          abort();
        }
        bytes += n;
        length -= static_cast<size_t>(n);
      }
      close(fd);
      return;
    }
    bytes += got;
    length -= static_cast<size_t>(got);
  }
}

uint32_t __wrap_arc4random(void) {
  uint32_t value;
  fillRandom(&value, sizeof value);
  return value;
}

void __wrap_arc4random_buf(void* buffer, size_t length) { fillRandom(buffer, length); }

uint32_t __wrap_arc4random_uniform(uint32_t bound) {
  if (bound < 2) return 0;
  // Reject the low values that would bias the modulo.
  uint32_t floor = static_cast<uint32_t>(-bound) % bound;
  for (;;) {
    uint32_t value = __wrap_arc4random();
    if (value >= floor) return value % bound;
  }
}

// ---- _dl_find_object (2.35): libgcc's unwinder finds .eh_frame_hdr with it ----
// Without a working replacement every C++ throw would terminate the process,
// so this walks the loaded objects as libgcc did before 2.35.

#ifdef DLFO_STRUCT_HAS_EH_DBASE
struct FindObjectQuery {
  uintptr_t pc;
  struct dl_find_object* result;
  bool found;
};

static int findObjectCallback(struct dl_phdr_info* info, size_t, void* data) {
  auto* query = static_cast<FindObjectQuery*>(data);
  uintptr_t low = UINTPTR_MAX, high = 0;
  bool contains = false;
  const void* ehFrame = nullptr;
  for (int i = 0; i < info->dlpi_phnum; ++i) {
    const ElfW(Phdr)& header = info->dlpi_phdr[i];
    uintptr_t start = info->dlpi_addr + header.p_vaddr;
    if (header.p_type == PT_LOAD) {
      uintptr_t end = start + header.p_memsz;
      if (start < low) low = start;
      if (end > high) high = end;
      if (query->pc >= start && query->pc < end) contains = true;
    } else if (header.p_type == DLFO_EH_SEGMENT_TYPE) {
      ehFrame = reinterpret_cast<const void*>(start);
    }
  }
  if (!contains) return 0;
  struct dl_find_object* result = query->result;
  result->dlfo_flags = 0;
  result->dlfo_map_start = reinterpret_cast<void*>(low);
  result->dlfo_map_end = reinterpret_cast<void*>(high);
  result->dlfo_link_map = nullptr;
  result->dlfo_eh_frame = const_cast<void*>(ehFrame);
#if DLFO_STRUCT_HAS_EH_DBASE
  result->dlfo_eh_dbase = nullptr;
#endif
  query->found = true;
  return 1;
}

int __wrap__dl_find_object(void* pc, struct dl_find_object* result) {
  FindObjectQuery query{reinterpret_cast<uintptr_t>(pc), result, false};
  dl_iterate_phdr(findObjectCallback, &query);
  if (!query.found) return -1;
  Dl_info info;
  struct link_map* map = nullptr;
  if (dladdr1(pc, &info, reinterpret_cast<void**>(&map), RTLD_DL_LINKMAP) != 0) result->dlfo_link_map = map;
  return 0;
}
#endif

// ---- clock-selecting waits (2.30): std::condition_variable/timed_mutex on steady_clock ----
// Converted to a CLOCK_REALTIME deadline (what the 2.28 calls take); a wall-clock
// step during the wait shifts the deadline, as it did before 2.30.

static struct timespec toRealtimeDeadline(clockid_t clock, const struct timespec* deadline) {
  if (clock == CLOCK_REALTIME) return *deadline;
  struct timespec nowClock, nowReal;
  clock_gettime(clock, &nowClock);
  clock_gettime(CLOCK_REALTIME, &nowReal);
  int64_t remaining = (static_cast<int64_t>(deadline->tv_sec) - nowClock.tv_sec) * 1000000000LL +
                      (deadline->tv_nsec - nowClock.tv_nsec);
  if (remaining < 0) remaining = 0;
  int64_t target = static_cast<int64_t>(nowReal.tv_sec) * 1000000000LL + nowReal.tv_nsec + remaining;
  struct timespec result;
  result.tv_sec = static_cast<time_t>(target / 1000000000LL);
  result.tv_nsec = static_cast<long>(target % 1000000000LL);
  return result;
}

int __wrap_pthread_cond_clockwait(pthread_cond_t* cond, pthread_mutex_t* mutex, clockid_t clock,
                                  const struct timespec* deadline) {
  if (clock != CLOCK_REALTIME && clock != CLOCK_MONOTONIC) return EINVAL;
  struct timespec real = toRealtimeDeadline(clock, deadline);
  return ringtree_glibc_pthread_cond_timedwait(cond, mutex, &real);
}

int __wrap_pthread_mutex_clocklock(pthread_mutex_t* mutex, clockid_t clock, const struct timespec* deadline) {
  if (clock != CLOCK_REALTIME && clock != CLOCK_MONOTONIC) return EINVAL;
  struct timespec real = toRealtimeDeadline(clock, deadline);
  return ringtree_glibc_pthread_mutex_timedlock(mutex, &real);
}

int __wrap_sem_clockwait(sem_t* semaphore, clockid_t clock, const struct timespec* deadline) {
  if (clock != CLOCK_REALTIME && clock != CLOCK_MONOTONIC) {
    errno = EINVAL;
    return -1;
  }
  struct timespec real = toRealtimeDeadline(clock, deadline);
  return ringtree_glibc_sem_timedwait(semaphore, &real);
}

// ---- pidfd (2.36 wrappers; the kernel calls exist since 5.3/5.1/5.6) ----

int __wrap_pidfd_open(pid_t pid, unsigned int flags) {
  return static_cast<int>(syscall(SYS_pidfd_open, pid, flags));
}

int __wrap_pidfd_send_signal(int pidfd, int signal, siginfo_t* info, unsigned int flags) {
  return static_cast<int>(syscall(SYS_pidfd_send_signal, pidfd, signal, info, flags));
}

int __wrap_pidfd_getfd(int pidfd, int targetfd, unsigned int flags) {
  return static_cast<int>(syscall(SYS_pidfd_getfd, pidfd, targetfd, flags));
}

// ---- stat family (2.33 made them real exports; before, they were inline
// wrappers over __xstat). On x86-64 and arm64 glibc's struct stat is the
// kernel's, so the syscall is exactly what glibc does. ----

int __wrap_fstatat(int dirfd, const char* path, struct stat* buffer, int flags) {
  return static_cast<int>(syscall(SYS_newfstatat, dirfd, path, buffer, flags));
}
int __wrap_stat(const char* path, struct stat* buffer) { return __wrap_fstatat(AT_FDCWD, path, buffer, 0); }
int __wrap_lstat(const char* path, struct stat* buffer) {
  return __wrap_fstatat(AT_FDCWD, path, buffer, AT_SYMLINK_NOFOLLOW);
}
int __wrap_fstat(int fd, struct stat* buffer) { return __wrap_fstatat(fd, "", buffer, AT_EMPTY_PATH); }
int __wrap_fstatat64(int dirfd, const char* path, struct stat* buffer, int flags) {
  return __wrap_fstatat(dirfd, path, buffer, flags);
}
int __wrap_stat64(const char* path, struct stat* buffer) { return __wrap_stat(path, buffer); }
int __wrap_lstat64(const char* path, struct stat* buffer) { return __wrap_lstat(path, buffer); }
int __wrap_fstat64(int fd, struct stat* buffer) { return __wrap_fstat(fd, buffer); }

}  // extern "C"

#endif
