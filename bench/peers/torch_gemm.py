#!/usr/bin/env python3
"""The PyTorch peer of scripts/gpu-gemm-check.mjs: torch.matmul on the same
card, timed the way ringtree's gemmTimed is (CUDA events around `iters`
back-to-back calls into a preallocated output, median of `reps` runs).

  python3 bench/peers/torch_gemm.py --cases bf16:8192,fp16:8192,tf32:4096,fp32:4096 --iters 20 --reps 7

Prints one JSON line with versions, then one per case:
{"case", "n", "ms" (median per call), "tflops", "runs" (ms per call, each run)}.
tf32 sets torch.backends.cuda.matmul.allow_tf32 = True (CUBLAS_COMPUTE_32F_FAST_TF32,
as ringtree's `tf32: true`); fp32 sets it False (plain FP32, ringtree's default).
"""
import argparse
import json
import statistics
import sys


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--cases", default="bf16:8192,fp16:8192,tf32:4096,fp32:4096")
    p.add_argument("--iters", type=int, default=20)
    p.add_argument("--reps", type=int, default=7)
    args = p.parse_args()
    try:
        import torch
    except ImportError as e:
        print(json.dumps({"error": f"no torch: {e}"}))
        return 3
    if not torch.cuda.is_available():
        print(json.dumps({"error": "torch sees no CUDA device"}))
        return 3
    dev = torch.device("cuda", 0)
    print(json.dumps({"torch": torch.__version__, "cuda": torch.version.cuda, "cublas": torch.backends.cuda.preferred_blas_library().name
                      if hasattr(torch.backends.cuda, "preferred_blas_library") else None, "device": torch.cuda.get_device_name(0)}))
    dtypes = {"bf16": torch.bfloat16, "fp16": torch.float16, "tf32": torch.float32, "fp32": torch.float32}
    for spec in args.cases.split(","):
        name, n = spec.split(":")
        n = int(n)
        torch.backends.cuda.matmul.allow_tf32 = name == "tf32"
        a = (torch.rand(n, n, device=dev) * 2 - 1).to(dtypes[name])
        b = (torch.rand(n, n, device=dev) * 2 - 1).to(dtypes[name])
        c = torch.empty(n, n, device=dev, dtype=dtypes[name])
        for _ in range(3):
            torch.matmul(a, b, out=c)
        torch.cuda.synchronize()
        runs = []
        for _ in range(args.reps):
            start = torch.cuda.Event(enable_timing=True)
            end = torch.cuda.Event(enable_timing=True)
            start.record()
            for _ in range(args.iters):
                torch.matmul(a, b, out=c)
            end.record()
            end.synchronize()
            runs.append(start.elapsed_time(end) / args.iters)
        ms = statistics.median(runs)
        print(json.dumps({"case": name, "n": n, "ms": ms, "tflops": 2 * n ** 3 / (ms * 1e-3) / 1e12, "runs": runs}), flush=True)
        del a, b, c
        torch.cuda.empty_cache()
    return 0


if __name__ == "__main__":
    sys.exit(main())
