// Memory-bandwidth ceilings for `docs/PERFORMANCE.md` (Collectives (CPU)):
// what one core, and T cores together, can do with the two kernels every CPU
// collective is made of:
//   copy:  dst[i] = src[i]            (memcpy; read 1 stream, write 1)
//   add:   dst[i] = a[i] + b[i]       (float32; read 2 streams, write 1)
//   read:  s += a[i]                  (read 1 stream)
//   write: dst[i] = 0                 (memset; write 1 stream)
// Each of T threads works on its own buffers of BYTES bytes (touched once
// before timing) and reports bytes per second summed over threads: of output
// for copy, add and write, of input for read; the median of R repetitions.
//
//   cc -O3 -march=native -pthread -o build/bench/membw bench/peers/membw.c
//   build/bench/membw [BYTES=134217728] [R=7]
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static size_t bytes = 128u << 20;
static int reps = 7;

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
  } else {
    float *restrict d = j->dst;
    const float *restrict x = j->a, *restrict y = j->b;
    for (size_t i = 0; i < n; i++) d[i] = x[i] + y[i];
  }
  j->seconds = now() - t0;
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
    jobs[t].a = malloc(bytes);
    jobs[t].b = malloc(bytes);
    jobs[t].dst = malloc(bytes);
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
  for (int t = 0; t < threads; t++) { free(jobs[t].a); free(jobs[t].b); free(jobs[t].dst); }
  free(gbs);
  return med;
}

int main(int argc, char **argv) {
  if (argc > 1) bytes = strtoull(argv[1], NULL, 10);
  if (argc > 2) reps = atoi(argv[2]);
  printf("# membw: %zu bytes per thread, median of %d, GB/s of output (1e9)\n", bytes, reps);
  printf("# threads      copy       add      read     write\n");
  for (int threads = 1; threads <= 2; threads++) {
    printf("%9d  %8.2f  %8.2f  %8.2f  %8.2f\n", threads, measure(0, threads), measure(1, threads), measure(2, threads), measure(3, threads));
  }
  return 0;
}
