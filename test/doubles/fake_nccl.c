/* A test double for libnccl.so.2: collectives done across real processes
 * through POSIX shared memory named by the unique id, queued on fake_cuda's
 * streams so completion is observed through events as on a GPU.
 * Non-blocking communicators return ncclInProgress and settle after a few
 * ncclCommGetAsyncError polls. Injected faults (env, "rank:what[:n]" items
 * separated by commas):
 *   FAKE_NCCL_FAIL=1:init      rank 1's communicator fails to initialise (ncclSystemError)
 *   FAKE_NCCL_FAIL=1:async:2   rank 1's 2nd collective raises an async ncclRemoteError and never completes
 *   FAKE_NCCL_HANG=1:2         rank 1's 2nd collective never completes (until ncclCommAbort)
 * FAKE_NCCL_VERSION overrides the reported version code (default 21903).
 * FAKE_NCCL_ALGO_LOG names a file that gets "<rank> <NCCL_ALGO>" per communicator made
 * and "<rank> split <color>" per ncclCommSplit call.
 * Built by test/cuda.test.ts with `cc -shared -fPIC`. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define MAXR 8
#define REGION ((size_t)8 << 20)
#define MBOX ((size_t)1 << 20)

typedef struct { char internal[128]; } ncclUniqueId;
typedef struct {
  size_t size; unsigned magic; unsigned version; int blocking; int cga; int minC; int maxC; const char* net; int split;
} ncclConfig_t;
typedef struct { uint64_t seq, ack, bytes; } mbox;
typedef struct {
  uint64_t arrive[MAXR]; mbox box[MAXR][MAXR];
  int splitColor[MAXR], splitKey[MAXR]; uint64_t splitIn[MAXR], splitOut[MAXR];  /* ncclCommSplit exchange */
} header;
typedef struct comm {
  int rank, size, state, polls, aborted;
  uint64_t gen, collectives, splits;
  char name[128];
  header* h;
  char* regions;  /* MAXR * REGION */
  char* boxes;    /* MAXR * MAXR * MBOX */
  int inGroup, blocking;
  struct call* group;
  int ngroup;
  char last[256];
} comm;
typedef struct call {
  comm* c; int kind; const void* send; void* recv; size_t count; int dtype, op, root; uint64_t n;
  int hang, asyncFail;
  void* stream;
} call;
enum { ALLREDUCE, REDUCESCATTER, ALLGATHER, BROADCAST, REDUCE, SEND, RECV };

static uint64_t (*enqueue)(void*, void (*)(void*), void*);
static void nap(void) { struct timespec t = {0, 50000}; nanosleep(&t, NULL); }

/* "rank:what[:n]" items: does one match this rank, what and collective n? */
static int injected(const char* var, int rank, const char* what, uint64_t n) {
  const char* v = getenv(var);
  if (!v) return 0;
  char buf[256];
  snprintf(buf, sizeof buf, "%s", v);
  for (char* save = NULL, *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
    int r = -1; char w[32] = {0}; unsigned long long k = 0;
    int got = sscanf(tok, "%d:%31[^:]:%llu", &r, w, &k);
    if (what == NULL) { /* FAKE_NCCL_HANG=rank:n */
      if (sscanf(tok, "%d:%llu", &r, &k) == 2 && r == rank && k == n) return 1;
      continue;
    }
    if (got >= 2 && r == rank && strcmp(w, what) == 0 && (got < 3 || k == n)) return 1;
  }
  return 0;
}

static size_t dsize(int t) {
  switch (t) { case 0: case 1: return 1; case 6: case 9: return 2; case 2: case 3: case 7: return 4; default: return 8; }
}
static float half2f(uint16_t h) {
  uint32_t s = (uint32_t)(h >> 15) << 31, e = (h >> 10) & 31, m = h & 1023, f;
  if (e == 0) { float v = (float)m / 16777216.0f; return s ? -v : v; }
  if (e == 31) f = s | 0x7f800000u | (m << 13);
  else f = s | ((e + 112) << 23) | (m << 13);
  float out; memcpy(&out, &f, 4); return out;
}
/* Round to nearest-even with subnormals, as the CPU engine (and a GPU) does. */
static uint16_t f2half(float x) {
  uint32_t u; memcpy(&u, &x, 4);
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
static float bf2f(uint16_t b) { uint32_t f = (uint32_t)b << 16; float o; memcpy(&o, &f, 4); return o; }
static uint16_t f2bf(float x) {
  uint32_t f; memcpy(&f, &x, 4);
  if ((f & 0x7fffffff) > 0x7f800000) return (uint16_t)((f >> 16) | 64);
  return (uint16_t)((f + 0x7fff + ((f >> 16) & 1)) >> 16);
}
static double load(const char* p, int t, size_t i) {
  switch (t) {
    case 0: return ((const int8_t*)p)[i]; case 1: return ((const uint8_t*)p)[i];
    case 2: return ((const int32_t*)p)[i]; case 3: return ((const uint32_t*)p)[i];
    case 4: return (double)((const int64_t*)p)[i]; case 5: return (double)((const uint64_t*)p)[i];
    case 6: return half2f(((const uint16_t*)p)[i]); case 9: return bf2f(((const uint16_t*)p)[i]);
    case 7: return ((const float*)p)[i]; default: return ((const double*)p)[i];
  }
}
static void store(char* p, int t, size_t i, double v) {
  switch (t) {
    case 0: ((int8_t*)p)[i] = (int8_t)v; break; case 1: ((uint8_t*)p)[i] = (uint8_t)v; break;
    case 2: ((int32_t*)p)[i] = (int32_t)v; break; case 3: ((uint32_t*)p)[i] = (uint32_t)v; break;
    case 4: ((int64_t*)p)[i] = (int64_t)v; break; case 5: ((uint64_t*)p)[i] = (uint64_t)v; break;
    case 6: ((uint16_t*)p)[i] = f2half((float)v); break; case 9: ((uint16_t*)p)[i] = f2bf((float)v); break;
    case 7: ((float*)p)[i] = (float)v; break; default: ((double*)p)[i] = v;
  }
}
/* Reduce element i over every rank's region (at byte offset off). */
static void reduceInto(comm* c, char* out, size_t outIndex, size_t off, size_t i, int t, int op) {
  double acc = 0;
  int isInt = t <= 5;
  for (int r = 0; r < c->size; r++) {
    double v = load(c->regions + (size_t)r * REGION + off, t, i);
    if (r == 0) { acc = v; continue; }
    if (op == 0 || op == 4) acc += v; else if (op == 1) acc *= v;
    else if (op == 2) acc = v > acc ? v : acc; else acc = v < acc ? v : acc;
  }
  if (op == 4) acc = isInt ? (double)(long long)(acc / c->size) : acc / c->size;
  /* f32 sums are accumulated in double; round like f32 per step would not matter for small tests. */
  store(out, t, outIndex, acc);
}

/* Wait until every rank arrived at barrier b; false when aborted. */
static int barrier(comm* c, uint64_t b) {
  __atomic_store_n(&c->h->arrive[c->rank], b, __ATOMIC_RELEASE);
  for (int r = 0; r < c->size; r++) {
    while (__atomic_load_n(&c->h->arrive[r], __ATOMIC_ACQUIRE) < b) {
      if (__atomic_load_n(&c->aborted, __ATOMIC_ACQUIRE)) return 0;
      nap();
    }
  }
  return 1;
}

static void runCollective(comm* c, call* k) {
  size_t es = dsize(k->dtype), n = k->count;
  size_t inBytes = k->kind == REDUCESCATTER ? n * es * (size_t)c->size : n * es;
  if (k->hang || k->asyncFail) {
    while (!__atomic_load_n(&c->aborted, __ATOMIC_ACQUIRE)) nap();
    return;
  }
  uint64_t g = ++c->gen;
  if (k->kind != BROADCAST || c->rank == k->root) memcpy(c->regions + (size_t)c->rank * REGION, k->send, inBytes);
  if (!barrier(c, 2 * g)) return;
  switch (k->kind) {
    case ALLREDUCE: for (size_t i = 0; i < n; i++) reduceInto(c, k->recv, i, 0, i, k->dtype, k->op); break;
    case REDUCE: if (c->rank == k->root) for (size_t i = 0; i < n; i++) reduceInto(c, k->recv, i, 0, i, k->dtype, k->op); break;
    case REDUCESCATTER:
      for (size_t i = 0; i < n; i++) reduceInto(c, k->recv, i, 0, (size_t)c->rank * n + i, k->dtype, k->op);
      break;
    case ALLGATHER:
      for (int r = 0; r < c->size; r++) memcpy((char*)k->recv + (size_t)r * n * es, c->regions + (size_t)r * REGION, n * es);
      break;
    case BROADCAST: memcpy(k->recv, c->regions + (size_t)k->root * REGION, n * es); break;
  }
  barrier(c, 2 * g + 1);
}

static void runP2p(comm* c, call* k) {
  size_t bytes = k->count * dsize(k->dtype);
  if (k->kind == SEND) {
    mbox* b = &c->h->box[c->rank][k->root];
    char* data = c->boxes + ((size_t)c->rank * MAXR + (size_t)k->root) * MBOX;
    while (__atomic_load_n(&b->seq, __ATOMIC_ACQUIRE) != __atomic_load_n(&b->ack, __ATOMIC_ACQUIRE)) {
      if (__atomic_load_n(&c->aborted, __ATOMIC_ACQUIRE)) return;
      nap();
    }
    memcpy(data, k->send, bytes);
    b->bytes = bytes;
    __atomic_add_fetch(&b->seq, 1, __ATOMIC_RELEASE);
  } else {
    mbox* b = &c->h->box[k->root][c->rank];
    char* data = c->boxes + ((size_t)k->root * MAXR + (size_t)c->rank) * MBOX;
    while (__atomic_load_n(&b->seq, __ATOMIC_ACQUIRE) == __atomic_load_n(&b->ack, __ATOMIC_ACQUIRE)) {
      if (__atomic_load_n(&c->aborted, __ATOMIC_ACQUIRE)) return;
      nap();
    }
    memcpy(k->recv, data, bytes < b->bytes ? bytes : b->bytes);
    __atomic_add_fetch(&b->ack, 1, __ATOMIC_RELEASE);
  }
}

typedef struct { call* calls; int n; } batch;
static void runBatch(void* a) {
  batch* b = a;
  comm* c = b->calls[0].c;
  for (int pass = 0; pass < 2; pass++) {  /* sends first, then receives (a group never deadlocks itself) */
    for (int i = 0; i < b->n; i++) {
      call* k = &b->calls[i];
      if (k->kind < SEND) { if (pass == 0) runCollective(c, k); }
      else if ((k->kind == SEND) == (pass == 0)) runP2p(c, k);
    }
  }
  free(b->calls);
  free(b);
}

int ncclGetVersion(int* v) { const char* e = getenv("FAKE_NCCL_VERSION"); *v = e ? atoi(e) : 21903; return 0; }
const char* ncclGetErrorString(int r) {
  static const char* s[] = {"no error", "unhandled cuda error", "unhandled system error", "internal error",
                            "invalid argument", "invalid usage", "remote process exited or there was a network error",
                            "NCCL operation in progress"};
  return r >= 0 && r < 8 ? s[r] : "unknown result code";
}
const char* ncclGetLastError(comm* c) { return c ? c->last : ""; }

int ncclGetUniqueId(ncclUniqueId* id) {
  memset(id, 0, sizeof *id);
  struct timespec t; clock_gettime(CLOCK_REALTIME, &t);
  snprintf(id->internal, sizeof id->internal, "/fakenccl-%d-%lx-%lx", getpid(), (long)t.tv_nsec, random());
  return 0;
}

int ncclCommInitRankConfig(comm** out, int nranks, ncclUniqueId id, int rank, ncclConfig_t* config) {
  if (!enqueue) {
    const char* p = getenv("RINGTREE_CUDA_DRIVER_PATH");
    void* h = p ? dlopen(p, RTLD_LAZY | RTLD_NOLOAD) : NULL;
    enqueue = h ? (uint64_t (*)(void*, void (*)(void*), void*))dlsym(h, "fake_cuda_enqueue") : NULL;
    if (!enqueue) return 1;  /* only works with fake_cuda */
  }
  if (!config || config->magic != 0xcafebeef || config->size < sizeof(ncclConfig_t) || nranks > MAXR || rank < 0 || rank >= nranks) return 4;
  comm* c = calloc(1, sizeof(comm));
  c->rank = rank; c->size = nranks; c->blocking = config->blocking != 0;
  snprintf(c->name, sizeof c->name, "%s", id.internal);
  size_t total = sizeof(header) + (size_t)MAXR * REGION + (size_t)MAXR * MAXR * MBOX;
  int fd = shm_open(c->name, O_CREAT | O_RDWR, 0600);
  if (fd < 0 || ftruncate(fd, (off_t)total) != 0) return 2;
  char* base = mmap(NULL, total, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  close(fd);
  if (base == MAP_FAILED) return 2;
  c->h = (header*)base;
  c->regions = base + sizeof(header);
  c->boxes = c->regions + (size_t)MAXR * REGION;
  *out = c;
  /* FAKE_NCCL_ALGO_LOG: append "<rank> <NCCL_ALGO or -> " as seen while the communicator is made. */
  const char* algoLog = getenv("FAKE_NCCL_ALGO_LOG");
  if (algoLog) {
    FILE* f = fopen(algoLog, "a");
    const char* algo = getenv("NCCL_ALGO");
    if (f) { fprintf(f, "%d %s\n", rank, algo ? algo : "-"); fclose(f); }
  }
  if (injected("FAKE_NCCL_FAIL", rank, "init", 0)) { c->state = 2; snprintf(c->last, sizeof c->last, "injected init failure"); }
  else c->state = config->blocking == 0 ? 7 : 0;
  /* Rendezvous happens in the first poll (so it is asynchronous, as in NCCL). */
  return config->blocking == 0 ? 7 : c->state;
}

int ncclCommGetAsyncError(comm* c, int* state) {
  if (c->state == 7) {
    if (c->gen == 0 && c->collectives == 0 && c->polls == 0) {
      /* Init: all ranks present. Bounded by the caller's deadline through repeated polls. */
      __atomic_store_n(&c->h->arrive[c->rank], 1, __ATOMIC_RELEASE);
      int all = 1;
      for (int r = 0; r < c->size; r++) all &= __atomic_load_n(&c->h->arrive[r], __ATOMIC_ACQUIRE) >= 1;
      if (!all) { *state = 7; return 0; }
      c->polls = 1;
      if (c->rank == 0) shm_unlink(c->name);  /* everyone has it mapped */
    }
    if (++c->polls > 3) c->state = 0;
  }
  *state = c->state;
  return 0;
}

/* Group nesting depth and the communicator whose calls it collects (one
 * communicator per group here; per thread, as in NCCL). */
static __thread int groupDepth;
static __thread comm* groupComm;
static int submit(comm* c, call k) {
  if (c->aborted) return 5;
  k.c = c;
  if (k.kind < SEND) {
    k.n = ++c->collectives;
    k.hang = injected("FAKE_NCCL_HANG", c->rank, NULL, k.n);
    k.asyncFail = injected("FAKE_NCCL_FAIL", c->rank, "async", k.n);
    if (k.asyncFail) { c->state = 6; snprintf(c->last, sizeof c->last, "injected remote error"); }
  }
  if (groupDepth > 0) {
    groupComm = c; c->inGroup = 1;
    c->group = realloc(c->group, sizeof(call) * (size_t)(c->ngroup + 1));
    c->group[c->ngroup++] = k;
    return 0;
  }
  batch* b = malloc(sizeof(batch));
  b->calls = malloc(sizeof(call)); b->calls[0] = k; b->n = 1;
  enqueue(k.stream, runBatch, b);
  /* Non-blocking: the call reports ncclInProgress and settles after a few polls. */
  if (!c->blocking && c->state == 0) { c->state = 7; c->polls = 1; return 7; }
  return c->state == 7 ? 7 : 0;
}

int ncclGroupStart(void) { groupDepth++; return 0; }
int ncclGroupEnd(void) {
  if (groupDepth == 0) return 5;  /* ncclInvalidUsage */
  if (--groupDepth > 0) return 0;
  comm* c = groupComm;
  groupComm = NULL;
  if (!c || c->ngroup == 0) return 0;
  batch* b = malloc(sizeof(batch));
  b->calls = c->group; b->n = c->ngroup;
  c->group = NULL; c->ngroup = 0; c->inGroup = 0;
  enqueue(b->calls[0].stream, runBatch, b);
  if (!c->blocking && c->state == 0) { c->state = 7; c->polls = 1; return 7; }
  return 0;
}
/* ncclSend/ncclRecv outside ncclGroupStart/End run alone. Inside a group, a
 * batch runs its sends, then its receives; one message per (sender, receiver)
 * pair is in flight at a time. */
static int p2p(comm* c, call k) { return submit(c, k); }

int ncclAllReduce(const void* s, void* r, size_t n, int t, int op, comm* c, void* st) {
  call k = {0}; k.kind = ALLREDUCE; k.send = s; k.recv = r; k.count = n; k.dtype = t; k.op = op; k.stream = st;
  return submit(c, k);
}
int ncclReduceScatter(const void* s, void* r, size_t n, int t, int op, comm* c, void* st) {
  call k = {0}; k.kind = REDUCESCATTER; k.send = s; k.recv = r; k.count = n; k.dtype = t; k.op = op; k.stream = st;
  return submit(c, k);
}
int ncclAllGather(const void* s, void* r, size_t n, int t, comm* c, void* st) {
  call k = {0}; k.kind = ALLGATHER; k.send = s; k.recv = r; k.count = n; k.dtype = t; k.stream = st;
  return submit(c, k);
}
int ncclBroadcast(const void* s, void* r, size_t n, int t, int root, comm* c, void* st) {
  call k = {0}; k.kind = BROADCAST; k.send = s; k.recv = r; k.count = n; k.dtype = t; k.root = root; k.stream = st;
  return submit(c, k);
}
int ncclReduce(const void* s, void* r, size_t n, int t, int op, int root, comm* c, void* st) {
  call k = {0}; k.kind = REDUCE; k.send = s; k.recv = r; k.count = n; k.dtype = t; k.op = op; k.root = root; k.stream = st;
  return submit(c, k);
}
int ncclSend(const void* s, size_t n, int t, int peer, comm* c, void* st) {
  call k = {0}; k.kind = SEND; k.send = s; k.count = n; k.dtype = t; k.root = peer; k.stream = st;
  return p2p(c, k);
}
int ncclRecv(void* r, size_t n, int t, int peer, comm* c, void* st) {
  call k = {0}; k.kind = RECV; k.recv = r; k.count = n; k.dtype = t; k.root = peer; k.stream = st;
  return p2p(c, k);
}
/* Abort: waiting collectives return at once (the memory stays mapped: the
 * stream thread may still be reading it). */
int ncclCommAbort(comm* c) { if (c) __atomic_store_n(&c->aborted, 1, __ATOMIC_RELEASE); return 0; }
int ncclCommFinalize(comm* c) { (void)c; return 0; }
int ncclCommDestroy(comm* c) { return ncclCommAbort(c); }
/* Wait (bounded: 30 s, or until aborted) until every rank's slot[r] >= g. */
static int waitAll(comm* c, uint64_t* slot, uint64_t g) {
  for (int r = 0; r < c->size; r++) {
    for (long i = 0; __atomic_load_n(&slot[r], __ATOMIC_ACQUIRE) < g; i++) {
      if (__atomic_load_n(&c->aborted, __ATOMIC_ACQUIRE) || i > 600000) return 0;
      nap();
    }
  }
  return 1;
}
/* Every rank of `c` exchanges (color, key) through the parent's shared header;
 * members of a color are ranked by (key, parent rank) and make their
 * communicator as ncclCommInitRankConfig would, from a name derived from the
 * parent's. NCCL_SPLIT_NOCOLOR (-1): *out = NULL. */
int ncclCommSplit(comm* c, int color, int key, comm** out, ncclConfig_t* cfg) {
  *out = NULL;
  if (!c || c->aborted) return 5;
  uint64_t g = ++c->splits;
  const char* algoLog = getenv("FAKE_NCCL_ALGO_LOG");
  if (algoLog) {
    FILE* f = fopen(algoLog, "a");
    if (f) { fprintf(f, "%d split %d\n", c->rank, color); fclose(f); }
  }
  c->h->splitColor[c->rank] = color;
  c->h->splitKey[c->rank] = key;
  __atomic_store_n(&c->h->splitIn[c->rank], g, __ATOMIC_RELEASE);
  if (!waitAll(c, c->h->splitIn, g)) return 6;
  int newRank = 0, newSize = 0;
  for (int r = 0; r < c->size; r++) {
    if (c->h->splitColor[r] != color) continue;
    newSize++;
    int k = c->h->splitKey[r];
    if (k < key || (k == key && r < c->rank)) newRank++;
  }
  /* Nobody reuses the exchange slots until every rank has read them. */
  __atomic_store_n(&c->h->splitOut[c->rank], g, __ATOMIC_RELEASE);
  if (!waitAll(c, c->h->splitOut, g)) return 6;
  if (color < 0) return 0;
  ncclUniqueId id;
  memset(&id, 0, sizeof id);
  snprintf(id.internal, sizeof id.internal, "%s-s%llu-c%d", c->name, (unsigned long long)g, color);
  return ncclCommInitRankConfig(out, newSize, id, newRank, cfg);
}
