#!/usr/bin/env bash
# Installs the Python package into the project's environment (.venv, made by
# scripts/install-deps.sh), reusing the op library of the main build in
# ./build, then runs its pytest suite (tests/python/package) from /tmp, away
# from the checkout (its test_wheel.py also builds the wheel and imports it
# from a fresh venv).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
if [ ! -x .venv/bin/python ]; then
  echo "python-package.sh: no .venv here: run scripts/install-deps.sh first" >&2
  exit 1
fi
DIFFSTRIDE_BUILD_DIR="$root/build" .venv/bin/pip install --quiet --disable-pip-version-check \
  --no-build-isolation --no-index --force-reinstall --no-deps .
cd /tmp
DIFFSTRIDE_BUILD_DIR="$root/build" "$root/.venv/bin/python" -m pytest -q -rs -p no:cacheprovider \
  "$root/tests/python/package"
