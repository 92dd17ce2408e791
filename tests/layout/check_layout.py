"""The README's "Layout" section against the tree: every folder it names
(a backquoted path ending in '/') exists, and every source folder is named
in it (by its path, or by the end of its path, as the table's `cpu/` names
src/ops/cpu/). The table's groups (`nn/`, `train/`, ...) live under src/
and include/diffstride/.

    python3 check_layout.py ROOT
"""
import pathlib
import re
import sys


def layout_section(readme):
    match = re.search(r"^## Layout\n(.*?)(?=^## )", readme, re.S | re.M)
    if not match:
        sys.exit("README.md has no '## Layout' section")
    return match.group(1)


def named_folders(section):
    return {name.rstrip("/") for name in re.findall(r"`([\w./-]+/)`", section)}


def source_folders(root):
    """Folders holding the project's sources, as paths relative to root."""
    folders = {p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")
               and p.name not in ("build", "build-fuzz", "runs", "dist")
               and not p.name.startswith("build")}
    for base in ("src", "include/diffstride"):
        if (root / base).is_dir():
            folders |= {p for p in (root / base).rglob("*") if p.is_dir()}
    if (root / "tests").is_dir():
        folders |= {p for p in (root / "tests").iterdir() if p.is_dir()}
    folders |= {p for p in (root / "tests/python/package", root / "python/diffstride")
                if p.is_dir()}
    return {p.relative_to(root).as_posix() for p in folders if "__pycache__" not in p.parts}


def main(root):
    root = pathlib.Path(root)
    names = named_folders(layout_section((root / "README.md").read_text()))
    folders = source_folders(root)
    problems = []
    for name in sorted(names):
        if not ((root / name).is_dir() or any(f.endswith("/" + name) for f in folders)):
            problems.append(f"the Layout section names `{name}/`, which is no folder here")
    # A named path names its parents too (`python/diffstride/` names python/).
    named = {"/".join(n.split("/")[:i]) for n in names for i in range(1, n.count("/") + 2)}
    for folder in sorted(folders):
        parts = folder.split("/")
        suffixes = {"/".join(parts[i:]) for i in range(len(parts))}
        if not suffixes & named:
            problems.append(f"{folder}/ is not named in the README's Layout section")
    if problems:
        sys.exit("layout:\n  " + "\n  ".join(problems))
    print(f"layout: {len(names)} named folders exist; every source folder is named")


if __name__ == "__main__":
    main(sys.argv[1])
