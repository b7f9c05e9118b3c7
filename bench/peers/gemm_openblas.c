/* The peer for bench/gemm.mjs: OpenBLAS called directly from C, the way a
 * C program would, with its own CBLAS prototypes (no BLAS headers needed)
 * and the same OPENBLAS_NUM_THREADS as ringtree in the same run.
 *
 *   cc -O2 -o gemm_openblas gemm_openblas.c -ldl
 *   ./gemm_openblas s|d N ITERS REPS [LIBRARY]
 *
 * Prints one line: "<type> <n> <median microseconds per call> <threads>".
 * Row-major C = A @ B, square N, alpha 1, beta 0, as bench/gemm.mjs times it. */
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum { RowMajor = 101, NoTrans = 111 };
typedef void (*sgemm_fn)(int, int, int, int, int, int, float, const float *, int, const float *, int, float, float *, int);
typedef void (*dgemm_fn)(int, int, int, int, int, int, double, const double *, int, const double *, int, double, double *, int);

static double now_us(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec * 1e6 + t.tv_nsec / 1e3;
}

static int cmp(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

int main(int argc, char **argv) {
  if (argc < 5) {
    fprintf(stderr, "usage: %s s|d N ITERS REPS [LIBRARY]\n", argv[0]);
    return 2;
  }
  const int dbl = argv[1][0] == 'd';
  const int n = atoi(argv[2]), iters = atoi(argv[3]), reps = atoi(argv[4]);
  const char *lib = argc > 5 ? argv[5] : "libopenblas.so.0";
  void *h = dlopen(lib, RTLD_NOW | RTLD_LOCAL);
  if (!h) {
    fprintf(stderr, "gemm_openblas: %s\n", dlerror());
    return 3;
  }
  sgemm_fn sgemm = (sgemm_fn)dlsym(h, "cblas_sgemm");
  dgemm_fn dgemm = (dgemm_fn)dlsym(h, "cblas_dgemm");
  int (*threads)(void) = (int (*)(void))dlsym(h, "openblas_get_num_threads");
  if (!sgemm || !dgemm) {
    fprintf(stderr, "gemm_openblas: %s has no cblas_sgemm/cblas_dgemm\n", lib);
    return 3;
  }
  const size_t count = (size_t)n * n, es = dbl ? sizeof(double) : sizeof(float);
  char *a = malloc(count * es), *b = malloc(count * es), *c = malloc(count * es);
  double *times = malloc(sizeof(double) * reps);
  if (!a || !b || !c || !times) return 4;
  srand(1);
  for (size_t i = 0; i < count; i++) {
    double x = rand() / (double)RAND_MAX * 2 - 1, y = rand() / (double)RAND_MAX * 2 - 1;
    if (dbl) {
      ((double *)a)[i] = x;
      ((double *)b)[i] = y;
    } else {
      ((float *)a)[i] = (float)x;
      ((float *)b)[i] = (float)y;
    }
  }
  memset(c, 0, count * es);
  for (int r = -1; r < reps; r++) { /* r = -1: warm-up (thread pool, caches) */
    double t0 = now_us();
    for (int i = 0; i < iters; i++) {
      if (dbl)
        dgemm(RowMajor, NoTrans, NoTrans, n, n, n, 1.0, (double *)a, n, (double *)b, n, 0.0, (double *)c, n);
      else
        sgemm(RowMajor, NoTrans, NoTrans, n, n, n, 1.0f, (float *)a, n, (float *)b, n, 0.0f, (float *)c, n);
    }
    if (r >= 0) times[r] = (now_us() - t0) / iters;
  }
  qsort(times, reps, sizeof(double), cmp);
  printf("%s %d %.3f %d\n", dbl ? "d" : "s", n, times[reps / 2], threads ? threads() : 1);
  return 0;
}
