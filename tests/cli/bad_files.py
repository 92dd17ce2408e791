"""What the image and audio folder tests share: a bad file in a class
folder stops `diffstride train` with the file's name, or, with
data.skip_bad_files, is skipped and counted."""

import os
import struct
import zlib


def write_bad_file(target, kind, good_file):
    """kind: "truncated" (the first third of `good_file`), "random" (random
    bytes) or "text" (a text file)."""
    if kind == "truncated":
        whole = good_file.read_bytes()
        target.write_bytes(whole[: len(whole) // 3])
    elif kind == "random":
        target.write_bytes(os.urandom(400))
    else:
        target.write_text("not an image or a sound")


def make_non_regular(target, kind):
    """A directory entry that is not a regular file, under an image or sound
    name: "fifo" (opening it for reading would block until a writer comes),
    "dangling" (a symbolic link to nothing) or "folder"."""
    if kind == "fifo":
        os.mkfifo(target)
    elif kind == "dangling":
        os.symlink(target.parent / "nothing-here", target)
    else:
        target.mkdir()


def png_chunk(kind, data):
    return (struct.pack(">I", len(data)) + kind + data
            + struct.pack(">I", zlib.crc32(kind + data)))


def write_png_declaring(target, width, height):
    """A valid start of an 8-bit RGB PNG whose IHDR declares width x height,
    with one row of pixels: a few dozen bytes standing for gigabytes."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\0" + bytes(3 * width), 9)
    target.write_bytes(b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr)
                       + png_chunk(b"IDAT", idat) + png_chunk(b"IEND", b""))


def write_jpeg_declaring(target, width, height, small_jpeg):
    """`small_jpeg` (a baseline JPEG) with its SOF0 frame header patched to
    declare width x height."""
    data = bytearray(small_jpeg.read_bytes())
    sof = data.find(b"\xff\xc0")
    assert sof > 0, "not a baseline JPEG"
    # FF C0, length (2 bytes), precision (1), height (2), width (2).
    data[sof + 5:sof + 9] = struct.pack(">HH", height, width)
    target.write_bytes(bytes(data))


def check_both_modes(train, root, out, bad_name, *extra, mentions=(), skipped=1):
    """train(root, out, *extra) runs the tool; `bad_name` is in root's
    training split (with `skipped` bad entries in all). The stopped run's
    message names the file, data.skip_bad_files and each of `mentions`.
    Returns the two runs."""
    stopped = train(root, out / "stopped", *extra)
    assert stopped.returncode == 2, stopped.stdout
    assert bad_name in stopped.stdout and "skip_bad_files" in stopped.stdout, stopped.stdout
    for word in mentions:
        assert word in stopped.stdout, stopped.stdout
    skipping = train(root, out / "skipped", *extra, "--set", "data.skip_bad_files=true")
    assert skipping.returncode == 0, skipping.stdout
    assert f"training split: {skipped} file(s) skipped" in skipping.stdout, skipping.stdout
    return stopped, skipping
