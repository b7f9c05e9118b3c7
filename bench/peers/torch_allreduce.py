"""PyTorch peer for scripts/gpu-check.mjs: dist.all_reduce (NCCL, world size 1,
init_method file://) timed with CUDA events over ops issued back to back.

    python3 bench/peers/torch_allreduce.py --sizes 8,16,...  [--dtype float32]

Prints one JSON line per size: {"bytes", "iters", "us"} (us per op), then a
final {"torch", "nccl", "device"} line. torch.distributed.all_reduce is in
place (PyTorch has no out-of-place all_reduce); ringtree's side of the
comparison is out of place, which the results table states.
"""
import argparse
import json
import os
import tempfile

import torch
import torch.distributed as dist


def iterations(nbytes: int) -> int:
    # About 2 GB of traffic per size, between 5 and 200 ops.
    return max(5, min(200, (2 << 30) // max(nbytes, 1)))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", required=True, help="comma-separated byte counts")
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--warmup", type=int, default=5)
    args = ap.parse_args()
    dtype = getattr(torch, args.dtype)
    elem = torch.tensor([], dtype=dtype).element_size()
    fd, path = tempfile.mkstemp(prefix="ringtree-torch-init-")
    os.close(fd)
    os.unlink(path)
    torch.cuda.set_device(0)
    try:
        dist.init_process_group("nccl", init_method=f"file://{path}", rank=0, world_size=1,
                                device_id=torch.device("cuda", 0))
    except TypeError:  # PyTorch before 2.3 has no device_id
        dist.init_process_group("nccl", init_method=f"file://{path}", rank=0, world_size=1)
    try:
        for nbytes in (int(s) for s in args.sizes.split(",")):
            n = max(1, nbytes // elem)
            x = torch.ones(n, dtype=dtype, device="cuda")
            for _ in range(args.warmup):
                dist.all_reduce(x)
            iters = iterations(nbytes)
            start = torch.cuda.Event(enable_timing=True)
            end = torch.cuda.Event(enable_timing=True)
            torch.cuda.synchronize()
            start.record()
            for _ in range(iters):
                dist.all_reduce(x)
            end.record()
            end.synchronize()
            print(json.dumps({"bytes": n * elem, "iters": iters, "us": start.elapsed_time(end) * 1000.0 / iters}), flush=True)
            del x
        nccl = ".".join(str(v) for v in torch.cuda.nccl.version())
        print(json.dumps({"torch": torch.__version__, "nccl": nccl, "device": torch.cuda.get_device_name(0)}), flush=True)
    finally:
        dist.destroy_process_group()
        if os.path.exists(path):
            os.unlink(path)


if __name__ == "__main__":
    main()
