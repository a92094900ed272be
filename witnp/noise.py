"""Analog noise models (chip.md §6). Noise is drawn only through the generator a forward is given.

The random source contract: a layer draws with ``rng.standard_normal(shape, dtype=np.float32)`` in the
documented order and shapes, so a test can pass a replay object holding the vendor's draws. With
``rng=None`` layers use `witnp.rng.noise_rng()`, a seeded `numpy.random.Generator` that
`witnp.manual_seed` reseeds (as torch.manual_seed does for the vendor's package): same seed, same noise.

Models are pluggable: `register_noise_model(name, cls)`; a model turns a level into a perturbation of
integer-valued arrays and gives its derivative for the backward pass.
"""
from __future__ import annotations

import numbers
from typing import Dict, List, Type

import numpy as np

__all__ = ["NoiseModelBase", "NormalNoise", "register_noise_model", "noise_model", "NOISE_MODELS",
           "UNDEFINED_MODELS", "ChipSource"]


class NoiseModelBase:
    """A noise model at one level: ``apply(m, e)`` perturbs integer-valued `m` with standard draws `e`."""

    name = "base"

    def __init__(self, level: int):
        self.level = int(level)

    @property
    def active(self) -> bool:
        return self.level > 0

    def draw(self, rng, shape) -> np.ndarray:
        """One draw of standard normal noise of `shape`, float32, through the contract call."""
        e = rng.standard_normal(tuple(int(s) for s in shape), dtype=np.float32)
        return np.asarray(e, dtype=np.float32)

    def apply(self, m: np.ndarray, e: np.ndarray) -> np.ndarray:  # pragma: no cover - interface
        raise NotImplementedError

    def derivative(self, m: np.ndarray, e: np.ndarray) -> np.ndarray:  # pragma: no cover - interface
        """d apply(m, e) / d m, element-wise."""
        raise NotImplementedError


class NormalNoise(NoiseModelBase):
    """NORMAL: m + (a·|m| + b)·e with a = f32(0.015605·L), b = f32(0.3145·L) (float64 products, chip.md §6).

    The derivative keeps the a·sign(m)·e term (the vendor's autograd does; detaching the noise does not).
    """

    name = "NORMAL"

    def __init__(self, level: int):
        super().__init__(level)
        self.a = np.float32(0.015605 * self.level)
        self.b = np.float32(0.3145 * self.level)

    def apply(self, m, e):
        m = np.asarray(m, np.float32)
        return m + (self.a * np.abs(m) + self.b) * e

    def derivative(self, m, e):
        return np.float32(1.0) + self.a * np.sign(np.asarray(m, np.float32)) * e


NOISE_MODELS: Dict[str, Type[NoiseModelBase]] = {"NORMAL": NormalNoise}

UNDEFINED_MODELS = ("MBS", "SIMPLE", "ARRMDL")
"""The vendor's other model names: their arithmetic is unknown, so they are refused."""


def register_noise_model(name: str, cls: Type[NoiseModelBase]) -> None:
    """Make `cls` available as LayerConfig(noise_model=name)."""
    if not (isinstance(cls, type) and issubclass(cls, NoiseModelBase)):
        raise TypeError(f"register_noise_model: {cls!r} is not a NoiseModelBase subclass")
    NOISE_MODELS[name] = cls


def noise_model(name: str, level: int) -> NoiseModelBase:
    """An instance of the registered model `name` at `level`."""
    try:
        return NOISE_MODELS[name](level)
    except KeyError:
        raise ValueError(f"noise model {name!r} is not defined; expected one of {sorted(NOISE_MODELS)}") from None


class ChipSource:
    """A random source for `forward(..., rng=)` that gives every forward the same draws: the first forward's
    sequence of standard-normal arrays, replayed. Layers draw their noise in a fixed order of fixed shapes
    (weights and bias rows, whatever the batch), so each forward of a chip sees its one programming error.

    Whatever noise model the layers have (`LayerConfig.noise_model`, `register_noise_model`) turns these draws
    into the error, so a registered model is a chip model too. read_noise r >= 0 adds, on every forward, fresh
    independent draws times r (from the chip's own read generator): with NORMAL, read noise at r times the
    programming error's level, on top of it (the draw's std becomes sqrt(1 + r²))."""

    @staticmethod
    def check_read_noise(read_noise) -> float:
        """read_noise as a float, or ValueError unless a finite number >= 0."""
        r = float(read_noise) if isinstance(read_noise, numbers.Real) and not isinstance(read_noise, bool) else -1.0
        if not (r >= 0 and np.isfinite(r)):
            raise ValueError(f"ChipSource: read_noise={read_noise!r}; expected a finite number >= 0 (0: no read "
                             f"noise, 1: as large as the programming error)")
        return r

    def __init__(self, seed: int, read_noise: float = 0.0):
        r = self.check_read_noise(read_noise)
        self.seed = int(seed)
        self.read_noise = r
        self._gen = np.random.default_rng(self.seed)
        self._reads = np.random.default_rng([self.seed, 1]) if r else None
        self._draws: List[np.ndarray] = []
        self._i = 0

    def begin_forward(self) -> "ChipSource":
        self._i = 0
        return self

    def standard_normal(self, size=None, dtype=np.float32):
        if self._i < len(self._draws):
            a = self._draws[self._i]
            if a.shape != tuple(np.atleast_1d(size)) or a.dtype != np.dtype(dtype):
                raise ValueError(f"chip (seed {self.seed}): draw {self._i} asked {size} {np.dtype(dtype)}, "
                                 f"the chip holds {a.shape} {a.dtype}: a layer draws noise that depends on its input")
        else:
            a = self._gen.standard_normal(size, dtype=dtype)
            self._draws.append(a)
        self._i += 1
        if self._reads is None:
            return a.copy()
        return (a + a.dtype.type(self.read_noise) * self._reads.standard_normal(size, dtype=dtype)).astype(a.dtype)
