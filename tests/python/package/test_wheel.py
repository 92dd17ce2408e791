"""The wheel: `pip wheel --no-build-isolation --no-index . -w DIST` builds
one wheel (reusing the main build's library through DIFFSTRIDE_BUILD_DIR),
and a fresh virtual environment with no compiler on its PATH installs it and
imports diffstride."""
import os
import pathlib
import subprocess
import sys

import torch

SOURCES = pathlib.Path(__file__).resolve().parents[3]

CHECK = """
import shutil, torch, diffstride
for tool in ("cc", "gcc", "g++", "c++", "clang", "cmake"):
    assert shutil.which(tool) is None, tool + " is on PATH"
y = diffstride.DiffStride()(torch.randn(2, 3, 32, 32))
print(diffstride.__file__, tuple(y.shape))
"""


def test_one_wheel_builds_offline_and_imports_without_a_compiler(tmp_path):
    dist = tmp_path / "dist"
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-v", "--no-build-isolation", "--no-index",
         str(SOURCES), "-w", str(dist)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=1200,
        env=dict(os.environ, DIFFSTRIDE_BUILD_DIR=os.environ.get(
            "DIFFSTRIDE_BUILD_DIR", str(SOURCES / "build"))))
    assert built.returncode == 0, built.stdout[-3000:]
    assert "diffstride: building the layer library" in built.stdout  # progress shown
    wheels = list(dist.glob("diffstride-*.whl"))
    assert len(wheels) == 1, wheels
    # A fresh environment with the wheel, which then sees this one's torch
    # through a .pth file, after its own site-packages.
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run([str(venv / "bin/pip"), "install", "--quiet", "--no-index", str(wheels[0])],
                   check=True)
    torch_site = pathlib.Path(torch.__file__).resolve().parents[1]
    (next(venv.glob("lib/python*/site-packages")) / "torch_site.pth").write_text(f"{torch_site}\n")
    ran = subprocess.run([str(venv / "bin/python"), "-c", CHECK], cwd=tmp_path,
                         env={"HOME": str(tmp_path), "PATH": str(venv / "bin")},
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=300)
    assert ran.returncode == 0, ran.stdout
    assert str(venv) in ran.stdout and "(2, 3, 24, 24)" in ran.stdout, ran.stdout
