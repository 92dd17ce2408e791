#!/usr/bin/env bash
# Installs everything diffstride needs to build, test and run: Debian's
# packages (as root, on Debian 12), then the Python environment .venv in the
# checkout with requirements.txt (PyTorch from PyPI: its LibTorch builds the
# C++ code). Safe to run again, or after an interruption: apt-get and pip
# skip what is there and finish what is not; a damaged .venv is made anew.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(
  # toolchain
  cmake g++ make ccache git
  # the Gloo headers LibTorch's c10d ProcessGroupGloo.hpp includes
  # (multi-process training on the CPU); PyPI's torch ships Gloo compiled in
  # but not its headers
  libgloo-dev
  # tests and benchmarks; clang with libFuzzer for the fuzz targets;
  # clang-format for the format check
  libgtest-dev libgmock-dev libbenchmark-dev clang libclang-rt-14-dev
  clang-format
  # command-line tools
  libcli11-dev
  # data: gzip-compressed IDX files, and the Fashion-MNIST dataset itself;
  # JPEG and PNG decoders for image folders
  zlib1g-dev dataset-fashion-mnist libjpeg62-turbo-dev libpng-dev
  # sound for audio folders (decoding, resampling; found with pkg-config),
  # and espeak-ng, which speaks the digits of the speech example
  libsndfile1-dev libsamplerate0-dev pkg-config espeak-ng
  # training configs (TOML); the plots of `diffstride report`
  libtomlplusplus-dev gnuplot-nox
  # Python 3.11 and its venv module, for .venv (PyTorch and the tests'
  # packages come from PyPI, requirements.txt)
  python3 python3-venv
)

install_debian_packages() {
  local missing=() p
  for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if [ "${#missing[@]}" -eq 0 ]; then
    echo "install-deps.sh: all ${#packages[@]} Debian packages present"
    return
  fi
  if [ "$(id -u)" -ne 0 ]; then
    echo "install-deps.sh: missing Debian packages ${missing[*]}; run as root (apt-get needs it)" >&2
    exit 1
  fi
  echo "install-deps.sh: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
}

# The environment is usable when its Python runs pip; anything less (a
# creation cut short, a Python that is gone) is removed and made again.
make_venv() {
  if .venv/bin/python -m pip --version > /dev/null 2>&1; then
    return
  fi
  if [ -e .venv ]; then
    echo "install-deps.sh: .venv is damaged (its pip does not run): making it anew"
    rm -rf .venv
  fi
  /usr/bin/python3 -m venv .venv
}

# Prints nothing when .venv's torch is the pinned version with CUDA, else
# what it found and what is needed.
torch_mismatch() {
  .venv/bin/python - "$1" << 'EOF' 2>&1 || true
import sys
need = sys.argv[1]
try:
    import torch
except Exception as error:  # a torch cut short by an interruption, say
    print(f"torch does not import ({type(error).__name__}: {error})")
    sys.exit()
build = f"CUDA {torch.version.cuda}" if torch.version.cuda else "CPU only"
if torch.__version__.split("+")[0] != need or not torch.version.cuda:
    print(f"found torch {torch.__version__} ({build})")
EOF
}

install_python_packages() {
  local pin found
  pin=$(sed -n 's/^torch==\([^ ;#]*\).*/\1/p' requirements.txt)
  echo "install-deps.sh: Python packages of requirements.txt into .venv (torch $pin from PyPI)"
  # (What is already there is not listed: about 40 lines once installed.)
  .venv/bin/python -m pip install --disable-pip-version-check -r requirements.txt |
    { grep -v '^Requirement already satisfied' || true; }
  found=$(torch_mismatch "$pin")
  if [ -n "$found" ]; then
    echo "install-deps.sh: $found in .venv; the project needs torch $pin with CUDA" \
      "(PyPI's build): reinstalling it" >&2
    .venv/bin/python -m pip install --disable-pip-version-check --force-reinstall --no-deps \
      "torch==$pin"
    found=$(torch_mismatch "$pin")
    if [ -n "$found" ]; then
      echo "install-deps.sh: still $found in .venv; the project needs torch $pin with" \
        "CUDA: check pip's index settings (pip config list), then run this again" >&2
      exit 1
    fi
  fi
}

install_debian_packages
make_venv
install_python_packages
echo "install-deps.sh: done"
