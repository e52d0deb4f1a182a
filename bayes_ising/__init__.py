"""bayes_ising: Bayesian pairwise maximum-entropy (Ising) analysis of neural population spiking.

``import bayes_ising as bi``. float64 is not switched on by importing; call
:func:`enable_x64` (the CLI, notebooks and tests do) before exact enumeration or MLE.

Modules (data flows one way): :mod:`~bayes_ising.data` → :mod:`~bayes_ising.stats` →
:mod:`~bayes_ising.ising` → :mod:`~bayes_ising.gibbs` → (:mod:`~bayes_ising.mle` |
:mod:`~bayes_ising.bayes`) → (:mod:`~bayes_ising.diagnostics`, :mod:`~bayes_ising.checks`,
:mod:`~bayes_ising.thermo`) → :mod:`~bayes_ising.report`, :mod:`~bayes_ising.cli`,
:mod:`~bayes_ising.batch`. Submodules are imported on first use (``bi.mle.fit_exact``), so
``import bayes_ising`` stays cheap and does not start JAX.
"""

import importlib

__version__ = "0.1.0"

_SUBMODULES = (
    "analyses", "batch", "bayes", "checks", "comparison", "data", "datasets", "demo",
    "diagnostics", "errors", "gibbs", "ising", "mle", "model_spec", "plots", "posterior",
    "report", "stats", "study_plan", "study_outputs", "synthetic", "thermo",
)
#: top-level names -> the module that defines them
_NAMES = {
    "SpikeData": "data", "load": "data", "to_spins": "data", "Epochs": "data",
    "DataWarning": "data",
    "fit_posterior": "bayes", "load_posterior": "bayes", "save_posterior": "bayes",
    "j_matrix": "posterior", "posterior_draws": "posterior", "load_model_spec": "model_spec",
    "diagnose": "diagnostics", "thermodynamics": "thermo",
    "study": "study_plan", "StudySettings": "study_plan", "read_study": "study_outputs",
}


def enable_x64(enable=True):
    """Switch JAX to float64 (needed by enumeration, MLE and thermodynamic integration)."""
    import jax

    jax.config.update("jax_enable_x64", bool(enable))


def x64_enabled():
    """Whether JAX float64 is on."""
    import jax

    return bool(jax.config.jax_enable_x64)


def __getattr__(name):
    if name in _SUBMODULES:
        return importlib.import_module(f".{name}", __name__)
    if name in _NAMES:
        return getattr(importlib.import_module(f".{_NAMES[name]}", __name__), name)
    raise AttributeError(f"module 'bayes_ising' has no attribute {name!r}")


def __dir__():
    return sorted([*globals(), *_SUBMODULES, *_NAMES])


__all__ = ["enable_x64", "x64_enabled", "__version__", *_SUBMODULES, *_NAMES]
