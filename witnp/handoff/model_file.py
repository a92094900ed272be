"""witnp model files (HDF5 through h5py): save, load, checkpoints. Layout (schema 1.0, docs/file-format.md):

    /                      attrs: format = "witnp-model", schema_version = "1.0", witnp_version,
                                  architecture (JSON of `layer_spec`), layer_names (JSON list of leaf names)
    /layers/<leaf name>/   attrs: type, config (JSON), observer (JSON: current scales and epoch counter)
        params/<name>      float32 datasets, attr crc32 (of the raw bytes)
        stats/<name>       io_max_*, running statistics ..., attr crc32
    /optimizer/            (checkpoints) attrs: type, hyper (JSON); /optimizer/state/<param>/<buffer> datasets,
                           scalar buffers as attrs of /optimizer/state/<param>
    /training/             (checkpoints) attrs: state (JSON: epoch, step, random generator state, ...)

Writes go to a temporary file in the same folder, which is flushed, fsynced and then `os.replace`d over the
target, so a crash or Ctrl-C never leaves a half-written model: the old file or the new one, nothing else.
Loading is strict: a missing, extra, reshaped or corrupted dataset is refused with a `ModelFileError` that
names the layer and the mismatch; an unknown major schema version is refused.
"""
from __future__ import annotations

import json
import os
import zlib
from typing import Optional

import numpy as np

from ..errors import ModelFileError
from ..layers.container import walk
from .atomic import atomic_write
from ..layers.registry import build, layer_spec

__all__ = ["save", "load", "load_checkpoint", "recorded_data", "atomic_h5", "ModelFileError", "FORMAT", "SCHEMA_VERSION"]

FORMAT = "witnp-model"
SCHEMA_VERSION = "1.0"


def _crc(a: np.ndarray) -> int:
    return zlib.crc32(np.ascontiguousarray(a).tobytes()) & 0xFFFFFFFF


def _leaf_key(name: str) -> str:
    return name if name else "_"


def _put(group, name, value):
    a = np.asarray(value)
    d = group.create_dataset(name, data=a)
    d.attrs["crc32"] = _crc(a)


def atomic_h5(path, write) -> None:
    """Create the HDF5 file `path` through write(h5py.File), atomically (`atomic.atomic_write`): readers see
    the old file or the complete new one, never a torn one."""
    import h5py

    def to(tmp):
        with h5py.File(tmp, "w") as f:
            write(f)
            f.flush()
    atomic_write(path, to)


def save(model, path, optimizer=None, *, training: Optional[dict] = None, data: Optional[str] = None) -> None:
    """Write `model` (architecture, parameters, configs, stats) to `path`, atomically.

    optimizer : a `witnp.optim.Optimizer` whose state is saved too (checkpoints).
    training : JSON-serializable training state (epoch, step, generator state, ...) for checkpoints.
    data : the dataset the model was trained on (a shipped name or a path), recorded as the root attribute
        `data`; `witnp eval` and `witnp export` use it when no --data is given (`recorded_data`).
    """
    from .. import __version__

    def write(f):
        f.attrs["format"] = FORMAT
        f.attrs["schema_version"] = SCHEMA_VERSION
        f.attrs["witnp_version"] = __version__
        f.attrs["architecture"] = json.dumps(layer_spec(model))
        if data:
            f.attrs["data"] = str(data)
        leaves = list(walk(model))
        f.attrs["layer_names"] = json.dumps([n for n, _ in leaves])
        for name, layer in leaves:
            g = f.create_group("layers/" + _leaf_key(name))
            g.attrs["type"] = type(layer).__name__
            g.attrs["config"] = json.dumps(layer.config.to_dict() if layer.config is not None else None)
            obs = getattr(layer, "observer", None)
            if obs is not None:
                g.attrs["observer"] = json.dumps(obs.state())
            gp, gs = g.create_group("params"), g.create_group("stats")
            for k, v in layer.params.items():
                _put(gp, k, v)
            for k, v in layer.stats.items():
                _put(gs, k, v)
        if optimizer is not None:
            sd = optimizer.state_dict()
            go = f.create_group("optimizer")
            go.attrs["type"] = sd["type"]
            go.attrs["hyper"] = json.dumps(sd["hyper"])
            gst = go.create_group("state")
            for pname, st in sd["state"].items():
                gp = gst.create_group(pname)
                for b, v in st.items():
                    if isinstance(v, np.ndarray):
                        _put(gp, b, v)
                    else:
                        gp.attrs[b] = v
        if training is not None:
            f.create_group("training").attrs["state"] = json.dumps(training)
    atomic_h5(path, write)


def _open(path):
    import h5py
    path = os.fspath(path)
    if not os.path.exists(path):
        raise ModelFileError(f"{path}: no such file")
    try:
        return h5py.File(path, "r")
    except OSError as e:
        raise ModelFileError(f"{path}: not a readable HDF5 file ({str(e).splitlines()[0]})") from None


def _check_group(path, lname, kind, group, expected, tolerate_names=False, optional=()):
    """The datasets of `group` checked against `expected` (name -> array): names, shapes and checksums.
    tolerate_names: missing or extra names are skipped (a missing one keeps the built layer's value); a shape
    or checksum mismatch is refused regardless. optional: names a file written by an older witnp may lack
    (the layer gained them later; a missing one keeps the built layer's value)."""
    have = set(group.keys()) if group is not None else set()
    want = set(expected)
    if have - want and not tolerate_names:
        raise ModelFileError(f"{path}: layer {lname!r} has extra {kind} {sorted(have - want)}; the architecture "
                             f"expects {sorted(want)}")
    if want - have - set(optional) and not tolerate_names:
        raise ModelFileError(f"{path}: layer {lname!r} is missing {kind} {sorted(want - have - set(optional))}")
    out = {}
    for k in sorted(want & have):
        d = group[k]
        a = d[()]
        a = np.asarray(a)
        if a.shape != np.shape(expected[k]):
            raise ModelFileError(f"{path}: layer {lname!r} {kind} {k!r} has shape {a.shape}; expected "
                                 f"{np.shape(expected[k])}")
        if "crc32" not in d.attrs or int(d.attrs["crc32"]) != _crc(a):
            raise ModelFileError(f"{path}: layer {lname!r} {kind} {k!r} is corrupted (checksum mismatch)")
        out[k] = a
    return out


def _check_stat(path, lname, k, v):
    """io_max and variances are magnitudes: finite and >= 0; every other stat finite."""
    a = np.asarray(v)
    if a.dtype.kind == "f" and not np.isfinite(a).all():
        raise ModelFileError(f"{path}: layer {lname!r} stats {k!r} holds NaN or inf; expected finite values")
    if (k.startswith("io_max") or k.endswith("_var")) and (a < 0).any():
        raise ModelFileError(f"{path}: layer {lname!r} stats {k!r} = {a.min():g}; expected values >= 0")


def _check_config(path, lname, g, layer):
    """The layer group's `config` attribute (what a plain h5py reader sees) must be the config witnp uses,
    the one in the architecture: an edit to one of the two is refused, not silently ignored."""
    if "config" not in g.attrs:
        return
    try:
        seen = json.loads(g.attrs["config"])
    except (TypeError, ValueError):
        raise ModelFileError(f"{path}: layer {lname!r} config attribute is not JSON") from None
    used = json.loads(json.dumps(layer.config.to_dict())) if layer.config is not None else None
    if isinstance(seen, dict) and isinstance(used, dict):  # a file from before a field existed: its default
        from ..config import LayerConfig
        defaults = json.loads(json.dumps(LayerConfig().to_dict()))
        seen = {**{k: v for k, v in defaults.items() if k not in seen}, **seen}
    if seen != used:
        if isinstance(seen, dict) and isinstance(used, dict):
            diff = sorted(k for k in set(seen) | set(used) if seen.get(k, "<absent>") != used.get(k, "<absent>"))
            k = diff[0]
            what = f"{k} = {seen.get(k, '<absent>')!r} in the layer's config attribute, {used.get(k, '<absent>')!r} " \
                   f"in the architecture"
        else:
            what = f"config attribute {seen!r}, architecture {used!r}"
        raise ModelFileError(f"{path}: layer {lname!r} has two different configs ({what}); the file was edited "
                             f"in one place only: make them agree, or re-save the model with witnp")


def load_checkpoint(path, strict: bool = True) -> dict:
    """Read a model file. Returns {"model", "optimizer_state" (or None), "training" (or None)}.

    Checked on the way in: format and schema version, the architecture, every dataset's shape and checksum,
    stats that are finite (io_max and variances >= 0), and each layer's config attribute equal to the
    architecture's. strict=False tolerates stats missing or extra by name (a missing one keeps the built
    layer's value); shapes and checksums are always checked.
    """
    path = os.fspath(path)
    with _open(path) as f:
        if f.attrs.get("format") != FORMAT:
            raise ModelFileError(f"{path}: not a witnp model file (format attribute {f.attrs.get('format')!r})")
        version = str(f.attrs.get("schema_version", "?"))
        if version.split(".")[0] != SCHEMA_VERSION.split(".")[0]:
            raise ModelFileError(f"{path}: schema version {version} is not supported; this witnp reads "
                                 f"{SCHEMA_VERSION.split('.')[0]}.x")
        try:
            model = build(json.loads(f.attrs["architecture"]))
        except (KeyError, ValueError, TypeError) as e:
            raise ModelFileError(f"{path}: the architecture cannot be rebuilt: {e}") from None
        leaves = list(walk(model))
        names = json.loads(f.attrs.get("layer_names", "[]"))
        if names != [n for n, _ in leaves]:
            raise ModelFileError(f"{path}: layer names {names} do not match the architecture's "
                                 f"{[n for n, _ in leaves]}")
        for name, layer in leaves:
            key = "layers/" + _leaf_key(name)
            if key not in f:
                raise ModelFileError(f"{path}: layer {name!r} is missing")
            g = f[key]
            params = _check_group(path, name, "parameters", g.get("params"), layer.params)
            for k, v in params.items():
                layer.params[k][...] = v
            stats = _check_group(path, name, "stats", g.get("stats"), layer.stats, tolerate_names=not strict,
                                 optional=getattr(layer, "OPTIONAL_STATS", ()))
            for k, v in stats.items():
                _check_stat(path, name, k, v)
                layer.stats[k] = np.array(v, dtype=np.asarray(layer.stats[k]).dtype)
            _check_config(path, name, g, layer)
            if "observer" in g.attrs and getattr(layer, "observer", None) is not None:
                layer.observer.load_state(json.loads(g.attrs["observer"]))
        opt = None
        if "optimizer" in f:
            go = f["optimizer"]
            opt = {"type": go.attrs["type"], "hyper": json.loads(go.attrs["hyper"]), "state": {}}
            for pname, gp in go["state"].items():
                st = {b: np.asarray(d[()]) for b, d in gp.items()}
                for b, d in gp.items():
                    if int(d.attrs.get("crc32", -1)) != _crc(st[b]):
                        raise ModelFileError(f"{path}: optimizer state {pname}.{b} is corrupted (checksum mismatch)")
                st.update({b: (v.item() if hasattr(v, "item") else v) for b, v in gp.attrs.items()})
                opt["state"][pname] = st
        training = json.loads(f["training"].attrs["state"]) if "training" in f else None
    return {"model": model, "optimizer_state": opt, "training": training}


def recorded_data(path) -> Optional[str]:
    """The dataset a model file records it was trained on (`save`'s data), or None."""
    with _open(path) as f:
        v = f.attrs.get("data")
    return str(v) if v is not None else None


def load(path, strict: bool = True):
    """The model saved in `path` (see `load_checkpoint`); bit-identical outputs to the saved one."""
    return load_checkpoint(path, strict=strict)["model"]
