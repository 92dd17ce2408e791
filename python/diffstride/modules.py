"""DiffStride, FixedSpectralPooling and SpatialPooling as torch.nn modules,
with the semantics of the C++ modules (docs/layers.md)."""
from typing import List, Optional, Sequence, Union

import torch
from torch import Tensor, nn

from . import _library  # noqa: F401  (registers torch.ops.diffstride)

Strides = Union[float, Sequence[float]]


def _as_list(value: Strides) -> List[float]:
    return [float(value)] if isinstance(value, (int, float)) else [float(v) for v in value]


def _diffstride(input: Tensor, strides: Tensor, layer: str, dims: int,
                smoothness_factor: float, cropping: bool, lower_limit_stride: float,
                upper_limit_stride: Optional[float]) -> Tensor:
    """The modules' forward: the input check, the clamp of the strides in
    place with the input's size, and the layer on a copy of the strides (a
    later call at another input size may clamp the parameter in place
    without invalidating this call's graph)."""
    torch.ops.diffstride.check_layer_input(input, layer, dims, smoothness_factor)
    torch.ops.diffstride.constrain_strides_(strides, input.shape[2:], smoothness_factor,
                                            lower_limit_stride, upper_limit_stride)
    return torch.ops.diffstride.diffstride(input, strides.clone(), smoothness_factor, cropping)


# What an exporter is told of a live layer (torch.export, and the ONNX
# exporters, diffstride/onnx.py): its output size follows its learnable
# strides' values, so the model is exported frozen at its current strides.
EXPORT_MESSAGE = ("DiffStride has no exported form while its strides are learnable: freeze the "
                  "model first, diffstride.freeze(model, example_input), which turns every 2-D "
                  "DiffStride layer into two matrix products at the input size it is frozen for")
_is_exporting = getattr(torch.compiler, "is_exporting", lambda: False)


def _refuse_export() -> None:
    if _is_exporting():
        raise RuntimeError(EXPORT_MESSAGE)


def _eager_under_torch_compile(function):
    """torch.compile (PyTorch >= 2.1) calls `function` as it is, as one graph
    break: the layer reads its strides' values on the host to size its
    crop, and a compiled graph has no values to read (docs/layers.md, "Under
    tracers and compilers")."""
    disable = getattr(getattr(torch, "compiler", None), "disable", None)
    return function if disable is None else disable(function)


@_eager_under_torch_compile
@torch.jit.unused
def _diffstride_forward(input: Tensor, strides: Tensor, layer: str, dims: int,
                        smoothness_factor: float, cropping: bool, lower_limit_stride: float,
                        upper_limit_stride: Optional[float]) -> Tensor:
    """_diffstride for Python callers (TorchScript calls _diffstride)."""
    _refuse_export()
    return _diffstride(input, strides, layer, dims, smoothness_factor, cropping,
                       lower_limit_stride, upper_limit_stride)


# torch.fx.symbolic_trace records calls of this function as graph nodes
# instead of tracing into them (the input's sizes are not known there).
torch.fx.wrap("_diffstride_forward")


# torch.fx.symbolic_trace alone (newer PyTorch tells it apart from
# torch.export, and warns when asked the older, shared question).
_is_fx_symbolic_tracing = getattr(torch.fx._symbolic_trace, "is_fx_symbolic_tracing",
                                  torch.fx._symbolic_trace.is_fx_tracing)


@torch.jit.unused
def _fx_tracing() -> bool:
    return _is_fx_symbolic_tracing()


class _DiffStrideNd(nn.Module):
    """Spectral pooling whose strides are learned (docs/layers.md)."""

    __constants__ = ["smoothness_factor", "cropping", "shared_stride",
                     "lower_limit_stride", "upper_limit_stride", "dims", "layer"]
    dims: int
    layer: str
    last_input_size: List[int]
    upper_limit_stride: Optional[float]

    def __init__(self, strides: Strides = 2.0, smoothness_factor: float = 4.0,
                 cropping: bool = True, trainable: bool = True,
                 shared_stride: bool = False, lower_limit_stride: float = 1.0,
                 upper_limit_stride: Optional[float] = None) -> None:
        super().__init__()
        # The C++ module's checks and messages (raising ValueError).
        values = torch.ops.diffstride.diffstride_initial_strides(
            self.dims, _as_list(strides), float(smoothness_factor),
            float(lower_limit_stride),
            None if upper_limit_stride is None else float(upper_limit_stride),
            bool(shared_stride))
        self.smoothness_factor = float(smoothness_factor)
        self.cropping = bool(cropping)
        self.shared_stride = bool(shared_stride)
        self.lower_limit_stride = float(lower_limit_stride)
        self.upper_limit_stride = None if upper_limit_stride is None else float(upper_limit_stride)
        self.strides = nn.Parameter(torch.tensor(values, dtype=torch.float32),
                                    requires_grad=trainable)
        # Spatial size of the last input, for the constraint's floor.
        self.last_input_size = []

    def forward(self, input: Tensor) -> Tensor:
        if torch.jit.is_scripting():
            self.last_input_size = list(input.shape[2:])
            return _diffstride(input, self.strides, self.layer, self.dims,
                               self.smoothness_factor, self.cropping,
                               self.lower_limit_stride, self.upper_limit_stride)
        # Under torch.fx the sizes are not known, and the traced graph holds
        # the layer as one call of _diffstride_forward.
        if not _fx_tracing():
            self.last_input_size = list(input.shape[2:])
        return _diffstride_forward(input, self.strides, self.layer, self.dims,
                                   self.smoothness_factor, self.cropping,
                                   self.lower_limit_stride, self.upper_limit_stride)

    def constrain_strides(self) -> None:
        """Clamps the strides in place to [max(lower, size / (size - R)),
        upper], with the spatial size of the last forward's input (before
        any forward: to [lower, upper]), as the C++ module does. Records no
        gradient; writes only when a value moves."""
        torch.ops.diffstride.constrain_strides_(
            self.strides, self.last_input_size, self.smoothness_factor,
            self.lower_limit_stride, self.upper_limit_stride)

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


class DiffStride(_DiffStrideNd):
    """DiffStride over height and width of N x C x H x W inputs.

    Args:
        strides: initial strides (height, width), each >= 1; one number sets both.
        smoothness_factor: R, the width of the mask's ramp in bins (> 0).
        cropping: keep only the frequencies the mask lets through.
        trainable: whether the strides are learned.
        shared_stride: one stride for both axes.
        lower_limit_stride, upper_limit_stride: the constraint's limits.

    Output size of an H x W input, with R = smoothness_factor and the target
    sizes t_h = max(H / s_h, 2), t_w = max(W / s_w, 2), with the strides as
    the forward's clamp leaves them (docs/layers.md):

        H' = 2 min(ceil(t_h / 2 + R), H / 2)              (H even)
        H' = 2 min(ceil(t_h / 2 + R), (H + 1) / 2) - 1    (H odd)
        W' = 2 (min(ceil(t_w / 2 + 1 + R), floor(W / 2) + 1) - 1)

    and H x 2 floor(W / 2) without cropping: the kept band is the target
    size plus the mask's ramp of R bins on each side.

    The strides are clamped in place at every forward; call
    :func:`diffstride.constrain_strides` on the model after each optimiser
    step. The recipe puts no weight decay on them (nor on batch norms):
    :func:`diffstride.models.parameter_groups` splits a model's parameters
    into the two groups it uses.
    """
    dims = 2
    layer = "DiffStride"


class DiffStride3d(_DiffStrideNd):
    """DiffStride over depth, height and width of N x C x D x H x W inputs."""
    dims = 3
    layer = "DiffStride3d"


class _FixedSpectralPoolingNd(nn.Module):
    """Keeps the lowest frequencies of the DFT: fixed, possibly fractional,
    strides (docs/layers.md)."""

    __constants__ = ["strides", "dims", "layer"]
    dims: int
    layer: str

    def __init__(self, strides: Strides = 2.0) -> None:
        super().__init__()
        self.strides: List[float] = torch.ops.diffstride.fixed_spectral_pooling_strides(
            self.dims, _as_list(strides))

    def forward(self, input: Tensor) -> Tensor:
        torch.ops.diffstride.check_layer_input(input, self.layer, self.dims)
        return torch.ops.diffstride.fixed_spectral_pooling(input, self.strides)

    def extra_repr(self) -> str:
        return f"strides={self.strides}"


class FixedSpectralPooling1d(_FixedSpectralPoolingNd):
    """Fixed spectral pooling of N x C x L inputs: keeps max(floor(L/s), 2)
    samples' worth of the lowest frequencies."""
    dims = 1
    layer = "FixedSpectralPooling1d"


class FixedSpectralPooling(_FixedSpectralPoolingNd):
    """Fixed spectral pooling of N x C x H x W inputs: output height
    floor(H/s_h) made even, width floor(W/s_w), each at least 2.

    Args:
        strides: (height, width) strides, floats >= 1; one number sets both.
    """
    dims = 2
    layer = "FixedSpectralPooling"


class FixedSpectralPooling3d(_FixedSpectralPoolingNd):
    """Fixed spectral pooling of N x C x D x H x W inputs, one stride per
    axis."""
    dims = 3
    layer = "FixedSpectralPooling3d"


class SpatialPooling(nn.Module):
    """Subsampling with integer strides and 'same' padding: a 1 x 1 average
    pool of N x C x H x W inputs."""

    __constants__ = ["strides"]

    def __init__(self, strides: Union[int, Sequence[int]] = 2) -> None:
        super().__init__()
        values = [int(strides)] if isinstance(strides, int) else [int(s) for s in strides]
        self.strides: List[int] = torch.ops.diffstride.spatial_pooling_strides(values)

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
