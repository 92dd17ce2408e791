"""ONNX export of DiffStride models.

A live DiffStride layer has no ONNX form (its strides are learnable): the
TorchScript exporter's symbolic, and the layer itself under torch.export
(the path of PyTorch's default ONNX exporter), refuse it with a message that
says what to do instead, freeze the model (diffstride.freeze), which turns
every 2-D layer into two MatMul per plane at the traced size.
:func:`export` writes a frozen model in the form that strict importers such
as OpenCV's DNN read."""
import inspect
import io
from typing import Any, BinaryIO, Tuple, Union

import torch
from torch import Tensor, nn

from .modules import EXPORT_MESSAGE


def _refuse(graph, *args):
    raise RuntimeError(EXPORT_MESSAGE)


# Opset 9 and every later one.
torch.onnx.register_custom_op_symbolic("diffstride::diffstride", _refuse, 9)


def _inline_constant_identities(model) -> None:
    """PyTorch's exporter stores equal constants once and feeds every other
    use through an Identity node (a fresh model's batch norms are all equal);
    OpenCV 4.6 cannot read an Identity whose input is a constant. Each such
    node becomes a constant of its own under the node's output name, unless
    that name is a graph output or the constant a graph input (a value the
    caller may feed)."""
    from onnx import numpy_helper
    graph = model.graph
    inputs = {value.name for value in graph.input}
    outputs = {value.name for value in graph.output}
    constants = {tensor.name: tensor for tensor in graph.initializer
                 if tensor.name not in inputs}
    kept = []
    for node in graph.node:
        if (node.op_type == "Identity" and node.input[0] in constants
                and node.output[0] not in outputs):
            copy = numpy_helper.from_array(numpy_helper.to_array(constants[node.input[0]]),
                                           node.output[0])
            graph.initializer.append(copy)
        else:
            kept.append(node)
    del graph.node[:]
    graph.node.extend(kept)


def export(model: nn.Module, args: Union[Tensor, Tuple[Any, ...]], f: Union[str, BinaryIO],
           opset_version: int = 13, **kwargs: Any) -> None:
    """torch.onnx.export of a frozen model (diffstride.freeze), with every
    constant fed to the graph directly, so that OpenCV's DNN and
    onnxruntime both read the file. Needs the onnx package (Debian's
    python3-onnx); `kwargs` go to torch.onnx.export."""
    try:
        import onnx
    except ImportError as error:
        raise ImportError("diffstride.onnx.export needs the onnx package (Debian: "
                          "apt-get install python3-onnx; elsewhere: pip install onnx)") from error
    buffer = io.BytesIO()
    # PyTorch >= 2.9 exports through dynamo by default; the file OpenCV
    # reads is the TorchScript exporter's.
    if "dynamo" in inspect.signature(torch.onnx.export).parameters:
        kwargs.setdefault("dynamo", False)
    torch.onnx.export(model, args, buffer, opset_version=opset_version, **kwargs)
    exported = onnx.load_from_string(buffer.getvalue())
    _inline_constant_identities(exported)
    onnx.checker.check_model(exported)
    onnx.save(exported, f)
