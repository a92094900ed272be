"""Datasets shipped with witnp (installed as ``witnp._data``); see README.md in this folder."""
import os

HERE = os.path.dirname(os.path.abspath(__file__))


def path(name: str) -> str:
    """Path of a shipped dataset by name ("digits", "digits_rows") or file name."""
    fname = name if name.endswith(".npz") else name + ".npz"
    return os.path.join(HERE, fname)


def names():
    return sorted(f[:-4] for f in os.listdir(HERE) if f.endswith(".npz"))
