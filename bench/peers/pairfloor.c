// The floor of a 2-rank collective through the kernel, for
// `docs/PERFORMANCE.md`: two processes, each buffer on 2 MiB-aligned memory
// advised for transparent huge pages (as allocHost's), synchronised by
// spinning on flags in a shared page (no engine, no messages, no JS), doing
// only the copies and reductions an op cannot avoid:
//
//   allgather (in place, SIZE = the whole output): each process reads the
//     other's half into its own buffer with process_vm_readv, PIECE bytes per
//     call, then both wait for each other. Open MPI's 2-process all-gather
//     does the same one kernel copy.
//   allreduce (in place, float32 sum): each reads its own half of the other's
//     buffer PIECE bytes at a time into a scratch buffer and adds it into its
//     own (AVX2); both wait; each reads the other's finished half; both wait.
//     ringtree's pairAllReduce and Open MPI's 2-process ring do these copies.
//   shm-allreduce: the same sums and copies with both buffers in one shared
//     mapping (4 KiB pages; no system calls): each adds the other's half
//     straight into its own, then copies the other's finished half.
//   pingpong: SIZE round trips of one cache line between the processes (ns
//     per round trip).
//
// Prints the median and minimum microseconds per op over 15 repetitions of
// ITERS ops, and the busbw of the median (nccl-tests' factors: 1/2 for the
// all-gather, 1 for the allreduce at 2 ranks).
//
//   cc -O2 -o build/bench/pairfloor bench/peers/pairfloor.c
//   build/bench/pairfloor allgather|allreduce|shm-allreduce SIZE [PIECE=SIZE/2] [ITERS=50]
//   build/bench/pairfloor pingpong ROUNDTRIPS
//
// On the VM this was written on, every pattern but pingpong's latency and
// the all-gather ran 8-11x slower for tens of seconds at a time, over and
// over, while each core alone ran compute, vector adds and memcpy at full
// speed (docs/PERFORMANCE.md, "What the slow spells are (session 11)").
//
// Needs cross-memory access between the two processes (same user, ptrace
// permitted; both are children of one process here).
#define _GNU_SOURCE
#include <immintrin.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define REPS 15

struct shared {
  _Atomic long flag[2][4];  // [rank][0 ready, 1 repetition, 2 phase one, 3 phase two]
  uintptr_t addr[2];
  pid_t pid[2];
};

static double now_us(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec * 1e6 + t.tv_nsec / 1e3;
}

static void wait_for(_Atomic long *f, long v) {
  while (atomic_load_explicit(f, memory_order_acquire) < v) _mm_pause();
}

static void read_peer(pid_t pid, const char *remote, char *local, size_t len) {
  struct iovec l = {local, len}, r = {(void *)remote, len};
  if (process_vm_readv(pid, &l, 1, &r, 1, 0) != (ssize_t)len) {
    perror("process_vm_readv");
    exit(1);
  }
}

__attribute__((target("avx2"))) static void add(float *out, const float *a, const float *b, size_t n) {
  size_t i = 0;
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(out + i, _mm256_add_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i)));
  for (; i < n; i++) out[i] = a[i] + b[i];
}

static char *huge_buffer(size_t bytes) {
  const size_t page = 2u << 20, len = (bytes + page - 1) / page * page;
  char *raw = mmap(NULL, len + page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (raw == MAP_FAILED) {
    perror("mmap");
    exit(1);
  }
  char *p = (char *)(((uintptr_t)raw + page - 1) & ~(uintptr_t)(page - 1));
  madvise(p, len, MADV_HUGEPAGE);
  memset(p, 0, len);  // touched; zeros, since denormal floats would slow the additions
  return p;
}

// Round trips of one cache line: the parent writes a number, the child
// answers with it.
static int pingpong(long rounds) {
  if (rounds < 1) {
    fprintf(stderr, "ROUNDTRIPS must be at least 1\n");
    return 2;
  }
  _Atomic long *line = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (line == MAP_FAILED) {
    perror("mmap");
    return 1;
  }
  line[0] = line[8] = 0;
  const pid_t child = fork();
  if (child < 0) {
    perror("fork");
    return 1;
  }
  const double t0 = now_us();
  for (long i = 1; i <= rounds; i++) {
    if (child) {
      atomic_store_explicit(&line[0], i, memory_order_release);
      wait_for(&line[8], i);
    } else {
      wait_for(&line[0], i);
      atomic_store_explicit(&line[8], i, memory_order_release);
    }
  }
  if (!child) return 0;
  const double us = now_us() - t0;
  waitpid(child, NULL, 0);
  printf("pingpong %ld round trips: %.0f ns each\n", rounds, us * 1e3 / rounds);
  return 0;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

int main(int argc, char **argv) {
  const char *mode = argc > 1 ? argv[1] : "";
  const int reduce = !strcmp(mode, "allreduce"), shm = !strcmp(mode, "shm-allreduce"), ping = !strcmp(mode, "pingpong");
  if (argc < 3 || !(reduce || shm || ping || !strcmp(mode, "allgather"))) {
    fprintf(stderr, "usage: %s allgather|allreduce|shm-allreduce SIZE [PIECE=SIZE/2] [ITERS=50]\n       %s pingpong ROUNDTRIPS\n",
            argv[0], argv[0]);
    return 2;
  }
  if (ping) return pingpong(strtol(argv[2], NULL, 0));
  const size_t size = strtoull(argv[2], NULL, 0) / 8 * 8, half = size / 2;
  size_t piece = argc > 3 ? strtoull(argv[3], NULL, 0) : half;
  const int iters = argc > 4 ? atoi(argv[4]) : 50;
  if (half == 0 || iters < 1) {
    fprintf(stderr, "SIZE must be at least 8 bytes and ITERS at least 1\n");
    return 2;
  }
  if (piece == 0 || piece > half) piece = half;
  piece = (piece + 3) / 4 * 4;

  struct shared *sh = mmap(NULL, sizeof *sh, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (sh == MAP_FAILED) {
    perror("mmap");
    return 1;
  }
  memset(sh, 0, sizeof *sh);
  sh->pid[0] = getpid();
  // shm-allreduce: both buffers in one shared mapping, made before the fork.
  char *region = NULL;
  if (shm) {
    region = mmap(NULL, 2 * size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (region == MAP_FAILED) {
      perror("mmap");
      return 1;
    }
    memset(region, 0, 2 * size);
  }
  const pid_t child = fork();
  if (child < 0) {
    perror("fork");
    return 1;
  }
  const int rank = child == 0, peer = 1 - rank;
  if (rank) sh->pid[1] = getpid();
  char *buf = shm ? region + rank * size : huge_buffer(size);
  char *scratch = reduce ? huge_buffer(piece) : NULL;
  sh->addr[rank] = (uintptr_t)buf;
  atomic_fetch_add(&sh->flag[rank][0], 1);
  wait_for(&sh->flag[peer][0], 1);
  // With shm, the other's buffer as we see it; else its address in its own process.
  const char *theirs = shm ? region + peer * size : (const char *)sh->addr[peer];
  const pid_t ppid = sh->pid[peer];
  const size_t mine_at = rank * half, theirs_at = peer * half;

  double times[REPS];
  long seq = 0;
  for (int rep = 0; rep < REPS; rep++) {
    atomic_fetch_add(&sh->flag[rank][1], 1);
    wait_for(&sh->flag[peer][1], rep + 1);
    const double t0 = now_us();
    for (int it = 0; it < iters; it++) {
      seq++;
      if (shm) {
        add((float *)(buf + mine_at), (const float *)(theirs + mine_at), (const float *)(buf + mine_at), half / 4);
        atomic_store_explicit(&sh->flag[rank][2], seq, memory_order_release);
        wait_for(&sh->flag[peer][2], seq);
        memcpy(buf + theirs_at, theirs + theirs_at, half);
        atomic_store_explicit(&sh->flag[rank][3], seq, memory_order_release);
        wait_for(&sh->flag[peer][3], seq);
        continue;
      }
      if (reduce) {
        for (size_t off = 0; off < half; off += piece) {
          const size_t len = piece < half - off ? piece : half - off;
          read_peer(ppid, theirs + mine_at + off, scratch, len);
          add((float *)(buf + mine_at + off), (const float *)scratch, (const float *)(buf + mine_at + off), len / 4);
        }
        atomic_store_explicit(&sh->flag[rank][2], seq, memory_order_release);
        wait_for(&sh->flag[peer][2], seq);
      }
      for (size_t off = 0; off < half; off += piece) {
        const size_t len = piece < half - off ? piece : half - off;
        read_peer(ppid, theirs + theirs_at + off, buf + theirs_at + off, len);
      }
      atomic_store_explicit(&sh->flag[rank][3], seq, memory_order_release);
      wait_for(&sh->flag[peer][3], seq);
    }
    times[rep] = (now_us() - t0) / iters;
  }
  if (rank == 1) return 0;
  waitpid(child, NULL, 0);
  qsort(times, REPS, sizeof times[0], cmp_double);
  const double med = times[REPS / 2];
  const double busbw = (reduce || shm ? 1.0 : 0.5) * (double)size / med / 1e3;
  printf("%s %zu bytes, %zu-byte pieces, %d ops x %d: median %.1f us, min %.1f us, busbw %.2f GB/s\n", mode, size,
         shm ? half : piece, iters, REPS, med, times[0], busbw);
  return 0;
}
