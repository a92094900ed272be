"""The C header carries every exported layer, by value: a model with every layer family the export supports is
written out, compiled with the system C compiler (C99, pedantic, warnings as errors) together with a program
that prints every array, and each printed array equals the record's."""
import shutil
import subprocess

import numpy as np
import pytest

import witnp as wn
from witnp.handoff.export import _c_ident, export_model, leaf_records, write_c_header

CC = shutil.which("cc") or shutil.which("gcc")
pytestmark = pytest.mark.skipif(CC is None, reason="no C compiler on this machine (cc/gcc)")


def _model():
    q = wn.LayerConfig(use_quantization=True, handle_neg_in="PN", use_auto_scale=True)
    f = q.replace(handle_neg_in="FALSE")
    rng = np.random.default_rng(0)
    cnn = wn.Sequential(wn.Conv2d(1, 4, 3, padding=1, config=q, rng=rng), wn.ReLU(config=q),
                        wn.Conv2d(4, 4, 2, config=f.replace(to_linear=True), rng=rng), wn.Sigmoid(config=q),
                        wn.ConvTranspose2d(4, 2, 2, stride=2, config=q, rng=rng), wn.Tanh(config=q),
                        wn.MaxPool2d(2), wn.Flatten(), wn.Linear(2 * 7 * 7, 8, config=q, rng=rng), wn.GELU(config=q),
                        wn.PReLU(config=q), wn.Linear(8, 3, config=q, rng=rng))
    x = rng.normal(size=(6, 1, 8, 8)).astype(np.float32)
    gru = wn.Sequential(wn.GRU(5, 6, config=q, rng=rng, return_sequences=False), wn.Linear(6, 3, config=q, rng=rng))
    xs = rng.normal(size=(6, 4, 5)).astype(np.float32)
    for m, xx in ((cnn, x), (gru, xs)):
        m.forward(xx, train=True)  # auto-scale records io_max
    return [wn.train.with_config(cnn, {"noise_level": 0}), wn.train.with_config(gru, {"noise_level": 0})]


@pytest.mark.parametrize("which", [0, 1], ids=["cnn", "gru"])
def test_header_compiles_and_holds_every_array(which, tmp_path):
    records = export_model(_model()[which])
    write_c_header(tmp_path / "model.h", records)
    arrays = []  # (C name, the record's array)
    for name, rec in leaf_records(records):
        for k, v in rec.items():
            if isinstance(v, np.ndarray) and v.dtype.kind in "iub":
                cname = {"array_weight": "weight", "weight": "weight_torch"}.get(k, k)
                arrays.append((f"{_c_ident(name)}_{cname}", v))
    assert any("_zr_weight" in n for n, _ in arrays) or which == 0
    prog = ['#include "model.h"', "#include <stdio.h>", "int main(void) {"]
    for cname, a in arrays:
        prog.append(f'  {{ size_t i, n = sizeof({cname}) / sizeof({cname}{"[0]" * max(a.ndim, 1)});')
        prog.append(f'    printf("%s", "{cname}");')
        prog.append(f"    for (i = 0; i < n; i++) {{ printf(\" %lld\", (long long)((const {_ctype(a)} *){cname})[i]); }}")
        prog.append('    printf("\\n");')
        prog.append("  }")
    prog += ["  return 0;", "}"]
    (tmp_path / "main.c").write_text("\n".join(prog) + "\n")
    r = subprocess.run([CC, "-std=c99", "-pedantic", "-Wall", "-Wextra", "-Werror", "-Wno-unused-const-variable",
                        "-o", str(tmp_path / "main"), str(tmp_path / "main.c")], cwd=tmp_path, capture_output=True,
                       text=True)
    assert r.returncode == 0, r.stderr[-3000:]
    out = subprocess.run([str(tmp_path / "main")], capture_output=True, text=True, check=True).stdout.splitlines()
    got = {line.split()[0]: np.array([int(v) for v in line.split()[1:]], np.int64) for line in out}
    assert len(got) == len(arrays)
    for cname, a in arrays:
        np.testing.assert_array_equal(got[cname], a.astype(np.int64).ravel(), err_msg=cname)
    text = (tmp_path / "model.h").read_text()
    for name, rec in leaf_records(records):  # every layer, with its scales' shifts where it has scales
        up = _c_ident(name).upper()
        assert f'#define {up}_TYPE "{rec["type"]}"' in text
        if "scale_y" in rec:
            assert f"#define {up}_SHIFT_Y" in text


def _ctype(a):
    from witnp.handoff.export import _c_type
    return _c_type(a)
