#!/usr/bin/env bash
# The Python package's DiffStride against the C++ benchmark of the same
# layer on one machine: bench_diffstride's BM_DiffStride at the four
# ResNet-18 shapes and bench/package_op_time.py through the package in
# .venv (scripts/python-package.sh), alternated for $ROUNDS rounds
# (default 3); each side's best round per shape, so that the noise of a
# shared machine (+-20% between single runs) cancels. Prints a Markdown
# table.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
rounds=${ROUNDS:-3}
cpp_runs=() python_runs=()
for _ in $(seq "$rounds"); do
  cpp_runs+=("$(build/bench/bench_diffstride --benchmark_filter='^BM_DiffStride/C' \
    --benchmark_min_time=1 --benchmark_format=csv 2>/dev/null |
    grep '^"BM_DiffStride/' | cut -d, -f3 | tr '\n' ' ')")
  python_runs+=("$(cd /tmp && "$root/.venv/bin/python" "$root/bench/package_op_time.py" 2 |
    awk '{print $4}' | tr '\n' ' ')")
done
best() { printf '%s\n' "$@" | awk -v i="$index" '{ v = $i; if (NR == 1 || v < m) m = v } END { print m }'; }
echo "| shape (C x H x W) | C++ bench_diffstride (ms) | Python package (ms) | Python / C++ |"
echo "| --- | ---: | ---: | ---: |"
index=0
for shape in "64 x 32 x 32" "128 x 32 x 32" "256 x 24 x 24" "512 x 18 x 18"; do
  index=$((index + 1))
  c=$(best "${cpp_runs[@]}")
  p=$(best "${python_runs[@]}")
  awk -v s="$shape" -v a="$c" -v b="$p" \
    'BEGIN { printf "| %s | %.1f | %.1f | %.3f |\n", s, a, b, b / a }'
done
