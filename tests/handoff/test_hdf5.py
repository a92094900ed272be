"""Model files: bit-identical round trips for every layer type, strict refusals, atomic saves under SIGKILL."""
import os
import signal
import subprocess
import sys
import time

import h5py
import numpy as np
import pytest

import witnp as wn

from ..layers.test_contract import CASES, LAYERS, MODES, POSITIVE, Q, UNSUPPORTED, inputs


@pytest.mark.parametrize("name, mode", [c for c in CASES if c not in UNSUPPORTED])
def test_round_trip_bit_identical(tmp_path, name, mode):
    make, shape = LAYERS[name]
    layer = make(MODES[mode])
    x = inputs(shape, 0, signed=name not in POSITIVE)
    layer.begin_epoch()
    for seed in range(3):  # training forwards move io_max, running statistics and the auto-scale counter
        layer.forward(x, train=True, rng=np.random.default_rng(seed))
    path = tmp_path / "m.h5"
    wn.save(layer, path)
    back = wn.load(path)
    assert type(back) is type(layer)
    for (k1, v1), (k2, v2) in zip(layer.named_stats(), back.named_stats(), strict=True):
        assert k1 == k2 and np.array_equal(v1, v2), k1
    for (k1, v1), (k2, v2) in zip(layer.named_params(), back.named_params(), strict=True):
        assert k1 == k2 and np.array_equal(v1, v2), k1
    y1 = layer.forward(x, train=False, rng=np.random.default_rng(9))[0]
    y2 = back.forward(x, train=False, rng=np.random.default_rng(9))[0]
    np.testing.assert_array_equal(y1, y2)


def _model_file(tmp_path):
    model = wn.Sequential(wn.Linear(4, 3, config=Q), wn.ReLU(), wn.Linear(3, 2))
    path = tmp_path / "m.h5"
    wn.save(model, path)
    return path


@pytest.mark.parametrize("edit, match", [
    (lambda f: f["layers/0/params"].__delitem__("bias"),
     r"layer '0' is missing parameters \['bias'\]"),
    (lambda f: f["layers/0/params"].create_dataset("extra", data=np.zeros(3, np.float32)),
     r"layer '0' has extra parameters \['extra'\]"),
    (lambda f: (f["layers/2/params"].__delitem__("weight"),
                f["layers/2/params"].create_dataset("weight", data=np.zeros((3, 2), np.float32))),
     r"layer '2' parameters 'weight' has shape \(3, 2\); expected \(2, 3\)"),
    (lambda f: f["layers/0/params/weight"].__setitem__((0, 0), 123.0),
     r"layer '0' parameters 'weight' is corrupted \(checksum mismatch\)"),
    (lambda f: f["layers/0/stats"].__delitem__("io_max_x"), r"layer '0' is missing stats \['io_max_x'\]"),
    (lambda f: f.attrs.__setitem__("schema_version", "2.0"), r"schema version 2.0 is not supported"),
    (lambda f: f.attrs.__setitem__("format", "keras"), r"not a witnp model file"),
])
def test_bad_files_are_refused_with_a_message(tmp_path, edit, match):
    path = _model_file(tmp_path)
    with h5py.File(path, "r+") as f:
        edit(f)
    with pytest.raises(wn.ModelFileError, match=match):
        wn.load(path)


def test_not_hdf5_and_missing(tmp_path):
    p = tmp_path / "junk.h5"
    p.write_bytes(b"not hdf5 at all")
    with pytest.raises(wn.ModelFileError, match="not a readable HDF5 file"):
        wn.load(p)
    with pytest.raises(wn.ModelFileError, match="no such file"):
        wn.load(tmp_path / "nope.h5")


SAVER = r"""
import sys, numpy as np, witnp as wn
path = sys.argv[1]
model = wn.Sequential(*[wn.Linear(256, 256) for _ in range(8)])
i = 0
while True:
    for _, p in model.named_params():
        p[...] = i
    wn.save(model, path)
    i += 1
    print(i, flush=True)
"""


def test_sigkill_during_saves_leaves_old_or_new_file(tmp_path):
    path = tmp_path / "m.h5"
    script = tmp_path / "saver.py"
    script.write_text(SAVER)
    rng = np.random.default_rng(0)
    seen = set()
    for trial in range(12):
        proc = subprocess.Popen([sys.executable, str(script), str(path)], stdout=subprocess.PIPE, text=True)
        for _ in range(1 + trial % 4):  # a different number of completed saves per trial, whatever their speed
            proc.stdout.readline()
        time.sleep(float(rng.uniform(0.0, 0.05)))
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        model = wn.load(path)  # must load: the old complete file or the new complete one
        vals = {float(p.ravel()[0]) for _, p in model.named_params()}
        assert len(vals) == 1, "a file mixed two saves"
        seen |= vals
    assert len(seen) > 1  # the kills landed at different points of the save loop


def _strip_key(obj, key):
    if isinstance(obj, dict):
        return {k: _strip_key(v, key) for k, v in obj.items() if k != key}
    if isinstance(obj, list):
        return [_strip_key(v, key) for v in obj]
    return obj


def test_a_file_written_before_rounding_and_quantized_avgpool_still_loads_strictly(tmp_path):
    """A file as witnp wrote it before LayerConfig.rounding existed and before AvgPool2d could be quantized
    (made here by removing `rounding` from every config in the file and the AvgPool2d's io_max_x, the only
    differences): it loads strictly, the new field at its default and the new stat at the built value, and
    computes what it computed."""
    import json
    rng = np.random.default_rng(0)
    q = wn.LayerConfig(use_quantization=True, handle_neg_in="PN", auto_scale_update_step=1)
    m = wn.Sequential(wn.Conv2d(1, 2, 3, padding=1, config=q, rng=rng), wn.AvgPool2d(2), wn.Flatten(),
                      wn.Linear(8, 3, config=q, rng=rng))
    x = rng.normal(size=(4, 1, 4, 4)).astype(np.float32) + 1
    m.begin_epoch()
    m.forward(x, train=True)
    p = tmp_path / "old.h5"
    wn.save(m, p)
    with h5py.File(p, "a") as f:
        f.attrs["architecture"] = json.dumps(_strip_key(json.loads(f.attrs["architecture"]), "rounding"))
        for g in f["layers"].values():
            if "config" in g.attrs:
                g.attrs["config"] = json.dumps(_strip_key(json.loads(g.attrs["config"]), "rounding"))
        del f["layers/1/stats/io_max_x"]
        assert "rounding" not in f.attrs["architecture"]
    back = wn.load(p)
    np.testing.assert_array_equal(back(x), m(x))
    assert back.children["0"].config.rounding == "round"
