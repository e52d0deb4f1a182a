"""Exceptions of bayes_ising.

Every error caused by the user's input (a file, a flag, a value) is a :class:`BayesIsingError`;
the CLI turns it into exit code 2 and a one-line message, everything else into exit code 1.
"""

__all__ = [
    "BayesIsingError",
    "DataError",
    "TooManyNeuronsError",
    "ModelSpecError",
    "Float64Error",
    "ExistingOutputError",
    "ModelCheckError",
]


class BayesIsingError(ValueError):
    """Base class: bad input or usage, explained in one line."""


class DataError(BayesIsingError):
    """Spike data that cannot be used as given (NaN, non-binary values, bad epochs, ...)."""


class TooManyNeuronsError(BayesIsingError):
    """N too large for exact enumeration of all 2^N states."""


class ModelSpecError(BayesIsingError):
    """A model specification (TOML) with unknown keys or impossible values."""


class Float64Error(BayesIsingError):
    """An exact routine was called with JAX float64 switched off."""


class ExistingOutputError(BayesIsingError):
    """An output file exists and ``force`` was not given."""


class ModelCheckError(BayesIsingError):
    """A fitted model (e.g. the centre of a pseudo-posterior adjustment) that, simulated, does
    not reproduce the data's means and correlations; the message says what failed and what to
    try."""
