// Memory-bandwidth ceilings for `docs/PERFORMANCE.md` (Collectives (CPU)):
// what one core, and T cores together, can do with the two kernels every CPU
// collective is made of:
//   copy:  dst[i] = src[i]            (memcpy; read 1 stream, write 1)
//   add:   dst[i] = a[i] + b[i]       (float32; read 2 streams, write 1)
//   read:  s += a[i]                  (read 1 stream)
//   write: dst[i] = 0                 (memset; write 1 stream)
//   cma:   process_vm_readv of a[] into dst[] (the kernel copy of the
//          cross-memory paths, here from this process itself)
// Each of T threads works on its own buffers of BYTES bytes (touched once
// before timing) and reports bytes per second summed over threads: of output
// for copy, add and write, of input for read; the median of R repetitions.
//
//   cc -O3 -march=native -pthread -o build/bench/membw bench/peers/membw.c
//   build/bench/membw [BYTES=134217728] [R=7] [HUGE=0]
//
// HUGE=1 puts every buffer on 2 MiB-aligned memory advised for transparent
// huge pages (madvise MADV_HUGEPAGE), as ringtree's allocHost does.
#define _GNU_SOURCE
#include <pthread.h>
#include <stdint.h>
#include <sys/mman.h>
#include <sys/uio.h>
#include <unistd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static size_t bytes = 128u << 20;
static int reps = 7;
static int huge = 0;

// A zero-filled buffer: malloc's, or with HUGE=1 its own 2 MiB-aligned mapping advised for huge pages.
static float *alloc_buffer(void) {
  if (!huge) return malloc(bytes);
  const size_t page = 2u << 20, len = (bytes + page - 1) / page * page;
  char *raw = mmap(NULL, len + page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (raw == MAP_FAILED) return NULL;
  char *p = (char *)(((uintptr_t)raw + page - 1) & ~(uintptr_t)(page - 1));
  madvise(p, len, MADV_HUGEPAGE);
  return (float *)p;
}

static void free_buffer(float *p) {
  const size_t page = 2u << 20;
  if (!huge) free(p);
  else munmap(p, (bytes + page - 1) / page * page);  // the unaligned head and tail stay mapped: a few MiB per run
}

typedef struct {
  int kind;  // 0 copy, 1 add, 2 read, 3 write
  float *a, *b, *dst;
  pthread_barrier_t *barrier;
  double seconds;
} job;

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void *run(void *p) {
  job *j = p;
  size_t n = bytes / sizeof(float);
  j->seconds = 0;
  pthread_barrier_wait(j->barrier);
  double t0 = now();
  if (j->kind == 0) {
    memcpy(j->dst, j->a, bytes);
  } else if (j->kind == 2) {
    float acc[16] = {0};
    for (size_t i = 0; i < n; i += 16)
      for (int k = 0; k < 16; k++) acc[k] += j->a[i + k];
    float s = 0;
    for (int k = 0; k < 16; k++) s += acc[k];
    j->dst[0] = s;  // keeps the loop
  } else if (j->kind == 3) {
    memset(j->dst, 0, bytes);
  } else if (j->kind == 4) {
    struct iovec local = {j->dst, bytes}, remote = {j->a, bytes};
    if (process_vm_readv(getpid(), &local, 1, &remote, 1, 0) != (ssize_t)bytes) j->seconds = -1;
  } else {
    float *restrict d = j->dst;
    const float *restrict x = j->a, *restrict y = j->b;
    for (size_t i = 0; i < n; i++) d[i] = x[i] + y[i];
  }
  if (j->seconds >= 0) j->seconds = now() - t0;
  return NULL;
}

static int cmp(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

// Output GB/s (1e9) of `threads` threads running `kind` together: median of reps,
// each rep timed from the common start to the slowest thread's end.
static double measure(int kind, int threads) {
  job jobs[64];
  pthread_t tids[64];
  pthread_barrier_t barrier;
  for (int t = 0; t < threads; t++) {
    jobs[t].kind = kind;
    jobs[t].a = alloc_buffer();
    jobs[t].b = alloc_buffer();
    jobs[t].dst = alloc_buffer();
    for (size_t i = 0; i < bytes / sizeof(float); i++) { jobs[t].a[i] = 1.0f; jobs[t].b[i] = 2.0f; jobs[t].dst[i] = 0.0f; }
  }
  double *gbs = malloc(sizeof(double) * reps);
  for (int r = 0; r < reps; r++) {
    pthread_barrier_init(&barrier, NULL, threads);
    for (int t = 0; t < threads; t++) { jobs[t].barrier = &barrier; pthread_create(&tids[t], NULL, run, &jobs[t]); }
    double slowest = 0;
    for (int t = 0; t < threads; t++) { pthread_join(tids[t], NULL); if (jobs[t].seconds > slowest) slowest = jobs[t].seconds; }
    pthread_barrier_destroy(&barrier);
    gbs[r] = (double)bytes * threads / slowest / 1e9;
  }
  qsort(gbs, reps, sizeof(double), cmp);
  double med = gbs[reps / 2];
  for (int t = 0; t < threads; t++) { free_buffer(jobs[t].a); free_buffer(jobs[t].b); free_buffer(jobs[t].dst); }
  free(gbs);
  return med;
}

int main(int argc, char **argv) {
  if (argc > 1) bytes = strtoull(argv[1], NULL, 10);
  if (argc > 2) reps = atoi(argv[2]);
  if (argc > 3) huge = atoi(argv[3]);
  printf("# membw: %zu bytes per thread, median of %d, GB/s of output (1e9), %s pages\n", bytes, reps,
         huge ? "huge (MADV_HUGEPAGE)" : "malloc's");
  printf("# threads      copy       add      read     write       cma\n");
  for (int threads = 1; threads <= 2; threads++) {
    printf("%9d  %8.2f  %8.2f  %8.2f  %8.2f  %8.2f\n", threads, measure(0, threads), measure(1, threads), measure(2, threads),
           measure(3, threads), measure(4, threads));
  }
  return 0;
}
