#!/usr/bin/env bash
# Every GPU check in one lease of the lent H200 (../shared/device/README.md).
# Prepare here: ../shared/device/pack-node.sh; scripts/build-native.sh;
# npx tsc -p tsconfig.json. Then, on the device machine, carrying .device,
# build/Release/ringtree.node and dist:
#
#   bash scripts/gpu-all.sh            # everything lands in $OUT/gpu-results.tgz + gpu-all.log
#   bash scripts/gpu-all.sh gemm bench # only some steps
#
# Steps (each one's log and results go into the tarball; a failed step does
# not stop the others; the exit status is 1 if any failed):
#   check    scripts/gpu-check.mjs --skip-sweep: addon, ABI (cuda.h, nccl.h),
#            probe, every collective x dtype x op on a one-rank NCCL
#            communicator vs the CPU engine, DeviceArray round trips and views
#   kernels  scripts/gpu-kernels-check.mjs: the embedded CUDA kernels bit for
#            bit, DDP over device arrays vs host arrays
#   gemm     scripts/gpu-gemm-check.mjs: cuBLASLt ABI, device GEMM and every
#            epilogue vs a float64 reference, speed vs torch.matmul
#   bench    ringtree bench all --backend nccl (one rank per GPU), 8 B .. 64 MiB
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-$PWD/bench/results}
work="$OUT/gpu"
mkdir -p "$work"
. .device/env.sh
steps=("$@")
[ ${#steps[@]} -eq 0 ] && steps=(check kernels gemm bench)
failed=()
t0=$(date +%s)
for s in "${steps[@]}"; do
  echo "=== $s ($(($(date +%s) - t0)) s)"
  case "$s" in
    check) node scripts/gpu-check.mjs --skip-sweep --out "$work" 2>&1 | tee "$work/check.log" ;;
    kernels) node scripts/gpu-kernels-check.mjs --out "$work" 2>&1 | tee "$work/kernels.log" ;;
    gemm) node scripts/gpu-gemm-check.mjs --out "$work" 2>&1 | tee "$work/gemm.log" ;;
    bench) node dist/cli.js bench all --backend nccl -b 8 -e 64M -f 8 --algo ring,tree,auto --reps 3 \
             --json "$work/bench-nccl.json" 2>&1 | tee "$work/bench.log" ;;
    *) echo "unknown step $s"; false ;;
  esac
  rc=${PIPESTATUS[0]}
  [ "$rc" -ne 0 ] && failed+=("$s=$rc")
done
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm --format=csv >"$work/nvidia-smi.txt" 2>&1
tar czf "$OUT/gpu-results.tgz" -C "$OUT" gpu && rm -rf "$work"
echo "=== done in $(($(date +%s) - t0)) s; failed: ${failed[*]:-none}"
[ ${#failed[@]} -eq 0 ]
