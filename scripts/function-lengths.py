#!/usr/bin/env python3
"""Lengths of the C++ functions in src/ and apps/ (lines from the opening to
the closing brace of each top-level function body, comments and strings
skipped), longest first.

    scripts/function-lengths.py [--top N] [--max LINES] [--allow NAME ...]

With --max, lists the functions longer than LINES whose names are not
allowed (data tables such as the config schema) and exits 1 if there is any.
"""
import argparse
import pathlib
import re
import sys


def strip(text):
    text = re.sub(r"//[^\n]*", "", text)
    text = re.sub(r"/\*.*?\*/", lambda m: "\n" * m.group(0).count("\n"), text, flags=re.S)
    text = re.sub(r'"(\\.|[^"\\\n])*"', '""', text)
    return re.sub(r"'(\\.|[^'\\\n])'", "''", text)


def functions(path):
    """(lines, first line, head) of every function body outside other
    bodies; class and namespace bodies are looked into."""
    text = strip(path.read_text())
    stack, found, line, start = [], [], 1, 0
    for i, ch in enumerate(text):
        if ch == "\n":
            line += 1
        elif ch == "{":
            prefix = text[start:i]
            scope = (re.search(r"\bnamespace\b[^;{}]*$", prefix) or re.search(r'\bextern\s*""\s*$', prefix)
                     or (all(s[0] == "scope" for s in stack)
                         and re.search(r"\b(struct|class|enum|union)\b[^;{}()]*$", prefix)))
            head = prefix.strip().split("\n")[0][:70]
            stack.append(("scope" if scope else "body", line, head))
            start = i + 1
        elif ch == "}":
            kind, first, head = stack.pop()
            if kind == "body" and all(s[0] == "scope" for s in stack):
                found.append((line - first + 1, first, head))
            start = i + 1
        elif ch == ";":
            start = i + 1
    return found


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--top", type=int, default=10)
    parser.add_argument("--max", type=int)
    parser.add_argument("--allow", nargs="*", default=[])
    args = parser.parse_args()
    root = pathlib.Path(__file__).resolve().parents[1]
    rows = []
    for folder in ("src", "apps"):
        for path in sorted(p for pattern in ("*.cpp", "*.h", "*.cu", "*.cuh") for p in (root / folder).rglob(pattern)):
            for lines, first, head in functions(path):
                rows.append((lines, f"{path.relative_to(root)}:{first}", head))
    rows.sort(key=lambda row: -row[0])
    if args.max is None:
        for lines, where, head in rows[:args.top]:
            print(f"{lines:5d}  {where}  {head}")
        return
    over = [r for r in rows if r[0] > args.max and not any(a in r[2] for a in args.allow)]
    for lines, where, head in over:
        print(f"{lines:5d}  {where}  {head}: over {args.max} lines")
    print(f"functions: {len(rows)} in src/ and apps/, {len(over)} over {args.max} lines"
          + (f" (allowed: {', '.join(args.allow)})" if args.allow else ""))
    sys.exit(1 if over else 0)


if __name__ == "__main__":
    main()
