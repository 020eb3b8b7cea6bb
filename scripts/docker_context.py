#!/usr/bin/env python3
"""Copies the Docker build context, exactly as `.dockerignore` lets it through, into a folder.

    scripts/docker_context.py DEST        copy the context into DEST (which must not exist)
    scripts/docker_context.py --list      print the files the context holds, one a line

The rules are Docker's (moby/patternmatcher, which BuildKit and buildah also follow):
- one pattern a line, `#` starts a comment line, blank lines are ignored;
- a pattern is cleaned like a path (`./a/` is `a`, a leading `/` is dropped);
- `*` matches within one path element, `?` one character, `[...]` a class, `**` any number
  of elements (also none), `\\` escapes;
- a pattern that matches a folder matches everything under it;
- `!pattern` lets back in what an earlier pattern left out; for every path the last matching
  pattern decides, and a path no pattern matches is in the context.
The Dockerfile and .dockerignore themselves are never copied: `COPY . .` does not see them
when .dockerignore leaves them out, and nothing in the build reads them.

Standard library only.
"""

from __future__ import annotations

import os
import posixpath
import re
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def clean(pattern: str) -> str:
    """filepath.Clean, then the leading separator dropped, as patternmatcher does."""
    cleaned = posixpath.normpath(pattern) if pattern else pattern
    return cleaned.lstrip("/") if cleaned != "/" else cleaned


def to_regex(pattern: str) -> re.Pattern:
    """patternmatcher's translation of one pattern into a regular expression."""
    out, i, n = "^", 0, len(pattern)
    while i < n:
        ch = pattern[i]
        if ch == "*":
            if i + 1 < n and pattern[i + 1] == "*":
                i += 1
                if i + 1 < n and pattern[i + 1] == "/":
                    i += 1
                    out += "(.*/)?"  # `**/`: zero or more whole folders
                else:
                    out += ".*"
            else:
                out += "[^/]*"
        elif ch == "?":
            out += "[^/]"
        elif ch == "[":
            end = pattern.find("]", i + 1)
            if end < 0:
                raise ValueError(f"unterminated character class in {pattern!r}")
            out += "[" + pattern[i + 1 : end].replace("\\", "\\\\") + "]"
            i = end
        elif ch == "\\" and i + 1 < n:
            i += 1
            out += re.escape(pattern[i])
        else:
            out += re.escape(ch)
        i += 1
    return re.compile(out + "$")


class Rules:
    def __init__(self, text: str):
        self.rules: list[tuple[bool, str, re.Pattern]] = []  # (lets in, pattern, regex)
        for raw in text.splitlines():
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            lets_in = line.startswith("!")
            pattern = clean(line[1:].strip() if lets_in else line)
            if pattern:
                self.rules.append((lets_in, pattern, to_regex(pattern)))

    def included(self, rel: str) -> bool:
        """Whether the file or folder at this relative path is sent."""
        parents = rel.split("/")
        prefixes = ["/".join(parents[: k + 1]) for k in range(len(parents))]
        verdict = True
        for lets_in, _, regex in self.rules:
            if any(regex.match(p) for p in prefixes):
                verdict = lets_in
        return verdict

    def may_let_in_below(self, folder: str) -> bool:
        """Whether some `!` pattern could match a path under this (left out) folder."""
        parts = folder.split("/")
        for lets_in, pattern, _ in self.rules:
            if not lets_in:
                continue
            pparts = pattern.split("/")
            compatible = True
            for k, part in enumerate(parts):
                if k >= len(pparts) or "**" in pparts[k]:
                    break
                if not to_regex(pparts[k]).match(part):
                    compatible = False
                    break
            if compatible:
                return True
        return False


def context_files(root: Path) -> list[str]:
    ignore = root / ".dockerignore"
    rules = Rules(ignore.read_text() if ignore.is_file() else "")
    files: list[str] = []
    for dirpath, dirnames, filenames in os.walk(root):
        rel_dir = os.path.relpath(dirpath, root)
        rel_dir = "" if rel_dir == "." else rel_dir
        keep = []
        for d in sorted(dirnames):
            rel = f"{rel_dir}/{d}" if rel_dir else d
            if rules.included(rel) or rules.may_let_in_below(rel):
                keep.append(d)
        dirnames[:] = keep
        for f in sorted(filenames):
            rel = f"{rel_dir}/{f}" if rel_dir else f
            if rel in ("Dockerfile", ".dockerignore"):
                continue
            if rules.included(rel):
                files.append(rel)
    return files


def self_test() -> None:
    """Docker's documented semantics, on the cases this repository relies on."""
    rules = Rules("*\n!host/\n!bench/hello/\n**/target/\n*.md\n!README.md\n")
    cases = {
        "host/src/main.rs": True,  # let back in by a folder pattern
        ".git/config": False,  # `*` matches every top-level entry, dotfiles too
        "bench/hello/Cargo.toml": True,
        "bench/run": False,
        "target/release/skiff": False,  # `**/` matches no folder too
        "host/target/x": False,
        "README.md": True,  # the last matching pattern decides: `!README.md`
        "notes/y.md": False,  # still out from `*`: `*.md` only matches at the top
    }
    for path, expected in cases.items():
        assert rules.included(path) == expected, f"{path}: expected {'in' if expected else 'out'}"
    assert not Rules("*").may_let_in_below("target")
    assert Rules("*\n!bench/hello/").may_let_in_below("bench")


def main() -> int:
    self_test()
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    files = context_files(ROOT)
    if sys.argv[1] == "--list":
        print("\n".join(files))
        return 0
    dest = Path(sys.argv[1])
    dest.mkdir(parents=True)
    for rel in files:
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        # Fresh modification times, so that cargo compiles the copy instead of trusting the
        # fingerprints of a build of the repository (which would hide a missing file).
        shutil.copy(ROOT / rel, target, follow_symlinks=False)
    print(f"docker context: {len(files)} files copied to {dest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
