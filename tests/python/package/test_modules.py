"""The installed `diffstride` package: its torch.nn modules against a plain
FFT formulation written here, gradcheck and gradgradcheck, the stride clamp
and constraint, training steps, TorchScript, state_dict round trips, and
`import diffstride` from any folder."""
import copy
import io
import math
import pathlib
import subprocess
import sys

import pytest
import torch

import diffstride
from plain_formulation import plain_diffstride


def test_values_match_the_plain_formulation():
    torch.manual_seed(0)
    layer = diffstride.DiffStride(strides=(2.3, 1.7)).double()
    x = torch.randn(2, 3, 20, 17, dtype=torch.float64)
    y = layer(x)
    expected = plain_diffstride(x, *layer.current_strides())  # float32 2.3, 1.7
    assert y.shape == expected.shape
    assert (y - expected).abs().max() <= 1e-10 * expected.abs().max()


def test_gradcheck_and_gradgradcheck_of_the_module():
    torch.manual_seed(1)
    layer = diffstride.DiffStride(strides=(2.3, 1.6), smoothness_factor=2.0).double()
    x = torch.randn(1, 2, 11, 14, dtype=torch.float64, requires_grad=True)
    strides = layer.strides.detach().clone().requires_grad_()

    def call(x, s):
        return torch.nn.utils.stateless.functional_call(layer, {"strides": s}, (x,))

    assert torch.autograd.gradcheck(call, (x, strides))
    assert torch.autograd.gradgradcheck(call, (x, strides))
    for module in (diffstride.FixedSpectralPooling((2.0, 1.5)), diffstride.DiffStride1d(3.0).double()):
        shape = (1, 2, 12, 10) if isinstance(module, diffstride.FixedSpectralPooling) else (1, 2, 30)
        z = torch.randn(*shape, dtype=torch.float64, requires_grad=True)
        assert torch.autograd.gradgradcheck(module, (z,))


def test_forward_clamps_strides_in_place_like_the_cpp_module():
    layer = diffstride.DiffStride(strides=(1.0, 2.5), upper_limit_stride=3.0)
    layer(torch.randn(1, 1, 32, 20))
    assert layer.current_strides() == pytest.approx([32 / 28, 2.5])
    with torch.no_grad():
        layer.strides.copy_(torch.tensor([5.0, 0.5]))
    diffstride.constrain_strides(torch.nn.Sequential(layer))
    # Upper limit 3; the width's floor 20 / 16 from the last input.
    assert layer.current_strides() == pytest.approx([3.0, 20 / 16])
    shared = diffstride.DiffStride3d(strides=1.0, shared_stride=True)
    shared(torch.randn(1, 1, 10, 12, 16))
    assert shared.strides.shape == (1,)
    assert shared.current_strides() == pytest.approx([10 / 6] * 3)


def test_bad_options_and_inputs_name_the_layer():
    with pytest.raises(ValueError, match="DiffStride: shared_stride needs equal initial strides"):
        diffstride.DiffStride(strides=(2.0, 3.0), shared_stride=True)
    with pytest.raises(ValueError, match="DiffStride3d: expected 1 or 3 strides, got 2"):
        diffstride.DiffStride3d(strides=(2.0, 3.0))
    with pytest.raises(ValueError, match="DiffStride1d: expected a 3-D N x C x L input"):
        diffstride.DiffStride1d()(torch.randn(1, 1, 8, 8))
    with pytest.raises(ValueError, match="DiffStride: every spatial size of the input must exceed"):
        diffstride.DiffStride()(torch.randn(1, 1, 4, 16))


SOURCES = pathlib.Path(__file__).resolve().parents[3]


def test_module_checks_are_the_cpp_modules_with_their_messages():
    """Every check of the modules' options and inputs raises ValueError with
    the C++ module's message: its fixed text is written in the C++ sources
    (src/nn/) and nowhere in the Python package."""
    cases = [
        (lambda: diffstride.DiffStride(strides=(2.0, 3.0), shared_stride=True),
         "DiffStride", "shared_stride needs equal initial strides"),
        (lambda: diffstride.DiffStride3d(strides=(2.0, 3.0)), "DiffStride3d", " strides, got "),
        (lambda: diffstride.DiffStride(strides=0.5), "DiffStride", " must be finite and >= 1, got "),
        (lambda: diffstride.DiffStride1d(smoothness_factor=-1.0), "DiffStride1d",
         "smoothness_factor must be a finite number > 0"),
        (lambda: diffstride.DiffStride(lower_limit_stride=0.5), "DiffStride",
         "lower_limit_stride must be finite and >= 1"),
        (lambda: diffstride.DiffStride(strides=1.0, upper_limit_stride=0.5), "DiffStride",
         "upper_limit_stride must be >= lower_limit_stride"),
        (lambda: diffstride.DiffStride(strides=4.0, upper_limit_stride=3.0), "DiffStride",
         " lies outside [lower_limit_stride, upper_limit_stride]"),
        (lambda: diffstride.DiffStride1d()(torch.randn(1, 1, 8, 8)), "DiffStride1d",
         "-D tensor of shape "),
        (lambda: diffstride.DiffStride()(torch.randn(1, 1, 4, 16)), "DiffStride",
         "every spatial size of the input must exceed the smoothness "),
        (lambda: diffstride.DiffStride()(torch.ones(1, 1, 8, 8, dtype=torch.int32)), "DiffStride",
         "expected a float16, bfloat16, float32 or float64 input, got "),
        (lambda: diffstride.FixedSpectralPooling3d(strides=0.0), "FixedSpectralPooling3d",
         "strides must be finite and >= 1, got "),
        (lambda: diffstride.FixedSpectralPooling(strides=(2.0, 2.0, 2.0)), "FixedSpectralPooling",
         " for an "),
        (lambda: diffstride.FixedSpectralPooling1d()(torch.randn(1, 8)), "FixedSpectralPooling1d",
         "-D tensor of shape "),
        (lambda: diffstride.SpatialPooling(strides=(2, 0)), "SpatialPooling",
         "strides must be integers >= 1, got "),
        (lambda: diffstride.SpatialPooling(strides=(1, 2, 3)), "SpatialPooling",
         "expected 1 or 2 strides, got "),
    ]
    cpp = "".join(path.read_text() for path in (SOURCES / "src" / "nn").glob("*.*"))
    python = "".join(path.read_text() for path in (SOURCES / "python" / "diffstride").glob("*.py"))
    for make, layer, fragment in cases:
        with pytest.raises(ValueError) as raised:
            make()
        message = str(raised.value)
        assert message.startswith(layer + ": ") and fragment in message, message
        assert fragment in cpp, fragment
        assert fragment not in python, fragment


def test_output_sizes_follow_the_docstrings_formula():
    """DiffStride's docstring gives the output size in closed form: checked
    against the layer at even and odd sizes, fractional strides and two
    smoothness factors, with the strides the forward's clamp leaves."""
    def expected(size, stride, R, last):
        t = max(size / stride, 2.0)
        if last:
            return 2 * (min(math.ceil(t / 2 + 1 + R), size // 2 + 1) - 1)
        if size % 2 == 0:
            return 2 * min(math.ceil(t / 2 + R), size // 2)
        return 2 * min(math.ceil(t / 2 + R), (size + 1) // 2) - 1

    for H, W in [(32, 32), (31, 17), (18, 18), (9, 12), (64, 7)]:
        for strides in [(1.0, 1.0), (2.0, 3.0), (2.5, 1.7), (4.0, 4.0), (7.3, 2.2)]:
            for R in (4.0, 2.0):
                layer = diffstride.DiffStride(strides=strides, smoothness_factor=R)
                y = layer(torch.randn(1, 1, H, W))
                s_h, s_w = layer.current_strides()
                assert tuple(y.shape[2:]) == (expected(H, s_h, R, False),
                                              expected(W, s_w, R, True)), (H, W, strides, R)


def test_models_pool_with_diffstride_by_default():
    model = diffstride.models.resnet18()
    assert len(diffstride.current_strides(model)) == 4
    assert sum(p.numel() for p in model.parameters()) == 11_172_178
    assert len(diffstride.current_strides(diffstride.models.resnet18(pooling="none"))) == 0


def test_parameter_groups_give_the_recipes_l2_step():
    """SGD over parameter_groups(model, wd) on the data loss takes the step
    of the recipe's loss, data + wd * sum(w^2) over the convolution weights
    and the dense layer, written out here; strides and batch norms carry no
    decay."""
    torch.manual_seed(5)
    model = diffstride.models.resnet([8, 16, 16], [1, 2, 2], layers_per_block=1,
                                     in_channels=1, num_classes=4)
    reference = copy.deepcopy(model)
    groups = diffstride.models.parameter_groups(model, weight_decay=5e-3)
    grouped = [id(p) for group in groups for p in group["params"]]
    assert sorted(grouped) == sorted(id(p) for p in model.parameters())
    assert not any(p is layer.strides for layer in model.modules()
                   if isinstance(layer, diffstride.DiffStride) for p in groups[0]["params"])
    x, labels = torch.randn(6, 1, 16, 16), torch.tensor([0, 1, 2, 3, 0, 1])
    optimizer = torch.optim.SGD(groups, lr=0.1)
    torch.nn.functional.cross_entropy(model(x), labels).backward()
    optimizer.step()
    decayed = [m.weight for m in reference.modules() if isinstance(m, torch.nn.Conv2d)]
    decayed += [reference.fc.weight, reference.fc.bias]
    loss = torch.nn.functional.cross_entropy(reference(x), labels)
    (loss + 5e-3 * sum(w.square().sum() for w in decayed)).backward()
    with torch.no_grad():
        for p in reference.parameters():
            p -= 0.1 * p.grad
    for (name, a), b in zip(model.named_parameters(), reference.parameters()):
        assert torch.allclose(a, b, atol=1e-6), name


def test_one_layer_at_two_sizes_in_one_graph_backpropagates_both_uses():
    """The same layer (R = 3) at 32 x 32 (strides stay 1.5) and at 8 x 8
    (the clamp moves them to the floor 8 / (8 - R) = 1.6) in one graph:
    backward works, and the strides' gradient is the sum of both uses'
    gradients, each at the strides it saw, by float64 central differences of
    the plain FFT formulation (no mask bin sits on a kink of its ramp there)."""
    torch.manual_seed(6)
    layer = diffstride.DiffStride(strides=1.5, smoothness_factor=3.0).double()
    big = torch.randn(2, 3, 32, 32, dtype=torch.float64, requires_grad=True)
    small = torch.randn(2, 3, 8, 8, dtype=torch.float64)
    y_big = layer(big)
    y_small = layer(small)
    assert layer.current_strides() == pytest.approx([1.6, 1.6])
    w_big, w_small = torch.randn_like(y_big), torch.randn_like(y_small)
    ((y_big * w_big).sum() + (y_small * w_small).sum()).backward()

    def loss(x, w, s_h, s_w):
        return (plain_diffstride(x.detach(), s_h, s_w, R=3.0) * w).sum().item()

    h = 1e-6
    expected = [
        sum((loss(x, w, *(s + h * (axis == a) for a in range(2)))
             - loss(x, w, *(s - h * (axis == a) for a in range(2)))) / (2 * h)
            for x, w, s in ((big, w_big, 1.5), (small, w_small, 8 / 5)))
        for axis in range(2)]
    assert torch.allclose(layer.strides.grad, torch.tensor(expected, dtype=torch.float64),
                          rtol=1e-5, atol=1e-7), (layer.strides.grad, expected)
    assert big.grad is not None and big.grad.abs().sum() > 0


def test_a_few_training_steps_lower_the_loss_and_move_the_strides():
    torch.manual_seed(2)
    features = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3, padding=1), diffstride.DiffStride(2.0),
                                   torch.nn.Flatten())
    x, labels = torch.randn(16, 1, 16, 16), torch.randint(0, 3, (16,))
    model = torch.nn.Sequential(features, torch.nn.Linear(features(x).shape[1], 3))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    losses, before = [], diffstride.current_strides(model)
    for _ in range(15):
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(x), labels)
        loss.backward()
        optimizer.step()
        diffstride.constrain_strides(model)
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]
    assert diffstride.current_strides(model) != before


def test_torchscript_state_dict_and_repr():
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), diffstride.DiffStride((2.0, 3.0)),
                                diffstride.FixedSpectralPooling(1.5), diffstride.SpatialPooling(1))
    x = torch.randn(2, 3, 32, 32)
    scripted = torch.jit.script(model)
    assert torch.allclose(scripted(x), model(x))
    copy = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), diffstride.DiffStride(),
                               diffstride.FixedSpectralPooling(1.5), diffstride.SpatialPooling(1))
    copy.load_state_dict(model.state_dict())
    assert torch.equal(copy(x), model(x))
    assert "DiffStride(strides=[2.0, 3.0], smoothness_factor=4.0" in repr(model)


def test_import_from_another_folder(tmp_path):
    out = subprocess.run([sys.executable, "-c", "import diffstride; print(diffstride.__file__)"],
                         cwd=tmp_path, capture_output=True, text=True, check=True)
    assert "site-packages" in out.stdout or "dist-packages" in out.stdout


def test_readme_example_runs():
    """The README's package example, as written there."""
    import pathlib
    import re
    readme = pathlib.Path(__file__).resolve().parents[3] / "README.md"
    example = re.search(r"<!-- package-example -->\n```python\n(.*?)```", readme.read_text(), re.S)
    assert example, "README.md lost its package example"
    exec(compile(example.group(1), "README.md", "exec"), {})


def test_weights_trained_in_cpp_give_the_same_logits_in_python(image_run):
    """A few steps of `diffstride train` on a tiny dataset, then the C++
    model's logits on its first test examples (`diffstride eval
    --dump-logits`) against the Python model built from the run's folder
    (conftest.py's image_run)."""
    expected = torch.load(image_run.dump, weights_only=True)
    model = diffstride.models.from_run(image_run.run)
    assert diffstride.current_strides(model) != [[2.0, 2.0]] * 3  # trained strides came along
    with torch.no_grad():
        logits = model(expected["images"])
    assert logits.shape == expected["logits"].shape == (24, 10)
    assert (logits - expected["logits"]).abs().max() <= 1e-5 * expected["logits"].abs().max()


def test_parameter_counts_equal_the_cpp_models():
    count = lambda m: sum(p.numel() for p in m.parameters() if p.requires_grad)
    assert count(diffstride.models.resnet18(pooling="diffstride")) == 11_172_178
    assert count(diffstride.models.resnet18(pooling="spectral")) == 11_172_170
    assert count(diffstride.models.resnet56(pooling="diffstride")) == 855_842
    scripted = torch.jit.script(diffstride.models.resnet56(pooling="diffstride").eval())
    assert scripted(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def _trained_looking_resnet():
    """A small DiffStride ResNet whose batch norms hold varied statistics,
    as after training (so that freezing is checked on more than the
    identity maps of fresh batch norms)."""
    torch.manual_seed(4)
    model = diffstride.models.resnet([8, 16, 16], [2, 2, 2], layers_per_block=1,
                                     pooling="diffstride")
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_()
                m.running_mean.normal_()
                m.running_var.uniform_(0.5, 2.0)
    return model.eval()


def test_frozen_model_equals_the_model_and_runs_without_the_library(tmp_path):
    model = _trained_looking_resnet()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        expected = model(x)
        diffstride.freeze(model, x[:1])
        frozen = model(x)
    assert not any(isinstance(m, diffstride.DiffStride) for m in model.modules())
    assert (frozen - expected).abs().max() <= 1e-5 * expected.abs().max()
    traced = torch.jit.trace(model, x)
    traced.save(str(tmp_path / "frozen.pt"))
    torch.save(x, tmp_path / "x.pt")
    # A fresh interpreter that never imports diffstride runs the traced model.
    script = ("import sys, torch\n"
              f"m = torch.jit.load({str(tmp_path / 'frozen.pt')!r})\n"
              f"print(m(torch.load({str(tmp_path / 'x.pt')!r}, weights_only=True)).tolist())\n"
              "assert 'diffstride' not in sys.modules\n")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert torch.allclose(torch.tensor(eval(out.stdout)), expected, rtol=0, atol=1e-5 * expected.abs().max().item())


def _frozen_resnet18_onnx(path):
    """A fresh resnet18 (its batch norms all equal: the exporter feeds equal
    constants through Identity nodes), frozen and written by
    diffstride.onnx.export; returns the input and the eager output."""
    torch.manual_seed(5)
    model = diffstride.models.resnet18().eval()
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        expected = model(x)
    diffstride.freeze(model, x)
    diffstride.onnx.export(model, x, str(path))
    return x, expected


def test_frozen_resnet18_exported_to_onnx_runs_in_opencv(tmp_path):
    import cv2  # opencv-python-headless, requirements.txt
    x, expected = _frozen_resnet18_onnx(tmp_path / "frozen.onnx")
    net = cv2.dnn.readNetFromONNX(str(tmp_path / "frozen.onnx"))
    net.setInput(x.numpy())
    out = torch.from_numpy(net.forward())
    assert out.shape == expected.shape and (out - expected).abs().max() <= 1e-4


def test_frozen_resnet18_exported_to_onnx_runs_in_onnxruntime(tmp_path):
    import onnxruntime  # requirements.txt
    x, expected = _frozen_resnet18_onnx(tmp_path / "frozen.onnx")
    session = onnxruntime.InferenceSession(str(tmp_path / "frozen.onnx"),
                                           providers=["CPUExecutionProvider"])
    (out,) = session.run(None, {session.get_inputs()[0].name: x.numpy()})
    assert out.shape == expected.shape and (torch.from_numpy(out) - expected).abs().max() <= 1e-4


def test_onnx_export_writes_no_identity_of_a_constant(tmp_path):
    import onnx
    _frozen_resnet18_onnx(tmp_path / "frozen.onnx")
    graph = onnx.load(str(tmp_path / "frozen.onnx")).graph
    constants = {tensor.name for tensor in graph.initializer}
    assert sum(node.op_type == "MatMul" for node in graph.node) >= 2 * 4
    assert not [node.name for node in graph.node
                if node.op_type == "Identity" and node.input[0] in constants]


def test_a_frozen_layer_at_another_size_names_the_size_it_was_frozen_for():
    frozen = diffstride.freeze(diffstride.DiffStride(strides=(2.0, 3.0)), torch.randn(1, 2, 32, 24))
    assert frozen(torch.randn(1, 2, 32, 24)).shape[2:] == (24, 16)
    with pytest.raises(ValueError, match=r"frozen for 32 x 24 inputs, got 16 x 16; freeze"):
        frozen(torch.randn(1, 2, 16, 16))


def test_fx_symbolic_trace_keeps_each_layer_as_one_call():
    torch.manual_seed(7)
    model = diffstride.models.resnet([8, 16, 16], [1, 2, 2], layers_per_block=1).eval()
    x = torch.randn(2, 3, 32, 32)
    expected = model(x)
    traced = torch.fx.symbolic_trace(model)
    calls = [n for n in traced.graph.nodes
             if n.op == "call_function" and n.target.__name__ == "_diffstride_forward"]
    # The stem's, and in each of the 2 projecting layers the main path's and
    # the shortcut's (one pooling instance, two calls).
    assert len(diffstride.current_strides(model)) == 3 and len(calls) == 1 + 2 * 2
    assert torch.equal(traced(x), expected)
    traced(x).square().sum().backward()
    assert all(m.strides.grad is not None for m in model.modules()
               if isinstance(m, diffstride.DiffStride))


def test_onnx_export_of_a_live_layer_names_freeze():
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), diffstride.DiffStride())
    with pytest.raises(Exception, match=r"diffstride\.freeze\(model, example_input\)"):
        torch.onnx.export(model, torch.randn(1, 3, 32, 32), io.BytesIO(), opset_version=13)


def test_freeze_needs_an_input_size_and_a_two_dimensional_layer():
    with pytest.raises(ValueError, match="has seen no input"):
        diffstride.freeze(torch.nn.Sequential(diffstride.DiffStride()))
    with pytest.raises(NotImplementedError, match="DiffStride1d computes through FFTs"):
        diffstride.freeze(torch.nn.Sequential(diffstride.DiffStride1d()))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_modules_match_the_cpu_and_train():
    torch.manual_seed(5)
    x = torch.randn(4, 8, 20, 18, dtype=torch.float64)
    for layer in (diffstride.DiffStride((2.3, 1.7)), diffstride.FixedSpectralPooling(2.0),
                  diffstride.DiffStride1d(3.0), diffstride.DiffStride3d(2.0)):
        input = x if layer.dims == 2 else (x.flatten(2) if layer.dims == 1 else x.unsqueeze(2).expand(4, 8, 6, 20, 18))
        cpu = layer.double()(input)
        gpu = layer.cuda()(input.cuda().requires_grad_())
        assert gpu.is_cuda
        assert (gpu.cpu() - cpu).abs().max() <= 1e-10 * cpu.abs().max()
        gpu.square().sum().backward()
        layer.cpu()
    model = diffstride.models.resnet18(pooling="diffstride").cuda()
    out = model(torch.randn(2, 3, 32, 32, device="cuda"))
    out.square().mean().backward()
    assert model.stem_pooling.strides.grad.is_cuda
    diffstride.constrain_strides(model)
    frozen = diffstride.freeze(_trained_looking_resnet().cuda(), torch.randn(1, 3, 32, 32, device="cuda"))
    assert frozen(torch.randn(2, 3, 32, 32, device="cuda")).is_cuda
