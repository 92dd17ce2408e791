#!/usr/bin/env bash
# Installs the Python package into a virtual environment that sees Debian's
# python3-torch (build/venv), reusing the op library of the main build in
# ./build, then runs its pytest suite (tests/python/package) from /tmp, away
# from the checkout; then builds the wheel and imports it from a fresh venv
# without a compiler on its PATH.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
if [ ! -x build/venv/bin/python ]; then
  /usr/bin/python3 -m venv --system-site-packages build/venv
fi
DIFFSTRIDE_BUILD_DIR="$root/build" build/venv/bin/pip install --quiet \
  --no-build-isolation --no-index --force-reinstall --no-deps .
cd /tmp
DIFFSTRIDE_BUILD_DIR="$root/build" "$root/build/venv/bin/python" -m pytest -q -p no:cacheprovider "$root/tests/python/package"

# The wheel: `pip wheel --no-build-isolation --no-index . -w DIST` builds one
# (reusing the main build's library here), and a fresh venv with no compiler
# on its PATH installs it and imports diffstride.
cd "$root"
rm -rf build/dist build/venv-wheel
DIFFSTRIDE_BUILD_DIR="$root/build" build/venv/bin/pip wheel --quiet \
  --no-build-isolation --no-index . -w build/dist
wheels=(build/dist/diffstride-*.whl)
[ "${#wheels[@]}" -eq 1 ] || { echo "expected one wheel, got: ${wheels[*]}"; exit 1; }
/usr/bin/python3 -m venv --system-site-packages build/venv-wheel
build/venv-wheel/bin/pip install --quiet --no-index "${wheels[0]}"
cd /tmp
env -i HOME=/tmp PATH="$root/build/venv-wheel/bin" "$root/build/venv-wheel/bin/python" -c '
import shutil, torch, diffstride
for tool in ("cc", "gcc", "g++", "c++", "clang", "cmake"):
    assert shutil.which(tool) is None, tool + " is on PATH"
assert "venv-wheel" in diffstride.__file__, diffstride.__file__
y = diffstride.DiffStride()(torch.randn(2, 3, 32, 32))
assert tuple(y.shape) == (2, 3, 24, 24), y.shape
print("wheel:", diffstride.__file__, "imports and runs without a compiler on PATH")
'
