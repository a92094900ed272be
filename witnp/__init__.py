"""witnp: training for analog compute-in-memory chips (WTM2101 class) with NumPy and Numba only.

Layers compute exactly what the chip computes (quantization, bit split, negative-input handling, noise),
with hand-written backward passes. See the README and docs/ for the arithmetic and the API.

`import witnp` is cheap: the public names below load their modules on first use (PEP 562), so the command
line starts without importing Numba until a command needs a kernel.
"""
import importlib as _importlib
import importlib.abc as _abc
import importlib.util as _util
import sys as _sys

__version__ = "0.1.0"

_LAYERS = ["Layer", "ArrayLayer", "Linear", "Conv1d", "Conv2d", "ConvTranspose2d", "DigitalOp", "ReLU", "GELU",
           "Sigmoid", "Tanh", "PReLU", "Sqrt", "Mean", "Add", "Mul", "Divide", "Cat", "BatchNorm1d", "BatchNorm2d", "Flatten",
           "Reshape", "Dropout", "MaxPool2d", "AvgPool2d", "GRU", "GRUCell", "Model", "Sequential", "Residual",
           "Branches", "walk"]
# public name -> the module (relative to witnp) that defines it
_NAMES = {**{n: ".layers" for n in _LAYERS},
          **{n: ".config" for n in ("LayerConfig", "HandleNegInType", "NoiseModel", "PRESETS", "preset",
                                    "get_default_config", "set_default_config", "default_config")},
          "CrossEntropyLoss": ".train.losses", "MSELoss": ".train.losses",
          "save": ".handoff.model_file", "load": ".handoff.model_file", "load_checkpoint": ".handoff.model_file",
          "ModelFileError": ".errors", "NonFiniteError": ".errors",
          **{n: ".layers.vendor" for n in ("WitinLinear", "WitinConv2d", "WitinConvTranspose2d", "WitinGruCell",
                                            "WitinElementAdd", "WitinElementMul", "WitinElementDivide", "WitinGELU",
                                            "WitinSigmoid", "WitinTanh", "WitinPReLU", "WitinSqrt", "WitinMean",
                                            "WitinCat", "WitinBatchNorm2d")},
          "manual_seed": ".rng", "register_noise_model": ".noise", "keep_freed_memory": ".memory",
          "set_threads": ".threads"}
# public submodules; optim and losses kept their names from before the training package
_MODULES = {"kernels": ".kernels", "quant": ".quant", "train": ".train", "layers": ".layers", "array": ".array",
            "handoff": ".handoff", "analysis": ".analysis", "config": ".config", "noise": ".noise", "rng": ".rng",
            "memory": ".memory",
            "threads": ".threads", "errors": ".errors", "optim": ".train.optim", "losses": ".train.losses"}

__all__ = sorted(set(_NAMES) | {"losses", "optim", "__version__"})


def __getattr__(name):
    if name in _MODULES:
        value = _importlib.import_module(_MODULES[name], __name__)
    elif name in _NAMES:
        value = getattr(_importlib.import_module(_NAMES[name], __name__), name)
    else:
        raise AttributeError(f"module 'witnp' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_NAMES) | set(_MODULES))


class _Alias(_abc.MetaPathFinder, _abc.Loader):
    """`import witnp.optim` / `witnp.losses`: the modules of witnp.train under their earlier names."""
    ALIASES = {__name__ + ".optim": __name__ + ".train.optim", __name__ + ".losses": __name__ + ".train.losses"}

    def find_spec(self, fullname, path=None, target=None):
        return _util.spec_from_loader(fullname, self) if fullname in self.ALIASES else None

    def create_module(self, spec):
        return _importlib.import_module(self.ALIASES[spec.name])

    def exec_module(self, module):
        pass


if not any(isinstance(f, _Alias) for f in _sys.meta_path):
    _sys.meta_path.append(_Alias())
