"""`diffstride sweep` killed in the middle and run again, then `diffstride
report` checked against the runs' own metrics.csv files.

Usage: python3 -m pytest tests/cli/test_sweep_report.py (DIFFSTRIDE names
the tool; default build/diffstride).
"""

import csv
import math
import os
import re
import signal
import subprocess
import time
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import pytest

from tiny_data import TOOL, write_tiny_fashion_mnist

def sweep_command(data, out):
    return [TOOL, "--threads", "2", "sweep", "--out", str(out),
            "--set", f"data.data_dir={data}", "--set", "data.batch_size=32",
            "--set", "model.filters=4,8", "--set", "train.epochs=3",
            "--set", "optimizer.boundaries=[]", "--set", "optimizer.values=0.05",
            "--axis", "model.pooling=spectral,diffstride",
            "--axis", "model.strides=1,2:1,3"]


def test_sweep_killed_and_restarted_completes_every_run_once_and_reports(tmp_path):
    data, out = tmp_path / "data", tmp_path / "sweep"
    write_tiny_fashion_mnist(data)
    first = subprocess.Popen(sweep_command(data, out), stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, start_new_session=True)
    # Kill the sweep (SIGKILL: no chance to clean up) once its second run has
    # written a checkpoint and not finished.
    deadline = time.time() + 240
    second = None
    while time.time() < deadline and first.poll() is None:
        runs = sorted((out / "runs").glob("1_*")) if (out / "runs").exists() else []
        if runs and (runs[0] / "checkpoint.pt").exists() and not (runs[0] / "model.pt").exists():
            second = runs[0]
            break
        time.sleep(0.02)
    assert second is not None, "the sweep never reached its second run's first checkpoint"
    os.kill(first.pid, signal.SIGKILL)
    first.wait()
    again = subprocess.run(sweep_command(data, out), stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True, timeout=600)
    assert again.returncode == 0, again.stdout
    log = (out / "sweep.log").read_text()
    assert "0_pooling=spectral_strides=1-2: finished earlier, skipped" in log
    assert f"{second.name}: resumed" in log

    manifest = list(csv.DictReader((out / "manifest.csv").open()))
    assert [row["model.pooling"] for row in manifest] == ["spectral"] * 2 + ["diffstride"] * 2
    assert [row["model.strides"] for row in manifest] == ["1,2", "1,3"] * 2
    for row in manifest:
        run = out / row["run"]
        assert (run / "model.pt").exists()
        epochs = [int(r["epoch"]) for r in csv.DictReader((run / "metrics.csv").open())]
        assert epochs == [1, 2, 3], (run, epochs)
        # finished exactly once: one "finished" line per run over both sweeps
        assert len(re.findall(re.escape(run.name) + r": finished in", log)) == 1

    # A different sweep in the same folder is refused.
    other = subprocess.run(sweep_command(data, out) + ["--seeds", "2"],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert other.returncode != 0 and "holds another sweep" in other.stdout

    report = subprocess.run([TOOL, "report", str(out)], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    assert report.returncode == 0, report.stdout

    # The table, from the runs' metrics.csv independently: one run per cell.
    table = (out / "results.md").read_text()
    for row in manifest:
        final = list(csv.DictReader((out / row["run"] / "metrics.csv").open()))[-1]
        cell = f"{100 * float(final['test_accuracy']):.2f} (1)"
        line = next(l for l in table.splitlines() if l.startswith(f"| {row['model.pooling']} |"))
        assert cell in line, (cell, line)
    results = list(csv.DictReader((out / "results.csv").open()))
    assert len(results) == 4 and all(r["finished"] == "true" for r in results)
    for name in ("accuracy.svg", "accuracy_vs_multiply_adds.svg", "strides.svg"):
        root = ElementTree.parse(out / name).getroot()
        assert root.tag.endswith("svg"), name
        assert len(list(root.iter("{http://www.w3.org/2000/svg}path"))) > 3, name


def test_report_mean_and_sd_over_seeds_match_an_independent_computation(tmp_path):
    data, out = tmp_path / "data", tmp_path / "sweep"
    write_tiny_fashion_mnist(data, train=256, test=64)
    # Every run under a launcher (here `env`, which sets a variable and runs
    # the tool) and on an explicit device.
    command = [TOOL, "--threads", "2", "sweep", "--out", str(out), "--parallel", "2",
               "--launch", "env DIFFSTRIDE_UNDER_LAUNCHER=1", "--device", "cpu",
               "--set", f"data.data_dir={data}", "--set", "data.batch_size=32",
               "--set", "model.filters=4,8", "--set", "model.strides=1,2",
               "--set", "train.epochs=1", "--set", "optimizer.boundaries=[]",
               "--set", "optimizer.values=0.05",
               "--axis", "model.pooling=none,diffstride", "--seeds", "3"]
    done = subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stdout
    subprocess.run([TOOL, "report", str(out)], check=True, stdout=subprocess.PIPE)
    by_pooling = {}
    for row in csv.DictReader((out / "manifest.csv").open()):
        final = list(csv.DictReader((out / row["run"] / "metrics.csv").open()))[-1]
        by_pooling.setdefault(row["model.pooling"], []).append(100 * float(final["test_accuracy"]))
    table = (out / "results.md").read_text()
    for pooling, values in by_pooling.items():
        mean = sum(values) / len(values)
        sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))
        line = next(l for l in table.splitlines() if l.startswith(f"| {pooling} |"))
        assert f"{mean:.2f} ± {sd:.2f} (3)" in line, (pooling, values, line)


def test_report_of_a_single_run_folder(tmp_path):
    data, run = tmp_path / "data", tmp_path / "run"
    write_tiny_fashion_mnist(data, train=128, test=32)
    subprocess.run([TOOL, "--threads", "2", "train", "--out", str(run),
                    "--set", f"data.data_dir={data}", "--set", "data.batch_size=32",
                    "--set", "model.filters=4,8", "--set", "model.strides=1,2",
                    "--set", "train.epochs=2", "--set", "optimizer.boundaries=[]",
                    "--set", "optimizer.values=0.05"],
                   check=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    subprocess.run([TOOL, "report", str(run)], check=True, stdout=subprocess.PIPE)
    final = list(csv.DictReader((run / "metrics.csv").open()))[-1]
    assert f"| diffstride | {100 * float(final['test_accuracy']):.2f} (1) |" in (run / "results.md").read_text()
    ElementTree.parse(run / "strides.svg")


def test_bad_axis_and_unknown_key_are_errors_naming_them(tmp_path):
    bad = subprocess.run([TOOL, "sweep", "--out", str(tmp_path / "s"), "--axis", "model.pooling"],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert bad.returncode != 0 and "--axis" in bad.stdout and "model.pooling" in bad.stdout
    unknown = subprocess.run([TOOL, "sweep", "--out", str(tmp_path / "s"), "--axis", "model.nope=1,2"],
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert unknown.returncode != 0 and "nope" in unknown.stdout
    assert not (tmp_path / "s" / "runs").exists()
    missing = subprocess.run([TOOL, "report", str(tmp_path / "missing")],
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert missing.returncode != 0 and "missing" in missing.stdout
