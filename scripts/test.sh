#!/usr/bin/env bash
# The README's test command: install (scripts/install-deps.sh: Debian's
# packages and the .venv of requirements.txt), check the format
# (scripts/check-format.sh), build with the fused CUDA kernels compiled by
# the machine's nvcc against the environment's CUDA LibTorch (so that a
# change breaking the CUDA sources fails here, GPU or not), run the whole
# test suite (CTest: GoogleTest, the Python op test, the command-line tests),
# the Python package's pytest suite (scripts/python-package.sh), then the
# fuzz targets (scripts/fuzz.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
bash scripts/check-format.sh
# CUDA's toolkit where it installs itself, when nvcc is not on PATH.
if ! command -v nvcc > /dev/null && [ -x /usr/local/cuda/bin/nvcc ]; then
  export PATH="/usr/local/cuda/bin:$PATH"
fi
if ! command -v nvcc > /dev/null; then
  echo "test.sh: no nvcc on PATH: the test build compiles the CUDA kernels and needs" \
    "CUDA 13's toolkit (the CUDA of requirements.txt's torch)" >&2
  exit 1
fi
echo "test.sh: building with DIFFSTRIDE_CUDA_KERNELS=ON, $(nvcc --version | grep release)"
bash scripts/build.sh -DDIFFSTRIDE_CUDA_KERNELS=ON
ctest --test-dir build --output-on-failure -j "$(nproc)"
bash scripts/python-package.sh
bash scripts/fuzz.sh
