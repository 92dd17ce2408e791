"""The command-line tool against hostile input: text from a run never
becomes a command, files the tool did not make are never replaced or
written through, every declared size is bounded before it is allocated,
and every command-line error is one line with exit status 2.

Usage: python3 -m pytest tests/cli/test_hostile_inputs.py (DIFFSTRIDE names
the tool; default build/diffstride).
"""

import csv
import os
import shutil
import subprocess
import time
import xml.etree.ElementTree as ElementTree

import pytest

from tiny_data import TOOL, tiny_train_args, write_tiny_fashion_mnist

SVG = "{http://www.w3.org/2000/svg}"


def tool(*args, timeout=300, env=None):
    return subprocess.run([TOOL, *map(str, args)], stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, timeout=timeout,
                          env=env)


def expect_error(done, *words):
    """Exit status 2 and one line starting with 'error:' holding `words`."""
    assert done.returncode == 2, done.stdout
    errors = [line for line in done.stdout.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, done.stdout
    for word in words:
        assert word in errors[0], (word, done.stdout)


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A finished tiny run (2 epochs) and its data."""
    root = tmp_path_factory.mktemp("finished")
    write_tiny_fashion_mnist(root / "data", train=128, test=32)
    done = tool("--threads", "2", "train", "--out", root / "run",
                *tiny_train_args(root / "data", "--set", "train.epochs=2"))
    assert done.returncode == 0, done.stdout
    return root


def copy_run(finished, target, pooling=None, seed=None):
    """A copy of the finished run, with its config's pooling or seed
    changed (the folder name may be anything)."""
    shutil.copytree(finished / "run", target)
    config = (target / "config.toml").read_text()
    if pooling is not None:
        config = config.replace("pooling = 'diffstride'", "pooling = " + pooling)
    if seed is not None:
        config = config.replace("seed = 0", f"seed = {seed}")
    (target / "config.toml").write_text(config)
    return target


# --- report: nothing a run holds is ever executed --------------------------

HOSTILE = '"x\\n!touch {marker}\\n`touch {marker}` $(touch {marker}) \\" \' system(\\"touch {marker}\\") \\\\"'


def test_report_never_runs_text_from_a_run(tmp_path, finished):
    marker = tmp_path / "EXECUTED"
    runs = tmp_path / "runs"
    runs.mkdir()
    # A pooling value and a folder name that gnuplot would run as commands
    # if they reached its script.
    # (A folder name holds no '/': `cd` alone goes to $HOME, the test's
    # folder.)
    copy_run(finished, runs / "plain")
    copy_run(finished, runs / "name\n!cd; touch EXECUTED\n", seed=1)
    copy_run(finished, runs / "value", pooling=HOSTILE.format(marker=marker), seed=2)
    done = tool("report", *sorted(runs.iterdir()), "--out", tmp_path / "report",
                env=dict(os.environ, HOME=str(tmp_path)))
    assert done.returncode == 0, done.stdout
    assert not marker.exists()
    assert not (tmp_path / "report" / "EXECUTED").exists()
    for name in ("accuracy.svg", "accuracy_vs_multiply_adds.svg", "strides.svg"):
        root = ElementTree.parse(tmp_path / "report" / name).getroot()
        assert len(list(root.iter(SVG + "path"))) > 3, name
        texts = " ".join("".join(t.itertext()) for t in root.iter(SVG + "text"))
        if name != "accuracy_vs_multiply_adds.svg":
            # The hostile value is shown as text (cut to 60 characters), a
            # series of its own.
            assert "x !touch /" in texts, texts
    rows = list(csv.DictReader((tmp_path / "report" / "results.csv").open()))
    assert len(rows) == 3
    assert any("!touch" in row["pooling"] for row in rows)


def write_metrics(folder, header, rows):
    (folder / "metrics.csv").write_text(header + "\n" + "".join(r + "\n" for r in rows))


def test_report_shows_nan_missing_columns_and_unfinished_runs(tmp_path, finished):
    runs = tmp_path / "runs"
    runs.mkdir()
    nan = copy_run(finished, runs / "nan", seed=1)
    write_metrics(nan, "epoch,step,test_accuracy,multiply_adds,stride0_h,stride0_w",
                  ["1,4,nan,,nan,", "2,8,,,,"])
    columns = copy_run(finished, runs / "few_columns", seed=2)
    write_metrics(columns, "epoch,step", ["1,4"])
    unfinished = copy_run(finished, runs / "unfinished", seed=3)
    (unfinished / "model.pt").unlink()
    empty = copy_run(finished, runs / "no_epoch", seed=4)
    (empty / "metrics.csv").unlink()
    (empty / "model.pt").unlink()
    good = copy_run(finished, runs / "good")
    done = tool("report", *sorted(runs.iterdir()), "--out", tmp_path / "report")
    assert done.returncode == 0, done.stdout
    table = (tmp_path / "report" / "results.md").read_text()
    # Finished runs: good (a number) and nan, few_columns (no value: "-").
    assert "3 finished run(s) (2 unfinished, left out)" in table, table
    final = list(csv.DictReader((good / "metrics.csv").open()))[-1]
    assert f"{100 * float(final['test_accuracy']):.2f}" in table
    for name in ("nan", "few_columns"):
        line = next(l for l in table.splitlines() if l.startswith(f"| {name} |"))
        assert "| - | - |" in line, line
    assert "| unfinished (unfinished) |" in table
    assert "| no_epoch (unfinished) | diffstride |" in table
    # Every plot is drawn, with the good run's points at least.
    for name in ("accuracy.svg", "accuracy_vs_multiply_adds.svg", "strides.svg"):
        root = ElementTree.parse(tmp_path / "report" / name).getroot()
        assert len(list(root.iter(SVG + "path"))) > 3, name


def test_report_with_nothing_to_plot_still_draws(tmp_path, finished):
    run = copy_run(finished, tmp_path / "run")
    write_metrics(run, "epoch,step,test_accuracy", ["1,4,", "2,8,nan"])
    done = tool("report", run)
    assert done.returncode == 0, done.stdout
    root = ElementTree.parse(run / "accuracy.svg").getroot()
    assert "no finished epoch yet" in " ".join("".join(t.itertext())
                                               for t in root.iter(SVG + "text"))


def test_report_cuts_long_labels_between_characters(tmp_path, finished):
    run = copy_run(finished, tmp_path / "run", pooling='"' + "é" * 80 + '"')
    assert tool("report", run).returncode == 0
    for name in ("accuracy.svg", "strides.svg", "accuracy_vs_multiply_adds.svg"):
        texts = " ".join("".join(t.itertext())
                         for t in ElementTree.parse(run / name).getroot().iter(SVG + "text"))
        assert "é" * 30 + "..." in texts or name == "accuracy_vs_multiply_adds.svg", texts


def test_report_counts_a_run_named_twice_once(tmp_path, finished):
    run = copy_run(finished, tmp_path / "run")
    done = tool("report", run, run, str(run) + "/", "--out", tmp_path / "report")
    assert done.returncode == 0, done.stdout
    assert len(list(csv.DictReader((tmp_path / "report" / "results.csv").open()))) == 1
    assert "(1) |" in (tmp_path / "report" / "results.md").read_text()


@pytest.mark.parametrize("planted", ["results.md", "results.csv", "accuracy.svg", "link"])
def test_report_replaces_only_its_own_files(tmp_path, finished, planted):
    out = tmp_path / "report"
    out.mkdir()
    victim = tmp_path / "victim"
    victim.write_text("precious")
    if planted == "link":
        (out / "results.md").symlink_to(victim)
    else:
        (out / planted).write_text("precious")
    done = tool("report", finished / "run", "--out", out)
    expect_error(done, "results.md" if planted == "link" else planted)
    assert victim.read_text() == "precious"
    # All or nothing: no file of the report was written beside it.
    assert sorted(p.name for p in out.iterdir()) == ["results.md" if planted == "link" else planted]
    if planted != "link":
        assert (out / planted).read_text() == "precious"
    # A report's own files are replaced by the next report.
    again = tmp_path / "again"
    assert tool("report", finished / "run", "--out", again).returncode == 0
    assert tool("report", finished / "run", "--out", again).returncode == 0


# --- never replace a file the tool did not make ----------------------------

@pytest.mark.parametrize("name", ["model.pt", "checkpoint.pt", "config.toml", "metrics.csv"])
def test_dump_logits_never_replaces_a_runs_file(tmp_path, finished, name):
    run = copy_run(finished, tmp_path / "run")
    before = (run / name).read_bytes()
    for extra in ([], ["--force"]):
        done = tool("eval", "--checkpoint", run / "model.pt", "--dump-logits", run / name, *extra)
        expect_error(done, name)
        assert (run / name).read_bytes() == before


def test_dump_logits_needs_a_new_path_or_force_and_a_regular_file(tmp_path, finished):
    model = finished / "run" / "model.pt"
    dump = tmp_path / "dump.pt"
    assert tool("eval", "--checkpoint", model, "--dump-logits", dump).returncode == 0
    expect_error(tool("eval", "--checkpoint", model, "--dump-logits", dump), "exists", "--force")
    assert tool("eval", "--checkpoint", model, "--dump-logits", dump, "--force").returncode == 0
    victim = tmp_path / "victim"
    victim.write_text("precious")
    (tmp_path / "link").symlink_to(victim)
    (tmp_path / "device").symlink_to("/dev/null")
    os.mkfifo(tmp_path / "fifo")
    for name in ("link", "device", "fifo"):
        done = tool("eval", "--checkpoint", model, "--dump-logits", tmp_path / name, "--force",
                    timeout=60)
        expect_error(done, name, "not a regular file")
    # A device itself.
    expect_error(tool("eval", "--checkpoint", model, "--dump-logits", "/dev/null", "--force"),
                 "/dev/null", "not a regular file")
    assert victim.read_text() == "precious"
    assert (tmp_path / "link").is_symlink() and (tmp_path / "device").is_symlink()
    assert (tmp_path / "fifo").is_fifo()
    assert os.path.exists("/dev/null") and not os.path.isfile("/dev/null")


@pytest.mark.parametrize("planted, words", [
    ("config.toml", ["config.toml diffstride train did not write"]),
    ("model.pt", ["finished run"]),
    ("model_state_dict.pt", ["not part of a diffstride run", "model_state_dict.pt"]),
    ("notes.txt", ["not part of a diffstride run", "notes.txt"]),
])
def test_train_out_takes_an_empty_folder_or_an_unstarted_run_only(tmp_path, finished, planted, words):
    out = tmp_path / "out"
    out.mkdir()
    (out / planted).write_text("precious")
    done = tool("train", "--out", out, *tiny_train_args(finished / "data", "--set", "train.epochs=1"))
    expect_error(done, *words)
    assert sorted(p.name for p in out.iterdir()) == [planted]
    assert (out / planted).read_text() == "precious"


def test_train_out_refuses_a_finished_run_trimmed_and_restarts_an_unstarted_one(tmp_path, finished):
    trimmed = tmp_path / "trimmed"
    trimmed.mkdir()
    for name in ("config.toml", "model.pt"):
        shutil.copy(finished / "run" / name, trimmed / name)
    model = (trimmed / "model.pt").read_bytes()
    args = tiny_train_args(finished / "data", "--set", "train.epochs=1")
    expect_error(tool("train", "--out", trimmed, *args), "finished run")
    assert (trimmed / "model.pt").read_bytes() == model
    # A run of the tool that never reached its first checkpoint starts again.
    unstarted = tmp_path / "unstarted"
    unstarted.mkdir()
    shutil.copy(finished / "run" / "config.toml", unstarted / "config.toml")
    assert tool("train", "--out", unstarted, *args).returncode == 0
    assert (unstarted / "model.pt").exists()


def test_resume_refuses_a_folder_the_tool_did_not_make(tmp_path, finished):
    folder = tmp_path / "foreign"
    folder.mkdir()
    config = (finished / "run" / "config.toml").read_text().split("\n", 1)[1]
    (folder / "config.toml").write_text(config)  # without the tool's first line
    (folder / "model.pt").write_text("precious")
    expect_error(tool("train", "--resume", folder), "not a run of diffstride train")
    assert (folder / "model.pt").read_text() == "precious"


def test_sweep_refuses_a_folder_that_is_not_a_sweeps(tmp_path, finished):
    out = tmp_path / "folder"
    out.mkdir()
    (out / "notes.txt").write_text("precious")
    done = tool("sweep", "--out", out, "--axis", "model.pooling=spectral,diffstride",
                *tiny_train_args(finished / "data"))
    expect_error(done, "not an empty folder or a sweep's")
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]


# --- command-line errors: one line, status 2 -------------------------------

@pytest.mark.parametrize("args, words", [
    (["sweep", "--out", "s", "--axis", "model.pooling=none", "--seeds", "0"], ["--seeds"]),
    (["sweep", "--out", "s", "--axis", "model.pooling=none", "--parallel", "0"], ["--parallel"]),
    (["train", "--resume", ""], ["--resume", "non-empty"]),
    (["train", "--out", ""], ["--out", "non-empty"]),
    (["eval", "--checkpoint", ""], ["--checkpoint", "non-empty"]),
    (["--threads", "100000", "train"], ["--threads"]),
    (["train", "--nope"], ["--nope"]),
    (["frobnicate"], ["subcommand"]),
    ([], ["subcommand"]),
])
def test_command_line_errors_exit_2_with_one_line(tmp_path, args, words):
    done = subprocess.run([TOOL, *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, timeout=60, cwd=tmp_path)
    expect_error(done, *words)
    assert not (tmp_path / "s").exists()


# --- sizes bounded before they are allocated -------------------------------

@pytest.mark.parametrize("settings, words", [
    (["model.filters=10000000,4,4", "model.strides=1,2,2"],
     ["model", "parameters", "10000000,4,4"]),
    (["model.layers_per_block=100000000"], ["model", "residual layers"]),
    (["train.threads=100000"], ["train.threads", "cores"]),
    (["data.workers=100000"], ["data.workers", "cores"]),
    (["data.image_size=1000000"], ["data.image_size"]),
    (["data.clip_samples=1000000000000"], ["data.clip_samples"]),
])
def test_a_size_beyond_its_bound_is_an_error_at_once(tmp_path, finished, settings, words):
    started = time.time()
    sets = [word for setting in settings for word in ("--set", setting)]
    done = tool("train", "--out", tmp_path / "run",
                *tiny_train_args(finished / "data", *sets), timeout=120)
    assert time.time() - started < 20
    expect_error(done, *words)


def test_sweep_sizes_are_bounded_before_anything_runs(tmp_path, finished):
    started = time.time()
    expect_error(tool("sweep", "--out", tmp_path / "s", "--axis", "model.pooling=none",
                      "--seeds", "1000000000"), "--seeds")
    seeds = ",".join(str(i) for i in range(200))
    smoothing = ",".join(f"{i / 100}" for i in range(51))
    expect_error(tool("sweep", "--out", tmp_path / "s", "--axis", f"train.seed={seeds}",
                      "--axis", f"loss.label_smoothing={smoothing}"), "10000 runs")
    assert time.time() - started < 20
    assert not (tmp_path / "s").exists()


@pytest.mark.parametrize("where", [["--axis", "train.device=cuda,cpu"],
                                   ["--set", "train.device=cuda", "--axis", "train.seed=0,1"]])
def test_sweep_device_given_twice_is_an_error(tmp_path, finished, where):
    done = tool("sweep", "--out", tmp_path / "s", "--device", "cpu", *where,
                *tiny_train_args(finished / "data"))
    expect_error(done, "--device cpu", "train.device")
    assert not (tmp_path / "s").exists()
