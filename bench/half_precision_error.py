"""Error of DiffStride in float16, bfloat16 and float32 against float64, at
the four ResNet-18/CIFAR layer sizes: output, input gradient and stride
gradient, each as max |error| / max |float64 value|. Prints a Markdown table.

Usage: /usr/bin/python3 bench/half_precision_error.py build/libdiffstride.so [cpu|cuda] [batch]
"""
import sys

import torch

torch.ops.load_library(sys.argv[1])
device = sys.argv[2] if len(sys.argv) > 2 else "cpu"
batch = int(sys.argv[3]) if len(sys.argv) > 3 else 16
torch.set_num_threads(2)
diffstride = torch.ops.diffstride.diffstride


def relative(a, b):
    return ((a.double() - b).abs().max() / b.abs().max()).item()


def run(x, strides, weights):
    x = x.clone().requires_grad_()
    s = strides.clone().requires_grad_()
    y = diffstride(x, s)
    (y.double() * weights).sum().backward()
    return y.double(), x.grad.double(), s.grad.double()


print(f"device {device}, batch {batch}, strides (2.3, 1.7), R = 4")
print()
print("| shape | dtype | output | input gradient | stride gradient |")
print("| --- | --- | ---: | ---: | ---: |")
torch.manual_seed(0)
for channels, size in [(64, 32), (128, 32), (256, 24), (512, 18)]:
    x64 = torch.randn(batch, channels, size, size, dtype=torch.float64, device=device)
    s64 = torch.tensor([2.3, 1.7], dtype=torch.float64, device=device)
    y_ref = diffstride(x64, s64)
    weights = torch.randn_like(y_ref)
    y_ref, gx_ref, gs_ref = run(x64, s64, weights)
    for dtype in (torch.float16, torch.bfloat16, torch.float32):
        y, gx, gs = run(x64.to(dtype), s64.float(), weights)
        print(f"| {channels}x{size}x{size} | {str(dtype).replace('torch.', '')} | "
              f"{relative(y, y_ref):.1e} | {relative(gx, gx_ref):.1e} | {relative(gs, gs_ref):.1e} |")
