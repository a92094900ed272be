"""Exception types shared across witnp's packages."""

__all__ = ["NonFiniteError", "ModelFileError", "TrainingDiverged"]


class NonFiniteError(ValueError):
    """An input, activation or gradient holds NaN or inf. A ValueError (bad input to a layer), typed so that
    training can tell divergence from other errors without reading messages."""


class ModelFileError(ValueError):
    """A model file that cannot be used: not HDF5, not witnp's, another schema, or inconsistent."""


class TrainingDiverged(RuntimeError):
    """The loss became NaN or inf; the message names the epoch and batch."""
