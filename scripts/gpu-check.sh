#!/usr/bin/env bash
# The GPU check, for a lent machine with CUDA and PyTorch 2.x but no Debian
# packages: the CUDA tests, the CUDA benchmarks and the training benchmarks
# (bench/gpu_training.sh, on the Fashion-MNIST files in $deps/data/
# fashion-mnist), logs to $OUT (default: gpu-check-out/).
#
# $1 (default .devdeps/) is what scripts/gpu-pack.sh prepared on the CPU
# machine: Debian's headers and libraries the build needs, the data, and
# prebuilt/, the programs of the CPU machine's test build (CUDA kernels
# included, against the same pinned PyTorch). When those load here, they run
# as they are; else everything is built here against this machine's PyTorch.
#
# GPU_CHECK_LAYER_BENCH=0 skips the layer benchmarks; GPU_CHECK_QUICK=1
# builds (if it must) only what the CUDA tests and benchmarks need, runs the
# CIFAR-10 benchmark alone and skips the whole suite (a check that fits a
# short device lease); GPU_CHECK_CUDA_KERNELS=0 builds the generic path alone
# (an A/B; it always builds here).
set -uo pipefail
deps=$(realpath "${1:-.devdeps}")
out=${OUT:-gpu-check-out}
mkdir -p "$out"
python=$(command -v python3)
torch_lib=$("$python" -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "lib"))')
quick=${GPU_CHECK_QUICK:-0}
kernels=${GPU_CHECK_CUDA_KERNELS:-1}

describe_machine() {
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
  "$python" -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda)'
  nproc
  echo "nccl.h: ${NCCL_INCLUDE_DIR:-none found}"
}

# Builds into build-gpu against this machine's PyTorch (NCCL from its
# nvidia-nccl wheel; no Gloo headers, no image or audio decoders there).
build_here() {
  local targets=() cuda=ON
  [ "$kernels" = 1 ] || cuda=OFF
  [ "$quick" = 1 ] && targets=(--target diffstride_tests bench_diffstride diffstride_cli)
  cmake -S . -B build-gpu -G Ninja -DCMAKE_BUILD_TYPE=Release \
    -DDIFFSTRIDE_FOLDERS=OFF -DDIFFSTRIDE_CUDA_KERNELS=$cuda -DDIFFSTRIDE_PYTHON="$python" \
    -DCMAKE_PREFIX_PATH="$deps" 2>&1 | tee "$out/configure.log" | tail -5
  cmake --build build-gpu -j "$(nproc)" "${targets[@]}" > "$out/build.log" 2>&1 || {
    echo "build failed; again without NCCL" | tee -a "$out/machine.txt"
    cmake -S . -B build-gpu -DDIFFSTRIDE_USE_NCCL=OFF >> "$out/configure.log" 2>&1
    cmake --build build-gpu -j "$(nproc)" "${targets[@]}" >> "$out/build.log" 2>&1
  } || {
    echo "build failed; again without the fused CUDA kernels" | tee -a "$out/machine.txt"
    cmake -S . -B build-gpu -DDIFFSTRIDE_CUDA_KERNELS=OFF >> "$out/configure.log" 2>&1
    cmake --build build-gpu -j "$(nproc)" "${targets[@]}" >> "$out/build.log" 2>&1
  }
  # Registers, shared memory and spills of the fused kernels (nvcc -Xptxas -v).
  grep -A2 "spectral_crop_.*kernel" "$out/build.log" | grep -E "registers|spill" \
    > "$out/ptxas.txt" || true
  tail -5 "$out/build.log"
}

# nccl.h of the pip package nvidia-nccl-*, when there is one.
export NCCL_INCLUDE_DIR=${NCCL_INCLUDE_DIR:-$("$python" -c '
import os
try:
    import nvidia.nccl as n
    print(os.path.join(list(n.__path__)[0], "include"))
except ImportError:
    pass' 2>/dev/null)}
describe_machine 2>&1 | tee "$out/machine.txt"
export TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-9.0}
prebuilt=$deps/prebuilt
export LD_LIBRARY_PATH="$prebuilt:$prebuilt/lib:$torch_lib:$deps/lib/x86_64-linux-gnu:${LD_LIBRARY_PATH:-}"
if [ "$kernels" = 1 ] && "$prebuilt/tests/diffstride_tests" --gtest_list_tests > /dev/null 2>&1; then
  build=$prebuilt
  echo "the CPU machine's programs load here: running them, nothing built" | tee -a "$out/machine.txt"
else
  echo "building here ($prebuilt does not load or is not there)" | tee -a "$out/machine.txt"
  build=build-gpu
  build_here
fi
"$build/tests/diffstride_tests" --gtest_filter='*Cuda*' 2>&1 |
  tee "$out/cuda_tests.log" | tail -8
if [ "${GPU_CHECK_LAYER_BENCH:-1}" != 0 ]; then
  # The op alone beside a device copy of the same size first (the fused
  # kernels' figures), then the layers beside the plain FFT formulation.
  "$build/bench/bench_diffstride" --benchmark_filter='(SpectralCropOp|DeviceCopy)/cuda' \
    --benchmark_min_time=0.3 2>&1 | tee "$out/bench_cuda_op.txt"
  "$build/bench/bench_diffstride" --benchmark_filter='DiffStride(/|1d|3d).*cuda|FixedSpectral/cuda' \
    --benchmark_min_time=0.5 2>&1 | tee "$out/bench_cuda.txt"
  "$python" bench/half_precision_error.py "$build/libdiffstride.so" cuda 128 2>&1 |
    tee "$out/half_precision_cuda.md"
fi
[ "$quick" = 1 ] && export GPU_TRAINING_PARTS=cifar
bash bench/gpu_training.sh "$build" "$deps/data/fashion-mnist" "$out/training"
# The whole suite last, where it was built here: the CUDA tests and figures
# above come first.
if [ "$quick" != 1 ] && [ "$build" = build-gpu ]; then
  (cd build-gpu && ctest --output-on-failure -j 4) 2>&1 | tee "$out/ctest.log" | tail -15
fi
