/* A stand-in for libcublas.so.12 and libcublasLt.so.12 in tests (this one
 * file is compiled under both names). `ringtree doctor` reads
 * cublasGetProperty (MAJOR_VERSION 0, MINOR_VERSION 1, PATCH_LEVEL 2); device
 * GEMM calls the cuBLASLt subset below, which computes on host memory (the
 * fake libcuda's "device memory") on the fake stream's thread, found through
 * fake_cuda_enqueue in the library RINGTREE_CUDA_DRIVER_PATH names.
 *
 * Semantics are cuBLASLt's own, column-major: D = epilogue(alpha * op(A) @
 * op(B) + beta * C (+ bias per row of D)), C never read when beta == 0, aux
 * rows of D auxLd apart (bits for the ReLU mask, one per element), bias
 * gradient = the sum of each row of D. So a mistake in ringtree's row-major
 * mapping shows up here as it would on a GPU.
 *
 * FAKE_CUBLAS_FAIL: "create" (cublasLtCreate fails), "heuristic" (no
 * algorithm), "matmul" (cublasLtMatmul returns EXECUTION_FAILED).
 * FAKE_CUBLAS_LOG: a file that gets one line per cublasLtCreate and per
 * cublasLtMatmul (compute type, workspace bytes, epilogue). */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int cublasGetProperty(int type, int* value) {
  if (!value) return 7; /* CUBLAS_STATUS_INVALID_VALUE */
  *value = type == 0 ? 12 : type == 1 ? 4 : type == 2 ? 5 : -1;
  return type >= 0 && type <= 2 ? 0 : 7;
}

static int failIs(const char* what) {
  const char* f = getenv("FAKE_CUBLAS_FAIL");
  return f && strstr(f, what) != NULL;
}

static void logLine(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
#include <stdarg.h>
static void logLine(const char* fmt, ...) {
  const char* path = getenv("FAKE_CUBLAS_LOG");
  if (!path) return;
  FILE* f = fopen(path, "a");
  if (!f) return;
  va_list ap;
  va_start(ap, fmt);
  vfprintf(f, fmt, ap);
  va_end(ap);
  fclose(f);
}

typedef struct { int token; } handle_t;
typedef struct {
  int compute, scale;
  int32_t transa, transb, biasType;
  uint32_t epilogue;
  void* bias;
  void* aux;
  int64_t auxLd;
} mdesc;
typedef struct { int type; uint64_t rows, cols; int64_t ld; int32_t batch; int64_t stride; } layout;
typedef struct { uint64_t maxWorkspace; uint32_t align[4]; } pref;

size_t cublasLtGetVersion(void) { return 120405; }
const char* cublasLtGetStatusName(int s) {
  return s == 0 ? "CUBLAS_STATUS_SUCCESS" : s == 1 ? "CUBLAS_STATUS_NOT_INITIALIZED" : s == 7 ? "CUBLAS_STATUS_INVALID_VALUE"
       : s == 13 ? "CUBLAS_STATUS_EXECUTION_FAILED" : s == 15 ? "CUBLAS_STATUS_NOT_SUPPORTED" : "CUBLAS_STATUS_INTERNAL_ERROR";
}
const char* cublasLtGetStatusString(int s) { return s == 13 ? "the GPU program failed to execute (injected)" : cublasLtGetStatusName(s); }

int cublasLtCreate(handle_t** h) {
  if (failIs("create")) return 1;
  *h = calloc(1, sizeof(handle_t));
  logLine("create\n");
  return 0;
}
int cublasLtDestroy(handle_t* h) { free(h); return 0; }

int cublasLtMatmulDescCreate(mdesc** d, int compute, int scale) {
  if (compute != 68 && compute != 77 && compute != 70) return 7;
  *d = calloc(1, sizeof(mdesc));
  (*d)->compute = compute;
  (*d)->scale = scale;
  (*d)->epilogue = 1;
  (*d)->biasType = -1;
  return 0;
}
int cublasLtMatmulDescDestroy(mdesc* d) { free(d); return 0; }
int cublasLtMatmulDescSetAttribute(mdesc* d, int attr, const void* buf, size_t n) {
  switch (attr) {
    case 3: if (n != 4) return 7; memcpy(&d->transa, buf, 4); return 0;
    case 4: if (n != 4) return 7; memcpy(&d->transb, buf, 4); return 0;
    case 7: if (n != 4) return 7; memcpy(&d->epilogue, buf, 4); return 0;
    case 8: if (n != sizeof(void*)) return 7; memcpy(&d->bias, buf, n); return 0;
    case 11: if (n != sizeof(void*)) return 7; memcpy(&d->aux, buf, n); return 0;
    case 12: if (n != 8) return 7; memcpy(&d->auxLd, buf, 8); return 0;
    case 26: if (n != 4) return 7; memcpy(&d->biasType, buf, 4); return 0;
    default: return 7; /* an attribute this double does not know: ringtree should not set it */
  }
}

int cublasLtMatrixLayoutCreate(layout** l, int type, uint64_t rows, uint64_t cols, int64_t ld) {
  if (ld < 1 || (uint64_t)ld < rows || rows == 0 || cols == 0) return 7;
  *l = calloc(1, sizeof(layout));
  (*l)->type = type; (*l)->rows = rows; (*l)->cols = cols; (*l)->ld = ld; (*l)->batch = 1;
  return 0;
}
int cublasLtMatrixLayoutDestroy(layout* l) { free(l); return 0; }
int cublasLtMatrixLayoutSetAttribute(layout* l, int attr, const void* buf, size_t n) {
  if (attr == 5 && n == 4) { memcpy(&l->batch, buf, 4); return 0; }
  if (attr == 6 && n == 8) { memcpy(&l->stride, buf, 8); return 0; }
  return 7;
}

int cublasLtMatmulPreferenceCreate(pref** p) { *p = calloc(1, sizeof(pref)); return 0; }
int cublasLtMatmulPreferenceDestroy(pref* p) { free(p); return 0; }
int cublasLtMatmulPreferenceSetAttribute(pref* p, int attr, const void* buf, size_t n) {
  if (attr == 1 && n == 8) { memcpy(&p->maxWorkspace, buf, 8); return 0; }
  if (attr >= 5 && attr <= 8 && n == 4) { memcpy(&p->align[attr - 5], buf, 4); return 0; }
  return 7;
}

static int isMaskEpilogue(uint32_t e) { return e == 130 || e == 134 || e == 136 || e == 152; }
static int isAux(uint32_t e) { return (e & 128u) != 0; }

typedef struct { uint64_t data[8]; } algo_t;
typedef struct { algo_t algo; size_t workspaceSize; int state; float wavesCount; int reserved[4]; } heuristic_t;

int cublasLtMatmulAlgoGetHeuristic(handle_t* h, mdesc* d, layout* a, layout* b, layout* c, layout* dd, pref* p,
                                   int requested, heuristic_t* out, int* returned) {
  (void)h; (void)p;
  *returned = 0;
  if (requested < 1) return 7;
  if (failIs("heuristic")) return 15;
  /* What real cuBLASLt refuses too: epilogues on double, aux ld off its alignment. */
  if (d->epilogue != 1 && d->compute == 70) return 15;
  if (isAux(d->epilogue)) {
    if (!d->auxLd || (uint64_t)d->auxLd < dd->rows) return 15;
    if (isMaskEpilogue(d->epilogue) ? d->auxLd % 128 : d->auxLd % 8) return 15;
  }
  if (a->type != c->type || b->type != c->type || c->type != dd->type) return 15;
  memset(out, 0, sizeof *out);
  out->algo.data[0] = 42;
  *returned = 1;
  return 0;
}

/* ---- element access ---- */
static double halfToDouble(uint16_t h) {
  int e = (h >> 10) & 31, m = h & 1023;
  double v = e == 0 ? ldexp(m, -24) : e == 31 ? (m ? NAN : INFINITY) : ldexp(m + 1024, e - 25);
  return (h & 0x8000) ? -v : v;
}
static uint16_t doubleToHalf(double d) {
  float f = (float)d;
  uint32_t x; memcpy(&x, &f, 4);
  uint16_t sign = (x >> 16) & 0x8000;
  if (f != f) return 0x7e00;
  float a = fabsf(f);
  if (a >= 65520.0f) return sign | 0x7c00;
  if (a < 6.103515625e-05f) {  /* subnormal: multiples of 2^-24, rounded to nearest even */
    return sign | (uint16_t)nearbyint(a * 16777216.0);
  }
  int e; double mant = frexp(a, &e); /* a = mant * 2^e, mant in [0.5, 1) */
  double scaled = nearbyint(mant * 2048.0); /* 11 significant bits */
  if (scaled >= 2048.0) { scaled /= 2; e++; }
  return sign | (uint16_t)(((e + 14) << 10) | ((uint16_t)scaled - 1024));
}
static double load(int type, const void* base, int64_t i) {
  switch (type) {
    case 0: return ((const float*)base)[i];
    case 1: return ((const double*)base)[i];
    case 2: return halfToDouble(((const uint16_t*)base)[i]);
    default: { uint32_t x = (uint32_t)((const uint16_t*)base)[i] << 16; float f; memcpy(&f, &x, 4); return f; }
  }
}
static void store(int type, void* base, int64_t i, double v) {
  switch (type) {
    case 0: ((float*)base)[i] = (float)v; break;
    case 1: ((double*)base)[i] = v; break;
    case 2: ((uint16_t*)base)[i] = doubleToHalf(v); break;
    default: {
      float f = (float)v; uint32_t x; memcpy(&x, &f, 4);
      if (f != f) { ((uint16_t*)base)[i] = 0x7fc0; break; }
      x += 0x7fff + ((x >> 16) & 1);
      ((uint16_t*)base)[i] = (uint16_t)(x >> 16);
    }
  }
}
static const double kGeluC = 0.7978845608028654; /* sqrt(2 / pi) */
static double gelu(double x) { return 0.5 * x * (1 + tanh(kGeluC * (x + 0.044715 * x * x * x))); }
static double geluGrad(double x) {
  double t = tanh(kGeluC * (x + 0.044715 * x * x * x));
  return 0.5 * (1 + t) + 0.5 * x * (1 - t * t) * kGeluC * (1 + 3 * 0.044715 * x * x);
}

typedef struct {
  mdesc d;
  layout a, b, c;
  double alpha, beta;
  const void *A, *B;
  void* D;
} job;

static void runJob(void* arg) {
  job* j = arg;
  const int type = j->c.type;
  const size_t es = type == 1 ? 8 : type == 0 ? 4 : 2;
  const uint64_t M = j->c.rows, N = j->c.cols;
  const uint64_t K = j->d.transa ? j->a.rows : j->a.cols;
  const uint32_t e = j->d.epilogue;
  const int bias = (e & 4u) != 0, bgrad = (e & 16u) != 0;
  for (int32_t bi = 0; bi < j->c.batch; bi++) {
    const char* A = (const char*)j->A + (size_t)(bi * j->a.stride) * es;
    const char* B = (const char*)j->B + (size_t)(bi * j->b.stride) * es;
    char* D = (char*)j->D + (size_t)(bi * j->c.stride) * es;
    double* rowSums = bgrad ? calloc(M, sizeof(double)) : NULL;
    for (uint64_t col = 0; col < N; col++) {
      for (uint64_t row = 0; row < M; row++) {
        double sum = 0;
        for (uint64_t p = 0; p < K; p++) {
          double x = j->d.transa ? load(type, A, (int64_t)(p + row * j->a.ld)) : load(type, A, (int64_t)(row + p * j->a.ld));
          double y = j->d.transb ? load(type, B, (int64_t)(col + p * j->b.ld)) : load(type, B, (int64_t)(p + col * j->b.ld));
          if (j->d.compute == 68 && type == 0) { x = (float)x; y = (float)y; }
          sum += x * y;
        }
        const int64_t at = (int64_t)(row + col * j->c.ld);
        double t = j->alpha * sum + (j->beta != 0 ? j->beta * load(type, D, at) : 0);
        if (bias) t += load(type, j->d.bias, (int64_t)row);
        const int64_t auxAt = (int64_t)row + (int64_t)col * j->d.auxLd;
        uint8_t* mask = j->d.aux;
        switch (e) {
          case 2: case 6: t = t > 0 ? t : 0; break;
          case 130: case 134:
            if (t > 0) mask[auxAt / 8] |= (uint8_t)(1u << (auxAt % 8)); else mask[auxAt / 8] &= (uint8_t)~(1u << (auxAt % 8));
            t = t > 0 ? t : 0;
            break;
          case 32: case 36: t = gelu(t); break;
          case 160: case 164: store(type, j->d.aux, auxAt, t); t = gelu(t); break;
          case 136: case 152: t = (mask[auxAt / 8] >> (auxAt % 8)) & 1 ? t : 0; break;
          case 192: case 208: t = t * geluGrad(load(type, j->d.aux, auxAt)); break;
          default: break;
        }
        store(type, D, at, t);
        if (rowSums) rowSums[row] += t;
      }
    }
    if (rowSums) {
      for (uint64_t row = 0; row < M; row++) store(type, j->d.bias, (int64_t)row, rowSums[row]);
      free(rowSums);
    }
  }
  free(j);
}

static uint64_t (*enqueue)(void*, void (*)(void*), void*);

int cublasLtMatmul(handle_t* h, mdesc* d, const void* alpha, const void* A, layout* la, const void* B, layout* lb,
                   const void* beta, const void* C, layout* lc, void* D, layout* ld, const algo_t* algo,
                   void* workspace, size_t workspaceBytes, void* stream) {
  (void)h; (void)ld;
  if (!algo || algo->data[0] != 42) return 7;
  if (workspaceBytes && !workspace) return 7;
  if (C != D) return 15; /* ringtree always computes in place */
  if (failIs("matmul")) return 13;
  if (!enqueue) {
    const char* p = getenv("RINGTREE_CUDA_DRIVER_PATH");
    void* self = p ? dlopen(p, RTLD_LAZY | RTLD_NOLOAD) : NULL;
    enqueue = self ? (uint64_t (*)(void*, void (*)(void*), void*))dlsym(self, "fake_cuda_enqueue") : NULL;
    if (!enqueue) return 14; /* only works with fake_cuda */
  }
  logLine("matmul compute=%d workspace=%zu epilogue=%u\n", d->compute, workspaceBytes, d->epilogue);
  job* j = calloc(1, sizeof(job));
  j->d = *d;
  j->a = *la; j->b = *lb; j->c = *lc;
  /* Host pointer mode: the scalars are read now, as cuBLAS does. */
  j->alpha = d->scale == 1 ? *(const double*)alpha : *(const float*)alpha;
  j->beta = d->scale == 1 ? *(const double*)beta : *(const float*)beta;
  j->A = A; j->B = B; j->D = D;
  enqueue(stream, runJob, j);
  return 0;
}
