#!/usr/bin/env bash
# Builds the fuzz targets of tests/fuzz with clang (libFuzzer,
# AddressSanitizer) against the main build in ./build, replays every
# committed input (seed corpus and regressions: each must pass), then fuzzes
# each target for $FUZZ_SECONDS seconds (default 20). A crash leaves its
# input in build-fuzz/artifacts/ and fails the script: add it to
# tests/fuzz/regressions/<target>/ once fixed.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${FUZZ_SECONDS:-20}
export CCACHE_BASEDIR="${CCACHE_BASEDIR:-$PWD}"
launcher=()
if command -v ccache > /dev/null; then
  launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
fi
mkdir -p build-fuzz
# The LibTorch of the main build: its folder as the prefix, so that its
# libraries are found before any in the default paths.
torch_dir=$(sed -n 's/^Torch_DIR:PATH=//p' build/CMakeCache.txt)
cmake -S tests/fuzz -B build-fuzz -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_CXX_COMPILER=clang++ "${launcher[@]}" \
  -DCMAKE_PREFIX_PATH="$(realpath "$torch_dir/../../..")" \
  -DDIFFSTRIDE_BUILD_DIR="$PWD/build" > build-fuzz/build.log 2>&1 ||
  { cat build-fuzz/build.log; exit 1; }
cmake --build build-fuzz -j "$(nproc)" >> build-fuzz/build.log 2>&1 ||
  { tail -50 build-fuzz/build.log; exit 1; }
# LibTorch's static objects live until exit: leaks are not the question here.
export ASAN_OPTIONS=detect_leaks=0
mkdir -p build-fuzz/artifacts
targets=(idx cifar config checkpoint report)
if [ -x build-fuzz/fuzz_image ]; then
  targets+=(image)
fi
for target in "${targets[@]}"; do
  seeds=(tests/fuzz/corpus/$target)
  if [ -d "tests/fuzz/regressions/$target" ]; then
    seeds+=(tests/fuzz/regressions/$target)
  fi
  echo "== fuzz_$target: replaying $(find "${seeds[@]}" -type f | wc -l) committed inputs"
  build-fuzz/fuzz_$target -runs=0 "${seeds[@]}" 2>&1 | tail -1
  work=build-fuzz/corpus/$target
  mkdir -p "$work"
  echo "== fuzz_$target: fuzzing for $seconds s"
  build-fuzz/fuzz_$target "$work" "${seeds[@]}" -max_total_time="$seconds" \
    -timeout=10 -rss_limit_mb=4096 -max_len=65536 \
    -artifact_prefix=build-fuzz/artifacts/$target- -print_final_stats=1 2>&1 |
    grep -E "^(stat::number_of_executed_units|stat::new_units_added|==.*ERROR|SUMMARY)" || true
  if ls build-fuzz/artifacts/$target-* > /dev/null 2>&1; then
    echo "fuzz_$target found a crash: build-fuzz/artifacts/$target-*" >&2
    exit 1
  fi
done
