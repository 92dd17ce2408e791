"""The event files of `diffstride train`, read by TensorBoard's own reader
(EventAccumulator, from the tensorboard package): every epoch's metrics and
learned strides as scalars, equal to the run's metrics.csv, and the step
losses at every logged step.

Usage: python3 -m pytest tests/cli/test_tensorboard_events.py (DIFFSTRIDE
names the tool; default build/diffstride).
"""

import csv
import math
import subprocess

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from tiny_data import TOOL, tiny_train_args, write_tiny_fashion_mnist


def test_tensorboard_reads_the_metrics_and_strides_of_a_run(tmp_path):
    data, run = tmp_path / "data", tmp_path / "run"
    write_tiny_fashion_mnist(data, train=128, test=64)
    trained = subprocess.run(
        [TOOL, "--threads", "2", "train", "--out", str(run),
         *tiny_train_args(data, "--set", "train.epochs=2", "--set", "train.log_every_steps=1")],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=300)
    assert trained.returncode == 0, trained.stdout
    folders = {path.parent for path in run.rglob("events.out.tfevents.*")}
    assert len(folders) == 1, folders
    events = EventAccumulator(str(folders.pop()))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    with open(run / "metrics.csv") as file:
        rows = list(csv.DictReader(file))
    assert len(rows) == 2
    # Two DiffStride stages (the stem's and one projecting layer's), h and w.
    stride_tags = {f"stride{i}/{axis}" for i in range(2) for axis in "hw"}
    epoch_tags = {"learning_rate", "train/loss", "train/accuracy", "test/loss",
                  "test/accuracy"} | stride_tags
    assert epoch_tags | {"train/step_loss"} <= tags, tags
    for tag in epoch_tags:
        scalars = events.Scalars(tag)
        column = tag.replace("/", "_")
        assert [s.step for s in scalars] == [int(row["step"]) for row in rows], tag
        for scalar, row in zip(scalars, rows):
            # TensorBoard keeps float32 values; metrics.csv has 8 digits.
            assert math.isclose(scalar.value, float(row[column]), rel_tol=1e-6), (tag, scalar, row)
    assert all(s.value >= 1.0 for tag in stride_tags for s in events.Scalars(tag))
    steps = [s.step for s in events.Scalars("train/step_loss")]
    assert steps == list(range(1, int(rows[-1]["step"]) + 1)), steps
    assert all(math.isfinite(s.value) and s.value > 0 for s in events.Scalars("train/step_loss"))
