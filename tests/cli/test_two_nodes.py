"""Several machines, played on one: two torchrun launchers as two nodes on
loopback (c10d rendezvous), one rank each, train one run together; when one
node dies the other's rank stops, with an error naming the failure or at a
checkpoint, and the run resumes on a single node; when only a launcher
dies, its rank and the other stop together at a checkpoint.

Usage: python3 -m pytest tests/cli/test_two_nodes.py (DIFFSTRIDE names the
tool, TORCHRUN the launcher; defaults build/diffstride and torchrun).
"""

import os
import re
import shutil
import signal
import socket
import subprocess
import time

import pytest

from tiny_data import TOOL, stopped_step, tiny_train_args, write_tiny_fashion_mnist

TORCHRUN = os.environ.get("TORCHRUN", shutil.which("torchrun") or "torchrun")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_node(node, port, folder, args):
    """Node `node` of 2: its launcher (in a process group of its own, so
    that the whole node can be killed) and its one rank, output in
    folder/node<N>.log. Node 0 hosts the rendezvous (is_host: both nodes
    are on this machine's loopback)."""
    log = (folder / f"node{node}.log").open("w")
    return subprocess.Popen(
        [TORCHRUN, "--nnodes", "2", "--node_rank", str(node), "--nproc_per_node", "1",
         "--rdzv_backend", "c10d", "--rdzv_endpoint", f"127.0.0.1:{port}",
         "--rdzv_conf", f"is_host={'true' if node == 0 else 'false'}",
         "--redirects", "0:1", "--tee", "0:1", "--log_dir", str(folder / f"logs{node}"),
         "--no_python", TOOL, "--threads", "1", "train", *args],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def node_log(folder, node):
    return (folder / f"node{node}.log").read_text().replace("\r", "\n")


def kill_node(launcher):
    os.killpg(launcher.pid, signal.SIGKILL)
    launcher.wait()


@pytest.fixture
def data(tmp_path):
    write_tiny_fashion_mnist(tmp_path / "data", train=256, test=64)
    return tmp_path / "data"


def test_two_nodes_train_one_run_together(tmp_path, data):
    port = free_port()
    args = ["--out", str(tmp_path / "run"),
            *tiny_train_args(data, "--set", "train.epochs=2")]
    nodes = [start_node(n, port, tmp_path, args) for n in (0, 1)]
    for n, node in enumerate(nodes):
        assert node.wait(timeout=300) == 0, node_log(tmp_path, n)
    log = node_log(tmp_path, 0)
    assert "2 processes (gloo), global batch 32 = 2 x 16" in log, log
    assert "final test accuracy" in log
    assert (tmp_path / "run" / "model.pt").exists()
    # Rank 1 ran on node 1 and wrote nothing of its own.
    assert "final test accuracy" not in node_log(tmp_path, 1)


def two_nodes_past_a_checkpoint(tmp_path, data, run):
    """Two nodes training a long run into `run`, once it has a checkpoint."""
    port = free_port()
    args = ["--out", str(run),
            *tiny_train_args(data, "--set", "train.epochs=100",
                             "--set", "train.collective_timeout_seconds=30")]
    nodes = [start_node(n, port, tmp_path, args) for n in (0, 1)]
    deadline = time.time() + 240
    while not (run / "checkpoint.pt").exists():
        assert time.time() < deadline and nodes[0].poll() is None, node_log(tmp_path, 0)
        time.sleep(0.2)
    return nodes


def test_a_dead_node_stops_the_other_and_the_run_resumes_on_one(tmp_path, data):
    run = tmp_path / "run"
    nodes = two_nodes_past_a_checkpoint(tmp_path, data, run)
    kill_node(nodes[1])  # the whole machine: launcher and rank
    killed = time.time()
    # The survivor stops either by itself, its collective failing, or at a
    # checkpoint, on the SIGTERM of its launcher, whose rendezvous saw the
    # other node go (PyTorch 2's torchrun is the quicker of the two).
    failed = "error: rank 0 of 2: another rank has probably died or stopped answering"
    while failed not in node_log(tmp_path, 0) and stopped_step(node_log(tmp_path, 0)) is None:
        assert time.time() < killed + 45, node_log(tmp_path, 0)[-3000:]
        time.sleep(0.2)
    # torchrun then waits in its exit barrier for the dead node: the
    # survivor's launcher is stopped here.
    kill_node(nodes[0])
    epochs_done = len((run / "metrics.csv").read_text().splitlines()) - 1
    assert epochs_done >= 1
    resumed = subprocess.run(
        [TORCHRUN, "--standalone", "--nproc_per_node", "1", "--redirects", "0:1",
         "--tee", "0:1", "--log_dir", str(tmp_path / "logs_resumed"), "--no_python", TOOL,
         "--threads", "2", "train", "--resume", str(run), "--stop-after-steps", "2"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=300)
    output = resumed.stdout.replace("\r", "\n")
    assert resumed.returncode == 0, output
    # From the survivor's checkpoint, else the last epoch's (256 examples in
    # batches of 32 per epoch).
    step = stopped_step(node_log(tmp_path, 0)) or 8 * epochs_done
    assert re.search(rf"stopped at step {step + 2};", output), output
    assert "device cpu, precision float32\n" in output  # one process, no group


def ranks_of(run):
    listing = subprocess.run(["ps", "-ww", "-eo", "args"], stdout=subprocess.PIPE, text=True).stdout
    return [line for line in listing.splitlines()
            if "train --out " + str(run) in line and "torchrun" not in line]


def test_a_dead_launcher_stops_both_ranks_at_one_checkpoint(tmp_path, data):
    run = tmp_path / "run"
    nodes = two_nodes_past_a_checkpoint(tmp_path, data, run)
    nodes[1].kill()  # the launcher alone: its rank gets SIGTERM from the kernel
    nodes[1].wait()
    killed = time.time()
    while stopped_step(node_log(tmp_path, 0)) is None:
        assert time.time() < killed + 30, node_log(tmp_path, 0)[-3000:]
        time.sleep(0.2)
    while ranks_of(run):
        assert time.time() < killed + 30, ranks_of(run)
        time.sleep(0.2)
    step = stopped_step(node_log(tmp_path, 0))
    kill_node(nodes[0])  # its launcher waits in torchrun's exit barrier
    resumed = subprocess.run(
        [TOOL, "--threads", "2", "train", "--resume", str(run), "--stop-after-steps", "1"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stdout
    assert f"stopped at step {step + 1};" in resumed.stdout.replace("\r", "\n")
