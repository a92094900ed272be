"""Bad input, table-driven: command-line arguments, run configs, data files, model files and the Python API.

Every case must fail with one clear line that names what was wrong (the case's `match`), exit non-zero with
no traceback, and leave every file that existed before byte-identical (nothing written over an input,
nothing half-done). The workspace holds a small trained run, its models, a handoff file, a dataset and a
run config; each case runs in it.
"""
import hashlib
import os
import shutil

import h5py
import numpy as np
import pytest
from click.testing import CliRunner

import witnp as wn
from witnp.cli.main import main
from witnp.train.data import Dataset, load_npz

FAST = ["--set", "stages.0.epochs=1", "--set", "stages.1.epochs=1", "--set", "stages.2.epochs=1",
        "--set", "noise_seeds=2", "--no-progress"]
RUN_TOML = """seed = 0
data = "digits"
out = "fresh"
batch_size = 32
noise_seeds = 2
[[stages]]
name = "float"
epochs = 1
lr = 0.003
use_quantization = false
"""


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    ws = tmp_path_factory.mktemp("bad_input")
    r = CliRunner().invoke(main, ["train", "--out", str(ws / "run")] + FAST)
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(main, ["export", str(ws / "run" / "best.h5"), "-o", str(ws / "handoff.h5"), "--golden", "2"])
    assert r.exit_code == 0, r.output
    from witnp import _data
    shutil.copy(_data.path("digits"), ws / "data.npz")
    (ws / "run.toml").write_text(RUN_TOML)
    _model_variants(ws)
    _data_variants(ws)
    wn.save(wn.Sequential(wn.Linear(64, 10)), ws / "tiny.h5", data="digits")  # not the default config's layers
    return ws


def _model_variants(ws):
    """Broken copies of the trained model: each must be refused by wn.load / the commands that read it."""
    best = ws / "run" / "best.h5"

    def variant(name, edit):
        p = ws / name
        shutil.copy(best, p)
        with h5py.File(p, "a") as f:
            edit(f)

    def set_stat(f, value):
        d = f["layers/0/stats/io_max_y"]
        a = np.asarray(value, np.float32)
        del f["layers/0/stats/io_max_y"]
        d = f["layers/0/stats"].create_dataset("io_max_y", data=a)
        d.attrs["crc32"] = wn.handoff.model_file._crc(a)

    def edit_config(f):
        import json
        c = json.loads(f["layers/0"].attrs["config"])
        c["x_quant_bits"] = 10
        f["layers/0"].attrs["config"] = json.dumps(c)

    def corrupt(f):
        w = f["layers/0/params/weight"]
        a = w[()]
        a.flat[0] += 1
        w[...] = a

    variant("neg_io_max.h5", lambda f: set_stat(f, -3.0))
    variant("nan_io_max.h5", lambda f: set_stat(f, np.nan))
    variant("edited_config.h5", edit_config)
    variant("corrupt_weight.h5", corrupt)
    variant("wrong_format.h5", lambda f: f.attrs.__setitem__("format", "other"))
    variant("schema_9.h5", lambda f: f.attrs.__setitem__("schema_version", "9.0"))
    variant("missing_param.h5", lambda f: f.__delitem__("layers/0/params/bias"))
    variant("no_data_attr.h5", lambda f: f.attrs.__delitem__("data"))
    variant("bad_arch.h5", lambda f: f.attrs.__setitem__("architecture", "{not json"))
    (ws / "text.h5").write_text("not an hdf5 file")
    raw = best.read_bytes()
    (ws / "truncated.h5").write_bytes(raw[:len(raw) // 2])
    (ws / "empty.h5").write_bytes(b"")


def _data_variants(ws):
    z = dict(np.load(ws / "data.npz"))

    def save(name, **changes):
        d = {k: v for k, v in z.items()}
        for k, v in changes.items():
            if v is None:
                d.pop(k)
            else:
                d[k] = v
        np.savez(ws / name, **d)

    save("no_y_test.npz", y_test=None)
    save("short_y.npz", y_train=z["y_train"][:-3])
    x = z["x_train"].copy()
    x[0, 0] = np.nan
    save("nan_x.npz", x_train=x)
    save("empty_test.npz", x_test=z["x_test"][:0], y_test=z["y_test"][:0])
    y = z["y_train"].copy()
    y[0] = -1
    save("neg_label.npz", y_train=y)
    save("mixed_y.npz", y_test=z["y_test"].astype(np.float32))
    save("str_x.npz", x_train=np.array(["a"] * len(z["y_train"])))
    save("labels_2d.npz", y_train=np.stack([z["y_train"], z["y_train"]], 1))
    seq = np.zeros((len(z["y_train"]), 3, 4), np.float32)
    seq_t = np.zeros((len(z["y_test"]), 3, 4), np.float32)
    save("frames_vs_examples.npz", x_train=seq, y_train=np.zeros((len(seq), 3), np.int64), x_test=seq_t)
    save("y_val_other_shape.npz", x_val=z["x_test"], y_val=np.stack([z["y_test"]] * 2, 1))
    save("lengths_alone.npz", lengths_train=np.ones(len(z["y_train"]), np.int64))
    save("lengths_too_long.npz", lengths_train=np.full(len(z["y_train"]), 2), lengths_test=np.ones(len(z["y_test"]), int))
    save("regress_targets.npz", y_train=z["y_train"].astype(np.float32), y_test=z["y_test"].astype(np.float32))
    save("x_val_alone.npz", x_val=z["x_test"])
    save("bad_val_shape.npz", x_val=z["x_test"][..., :4], y_val=z["y_test"])
    save("wrong_shape.npz", x_train=z["x_train"].reshape(len(z["x_train"]), -1), x_test=z["x_test"].reshape(
        len(z["x_test"]), -1))
    (ws / "not_npz.npz").write_text("hello")
    (ws / "bad.toml").write_text("seed = = 1")


def _cli(*args):
    return ("cli", list(args))


CASES = []  # (id, kind, payload, match)


def case(cid, payload, match):
    CASES.append(pytest.param(payload, match, id=cid))


# --- run config values through --set (every numeric key: types exact, ranges) ---
for key, values, what in [
    ("seed", ["-1", "1.5", '"x"', "true"], "seed = "),
    ("batch_size", ["0", "-5", "31.9", '"abc"', "true", "[1]"], "batch_size = "),
    ("optimizer", ['"rmsprop"', "1", '""'], "optimizer = "),
    ("patience", ["-1", "2.5", '"x"'], "patience = "),
    ("noise_level", ["-1", "10", "11", "2.5", '"4"'], "noise_level = "),
    ("noise_seeds", ["0", "-1", "1.5", "false"], "noise_seeds = "),
    ("val_fraction", ["-0.1", "0.6", "true", '"x"', "1"], "val_fraction = "),
    ("weight_decay", ["-1", '"x"', "nan"], "weight_decay = "),
    ("clip_norm", ["0", "-2", "inf"], "clip_norm = "),
    ("label_smoothing", ["1.0", "-0.1", "true"], "label_smoothing = "),
    ("schedule", ["5", "{type='linear'}", "{type='step', step=2}", "{type='step', step_size=0}",
                  "{type='cosine', warmup_epochs=-1}", "{type='step', gamma=1.5}"], "schedule"),
    ("data", ["1", '""', '"missing.npz"', '"nope"'], "data"),
    ("out", ["1", '""'], "out = "),
    ("quant", ["1", '"x"'], "quant = "),
    ("model", ['"abc"', "1"], "model = "),
    ("stages", ["[]", "5", '"x"', "[5]"], "stages"),
    ("calibration", ['"median"', "1", '"percentile:200"', '"extrema:3"'], "calibration = "),
    ("noise_mode", ['"x"', "1", '"READ"'], "noise_mode = "),
]:
    for v in values:
        case(f"set-{key}={v}", _cli("train", "--out", "fresh", "--set", f"{key}={v}"), what)
for field, values in [("optimizer", ['"rmsprop"', "3"]), ("batch_size", ["0", "2.5"]), ("clip_norm", ["0"]),
                      ("noise_mode", ['"per_chip"']),
                      ("name", ['""', '"../escaped"', '"a/b"', '"best"', '"last"', '".hidden"', "5", '"' + "x" * 50 + '"',
                                '"qat"', '"a b"']),
                      ("epochs", ["0", "-1", "2.7", '"3"', "true"]),
                      ("lr", ["0", "-0.1", '"x"', "nan", "inf", "true"])]:
    for v in values:
        case(f"stage-{field}={v}", _cli("train", "--out", "fresh", "--set", f"stages.0.{field}={v}"), "stages[")
for i, (k, v, m) in enumerate([("x_quant_bits", "20", "x_quant_bits=20"), ("y_quant_bits", "3", "y_quant_bits"),
                               ("handle_neg_in", '"XX"', "handle_neg_in"), ("scale_x", "0", "scale_x"),
                               ("scale_x", "-16", "scale_x"), ("noise_level", "10", "noise_level"),
                               ("x_quant_bit", "8", "did you mean 'x_quant_bits'"), ("bogus", "1", "unknown key"),
                               ("scale_weight", '"big"', "scale_weight"), ("auto_scale_update_step", "0", "auto_scale")]):
    case(f"quant-{k}={v}", _cli("train", "--out", "fresh", "--set", f"quant.{k}={v}"), m)
    case(f"stage1-{k}={v}", _cli("train", "--out", "fresh", "--set", f"stages.1.{k}={v}"), m)
    case(f"override-{k}={v}", _cli("train", "--out", "fresh", "--set", f"model.overrides.0.{k}={v}"), m)
for v, m in [('"median"', "model.overrides.0.calibration = 'median'"), ("3", "model.overrides.0.calibration = 3"),
             ('"kl:5"', "kl")]:
    case(f"override-calibration={v}", _cli("train", "--out", "fresh", "--set", f"model.overrides.0.calibration={v}"), m)
case("override-calibration-on-relu", _cli("train", "--out", "fresh", "--set", 'model.overrides.1.calibration="kl"'),
     "layer 1 is a ReLU")
for k, m in [("epoch", "did you mean 'epochs'"), ("learning_rate", "unknown key"), ("nam", "did you mean 'name'")]:
    case(f"stage-unknown-{k}", _cli("train", "--out", "fresh", "--set", f"stages.0.{k}=1"), m)
for k, m in [("epochs", "unknown key 'epochs'"), ("batchsize", "did you mean 'batch_size'"),
             ("noise_seed", "did you mean 'noise_seeds'"), ("stage", "did you mean 'stages'"), ("lr", "unknown key")]:
    case(f"top-unknown-{k}", _cli("train", "--out", "fresh", "--set", f"{k}=1"), m)
# --- model tables ---
for cid, val, m in [
    ("layers-not-list", "model.layers=5", "model.layers"),
    ("layers-empty", "model.layers=[]", "model.layers"),
    ("layer-not-table", "model.layers=[5]", "model.layers[0]"),
    ("layer-unknown", "model.layers=[{type='Conv3d'}]", "unknown layer type 'Conv3d'"),
    ("layer-close", "model.layers=[{type='Conv2D', in_channels=1, out_channels=4, kernel_size=3}]",
     "did you mean 'Conv2d'"),
    ("layer-no-type", "model.layers=[{in_features=64}]", "unknown layer type None"),
    ("layer-container", "model.layers=[{type='Sequential'}]", "unknown layer type 'Sequential'"),
    ("layer-unknown-arg", "model.layers=[{type='Linear', in_feature=64, out_features=10}]",
     "did you mean 'in_features'"),
    ("layer-config-arg", "model.layers=[{type='Linear', in_features=64, out_features=10, config=1}]", "unknown key"),
    ("linear-zero", "model.layers=[{type='Flatten'}, {type='Linear', in_features=64, out_features=0}]",
     "out_features"),
    ("linear-neg", "model.layers=[{type='Flatten'}, {type='Linear', in_features=-64, out_features=10}]",
     "in_features"),
    ("linear-float", "model.layers=[{type='Flatten'}, {type='Linear', in_features=64.5, out_features=10}]",
     "in_features"),
    ("conv-k0", "model.layers=[{type='Conv2d', in_channels=1, out_channels=4, kernel_size=0}]", "kernel_size"),
    ("conv-pad-neg", "model.layers=[{type='Conv2d', in_channels=1, out_channels=4, kernel_size=3, padding=-1}]",
     "padding"),
    ("conv-groups", "model.layers=[{type='Conv2d', in_channels=3, out_channels=4, kernel_size=3, groups=2}]",
     "groups"),
    ("no-fit", "model.layers=[{type='Linear', in_features=5, out_features=10}]", "the model does not fit the data"),
    ("wrong-classes", "model.layers=[{type='Flatten'}, {type='Linear', in_features=64, out_features=7}]",
     "10 classes"),
    ("maxpool-0", "model.layers=[{type='MaxPool2d', kernel_size=0}]", "kernel_size"),
    ("prelu-0", "model.layers=[{type='PReLU', num_parameters=0}]", "num_parameters"),
    ("dropout-2", "model.layers=[{type='Dropout', p=2.0}]", "p"),
    ("overrides-missing-layer", "model.overrides.9.x_quant_bits=10", "no layer '9'"),
    ("overrides-not-table", "model.overrides.0=5", "model.overrides.0"),
    ("overrides-scalar", "model.overrides=5", "model.overrides"),
    ("model-stages", "model.stages=[]", "move `stages = ...` above"),
    ("model-unknown", "model.layer=[]", "did you mean 'layers'"),
]:
    case(f"model-{cid}", _cli("train", "--out", "fresh", "--set", val), m)
# --- --set syntax and paths ---
for cid, item, m in [("no-equals", "seed", "expected key=value"), ("empty-part", "stages..epochs=1", "dotted key"),
                     ("index-range", "stages.9.epochs=1", "does not exist"), ("index-word", "stages.x.epochs=1",
                                                                             "does not exist"),
                     ("through-scalar", "seed.x=1", "not a table"), ("through-stage-value", "stages.0.name.x=1",
                                                                    "not a table"),
                     ("index-past-end", "stages.3=5", "out of range"), ("leading-dot", ".seed=1", "dotted key")]:
    case(f"set-syntax-{cid}", _cli("train", "--out", "fresh", "--set", item), m)
case("config-missing", _cli("train", "--config", "nope.toml", "--out", "fresh"), "no such file")
case("config-bad-toml", _cli("train", "--config", "bad.toml", "--out", "fresh"), "invalid TOML")
case("config-folder", _cli("train", "--config", "run", "--out", "fresh"), "config")
case("train-existing-run", _cli("train", "--out", "run"), "already holds a run")
case("train-resume-no-run", _cli("train", "--out", "fresh", "--resume"), "no run to resume")
case("train-resume-other-config", _cli("train", "--out", "run", "--resume", "--set", "seed=5"), "differs from the interrupted run")
case("train-resume-and-overwrite", _cli("train", "--out", "run", "--resume", "--overwrite"), "pass one")
case("train-out-is-file", _cli("train", "--out", "data.npz"), "")
case("train-overwrite-input", _cli("train", "--out", "run", "--overwrite", "--set", "data='run/config.json'"),
     "data")
# --- tasks and losses: named, checked against the data and each other ---
for cid, sets, m in [
    ("unknown-task", ["task='detect'"], "task = 'detect'"),
    ("task-number", ["task=1"], "task = 1"),
    ("regress-on-labels", ["task='regress'"], "task regress needs float targets"),
    ("frames-on-example-labels", ["task='frames'"], "task frames needs an integer label per frame"),
    ("classify-on-targets", ["task='classify'", "data='regress_targets.npz'"], "task classify needs one integer"),
    ("unknown-loss", ["loss='hinge'"], "loss = 'hinge'"),
    ("mse-for-classify", ["loss='mse'"], "task classify: loss 'mse'; expected one of ['cross_entropy']"),
    ("ce-for-regress", ["loss='cross_entropy'", "data='regress_targets.npz'"], "task regress: loss 'cross_entropy'"),
    ("smoothing-for-regress", ["label_smoothing=0.1", "data='regress_targets.npz'", "model.layers.7.out_features=1"],
     "label_smoothing applies to cross_entropy"),
    ("regress-shape", ["data='regress_targets.npz'"], "task regress needs the targets' shape ()"),
]:
    case(f"task-{cid}", _cli("train", "--out", "fresh", *[a for x in sets for a in ("--set", x)]), m)
# --- data files ---
for name, m in [("no_y_test.npz", "missing arrays ['y_test']"), ("short_y.npz", "the same length"),
                ("nan_x.npz", "NaN or inf"), ("empty_test.npz", "x_test is empty"), ("neg_label.npz", "0..K-1"),
                ("mixed_y.npz", "both"), ("str_x.npz", "must be numeric"), ("labels_2d.npz", "labels frames, but x_train"),
                ("frames_vs_examples.npz", "both a label per example or both a label per frame"),
                ("y_val_other_shape.npz", "same kind and shape of targets"),
                ("lengths_alone.npz", "variable-length data needs ['lengths_train', 'lengths_test']"),
                ("lengths_too_long.npz", "each in 1..1"),
                ("not_npz.npz", "not a readable .npz"), ("missing.npz", "no such dataset file"),
                ("wrong_shape.npz", "does not fit the data"), ("x_val_alone.npz", "needs both x_val and y_val"),
                ("bad_val_shape.npz", "shaped like x_train")]:
    case(f"data-train-{name}", _cli("train", "--out", "fresh", "--set", f"data='{name}'"), m)
    m2 = "--data" if name != "wrong_shape.npz" else "does not take the frames of wrong_shape"
    case(f"data-eval-{name}", _cli("eval", "run/best.h5", "--data", name), m2)
    case(f"data-export-{name}", _cli("export", "run/best.h5", "-o", "h.h5", "--data", name), m2)
    case(f"data-inspect-{name}", _cli("inspect", "run/best.h5", "--data", name), m2)
case("data-export-rows-on-cnn", _cli("export", "run/best.h5", "-o", "h.h5", "--data", "digits_rows"),
     "does not take the frames of digits_rows")
# --- model files, through each command that reads one ---
for name, m in [("neg_io_max.h5", "expected values >= 0"), ("nan_io_max.h5", "NaN or inf"),
                ("edited_config.h5", "two different configs"), ("corrupt_weight.h5", "checksum mismatch"),
                ("wrong_format.h5", "not a witnp model file"), ("schema_9.h5", "schema version 9.0"),
                ("missing_param.h5", "missing parameters ['bias']"), ("bad_arch.h5", "cannot be rebuilt"),
                ("text.h5", "not a readable HDF5 file"), ("truncated.h5", "not a readable HDF5 file"),
                ("empty.h5", "not a readable HDF5 file"), ("handoff.h5", "not a witnp model file")]:
    case(f"model-eval-{name}", _cli("eval", name), m)
    case(f"model-export-{name}", _cli("export", name, "-o", "out.h5"), m)
    if name != "handoff.h5":
        case(f"model-inspect-{name}", _cli("inspect", name), m if "HDF5" in m or name == "wrong_format.h5"
             else m)
case("eval-missing-model", _cli("eval", "nope.h5"), "does not exist")
case("eval-no-data-attr", _cli("eval", "no_data_attr.h5"), "records no training data")
case("eval-noise-level-range", _cli("eval", "run/best.h5", "--noise-level", "10"), "--noise-level")
case("eval-noise-level-word", _cli("eval", "run/best.h5", "--noise-level", "high"), "--noise-level")
case("eval-noise-seeds-0", _cli("eval", "run/best.h5", "--noise-seeds", "0"), "--noise-seeds")
case("eval-float-noise", _cli("eval", "run/float.h5", "--noise-level", "3"), "float model")
case("eval-float-integer", _cli("eval", "run/float.h5", "--integer"), "float model")
case("eval-unknown-option", _cli("eval", "run/best.h5", "--noise", "3"), "No such option")
for lv in ("10", "a-b", "5-2", "", "1,,2"):
    case(f"eval-noise-levels-{lv}", _cli("eval", "run/best.h5", "--noise-levels", lv), "--noise-levels")
case("eval-sweep-float", _cli("eval", "run/float.h5", "--noise-levels", "0-2"), "float model")
case("eval-sweep-plot-onto-model", _cli("eval", "run/best.h5", "--noise-levels", "0-1", "--plot", "run/best.h5"),
     "MODEL itself")
case("eval-sweep-csv-onto-model", _cli("eval", "run/best.h5", "--noise-levels", "0-1", "--csv", "run/best.h5"),
     "MODEL itself")
case("eval-several-without-sweep", _cli("eval", "run/best.h5", "run/qat.h5"), "several MODELs")
case("eval-csv-without-sweep", _cli("eval", "run/best.h5", "--csv", "s.csv"), "--noise-levels")
case("eval-sweep-with-level", _cli("eval", "run/best.h5", "--noise-levels", "0-1", "--noise-level", "3"),
     "--noise-level")
case("eval-quantize-quantized", _cli("eval", "run/best.h5", "--quantize"), "already quantized")
case("quant-rounding-ceil", _cli("train", "--out", "fresh", "--set", "quant.rounding='ceil'"), "rounding='ceil'")
case("eval-read-noise-without-chips", _cli("eval", "run/best.h5", "--read-noise", "0.5"), "--read-noise goes with --chips")
case("eval-read-noise-negative", _cli("eval", "run/best.h5", "--chips", "2", "--read-noise", "-1"), "--read-noise")
case("eval-read-noise-nan", _cli("eval", "run/best.h5", "--chips", "2", "--read-noise", "nan"), "--read-noise")
case("eval-chips-0", _cli("eval", "run/best.h5", "--chips", "0"), "--chips")
# --- witnp sweep: refused before any point runs or the sweep folder is made ---
for cid, args, match in [
    ("no-grid", [], "nothing to sweep"),
    ("grid-no-value", ["--grid", "quant.y_quant_bits"], "expected KEY=V1,V2"),
    ("grid-empty-value", ["--grid", "seed=1,,2"], "an empty value"),
    ("grid-value-twice", ["--grid", "seed=1,1"], "given twice"),
    ("grid-key-twice", ["--grid", "seed=1", "--grid", "seed=2"], "seed: given twice"),
    ("grid-and-seeds", ["--grid", "seed=1,2", "--seeds", "2"], "--seeds and --grid seed"),
    ("seeds-0", ["--seeds", "0"], "--seeds"),
    ("workers-0", ["--seeds", "2", "--workers", "0"], "--workers"),
    ("grid-unknown-key", ["--grid", "quant.y_quant_bit=8,10"], "point quant.y_quant_bit=8: quant"),
    ("grid-bad-value", ["--grid", "noise_level=3,12"], "point noise_level=12: noise_level = 12"),
    ("grid-bad-data", ["--grid", "data=digits,nope.npz"], "point data=nope.npz"),
    ("grid-out", ["--grid", "out=a,b"], "--grid out"),
    ("scheduler-with-pool", ["--seeds", "2", "--scheduler", "tcp://127.0.0.1:1", "--executor", "processes"],
     "--scheduler"),
    ("unknown-executor", ["--seeds", "2", "--executor", "threads"], "--executor"),
    ("missing-config", ["--seeds", "2", "--config", "nope.toml"], "nope.toml"),
]:
    case(f"sweep-{cid}", _cli("sweep", "--out", "fresh", *args), match)
# --- witnp search-bits: refused before the float model is trained or a candidate runs ---
for cid, args, match in [
    ("budget-negative", ["--budget", "-1"], "--budget -1.0"),
    ("budget-nan", ["--budget", "nan"], "--budget nan"),
    ("budget-word", ["--budget", "half"], "--budget"),
    ("no-budget", [], "--budget"),
    ("missing-model", ["--budget", "1", "--model", "nope.h5"], "nope.h5"),
    ("no-quantized-stage", ["--budget", "1", "--config", "run.toml"], "no quantized stage"),
    ("first-stage-quantized", ["--budget", "1", "--set", "stages=[{name='q',epochs=1,lr=0.01,use_quantization=true}]"],
     "give --model FLOAT.h5"),
    ("no-validation", ["--budget", "1", "--set", "val_fraction=0"], "validation split"),
    ("model-mismatch", ["--budget", "1", "--model", "tiny.h5"], "array layers ['0'] are not the config's"),
    ("out-is-file", ["--budget", "1", "--out", "run.toml"], "is a file"),
    ("scheduler-with-pool", ["--budget", "1", "--scheduler", "tcp://127.0.0.1:1", "--executor", "processes"],
     "--scheduler"),
]:
    case(f"search-bits-{cid}", _cli("search-bits", *(["--out", "fresh"] if "--out" not in args else []), *args), match)
case("sweep-out-is-file", _cli("sweep", "--seeds", "2", "--out", "run.toml"), "is a file")
case("sweep-out-holds-a-run", _cli("sweep", "--seeds", "2", "--out", "run"), "holds other files and no sweep")
case("inspect-compare-float", _cli("inspect", "run/float.h5", "--compare"), "no quantized layer")
case("inspect-compare-json-onto-model", _cli("inspect", "run/best.h5", "--compare", "--json", "run/best.h5"),
     "MODEL itself")
case("inspect-json-without-compare", _cli("inspect", "run/best.h5", "--json", "r.json"), "--compare")
case("export-onto-model", _cli("export", "run/best.h5", "-o", "run/best.h5"), "MODEL itself")
case("export-header-onto-model", _cli("export", "run/best.h5", "-o", "h.h5", "--c-header", "run/best.h5"),
     "MODEL itself")
case("export-c-source-onto-model", _cli("export", "run/best.h5", "-o", "h.h5", "--c-source", "run/best.h5"),
     "MODEL itself")
case("export-c-source-is-output", _cli("export", "run/best.h5", "-o", "h.h5", "--c-source", "h.h5"), "same file")
case("export-onnx-onto-model", _cli("export", "run/best.h5", "-o", "h.h5", "--onnx", "run/best.h5"), "MODEL itself")
case("export-onnx-is-output", _cli("export", "run/best.h5", "-o", "h.onnx", "--onnx", "h.onnx"), "same file")
case("export-json-onto-model", _cli("export", "run/best.h5", "-o", "h.h5", "--json", "run/best.h5"), "MODEL itself")
case("export-header-is-output", _cli("export", "run/best.h5", "-o", "h.h5", "--c-header", "h.h5"), "same file")
case("export-json-is-header", _cli("export", "run/best.h5", "-o", "h.h5", "--c-header", "w.h", "--json", "w.h"),
     "same file")
case("export-missing-folder", _cli("export", "run/best.h5", "-o", "/nonexistent/dir/h.h5"),
     "/nonexistent/dir does not exist")
case("export-output-folder", _cli("export", "run/best.h5", "-o", "run"), "")
case("export-golden-too-many", _cli("export", "run/best.h5", "-o", "h.h5", "--golden", "100000"), "at most 360")
case("export-golden-negative", _cli("export", "run/best.h5", "-o", "h.h5", "--golden", "-1"), "--golden")
case("export-no-output", _cli("export", "run/best.h5"), "-o")
case("export-no-data-attr", _cli("export", "no_data_attr.h5", "-o", "h.h5"), "records no training data")
case("export-float-model", _cli("export", "run/float.h5", "-o", "h.h5"), "quantized")
case("inspect-missing", _cli("inspect", "nope.h5"), "does not exist")
case("inspect-bad-data", _cli("inspect", "run/best.h5", "--data", "nope"), "no such dataset file")
case("unknown-command", _cli("trian"), "No such command")


# --- the Python API ---
def _api(fn):
    return ("api", fn)


def _lin(*a, **k):
    return lambda: wn.Linear(*a, **k)


for cid, fn, m in [
    ("linear-in-0", _lin(0, 5), "in_features"), ("linear-out-neg", _lin(5, -1), "out_features"),
    ("linear-in-float", _lin(2.5, 3), "in_features"), ("linear-in-str", _lin("4", 3), "in_features"),
    ("linear-bias-str", _lin(4, 3, bias="yes"), "bias"),
    ("linear-config-dict", _lin(4, 3, config={"x": 1}), "config"),
    ("config-xbits", lambda: wn.LayerConfig(x_quant_bits=20), "x_quant_bits=20"),
    ("config-ybits", lambda: wn.LayerConfig(y_quant_bits=4), "y_quant_bits"),
    ("config-neg", lambda: wn.LayerConfig(handle_neg_in="both"), "handle_neg_in"),
    ("config-noise", lambda: wn.LayerConfig(noise_level=-1), "noise_level"),
    ("config-scale", lambda: wn.LayerConfig(scale_x=float("nan")), "scale_x"),
    ("config-unknown", lambda: wn.LayerConfig(scalex=16), "scalex"),
    ("config-model", lambda: wn.LayerConfig(noise_model="FANCY"), "noise_model"),
    ("preset-unknown", lambda: wn.preset("fast"), "fast"),
    ("conv-k0", lambda: wn.Conv2d(1, 2, 0), "kernel_size"),
    ("conv-stride0", lambda: wn.Conv2d(1, 2, 3, stride=0), "stride"),
    ("conv-groups", lambda: wn.Conv2d(3, 4, 3, groups=2), "groups"),
    ("convT-op", lambda: wn.ConvTranspose2d(2, 2, 3, stride=1, output_padding=2), "output_padding"),
    ("gru-0", lambda: wn.GRU(0, 4), "input_size"),
    ("gru-h0", lambda: wn.GRUCell(4, 0), "hidden_size"),
    ("bn-0", lambda: wn.BatchNorm2d(0), "num_features"),
    ("sgd-lr", lambda: wn.optim.SGD(wn.Linear(2, 2), lr=-1.0), "lr"),
    ("adam-betas", lambda: wn.optim.Adam(wn.Linear(2, 2), betas=(1.5, 0.9)), "betas"),
    ("adam-eps", lambda: wn.optim.Adam(wn.Linear(2, 2), eps=-1.0), "eps"),
]:
    case(f"api-{cid}", _api(fn), m)

_X = np.zeros((3, 4), np.float32)
for cid, x, m in [("fwd-shape", np.zeros((3, 5), np.float32), "x has shape (3, 5)"),
                  ("fwd-int", np.zeros((3, 4), np.int32), "dtype int32"),
                  ("fwd-nan", np.full((3, 4), np.nan, np.float32), "NaN or inf"),
                  ("fwd-0d", np.zeros((), np.float32), "shape"),
                  ("fwd-str", np.array([["a"] * 4]), "dtype"), ("fwd-complex", np.zeros((3, 4), complex), "dtype")]:
    case(f"api-linear-{cid}", _api(lambda x=x: wn.Linear(4, 2).forward(x, train=False)), m)


def _bwd(dy):
    lin = wn.Linear(4, 2)
    _, ctx = lin.forward(_X, train=True)
    return lambda: lin.backward(dy, ctx)


for cid, dy, m in [("bwd-shape", np.zeros((3, 3), np.float32), "dy"), ("bwd-nan", np.full((3, 2), np.inf, np.float32),
                                                                        "NaN or inf")]:
    case(f"api-linear-{cid}", _api(lambda dy=dy: _bwd(dy)()), m)


def _data(n_train=20, n_test=10):
    rng = np.random.default_rng(0)
    return Dataset(rng.normal(size=(n_train, 4)).astype(np.float32), rng.integers(0, 2, n_train),
                   rng.normal(size=(n_test, 4)).astype(np.float32), rng.integers(0, 2, n_test))


def _fit(**kw):
    def run():
        m = wn.Sequential(wn.Linear(4, 2))
        args = dict(optimizer=wn.optim.SGD(m, lr=0.1), epochs=1)
        args.update(kw)
        data = args.pop("data", _data())
        return wn.train.fit(m, data, **args)
    return run


for cid, kw, m in [("batch-0", dict(batch_size=0), "batch_size=0"), ("batch-neg", dict(batch_size=-5), "batch_size"),
                   ("batch-float", dict(batch_size=31.9), "batch_size"), ("epochs-neg", dict(epochs=-1), "epochs"),
                   ("epochs-float", dict(epochs=2.7), "epochs"), ("patience-neg", dict(patience=-1), "patience"),
                   ("seed-neg", dict(seed=-1), "seed"), ("optimizer-str", dict(optimizer="adam"), "optimizer"),
                   ("resume-missing", dict(resume=True, checkpoint="nope.h5"), "does not exist"),
                   ("resume-none", dict(resume=True), "does not exist"),
                   ("empty-test", dict(data=_data(20, 0)), "at least one")]:
    case(f"api-fit-{cid}", _api(_fit(**kw)), m)


def _recipe(**kw):
    def run():
        stages = kw.pop("stages", [wn.train.Stage("float", {"use_quantization": False}, 1, 0.1)])
        return wn.train.run_recipe(wn.Sequential(wn.Linear(4, 2)), _data(), stages, log=lambda s: None, **kw)
    return run


for cid, kw, m in [("noise-seeds-0", dict(noise_seeds=0), "noise_seeds=0"), ("noise-level-11", dict(noise_level=11),
                                                                              "noise_level=11"),
                   ("optimizer", dict(optimizer="rmsprop"), "rmsprop"),
                   ("dup-stages", dict(stages=[wn.train.Stage("a", {}, 1, 0.1), wn.train.Stage("a", {}, 1, 0.1)]),
                    "each name once"),
                   ("escape", dict(stages=[wn.train.Stage("../x", {}, 1, 0.1)], out_dir="o"), "path separators"),
                   ("resume-no-dir", dict(resume=True), "out_dir")]:
    case(f"api-recipe-{cid}", _api(_recipe(**kw)), m)
for cid, path, m in [("load-missing", "nope.h5", "no such file"), ("load-text", "text.h5", "not a readable HDF5"),
                     ("load-neg-io", "neg_io_max.h5", ">= 0"), ("load-edited", "edited_config.h5", "two different"),
                     ("load-corrupt", "corrupt_weight.h5", "checksum"), ("load-handoff", "handoff.h5",
                                                                         "not a witnp model")]:
    case(f"api-{cid}", _api(lambda path=path: wn.load(path)), m)
    case(f"api-{cid}-lenient", _api(lambda path=path: wn.load(path, strict=False)), m)
for name, m in [("no_y_test.npz", "missing arrays"), ("neg_label.npz", "0..K-1"), ("empty_test.npz", "empty"),
                ("not_npz.npz", "not a readable"), ("nan_x.npz", "NaN")]:
    case(f"api-load_npz-{name}", _api(lambda name=name: load_npz(name)), m)


def _snapshot(root):
    out = {}
    for dirpath, _, files in os.walk(root):
        for f in files:
            p = os.path.join(dirpath, f)
            with open(p, "rb") as fh:
                out[os.path.relpath(p, root)] = hashlib.sha256(fh.read()).hexdigest()
    return out


def test_there_are_at_least_250_cases():
    assert len(CASES) >= 250


@pytest.mark.parametrize("payload,match", CASES)
def test_bad_input_fails_cleanly_and_loses_nothing(workspace, monkeypatch, payload, match):
    monkeypatch.chdir(workspace)
    before = _snapshot(workspace)
    kind, what = payload
    if kind == "cli":
        r = CliRunner().invoke(main, what)
        assert r.exit_code in (1, 2), f"exit {r.exit_code}: {r.output}"  # 0 would be a silent result
        assert r.exception is None or isinstance(r.exception, SystemExit), \
            f"traceback: {type(r.exception).__name__}: {r.exception}"
        errors = [line for line in r.output.splitlines() if line.startswith("Error")]
        assert len(errors) == 1, r.output
        text = r.output
    else:
        with pytest.raises((ValueError, TypeError)) as e:
            what()
        text = str(e.value)
        assert len(text.splitlines()) == 1, text
    assert match in text, text
    assert _snapshot(workspace) == before
    assert not os.path.exists(workspace / "fresh")  # refused before the run folder was made
