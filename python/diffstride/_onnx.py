"""torch.onnx.export of a live DiffStride layer: ONNX has no operator for
it, so the exporter's symbolic refuses with a message that says what to do
instead: freeze the model, which turns every 2-D layer into two MatMul per
plane at the traced size (diffstride.freeze)."""
import torch

_MESSAGE = ("DiffStride has no ONNX form while its strides are learnable: freeze the model "
            "first, diffstride.freeze(model, example_input), which turns every 2-D DiffStride "
            "layer into two matrix products at the input size it is frozen for")


def _refuse(graph, *args):
    raise RuntimeError(_MESSAGE)


# Opset 9 and every later one.
torch.onnx.register_custom_op_symbolic("diffstride::diffstride", _refuse, 9)
