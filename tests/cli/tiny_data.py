"""What the command-line tests share: the tool's path and a tiny dataset in
Fashion-MNIST's format."""

import gzip
import os
import re
import struct
from pathlib import Path

TOOL = os.path.abspath(os.environ.get(
    "DIFFSTRIDE", str(Path(__file__).resolve().parents[2] / "build" / "diffstride")))

# How a stopped run reports where it stopped: during a step, or during an
# epoch's evaluation after that epoch's last step.
STOPPED = re.compile(r"stopped (?:at|while evaluating epoch \d+ after) step (\d+);")


def stopped_step(output):
    """The step of the last stop `output` reports, or None."""
    found = STOPPED.findall(output)
    return int(found[-1]) if found else None


def write_idx(path, magic, shape, payload):
    with gzip.open(path, "wb") as f:
        f.write(struct.pack(">I", magic))
        for size in shape:
            f.write(struct.pack(">I", size))
        f.write(bytes(payload))


def write_tiny_fashion_mnist(folder, train=512, test=128):
    """Two easy classes: bright left half (0) or bright right half (1),
    with pseudo-random noise; 28 x 28 like Fashion-MNIST."""
    folder.mkdir(parents=True, exist_ok=True)
    state = 12345

    def noise():
        nonlocal state
        state = (1103515245 * state + 12345) % (1 << 31)
        return state % 64

    for prefix, count in (("train", train), ("t10k", test)):
        images, labels = [], []
        for i in range(count):
            label = i % 2
            for r in range(28):
                for c in range(28):
                    bright = (c < 14) == (label == 0)
                    images.append((160 if bright else 32) + noise())
            labels.append(label)
        write_idx(folder / f"{prefix}-images-idx3-ubyte.gz", 0x803, (count, 28, 28), images)
        write_idx(folder / f"{prefix}-labels-idx1-ubyte.gz", 0x801, (count,), labels)


def tiny_train_args(data, *extra):
    """`diffstride train` options of a tiny run on `data` (written by
    write_tiny_fashion_mnist)."""
    return ["--set", f"data.data_dir={data}", "--set", "data.batch_size=32",
            "--set", "model.filters=4,8", "--set", "model.strides=1,2",
            "--set", "optimizer.boundaries=[]", "--set", "optimizer.values=0.05",
            *extra]
