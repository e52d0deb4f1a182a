"""The study's task functions: one fit or one analysis each, writing one result file.

Each ``run_<kind>(task, out_dir, progress)`` reads the study's data (``DIR/data.npz``) and the
posteriors of the tasks it depends on, and writes ``DIR/<task.path>`` atomically with the
task's key inside (see :mod:`bayes_ising.pipeline.plan`). They are pure wiring of the library's
functions: :func:`bayes_ising.fit.bayes.fit_posterior`,
:func:`bayes_ising.analysis.diagnostics.diagnose`,
:func:`bayes_ising.analysis.checks.posterior_predictive_checks`, the thermodynamics of
:mod:`bayes_ising.analysis.thermo`, :func:`bayes_ising.analysis.comparison.compare_mle` and the
cross-fit
analyses of :mod:`bayes_ising.analysis.analyses`.
"""

import json

import numpy as np

from bayes_ising.pipeline.plan import _rng_key, _task_data, _write_task_result, task_path

__all__ = ["RUNNERS", "run_fit", "run_checks", "run_thermo", "run_compare", "run_ei",
           "run_states", "run_families", "validity", "walk_budget"]


def _fit_tree(out_dir, state, population, key):
    from bayes_ising.fit import bayes

    return bayes.load_posterior(out_dir / task_path("fit", state, population, key))


def run_fit(task, out_dir, progress=False):
    """The posterior of one state × population (likelihood as planned, reason recorded)."""
    from bayes_ising._io import to_jsonable
    from bayes_ising.fit import bayes
    from bayes_ising.fit.model_spec import ModelSpec

    p = task.params
    data = _task_data(task, out_dir, population=task.population, neurons=p["neurons"])
    spec = ModelSpec.from_json(json.dumps(p["spec"]))
    tree = bayes.fit_posterior(
        _rng_key(task), data, spec, likelihood=p["likelihood"], adjust=p["adjust"],
        num_chains=p["num_chains"], num_draws=p["num_draws"], num_warmup=p["num_warmup"],
        progress=progress)
    p_fire = data.firing_probability
    tree.attrs.update(
        study_key=task.key, study_task=json.dumps(to_jsonable(task.name)),
        study_state=task.state, study_population=task.population,
        likelihood_reason=p["likelihood_reason"],
        silent_neurons=json.dumps([str(v) for v in data.neuron_ids[p_fire == 0]]),
        always_active_neurons=json.dumps([str(v) for v in data.neuron_ids[p_fire == 1]]))
    bayes.save_posterior(tree, out_dir / task.path, force=True)


def _posterior_mean(tree):
    from bayes_ising.fit.posterior import posterior_draws

    h, J = posterior_draws(tree)
    return h.mean(axis=0), J.mean(axis=0)


def validity(rng_key, tree, spins, diagnosis):
    """Does the fitted model reproduce the data when simulated? -> {valid, verdict, source}.

    The diagnostics' own verdict when they give one (``diagnosis["valid"]``); else the fit's
    stored model check (pseudo-posteriors); else the model check
    (:func:`bayes_ising.fit.validity.model_check`) of the posterior-mean model: Gibbs chains
    from
    random and data starts against the data's means and connected correlations.
    """
    if "valid" in diagnosis:  # diagnostics.posterior_validity: one rule for every verb
        return dict(valid=bool(diagnosis["valid"]), source="diagnostics",
                    verdict=str(diagnosis.get("validity_reason", "")),
                    reason=str(diagnosis.get("verdict", "")))
    stored = tree.attrs.get("model_check")
    if stored:
        check = json.loads(stored) if isinstance(stored, str) else dict(stored)
        verdict = str(check.get("verdict", "unknown"))
        return dict(valid=verdict == "ok", verdict=verdict, source="fit (model_check)",
                    reason=check.get("reason"))
    try:
        from bayes_ising.fit.validity import model_check
    except ImportError:  # pragma: no cover - before the validity module
        from bayes_ising.fit.mle import model_check
    h, J = _posterior_mean(tree)
    check = model_check(rng_key, h, J, spins)
    verdict = str(check.get("verdict", "unknown"))
    return dict(valid=verdict == "ok", verdict=verdict, reason=check.get("reason"),
                source="model check of the posterior mean", details=check)


def run_checks(task, out_dir, progress=False):
    """Diagnostics, predictive checks (P(K), patterns, third order), information, validity."""
    import jax

    from bayes_ising.analysis import checks, diagnostics

    p = task.params
    tree = _fit_tree(out_dir, task.state, task.population, task.deps[0])
    data = _task_data(task, out_dir, tree=tree)
    diagnosis = diagnostics.diagnose(tree)
    diagnosis.pop("parameters", None)
    key_checks, key_valid = jax.random.split(_rng_key(task))
    result = checks.posterior_predictive_checks(
        key_checks, tree, data.spins, num_draws=p["posterior_draws"],
        num_samples=p["check_samples"], third_order_draws=p["third_order_draws"],
        prob=p["interval"])
    _write_task_result(task, out_dir, dict(
        diagnostics=diagnosis, checks=result,
        validity=validity(key_valid, tree, data.spins, diagnosis)))


def fit_thermodynamics(rng_key, tree, spins, p):
    """C(T)/N, S(T)/N, T*, C_max/N with posterior bands, and the shuffled-data control
    (:func:`bayes_ising.analysis.thermo.fit_thermodynamics`, with the study's sampler settings: a
    Gibbs
    run too short for its autocorrelation times is reported in the result's warnings)."""
    from bayes_ising.analysis import thermo

    result = thermo.fit_thermodynamics(
        rng_key, tree, spins, temperatures=thermo.parse_temperatures(p["temperatures"]),
        num_posterior_draws=p["thermo_draws"], interval=p["interval"],
        num_chains=p["thermo_chains"], max_sweeps=p["thermo_sweeps"],
        burn_in=p["thermo_burn_in"], on_short_run="warn")
    return result.to_dict(interval=p["interval"])


def run_thermo(task, out_dir, progress=False):
    """Thermodynamics of one fit: bands over posterior draws and the shuffled control."""
    tree = _fit_tree(out_dir, task.state, task.population, task.deps[0])
    data = _task_data(task, out_dir, tree=tree)
    result = fit_thermodynamics(_rng_key(task), tree, np.asarray(data.spins), task.params)
    _write_task_result(task, out_dir, result)


def run_compare(task, out_dir, progress=False):
    """The study's method (MLE + adaptive-Metropolis walk + restart cosine) vs the posterior."""
    from bayes_ising.analysis.comparison import compare_mle

    p = task.params
    tree = _fit_tree(out_dir, task.state, task.population, task.deps[0])
    data = _task_data(task, out_dir, tree=tree)
    result = compare_mle(_rng_key(task), tree, data, walk_draws=p["walk_draws"],
                         max_walk_seconds=walk_budget(tree, p["walk_seconds"]),
                         num_restarts=p["num_restarts"], interval=p["interval"])
    _write_task_result(task, out_dir, result)


def walk_budget(tree, walk_seconds):
    """The walks' time budget (s): ``walk_seconds``, or (None) the posterior's own sampling
    time, at least :data:`~bayes_ising.pipeline.plan.MIN_WALK_SECONDS` (equal cost)."""
    from bayes_ising.analysis.comparison import nuts_time
    from bayes_ising.pipeline.plan import MIN_WALK_SECONDS

    if walk_seconds is not None:
        return float(walk_seconds)
    return max(MIN_WALK_SECONDS, nuts_time(tree) or 0.0)


def run_ei(task, out_dir, progress=False):
    """Population-only vs E+I: P(K_A ≥ k) of both posteriors against the data, per state."""
    from bayes_ising.analysis.analyses import ei_posterior_comparison

    p = task.params
    population_tree = _fit_tree(out_dir, task.state, task.population, task.deps[0])
    joint_tree = _fit_tree(out_dir, task.state, p["joint"], task.deps[1])
    data = _task_data(task, out_dir, tree=joint_tree)
    result = ei_posterior_comparison(
        _rng_key(task), data, population_tree, joint_tree, num_draws=p["posterior_draws"],
        tail=p["tail"], num_bootstrap=p["num_bootstrap"], prob=p["interval"],
        num_samples=p["check_samples"])
    _write_task_result(task, out_dir, result)


def run_states(task, out_dir, progress=False):
    """Couplings and correlations per block across states (joint fits of every state)."""
    from bayes_ising.analysis.analyses import state_posterior_comparison

    p = task.params
    fits = {}
    for state, key in zip(p["states"], task.deps, strict=True):
        tree = _fit_tree(out_dir, state, task.population, key)
        fits[state] = (tree, _task_data(task, out_dir, state=state, tree=tree))
    result = state_posterior_comparison(_rng_key(task), fits, num_draws=p["posterior_draws"],
                                        num_bootstrap=p["num_bootstrap"], prob=p["interval"])
    _write_task_result(task, out_dir, result)


def run_families(task, out_dir, progress=False):
    """Independent vs pairwise vs K-pairwise on one fit's data: PSIS-LOO of the exact
    posteriors (``method`` "loo", N ≤ 22) or blocked held-out pseudolikelihood of the
    pseudo-posteriors ("held_out", :func:`~bayes_ising.analysis.families.compare_pseudo_families`).
    """
    from bayes_ising.analysis import families
    from bayes_ising.fit.model_spec import ModelSpec

    p = task.params
    method = p.get("method", "loo")
    if method not in families.CRITERIA:
        raise ValueError(f"families task: method must be one of {', '.join(families.CRITERIA)}, "
                         f"got {method!r}")
    data = _task_data(task, out_dir, population=task.population, neurons=p["neurons"])
    spins = np.asarray(data.spins)
    sampler = dict(rng_key=int(task.key[:7], 16) + p["seed"], check_draws=p["check_draws"],
                   spec=ModelSpec.from_json(json.dumps(p["spec"])), num_chains=p["num_chains"],
                   num_draws=p["num_draws"], num_warmup=p["num_warmup"])
    if method == "loo":
        summary = families.comparison_summary(
            families.compare_families(spins, tuple(p["families"]), **sampler))
    else:
        summary = families.compare_pseudo_families(
            spins, tuple(p["families"]), num_blocks=p["held_out_blocks"], **sampler)
        summary["caveat"] = f"{families.CRITERIA[method]}; {summary['caveat']}"
    summary.update(method=method, criterion=families.CRITERIA[method],
                   num_neurons=int(spins.shape[1]), num_bins=int(spins.shape[0]))
    _write_task_result(task, out_dir, summary)


RUNNERS = {"fit": run_fit, "checks": run_checks, "thermo": run_thermo, "compare": run_compare,
           "ei": run_ei, "states": run_states, "families": run_families}
