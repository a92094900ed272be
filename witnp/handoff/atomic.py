"""Atomic file writes: every file witnp writes (models, checkpoints, handoff, C, JSON, metrics, tables).

A write goes to a temporary file in the target's folder, which is flushed, fsynced, given the mode a plain
`open(path, "w")` would give it (0666 less the umask), and then `os.replace`d over the target; the folder is
fsynced after the rename. A crash, Ctrl-C or SIGKILL at any moment leaves the old file or the complete new
one, never a torn one. What a kill can leave is the temporary file itself: it is named
``.<target name>.<pid>.<random>.witnp-tmp``, which no loader reads (`is_temporary`), and
`remove_stale_temporaries(folder)` deletes those whose writing process is gone (the next run does it).
"""
from __future__ import annotations

import os
import re
import shutil
import tempfile
import threading

__all__ = ["atomic_write", "write_text", "write_bytes", "copy_file", "remove_stale_temporaries", "is_temporary", "same_file",
           "TMP_SUFFIX"]

TMP_SUFFIX = ".witnp-tmp"
_TMP_RE = re.compile(r"^\..+\.(\d+)\.[^.]+" + re.escape(TMP_SUFFIX) + r"$")
_umask_lock = threading.Lock()


def _file_mode() -> int:
    with _umask_lock:  # os.umask can only be read by setting it
        old = os.umask(0o022)
        os.umask(old)
    return 0o666 & ~old


def _fsync_folder(folder: str) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:  # some filesystems cannot fsync a folder; the rename itself is still atomic
        pass
    finally:
        os.close(fd)


def atomic_write(path, write, binary: bool = False) -> None:
    """Create `path` through write(tmp_path) (the callback writes the complete file at tmp_path), then make it
    durable and rename it over `path`. On any exception (KeyboardInterrupt included) the temporary file is
    removed and `path` is untouched."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.{os.getpid()}.", suffix=TMP_SUFFIX, dir=folder)
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.chmod(tmp, _file_mode())  # mkstemp made it 0600
        os.replace(tmp, path)
        _fsync_folder(folder)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def write_bytes(path, data: bytes) -> None:
    """Write `data` to `path` atomically."""
    def put(tmp):
        with open(tmp, "wb") as f:
            f.write(data)
    atomic_write(path, put)


def write_text(path, text: str) -> None:
    """Write `text` (UTF-8) to `path` atomically."""
    def write(tmp):
        with open(tmp, "w", encoding="utf-8", newline="") as f:
            f.write(text)
    atomic_write(path, write)


def copy_file(src, dst) -> None:
    """Copy `src` to `dst` atomically (a kill mid-copy leaves the old `dst` or none, never a short one)."""
    atomic_write(dst, lambda tmp: shutil.copyfile(src, tmp))


def is_temporary(name: str) -> bool:
    """Whether a file name is one of `atomic_write`'s temporaries."""
    return bool(_TMP_RE.match(os.path.basename(name)))


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def remove_stale_temporaries(folder) -> list:
    """Delete the temporaries under `folder` (recursively) left by processes that no longer run; returns their
    paths. A live writer's temporary is left alone."""
    removed = []
    if not os.path.isdir(folder):
        return removed
    for dirpath, _, files in os.walk(folder):
        for f in files:
            m = _TMP_RE.match(f)
            if m and not _alive(int(m.group(1))):
                p = os.path.join(dirpath, f)
                try:
                    os.unlink(p)
                    removed.append(p)
                except FileNotFoundError:
                    pass
    return removed


def same_file(a, b) -> bool:
    """Whether two paths name the same file (existing: the same inode; else the same absolute path)."""
    a, b = os.fspath(a), os.fspath(b)
    try:
        return os.path.samefile(a, b)
    except OSError:
        return os.path.realpath(a) == os.path.realpath(b)
