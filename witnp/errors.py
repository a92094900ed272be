"""Exception types shared across witnp's packages."""

__all__ = ["NonFiniteError"]


class NonFiniteError(ValueError):
    """An input, activation or gradient holds NaN or inf. A ValueError (bad input to a layer), typed so that
    training can tell divergence from other errors without reading messages."""
