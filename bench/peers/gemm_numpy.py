"""numpy's matmul as a GEMM peer for bench/gemm.mjs.

    python3 bench/peers/gemm_numpy.py s|d N ITERS

Times ITERS back-to-back `np.matmul(a, b, out=c)` of N x N row-major
float32 ('s') or float64 ('d') matrices (random inputs, one untimed call
first) and prints, like gemm_openblas.c: `s N US_PER_CALL THREADS BLAS`,
where THREADS is what numpy's BLAS reports (threadpoolctl when present,
else OPENBLAS_NUM_THREADS or -1) and BLAS names numpy's BLAS build.
"""
import os
import sys
import time

import numpy as np


def blas_info():
    try:
        from threadpoolctl import threadpool_info
        for pool in threadpool_info():
            if pool.get("user_api") == "blas":
                return pool.get("num_threads", -1), f"{pool.get('internal_api')}-{pool.get('version')}"
    except Exception:
        pass
    try:
        cfg = np.show_config(mode="dicts")
        blas = cfg["Build Dependencies"]["blas"]
        name = f"{blas.get('name')}-{blas.get('version')}"
    except Exception:
        name = "unknown"
    return int(os.environ.get("OPENBLAS_NUM_THREADS", "-1")), name


def main():
    kind, n, iters = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    dtype = np.float32 if kind == "s" else np.float64
    rng = np.random.default_rng(12345)
    a = rng.uniform(-1, 1, (n, n)).astype(dtype)
    b = rng.uniform(-1, 1, (n, n)).astype(dtype)
    c = np.empty((n, n), dtype=dtype)
    np.matmul(a, b, out=c)
    t0 = time.perf_counter()
    for _ in range(iters):
        np.matmul(a, b, out=c)
    us = (time.perf_counter() - t0) * 1e6 / iters
    threads, name = blas_info()
    print(f"{kind} {n} {us:.3f} {threads} {name}")


if __name__ == "__main__":
    main()
