"""The diffstride Python package: `pip install --no-build-isolation .`

Builds the layer library (src/, CMake) against the torch of the Python that
runs pip, and installs it as diffstride/_C*.so with the Python modules of
python/diffstride. With DIFFSTRIDE_BUILD_DIR set to an existing CMake build
of this checkout made against that same torch, its library is reused
instead of compiled again.
"""
import os
import pathlib
import shutil
import subprocess

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

ROOT = pathlib.Path(__file__).resolve().parent


class CMakeBuild(build_ext):
    """Builds the CMake target `diffstride` (the layers and their ops, with
    the CPU kernel's per-instruction-set variants) and copies it in."""

    def build_extension(self, ext):
        import sys

        import torch

        build_dir = os.environ.get("DIFFSTRIDE_BUILD_DIR")
        print(f"diffstride: building the layer library in {build_dir or ROOT / 'build-python'} "
              f"against torch {torch.__version__} (pip -v shows CMake's output)", flush=True)
        if not build_dir:
            build_dir = str(ROOT / "build-python")
            subprocess.check_call([
                "cmake", "-S", str(ROOT), "-B", build_dir,
                "-DCMAKE_BUILD_TYPE=Release",
                # CMake asks this Python for its torch's folder.
                f"-DDIFFSTRIDE_PYTHON={sys.executable}",
                "-DDIFFSTRIDE_BUILD_TRAINING=OFF",
                "-DDIFFSTRIDE_BUILD_BENCHMARKS=OFF",
            ])
        subprocess.check_call([
            "cmake", "--build", build_dir, "--target", "diffstride",
            "-j", str(os.cpu_count() or 1),
        ])
        target = pathlib.Path(self.get_ext_fullpath(ext.name))
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(pathlib.Path(build_dir) / "libdiffstride.so", target)
        print(f"diffstride: library copied to {target}", flush=True)


setup(
    name="diffstride",
    version="0.1.0",
    description="Learnable strides for convolutional networks (DiffStride) for PyTorch",
    packages=["diffstride"],
    package_dir={"": "python"},
    ext_modules=[Extension("diffstride._C", sources=[])],
    cmdclass={"build_ext": CMakeBuild},
    # setuptools' own build folder, away from the CMake build in build/.
    options={"build": {"build_base": "build-python/setuptools"}},
    python_requires=">=3.11",
    # No install_requires: the library is built against the torch already
    # installed (the environment's), which pip
    # could not fetch or build from an offline index (`pip wheel --no-index`);
    # importing diffstride without torch fails at `import torch`.
)
