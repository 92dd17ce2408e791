"""Every long command stops on a real SIGINT (Ctrl-C) or SIGTERM within
seconds: train and sweep with their runs checkpointed (and resumable), a
sweep's second signal at once with its run still checkpointing, and eval,
data and bench (nothing to save) at once with status 128 + the signal.

Usage: python3 -m pytest tests/cli/test_signals.py (DIFFSTRIDE names the
tool; default build/diffstride).
"""

import os
import signal
import subprocess
import time

import pytest

from tiny_data import TOOL, stopped_step, tiny_train_args, write_tiny_fashion_mnist

SIGNALS = [signal.SIGINT, signal.SIGTERM]
STOP_LIMIT = 10  # seconds from the signal to the process's end


class Running:
    """A command with its output (stdout and stderr) collected in a file,
    polled for progress."""

    def __init__(self, args, log):
        self.log = log
        self.process = subprocess.Popen(args, stdout=log.open("w"), stderr=subprocess.STDOUT)

    def output(self):
        return self.log.read_text().replace("\r", "\n")

    def wait_for(self, predicate, limit=180):
        deadline = time.time() + limit
        while time.time() < deadline:
            if predicate():
                return
            assert self.process.poll() is None, self.output()
            time.sleep(0.1)
        self.process.kill()
        pytest.fail("gave up waiting: " + self.output()[-2000:])

    def stop_with(self, sig):
        """Sends `sig`; returns (exit status, seconds until the end)."""
        sent = time.time()
        self.process.send_signal(sig)
        try:
            status = self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            pytest.fail(f"still running 60 s after {sig.name}: " + self.output()[-2000:])
        return status, time.time() - sent


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    folder = tmp_path_factory.mktemp("data")
    write_tiny_fashion_mnist(folder, train=512, test=128)
    return folder


@pytest.mark.parametrize("sig", SIGNALS, ids=lambda s: s.name)
def test_train_checkpoints_and_stops_then_resumes(tmp_path, data, sig):
    run = tmp_path / "run"
    train = Running([TOOL, "--threads", "2", "train", "--out", str(run),
                     *tiny_train_args(data, "--set", "train.epochs=100")], tmp_path / "log")
    # Past the first epoch's checkpoint, in the middle of training.
    train.wait_for(lambda: "epoch 2/100" in train.output())
    status, seconds = train.stop_with(sig)
    assert status == 0 and seconds < STOP_LIMIT, (status, seconds, train.output()[-2000:])
    step = stopped_step(train.output())
    assert step is not None, train.output()[-2000:]
    assert (run / "checkpoint.pt").exists()
    resumed = subprocess.run([TOOL, "--threads", "2", "train", "--resume", str(run),
                              "--stop-after-steps", "1"],
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                             timeout=300)
    assert resumed.returncode == 0, resumed.stdout
    assert f"stopped at step {step + 1};" in resumed.stdout, resumed.stdout[-2000:]


def sweep_args(data, out):
    return [TOOL, "--threads", "2", "sweep", "--out", str(out),
            *tiny_train_args(data, "--set", "train.epochs=100"),
            "--axis", "model.pooling=spectral,diffstride"]


def first_run_checkpointed(out):
    runs = out / "runs"
    return runs.exists() and any((r / "checkpoint.pt").exists() for r in runs.iterdir())


def run_processes(out):
    """The pids of the processes running a run of the sweep in `out`."""
    listing = subprocess.run(["ps", "-ww", "-eo", "pid=,args="], stdout=subprocess.PIPE,
                             text=True).stdout
    return [int(line.split()[0]) for line in listing.splitlines()
            if str(out / "runs") in line]


def no_run_process_left(out):
    return not run_processes(out)


@pytest.mark.parametrize("sig", SIGNALS, ids=lambda s: s.name)
def test_sweep_stops_its_run_and_itself_then_continues(tmp_path, data, sig):
    out = tmp_path / "sweep"
    sweep = Running(sweep_args(data, out), tmp_path / "log")
    sweep.wait_for(lambda: first_run_checkpointed(out))
    status, seconds = sweep.stop_with(sig)
    assert status == 0 and seconds < STOP_LIMIT, (status, seconds, sweep.output()[-2000:])
    assert "interrupted: 2 run(s) left" in sweep.output(), sweep.output()[-2000:]
    assert no_run_process_left(out)
    (run,) = [r for r in (out / "runs").iterdir() if (r / "checkpoint.pt").exists()]
    assert not (run / "model.pt").exists()
    # Run again, the sweep resumes that run (and stops again on a signal).
    again = Running(sweep_args(data, out), tmp_path / "log2")
    again.wait_for(lambda: f"{run.name}: resumed" in again.output())
    status, seconds = again.stop_with(sig)
    assert status == 0 and seconds < STOP_LIMIT


def test_second_signal_ends_the_sweep_at_once_and_its_run_still_checkpoints(tmp_path, data):
    out = tmp_path / "sweep"
    sweep = Running(sweep_args(data, out), tmp_path / "log")
    sweep.wait_for(lambda: first_run_checkpointed(out))
    (run,) = [r for r in (out / "runs").iterdir()]
    before = (run / "checkpoint.pt").stat().st_mtime_ns
    # The run is held still (SIGSTOP) so that it cannot end before the
    # second signal; the first is given time to be handled (two signals
    # sent at once may arrive as one).
    (child,) = run_processes(out)
    os.kill(child, signal.SIGSTOP)
    sweep.process.send_signal(signal.SIGINT)
    time.sleep(0.5)
    assert sweep.process.poll() is None
    status, seconds = sweep.stop_with(signal.SIGINT)
    assert status == 128 + signal.SIGINT and seconds < 2, (status, seconds)
    os.kill(child, signal.SIGCONT)
    # The run got the signal too (and SIGTERM when the sweep died): it
    # writes its checkpoint and ends by itself.
    deadline = time.time() + STOP_LIMIT
    while time.time() < deadline and not no_run_process_left(out):
        time.sleep(0.1)
    assert no_run_process_left(out)
    assert (run / "checkpoint.pt").stat().st_mtime_ns > before
    assert stopped_step((out / "logs" / f"{run.name}.log").read_text()) is not None


@pytest.fixture(scope="module")
def slow_eval_run(tmp_path_factory):
    """A finished run whose evaluation takes several seconds on two cores:
    many test examples through a wider network."""
    root = tmp_path_factory.mktemp("slow_eval")
    write_tiny_fashion_mnist(root / "data", train=64, test=6000)
    subprocess.run([TOOL, "--threads", "2", "train", "--out", str(root / "run"),
                    *tiny_train_args(root / "data", "--set", "train.epochs=1",
                                     "--set", "model.filters=32,64")],
                   check=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=600)
    return root


@pytest.mark.parametrize("sig", SIGNALS, ids=lambda s: s.name)
def test_eval_stops_at_once(tmp_path, slow_eval_run, sig):
    dump = tmp_path / "dump.pt"
    evaluation = Running([TOOL, "--threads", "2", "eval", "--checkpoint",
                          str(slow_eval_run / "run" / "model.pt"), "--dump-logits", str(dump)],
                         tmp_path / "log")
    # The dump is written first, then the whole test split is evaluated.
    evaluation.wait_for(lambda: dump.exists())
    status, seconds = evaluation.stop_with(sig)
    assert status == 128 + sig and seconds < 2, (status, seconds, evaluation.output())
    assert "interrupted" in evaluation.output()
    assert "test accuracy" not in evaluation.output()


def test_a_stop_during_evaluation_evaluates_that_epoch_again_on_resume(tmp_path, slow_eval_run):
    run = tmp_path / "run"
    # Two steps an epoch, then several seconds of evaluation.
    args = tiny_train_args(slow_eval_run / "data", "--set", "train.epochs=2",
                           "--set", "model.filters=32,64")
    train = Running([TOOL, "--threads", "2", "train", "--out", str(run), *args],
                    tmp_path / "log")
    train.wait_for(lambda: "step 2/4" in train.output())
    status, seconds = train.stop_with(signal.SIGTERM)
    assert status == 0 and seconds < STOP_LIMIT, (status, seconds, train.output()[-2000:])
    assert "stopped while evaluating epoch 1 after step 2;" in train.output(), train.output()
    assert "epoch 1: train loss" not in train.output()
    resumed = subprocess.run([TOOL, "--threads", "2", "train", "--resume", str(run),
                              "--stop-after-steps", "1"],
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                             timeout=300)
    output = resumed.stdout.replace("\r", "\n")
    assert resumed.returncode == 0, output
    assert output.index("epoch 1: train loss") < output.index("stopped at step 3;"), output
    assert len((run / "metrics.csv").read_text().splitlines()) == 2  # header, epoch 1


@pytest.fixture(scope="module")
def large_image_folder(tmp_path_factory):
    """Image files whose statistics take `diffstride data` several seconds:
    1200 JPEGs of 480 x 480 pixels."""
    import cv2
    import numpy as np
    root = tmp_path_factory.mktemp("images")
    y, x = np.mgrid[0:480, 0:480]
    for split, count in (("train", 1200), ("val", 2)):
        for i in range(count):
            folder = root / split / ("a" if i % 2 else "b")
            folder.mkdir(parents=True, exist_ok=True)
            image = np.stack([(x + i) % 256, (y * 2 + i) % 256, (x + y) % 256], -1)
            cv2.imwrite(str(folder / f"{i}.jpg"), image.astype(np.uint8))
    return root


@pytest.mark.parametrize("sig", SIGNALS, ids=lambda s: s.name)
def test_data_stops_at_once(tmp_path, large_image_folder, sig):
    data = Running([TOOL, "--threads", "2", "data", "--dataset", "image_folder",
                    "--data-dir", str(large_image_folder), "--image-size", "224"],
                   tmp_path / "log")
    data.wait_for(lambda: "image_folder from" in data.output())
    status, seconds = data.stop_with(sig)
    assert status == 128 + sig and seconds < 2, (status, seconds, data.output())


@pytest.mark.parametrize("sig", SIGNALS, ids=lambda s: s.name)
def test_bench_stops_at_once_with_its_child(tmp_path, sig):
    bench = Running([TOOL, "--threads", "2", "bench", "--model", "resnet18", "--batch", "16",
                     "--steps", "50"], tmp_path / "log")
    bench.wait_for(lambda: "step 1/" in bench.output())
    status, seconds = bench.stop_with(sig)
    assert status == 128 + sig and seconds < 2, (status, seconds, bench.output())
    deadline = time.time() + STOP_LIMIT
    while time.time() < deadline and "bench --child" in subprocess.run(
            ["ps", "-ww", "-eo", "args"], stdout=subprocess.PIPE, text=True).stdout:
        time.sleep(0.1)
    assert "bench --child" not in subprocess.run(
        ["ps", "-ww", "-eo", "args"], stdout=subprocess.PIPE, text=True).stdout
