"""Error of DiffStride in float16, bfloat16 and float32 against float64, at
the four ResNet-18/CIFAR layer sizes, one second of 16 kHz audio (1-D) and a
video clip (3-D): output, input gradient and stride gradient, each as
max |error| / max |float64 value|; the stride gradient also against float64
on the rounded input. Prints a Markdown table.

Usage: .venv/bin/python bench/half_precision_error.py build/libdiffstride.so [cpu|cuda] [batch]
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


print(f"device {device}, batch {batch}, R = 4; strides (2.3, 1.7) in 2-D, 3.1 in 1-D, (1.8, 2.2, 2.3) in 3-D")
print()
print("| shape | dtype | output | input gradient | stride gradient |")
print("| --- | --- | ---: | ---: | ---: |")
torch.manual_seed(0)
cases = [((channels, size, size), [2.3, 1.7]) for channels, size in [(64, 32), (128, 32), (256, 24), (512, 18)]]
cases += [((64, 16000), [3.1]), ((32, 16, 32, 32), [1.8, 2.2, 2.3])]
for sizes, strides in cases:
    x64 = torch.randn(batch, *sizes, dtype=torch.float64, device=device)
    s64 = torch.tensor(strides, dtype=torch.float64, device=device)
    weights = torch.randn_like(diffstride(x64, s64))
    y_ref, gx_ref, gs_ref = run(x64, s64, weights)
    for dtype in (torch.float16, torch.bfloat16, torch.float32):
        y, gx, gs = run(x64.to(dtype), s64.float(), weights)
        shape = "x".join(str(n) for n in sizes)
        print(f"| {shape} | {str(dtype).replace('torch.', '')} | "
              f"{relative(y, y_ref):.1e} | {relative(gx, gx_ref):.1e} | {relative(gs, gs_ref):.1e} |")
