#!/usr/bin/env bash
# The README's test command: install, build, run the whole test suite
# (CTest: GoogleTest, the Python op test, the command-line tests), then the
# fuzz targets (scripts/fuzz.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
bash scripts/build.sh
ctest --test-dir build --output-on-failure -j "$(nproc)"
bash scripts/fuzz.sh
