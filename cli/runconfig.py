"""Run configuration of `witnp train`: the shipped default.toml, a user's TOML file, then --set overrides;
validated into a model, a dataset and stages, with errors that name the key and what was expected."""
from __future__ import annotations

import copy
import difflib
import inspect
import math
import os
import re
import tomllib
from collections import OrderedDict

from witnp.config import LayerConfig

# witnp's layers, training and data modules load Numba: they are imported inside the functions that need
# them, so that `witnp --help` and argument errors start in a fraction of a second.

DEFAULT_TOML = os.path.join(os.path.dirname(os.path.abspath(__file__)), "default.toml")
CONFIG_FIELDS = {f for f in LayerConfig.__dataclass_fields__} | {"auto_scale_updata_step"}
OPTIMIZERS = ("adam", "adamw", "sgd")
STAGE_KEYS = {"name", "epochs", "lr"}
# training options: top-level (every stage's default) or per stage (that stage's); witnp.train.loop.Stage
TRAIN_OPTIONS = ("optimizer", "weight_decay", "clip_norm", "label_smoothing", "batch_size", "schedule", "noise_mode")
SCHEDULE_KEYS = {"type", "step_size", "gamma", "eta_min", "warmup_epochs"}
MODEL_KEYS = {"layers", "overrides"}
# stage names become file names in the run folder (<stage>.h5); these would collide with the run's own files
RESERVED_STAGES = {"best", "last", "config", "metrics", "eval", "recipe", "checkpoints"}
STAGE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,39}$")


def _int(key, v, lo, hi=None):
    if isinstance(v, bool) or not isinstance(v, int):
        raise RunConfigError(f"{key} = {v!r}: expected an integer" + (f" >= {lo}" if hi is None else f" in {lo}..{hi}"))
    if v < lo or (hi is not None and v > hi):
        raise RunConfigError(f"{key} = {v!r}: expected an integer" + (f" >= {lo}" if hi is None else f" in {lo}..{hi}"))
    return v


def _str(key, v):
    if not isinstance(v, str) or not v.strip():
        raise RunConfigError(f"{key} = {v!r}: expected a non-empty string")
    return v


# the top-level keys: name -> check(key, value)
TOP = {
    "seed": lambda k, v: _int(k, v, 0),
    "data": _str,
    "out": _str,
    "batch_size": lambda k, v: _int(k, v, 1),
    "optimizer": lambda k, v: v if v in OPTIMIZERS else _bad(k, v, f"one of {list(OPTIMIZERS)}"),
    "patience": lambda k, v: _int(k, v, 0),
    "noise_level": lambda k, v: _int(k, v, 0, 9),
    "noise_seeds": lambda k, v: _int(k, v, 1),
    "calibration": lambda k, v: _calibration(k, v),
    "task": lambda k, v: v if v in ("classify", "frames", "regress") else _bad(
        k, v, "'classify' (a label per example), 'frames' (a label per frame) or 'regress' (float targets)"),
    "loss": lambda k, v: v if v in ("cross_entropy", "mse", "l1", "snr") else _bad(
        k, v, "'cross_entropy' (classify, frames), 'mse', 'l1' or 'snr' (regress)"),
    "val_fraction": lambda k, v: v if (isinstance(v, (int, float)) and not isinstance(v, bool) and 0 <= v <= 0.5)
    else _bad(k, v, "a number in [0, 0.5]: the share of the training split held out for validation"),
    "weight_decay": lambda k, v: _num(k, v, 0, None, "a number >= 0"),
    "clip_norm": lambda k, v: _num(k, v, 0, None, "a number > 0 (clip gradients to this global norm)", strict=True),
    "label_smoothing": lambda k, v: _num(k, v, 0, 1, "a number in [0, 1)", top_open=True),
    "schedule": lambda k, v: _schedule(k, v),
    "noise_mode": lambda k, v: v if v in ("read", "chip") else _bad(k, v, "'read' (a new draw every forward) or "
                                                                     "'chip' (one chip's fixed error per epoch)"),
    "quant": lambda k, v: _table(k, v),
    "model": lambda k, v: _table(k, v),
    "stages": lambda k, v: v,
}
TOP_KEYS = set(TOP)


def _num(key, v, lo, hi, expected, strict=False, top_open=False):
    ok = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and (v > lo if strict else v >= lo)
    if ok and hi is not None:
        ok = v < hi if top_open else v <= hi
    return v if ok else _bad(key, v, expected)


def _calibration(key, v):
    from witnp.analysis.calibration import parse_strategy
    try:
        parse_strategy(v)
    except ValueError as e:
        raise RunConfigError(f"{key} = {v!r}: {str(e).split(': ', 1)[-1]}") from None
    return v


def _schedule(key, v):
    """{type = "step" | "cosine" | "constant", step_size, gamma, eta_min, warmup_epochs}."""
    _table(key, v)
    _unknown(key, v, SCHEDULE_KEYS)
    if v.get("type", "constant") not in ("step", "cosine", "constant"):
        _bad(f"{key}.type", v.get("type"), "'step', 'cosine' or 'constant'")
    if "step_size" in v:
        _int(f"{key}.step_size", v["step_size"], 1)
    if "warmup_epochs" in v:
        _int(f"{key}.warmup_epochs", v["warmup_epochs"], 0)
    if "gamma" in v:
        _num(f"{key}.gamma", v["gamma"], 0, 1, "a number in (0, 1]", strict=True)
    if "eta_min" in v:
        _num(f"{key}.eta_min", v["eta_min"], 0, None, "a number >= 0")
    return v


def _bad(key, v, expected):
    raise RunConfigError(f"{key} = {v!r}: expected {expected}")


def _table(key, v):
    if not isinstance(v, dict):
        _bad(key, v, "a table ({key = value, ...})")
    return v


def _unknown(where, keys, valid):
    """Refuse keys outside `valid`, naming the closest valid one."""
    for k in sorted(set(keys) - set(valid)):
        close = difflib.get_close_matches(str(k), sorted(valid), n=1, cutoff=0.6)
        hint = f"; did you mean {close[0]!r}?" if close else f"; expected one of {sorted(valid)}"
        raise RunConfigError(f"{where}: unknown key {k!r}{hint}")


class RunConfigError(ValueError):
    """A run configuration that cannot be used; the message names the key."""


def read_toml(path) -> dict:
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise RunConfigError(f"config file {path}: no such file") from None
    except tomllib.TOMLDecodeError as e:
        raise RunConfigError(f"config file {path}: invalid TOML ({e})") from None


def _parse_value(text: str):
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text  # a bare string


def apply_set(cfg: dict, item: str) -> None:
    """Apply one --set key=value (dotted key; list items by index, e.g. stages.0.epochs=2)."""
    if "=" not in item:
        raise RunConfigError(f"--set {item!r}: expected key=value")
    key, text = item.split("=", 1)
    parts = key.strip().split(".")
    node = cfg
    if not all(parts):
        raise RunConfigError(f"--set {item!r}: expected a dotted key such as stages.0.epochs")
    for i, p in enumerate(parts[:-1]):
        nxt = node[int(p)] if isinstance(node, list) and p.isdigit() and int(p) < len(node) else \
            (node.get(p) if isinstance(node, dict) else None)
        if nxt is None:
            if isinstance(node, dict):
                nxt = node.setdefault(p, {})
            else:
                raise RunConfigError(f"--set {key}: {'.'.join(parts[:i + 1])} does not exist")
        if not isinstance(nxt, (dict, list)):
            raise RunConfigError(f"--set {key}: {'.'.join(parts[:i + 1])} is {nxt!r}, not a table or list")
        node = nxt
    last = parts[-1]
    if isinstance(node, list):
        if not (last.isdigit() and int(last) < len(node)):
            raise RunConfigError(f"--set {key}: index {last} out of range")
        node[int(last)] = _parse_value(text.strip())
    else:
        node[last] = _parse_value(text.strip())


def resolve(config_path=None, sets=()) -> dict:
    """The resolved run configuration: default.toml <- config file <- --set items."""
    cfg = read_toml(DEFAULT_TOML)
    if config_path:
        user = read_toml(config_path)
        for k, v in user.items():  # top-level keys replace the defaults' (a user's [model] replaces the default)
            cfg[k] = v
    cfg = copy.deepcopy(cfg)
    for item in sets:
        apply_set(cfg, item)
    validate(cfg)
    return cfg


def validate(cfg: dict) -> None:
    """Check every key of a resolved run configuration (types exact, ranges, unknown keys anywhere), before
    any work: RunConfigError naming the key, the value and what is expected."""
    _unknown("run config", cfg, TOP_KEYS)
    for k, check in TOP.items():
        if k in cfg:
            check(k, cfg[k])
    model = cfg.get("model", {})
    if "stages" in model:
        raise RunConfigError("model: unknown key 'stages' (a top-level key written after [model] lands inside it: "
                             "move `stages = ...` above the [model] table, or use [[stages]] tables)")
    _unknown("model", model, MODEL_KEYS)
    _table("model.overrides", model.get("overrides", {}))
    for name, o in (model.get("overrides") or {}).items():
        _table(f"model.overrides.{name}", o)
        if "calibration" in o:
            _calibration(f"model.overrides.{name}.calibration", o["calibration"])
    _unknown("quant", cfg.get("quant", {}), CONFIG_FIELDS)
    stages = cfg.get("stages")
    if not isinstance(stages, list) or not stages:
        _bad("stages", stages, "a non-empty list of [[stages]] tables with name, epochs and lr")
    seen = set()
    for i, st in enumerate(stages):
        where = f"stages[{i}]"
        _table(where, st)
        _unknown(where, st, STAGE_KEYS | CONFIG_FIELDS | set(TRAIN_OPTIONS))
        for opt in TRAIN_OPTIONS:
            if opt in st:
                TOP[opt](f"{where}.{opt}", st[opt])
        for req in ("name", "epochs", "lr"):
            if req not in st:
                raise RunConfigError(f"{where}: missing key {req!r}; a stage has name, epochs and lr")
        name = st["name"]
        if not isinstance(name, str) or not STAGE_NAME.match(name):
            _bad(f"{where}.name", name, "1-40 letters, digits, '_' or '-' starting with a letter or digit "
                 "(it names files in the run folder)")
        if name in RESERVED_STAGES:
            _bad(f"{where}.name", name, f"a name other than {sorted(RESERVED_STAGES)} (files of the run folder)")
        if name in seen:
            _bad(f"{where}.name", name, "a name no earlier stage has (each stage writes <name>.h5)")
        seen.add(name)
        _int(f"{where}.epochs", st["epochs"], 1)
        lr = st["lr"]
        if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not math.isfinite(lr) or lr <= 0:
            _bad(f"{where}.lr", lr, "a finite number > 0")


def _check_fields(where: str, d: dict) -> None:
    _unknown(where, d, CONFIG_FIELDS)
    try:
        LayerConfig(**d)
    except (TypeError, ValueError) as e:
        raise RunConfigError(f"{where}: {e}") from None


def build_model(cfg: dict):
    import witnp as wn
    from witnp.layers.registry import LAYER_TYPES, build
    layers = cfg.get("model", {}).get("layers")
    if not isinstance(layers, list) or not layers:
        raise RunConfigError("model.layers: expected a non-empty list of layers ({type = ..., ...})")
    specs = OrderedDict()
    usable = sorted(k for k in LAYER_TYPES if k not in ("Sequential", "Residual", "Branches", "Model", "ArrayLayer",
                                                         "DigitalOp"))
    for i, spec in enumerate(layers):
        _table(f"model.layers[{i}]", spec)
        spec = dict(spec)
        t = spec.pop("type", None)
        if t not in usable:
            close = difflib.get_close_matches(str(t), usable, n=1, cutoff=0.6)
            raise RunConfigError(f"model.layers[{i}]: unknown layer type {t!r}; "
                                 + (f"did you mean {close[0]!r}?" if close else f"expected one of {usable}"))
        params = inspect.signature(LAYER_TYPES[t].__init__).parameters
        _unknown(f"model.layers[{i}] ({t})", spec, [p for p in params if p not in ("self", "config")])
        try:
            specs[str(i)] = build({"type": t, "args": spec, "config": None})
        except (TypeError, ValueError) as e:
            raise RunConfigError(f"model.layers[{i}] ({t}): {e}") from None
    model = wn.Sequential(specs)
    configurable = [name for name, layer in wn.walk(model) if layer.config is not None]
    for name in (cfg.get("model", {}).get("overrides") or {}):
        if name not in configurable:
            close = difflib.get_close_matches(str(name), configurable, n=1, cutoff=0.6)
            raise RunConfigError(f"model.overrides.{name}: the model has no layer {name!r} with a config; "
                                 + (f"did you mean {close[0]!r}?" if close else f"expected one of {configurable}"))
    arrays = [n for n, layer in wn.walk(model) if isinstance(layer, (wn.Linear, wn.Conv2d, wn.ConvTranspose2d))]
    for name in layer_calibration(cfg):
        if name not in arrays:
            raise RunConfigError(f"model.overrides.{name}.calibration: layer {name} is a "
                                 f"{type(dict(wn.walk(model))[name]).__name__}; a strategy calibrates the array "
                                 f"layers (Linear, Conv1d/2d, ConvTranspose2d): {arrays}")
    return model


def layer_calibration(cfg: dict) -> dict:
    """{layer name: "NAME[:P]"} from the model.overrides tables that set `calibration`."""
    return {name: o["calibration"] for name, o in (cfg.get("model", {}).get("overrides") or {}).items()
            if isinstance(o, dict) and "calibration" in o}


def load_data(cfg: dict):
    """The run's dataset with its validation split (`with_validation_split`)."""
    from witnp import _data
    name = cfg.get("data")
    if not isinstance(name, str):
        raise RunConfigError(f"data: expected a dataset name {_data.names()} or a path to an .npz")
    return with_validation_split(cfg, load_dataset(name, "data"))


def task_of(cfg: dict, data):
    """The run's task: the config's `task` checked against the data's labels (or the one they imply), and its
    `loss` checked against the task (and label_smoothing, which only cross-entropy takes)."""
    from witnp.train.tasks import get_task
    try:
        task = get_task(cfg.get("task"), data.y_train)
    except ValueError as e:
        raise RunConfigError(f"task = {cfg.get('task')!r}: {data.name}: {e}") from None
    smoothing = [cfg.get("label_smoothing", 0)] + [st.get("label_smoothing", 0) for st in cfg.get("stages", [])]
    try:
        task.loss(cfg.get("loss"), max(smoothing))
    except ValueError as e:
        raise RunConfigError(f"loss = {cfg.get('loss', task.losses[0])!r}: {e}") from None
    return task


def with_validation_split(cfg: dict, data):
    """data (as loaded) with its validation split: the file's own x_val / y_val win; else val_fraction of the
    training split, seeded by `seed`."""
    from witnp.train.data import with_validation
    try:
        return with_validation(data, cfg.get("val_fraction", 0.0), cfg.get("seed", 0))
    except ValueError as e:
        raise RunConfigError(f"val_fraction: {e}") from None


def load_dataset(name: str, key: str = "--data"):
    """A shipped dataset by name, or an .npz by path; its `source` records which, for the model files."""
    from witnp import _data
    from witnp.train.data import load_npz
    shipped = name in _data.names()
    try:
        return load_npz(_data.path(name), source=name) if shipped else load_npz(name)
    except ValueError as e:
        raise RunConfigError(f"{key}: {e}") from None


def stages_of(cfg: dict):
    from witnp.train.loop import Stage
    quant = dict(cfg.get("quant", {}))
    _check_fields("quant", quant)
    overrides = dict(cfg.get("model", {}).get("overrides", {}) or {})
    overrides = {name: {k: v for k, v in dict(o).items() if k != "calibration"} for name, o in overrides.items()}
    for name, o in overrides.items():
        _check_fields(f"model.overrides.{name}", o)
    validate(cfg)
    out = []
    for i, st in enumerate(cfg["stages"]):
        st = dict(st)
        name, epochs, lr = st.pop("name"), st.pop("epochs"), float(st.pop("lr"))
        options = {k: (st.pop(k) if k in st else cfg[k]) for k in TRAIN_OPTIONS if k in st or k in cfg}
        changes = dict(quant, **st) if st.get("use_quantization") else dict(st)
        _check_fields(f"stages[{i}] ({name})", changes)
        per_layer = overrides if st.get("use_quantization") else {}
        out.append(Stage(name, changes, epochs, lr, per_layer, options))
    return out
