"""DiffStride, FixedSpectralPooling and SpatialPooling as torch.nn modules,
with the semantics of the C++ modules (docs/layers.md)."""
import math
from typing import List, Optional, Sequence, Union

import torch
from torch import Tensor, nn

from . import _library  # noqa: F401  (registers torch.ops.diffstride)

Strides = Union[float, Sequence[float]]

def _per_axis(value: Strides, dims: int, what: str, layer: str) -> List[float]:
    values = [float(value)] * dims if isinstance(value, (int, float)) else [float(v) for v in value]
    if len(values) != dims:
        raise ValueError(f"{layer}: expected 1 or {dims} {what}, got {len(values)}")
    return values


class _DiffStrideNd(nn.Module):
    """Spectral pooling whose strides are learned (docs/layers.md)."""

    __constants__ = ["smoothness_factor", "cropping", "shared_stride",
                     "lower_limit_stride", "upper_limit_stride", "dims", "layer", "layout"]
    dims: int
    layer: str
    layout: str
    last_input_size: List[int]
    upper_limit_stride: Optional[float]

    def __init__(self, strides: Strides = 2.0, smoothness_factor: float = 4.0,
                 cropping: bool = True, trainable: bool = True,
                 shared_stride: bool = False, lower_limit_stride: float = 1.0,
                 upper_limit_stride: Optional[float] = None) -> None:
        super().__init__()
        layer = self.layer
        init = _per_axis(strides, self.dims, "strides", layer)
        for s in init:
            if not (math.isfinite(s) and s >= 1.0):
                raise ValueError(f"{layer}: strides init must be finite and >= 1, got {s}")
        if not (math.isfinite(smoothness_factor) and smoothness_factor > 0):
            raise ValueError(f"{layer}: smoothness_factor must be a finite number > 0, "
                             f"got {smoothness_factor}")
        if not (math.isfinite(lower_limit_stride) and lower_limit_stride >= 1.0):
            raise ValueError(f"{layer}: lower_limit_stride must be finite and >= 1, "
                             f"got {lower_limit_stride}")
        if upper_limit_stride is not None and not upper_limit_stride >= lower_limit_stride:
            raise ValueError(f"{layer}: upper_limit_stride must be >= lower_limit_stride "
                             f"({lower_limit_stride}), got {upper_limit_stride}")
        for s in init:
            if s < lower_limit_stride or (upper_limit_stride is not None and s > upper_limit_stride):
                raise ValueError(f"{layer}: strides init {s} lies outside "
                                 "[lower_limit_stride, upper_limit_stride]")
        if shared_stride and any(s != init[0] for s in init):
            raise ValueError(f"{layer}: shared_stride needs equal initial strides, got {tuple(init)}")
        self.smoothness_factor = float(smoothness_factor)
        self.cropping = bool(cropping)
        self.shared_stride = bool(shared_stride)
        self.lower_limit_stride = float(lower_limit_stride)
        self.upper_limit_stride = None if upper_limit_stride is None else float(upper_limit_stride)
        values = init[:1] if shared_stride else init
        self.strides = nn.Parameter(torch.tensor(values, dtype=torch.float32),
                                    requires_grad=trainable)
        # Spatial size of the last input, for the constraint's floor.
        self.last_input_size = []

    def forward(self, input: Tensor) -> Tensor:
        if input.dim() != self.dims + 2:
            raise ValueError(f"{self.layer}: expected a {self.dims + 2}-D "
                             f"{self.layout} input, got a {input.dim()}-D "
                             f"tensor of shape {list(input.shape)}")
        sizes = list(input.shape[2:])
        for size in sizes:
            if not float(size) > self.smoothness_factor:
                raise ValueError(f"{self.layer}: every spatial size of the input must exceed "
                                 f"the smoothness factor R = {self.smoothness_factor}, got {sizes}")
        self.last_input_size = sizes
        self.constrain_strides()
        return torch.ops.diffstride.diffstride(input, self.strides,
                                               self.smoothness_factor, self.cropping)

    def constrain_strides(self) -> None:
        """Clamps the strides in place to [max(lower, size / (size - R)),
        upper], with the spatial size of the last forward's input (before
        any forward: to [lower, upper]). Records no gradient; writes only
        when a value moves, as the C++ module does."""
        floors: List[float] = []
        for axis in range(self.dims):
            floor = self.lower_limit_stride
            if len(self.last_input_size) == self.dims:
                size = float(self.last_input_size[axis])
                floor = max(floor, size / (size - self.smoothness_factor))
            floors.append(floor)
        with torch.no_grad():
            values = self.strides.detach().to(torch.float64)
            if values.numel() == 1:
                lower = torch.tensor([max(floors)], dtype=torch.float64, device=values.device)
            else:
                lower = torch.tensor(floors, dtype=torch.float64, device=values.device)
            constrained = torch.maximum(values, lower)
            upper = self.upper_limit_stride
            if upper is not None:
                constrained = constrained.clamp(max=upper)
            if not torch.equal(constrained, values):
                self.strides.copy_(constrained.to(self.strides.dtype))

    def current_strides(self) -> List[float]:
        """The strides, one per axis, as plain numbers."""
        values = self.strides.detach().to(torch.float64).cpu().tolist()
        return [values[0] if len(values) == 1 else values[axis] for axis in range(self.dims)]

    def extra_repr(self) -> str:
        return (f"strides={self.current_strides()}, smoothness_factor={self.smoothness_factor}, "
                f"cropping={self.cropping}, trainable={self.strides.requires_grad}, "
                f"shared_stride={self.shared_stride}, lower_limit_stride={self.lower_limit_stride}, "
                f"upper_limit_stride={self.upper_limit_stride}")


class DiffStride1d(_DiffStrideNd):
    """DiffStride over the length of N x C x L inputs (audio, sequences)."""
    dims = 1
    layer = "DiffStride1d"
    layout = "N x C x L"


class DiffStride(_DiffStrideNd):
    """DiffStride over height and width of N x C x H x W inputs.

    Args:
        strides: initial strides (height, width), each >= 1; one number sets both.
        smoothness_factor: R, the width of the mask's ramp in bins (> 0).
        cropping: keep only the frequencies the mask lets through.
        trainable: whether the strides are learned.
        shared_stride: one stride for both axes.
        lower_limit_stride, upper_limit_stride: the constraint's limits.

    The strides are clamped in place at every forward; call
    :func:`diffstride.constrain_strides` on the model after each optimiser
    step.
    """
    dims = 2
    layer = "DiffStride"
    layout = "N x C x H x W"


class DiffStride3d(_DiffStrideNd):
    """DiffStride over depth, height and width of N x C x D x H x W inputs."""
    dims = 3
    layer = "DiffStride3d"
    layout = "N x C x D x H x W"


class _FixedSpectralPoolingNd(nn.Module):
    """Keeps the lowest frequencies of the DFT: fixed, possibly fractional,
    strides (docs/layers.md)."""

    __constants__ = ["strides", "dims", "layer", "layout"]
    dims: int
    layer: str
    layout: str

    def __init__(self, strides: Strides = 2.0) -> None:
        super().__init__()
        values = _per_axis(strides, self.dims, "strides", self.layer)
        for s in values:
            if not (math.isfinite(s) and s >= 1.0):
                raise ValueError(f"{self.layer}: strides must be finite and >= 1, got {s}")
        self.strides: List[float] = values

    def forward(self, input: Tensor) -> Tensor:
        if input.dim() != self.dims + 2:
            raise ValueError(f"{self.layer}: expected a {self.dims + 2}-D "
                             f"{self.layout} input, got a {input.dim()}-D "
                             f"tensor of shape {list(input.shape)}")
        return torch.ops.diffstride.fixed_spectral_pooling(input, self.strides)

    def extra_repr(self) -> str:
        return f"strides={self.strides}"


class FixedSpectralPooling1d(_FixedSpectralPoolingNd):
    """Fixed spectral pooling of N x C x L inputs: keeps max(floor(L/s), 2)
    samples' worth of the lowest frequencies."""
    dims = 1
    layer = "FixedSpectralPooling1d"
    layout = "N x C x L"


class FixedSpectralPooling(_FixedSpectralPoolingNd):
    """Fixed spectral pooling of N x C x H x W inputs: output height
    floor(H/s_h) made even, width floor(W/s_w), each at least 2.

    Args:
        strides: (height, width) strides, floats >= 1; one number sets both.
    """
    dims = 2
    layer = "FixedSpectralPooling"
    layout = "N x C x H x W"


class FixedSpectralPooling3d(_FixedSpectralPoolingNd):
    """Fixed spectral pooling of N x C x D x H x W inputs, one stride per
    axis."""
    dims = 3
    layer = "FixedSpectralPooling3d"
    layout = "N x C x D x H x W"


class SpatialPooling(nn.Module):
    """Subsampling with integer strides and 'same' padding: a 1 x 1 average
    pool of N x C x H x W inputs."""

    __constants__ = ["strides"]

    def __init__(self, strides: Union[int, Sequence[int]] = 2) -> None:
        super().__init__()
        values = [int(strides)] * 2 if isinstance(strides, int) else [int(s) for s in strides]
        if len(values) != 2 or any(s < 1 for s in values):
            raise ValueError(f"SpatialPooling: strides must be 1 or 2 integers >= 1, got {strides}")
        self.strides: List[int] = values

    def forward(self, input: Tensor) -> Tensor:
        return torch.ops.diffstride.spatial_pooling(input, self.strides)

    def extra_repr(self) -> str:
        return f"strides={self.strides}"


def constrain_strides(model: nn.Module) -> None:
    """Applies every DiffStride layer's stride constraint: call after each
    optimiser step."""
    for module in model.modules():
        if isinstance(module, _DiffStrideNd):
            module.constrain_strides()


def current_strides(model: nn.Module) -> List[List[float]]:
    """Every DiffStride layer's current strides, in module order."""
    return [m.current_strides() for m in model.modules() if isinstance(m, _DiffStrideNd)]
