"""Makes tests/python's shared helpers (plain_formulation) importable, and
holds the fixtures of the tests that run the command-line tool: tiny
`diffstride train` runs on data written here (an IDX image set, a folder of
WAV files) and their `diffstride eval --dump-logits` files, each made once
per session."""
import os
import pathlib
import struct
import subprocess
import sys
import types
import wave

import pytest
import torch

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))


def write_idx(path, magic, sizes, data):
    path.write_bytes(struct.pack(">I" + "I" * len(sizes), magic, *sizes) + bytes(data))


def write_wav(path, samples, rate):
    """samples: a list of int16 values, mono."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as file:
        file.setnchannels(1)
        file.setsampwidth(2)
        file.setframerate(rate)
        file.writeframes(struct.pack(f"<{len(samples)}h", *samples))


@pytest.fixture(scope="session")
def tool():
    path = pathlib.Path(os.environ.get("DIFFSTRIDE_BUILD_DIR", "build")) / "diffstride"
    assert path.exists(), f"{path} not found: set DIFFSTRIDE_BUILD_DIR to the CMake build"
    return path


def run_tool(tool, *args):
    """Runs the tool, failing the test with its output when it fails."""
    out = subprocess.run([str(tool), "--threads", "2", *map(str, args)],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=300)
    assert out.returncode == 0, f"diffstride {' '.join(map(str, args))}:\n{out.stdout}"
    return out.stdout


def dump_logits(tool, run, path):
    run_tool(tool, "eval", "--checkpoint", run / "model.pt", "--dump-logits", path)
    return path


@pytest.fixture(scope="session")
def image_run(tool, tmp_path_factory):
    """Two epochs of the default (Fashion-MNIST) recipe's small DiffStride
    ResNet, filters 4, 8, 8 and strides 1, 2, 2, on 12 x 12 random IDX images
    (pixels scaled to [0, 1] only: mean 0, std 1): the run folder, its dump,
    and the 24 test images and labels as written."""
    tmp = tmp_path_factory.mktemp("image_run")
    generator = torch.Generator().manual_seed(3)
    data = tmp / "data"
    data.mkdir()
    written = {}
    for prefix, count in (("train", 48), ("t10k", 24)):
        pixels = torch.randint(0, 256, (count * 12 * 12,), generator=generator)
        labels = torch.randint(0, 10, (count,), generator=generator)
        write_idx(data / f"{prefix}-images-idx3-ubyte", 0x803, (count, 12, 12), pixels.tolist())
        write_idx(data / f"{prefix}-labels-idx1-ubyte", 0x801, (count,), labels.tolist())
        written[prefix] = (pixels.view(count, 1, 12, 12), labels)
    run = tmp / "run"
    run_tool(tool, "train", "--out", run, "--set", f"data.data_dir={data}",
             "--set", "data.batch_size=16", "--set", "data.mean=0", "--set", "data.std=1",
             "--set", "model.filters=[4, 8, 8]", "--set", "model.strides=[1, 2, 2]",
             "--set", "optimizer.boundaries=[]", "--set", "optimizer.values=[0.05]",
             "--set", "train.epochs=2")
    pixels, labels = written["t10k"]
    return types.SimpleNamespace(run=run, dump=dump_logits(tool, run, tmp / "logits.pt"),
                                 test_pixels=pixels, test_labels=labels)


# The audio folder: per split two labels, `val` clips exactly CLIP samples
# long at RATE (so that evaluation neither crops nor pads them).
RATE, CLIP = 8000, 512
AUDIO_LABELS = ("no", "yes")


@pytest.fixture(scope="session")
def audio_folder(tmp_path_factory):
    """A folder of 16-bit mono WAV clips of random noise (4 per label to
    train on, 3 per label to test on): its root, rate, clip length, label
    names, and its val clips as floats in the tool's order (label, then
    file name) with their labels."""
    root = tmp_path_factory.mktemp("audio")
    generator = torch.Generator().manual_seed(7)
    val, labels = [], []
    for split, count in (("train", 4), ("val", 3)):
        for label, name in enumerate(AUDIO_LABELS):
            for i in range(count):
                samples = torch.randint(-8000, 8000, (CLIP,), generator=generator)
                write_wav(root / split / name / f"clip{i}.wav", samples.tolist(), RATE)
                if split == "val":
                    val.append(samples.double() / 32768.0)
                    labels.append(label)
    return types.SimpleNamespace(root=root, rate=RATE, clip=CLIP, labels=AUDIO_LABELS,
                                 val=torch.stack(val), val_labels=torch.tensor(labels))


@pytest.fixture(scope="session")
def waveform_run(tool, audio_folder, tmp_path_factory):
    """waveform_run(name, *settings): one epoch of `diffstride train` on the
    audio folder with `--set` settings (after the shared ones): its folder,
    its output and the dump of its test examples; made once per name."""
    made = {}

    def make(name, *settings):
        if name not in made:
            tmp = tmp_path_factory.mktemp(f"waveform_{name}")
            sets = ["data.dataset=audio_folder", f"data.data_dir={audio_folder.root}",
                    f"data.sample_rate={RATE}", f"data.clip_samples={CLIP}",
                    "data.mean=0", "data.std=1", "data.batch_size=4", "train.epochs=1",
                    "optimizer.boundaries=[]", "optimizer.values=0.05", *settings]
            run = tmp / "run"
            log = run_tool(tool, "train", "--out", run, *[a for s in sets for a in ("--set", s)])
            made[name] = types.SimpleNamespace(run=run, log=log,
                                               dump=dump_logits(tool, run, tmp / "logits.pt"))
        return made[name]

    return make
