#!/usr/bin/env bash
# Training speed on a CUDA machine (BENCHMARKS.md, "Training on a GPU"):
#   - the default Fashion-MNIST run (configs/fashion_mnist.toml), whole, in
#     float32 and bfloat16: time and test accuracy;
#   - the ResNet-18 CIFAR-10 recipe (configs/cifar10.toml) for $STEPS steps on
#     random data in CIFAR's format, float32, bfloat16 and bfloat16 with
#     channels_last: examples per second and peak GPU memory (nvidia-smi);
#   - one training step, bfloat16 + channels_last, of the library beside its
#     Python peer eager and compiled (resnet18_step.txt).
# Usage: bench/gpu_training.sh BUILD_DIR FASHION_MNIST_DIR OUT_DIR
# (GPU_TRAINING_PARTS=cifar: the CIFAR-10 figures alone.)
set -uo pipefail
build=$1 fashion=$2 out=$3
steps=${STEPS:-300}
work=$(mktemp -d)
mkdir -p "$out"

# Peak memory.used of GPU 0 while "$@" runs, in MiB, appended to $out/memory.txt.
with_memory() {
  local label=$1; shift
  nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -lms 100 \
    > "$work/mem.txt" 2>/dev/null &
  local sampler=$!
  "$@"
  local rc=$?
  kill "$sampler" 2>/dev/null; wait "$sampler" 2>/dev/null
  echo "$label: peak GPU memory $(sort -n "$work/mem.txt" | tail -1) MiB" | tee -a "$out/memory.txt"
  return $rc
}

fashion_precisions="float32 bfloat16"
[ "${GPU_TRAINING_PARTS:-all}" = cifar ] && fashion_precisions=""
for precision in $fashion_precisions; do
  log="$out/fashion_mnist_$precision.log"
  start=$(date +%s%N)
  with_memory "fashion_mnist $precision" \
    "$build/diffstride" train --device cuda --out "$work/fm_$precision" \
      --set data.data_dir="$fashion" --set train.precision="$precision" \
      > "$log" 2> "$log.progress"
  echo "wall $(( ($(date +%s%N) - start) / 1000000 )) ms" >> "$log"
  tr '\r' '\n' < "$log.progress" | grep -E "^device|^epoch [0-9]+:" >> "$log"
  cat "$log"
done

python3 "$(dirname "$0")/write_synthetic_cifar.py" "$work/cifar"
for variant in float32 bfloat16 bfloat16_nhwc; do
  precision=${variant%_nhwc}
  nhwc=false; [ "$variant" != "$precision" ] && nhwc=true
  log="$out/cifar10_resnet18_$variant.log"
  with_memory "cifar10 resnet18 $variant" \
    "$build/diffstride" train --config configs/cifar10.toml --device cuda \
      --out "$work/c10_$variant" --stop-after-steps "$steps" \
      --set data.data_dir="$work/cifar" --set train.precision="$precision" \
      --set train.channels_last="$nhwc" > "$log" 2> "$log.progress"
  tr '\r' '\n' < "$log.progress" | grep -E "^device|step|stopped" | tail -3 >> "$log"
  cat "$log"
done
# One training step of resnet18 on CIFAR-sized batches of 128, bfloat16 and
# channels_last: the library (`diffstride bench`) beside its Python peer
# (bench/resnet18_step.py, the plain FFT formulation) in eager mode and
# under torch.compile, on the same GPU, one after the other.
step_args=(--batch 128 --steps "${STEP_STEPS:-50}" --warmup "${STEP_WARMUP:-10}"
           --device cuda --precision bfloat16 --channels-last)
{
  "$build/diffstride" bench --pooling diffstride "${step_args[@]}"
  for pooling in spatial diffstride; do
    python3 "$(dirname "$0")/resnet18_step.py" --pooling "$pooling" "${step_args[@]}"
    python3 "$(dirname "$0")/resnet18_step.py" --pooling "$pooling" "${step_args[@]}" \
      --compile || echo "python compiled $pooling: did not compile"
  done
} 2> "$out/resnet18_step.progress" | tee "$out/resnet18_step.txt"
rm -rf "$work"
