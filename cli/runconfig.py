"""Run configuration of `witnp train`: the shipped default.toml, a user's TOML file, then --set overrides;
validated into a model, a dataset and stages, with errors that name the key and what was expected."""
from __future__ import annotations

import copy
import os
import tomllib
from collections import OrderedDict

import witnp as wn
from witnp.config import LayerConfig
from witnp.train.data import load_npz
from witnp.layers.registry import LAYER_TYPES, build
from witnp.train.loop import Stage

DEFAULT_TOML = os.path.join(os.path.dirname(os.path.abspath(__file__)), "default.toml")
TOP_KEYS = {"seed", "data", "out", "batch_size", "optimizer", "patience", "noise_level", "noise_seeds", "quant",
            "model", "stages"}
CONFIG_FIELDS = {f for f in LayerConfig.__dataclass_fields__} | {"auto_scale_updata_step"}


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
    for i, p in enumerate(parts[:-1]):
        nxt = node[int(p)] if isinstance(node, list) and p.isdigit() and int(p) < len(node) else \
            (node.get(p) if isinstance(node, dict) else None)
        if nxt is None:
            if isinstance(node, dict):
                nxt = node.setdefault(p, {})
            else:
                raise RunConfigError(f"--set {key}: {'.'.join(parts[:i + 1])} does not exist")
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
    unknown = sorted(set(cfg) - TOP_KEYS)
    if unknown:
        raise RunConfigError(f"unknown config key(s) {unknown}; expected some of {sorted(TOP_KEYS)}")
    return cfg


def _check_fields(where: str, d: dict) -> None:
    bad = sorted(set(d) - CONFIG_FIELDS)
    if bad:
        raise RunConfigError(f"{where}: unknown LayerConfig field(s) {bad}")
    try:
        LayerConfig(**d)
    except (TypeError, ValueError) as e:
        raise RunConfigError(f"{where}: {e}") from None


def build_model(cfg: dict):
    layers = cfg.get("model", {}).get("layers")
    if not isinstance(layers, list) or not layers:
        raise RunConfigError("model.layers: expected a non-empty list of layers ({type = ..., ...})")
    specs = OrderedDict()
    for i, spec in enumerate(layers):
        spec = dict(spec)
        t = spec.pop("type", None)
        if t not in LAYER_TYPES or t in ("Sequential", "Residual", "Branches", "Model", "ArrayLayer", "DigitalOp"):
            raise RunConfigError(f"model.layers[{i}]: unknown layer type {t!r}; expected one of "
                                 f"{sorted(k for k in LAYER_TYPES if k not in ('Model', 'ArrayLayer', 'DigitalOp'))}")
        try:
            specs[str(i)] = build({"type": t, "args": spec, "config": None})
        except (TypeError, ValueError) as e:
            raise RunConfigError(f"model.layers[{i}] ({t}): {e}") from None
    return wn.Sequential(specs)


def load_data(cfg: dict):
    from witnp import _data
    name = cfg.get("data")
    if not isinstance(name, str):
        raise RunConfigError(f"data: expected a dataset name {_data.names()} or a path to an .npz")
    path = _data.path(name) if (name in _data.names()) else name
    try:
        return load_npz(path)
    except ValueError as e:
        raise RunConfigError(f"data: {e}") from None


def stages_of(cfg: dict):
    quant = dict(cfg.get("quant", {}))
    _check_fields("quant", quant)
    overrides = dict(cfg.get("model", {}).get("overrides", {}) or {})
    for name, o in overrides.items():
        _check_fields(f"model.overrides.{name}", dict(o))
    stages = cfg.get("stages")
    if not isinstance(stages, list) or not stages:
        raise RunConfigError("stages: expected a list of [[stages]] tables with name, epochs and lr")
    out = []
    for i, st in enumerate(stages):
        st = dict(st)
        try:
            name, epochs, lr = str(st.pop("name")), int(st.pop("epochs")), float(st.pop("lr"))
        except (KeyError, TypeError, ValueError):
            raise RunConfigError(f"stages[{i}]: expected name (string), epochs (integer) and lr (number)") from None
        if epochs < 1 or lr <= 0:
            raise RunConfigError(f"stages[{i}] ({name}): epochs must be >= 1 and lr > 0")
        changes = dict(quant, **st) if st.get("use_quantization") else dict(st)
        _check_fields(f"stages[{i}] ({name})", changes)
        per_layer = overrides if st.get("use_quantization") else {}
        out.append(Stage(name, changes, epochs, lr, per_layer))
    return out
