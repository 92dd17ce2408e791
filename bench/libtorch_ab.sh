#!/usr/bin/env bash
# Two builds of diffstride (against two LibTorch versions, say) measured in
# one sitting on this machine, each figure's runs alternating between them:
#   - the op against the plain FFT formulation, forward+backward at the four
#     ResNet-18 layer shapes (bench_diffstride, BM_DiffStride and
#     BM_PlainDiffStride, batch 128, float32);
#   - host time per tiny call (BM_DiffStrideHostTime, one 32 x 32 and one
#     18 x 18 plane);
#   - the default training run's examples per second over its first
#     $STEPS steps (diffstride train --stop-after-steps).
# Usage: bench/libtorch_ab.sh OLD_BUILD NEW_BUILD OUT_DIR (REPEATS=2, STEPS=60)
set -euo pipefail
old=$1 new=$2 out=$3
repeats=${REPEATS:-2} steps=${STEPS:-60}
mkdir -p "$out"
export DIFFSTRIDE_THREADS=2
for i in $(seq "$repeats"); do
  for side in old new; do
    build=${!side}
    echo "== $side ($build), run $i"
    "$build/bench/bench_diffstride" --benchmark_filter='^BM_(Plain)?DiffStride/' \
      --benchmark_min_time=1 2>&1 | tee "$out/op_${side}_$i.txt" | grep -E "^BM_"
    "$build/bench/bench_diffstride" --benchmark_filter='^BM_DiffStrideHostTime' \
      --benchmark_min_time=2 2>&1 | tee "$out/host_${side}_$i.txt" | grep -E "^BM_"
    rm -rf "$out/run_${side}_$i"
    "$build/diffstride" --threads 2 train --out "$out/run_${side}_$i" --stop-after-steps "$steps" \
      2>&1 | tr '\r' '\n' | grep -E "ex/s" | tail -1 | tee "$out/train_${side}_$i.txt"
  done
done
