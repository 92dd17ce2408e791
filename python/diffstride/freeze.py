"""Freezing for deployment: at fixed strides a 2-D DiffStride layer is a
fixed linear map, two small matrix products per plane (docs/layers.md)."""
from typing import Optional

import torch
from torch import Tensor, nn

from .modules import DiffStride, DiffStride1d, DiffStride3d


class FrozenDiffStride(nn.Module):
    """A DiffStride layer at fixed strides for one input size, as plain
    PyTorch ops on buffers: y = A_r x G_r + A_i x G_i for every plane x,
    computed as (x G_r)^T A_r^T + (x G_i)^T A_i^T, transposed back, so that
    every constant multiplies from the right (ONNX runtimes such as
    OpenCV's take MatMul with a constant second operand). Runs without the
    compiled library and exports with torch.jit.trace and torch.onnx.export."""

    __constants__ = ["real_only"]

    def __init__(self, rows: Tensor, columns: Tensor) -> None:
        super().__init__()
        height, out_width = rows.shape[1] // 2, columns.shape[1] // 2
        row_imag, column_imag = rows[:, height:], columns[:, out_width:]
        self.register_buffer("column_real", columns[:, :out_width].contiguous())
        self.register_buffer("row_real_t", rows[:, :height].t().contiguous())
        # Without a mask on one axis its imaginary part vanishes, and so does
        # the second product.
        self.real_only = bool((row_imag == 0).all() or (column_imag == 0).all())
        empty = torch.zeros(0, dtype=rows.dtype)
        self.register_buffer("column_imag", empty if self.real_only else column_imag.contiguous())
        self.register_buffer("row_imag_t", empty if self.real_only else row_imag.t().contiguous())

    def forward(self, input: Tensor) -> Tensor:
        height, width = self.row_real_t.shape[0], self.column_real.shape[0]
        # Eager calls only: a traced or exported graph has its sizes fixed.
        if not torch.jit.is_tracing() and (input.shape[-2] != height
                                           or input.shape[-1] != width):
            raise ValueError(f"FrozenDiffStride: frozen for {height} x {width} inputs, got "
                             f"{input.shape[-2]} x {input.shape[-1]}; freeze the model at this "
                             "size (diffstride.freeze(model, example_input))")
        out = torch.matmul(torch.matmul(input, self.column_real).transpose(-1, -2), self.row_real_t)
        if not self.real_only:
            out = out + torch.matmul(torch.matmul(input, self.column_imag).transpose(-1, -2),
                                     self.row_imag_t)
        return out.transpose(-1, -2)

    def extra_repr(self) -> str:
        return (f"input={self.row_real_t.shape[0]}x{self.column_real.shape[0]}, "
                f"output={self.row_real_t.shape[1]}x{self.column_real.shape[1]}")


def _frozen(layer: DiffStride) -> nn.Module:
    if len(layer.last_input_size) != 2:
        raise ValueError("freeze: a DiffStride layer has seen no input, so its input size is "
                         "unknown: pass example_input (an input of the deployment size)")
    strides = layer.strides.detach().to(torch.float64).cpu()
    rows, columns = torch.ops.diffstride.diffstride_matrices(
        layer.last_input_size, strides, layer.smoothness_factor, layer.cropping)
    height, width = layer.last_input_size
    out_width = columns.shape[1] // 2
    identity = rows.shape == (height, 2 * height) and out_width == width and torch.equal(
        rows, torch.cat([torch.eye(height, dtype=rows.dtype), torch.zeros_like(rows[:, :height])], 1)
    ) and torch.equal(
        columns, torch.cat([torch.eye(width, dtype=columns.dtype), torch.zeros_like(columns[:, :width])], 1))
    if identity:
        # Strides at their floor keep every bin unmasked: the layer is the identity.
        return nn.Identity()
    return FrozenDiffStride(rows, columns).to(layer.strides.device, layer.strides.dtype)


def freeze(model: nn.Module, example_input: Optional[Tensor] = None) -> nn.Module:
    """Replaces, in place, every 2-D DiffStride layer of `model` by the
    FrozenDiffStride of its current strides and the input size it last saw
    (with `example_input`, the model first runs on it, in eval mode, so that
    every layer sees its deployment size). Returns `model`, or for a bare
    DiffStride layer its frozen replacement."""
    if example_input is not None:
        training = model.training
        model.eval()
        with torch.no_grad():
            model(example_input)
        model.train(training)
    if isinstance(model, (DiffStride1d, DiffStride3d)):
        raise NotImplementedError(
            f"freeze: {type(model).__name__} computes through FFTs; only the 2-D "
            "DiffStride freezes into matrix products")
    if isinstance(model, DiffStride):
        # A bare layer has no parent to replace it in: its frozen form is
        # returned.
        return _frozen(model)
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, (DiffStride1d, DiffStride3d)):
                raise NotImplementedError(
                    f"freeze: {type(child).__name__} computes through FFTs; only the 2-D "
                    "DiffStride freezes into matrix products")
            if isinstance(child, DiffStride):
                setattr(parent, name, _frozen(child))
    return model
