"""The diffstride ops from Python: loaded with torch.ops.load_library into
the torch the library is built against (the environment of
scripts/install-deps.sh), checked against a plain FFT formulation written
here, torch.autograd.gradcheck, TorchScript, and the README's example.

Usage: .venv/bin/python test_ops.py LIBRARY README
"""
import math
import re
import sys
import traceback

import torch

from plain_formulation import floor, plain_diffstride  # noqa: E402  (beside this file)

LIBRARY, README = sys.argv[1], sys.argv[2]
torch.ops.load_library(LIBRARY)
ops = torch.ops.diffstride


def rel_err(a, b):
    return ((a.double() - b.double()).abs().max() / b.double().abs().max()).item()


def test_values_match_plain_formulation():
    torch.manual_seed(0)
    for H, W, s_h, s_w, R, cropping in [(32, 32, 2.0, 2.0, 4.0, True), (17, 24, 1.7, 3.1, 2.0, True),
                                        (9, 11, 2.5, 1.2, 1.0, False), (64, 33, 3.9, 2.2, 4.0, True)]:
        x = torch.randn(2, 3, H, W, dtype=torch.float64)
        y = ops.diffstride(x, torch.tensor([s_h, s_w], dtype=torch.float64), R, cropping)
        expected = plain_diffstride(x, max(s_h, floor(H, R)), max(s_w, floor(W, R)), R, cropping)
        assert y.shape == expected.shape, (y.shape, expected.shape)
        assert rel_err(y, expected) <= 1e-10, rel_err(y, expected)


def test_defaults_and_shared_stride():
    x = torch.randn(1, 2, 28, 28, dtype=torch.float64)
    y = ops.diffstride(x, torch.tensor([3.0], dtype=torch.float64))
    assert tuple(y.shape) == (1, 2, 18, 18)
    assert rel_err(y, plain_diffstride(x, 3.0, 3.0)) <= 1e-10


def test_gradcheck_input_and_strides():
    torch.manual_seed(1)
    x = torch.randn(2, 2, 11, 14, dtype=torch.float64, requires_grad=True)
    s = torch.tensor([2.3, 1.6], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x, s: ops.diffstride(x, s, 2.0, True), (x, s))


def test_internal_spectral_crop_op():
    """The op the layers are built on: y = A_r x G_r + A_i x G_i per plane,
    with row_matrix = [A_r | A_i] and column_matrix = [G_r | G_i] (written out
    here), and finite-difference gradients for all three arguments."""
    torch.manual_seed(2)
    H, W, Hp, Wp = 7, 6, 4, 3
    x = torch.randn(2, 3, H, W, dtype=torch.float64, requires_grad=True)
    rows = torch.randn(Hp, 2 * H, dtype=torch.float64, requires_grad=True)
    columns = torch.randn(W, 2 * Wp, dtype=torch.float64, requires_grad=True)
    y = ops._spectral_crop(x, rows, columns)
    expected = rows[:, :H] @ x @ columns[:, :Wp] + rows[:, H:] @ x @ columns[:, Wp:]
    assert y.shape == (2, 3, Hp, Wp)
    assert (y - expected).abs().max().item() < 1e-12
    assert torch.autograd.gradcheck(ops._spectral_crop, (x, rows, columns))
    try:
        ops._spectral_crop(x, rows[:, :-1], columns)
    except RuntimeError as error:
        assert "expected row_matrix of shape (H', 2H) = (H', 14)" in str(error), str(error)
    else:
        raise AssertionError("a row matrix of the wrong width was accepted")


def test_gradgradcheck_input_and_strides():
    """Second derivatives (create_graph) of both layers, against finite
    differences of the first derivatives."""
    torch.manual_seed(3)
    x = torch.randn(2, 2, 11, 14, dtype=torch.float64, requires_grad=True)
    s = torch.tensor([2.3, 1.6], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradgradcheck(lambda x, s: ops.diffstride(x, s, 2.0, True), (x, s))
    odd = torch.randn(1, 2, 9, 7, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradgradcheck(lambda x, s: ops.diffstride(x, s, 2.0, False), (odd, s))
    assert torch.autograd.gradgradcheck(lambda x: ops.fixed_spectral_pooling(x, [2.0, 1.5]), (x,))
    # The input gradient of a create_graph backward is itself differentiable.
    y = ops.diffstride(x, s, 2.0, True)
    (grad_x,) = torch.autograd.grad((y * y).sum(), x, create_graph=True)
    assert grad_x.grad_fn is not None


def test_half_precision_and_autocast():
    """float16/bfloat16 in, the same dtype out, within 1e-2 of the float64
    plain formulation; under CPU autocast the ops follow the FFT ops: float32
    out, whatever the floating input."""
    torch.manual_seed(4)
    x64 = torch.randn(2, 4, 20, 18, dtype=torch.float64)
    expected = plain_diffstride(x64, 2.3, 1.7)
    for dtype in (torch.float16, torch.bfloat16):
        x = x64.to(dtype).requires_grad_()
        s = torch.tensor([2.3, 1.7], requires_grad=True)
        y = ops.diffstride(x, s)
        assert y.dtype == dtype
        error = ((y.double() - expected).abs().max() / expected.abs().max()).item()
        assert error < 1e-2, (dtype, error)
        y.float().square().sum().backward()
        assert x.grad.dtype == dtype and torch.isfinite(s.grad).all()
        assert ops.fixed_spectral_pooling(x.detach(), [2.0, 2.0]).dtype == dtype
    with torch.autocast("cpu", dtype=torch.bfloat16):
        for x in (x64.float(), x64.bfloat16()):
            fft_dtype = torch.fft.irfft2(torch.fft.rfft2(x)).dtype
            y = ops.diffstride(x, torch.tensor([2.3, 1.7]))
            assert y.dtype == fft_dtype == torch.float32, (y.dtype, fft_dtype)
            assert ops.fixed_spectral_pooling(x, [2.0]).dtype == torch.float32
            # Every rank: the 1-D layer on the rows of x.
            assert ops.diffstride(x[0], torch.tensor([2.3])).dtype == torch.float32
            with torch.autocast("cpu", enabled=False):
                plain = ops.diffstride(x.float(), torch.tensor([2.3, 1.7]))
            assert torch.equal(y, plain)


def plain_diffstride_nd(x, strides, R=4.0, cropping=True):
    """The same per axis over the last len(strides) axes: the two-sided row
    layout on every axis but the last, rfftn, one mask per axis, crop, irfftn."""
    rank = len(strides)
    dims = list(range(x.dim() - rank, x.dim()))
    ramp = lambda a, p: min(max((R + a - p) / R, 0.0), 1.0)
    spectrum = torch.fft.rfftn(x.double(), dim=dims)
    for axis, (dim, stride) in enumerate(zip(dims, strides)):
        n = x.shape[dim]
        t = max(n / stride, 2.0)
        if axis == rank - 1:
            mask = torch.tensor([ramp(t / 2 + 1, p) for p in range(n // 2 + 1)], dtype=torch.float64)
        else:
            pos = [k if k < (n + 1) // 2 else (n - 1 - k if n % 2 == 0 else n - k) for k in range(n)]
            mask = torch.tensor([ramp(t / 2, p) for p in pos], dtype=torch.float64)
        shape = [1] * rank
        shape[axis] = -1
        spectrum = spectrum * mask.view(shape)
        if cropping:
            spectrum = spectrum.index_select(dim, torch.nonzero(mask > 0).flatten())
    return torch.fft.irfftn(spectrum, dim=dims).to(x.dtype)


def test_one_and_three_dimensional_inputs():
    """The same ops take N x C x L and N x C x D x H x W inputs with one
    stride per axis (or one for all); values against the plain formulation,
    first and second derivatives by gradcheck and gradgradcheck."""
    torch.manual_seed(5)
    for shape, strides, R, cropping in [((2, 3, 50), [3.3], 4.0, True), ((2, 3, 17), [2.1], 2.0, False),
                                        ((1, 2, 9, 12, 11), [2.3, 1.6, 2.8], 2.0, True),
                                        ((1, 2, 8, 7, 10), [1.9], 4.0, True)]:
        x = torch.randn(*shape, dtype=torch.float64)
        y = ops.diffstride(x, torch.tensor(strides, dtype=torch.float64), R, cropping)
        sizes = shape[2:]
        floors = [floor(n, R) for n in sizes]
        per_axis = [max(strides[0], max(floors))] * len(sizes) if len(strides) == 1 else \
            [max(s, f) for s, f in zip(strides, floors)]
        expected = plain_diffstride_nd(x, per_axis, R, cropping)
        assert y.shape == expected.shape, (y.shape, expected.shape)
        assert rel_err(y, expected) <= 1e-10, rel_err(y, expected)
    for shape, strides in [((2, 2, 23), [2.6]), ((1, 2, 7, 9, 8), [2.3, 1.7, 2.1])]:
        x = torch.randn(*shape, dtype=torch.float64, requires_grad=True)
        s = torch.tensor(strides, dtype=torch.float64, requires_grad=True)
        assert torch.autograd.gradcheck(lambda x, s: ops.diffstride(x, s, 2.0, True), (x, s))
        assert torch.autograd.gradgradcheck(lambda x, s: ops.diffstride(x, s, 2.0, True), (x, s))
        fixed_strides = [2.0] * len(strides)
        assert torch.autograd.gradgradcheck(lambda x: ops.fixed_spectral_pooling(x, fixed_strides), (x,))
    audio = torch.randn(2, 3, 50, dtype=torch.float64)
    kept = torch.fft.rfft(audio)[..., :7]
    assert rel_err(ops.fixed_spectral_pooling(audio, [4.0]), torch.fft.irfft(kept, n=12)) <= 1e-10
    volume = torch.randn(1, 2, 8, 9, 10, dtype=torch.float64)
    spectrum = torch.fft.rfftn(volume, dim=(2, 3, 4))
    kept = torch.cat([spectrum[:, :, :2], spectrum[:, :, 6:]], dim=2)
    kept = torch.cat([kept[:, :, :, :2], kept[:, :, :, 7:]], dim=3)[..., :4]
    assert rel_err(ops.fixed_spectral_pooling(volume, [2.0, 2.0, 1.5]),
                   torch.fft.irfftn(kept, s=(4, 4, 6), dim=(2, 3, 4))) <= 1e-10


def test_op_never_modifies_strides():
    s = torch.tensor([1.0, 1.0], requires_grad=True)
    y = ops.diffstride(torch.randn(1, 1, 32, 32), s)
    y.sum().backward()
    assert s.tolist() == [1.0, 1.0]
    assert s.grad is not None and bool((s.grad != 0).all())


def test_float32_channels_last():
    x = torch.randn(2, 4, 20, 20).contiguous(memory_format=torch.channels_last)
    y = ops.diffstride(x, torch.tensor([2.0, 2.0]))
    assert y.dtype == torch.float32 and y.is_contiguous(memory_format=torch.channels_last)
    assert rel_err(y, plain_diffstride(x.double(), 2.0, 2.0)) <= 1e-5


def test_fixed_spectral_and_spatial_pooling():
    x = torch.randn(2, 3, 64, 64, dtype=torch.float64)
    y = ops.fixed_spectral_pooling(x, [2.0, 4.0])
    assert tuple(y.shape) == (2, 3, 32, 16)
    spectrum = torch.fft.rfft2(x)
    kept = torch.cat([spectrum[..., :16, :], spectrum[..., 48:, :]], dim=-2)[..., :9]
    assert rel_err(y, torch.fft.irfft2(kept, s=(32, 16))) <= 1e-10
    z = ops.spatial_pooling(x[..., :7, :9], [2, 3])
    assert torch.equal(z, x[..., 0:7:2, 0:9:3])


def test_errors_are_clear():
    for call, expected in [
        (lambda: ops.diffstride(torch.randn(8, 8), torch.tensor([2.0, 2.0])),
         "expected a 3-D (N x C x L), 4-D (N x C x H x W) or 5-D (N x C x D x H x W) input, got a 2-D tensor"),
        (lambda: ops.diffstride(torch.randn(2, 3, 8), torch.tensor([2.0, 2.0])),
         "DiffStride1d: expected strides of shape (1,) [length] for an N x C x L input, got shape [2]"),
        (lambda: ops.diffstride(torch.randn(1, 1, 8, 8, 3), torch.ones(3)),
         "DiffStride3d: every spatial size of the input must exceed the smoothness factor R = 4"),
        (lambda: ops.diffstride(torch.randn(1, 1, 8, 8, 8), torch.tensor([2.0, float("nan"), 2.0])),
         "DiffStride3d: strides must be finite and >= 1, got nan"),
        (lambda: ops.fixed_spectral_pooling(torch.randn(1, 1, 8, 8, 8), [2.0, 2.0]),
         "FixedSpectralPooling3d: expected 1 or 3 strides for an N x C x D x H x W input, got 2"),
        (lambda: ops.fixed_spectral_pooling(torch.randn(1, 1, 1), [2.0]),
         "FixedSpectralPooling1d: expected every spatial size to be at least 2, got 1"),
        (lambda: ops.diffstride(torch.randn(1, 1, 8, 8), torch.tensor([0.5, 2.0])), "strides must be finite and >= 1"),
        (lambda: ops.diffstride(torch.randn(1, 1, 8, 8), torch.ones(3)), "expected strides of shape (2,)"),
        (lambda: ops.diffstride(torch.randn(1, 1, 4, 8), torch.ones(2)), "must exceed the smoothness factor"),
    ]:
        try:
            call()
        except RuntimeError as error:
            assert expected in str(error), str(error)
        else:
            raise AssertionError("no error for: " + expected)


def test_torchscript():
    @torch.jit.script
    def pool(x: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        return torch.ops.diffstride.diffstride(x, s, 4.0, True)

    x = torch.randn(1, 1, 32, 32, dtype=torch.float64)
    assert rel_err(pool(x, torch.tensor([2.0, 2.0], dtype=torch.float64)), plain_diffstride(x, 2.0, 2.0)) <= 1e-10


def test_readme_example():
    text = open(README).read()
    match = re.search(r"<!-- python-example -->\s*```python\n(.*?)```", text, re.S)
    assert match, "README has no ```python block after <!-- python-example -->"
    code = match.group(1).replace("build/libdiffstride.so", LIBRARY)
    exec(compile(code, "README.md", "exec"), {})


if __name__ == "__main__":
    passed = failed = 0
    for name, test in [(n, f) for n, f in list(globals().items()) if n.startswith("test_")]:
        try:
            test()
            passed += 1
            print("ok", name)
        except Exception:
            failed += 1
            print("FAIL", name)
            traceback.print_exc()
    print(f"{passed} passed, {failed} failed")
    sys.exit(1 if failed else 0)
