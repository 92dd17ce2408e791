#!/usr/bin/env bash
# Installs the Python package into a virtual environment that sees Debian's
# python3-torch (build/venv), reusing the op library of the main build in
# ./build, then runs its pytest suite (tests/python/package) from /tmp, away
# from the checkout (its test_wheel.py also builds the wheel and imports it
# from a fresh venv).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
if [ ! -x build/venv/bin/python ]; then
  /usr/bin/python3 -m venv --system-site-packages build/venv
fi
DIFFSTRIDE_BUILD_DIR="$root/build" build/venv/bin/pip install --quiet \
  --no-build-isolation --no-index --force-reinstall --no-deps .
cd /tmp
DIFFSTRIDE_BUILD_DIR="$root/build" "$root/build/venv/bin/python" -m pytest -q -rs -p no:cacheprovider "$root/tests/python/package"

