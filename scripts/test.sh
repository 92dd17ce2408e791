#!/usr/bin/env bash
# The README's test command: install, check the format
# (scripts/check-format.sh), build, run the whole test suite (CTest:
# GoogleTest, the Python op test, the command-line tests), the Python
# package's pytest suite (scripts/python-package.sh), then the fuzz targets
# (scripts/fuzz.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
bash scripts/check-format.sh
bash scripts/build.sh
ctest --test-dir build --output-on-failure -j "$(nproc)"
bash scripts/python-package.sh
bash scripts/fuzz.sh
