#!/usr/bin/env bash
# Installs every Debian package diffstride needs to build, test and run.
# Run as root on Debian 12 (bookworm). Safe to run again: apt-get skips what is there.
set -euo pipefail

packages=(
  # toolchain
  cmake g++ make ccache git
  # LibTorch (CPU) and a fast BLAS for its matrix products; without
  # libopenblas0-openmp LibTorch falls back to the reference BLAS (~30x slower).
  libtorch-dev libopenblas0-openmp
  # the Gloo headers LibTorch's c10d ProcessGroupGloo.hpp includes
  # (multi-process training on the CPU)
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
  # Python: the same LibTorch build for /usr/bin/python3, and what the
  # package's offline install and tests need
  python3 python3-torch python3-venv python3-pip python3-setuptools
  python3-wheel python3-pytest
  # onnx (diffstride.onnx.export), an independent ONNX runtime for the
  # frozen-model export test, and an
  # independent decoder of the image-folder tests' files; Pillow writes the
  # PNG and JPEG kinds OpenCV cannot (palette, grey + alpha, CMYK)
  python3-opencv python3-pil python3-onnx
)

if [ "$(id -u)" -ne 0 ]; then
  echo "install-deps.sh: run as root (apt-get needs it)" >&2
  exit 1
fi

export DEBIAN_FRONTEND=noninteractive
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "install-deps.sh: installing ${missing[*]}"
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
else
  echo "install-deps.sh: all ${#packages[@]} packages present"
fi
