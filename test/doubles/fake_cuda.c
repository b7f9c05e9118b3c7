/* A test double for libcuda.so.1 (the CUDA driver API subset ringtree calls).
 * Host memory stands in for device memory; each stream is a thread draining a
 * FIFO, so stream order, events and cross-stream waits behave as on a GPU.
 * fake_nccl.c queues its collectives on these streams (fake_cuda_enqueue).
 * FAKE_CUDA_FAIL=init makes cuInit report no device; =alloc makes cuMemAlloc
 * run out of memory. FAKE_CUDA_DEVICES sets the device count (default 1).
 * FAKE_CUDA_STATS names a file that always holds the live allocation count.
 * Kernels: cuModuleLoadData accepts any image; cuModuleGetFunction knows the
 * kernels of native/cuda/kernels (the .cu files) by name and cuLaunchKernel runs the
 * same arithmetic on the host, on the stream (FAKE_CUDA_LAUNCH_LOG names a
 * file that gets one "<kernel> <count>" line per launch).
 * Built by test/cuda.test.ts with `cc -shared -fPIC`. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <stdio.h>
#include <unistd.h>

typedef int CUresult;
typedef struct item { void (*fn)(void*); void* arg; struct item* next; } item;
typedef struct fstream {
  pthread_mutex_t mu; pthread_cond_t cv; item *head, *tail;
  uint64_t enq, done; int stop; pthread_t thread;
} fstream;
typedef struct fevent { fstream* s; uint64_t target; double ms; } fevent;

static int failIs(const char* what) {
  const char* f = getenv("FAKE_CUDA_FAIL");
  return f && strstr(f, what) != NULL;
}
static void nap(void) { struct timespec t = {0, 100000}; nanosleep(&t, NULL); }

static void* streamMain(void* arg) {
  fstream* s = arg;
  for (;;) {
    pthread_mutex_lock(&s->mu);
    while (!s->head && !s->stop) pthread_cond_wait(&s->cv, &s->mu);
    if (!s->head) { pthread_mutex_unlock(&s->mu); return NULL; }
    item* it = s->head;
    s->head = it->next;
    if (!s->head) s->tail = NULL;
    pthread_mutex_unlock(&s->mu);
    it->fn(it->arg);
    free(it);
    __atomic_add_fetch(&s->done, 1, __ATOMIC_RELEASE);
  }
}

/* Queue fn(arg) on the stream; returns its position (for events). */
uint64_t fake_cuda_enqueue(void* stream, void (*fn)(void*), void* arg) {
  fstream* s = stream;
  item* it = calloc(1, sizeof(item));
  it->fn = fn; it->arg = arg;
  pthread_mutex_lock(&s->mu);
  if (s->tail) s->tail->next = it; else s->head = it;
  s->tail = it;
  uint64_t pos = ++s->enq;
  pthread_cond_signal(&s->cv);
  pthread_mutex_unlock(&s->mu);
  return pos;
}

typedef struct { void* dst; const void* src; size_t n; } copyArgs;
static void doCopy(void* a) { copyArgs* c = a; memmove(c->dst, c->src, c->n); free(c); }
typedef struct { void* dst; uint32_t v; size_t n; int w; } setArgs;
static void doSet(void* a) {
  setArgs* c = a;
  for (size_t i = 0; i < c->n; i++) {
    if (c->w == 1) ((uint8_t*)c->dst)[i] = (uint8_t)c->v;
    else if (c->w == 2) ((uint16_t*)c->dst)[i] = (uint16_t)c->v;
    else ((uint32_t*)c->dst)[i] = c->v;
  }
  free(c);
}
typedef struct { fevent e; } waitArgs;
static void doWait(void* a) {
  waitArgs* w = a;
  while (__atomic_load_n(&w->e.s->done, __ATOMIC_ACQUIRE) < w->e.target) nap();
  free(w);
}

CUresult cuDriverGetVersion(int* v) { *v = 12040; return 0; }
CUresult cuInit(unsigned f) { (void)f; return failIs("init") ? 100 : 0; }
CUresult cuDeviceGetCount(int* n) {
  const char* d = getenv("FAKE_CUDA_DEVICES");
  *n = d ? atoi(d) : 1;
  return 0;
}
CUresult cuDeviceGet(int* dev, int ordinal) {
  int n; cuDeviceGetCount(&n);
  if (ordinal < 0 || ordinal >= n) return 101;
  *dev = ordinal;
  return 0;
}
CUresult cuDeviceGetName(char* name, int len, int dev) {
  snprintf(name, (size_t)len, "Fake GPU %d", dev);
  return 0;
}
CUresult cuDeviceGetAttribute(int* v, int attr, int dev) {
  *v = attr == 75 ? 9 : attr == 33 ? 0x10 + dev : 0;
  return 0;
}
CUresult cuDeviceTotalMem(size_t* b, int dev) { (void)dev; *b = (size_t)1 << 34; return 0; }
static int ctxToken;
CUresult cuDevicePrimaryCtxRetain(void** ctx, int dev) { (void)dev; *ctx = &ctxToken; return 0; }
CUresult cuDevicePrimaryCtxRelease(int dev) { (void)dev; return 0; }
CUresult cuCtxSetCurrent(void* ctx) { (void)ctx; return 0; }
CUresult cuStreamCreate(void** out, unsigned flags) {
  (void)flags;
  fstream* s = calloc(1, sizeof(fstream));
  pthread_mutex_init(&s->mu, NULL);
  pthread_cond_init(&s->cv, NULL);
  pthread_create(&s->thread, NULL, streamMain, s);
  *out = s;
  return 0;
}
CUresult cuStreamDestroy(void* stream) {
  /* Like the driver: returns at once; the stream finishes its work, then goes. */
  fstream* s = stream;
  pthread_mutex_lock(&s->mu);
  s->stop = 1;
  pthread_cond_signal(&s->cv);
  pthread_mutex_unlock(&s->mu);
  pthread_detach(s->thread);
  return 0;
}
CUresult cuStreamSynchronize(void* stream) {
  fstream* s = stream;
  uint64_t target = __atomic_load_n(&s->enq, __ATOMIC_ACQUIRE);
  while (__atomic_load_n(&s->done, __ATOMIC_ACQUIRE) < target) nap();
  return 0;
}
CUresult cuEventCreate(void** e, unsigned flags) { (void)flags; *e = calloc(1, sizeof(fevent)); return 0; }
/* Runs on the stream when the event is reached: its time stamp (ms). */
static void stamp(void* ev) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  ((fevent*)ev)->ms = (double)t.tv_sec * 1e3 + (double)t.tv_nsec / 1e6;
}
CUresult cuEventRecord(void* ev, void* stream) {
  fevent* e = ev;
  e->s = stream;
  e->target = fake_cuda_enqueue(stream, stamp, e);
  return 0;
}
CUresult cuEventElapsedTime(float* ms, void* start, void* end) {
  fevent* a = start; fevent* b = end;
  if (!a->s || !b->s) return 400; /* CUDA_ERROR_INVALID_HANDLE: never recorded */
  if (__atomic_load_n(&a->s->done, __ATOMIC_ACQUIRE) < a->target || __atomic_load_n(&b->s->done, __ATOMIC_ACQUIRE) < b->target) return 600;
  *ms = (float)(b->ms - a->ms);
  return 0;
}
CUresult cuEventQuery(void* ev) {
  fevent* e = ev;
  if (!e->s) return 0;
  return __atomic_load_n(&e->s->done, __ATOMIC_ACQUIRE) >= e->target ? 0 : 600;
}
CUresult cuEventDestroy(void* ev) {
  fevent* e = ev;
  /* Still queued: its stamp will write into it, so it is left allocated (as the driver defers it). */
  if (e->s && __atomic_load_n(&e->s->done, __ATOMIC_ACQUIRE) < e->target) return 0;
  free(e);
  return 0;
}
CUresult cuStreamWaitEvent(void* stream, void* ev, unsigned flags) {
  (void)flags;
  waitArgs* w = calloc(1, sizeof(waitArgs));
  w->e = *(fevent*)ev;
  if (!w->e.s) { free(w); return 0; }
  fake_cuda_enqueue(stream, doWait, w);
  return 0;
}
/* Live allocations, written as "<live count>\n" to $FAKE_CUDA_STATS after each
 * cuMemAlloc/cuMemFree, so tests can see when memory was really freed. */
static long liveAllocs;
static void writeStats(void) {
  const char* path = getenv("FAKE_CUDA_STATS");
  if (!path) return;
  char tmp[4096], line[32];
  snprintf(tmp, sizeof tmp, "%s.%d.tmp", path, getpid());
  FILE* f = fopen(tmp, "w");
  if (!f) return;
  snprintf(line, sizeof line, "%ld\n", __atomic_load_n(&liveAllocs, __ATOMIC_ACQUIRE));
  fputs(line, f);
  fclose(f);
  rename(tmp, path);
}
CUresult cuMemAlloc(uint64_t* p, size_t n) {
  if (failIs("alloc")) return 2;
  void* m = calloc(1, n ? n : 1);
  if (!m) return 2;
  *p = (uint64_t)(uintptr_t)m;
  __atomic_add_fetch(&liveAllocs, 1, __ATOMIC_ACQ_REL);
  writeStats();
  return 0;
}
CUresult cuMemFree(uint64_t p) {
  free((void*)(uintptr_t)p);
  __atomic_sub_fetch(&liveAllocs, 1, __ATOMIC_ACQ_REL);
  writeStats();
  return 0;
}
static CUresult queueCopy(void* dst, const void* src, size_t n, void* stream) {
  copyArgs* c = malloc(sizeof(copyArgs));
  c->dst = dst; c->src = src; c->n = n;
  fake_cuda_enqueue(stream, doCopy, c);
  return 0;
}
CUresult cuMemcpyHtoDAsync(uint64_t d, const void* h, size_t n, void* s) { return queueCopy((void*)(uintptr_t)d, h, n, s); }
CUresult cuMemcpyDtoHAsync(void* h, uint64_t d, size_t n, void* s) { return queueCopy(h, (void*)(uintptr_t)d, n, s); }
CUresult cuMemcpyDtoDAsync(uint64_t d, uint64_t src, size_t n, void* s) {
  return queueCopy((void*)(uintptr_t)d, (void*)(uintptr_t)src, n, s);
}
static CUresult queueSet(uint64_t d, uint32_t v, size_t n, int w, void* s) {
  setArgs* c = malloc(sizeof(setArgs));
  c->dst = (void*)(uintptr_t)d; c->v = v; c->n = n; c->w = w;
  fake_cuda_enqueue(s, doSet, c);
  return 0;
}
CUresult cuMemsetD8Async(uint64_t d, unsigned char v, size_t n, void* s) { return queueSet(d, v, n, 1, s); }
CUresult cuMemsetD16Async(uint64_t d, unsigned short v, size_t n, void* s) { return queueSet(d, v, n, 2, s); }
CUresult cuMemsetD32Async(uint64_t d, unsigned v, size_t n, void* s) { return queueSet(d, v, n, 4, s); }
/* ---- kernels (the .cu files in native/cuda/kernels), bit for bit on the host ---- */
static uint32_t bitsOf(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }
static float floatOf(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }
static float scaled(float x, float scale) { return (x != x || scale == 1.0f) ? x : x * scale; }
static uint16_t bf16FromF32Bits(uint32_t u) {
  if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40u);
  return (uint16_t)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}
static uint16_t f16FromF32Bits(uint32_t u) {
  uint32_t sign = (u >> 16) & 0x8000u, magnitude = u & 0x7fffffffu;
  if (magnitude > 0x7f800000u) return (uint16_t)(sign | 0x7e00u | ((magnitude >> 13) & 0x3ffu));
  if (magnitude >= 0x477ff000u) return (uint16_t)(sign | 0x7c00u);
  if (magnitude >= 0x38800000u) {
    uint32_t rebased = magnitude - 0x38000000u;
    return (uint16_t)(sign | ((rebased + 0xfffu + ((rebased >> 13) & 1u)) >> 13));
  }
  uint32_t shift = 126u - (magnitude >> 23);
  if (shift > 24u) return (uint16_t)sign;
  uint32_t mantissa = (magnitude & 0x7fffffu) | 0x800000u, units = mantissa >> shift;
  uint32_t rest = mantissa & ((1u << shift) - 1u), half = 1u << (shift - 1u);
  if (rest > half || (rest == half && (units & 1u))) units += 1u;
  return (uint16_t)(sign | units);
}
static float f32FromBf16(uint16_t h) {
  uint32_t bits = (uint32_t)h << 16;
  return floatOf((h & 0x7fffu) > 0x7f80u ? bits | 0x400000u : bits);
}
static float f32FromF16(uint16_t h) {
  uint32_t sign = (uint32_t)(h & 0x8000u) << 16, exponent = (h >> 10) & 0x1fu, mantissa = h & 0x3ffu;
  if (exponent == 0x1fu) return floatOf(sign | 0x7f800000u | (mantissa << 13) | (mantissa ? 0x400000u : 0u));
  if (exponent == 0u) return floatOf(sign | bitsOf((float)mantissa * 5.9604644775390625e-8f));
  return floatOf(sign | ((exponent + 112u) << 23) | (mantissa << 13));
}

enum { K_F32_BF16, K_F32_F16, K_BF16_F32, K_F16_F32, K_SCALE_F32, K_FILL_U64 };
typedef struct { const char* name; int kind; } fkernel;
static fkernel kernels[] = {
  {"ringtree_cast_f32_bf16", K_F32_BF16}, {"ringtree_cast_f32_f16", K_F32_F16}, {"ringtree_cast_bf16_f32", K_BF16_F32},
  {"ringtree_cast_f16_f32", K_F16_F32}, {"ringtree_scale_f32", K_SCALE_F32}, {"ringtree_fill_u64", K_FILL_U64},
};
static int moduleToken;
CUresult cuModuleLoadData(void** mod, const void* image) {
  if (!image) return 1;
  *mod = &moduleToken;
  return 0;
}
CUresult cuModuleGetFunction(void** fn, void* mod, const char* name) {
  (void)mod;
  for (size_t i = 0; i < sizeof kernels / sizeof kernels[0]; i++) {
    if (strcmp(kernels[i].name, name) == 0) { *fn = &kernels[i]; return 0; }
  }
  return 500; /* CUDA_ERROR_NOT_FOUND */
}
/* Arguments are copied at launch, as the driver does. */
typedef struct { int kind; uint64_t in, out, count, bits; float scale; } launchArgs;
static void runKernel(void* a) {
  launchArgs* k = a;
  for (uint64_t i = 0; i < k->count; i++) {
    switch (k->kind) {
      case K_F32_BF16: ((uint16_t*)(uintptr_t)k->out)[i] = bf16FromF32Bits(bitsOf(scaled(((float*)(uintptr_t)k->in)[i], k->scale))); break;
      case K_F32_F16: ((uint16_t*)(uintptr_t)k->out)[i] = f16FromF32Bits(bitsOf(scaled(((float*)(uintptr_t)k->in)[i], k->scale))); break;
      case K_BF16_F32: ((float*)(uintptr_t)k->out)[i] = scaled(f32FromBf16(((uint16_t*)(uintptr_t)k->in)[i]), k->scale); break;
      case K_F16_F32: ((float*)(uintptr_t)k->out)[i] = scaled(f32FromF16(((uint16_t*)(uintptr_t)k->in)[i]), k->scale); break;
      case K_SCALE_F32: ((float*)(uintptr_t)k->out)[i] = scaled(((float*)(uintptr_t)k->in)[i], k->scale); break;
      case K_FILL_U64: ((uint64_t*)(uintptr_t)k->out)[i] = k->bits; break;
    }
  }
  free(k);
}
CUresult cuLaunchKernel(void* fn, unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by, unsigned bz,
                        unsigned shmem, void* stream, void** params, void** extra) {
  (void)gy; (void)gz; (void)by; (void)bz; (void)shmem; (void)extra;
  fkernel* f = fn;
  if (!f || !params || gx == 0 || bx == 0) return 1;
  launchArgs* k = calloc(1, sizeof(launchArgs));
  k->kind = f->kind;
  if (f->kind == K_FILL_U64) {
    memcpy(&k->out, params[0], 8); memcpy(&k->count, params[1], 8); memcpy(&k->bits, params[2], 8);
  } else {
    memcpy(&k->in, params[0], 8); memcpy(&k->out, params[1], 8); memcpy(&k->count, params[2], 8); memcpy(&k->scale, params[3], 4);
  }
  /* The grid must cover the work through the kernels' grid-stride loop: any non-empty grid does. */
  const char* log = getenv("FAKE_CUDA_LAUNCH_LOG");
  if (log) {
    FILE* l = fopen(log, "a");
    if (l) { fprintf(l, "%s %llu\n", f->name, (unsigned long long)k->count); fclose(l); }
  }
  fake_cuda_enqueue(stream, runKernel, k);
  return 0;
}

CUresult cuGetErrorName(CUresult r, const char** s) {
  *s = r == 2 ? "CUDA_ERROR_OUT_OF_MEMORY" : r == 100 ? "CUDA_ERROR_NO_DEVICE" : r == 101 ? "CUDA_ERROR_INVALID_DEVICE" : "CUDA_ERROR_UNKNOWN";
  return 0;
}
CUresult cuGetErrorString(CUresult r, const char** s) {
  *s = r == 2 ? "out of memory" : r == 100 ? "no CUDA-capable device is detected" : "fake error";
  return 0;
}
/* Hands out our own entry points, as the driver hands out versioned ones. */
CUresult cuGetProcAddress(const char* name, void** fn, int version, uint64_t flags) {
  (void)version; (void)flags;
  Dl_info info;
  if (!dladdr((void*)cuGetProcAddress, &info)) return 500;
  void* self = dlopen(info.dli_fname, RTLD_LAZY | RTLD_NOLOAD);
  *fn = self ? dlsym(self, name) : NULL;
  if (self) dlclose(self);
  return *fn ? 0 : 500;
}
