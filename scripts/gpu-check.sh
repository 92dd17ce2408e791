#!/usr/bin/env bash
# The GPU check of the device-generic path, for a lent
# machine with CUDA and PyTorch 2.x but no Debian packages: builds the library,
# tests and benchmarks against that PyTorch's LibTorch, runs the whole test
# suite (the CUDA tests included) and the CUDA benchmarks, and writes the logs
# to $OUT (default: gpu-check-out/). Then the training benchmarks
# (bench/gpu_training.sh) on the Fashion-MNIST files in $deps/data/fashion-mnist;
# GPU_CHECK_LAYER_BENCH=0 skips the layer benchmarks; GPU_CHECK_QUICK=1 builds
# only what the CUDA tests and benchmarks need, runs the CIFAR-10 benchmark
# alone, and skips the whole suite (a check that fits a short device lease).
#
# GoogleTest, Google Benchmark, toml++ and zlib's headers come from a prefix
# given as $1 (default .devdeps/): Debian's files copied there on a Debian
# machine with
#   for f in $(dpkg -L libgtest-dev libgmock-dev libbenchmark-dev \
#              libbenchmark1debian libtomlplusplus-dev libtomlplusplus3 \
#              zlib1g-dev libcli11-dev); do ...copy /usr/{include,lib,share/cmake}/...
#              into .devdeps
# and .devdeps/lib/x86_64-linux-gnu/libz.so pointed at the machine's
# /lib/x86_64-linux-gnu/libz.so.1 (see BENCHMARKS.md, "GPU").
set -uo pipefail
deps=$(realpath "${1:-.devdeps}")
out=${OUT:-gpu-check-out}
mkdir -p "$out"
torch_prefix=$(python3 -c 'import torch; print(torch.utils.cmake_prefix_path)')
# nccl.h of the pip package nvidia-nccl-*, when there is one.
export NCCL_INCLUDE_DIR=${NCCL_INCLUDE_DIR:-$(python3 -c '
import os
try:
    import nvidia.nccl as n
    print(os.path.join(list(n.__path__)[0], "include"))
except ImportError:
    pass' 2>/dev/null)}
{
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
  python3 -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda)'
  nproc
  ls -d "$(python3 -c 'import torch, os; print(os.path.dirname(torch.__file__))')/include/gloo" \
    || echo "no gloo headers: multi-process training on the CPU is not built"
  echo "nccl.h: ${NCCL_INCLUDE_DIR:-none found}"
} 2>&1 | tee "$out/machine.txt"
export LD_LIBRARY_PATH="$deps/lib/x86_64-linux-gnu:${LD_LIBRARY_PATH:-}"
# No Debian decoders there: image and audio folders are left out.
# The fused CUDA kernels of the spectral crop (src/ops/cuda/) are built here
# (GPU_CHECK_CUDA_KERNELS=0: the generic path alone, for an A/B); if they do
# not build, the check goes on without them and says so.
kernels=${GPU_CHECK_CUDA_KERNELS:-1}
# LibTorch's CMake files add code for every architecture in this list (by
# default about six, several minutes of nvcc): the lent GPUs are Hopper.
export TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-9.0}
[ "$kernels" = 1 ] && kernels=ON || kernels=OFF
cmake -S . -B build-gpu -G Ninja -DCMAKE_BUILD_TYPE=Release \
  -DDIFFSTRIDE_FOLDERS=OFF -DDIFFSTRIDE_CUDA_KERNELS=$kernels \
  -DCMAKE_PREFIX_PATH="$torch_prefix;$deps" 2>&1 | tee "$out/configure.log" | tail -5
# If LibTorch's NCCL header does not compile with the nccl.h found, build
# without NCCL (one GPU needs none) and say so.
quick=${GPU_CHECK_QUICK:-0}
targets=()
[ "$quick" = 1 ] && targets=(--target diffstride_tests bench_diffstride diffstride_cli)
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
build-gpu/tests/diffstride_tests --gtest_filter='*Cuda*' 2>&1 |
  tee "$out/cuda_tests.log" | tail -8
if [ "${GPU_CHECK_LAYER_BENCH:-1}" != 0 ]; then
  # The op alone beside a device copy of the same size first (the fused
  # kernels' figures), then the layers beside the plain FFT formulation.
  build-gpu/bench/bench_diffstride --benchmark_filter='(SpectralCropOp|DeviceCopy)/cuda' \
    --benchmark_min_time=0.3 2>&1 | tee "$out/bench_cuda_op.txt"
  build-gpu/bench/bench_diffstride --benchmark_filter='DiffStride(/|1d|3d).*cuda|FixedSpectral/cuda' \
    --benchmark_min_time=0.5 2>&1 | tee "$out/bench_cuda.txt"
  python3 bench/half_precision_error.py build-gpu/libdiffstride.so cuda 128 2>&1 |
    tee "$out/half_precision_cuda.md"
fi
[ "$quick" = 1 ] && export GPU_TRAINING_PARTS=cifar
bash bench/gpu_training.sh build-gpu "$deps/data/fashion-mnist" "$out/training"
# The whole suite last: the CUDA tests and figures above come first.
if [ "$quick" != 1 ]; then
  (cd build-gpu && ctest --output-on-failure -j 4) 2>&1 | tee "$out/ctest.log" | tail -15
fi
