"""The pre-flight check of what the chip's mapper enforces: each finding names the layer, the value and the
limit; export prints them, and --strict refuses the export with nothing written."""
import numpy as np
from click.testing import CliRunner

import witnp as wn
from witnp.cli.main import main
from witnp.handoff.export import MAX_NPU_BIAS, preflight


def _lin(**kw):
    base = dict(use_quantization=True, handle_neg_in="PN", use_auto_scale=False, scale_x=16, scale_weight=64,
                scale_y=16)
    base.update(kw)
    return wn.Linear(4, 3, config=wn.LayerConfig(**base), rng=np.random.default_rng(0))


def test_a_clean_model_has_no_findings():
    assert preflight(wn.Sequential(_lin())) == []


def test_each_limit_is_found_with_layer_value_and_limit():
    sat = _lin()
    sat.params["weight"][0, 0] = 3.0                   # 3·64 = 192 > 127
    clip = _lin(bias_row_N=1)
    clip.params["bias"][...] = 20.0                     # 20·16·64/128 = 160 > 127·1
    npu = _lin(bias_row_N=64, scale_x=64)
    npu.params["bias"][...] = 200.0                     # Bq = 200·64·64/128 = 6400: NPU bias 819200 > 522240
    wide = wn.Linear(4, 900, config=_lin().config)     # 900 output columns
    pow2 = _lin(scale_x=12)
    found = {name: preflight(wn.Sequential(layer)) for name, layer in
             [("sat", sat), ("clip", clip), ("npu", npu), ("wide", wide), ("pow2", pow2)]}
    assert any("1 of 12 weights lie outside the int8 range at scale_weight=64.0" in f for f in found["sat"])
    assert any("3 bias value(s) exceed ±128·bias_row_N (N=1)" in f for f in found["clip"])
    assert any(f"past the mapper's ±{MAX_NPU_BIAS}" in f and "819200" in f for f in found["npu"])
    assert any("900 output columns exceed the array's 896" in f for f in found["wide"])
    assert any("scale_x=12.0 is not a power of two" in f for f in found["pow2"])
    assert all(f.startswith("0: ") for fs in found.values() for f in fs)  # the layer's name first


def test_negative_inputs_into_an_unsigned_false_layer_need_data():
    m = wn.Sequential(_lin(handle_neg_in="FALSE"))
    x = np.array([[-1.0, 1.0, 1.0, 1.0]] * 4, np.float32)
    assert preflight(m) == []
    assert preflight(m, x) == ["0: 25.0% of its inputs are negative and handle_neg_in FALSE codes them as 0; use PN "
                               "or Shift"]
    assert preflight(wn.Sequential(_lin()), x) == []   # PN keeps them


def test_export_prints_findings_and_strict_writes_nothing(tmp_path):
    lin = _lin()
    lin.params["weight"][0, 0] = 3.0
    wn.save(wn.Sequential(lin), tmp_path / "m.h5")
    r = CliRunner().invoke(main, ["export", str(tmp_path / "m.h5"), "-o", str(tmp_path / "h.h5"), "--golden", "0"])
    assert r.exit_code == 0 and "pre-flight: 0: 1 of 12 weights" in r.output
    r = CliRunner().invoke(main, ["export", str(tmp_path / "m.h5"), "-o", str(tmp_path / "s.h5"), "--golden", "0",
                                  "--strict", "--c-header", str(tmp_path / "w.h")])
    assert r.exit_code == 1 and "--strict: the pre-flight check found 1 problem(s), nothing written" in r.output
    assert not (tmp_path / "s.h5").exists() and not (tmp_path / "w.h").exists()
    r = CliRunner().invoke(main, ["inspect", str(tmp_path / "m.h5")])
    assert r.exit_code == 0 and "pre-flight (what the chip's mapper enforces): 1 finding(s)" in r.output
