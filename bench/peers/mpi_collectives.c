// The Open MPI peer of `ringtree bench`: the same collectives, sizes, timing
// and columns (nccl-tests'), float32 sum, so the two can be run side by side.
//
//   mpicc -O2 -o build/bench/mpi_collectives bench/peers/mpi_collectives.c
//   mpirun --allow-run-as-root --oversubscribe -np 2 build/bench/mpi_collectives
//       allreduce -b 1M -e 128M -f 2 -n 0 -w 3 -R 5 -c 1
//
// Timing as ringtree bench's rank program: per size, warm-up (-w ops per
// placement), then -R repetitions (a barrier before each) of -n ops issued
// back to back (-n 0: two probes of ~2 ms sized from the warm-up, then chosen
// so a repetition takes ~20 ms, 1..100000, decided by rank 0); a
// repetition's time per op is averaged over ranks; the row shows the median
// repetition. Buffers are allocated and touched once at the largest size, as
// ringtree's are. The check fills
// small integers whose float sums are exact, so #wrong is exact.
//
// In place as NCCL defines it: allreduce/broadcast/reduce MPI_IN_PLACE on one
// buffer; reducescatter MPI_Reduce_scatter_block(MPI_IN_PLACE) with the
// result at the start of the buffer (MPI's position, not NCCL's rank offset);
// allgather MPI_IN_PLACE with the rank's block at rank*count (NCCL's).
// sendrecv has no in-place form (N/A).
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <ctype.h>

enum coll { ALLREDUCE, REDUCESCATTER, ALLGATHER, BROADCAST, REDUCE, SENDRECV };
static const char *coll_names[] = {"allreduce", "reducescatter", "allgather", "broadcast", "reduce", "sendrecv"};

static int rank, nranks, root = 0;

static long parse_size(const char *s) {
  char *end;
  long v = strtol(s, &end, 10);
  switch (tolower((unsigned char)*end)) {
    case 'k': v <<= 10; break;
    case 'm': v <<= 20; break;
    case 'g': v <<= 30; break;
    default: break;
  }
  return v;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

static double median(double *v, int n) {
  qsort(v, n, sizeof *v, cmp_double);
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static float input_value(int r, long i) { return (float)((r + i) % 3 + 1); }

// One op of collective c at count (per-rank block for RS/AG) in place or not.
static void run_op(enum coll c, float *send, float *recv, long count, int in_place) {
  int to = (rank + 1) % nranks, from = (rank - 1 + nranks) % nranks;
  switch (c) {
    case ALLREDUCE:
      if (in_place) MPI_Allreduce(MPI_IN_PLACE, recv, (int)count, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
      else MPI_Allreduce(send, recv, (int)count, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
      break;
    case REDUCESCATTER:
      if (in_place) MPI_Reduce_scatter_block(MPI_IN_PLACE, recv, (int)count, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
      else MPI_Reduce_scatter_block(send, recv, (int)count, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
      break;
    case ALLGATHER:
      if (in_place) MPI_Allgather(MPI_IN_PLACE, 0, MPI_FLOAT, recv, (int)count, MPI_FLOAT, MPI_COMM_WORLD);
      else MPI_Allgather(send, (int)count, MPI_FLOAT, recv, (int)count, MPI_FLOAT, MPI_COMM_WORLD);
      break;
    case BROADCAST:
      // MPI_Bcast is always in place; out of place copies first, as NCCL's does on the root.
      if (!in_place && rank == root) memcpy(recv, send, count * sizeof(float));
      MPI_Bcast(recv, (int)count, MPI_FLOAT, root, MPI_COMM_WORLD);
      break;
    case REDUCE:
      if (in_place) MPI_Reduce(rank == root ? MPI_IN_PLACE : recv, rank == root ? recv : NULL, (int)count, MPI_FLOAT, MPI_SUM, root, MPI_COMM_WORLD);
      else MPI_Reduce(send, recv, (int)count, MPI_FLOAT, MPI_SUM, root, MPI_COMM_WORLD);
      break;
    case SENDRECV:
      MPI_Sendrecv(send, (int)count, MPI_FLOAT, to, 0, recv, (int)count, MPI_FLOAT, from, 0, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
      break;
  }
}

// Fill inputs with the check pattern, run one op, count wrong elements here.
static long check(enum coll c, float *send, float *recv, long count, int in_place) {
  long total = (c == ALLGATHER || c == REDUCESCATTER) ? count * nranks : count;
  memset(recv, 0, total * sizeof(float));
  float *in = in_place ? recv : send;
  long in_len = c == REDUCESCATTER ? count * nranks : count;
  long in_off = (c == ALLGATHER && in_place) ? rank * count : 0;
  if (c != BROADCAST || rank == root) {
    for (long j = 0; j < in_len; j++) in[in_off + j] = input_value(rank, j);
  }
  run_op(c, send, recv, count, in_place);
  long wrong = 0;
  switch (c) {
    case ALLREDUCE:
    case REDUCE:
      if (c == REDUCE && rank != root) break;
      for (long j = 0; j < count; j++) {
        float e = 0;
        for (int r = 0; r < nranks; r++) e += input_value(r, j);
        wrong += recv[j] != e;
      }
      break;
    case REDUCESCATTER:
      for (long j = 0; j < count; j++) {
        float e = 0;
        for (int r = 0; r < nranks; r++) e += input_value(r, rank * count + j);
        wrong += recv[j] != e;
      }
      break;
    case ALLGATHER:
      for (long j = 0; j < count * nranks; j++) wrong += recv[j] != input_value((int)(j / count), j % count);
      break;
    case BROADCAST:
      for (long j = 0; j < count; j++) wrong += recv[j] != input_value(root, j);
      break;
    case SENDRECV:
      for (long j = 0; j < count; j++) wrong += recv[j] != input_value((rank - 1 + nranks) % nranks, j);
      break;
  }
  return wrong;
}

// Timed ops per repetition when -n is 0: at most 100 000 (lib/bench/rank.ts MAX_AUTO_ITERS).
static double clamp_iters(double n) {
  if (n > 100000) n = 100000;
  if (n < 1) n = 1;
  return (double)(long)(n + 0.5);
}

static double time_ops(enum coll c, float *send, float *recv, long count, int in_place, int iters) {
  MPI_Barrier(MPI_COMM_WORLD);
  double t0 = MPI_Wtime();
  for (int i = 0; i < iters; i++) run_op(c, send, recv, count, in_place);
  return (MPI_Wtime() - t0) / (iters > 0 ? iters : 1) * 1e6;
}

int main(int argc, char **argv) {
  MPI_Init(&argc, &argv);
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &nranks);
  enum coll c = ALLREDUCE;
  long minb = 8, maxb = 64L << 20;
  int factor = 2, iters_opt = 0, warmup = 3, reps = 5, do_check = 1;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    const char *v = i + 1 < argc ? argv[i + 1] : "";
    if (!strcmp(a, "-b")) { minb = parse_size(v); i++; }
    else if (!strcmp(a, "-e")) { maxb = parse_size(v); i++; }
    else if (!strcmp(a, "-f")) { factor = atoi(v); i++; }
    else if (!strcmp(a, "-n")) { iters_opt = atoi(v); i++; }
    else if (!strcmp(a, "-w")) { warmup = atoi(v); i++; }
    else if (!strcmp(a, "-R")) { reps = atoi(v); i++; }
    else if (!strcmp(a, "-c")) { do_check = atoi(v); i++; }
    else if (!strcmp(a, "-r")) { root = atoi(v); i++; }
    else {
      int found = 0;
      for (int k = 0; k < 6; k++) if (!strcmp(a, coll_names[k])) { c = (enum coll)k; found = 1; }
      if (!found) {
        if (rank == 0) fprintf(stderr, "mpi_collectives: unknown argument '%s'\n", a);
        MPI_Abort(MPI_COMM_WORLD, 2);
      }
    }
  }
  if (factor < 2) factor = 2;
  if (reps < 1) reps = 1;
  long max_elems = maxb / sizeof(float) + nranks;
  float *send = malloc(max_elems * sizeof(float)), *recv = malloc(max_elems * sizeof(float));
  if (!send || !recv) { fprintf(stderr, "mpi_collectives: out of memory\n"); MPI_Abort(MPI_COMM_WORLD, 1); }
  for (long j = 0; j < max_elems; j++) { send[j] = 1.0f; recv[j] = 0.0f; }
  double busf = 1.0;
  if (c == ALLREDUCE) busf = 2.0 * (nranks - 1) / nranks;
  else if (c == REDUCESCATTER || c == ALLGATHER) busf = (double)(nranks - 1) / nranks;
  const char *redop = (c == ALLGATHER || c == BROADCAST || c == SENDRECV) ? "none" : "sum";
  int row_root = (c == BROADCAST || c == REDUCE) ? root : -1;
  int places = c == SENDRECV ? 1 : 2;
  if (rank == 0) {
    printf("# mpi_collectives %s, %d ranks, float sum, median of %d repetitions\n", coll_names[c], nranks, reps);
    printf("#       size         count      type   redop    root     time   algbw   busbw  #wrong     time   algbw   busbw  #wrong\n");
    printf("#        (B)    (elements)                               (us)  (GB/s)  (GB/s)            (us)  (GB/s)  (GB/s)\n");
  }
  double *samples = malloc(sizeof(double) * (reps + 1) * 2), *all = malloc(sizeof(double) * (reps + 1) * 2);
  double sum_bw = 0; int n_bw = 0; long wrong_total = 0;
  for (long bytes = minb; bytes <= maxb; bytes *= factor) {
    long count = (c == ALLGATHER || c == REDUCESCATTER) ? bytes / (nranks * (long)sizeof(float)) : bytes / (long)sizeof(float);
    long size = (c == ALLGATHER || c == REDUCESCATTER) ? count * nranks * (long)sizeof(float) : count * (long)sizeof(float);
    double slowest = 0;
    for (int p = 0; p < places; p++) {
      int w = warmup > 0 ? warmup : (iters_opt == 0 ? 1 : 0);
      double t = time_ops(c, send, recv, count, p, w);
      if (w > 0 && t > slowest) slowest = t;
    }
    int iters = iters_opt;
    if (iters == 0) {
      // As ringtree's rank program: two probes of about 2 ms per placement,
      // each sized from the last, then repetitions of about 20 ms.
      for (int round = 0; round < 2; round++) {
        double probe = clamp_iters(2000.0 / (slowest > 0.1 ? slowest : 0.1));
        MPI_Bcast(&probe, 1, MPI_DOUBLE, 0, MPI_COMM_WORLD);
        slowest = 0;
        for (int p = 0; p < places; p++) {
          double t = time_ops(c, send, recv, count, p, (int)probe);
          if (t > slowest) slowest = t;
        }
      }
      double decided = clamp_iters(20000.0 / (slowest > 0.1 ? slowest : 0.1));
      MPI_Bcast(&decided, 1, MPI_DOUBLE, 0, MPI_COMM_WORLD);
      iters = (int)decided;
    }
    memset(samples, 0, sizeof(double) * (reps + 1) * 2);
    for (int r = 0; r < reps; r++)
      for (int p = 0; p < places; p++) samples[p * (reps + 1) + r] = time_ops(c, send, recv, count, p, iters);
    if (do_check)
      for (int p = 0; p < places; p++) samples[p * (reps + 1) + reps] = (double)check(c, send, recv, count, p);
    MPI_Reduce(samples, all, (reps + 1) * 2, MPI_DOUBLE, MPI_SUM, 0, MPI_COMM_WORLD);
    if (rank == 0) {
      printf("%12ld  %12ld  %8s  %6s  %6d", size, count, "float", redop, row_root);
      for (int p = 0; p < 2; p++) {
        if (p >= places) { printf(" %8s %7s %7s %7s", "N/A", "N/A", "N/A", "N/A"); continue; }
        for (int r = 0; r < reps; r++) all[p * (reps + 1) + r] /= nranks;
        double t = median(all + p * (reps + 1), reps);
        double algbw = size / 1e3 / t, busbw = algbw * busf;
        long wrong = (long)all[p * (reps + 1) + reps];
        wrong_total += wrong;
        sum_bw += busbw; n_bw++;
        if (do_check) printf(" %8.2f %7.2f %7.2f %7ld", t, algbw, busbw, wrong);
        else printf(" %8.2f %7.2f %7.2f %7s", t, algbw, busbw, "N/A");
      }
      printf("\n");
      fflush(stdout);
    }
  }
  if (rank == 0) {
    printf("# Out of bounds values : %ld %s\n", wrong_total, wrong_total ? "FAILED" : "OK");
    printf("# Avg bus bandwidth    : %.3f\n", n_bw ? sum_bw / n_bw : 0.0);
  }
  free(samples); free(all); free(send); free(recv);
  MPI_Finalize();
  return wrong_total ? 1 : 0;
}
