"""`diffstride train` on audio folders the test writes (WAV files of several
sample rates and lengths, mono and stereo): decoded samples checked against
the values written, resampling, and bad files in both modes.

The network here is the 2-D ResNet on 1 x samples inputs with strided
convolutions along time (model.strides=1,1x4): what is checked is the data
the tool reads, through `diffstride eval --dump-logits`, which writes the
first test examples as the network sees them.

Usage: python3 -m pytest tests/cli/test_audio_folder.py (DIFFSTRIDE names the
tool; default build/diffstride).
"""

import math
import os
import struct
import subprocess
import wave
from pathlib import Path

import numpy as np
import pytest
import torch

from bad_files import check_both_modes, write_bad_file

TOOL = os.environ.get(
    "DIFFSTRIDE", str(Path(__file__).resolve().parents[2] / "build" / "diffstride"))

RATE, CLIP = 16000, 4000


def write_wav(path, frames, rate):
    """frames: int16 array (samples,) or (samples, channels)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    frames = np.asarray(frames, np.int16)
    channels = 1 if frames.ndim == 1 else frames.shape[1]
    with wave.open(str(path), "wb") as f:
        f.setnchannels(channels)
        f.setsampwidth(2)
        f.setframerate(rate)
        f.writeframes(frames.tobytes())


def ramp(length, start):
    return (np.arange(length) * 7 + start) % 20000 - 10000


def make_folder(root):
    """Per split and class: a short mono clip (padded), a long stereo clip
    (centre-cropped in evaluation, channels averaged), an 8 kHz sine
    (resampled). Returns the val examples (1 x CLIP floats) in the tool's
    order, None where only properties are checked (the resampled sine)."""
    expected = []
    for split in ("train", "val"):
        for label, cls in enumerate(("no", "yes")):
            short = ramp(3000, 100 * label)
            write_wav(root / split / cls / "a_short.wav", short, RATE)
            long_left = ramp(7000, 5 + label)
            long_right = ramp(7000, 999)
            write_wav(root / split / cls / "b_stereo.wav",
                      np.stack([long_left, long_right], axis=1), RATE)
            t = np.arange(1000) / 8000.0
            sine = np.rint(8000 * np.sin(2 * math.pi * 500 * t))
            write_wav(root / split / cls / "c_8k.wav", sine, 8000)
            if split == "val":
                padded = np.zeros(CLIP)
                padded[:3000] = short / 32768.0
                expected.append(padded)
                offset = (7000 - CLIP) // 2
                mixed = (long_left + long_right)[offset:offset + CLIP] / 2 / 32768.0
                expected.append(mixed)
                expected.append(None)
    return expected


def train(root, out, *extra):
    return subprocess.run(
        [TOOL, "--threads", "2", "train", "--out", str(out),
         "--set", "data.dataset=audio_folder", "--set", f"data.data_dir={root}",
         "--set", f"data.sample_rate={RATE}", "--set", f"data.clip_samples={CLIP}",
         "--set", "data.mean=0", "--set", "data.std=1", "--set", "data.batch_size=2",
         "--set", "model.pooling=none", "--set", "model.filters=4,8",
         "--set", "model.strides=1x4,1x4", "--set", "train.epochs=1",
         "--set", "optimizer.boundaries=[]", "--set", "optimizer.values=0.05", *extra],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=300)


def dumped(tmp_path, run):
    dump = tmp_path / "dump.pt"
    subprocess.run([TOOL, "eval", "--checkpoint", str(run / "model.pt"),
                    "--dump-logits", str(dump)], check=True, stdout=subprocess.PIPE)
    return torch.load(str(dump))["images"]


def test_decoded_samples_match_the_values_written(tmp_path):
    expected = make_folder(tmp_path / "audio")
    run = train(tmp_path / "audio", tmp_path / "run")
    assert run.returncode == 0, run.stdout
    images = dumped(tmp_path, tmp_path / "run")
    assert images.shape == (len(expected), 1, 1, CLIP)
    for i, want in enumerate(expected):
        got = images[i, 0, 0].double().numpy()
        if want is not None:
            np.testing.assert_allclose(got, want, atol=1e-6, err_msg=str(i))
            continue
        # 1000 samples at 8 kHz are 2000 at 16 kHz, then silence; a 500 Hz
        # sine of amplitude 8000/32768 (resampling keeps it, away from the
        # edges).
        body = got[200:1800]
        assert abs(np.abs(body).max() - 8000 / 32768) < 0.01
        spectrum = np.abs(np.fft.rfft(body * np.hanning(len(body))))
        peak = np.argmax(spectrum) * RATE / len(body)
        assert abs(peak - 500) < 20, peak
        assert np.abs(got[2010:]).max() < 1e-3


def test_stereo_examples_keep_both_channels(tmp_path):
    make_folder(tmp_path / "audio")
    run = train(tmp_path / "audio", tmp_path / "run", "--set", "data.channels=2",
                "--set", "data.mean=0,0", "--set", "data.std=1,1")
    assert run.returncode == 0, run.stdout
    images = dumped(tmp_path, tmp_path / "run")
    offset = (7000 - CLIP) // 2
    np.testing.assert_allclose(images[1, 0, 0].double().numpy(),
                               ramp(7000, 5)[offset:offset + CLIP] / 32768.0, atol=1e-6)
    np.testing.assert_allclose(images[1, 1, 0].double().numpy(),
                               ramp(7000, 999)[offset:offset + CLIP] / 32768.0, atol=1e-6)
    # A mono file's channel is repeated.
    assert torch.equal(images[0, 0], images[0, 1])


def test_another_rate_is_a_bad_file_without_resampling(tmp_path):
    make_folder(tmp_path / "audio")
    run = train(tmp_path / "audio", tmp_path / "run", "--set", "data.resample=false")
    assert run.returncode == 2
    assert "c_8k.wav: 8000 Hz, expected 16000 Hz" in run.stdout


@pytest.mark.parametrize("bad, kind", [("truncated.wav", "truncated"),
                                       ("random.wav", "random"),
                                       ("notes.txt", "text")])
def test_bad_files_stop_the_run_with_their_name_or_are_skipped_and_counted(tmp_path, bad, kind):
    root = tmp_path / "audio"
    make_folder(root)
    write_bad_file(root / "train" / "no" / bad, kind, root / "train" / "no" / "b_stereo.wav")
    check_both_modes(train, root, tmp_path, bad)
