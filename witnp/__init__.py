"""witnp: training for analog compute-in-memory chips (WTM2101 class) with NumPy and Numba only.

Layers compute exactly what the chip computes (quantization, bit split, negative-input handling, noise),
with hand-written backward passes. See the README and docs/ for the arithmetic and the API.
"""
import sys as _sys

from . import kernels  # noqa: F401  (witnp.kernels, mapped from the top-level kernels/ folder)
from .config import (PRESETS, HandleNegInType, LayerConfig, NoiseModel, default_config, get_default_config, preset,
                     set_default_config)
from . import quant, train  # noqa: F401
from .train import losses, optim
from .layers import *  # noqa: F401,F403
from .layers import __all__ as _layers_all
from .layers.vendor import WitinConv2d, WitinConvTranspose2d, WitinLinear
from .handoff.model_file import ModelFileError, load, load_checkpoint, save
from .train.losses import CrossEntropyLoss, MSELoss
from .memory import keep_freed_memory
from .noise import register_noise_model
from .rng import manual_seed

# `import witnp.optim` / `witnp.losses` (their names before the training package) keep working
_sys.modules[__name__ + ".optim"] = optim
_sys.modules[__name__ + ".losses"] = losses

__version__ = "0.1.0"

__all__ = ["LayerConfig", "HandleNegInType", "NoiseModel", "PRESETS", "preset", "get_default_config",
           "set_default_config", "default_config", "CrossEntropyLoss", "MSELoss", "losses", "optim",
           "save", "load", "load_checkpoint", "ModelFileError",
           "WitinLinear", "WitinConv2d",
           "WitinConvTranspose2d", "manual_seed",
           "register_noise_model", "keep_freed_memory", "__version__"] + list(_layers_all)
