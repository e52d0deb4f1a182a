"""bayes_ising: Bayesian pairwise maximum-entropy (Ising) analysis of neural population spiking.

``import bayes_ising as bi``. float64 is not switched on by importing; call
:func:`enable_x64` (the CLI, notebooks and tests do) before exact enumeration or MLE.
"""

__version__ = "0.1.0"


def enable_x64(enable=True):
    """Switch JAX to float64 (needed by enumeration, MLE and thermodynamic integration)."""
    import jax

    jax.config.update("jax_enable_x64", bool(enable))


def x64_enabled():
    import jax

    return bool(jax.config.jax_enable_x64)
