"""What the image and audio folder tests share about running the tool: its
path, a run with the child's peak memory, and a run's first test examples
through `diffstride eval --dump-logits`."""

import os
import subprocess
import tempfile
import time
from pathlib import Path

import torch

from tiny_data import TOOL  # noqa: F401  (the tests import it from here)

# The peak memory of a run on the tests' tiny folders is a few hundred MB
# (about 570 MB with PyPI's LibTorch 2.11, whose CUDA libraries are loaded
# too); a hostile file (declaring 1 GiB of samples or 10.8 GB of pixels) must
# not take it past this.
MEMORY_LIMIT = 768 << 20


def run(args, timeout=120):
    """Runs `args` (stdout and stderr together, as text). The result is a
    CompletedProcess with, besides, peak_bytes: the child's peak resident
    memory, from its own rusage (os.wait4), not the sum over children.
    TimeoutExpired (the child killed) after `timeout` seconds: a blocked run
    fails the test instead of hanging it."""
    with tempfile.TemporaryFile() as output:
        child = subprocess.Popen([str(a) for a in args], stdout=output,
                                 stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while True:
            pid, status, usage = os.wait4(child.pid, os.WNOHANG)
            if pid == child.pid:
                break
            if time.monotonic() > deadline:
                child.kill()
                os.wait4(child.pid, 0)
                child.returncode = -9
                raise subprocess.TimeoutExpired(args, timeout)
            time.sleep(0.02)
        child.returncode = os.waitstatus_to_exitcode(status)
        output.seek(0)
        text = output.read().decode(errors="replace")
    result = subprocess.CompletedProcess(args, child.returncode, text)
    result.peak_bytes = usage.ru_maxrss * 1024  # Linux: kilobytes
    return result


def dumped(run_dir, dump):
    """The first test examples of the run in `run_dir` as the network sees
    them (normalised), through a new dump file `dump`."""
    subprocess.run([TOOL, "eval", "--checkpoint", str(Path(run_dir) / "model.pt"),
                    "--dump-logits", str(dump)], check=True, stdout=subprocess.PIPE,
                   timeout=120)
    return torch.load(str(dump), weights_only=True)["images"]
