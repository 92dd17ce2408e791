"""`diffstride train` on audio folders the test writes (WAV files of several
sample rates and lengths, mono and stereo): decoded samples checked against
the values written, resampling, and bad files in both modes. Hostile
inputs: float WAVs beyond full scale (clipped) or holding NaN or infinity
(bad files), sound longer than data.max_sound_frames, entries that are not
regular files, and `diffstride data`'s statistics over the centre clips.

The network here is the 2-D ResNet on 1 x samples inputs with strided
convolutions along time (model.strides=1,1x4): what is checked is the data
the tool reads, through `diffstride eval --dump-logits`, which writes the
first test examples as the network sees them.

Usage: python3 -m pytest tests/cli/test_audio_folder.py (DIFFSTRIDE names the
tool; default build/diffstride).
"""

import math
import os
import re
import shutil
import struct
import subprocess
import wave

import numpy as np
import pytest
import torch

from bad_files import check_both_modes, make_non_regular, write_bad_file
from folder_runs import MEMORY_LIMIT, TOOL, dumped, run

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


def write_float_wav(path, samples, rate):
    """A mono WAVE_FORMAT_IEEE_FLOAT (format tag 3) file of 32-bit samples,
    any value (beyond [-1, 1], NaN, infinity), with its fact chunk."""
    path.parent.mkdir(parents=True, exist_ok=True)
    data = np.asarray(samples, "<f4").tobytes()
    fmt = struct.pack("<HHIIHH", 3, 1, rate, rate * 4, 4, 32)
    chunks = (b"fmt " + struct.pack("<I", len(fmt)) + fmt
              + b"fact" + struct.pack("<II", 4, len(samples))
              + b"data" + struct.pack("<I", len(data)) + data)
    path.write_bytes(b"RIFF" + struct.pack("<I", 4 + len(chunks)) + b"WAVE" + chunks)


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
    return run(
        [TOOL, "--threads", "2", "train", "--out", str(out),
         "--set", "data.dataset=audio_folder", "--set", f"data.data_dir={root}",
         "--set", f"data.sample_rate={RATE}", "--set", f"data.clip_samples={CLIP}",
         "--set", "data.mean=0", "--set", "data.std=1", "--set", "data.batch_size=2",
         "--set", "model.pooling=none", "--set", "model.filters=4,8",
         "--set", "model.strides=1x4,1x4", "--set", "train.epochs=1",
         "--set", "optimizer.boundaries=[]", "--set", "optimizer.values=0.05", *extra])


def test_decoded_samples_match_the_values_written(tmp_path):
    expected = make_folder(tmp_path / "audio")
    trained = train(tmp_path / "audio", tmp_path / "run")
    assert trained.returncode == 0, trained.stdout
    images = dumped(tmp_path / "run", tmp_path / "dump.pt")
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
    trained = train(tmp_path / "audio", tmp_path / "run", "--set", "data.channels=2",
                "--set", "data.mean=0,0", "--set", "data.std=1,1")
    assert trained.returncode == 0, trained.stdout
    images = dumped(tmp_path / "run", tmp_path / "dump.pt")
    offset = (7000 - CLIP) // 2
    np.testing.assert_allclose(images[1, 0, 0].double().numpy(),
                               ramp(7000, 5)[offset:offset + CLIP] / 32768.0, atol=1e-6)
    np.testing.assert_allclose(images[1, 1, 0].double().numpy(),
                               ramp(7000, 999)[offset:offset + CLIP] / 32768.0, atol=1e-6)
    # A mono file's channel is repeated.
    assert torch.equal(images[0, 0], images[0, 1])


def test_another_rate_is_a_bad_file_without_resampling(tmp_path):
    make_folder(tmp_path / "audio")
    trained = train(tmp_path / "audio", tmp_path / "run", "--set", "data.resample=false")
    assert trained.returncode == 2
    assert "c_8k.wav: 8000 Hz, expected 16000 Hz" in trained.stdout


@pytest.mark.parametrize("bad, kind", [("truncated.wav", "truncated"),
                                       ("random.wav", "random"),
                                       ("notes.txt", "text")])
def test_bad_files_stop_the_run_with_their_name_or_are_skipped_and_counted(tmp_path, bad, kind):
    root = tmp_path / "audio"
    make_folder(root)
    write_bad_file(root / "train" / "no" / bad, kind, root / "train" / "no" / "b_stereo.wav")
    check_both_modes(train, root, tmp_path, bad)


# Floating-point WAVs may hold anything: louder samples are clipped to
# [-1, 1], NaN and infinity make a bad file; a file declaring more frames
# than data.max_sound_frames is a bad file. Here on a folder of short clips.

SHORT = 800


def make_short_folder(root):
    """Per split and class two 800-frame 16-bit clips; val/no/a_loud.wav a
    float WAV beyond full scale. Returns a_loud's samples as written."""
    for split in ("train", "val"):
        for label, cls in enumerate(("no", "yes")):
            for i in range(2):
                write_wav(root / split / cls / f"b_{i}.wav", ramp(SHORT, 300 * i + label), RATE)
    loud = np.linspace(-3, 3, 900, dtype=np.float32)
    loud[:4] = [3.0, -2.5, 0.5, -0.25]
    write_float_wav(root / "val" / "no" / "a_loud.wav", loud, RATE)
    return loud


def test_float_samples_beyond_full_scale_are_clipped(tmp_path):
    loud = make_short_folder(tmp_path / "audio")
    trained = train(tmp_path / "audio", tmp_path / "run")
    assert trained.returncode == 0, trained.stdout
    images = dumped(tmp_path / "run", tmp_path / "dump.pt")
    want = np.zeros(CLIP)
    want[:len(loud)] = np.clip(loud.astype(float), -1, 1)
    np.testing.assert_allclose(images[0, 0, 0].double().numpy(), want, atol=1e-6)
    assert images[0, 0, 0, :4].tolist() == [1.0, -1.0, 0.5, -0.25]


def losses(stdout):
    """Every epoch's train and test loss from the run's log."""
    found = re.findall(r"train loss (\S+), accuracy \S+; test loss (\S+),", stdout)
    assert found, stdout
    return [float(v) for pair in found for v in pair]


@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
def test_a_float_wav_holding_a_non_finite_sample_is_a_bad_file(tmp_path, value):
    root = tmp_path / "audio"
    make_short_folder(root)
    samples = np.linspace(-0.5, 0.5, SHORT, dtype=np.float32)
    samples[SHORT // 2] = float(value)
    bad = f"c_{value}.wav"
    write_float_wav(root / "train" / "no" / bad, samples, RATE)
    _, skipping = check_both_modes(train, root, tmp_path, bad)
    assert all(math.isfinite(v) for v in losses(skipping.stdout)), skipping.stdout


def test_data_statistics_refuse_or_skip_a_file_holding_nan(tmp_path):
    root = tmp_path / "audio"
    make_short_folder(root)
    samples = np.linspace(-0.5, 0.5, SHORT, dtype=np.float32)
    samples[SHORT // 2] = float("nan")
    write_float_wav(root / "train" / "no" / "c_nan.wav", samples, RATE)
    command = [TOOL, "--threads", "2", "data", "--dataset", "audio_folder", "--data-dir", root,
               "--sample-rate", RATE, "--clip-samples", CLIP]
    stopped = run(command)
    assert stopped.returncode == 2 and "c_nan.wav" in stopped.stdout, stopped.stdout
    assert "non-finite" in stopped.stdout
    skipped = run(command + ["--set", "data.skip_bad_files=true"])
    assert skipped.returncode == 0, skipped.stdout
    assert "1 file(s) skipped" in skipped.stdout
    keys = re.search(r"data\.mean = \[(\S+)\], data\.std = \[(\S+)\]", skipped.stdout)
    assert keys and math.isfinite(float(keys[1])) and math.isfinite(float(keys[2])), skipped.stdout


def test_a_sound_longer_than_max_sound_frames_is_a_bad_file(tmp_path):
    root = tmp_path / "audio"
    make_short_folder(root)  # 800 and 900 frames: within 1000
    write_wav(root / "train" / "no" / "c_long.wav", ramp(2000, 0), RATE)
    check_both_modes(train, root, tmp_path, "c_long.wav", "--set", "data.max_sound_frames=1000",
                     mentions=("data.max_sound_frames",))


def test_entries_that_are_not_regular_files_stop_the_run_or_are_counted(tmp_path):
    root = tmp_path / "audio"
    make_short_folder(root)
    names = {"fifo": "x.wav", "dangling": "y.wav", "folder": "z.wav"}
    for kind, name in names.items():
        make_non_regular(root / "train" / "yes" / name, kind)
    stopped = train(root, tmp_path / "stopped")
    assert stopped.returncode == 2, stopped.stdout
    assert any(name in stopped.stdout for name in names.values()), stopped.stdout
    skipping = train(root, tmp_path / "skipped", "--set", "data.skip_bad_files=true")
    assert skipping.returncode == 0, skipping.stdout
    assert "training split: 3 file(s) skipped" in skipping.stdout, skipping.stdout


# `diffstride data` computes the normalisation over the centre clips: files
# whose level changes along their length, so that any other crop moves the
# statistics.

def test_data_statistics_are_those_of_the_centre_clips(tmp_path):
    root = tmp_path / "audio"
    clip = 1000
    clips = {"train": [], "test": []}
    for split, folder in (("train", "train"), ("test", "val")):
        for label, cls in enumerate(("no", "yes")):
            for i, length in enumerate((3000, 3001, 4567)):
                # A ramp from -0.6 to +0.6 of full scale, a small ripple on it.
                t = np.arange(length)
                level = -0.6 + 1.2 * t / length + 0.05 * label - 0.1 * i * (split == "test")
                samples = np.rint(32768 * level + 500 * np.sin(t / 7.0)).astype(np.int16)
                write_wav(root / folder / cls / f"{i}.wav", samples, RATE)
                start = (length - clip) // 2
                clips[split].append(samples[start:start + clip] / 32768.0)
    listed = run([TOOL, "--threads", "2", "data", "--dataset", "audio_folder",
                  "--data-dir", root, "--sample-rate", RATE, "--clip-samples", clip])
    assert listed.returncode == 0, listed.stdout
    keys = re.search(r"as config keys: data\.mean = \[(\S+)\], data\.std = \[(\S+)\]",
                     listed.stdout)
    assert keys, listed.stdout
    train_clips = np.concatenate(clips["train"])
    # Printed to 4 significant digits; a clip one sample off moves the mean
    # by about 4e-4.
    assert abs(float(keys[1]) - train_clips.mean()) <= 5e-5 + 5e-4 * abs(train_clips.mean())
    assert abs(float(keys[2]) - train_clips.std()) <= 5e-4 * train_clips.std()
    # Per split, to 3 decimals: "channel 0: mean M, std S".
    printed = re.findall(r"channel 0: mean (\S+), std (\S+)", listed.stdout)
    assert len(printed) == 2, listed.stdout
    for (mean, std), split in zip(printed, ("train", "test")):
        values = np.concatenate(clips[split])
        assert abs(float(mean) - values.mean()) <= 6e-4, (split, mean, values.mean())
        assert abs(float(std) - values.std()) <= 6e-4, (split, std, values.std())


# Found while writing the tests above (failing against the build of
# 2026-12-01 11:18; see the report).

def write_flac_header(path, rate, channels, frames):
    """A FLAC file of its STREAMINFO block only: 42 bytes declaring
    `frames` frames of `channels` 16-bit channels, and no audio."""
    fields = (rate << 44) | ((channels - 1) << 41) | (15 << 36) | frames
    info = struct.pack(">HH", 4096, 4096) + bytes(6) + fields.to_bytes(8, "big") + bytes(16)
    path.write_bytes(b"fLaC" + bytes([0x80]) + len(info).to_bytes(3, "big") + info)


def test_a_tiny_flac_declaring_many_frames_is_refused_without_allocating_them(tmp_path):
    # 2^27 - 1 frames (within the default data.max_sound_frames) of 2
    # channels: 1 GiB of float samples declared by 42 bytes.
    root = tmp_path / "audio"
    make_short_folder(root)
    write_flac_header(root / "train" / "no" / "c_declared.flac", RATE, 2, (1 << 27) - 1)
    for done in check_both_modes(train, root, tmp_path, "c_declared.flac"):
        assert done.peak_bytes < MEMORY_LIMIT, (done.peak_bytes, done.stdout)


def test_a_file_libsndfile_rejects_is_closed_once(tmp_path):
    strace = shutil.which("strace")
    if strace is None or subprocess.run([strace, "-o", os.devnull, "true"]).returncode:
        pytest.skip("needs strace")
    root = tmp_path / "audio"
    make_short_folder(root)
    write_bad_file(root / "train" / "no" / "c_random.wav", "random", None)
    trace = tmp_path / "trace.txt"
    listed = run([strace, "-f", "-e", "trace=openat,close", "-o", trace, TOOL, "--threads", "1",
                  "data", "--dataset", "audio_folder", "--data-dir", root,
                  "--sample-rate", RATE, "--clip-samples", CLIP])
    assert listed.returncode == 2 and "c_random.wav" in listed.stdout, listed.stdout
    # The descriptor the bad file was opened on is closed once before it is
    # reused: a second close(fd) could close another thread's file.
    lines = trace.read_text().splitlines()
    opened = [i for i, line in enumerate(lines) if "c_random.wav" in line and "openat" in line]
    assert opened, trace.read_text()[-2000:]
    fd = re.search(r"= (\d+)$", lines[opened[0]])[1]
    closes = 0
    for line in lines[opened[0] + 1:]:
        if re.search(rf"close\({fd}\)", line):
            closes += 1
        elif "openat" in line and line.endswith(f"= {fd}"):
            break
    assert closes == 1, "\n".join(lines[opened[0]:opened[0] + 12])
