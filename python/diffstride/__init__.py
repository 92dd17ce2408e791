"""DiffStride for PyTorch: spectral pooling with strides learned by gradient
descent (Riad et al., ICLR 2022), backed by the compiled ops of this
project (torch.ops.diffstride)."""
from . import onnx  # also makes the ONNX export of a live layer name freeze
from . import models
from .freeze import FrozenDiffStride, freeze
from .modules import (DiffStride, DiffStride1d, DiffStride3d, FixedSpectralPooling,
                      FixedSpectralPooling1d, FixedSpectralPooling3d, SpatialPooling,
                      constrain_strides, current_strides)

__all__ = [
    "models", "onnx", "freeze", "FrozenDiffStride",
    "DiffStride", "DiffStride1d", "DiffStride3d",
    "FixedSpectralPooling", "FixedSpectralPooling1d", "FixedSpectralPooling3d",
    "SpatialPooling", "constrain_strides", "current_strides",
]
__version__ = "0.1.0"
