#!/usr/bin/env bash
# The GPU check of the device-generic path, for a lent
# machine with CUDA and PyTorch 2.x but no Debian packages: builds the library,
# tests and benchmarks against that PyTorch's LibTorch, runs the whole test
# suite (the CUDA tests included) and the CUDA benchmarks, and writes the logs
# to $OUT (default: gpu-check-out/).
#
# GoogleTest, Google Benchmark, toml++ and zlib's headers come from a prefix
# given as $1 (default .devdeps/): Debian's files copied there on a Debian
# machine with
#   for f in $(dpkg -L libgtest-dev libgmock-dev libbenchmark-dev \
#              libbenchmark1debian libtomlplusplus-dev libtomlplusplus3 \
#              zlib1g-dev); do ...copy /usr/{include,lib}/... into .devdeps
# and .devdeps/lib/x86_64-linux-gnu/libz.so pointed at the machine's
# /lib/x86_64-linux-gnu/libz.so.1 (see BENCHMARKS.md, "GPU").
set -uo pipefail
deps=$(realpath "${1:-.devdeps}")
out=${OUT:-gpu-check-out}
mkdir -p "$out"
torch_prefix=$(python3 -c 'import torch; print(torch.utils.cmake_prefix_path)')
{
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
  python3 -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda)'
  nproc
} 2>&1 | tee "$out/machine.txt"
export LD_LIBRARY_PATH="$deps/lib/x86_64-linux-gnu:${LD_LIBRARY_PATH:-}"
cmake -S . -B build-gpu -G Ninja -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_PREFIX_PATH="$torch_prefix;$deps" \
  -DDIFFSTRIDE_BUILD_APPS=OFF 2>&1 | tee "$out/configure.log" | tail -5
cmake --build build-gpu -j "$(nproc)" 2>&1 | tee "$out/build.log" | tail -5
(cd build-gpu && ctest --output-on-failure -j 4) 2>&1 | tee "$out/ctest.log" | tail -15
build-gpu/tests/diffstride_tests --gtest_filter='*Cuda*' 2>&1 |
  tee "$out/cuda_tests.log" | tail -8
build-gpu/bench/bench_diffstride --benchmark_filter=cuda \
  --benchmark_min_time=0.5 2>&1 | tee "$out/bench_cuda.txt"
python3 bench/half_precision_error.py build-gpu/libdiffstride.so cuda 128 2>&1 |
  tee "$out/half_precision_cuda.md"
