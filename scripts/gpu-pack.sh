#!/usr/bin/env bash
# Prepares .devdeps/ on this (CPU) machine for scripts/gpu-check.sh on a
# lent GPU machine, which has CUDA and the same pinned PyTorch but no Debian
# packages; carry .devdeps there (under the device tool's 64 MiB):
#   - include/, lib/, share/cmake/: the files of the Debian packages the
#     build needs (GoogleTest, Google Benchmark, toml++, zlib, CLI11), with
#     lib/x86_64-linux-gnu/libz.so pointing at the machine's own libz.so.1;
#   - data/fashion-mnist/: Debian's Fashion-MNIST files;
#   - prebuilt/: the programs of ./build (scripts/test.sh builds them with the
#     CUDA kernels) in the same layout, and in prebuilt/lib the shared
#     libraries they load from Debian's packages (not the C and C++
#     runtimes, LibTorch's or CUDA's, which that machine has).
set -euo pipefail
cd "$(dirname "$0")/.."
if ! grep -q "^DIFFSTRIDE_CUDA_KERNELS:BOOL=ON" build/CMakeCache.txt 2>/dev/null; then
  echo "gpu-pack.sh: ./build has no CUDA kernels: run scripts/test.sh (or" \
    "scripts/build.sh -DDIFFSTRIDE_CUDA_KERNELS=ON) first" >&2
  exit 1
fi
out=.devdeps
rm -rf "$out.new" && mkdir -p "$out.new"
for f in $(dpkg -L libgtest-dev libgmock-dev libbenchmark-dev libbenchmark1debian \
             libtomlplusplus-dev libtomlplusplus3 zlib1g-dev libcli11-dev); do
  case $f in
    /usr/include/* | /usr/lib/* | /usr/share/cmake/*) [ -f "$f" ] && install -D "$f" "$out.new/${f#/usr/}" ;;
  esac
done
ln -sf /lib/x86_64-linux-gnu/libz.so.1 "$out.new/lib/x86_64-linux-gnu/libz.so"
mkdir -p "$out.new/data/fashion-mnist"
cp /usr/share/datasets/fashion-mnist/*-ubyte.gz "$out.new/data/fashion-mnist/"
prebuilt=$out.new/prebuilt
mkdir -p "$prebuilt/tests" "$prebuilt/bench" "$prebuilt/lib"
cp build/libdiffstride*.so build/diffstride "$prebuilt/"
cp build/tests/diffstride_tests "$prebuilt/tests/"
cp build/bench/bench_diffstride "$prebuilt/bench/"
ldd "$prebuilt/diffstride" "$prebuilt/tests/diffstride_tests" "$prebuilt/bench/bench_diffstride" |
  awk '$2 == "=>" && $3 ~ /^\// {print $3}' | sort -u |
  grep -vE '/torch/|/nvidia/|/cuda|/libdiffstride|/(libc|libm|libdl|librt|libutil|libpthread|libstdc\+\+|libgcc_s|libgomp|ld-linux-x86-64)\.so' |
  xargs -r cp -L -t "$prebuilt/lib"
rm -rf "$out" && mv "$out.new" "$out"
du -sh "$out"
