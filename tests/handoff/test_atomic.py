"""Atomic writes: the old file or the whole new one, the umask's mode, and temporaries that never load."""
import os
import stat

import numpy as np
import pytest

import witnp as wn
from witnp.handoff import atomic


def test_write_text_and_mode_follow_the_umask(tmp_path):
    old = os.umask(0o027)
    try:
        atomic.write_text(tmp_path / "a.txt", "hello")
        wn.save(wn.Linear(2, 2), tmp_path / "m.h5")
    finally:
        os.umask(old)
    assert (tmp_path / "a.txt").read_text() == "hello"
    for f in ("a.txt", "m.h5"):
        assert stat.S_IMODE(os.stat(tmp_path / f).st_mode) == 0o640, f
    assert sorted(os.listdir(tmp_path)) == ["a.txt", "m.h5"]


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "t.json"
    target.write_text("old")

    def boom(tmp):
        with open(tmp, "w") as f:
            f.write("half")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic.atomic_write(target, boom)
    assert target.read_text() == "old" and os.listdir(tmp_path) == ["t.json"]


def test_stale_temporaries_are_removed_live_ones_kept(tmp_path):
    dead = tmp_path / ".m.h5.999999999.abc123.witnp-tmp"   # no such pid
    live = tmp_path / f".m.h5.{os.getpid()}.def456.witnp-tmp"
    sub = tmp_path / "checkpoints"
    sub.mkdir()
    dead2 = sub / ".qat.h5.999999998.x.witnp-tmp"
    plain = tmp_path / "notes.witnp-tmp.txt"
    for p in (dead, live, dead2, plain):
        p.write_text("x")
    removed = atomic.remove_stale_temporaries(tmp_path)
    assert sorted(removed) == sorted([str(dead), str(dead2)])
    assert live.exists() and plain.exists()
    assert atomic.is_temporary(live.name) and not atomic.is_temporary("m.h5") and not atomic.is_temporary(plain.name)


def test_copy_file_and_same_file(tmp_path):
    a = tmp_path / "a.bin"
    a.write_bytes(np.arange(1000, dtype=np.int64).tobytes())
    atomic.copy_file(a, tmp_path / "b.bin")
    assert (tmp_path / "b.bin").read_bytes() == a.read_bytes()
    assert atomic.same_file(a, tmp_path / "." / "a.bin") and not atomic.same_file(a, tmp_path / "b.bin")
    assert atomic.same_file(tmp_path / "new.h5", tmp_path / "x" / ".." / "new.h5")  # neither exists yet
