"""Loads the compiled op library that the package installs beside this
file (diffstride/_C*.so); its ops register under torch.ops.diffstride."""
import pathlib

import torch


def _load() -> None:
    here = pathlib.Path(__file__).resolve().parent
    candidates = sorted(here.glob("_C*.so"))
    if not candidates:
        raise ImportError(
            f"diffstride: the compiled library (_C*.so) is missing in {here}; "
            "install the package with `pip install --no-build-isolation .` "
            "from the checkout")
    torch.ops.load_library(str(candidates[0]))


_load()
