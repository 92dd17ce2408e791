"""`diffstride train` on image folders the test writes (JPEG and PNG, odd
sizes, gray and RGB): decoded pixels checked against the values written,
and bad files in both modes.

Usage: python3 -m pytest tests/cli/test_image_folder.py (DIFFSTRIDE names the
tool; default build/diffstride).
"""

import os
import subprocess
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from bad_files import check_both_modes, write_bad_file

TOOL = os.environ.get(
    "DIFFSTRIDE", str(Path(__file__).resolve().parents[2] / "build" / "diffstride"))

SIZE = 16


def gradient(size, channels, shift):
    """An image whose pixel (y, x, c) is a known function of its place."""
    y, x = np.mgrid[0:size, 0:size]
    planes = [(7 * y + 3 * x + 40 * c + shift) % 256 for c in range(channels)]
    return np.stack(planes, axis=-1).astype(np.uint8)


def write(path, image, params=()):
    path.parent.mkdir(parents=True, exist_ok=True)
    # OpenCV writes BGR: reverse the channels so that the file holds RGB.
    pixels = image[..., ::-1] if image.ndim == 3 and image.shape[2] == 3 else image
    assert cv2.imwrite(str(path), np.ascontiguousarray(pixels), list(params))


def make_folder(root):
    """train/ and val/ with classes a and b. Returns the val examples in the
    order the tool lists them (class, then file name) with the pixels
    (C x SIZE x SIZE) it must decode."""
    expected = []
    for split in ("train", "val"):
        for label, cls in enumerate(("a", "b")):
            for i in range(6):
                # RGB PNG at exactly SIZE x SIZE: the centre crop is the image.
                image = gradient(SIZE, 3, 11 * i + 50 * label)
                write(root / split / cls / f"{i}_rgb.png", image)
                if split == "val":
                    expected.append(np.transpose(image, (2, 0, 1)))
            # Gray PNG: read as RGB, every channel the gray value.
            gray = gradient(SIZE, 1, 90 + label)[..., 0]
            write(root / split / cls / "g_gray.png", gray)
            if split == "val":
                expected.append(np.stack([gray] * 3))
            # JPEG of an odd, non-square size and one colour: any crop and
            # resize of it is that colour (JPEG at quality 100 may move a
            # value by a unit or two).
            colour = np.array([200, 30 + 100 * label, 90], np.uint8)
            write(root / split / cls / "j_odd.jpg",
                  np.broadcast_to(colour, (23, 37, 3)).copy(),
                  (cv2.IMWRITE_JPEG_QUALITY, 100))
            if split == "val":
                expected.append(np.broadcast_to(colour[:, None, None], (3, SIZE, SIZE)))
    return expected


def train(root, out, *extra):
    return subprocess.run(
        [TOOL, "--threads", "2", "train", "--out", str(out),
         "--set", "data.dataset=image_folder", "--set", f"data.data_dir={root}",
         "--set", f"data.image_size={SIZE}", "--set", "data.mean=0,0,0",
         "--set", "data.std=1,1,1", "--set", "data.batch_size=4",
         "--set", "model.filters=4,8", "--set", "model.strides=1,2",
         "--set", "train.epochs=2", "--set", "optimizer.boundaries=[]",
         "--set", "optimizer.values=0.05", *extra],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=300)


def test_decoded_pixels_match_the_values_written_and_training_runs(tmp_path):
    expected = make_folder(tmp_path / "images")
    run = train(tmp_path / "images", tmp_path / "run")
    assert run.returncode == 0, run.stdout
    dump = tmp_path / "dump.pt"
    subprocess.run([TOOL, "eval", "--checkpoint", str(tmp_path / "run" / "model.pt"),
                    "--dump-logits", str(dump)], check=True, stdout=subprocess.PIPE)
    images = torch.load(str(dump))["images"]
    assert images.shape == (len(expected), 3, SIZE, SIZE)
    decoded = np.rint(images.numpy() * 255).astype(int)
    for i, want in enumerate(expected):
        tolerance = 3 if i % 8 == 7 else 0  # the JPEG
        assert np.abs(decoded[i] - want.astype(int)).max() <= tolerance, i
    metrics = (tmp_path / "run" / "metrics.csv").read_text().splitlines()
    assert len(metrics) == 3  # header and two epochs


def test_gray_examples_from_rgb_files(tmp_path):
    make_folder(tmp_path / "images")
    run = train(tmp_path / "images", tmp_path / "run", "--set", "data.channels=1",
                "--set", "data.mean=0", "--set", "data.std=1",
                "--set", "data.train_crop=center")
    assert run.returncode == 0, run.stdout
    dump = tmp_path / "dump.pt"
    subprocess.run([TOOL, "eval", "--checkpoint", str(tmp_path / "run" / "model.pt"),
                    "--dump-logits", str(dump)], check=True, stdout=subprocess.PIPE)
    images = torch.load(str(dump))["images"]
    assert images.shape[1] == 1
    # The JPEG's colour as libjpeg converts it to gray (ITU-R BT.601).
    colour = np.array([200, 30, 90])
    gray = 0.299 * colour[0] + 0.587 * colour[1] + 0.114 * colour[2]
    assert abs(float(images[7].mean()) * 255 - gray) <= 3


@pytest.mark.parametrize("bad, kind", [("truncated.jpg", "truncated"),
                                       ("random.png", "random"),
                                       ("notes.txt", "text")])
def test_bad_files_stop_the_run_with_their_name_or_are_skipped_and_counted(tmp_path, bad, kind):
    root = tmp_path / "images"
    make_folder(root)
    write_bad_file(root / "train" / "a" / bad, kind, root / "train" / "a" / "j_odd.jpg")
    check_both_modes(train, root, tmp_path, bad)


def test_missing_layout_and_missing_normalisation_are_errors(tmp_path):
    (tmp_path / "empty").mkdir()
    run = train(tmp_path / "empty", tmp_path / "run")
    assert run.returncode == 2 and "train" in run.stdout and "not found" in run.stdout
    make_folder(tmp_path / "images")
    no_stats = subprocess.run(
        [TOOL, "train", "--out", str(tmp_path / "run2"), "--set", "data.dataset=image_folder",
         "--set", f"data.data_dir={tmp_path / 'images'}", "--set", f"data.image_size={SIZE}"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert no_stats.returncode == 2 and "data.mean" in no_stats.stdout
