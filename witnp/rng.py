"""witnp's default random generators: one for parameter initialisation, one for noise.

Both are seeded `numpy.random.Generator`s (seed 0 at import). `manual_seed(s)` reseeds both, as
torch.manual_seed does for the vendor's package, so a script that seeds once gets the same weights and the
same noise on every run. Code that needs its own stream passes ``rng=`` explicitly instead.
"""
import numpy as np

__all__ = ["manual_seed", "init_rng", "noise_rng"]

_init = np.random.default_rng(0)
_noise = np.random.default_rng(np.random.SeedSequence(0, spawn_key=(1,)))


def manual_seed(seed: int) -> None:
    """Reseed the initialisation and the noise generators (independent streams derived from `seed`)."""
    global _init, _noise
    _init = np.random.default_rng(np.random.SeedSequence(seed))
    _noise = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(1,)))


def init_rng() -> np.random.Generator:
    """Generator for default parameter initialisation."""
    return _init


def noise_rng() -> np.random.Generator:
    """Generator that forwards called with ``rng=None`` draw their noise from."""
    return _noise
