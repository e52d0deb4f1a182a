"""bayes_ising: Bayesian pairwise maximum-entropy (Ising) analysis of neural population spiking.

``import bayes_ising as bi``. float64 is not switched on by importing; call
:func:`enable_x64` (the CLI, notebooks and tests do) before exact enumeration or MLE.

Subpackages (each imports only those before it in this list): :mod:`~bayes_ising.core`
(energy, enumeration, Gibbs sampling, statistics, pseudolikelihood, size limits, convergence
rule) → :mod:`~bayes_ising.data` (spike data, loaders, synthetic generators) →
:mod:`~bayes_ising.fit` (posteriors, maximum likelihood, the K-pairwise family, model specs,
the model check, the walk) → :mod:`~bayes_ising.analysis` (diagnostics, predictive checks,
thermodynamics, model families, the MLE comparison, E/I and states) →
:mod:`~bayes_ising.report` → :mod:`~bayes_ising.pipeline` (the study, the batch, the demo) →
:mod:`~bayes_ising.cli`. Submodules are imported on first use under their old short names too
(``bi.mle.fit_exact`` is :mod:`bayes_ising.fit.mle`), so
``import bayes_ising`` stays cheap and does not start JAX.
"""

import importlib

__version__ = "0.1.0"

#: old short module names -> their module in the subpackages (``bi.mle`` works)
_SUBMODULES = {
    "analyses": "analysis.analyses",
    "batch": "pipeline.batch",
    "bayes": "fit.bayes",
    "checks": "analysis.checks",
    "cli": "cli",
    "comparison": "analysis.comparison",
    "convergence": "core.convergence",
    "data": "data",
    "datasets": "data.datasets",
    "demo": "pipeline.demo",
    "diagnostics": "analysis.diagnostics",
    "errors": "errors",
    "fit_data": "fit.fit_data",
    "gibbs": "core.gibbs",
    "ising": "core.ising",
    "kpairwise": "core.kpairwise",
    "kpairwise_fit": "fit.kpairwise_fit",
    "limits": "core.limits",
    "mle": "fit.mle",
    "model_spec": "fit.model_spec",
    "plots": "report.plots",
    "posterior": "fit.posterior",
    "provenance": "fit.provenance",
    "pseudolikelihood": "core.pseudolikelihood",
    "report": "report",
    "report_study": "report.study",
    "stats": "core.stats",
    "study_outputs": "pipeline.outputs",
    "study_plan": "pipeline.plan",
    "study_tables": "pipeline.tables",
    "study_tasks": "pipeline.tasks",
    "synthetic": "data.synthetic",
    "thermo": "analysis.thermo",
    "validity": "fit.validity",
    "walk": "fit.walk",
}
#: top-level names -> the module that defines them
_NAMES = {
    "SpikeData": "data", "load": "data", "to_spins": "data", "Epochs": "data",
    "DataWarning": "data",
    "FitData": "fit.fit_data", "as_fit_data": "fit.fit_data",
    "fit_posterior": "fit.bayes", "load_posterior": "fit.bayes", "save_posterior": "fit.bayes",
    "j_matrix": "fit.posterior", "posterior_draws": "fit.posterior",
    "load_model_spec": "fit.model_spec",
    "diagnose": "analysis.diagnostics", "thermodynamics": "analysis.thermo",
    "study": "pipeline.plan", "StudySettings": "pipeline.plan", "read_study": "pipeline.outputs",
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
        return importlib.import_module(f".{_SUBMODULES[name]}", __name__)
    if name in _NAMES:
        return getattr(importlib.import_module(f".{_NAMES[name]}", __name__), name)
    raise AttributeError(f"module 'bayes_ising' has no attribute {name!r}")


def __dir__():
    return sorted([*globals(), *_SUBMODULES, *_NAMES])


__all__ = ["enable_x64", "x64_enabled", "__version__", *_SUBMODULES, *_NAMES]
