"""`diffstride train` on image folders the test writes (JPEG and PNG, odd
sizes, gray and RGB): decoded pixels checked against the values written,
and bad files in both modes. Hostile inputs: every PNG colour type and
depth (16-bit, palette, alpha, colour keys, 1 bit) and a CMYK JPEG against
OpenCV's or Pillow's reading or the documented rule, BT.601 gray for every
format, files declaring 60000 x 60000 pixels (refused before decoding, in
bounded memory), and class-folder entries that are not regular files (a
FIFO, a dangling link, a folder).

Usage: python3 -m pytest tests/cli/test_image_folder.py (DIFFSTRIDE names the
tool; default build/diffstride).
"""

import subprocess

import cv2
import numpy as np
import pytest
from PIL import Image

from bad_files import (check_both_modes, make_non_regular, write_bad_file,
                       write_jpeg_declaring, write_png_declaring)
from folder_runs import MEMORY_LIMIT, TOOL, dumped, run

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
    return run(
        [TOOL, "--threads", "2", "train", "--out", str(out),
         "--set", "data.dataset=image_folder", "--set", f"data.data_dir={root}",
         "--set", f"data.image_size={SIZE}", "--set", "data.mean=0,0,0",
         "--set", "data.std=1,1,1", "--set", "data.batch_size=4",
         "--set", "model.filters=4,8", "--set", "model.strides=1,2",
         "--set", "train.epochs=2", "--set", "optimizer.boundaries=[]",
         "--set", "optimizer.values=0.05", *extra])


def test_decoded_pixels_match_the_values_written_and_training_runs(tmp_path):
    expected = make_folder(tmp_path / "images")
    trained = train(tmp_path / "images", tmp_path / "run")
    assert trained.returncode == 0, trained.stdout
    images = dumped(tmp_path / "run", tmp_path / "dump.pt")
    assert images.shape == (len(expected), 3, SIZE, SIZE)
    decoded = np.rint(images.numpy() * 255).astype(int)
    for i, want in enumerate(expected):
        tolerance = 3 if i % 8 == 7 else 0  # the JPEG
        assert np.abs(decoded[i] - want.astype(int)).max() <= tolerance, i
    metrics = (tmp_path / "run" / "metrics.csv").read_text().splitlines()
    assert len(metrics) == 3  # header and two epochs


def test_gray_examples_from_rgb_files(tmp_path):
    make_folder(tmp_path / "images")
    trained = train(tmp_path / "images", tmp_path / "run", "--set", "data.channels=1",
                "--set", "data.mean=0", "--set", "data.std=1",
                "--set", "data.train_crop=center")
    assert trained.returncode == 0, trained.stdout
    images = dumped(tmp_path / "run", tmp_path / "dump.pt")
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
    trained = train(tmp_path / "empty", tmp_path / "run")
    assert trained.returncode == 2 and "train" in trained.stdout and "not found" in trained.stdout
    make_folder(tmp_path / "images")
    no_stats = subprocess.run(
        [TOOL, "train", "--out", str(tmp_path / "run2"), "--set", "data.dataset=image_folder",
         "--set", f"data.data_dir={tmp_path / 'images'}", "--set", f"data.image_size={SIZE}"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert no_stats.returncode == 2 and "data.mean" in no_stats.stdout


# Every PNG colour type and depth, transparency, and a CMYK JPEG: decoded
# against what OpenCV or Pillow read from the same file, or the values
# written with the documented rule (alpha composed over black,
# round(v * a / 255); 16-bit samples v as v * 255 / 65535; gray by BT.601).

def luma(rgb):
    return 0.299 * rgb[..., 0] + 0.587 * rgb[..., 1] + 0.114 * rgb[..., 2]


def composed(rgb, alpha):
    """RGB (H x W x 3) composed over black with alpha (H x W), rounded."""
    return np.rint(rgb.astype(float) * alpha[..., None].astype(float) / 255)


def write_formats(folder):
    """Writes SIZE x SIZE files of every format in `folder`. Returns, in
    the tool's (name) order, (name, the RGB expected as H x W x 3 floats in
    0..255, tolerance in units of 1/255 for RGB, the same for gray)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(7)
    exact = 0.5 + 1e-3  # rounded to the nearest 8-bit value
    cases = []

    def pil(name, image, **params):
        image.save(str(folder / name), **params)
        return folder / name

    # 16-bit gray and RGB: values chosen where v * 255 / 65535 and v >> 8
    # differ, then random ones.
    special = [0, 128, 129, 255, 384, 32896, 65279, 65535]
    grey16 = rng.integers(0, 65536, (SIZE, SIZE), dtype=np.uint16)
    grey16.flat[:len(special)] = special
    write(folder / "a_grey16.png", grey16)
    read = cv2.imread(str(folder / "a_grey16.png"), cv2.IMREAD_UNCHANGED)
    assert read.dtype == np.uint16 and np.array_equal(read, grey16)
    cases.append(("a_grey16.png", np.repeat(read[..., None] / 257.0, 3, axis=2),
                  exact, 1 + 1e-3))
    rgb16 = rng.integers(0, 65536, (SIZE, SIZE, 3), dtype=np.uint16)
    rgb16[0, :len(special), 1] = special
    write(folder / "b_rgb16.png", rgb16)
    read = cv2.imread(str(folder / "b_rgb16.png"), cv2.IMREAD_UNCHANGED)
    assert read.dtype == np.uint16
    cases.append(("b_rgb16.png", read[..., ::-1] / 257.0, exact, 1 + 1e-3))
    # 16-bit RGBA: each 16-bit value scaled, then composed over black.
    rgba16 = rng.integers(0, 65536, (SIZE, SIZE, 4), dtype=np.uint16)
    rgba16[0, :4, 3] = [0, 65535, 32896, 257]
    write(folder / "c_rgba16.png", rgba16)  # BGRA in OpenCV's order
    read = cv2.imread(str(folder / "c_rgba16.png"), cv2.IMREAD_UNCHANGED)
    assert read.dtype == np.uint16 and read.shape[2] == 4
    cases.append(("c_rgba16.png", read[..., 2::-1] / 257.0 * (read[..., 3:] / 65535.0),
                  1.5, 2))
    # A 4-bit palette of 16 colours: as Pillow converts it to RGB.
    index = (gradient(SIZE, 1, 0)[..., 0] % 16).astype(np.uint8)
    palette = rng.integers(0, 256, (16, 3), dtype=np.uint8)
    image = Image.fromarray(index, "P")
    image.putpalette(palette.flatten().tolist())
    path = pil("d_palette.png", image, bits=4)
    cases.append(("d_palette.png",
                  np.asarray(Image.open(path).convert("RGB"), float), 1, 1))
    # A palette with alpha per entry (tRNS).
    alphas = rng.integers(0, 256, 16, dtype=np.uint8)
    alphas[:3] = [0, 255, 128]
    image = Image.fromarray(index, "P")
    image.putpalette(palette.flatten().tolist())
    path = pil("e_palette_alpha.png", image, transparency=alphas.tobytes())
    assert Image.open(path).info["transparency"] == alphas.tobytes()
    cases.append(("e_palette_alpha.png", composed(palette[index], alphas[index]), 1, 1))
    # Gray + alpha.
    grey_alpha = rng.integers(0, 256, (SIZE, SIZE, 2), dtype=np.uint8)
    grey_alpha[0, :3, 1] = [0, 255, 128]
    pil("f_grey_alpha.png", Image.fromarray(grey_alpha, "LA"))
    cases.append(("f_grey_alpha.png",
                  composed(np.repeat(grey_alpha[..., :1], 3, axis=2), grey_alpha[..., 1]),
                  1, 1))
    # RGBA.
    rgba = rng.integers(0, 256, (SIZE, SIZE, 4), dtype=np.uint8)
    rgba[0, :3, 3] = [0, 255, 128]
    pil("g_rgba.png", Image.fromarray(rgba, "RGBA"))
    cases.append(("g_rgba.png", composed(rgba[..., :3], rgba[..., 3]), 1, 1))
    # Gray and RGB with a transparent colour key (tRNS): that colour black.
    grey = gradient(SIZE, 1, 3)[..., 0]
    key = int(grey[5, 5])
    pil("h_grey_key.png", Image.fromarray(grey, "L"), transparency=key)
    keyed = np.where(grey == key, 0, grey).astype(float)
    cases.append(("h_grey_key.png", np.repeat(keyed[..., None], 3, axis=2), 1, 1))
    rgb = gradient(SIZE, 3, 9)
    key = tuple(int(v) for v in rgb[2, 7])
    pil("i_rgb_key.png", Image.fromarray(rgb, "RGB"), transparency=key)
    hidden = np.all(rgb == np.array(key, np.uint8), axis=2)
    assert hidden.sum() >= 1
    cases.append(("i_rgb_key.png", np.where(hidden[..., None], 0, rgb).astype(float), 1, 1))
    # 1 bit per pixel: 0 or 255.
    bits = gradient(SIZE, 1, 0)[..., 0] % 3 == 0
    pil("j_bilevel.png", Image.fromarray(bits).convert("1"))
    cases.append(("j_bilevel.png", np.repeat(bits[..., None] * 255.0, 3, axis=2), 1, 1))
    # CMYK JPEG (Pillow writes Adobe's inverted CMYK): as OpenCV reads it.
    path = pil("k_cmyk.jpg", Image.fromarray(gradient(SIZE, 3, 60), "RGB").convert("CMYK"),
               quality=100)
    with Image.open(path) as check:
        assert check.mode == "CMYK"
    cases.append(("k_cmyk.jpg", cv2.imread(str(path))[..., ::-1].astype(float), 2, 3))
    # Pure red: gray 0.299 * 255.
    red = np.broadcast_to(np.array([255, 0, 0], np.uint8), (SIZE, SIZE, 3)).copy()
    write(folder / "l_red.png", red)
    cases.append(("l_red.png", red.astype(float), 1, 1))
    write(folder / "m_red.jpg", red, (cv2.IMWRITE_JPEG_QUALITY, 100))
    cases.append(("m_red.jpg", cv2.imread(str(folder / "m_red.jpg"))[..., ::-1].astype(float),
                  2, 3))
    return sorted(cases)


@pytest.fixture(scope="module")
def formats(tmp_path_factory):
    """The format files as the test split (class a), plain RGB PNGs to train
    on; trained with 3 and 1 channel(s), the examples dumped. Returns the
    cases and, per channel count, the dumped examples."""
    root = tmp_path_factory.mktemp("formats")
    cases = write_formats(root / "images" / "val" / "a")
    for label, cls in enumerate(("a", "b")):
        for i in range(2):
            write(root / "images" / "train" / cls / f"{i}.png", gradient(SIZE, 3, 30 * i + label))
    examples = {}
    for channels, stats in ((3, ("0,0,0", "1,1,1")), (1, ("0", "1"))):
        out = root / f"run{channels}"
        trained = train(root / "images", out, "--set", f"data.channels={channels}",
                        "--set", f"data.mean={stats[0]}", "--set", f"data.std={stats[1]}",
                        "--set", "train.epochs=1")
        assert trained.returncode == 0, trained.stdout
        examples[channels] = dumped(out, root / f"dump{channels}.pt").double().numpy() * 255
        assert examples[channels].shape == (len(cases), channels, SIZE, SIZE)
    return cases, examples


def check_formats(formats, names, channels):
    cases, examples = formats
    checked = 0
    for i, (name, rgb, rgb_tolerance, grey_tolerance) in enumerate(cases):
        if name not in names:
            continue
        if channels == 3:
            want, tolerance = np.transpose(rgb, (2, 0, 1)), rgb_tolerance
        else:
            want, tolerance = luma(rgb)[None], grey_tolerance
        error = np.abs(examples[channels][i] - want)
        assert error.max() <= tolerance, (name, error.max(), np.unravel_index(error.argmax(), error.shape))
        checked += 1
    assert checked == len(names)


def test_16_bit_png_samples_decode_as_v_times_255_over_65535(formats):
    check_formats(formats, ("a_grey16.png", "b_rgb16.png", "c_rgba16.png"), 3)
    # The value of the documentation's example: 32896 (0x8080) is 128.
    cases, examples = formats
    i = [c[0] for c in cases].index("a_grey16.png")
    assert abs(examples[3][i, 0, 0, 5] - 128) < 1e-3


def test_palette_gray_alpha_rgba_and_colour_key_pngs_are_composed_over_black(formats):
    check_formats(formats, ("d_palette.png", "e_palette_alpha.png", "f_grey_alpha.png",
                            "g_rgba.png", "h_grey_key.png", "i_rgb_key.png",
                            "j_bilevel.png", "l_red.png"), 3)


def test_a_cmyk_jpeg_decodes_as_opencv_reads_it(formats):
    check_formats(formats, ("k_cmyk.jpg", "m_red.jpg"), 3)


def test_gray_is_bt601_luma_for_every_format(formats):
    cases, examples = formats
    check_formats(formats, [c[0] for c in cases], 1)
    names = [c[0] for c in cases]
    # Pure red: 0.299 * 255, for PNG (+-1) and JPEG (+-3).
    red = 0.299 * 255
    assert np.abs(examples[1][names.index("l_red.png")] - red).max() <= 1
    assert np.abs(examples[1][names.index("m_red.jpg")] - red).max() <= 3


# Sizes are bounded before decoding: a file of a few hundred bytes declaring
# 60000 x 60000 pixels (10.8 GB of RGB) is a bad file, and the run's memory
# stays that of a run on small images.

@pytest.mark.parametrize("bad", ["huge.png", "huge.jpg"])
def test_an_image_declaring_60000_squared_pixels_is_refused_before_decoding(
        tmp_path, monkeypatch, bad):
    root = tmp_path / "images"
    make_folder(root)
    target = root / "train" / "a" / bad
    if bad.endswith(".png"):
        write_png_declaring(target, 60000, 60000)
    else:
        write_jpeg_declaring(target, 60000, 60000, root / "train" / "a" / "j_odd.jpg")
    assert target.stat().st_size < 2000
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", None)  # Pillow's own bound
    with Image.open(target) as header:  # reads the header only
        assert header.size == (60000, 60000)
    runs = check_both_modes(train, root, tmp_path, bad, mentions=("data.max_image_pixels",))
    for done in runs:
        assert done.peak_bytes < MEMORY_LIMIT, (done.peak_bytes, done.stdout)


def test_max_image_pixels_bounds_width_times_height(tmp_path):
    root = tmp_path / "images"
    make_folder(root)  # the largest image: j_odd.jpg, 37 x 23 = 851 pixels
    raised = train(root, tmp_path / "raised", "--set", "data.max_image_pixels=4000000000",
                   "--set", "train.epochs=1")
    assert raised.returncode == 0, raised.stdout
    at = train(root, tmp_path / "at", "--set", "data.max_image_pixels=851",
               "--set", "train.epochs=1")
    assert at.returncode == 0, at.stdout
    below = train(root, tmp_path / "below", "--set", "data.max_image_pixels=850")
    assert below.returncode == 2, below.stdout
    assert "j_odd.jpg" in below.stdout and "data.max_image_pixels" in below.stdout


# Entries of a class folder that are not regular files, under image names: a
# FIFO (opening it would block the run for ever), a dangling link, a folder.

NON_REGULAR = [("fifo", "x.png"), ("dangling", "y.png"), ("folder", "z.png")]


@pytest.mark.parametrize("kind, name", NON_REGULAR)
def test_an_entry_that_is_not_a_regular_file_stops_the_run_or_is_skipped(tmp_path, kind, name):
    root = tmp_path / "images"
    make_folder(root)
    make_non_regular(root / "train" / "a" / name, kind)
    check_both_modes(train, root, tmp_path, name)


def test_every_entry_that_is_not_a_regular_file_is_counted(tmp_path):
    root = tmp_path / "images"
    make_folder(root)
    for kind, name in NON_REGULAR:
        make_non_regular(root / "train" / "b" / name, kind)
    make_non_regular(root / "val" / "a" / "w.png", "fifo")
    skipping = train(root, tmp_path / "run", "--set", "data.skip_bad_files=true")
    assert skipping.returncode == 0, skipping.stdout
    assert "training split: 3 file(s) skipped" in skipping.stdout, skipping.stdout
    assert "test split: 1 file(s) skipped" in skipping.stdout, skipping.stdout
