"""DiffStride forward + backward through the Python package's module, at
the ResNet-18/CIFAR shapes (batch 128, float32, strides 2), timed as
bench_diffstride times the C++ layer: input and stride gradients, a fixed
output gradient, the mean of repeated calls (after one warm-up). Prints one line per shape:
C H W milliseconds.

Usage: python bench/package_op_time.py [threads]
"""
import statistics
import sys
import time

import torch

import diffstride

torch.set_num_threads(int(sys.argv[1]) if len(sys.argv) > 1 else 2)
torch.manual_seed(0)
for channels, size in [(64, 32), (128, 32), (256, 24), (512, 18)]:
    layer = diffstride.DiffStride(2.0)
    x = torch.randn(128, channels, size, size, requires_grad=True)
    grad_output = torch.randn_like(layer(x).detach())
    times = []
    deadline = time.perf_counter() + 3.0
    while time.perf_counter() < deadline or len(times) < 5:
        x.grad = None
        layer.strides.grad = None
        start = time.perf_counter()
        layer(x).backward(grad_output)
        times.append(time.perf_counter() - start)
    print(channels, size, size, f"{1e3 * statistics.fmean(times[1:]):.1f}")
