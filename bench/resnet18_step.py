"""The Python peer of `diffstride bench`: one training step of the same
pre-activation resnet18 (docs/resnet.md) written in PyTorch, with the plain
FFT formulation of DiffStride (rfft2, ramp masks, crop, irfft2) that ports of
the reference use. Run with the environment's Python (.venv, the same
LibTorch build as the C++ library):

    .venv/bin/python bench/resnet18_step.py --pooling diffstride --steps 3

and on a GPU, as `diffstride bench --device cuda --precision bfloat16
--channels-last` runs the library:

    python3 bench/resnet18_step.py --device cuda --precision bfloat16 \
        --channels-last [--compile]

(--compile: torch.compile, PyTorch >= 2.1; its compilation happens in the
warm-up steps). Prints seconds per step, examples per second and peak memory
(the host's, and the GPU's when it runs on one), in the same columns as
`diffstride bench`.
"""

import argparse
import contextlib
import math
import resource
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


class DiffStride(nn.Module):
    """Learnable strides, the plain way: every step builds the masks, takes a
    full rfft2 and crops it."""

    def __init__(self, strides, smoothness=4.0):
        super().__init__()
        self.strides = nn.Parameter(torch.tensor(strides, dtype=torch.float32))
        self.smoothness = smoothness

    def forward(self, x):
        h, w = x.shape[2], x.shape[3]
        r = self.smoothness
        with torch.no_grad():  # the reference clamps in place at the floor
            self.strides[0].clamp_(min=h / (h - r))
            self.strides[1].clamp_(min=w / (w - r))
        s = self.strides.double()
        th = torch.clamp(h / s[0], min=2.0)
        tw = torch.clamp(w / s[1], min=2.0)
        half = torch.arange(h // 2 + h % 2, dtype=torch.float64)
        rows = torch.fft.ifftshift(torch.cat([half[h % 2:].flip(0), half]))
        cols = torch.arange(w // 2 + 1, dtype=torch.float64)
        vmask = torch.clamp((r + th / 2 - rows) / r, 0, 1)
        hmask = torch.clamp((r + tw / 2 + 1 - cols) / r, 0, 1)
        spectrum = torch.fft.rfft2(x)
        spectrum = spectrum * vmask.float()[:, None] * hmask.float()[None, :]
        keep_rows = torch.nonzero(vmask.detach() > 0).flatten()
        keep_cols = torch.nonzero(hmask.detach() > 0).flatten()
        spectrum = spectrum.index_select(2, keep_rows).index_select(3, keep_cols)
        return torch.fft.irfft2(spectrum)


class FixedSpectral(nn.Module):
    def __init__(self, stride):
        super().__init__()
        self.stride = stride

    def forward(self, x):
        h, w = x.shape[2], x.shape[3]
        oh = max(int(h // self.stride) // 2 * 2, 2)
        ow = max(int(w // self.stride), 2)
        spectrum = torch.fft.rfft2(x)
        rows = torch.cat([spectrum[:, :, : oh // 2], spectrum[:, :, h - oh // 2:]], 2)
        return torch.fft.irfft2(rows[..., : ow // 2 + 1], s=(oh, ow))


class Spatial(nn.Module):
    def __init__(self, stride):
        super().__init__()
        self.stride = int(math.ceil(stride))

    def forward(self, x):
        return x[:, :, :: self.stride, :: self.stride]


def make_pool(pooling, stride):
    return {"diffstride": lambda: DiffStride([float(stride)] * 2),
            "spectral": lambda: FixedSpectral(stride),
            "spatial": lambda: Spatial(stride)}[pooling]()


def bn(channels):
    return nn.BatchNorm2d(channels, momentum=0.1, eps=1e-5)


class ResidualLayer(nn.Module):
    def __init__(self, cin, cout, stride, project, pooling):
        super().__init__()
        pooled = project and pooling != "none"
        conv_stride = stride if project and not pooled else 1
        self.bn0, self.bn1 = bn(cin), bn(cout)
        self.conv0 = nn.Conv2d(cin, cout, 3, conv_stride, 1, bias=False)
        self.conv1 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.shortcut = (nn.Conv2d(cin, cout, 1, conv_stride, bias=False)
                         if project else None)
        self.pool = make_pool(pooling, stride) if pooled else None

    def forward(self, x):
        a = F.relu(self.bn0(x))
        h = self.conv0(a)
        if self.pool is not None:
            h = self.pool(h)
        h = self.conv1(F.relu(self.bn1(h)))
        if self.shortcut is None:
            return h + x
        s = self.shortcut(a)
        if self.pool is not None:
            s = self.pool(s)
        return h + s


class ResNet18(nn.Module):
    def __init__(self, pooling, classes=10):
        super().__init__()
        filters, strides = [64, 64, 128, 256, 512], [1, 1, 2, 2, 2]
        pooled = pooling != "none"
        self.stem = nn.Conv2d(3, 64, 3, 1 if pooled else strides[0], 1, bias=False)
        self.stem_pool = make_pool(pooling, strides[0]) if pooled else None
        layers, cin = [], 64
        for block, (cout, stride) in enumerate(zip(filters[1:], strides[1:])):
            for layer in range(2):
                project = layer == 0 and block != 0  # id_only = [0]
                layers.append(ResidualLayer(cin, cout, stride, project, pooling))
                cin = cout
        self.layers = nn.Sequential(*layers)
        self.head_bn = bn(cin)
        self.fc = nn.Linear(cin, classes)

    def strides(self):
        return [m for m in self.modules() if isinstance(m, DiffStride)]

    def forward(self, x):
        x = self.stem(x)
        if self.stem_pool is not None:
            x = self.stem_pool(x)
        x = self.layers(x)
        return self.fc(F.relu(self.head_bn(x)).mean((2, 3)))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pooling", default="diffstride",
                        choices=["none", "spatial", "spectral", "diffstride"])
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", default="float32",
                        choices=["float32", "bfloat16", "float16"])
    parser.add_argument("--channels-last", action="store_true")
    parser.add_argument("--compile", action="store_true")
    args = parser.parse_args()
    if args.compile and not hasattr(torch, "compile"):
        sys.exit(f"--compile needs PyTorch >= 2.1; this is {torch.__version__}")
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    device = torch.device(args.device)
    dtype = getattr(torch, args.precision)
    memory_format = torch.channels_last if args.channels_last else torch.contiguous_format
    model = ResNet18(args.pooling).to(device, memory_format=memory_format)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    forward = torch.compile(model) if args.compile else model
    images = torch.randn(args.batch, 3, 32, 32).to(device, memory_format=memory_format)
    labels = torch.randint(10, (args.batch,)).to(device)

    def step():
        optimizer.zero_grad()
        autocast = (torch.autocast(device.type, dtype=dtype) if args.precision != "float32"
                    else contextlib.nullcontext())
        with autocast:
            loss = F.cross_entropy(forward(images), labels)
        loss.backward()
        optimizer.step()
        if device.type == "cuda":
            torch.cuda.synchronize()

    for _ in range(args.warmup):
        step()
    start = time.perf_counter()
    for i in range(args.steps):
        step()
        elapsed = time.perf_counter() - start
        print(f"\r  {args.pooling}: step {i + 1}/{args.steps}, "
              f"{elapsed / (i + 1):.2f} s/step, "
              f"ETA {elapsed / (i + 1) * (args.steps - i - 1):.2f} s   ",
              end="", file=sys.stderr, flush=True)
    seconds = (time.perf_counter() - start) / args.steps
    print(file=sys.stderr)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated(device) / 2**20
    name = f"python{' compiled' if args.compile else ''} {args.pooling}"
    print(f"{name:<28}{seconds:10.3f}{args.batch / seconds:12.1f}{peak:12.0f}")


if __name__ == "__main__":
    main()
