"""Shapes without data (the meta device and FakeTensor, which
torch.compile and torch.export trace with), modules moved to `meta` and
back, and, where PyTorch >= 2.1 is installed, torch.compile and
torch.library.opcheck."""
import pytest
import torch
from torch._subclasses.fake_tensor import FakeTensorMode

import diffstride
from plain_formulation import plain_diffstride

ops = torch.ops.diffstride


def _layer_calls():
    """(name, input size, DiffStride's strides or None, call(input, strides))
    for every layer op, with inputs of 1, 2 and 3 spatial axes whose sizes
    are not multiples of the strides."""
    return [
        ("diffstride 2-D", (2, 3, 20, 17), [2.3, 1.7], lambda x, s: ops.diffstride(x, s, 4.0, True)),
        ("diffstride 2-D shared", (2, 3, 23, 30), [2.6], lambda x, s: ops.diffstride(x, s, 4.0, True)),
        ("diffstride 2-D uncropped", (1, 2, 16, 15), [2.0, 3.0], lambda x, s: ops.diffstride(x, s, 2.0, False)),
        ("diffstride 1-D", (2, 3, 61), [3.1], lambda x, s: ops.diffstride(x, s, 4.0, True)),
        ("diffstride 3-D", (1, 2, 13, 16, 21), [2.0, 1.5, 2.5], lambda x, s: ops.diffstride(x, s, 2.0, True)),
        ("fixed 2-D", (2, 3, 31, 20), None, lambda x, s: ops.fixed_spectral_pooling(x, [2.5, 3.0])),
        ("fixed 1-D", (2, 3, 50), None, lambda x, s: ops.fixed_spectral_pooling(x, [3.0])),
        ("fixed 3-D", (1, 2, 12, 15, 18), None, lambda x, s: ops.fixed_spectral_pooling(x, [2.0, 1.5, 4.0])),
        ("spatial", (2, 3, 17, 16), None, lambda x, s: ops.spatial_pooling(x, [2, 3])),
    ]


_CASE_IDS = [case[0] for case in _layer_calls()]


@pytest.mark.parametrize("name,size,values,call", _layer_calls(), ids=_CASE_IDS)
def test_layer_ops_on_meta_inputs_give_the_real_output_shape(name, size, values, call):
    # The strides stay on the host: the crop's size is a function of them.
    strides = None if values is None else torch.tensor(values)
    real = call(torch.randn(size), strides)
    meta = call(torch.empty(size, device="meta"), strides)
    assert meta.is_meta and meta.shape == real.shape and meta.dtype == real.dtype


@pytest.mark.parametrize("name,size,values,call", _layer_calls(), ids=_CASE_IDS)
def test_layer_ops_under_fake_tensor_mode_give_the_real_output_shape(name, size, values, call):
    strides = None if values is None else torch.tensor(values)
    real = call(torch.randn(size), strides)
    with FakeTensorMode():
        fake = call(torch.empty(size), strides)
    assert type(fake).__name__ == "FakeTensor" and fake.shape == real.shape


def test_diffstride_meta_shape_equals_the_plain_formulation():
    x = torch.randn(1, 2, 29, 22, dtype=torch.float64)
    for s_h, s_w in [(1.0, 1.0), (2.3, 1.7), (5.5, 9.0), (12.0, 12.0)]:
        expected = plain_diffstride(x, s_h, s_w)
        meta = ops.diffstride(torch.empty(x.shape, device="meta"), torch.tensor([s_h, s_w]), 4.0, True)
        assert meta.shape == expected.shape, (s_h, s_w)


def test_strides_without_values_are_refused_naming_them():
    x = torch.empty(2, 3, 32, 32, device="meta")
    with pytest.raises(RuntimeError, match=r"output size depends on the strides' values"):
        ops.diffstride(x, torch.empty(2, device="meta"), 4.0, True)
    with FakeTensorMode():
        x, strides = torch.empty(2, 3, 32, 32), torch.ones(2) * 2
        with pytest.raises(RuntimeError, match=r"output size depends on the strides' values"):
            ops.diffstride(x, strides, 4.0, True)


@pytest.mark.parametrize("device", ["meta", "fake"])
def test_spectral_crop_and_its_backward_give_shapes_without_data(device):
    n, c, h, w, out_h, out_w = 2, 3, 19, 14, 8, 6
    sizes = [(n, c, h, w), (out_h, 2 * h), (w, 2 * out_w), (n, c, out_h, out_w)]
    if device == "meta":
        x, rows, columns, grad = (torch.empty(s, device="meta") for s in sizes)
        results = ops._spectral_crop(x, rows, columns), ops._spectral_crop_backward(
            grad, x, rows, columns, [True, False, True])
    else:
        with FakeTensorMode():
            x, rows, columns, grad = (torch.empty(s) for s in sizes)
            results = ops._spectral_crop(x, rows, columns), ops._spectral_crop_backward(
                grad, x, rows, columns, [True, False, True])
    output, (grad_input, grad_rows, grad_columns) = results
    assert output.shape == (n, c, out_h, out_w)
    assert grad_input.shape == x.shape and grad_rows is None and grad_columns.shape == columns.shape
    with pytest.raises(RuntimeError, match=r"expected row_matrix of shape \(H', 2H\)"):
        ops._spectral_crop(torch.empty(n, c, h, w, device="meta"),
                           torch.empty(out_h, 2 * h + 1, device="meta"),
                           torch.empty(w, 2 * out_w, device="meta"))


def test_a_model_moves_to_meta_and_back():
    torch.manual_seed(3)
    model = diffstride.models.resnet([8, 16], [2, 2], layers_per_block=1).eval()
    x = torch.randn(2, 3, 32, 32)
    expected = model(x)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    model.to("meta")
    assert all(p.is_meta for p in model.parameters())
    diffstride.constrain_strides(model)  # nothing to clamp, no error
    with pytest.raises(RuntimeError, match=r"output size depends on the strides' values"):
        model(torch.empty(2, 3, 32, 32, device="meta"))
    model.to_empty(device="cpu")
    model.load_state_dict(state)
    assert torch.equal(model(x), expected)


def _compile_devices():
    return ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def _outputs_and_gradients(model, x, compiled):
    model.zero_grad()
    torch._dynamo.reset()
    out = (torch.compile(model) if compiled else model)(x)
    out.square().mean().backward()
    return [out.detach().double()] + [p.grad.double() for p in model.parameters()]


def _relative_errors(results, reference):
    return [((r - e).abs().max() / e.abs().max().clamp_min(1e-300)).item()
            for r, e in zip(results, reference)]


@pytest.mark.parametrize("device", _compile_devices())
def test_torch_compile_gives_the_eager_results_breaking_only_at_the_layers(device):
    torch.manual_seed(4)
    model = diffstride.models.resnet18().to(device)
    x = torch.randn(4, 3, 32, 32, device=device)
    # The same function: in float64, output and every gradient (the strides'
    # included) agree to rounding.
    model.double()
    reference = _outputs_and_gradients(model, x.double(), compiled=False)
    errors = _relative_errors(_outputs_and_gradients(model, x.double(), compiled=True), reference)
    assert max(errors) <= 1e-10, errors
    # In float32 the output agrees within 1e-5. A batch norm's input gradient
    # at batch 4 is a small difference of large terms, so float32 gradients
    # of a training-mode ResNet carry relative errors near 1e-2 in eager mode
    # too (PyTorch's own ResNet without DiffStride: about 1e-2 between eager
    # and compiled on the CPU). Compiled float32 is held to what eager
    # float32 gives, both measured against float64: no more than twice its
    # error, parameter by parameter taken at the worst.
    model.float()
    eager = _outputs_and_gradients(model, x, compiled=False)
    compiled = _outputs_and_gradients(model, x, compiled=True)
    assert _relative_errors(compiled[:1], eager[:1])[0] <= 1e-5
    eager_error = max(_relative_errors(eager[1:], reference[1:]))
    compiled_error = max(_relative_errors(compiled[1:], reference[1:]))
    print(f"float32 gradients against float64: eager {eager_error:.2e}, compiled {compiled_error:.2e}")
    assert compiled_error <= 2 * eager_error + 1e-6
    _assert_only_the_layer_calls_break_the_graph(model, x)


def _assert_only_the_layer_calls_break_the_graph(model, x):
    # Each DiffStride call runs eagerly: a break in the frame that makes it.
    # Dynamo counts a break inside a frame it had inlined (a block's forward
    # in the network's, the layer's forward in a block's) once more in the
    # frame that inlined it, so its count can reach twice the calls (a
    # projecting block calls its layer twice, main path and shortcut).
    # Nothing but the layer's call may break the graph.
    layers = [m for m in model.modules() if isinstance(m, diffstride.DiffStride)]
    calls = []
    hooks = [m.register_forward_hook(lambda *_: calls.append(1)) for m in layers]
    model(x)
    for hook in hooks:
        hook.remove()
    torch._dynamo.reset()
    explanation = torch._dynamo.explain(model)(x)
    reasons = [r.reason for r in explanation.break_reasons]
    print(f"graph breaks: {explanation.graph_break_count} ({explanation.graph_count} graphs) "
          f"for {len(calls)} calls of {len(layers)} DiffStride layers; reasons: {set(reasons)}")
    assert len(calls) >= len(layers)
    assert reasons and all("_diffstride_forward" in r for r in reasons), reasons
    assert explanation.graph_break_count <= 2 * len(calls)


def _opcheck_cases():
    x = torch.randn(2, 3, 19, 14, dtype=torch.float64, requires_grad=True)
    rows = torch.randn(8, 38, dtype=torch.float64, requires_grad=True)
    columns = torch.randn(14, 12, dtype=torch.float64, requires_grad=True)
    grad = torch.randn(2, 3, 8, 6, dtype=torch.float64)
    every_check = ("test_schema", "test_autograd_registration", "test_faketensor",
                   "test_aot_dispatch_static", "test_aot_dispatch_dynamic")
    return [
        ("_spectral_crop", ops._spectral_crop.default, (x, rows, columns), every_check),
        ("_spectral_crop_backward", ops._spectral_crop_backward.default,
         (grad, x, rows, columns, [True, True, True]), every_check),
        # The output and the input's gradient keep the input's memory format.
        ("_spectral_crop channels_last", ops._spectral_crop.default,
         (x.contiguous(memory_format=torch.channels_last), rows, columns), every_check),
        ("_spectral_crop_backward channels_last", ops._spectral_crop_backward.default,
         (grad, x.contiguous(memory_format=torch.channels_last), rows, columns,
          [True, True, True]), every_check),
        # The layer ops decompose in C++ over plain sizes: no symbolic sizes.
        ("fixed_spectral_pooling", ops.fixed_spectral_pooling.default,
         (x, [2.5, 1.5]), every_check[:4]),
        ("spatial_pooling", ops.spatial_pooling.default, (x, [2, 3]), every_check[:4]),
        # Its output size is a function of the strides' values, which fake
        # strides do not hold: the modules call it eagerly under compile.
        ("diffstride", ops.diffstride.default,
         (x, torch.tensor([2.0, 1.5], dtype=torch.float64, requires_grad=True), 4.0, True),
         every_check[:2]),
    ]


@pytest.mark.parametrize("name,op,args,checks", _opcheck_cases(), ids=[c[0] for c in _opcheck_cases()])
def test_opcheck(name, op, args, checks):
    torch.library.opcheck(op, args, test_utils=checks)
