"""What the image and audio folder tests share: a bad file in a class
folder stops `diffstride train` with the file's name, or, with
data.skip_bad_files, is skipped and counted."""

import os


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


def check_both_modes(train, root, out, bad_name):
    """train(root, out, *extra) runs the tool; `bad_name` is in root's
    training split."""
    stopped = train(root, out / "stopped")
    assert stopped.returncode == 2, stopped.stdout
    assert bad_name in stopped.stdout and "skip_bad_files" in stopped.stdout
    skipped = train(root, out / "skipped", "--set", "data.skip_bad_files=true")
    assert skipped.returncode == 0, skipped.stdout
    assert "training split: 1 file(s) skipped" in skipped.stdout
