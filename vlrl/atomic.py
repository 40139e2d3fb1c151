"""Whole-or-nothing writes: a file or directory is written under a temporary name beside its target, flushed
to disk, then renamed into place. A process killed at any moment leaves either the old target or the new
one (plus, at worst, a temporary `.<name>...` entry that the next write replaces), never a half-written target.
Every command and the trainer write their whole-file outputs through these helpers; append-only logs
(metrics.jsonl, completions.jsonl) do not need them: a resume drops a half-written last line."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO


def partial_path(path: str | Path) -> Path:
    """Where `path` is built before it is renamed into place: a hidden sibling, so globs such as `step_*` and
    loaders never see it. The name is fixed, so the ranks of a multi-process save agree on it."""
    path = Path(path)
    return path.parent / f".{path.name}.partial"


@contextmanager
def atomic_file(path: str | Path, mode: str = "w", **open_kwargs) -> Iterator[IO]:
    """`with atomic_file(p) as f: f.write(...)`: `p` appears, whole, when the block ends without an exception;
    if it raises, `p` is left as it was."""
    path = Path(path)
    tmp = path.parent / f".{path.name}.{os.getpid()}.tmp"  # per process: two writers never share a temp file
    try:
        with open(tmp, mode, **open_kwargs) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    _fsync_dir(path.parent)


def write_text_atomic(path: str | Path, text: str) -> None:
    with atomic_file(path, "w") as f:
        f.write(text)


@contextmanager
def atomic_dir(path: str | Path, replace: bool = False) -> Iterator[Path]:
    """`with atomic_dir(out) as tmp: write files into tmp`: `out` appears with all of them when the block
    ends without an exception; if it raises, `out` is left as it was. An existing `out` that is not empty is
    an error (FileExistsError) unless `replace`: then it is swapped for the new one."""
    path = Path(path)
    if not replace:
        refuse_non_empty(path)
    tmp = start_dir(path)
    try:
        yield tmp
        commit_dir(tmp, path)
    finally:
        remove(tmp)


def refuse_non_empty(path: str | Path) -> None:
    """FileExistsError if `path` exists and is not an empty directory: writers that create a directory call
    it before their slow work, so a taken name fails at once rather than at the end."""
    path = Path(path)
    if path.exists() and not (path.is_dir() and not any(path.iterdir())):
        raise FileExistsError(f"{path} exists and is not empty: remove it or choose another directory")


def start_dir(path: str | Path) -> Path:
    """A fresh, empty `partial_path(path)` (a leftover of a killed write is removed first)."""
    tmp = partial_path(path)
    remove(tmp)
    tmp.mkdir(parents=True)
    return tmp


def commit_dir(tmp: str | Path, path: str | Path) -> None:
    """Flush every file under `tmp` to disk, then rename `tmp` to `path`, replacing what is there."""
    tmp, path = Path(tmp), Path(path)
    for file in tmp.rglob("*"):
        if file.is_file() and not file.is_symlink():
            _fsync_file(file)
    _fsync_dir(tmp)
    if path.exists() or path.is_symlink():
        # rename cannot replace a non-empty directory: move the old one aside first. A kill between the two
        # renames leaves the new directory complete under its temporary name and the old one under `.old`.
        old = path.parent / f".{path.name}.old"
        remove(old)
        os.replace(path, old)
        os.replace(tmp, path)
        remove(old)
    else:
        os.replace(tmp, path)
    _fsync_dir(path.parent)


def replace_symlink(link: str | Path, target: str | Path) -> None:
    """Point `link` at `target` in one step (a symlink made under a temporary name, renamed over `link`)."""
    link = Path(link)
    tmp = link.parent / f".{link.name}.tmp"
    tmp.unlink(missing_ok=True)
    tmp.symlink_to(target, target_is_directory=True)
    os.replace(tmp, link)


def remove(path: Path) -> None:
    """Remove a file, link or directory tree; nothing if it does not exist."""
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.exists():
        shutil.rmtree(path)


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(path: Path) -> None:
    """Make a rename inside `path` durable (the directory entry itself is flushed)."""
    try:
        _fsync_file(path)
    except OSError:  # some filesystems do not let a directory be opened or synced: the rename still happened
        pass
