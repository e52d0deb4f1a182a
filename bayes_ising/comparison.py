r"""Maximum likelihood (the study's way) against the Bayesian posterior, parameter by parameter.

The study's way: fit the MLE (exact moment matching for small N, pseudolikelihood otherwise),
then run an adaptive-Metropolis random walk (Haario et al. 2001) on the same likelihood around
the MLE and read intervals off its draws; judge each neuron by the cosine similarity of its
parameter vector across optimiser restarts, and by the ≥ 5% firing rule. The Bayesian way:
NUTS draws of the posterior and the diagnostics' per-neuron flags.

:func:`compare_mle` puts both side by side and returns the CMP.json layout:

``neurons``, ``cell_types``
    the neuron ids (and cell types) shared by the posterior and the data.
``interval``
    probability of the central intervals (0.9 by default).
``parameters``
    columns over the N + N(N−1)/2 parameters in :func:`bayes_ising.ising.pack` order (h, then
    J_ij for i<j in ``np.triu_indices`` order): ``name``, ``kind`` ("h"/"J"), ``i``, ``j``
    (−1 for h), ``mle``, ``mle_lower``, ``mle_upper`` (adaptive-Metropolis interval),
    ``bayes_mean``, ``bayes_lower``, ``bayes_upper`` (NUTS interval).
``summary``
    per kind (``h_…``, ``J_…``): ``median_width_ratio`` = median over parameters of
    (adaptive-Metropolis width / NUTS width); ``fraction_mle_in_bayes_interval``;
    ``fraction_intervals_overlap``; ``correlation`` of MLE and posterior mean; ``rms_difference``.
``flagged``
    ``neurons``, per-neuron booleans ``diagnostics``, ``cosine`` (fails the restart
    cosine-similarity cut), ``firing_threshold`` (fires in < 5% of bins), the
    ``cosine_similarity`` values and ``agreement`` counts (from
    :func:`bayes_ising.diagnostics.compare_rules`: both / neither / only_first / only_second).
``timing``
    seconds: ``mle_fit_s``, ``adaptive_metropolis_s``, ``restarts_s``, ``mle_total_s`` and
    ``nuts_s`` (from the posterior's attributes; ``None`` when it did not record it).
``mle``, ``adaptive_metropolis``, ``settings``
    how the MLE side was run (method, moment errors, warnings, number of draws, acceptance).
"""

import time
import warnings

import numpy as np

from . import posterior
from .errors import DataError

__all__ = ["compare_mle", "posterior_intervals", "interval_agreement", "nuts_time"]

#: attributes of a posterior where the NUTS wall time may be recorded, in order of preference
_TIME_ATTRS = ("sampling_time_s", "wall_time_s", "sampling_time", "run_time_s")


def posterior_intervals(tree, interval=0.9):
    """Posterior mean and central interval of every parameter, in ``ising.pack`` order.

    Returns
    -------
    dict with ``neuron_ids`` (N,), ``mean``, ``lower``, ``upper`` (N + N(N−1)/2,) and
    ``seconds`` (NUTS wall time from the attributes, or None).
    """
    draws = posterior.packed_draws(tree)
    tail = (1 - interval) / 2
    lower, upper = np.quantile(draws, [tail, 1 - tail], axis=0)
    return {"neuron_ids": posterior.neuron_ids(tree), "cell_types": posterior.cell_types(tree),
            "mean": draws.mean(axis=0), "lower": lower, "upper": upper,
            "seconds": nuts_time(tree)}


def nuts_time(tree):
    """The NUTS wall time (s) recorded in the posterior's attributes, or None."""
    attrs = dict(getattr(tree, "attrs", {}) or {})
    for group in ("posterior", "sample_stats"):
        try:
            attrs.update({k: v for k, v in tree[group].attrs.items() if k not in attrs})
        except (KeyError, AttributeError):
            pass
    for key in _TIME_ATTRS:
        if attrs.get(key) is not None:
            try:
                return float(attrs[key])
            except (TypeError, ValueError):
                continue
    return None


def interval_agreement(estimate, lower_a, upper_a, lower_b, upper_b, kind):
    """Summary numbers of two sets of intervals (a = MLE/adaptive Metropolis, b = NUTS).

    Returns a dict with, for each ``kind`` value (h, J): ``median_width_ratio`` (width a /
    width b), ``fraction_mle_in_bayes_interval`` (``estimate`` inside b),
    ``fraction_intervals_overlap``, and the number of parameters.
    """
    out = {}
    kind = np.asarray(kind)
    width_a = np.asarray(upper_a) - np.asarray(lower_a)
    width_b = np.asarray(upper_b) - np.asarray(lower_b)
    inside = (np.asarray(estimate) >= lower_b) & (np.asarray(estimate) <= upper_b)
    overlap = (np.asarray(lower_a) <= upper_b) & (np.asarray(lower_b) <= upper_a)
    for name in ("h", "J"):
        sel = kind == name
        if not sel.any():
            continue
        ratio = width_a[sel] / np.where(width_b[sel] > 0, width_b[sel], np.nan)
        out[f"{name}_num_parameters"] = int(sel.sum())
        out[f"{name}_median_width_ratio"] = float(np.nanmedian(ratio)) if np.any(
            np.isfinite(ratio)) else None
        out[f"{name}_fraction_mle_in_bayes_interval"] = float(inside[sel].mean())
        out[f"{name}_fraction_intervals_overlap"] = float(overlap[sel].mean())
    return out


def _log_density(spins, method, l2):
    """log L(θ) (exact, from the moments) or log PL(θ) (unique patterns), minus the L2 term.

    The L2 term is the one of the MLE fit (``l2/2 · Σ_{i<j} J_ij²`` per bin, times T), so the
    adaptive-Metropolis walk explores the same objective the MLE maximised.
    """
    import jax
    import jax.numpy as jnp

    from . import ising, stats

    num_bins, num_neurons = spins.shape
    num_h = num_neurons
    if method == "exact":
        moments = stats.moments(spins)

        def log_likelihood(theta):
            h, J = ising.unpack(theta, num_neurons)
            return ising.exact_log_likelihood(h, J, moments)
    else:
        patterns, counts = stats.unique_patterns(spins)
        patterns = jnp.asarray(patterns)
        counts = jnp.asarray(counts)

        def log_likelihood(theta):
            h, J = ising.unpack(theta, num_neurons)
            return ising.log_pseudolikelihood(h, J, patterns, counts)

    def logdensity_fn(theta):
        penalty = 0.5 * l2 * num_bins * jnp.sum(theta[num_h:] ** 2)
        return log_likelihood(theta) - penalty

    return jax.jit(logdensity_fn)


def _adaptive_metropolis_draws(rng_key, spins, fit, method, l2, num_draws):
    """Draws (D, P) of the adaptive-Metropolis walk started at the MLE, and its info.

    Exact: :func:`bayes_ising.mle.mle_parameter_draws` (the study's method, proposal started
    from the inverse Fisher information). Pseudo: :func:`bayes_ising.mle.adaptive_metropolis`
    on the log pseudolikelihood, with the inverse Hessian at the MLE as the initial proposal
    covariance (scaled by 2.38²/d) and as many warmup steps as draws.
    """
    import jax
    import jax.numpy as jnp

    from . import mle

    if method == "exact":
        result = mle.mle_parameter_draws(rng_key, spins, fit, num_draws=num_draws, l2=l2)
        info = {"acceptance_rate": float(result["acceptance_rate"]),
                "warnings": list(result.get("warnings") or [])}
        return np.asarray(result["draws"]), info
    logdensity_fn = _log_density(spins, method, l2)
    theta = jnp.asarray(fit.theta, jnp.float64)
    hessian = -np.asarray(jax.hessian(logdensity_fn)(theta))
    hessian = 0.5 * (hessian + hessian.T)
    eigenvalues, eigenvectors = np.linalg.eigh(hessian)
    eigenvalues = np.maximum(eigenvalues, 1e-6 * max(float(eigenvalues.max()), 1e-12))
    covariance = (eigenvectors / eigenvalues) @ eigenvectors.T
    scale = 2.38**2 / theta.shape[0]
    draws, info = mle.adaptive_metropolis(
        rng_key, logdensity_fn, theta, num_draws, initial_covariance=scale * covariance,
        num_warmup=num_draws, return_info=True)
    return np.asarray(draws), {"acceptance_rate": float(info.acceptance_rate), "warnings": []}


def compare_mle(rng_key, tree, data, *, method="auto", l2=0.0, num_draws=4000,
                num_restarts=5, interval=0.9, diagnosis=None, firing_threshold=0.05):
    """Compare MLE + adaptive-Metropolis intervals with the NUTS posterior (CMP.json layout).

    Parameters
    ----------
    rng_key : JAX PRNG key (split for the adaptive Metropolis and the restarts)
    tree : posterior DataTree (``bayes.fit_posterior``)
    data : SpikeData (or a (num_bins, N) ±1 array) holding at least the posterior's neurons
    method : "exact", "pseudo" or "auto" (exact when N ≤ ``ising.MAX_EXACT_NEURONS`` and the
        posterior used the exact likelihood, else pseudo)
    l2 : L2 penalty of the MLE (0: plain MLE)
    num_draws : adaptive-Metropolis draws (after its own burn-in)
    num_restarts : optimiser restarts for the cosine-similarity verdict (0 skips it)
    interval : central interval probability for both methods
    diagnosis : :func:`bayes_ising.diagnostics.diagnose` of ``tree`` (computed when None)
    firing_threshold : the study's firing rule (fraction of bins)

    Returns
    -------
    dict — see the module docstring.
    """
    import jax

    from . import diagnostics, ising, mle

    started = time.perf_counter()
    bayes = posterior_intervals(tree, interval)
    ids = bayes["neuron_ids"]
    aligned = posterior.align(tree, data)
    spins = np.asarray(getattr(aligned, "spins", aligned))
    num_neurons = len(ids)
    if method == "auto":
        likelihood = str(getattr(tree, "attrs", {}).get("likelihood", "exact"))
        method = ("exact" if num_neurons <= ising.MAX_EXACT_NEURONS and likelihood == "exact"
                  else "pseudo")
    if method not in ("exact", "pseudo"):
        raise DataError(f"method must be 'exact', 'pseudo' or 'auto', not {method!r}")
    if method == "exact":
        ising.check_exact(num_neurons, "compare-mle --method exact")
    key_walk, key_restarts = jax.random.split(rng_key)

    with warnings.catch_warnings():
        # the MLE's warnings (boundary pairs, ...) are kept in the result ("mle"/"warnings")
        warnings.simplefilter("ignore", mle.MLEWarning)
        t0 = time.perf_counter()
        fit = (mle.fit_exact(spins, l2=l2, neuron_ids=ids) if method == "exact"
               else mle.fit_pseudo(spins, l2=l2, neuron_ids=ids))
        mle_fit_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        draws, walk_info = _adaptive_metropolis_draws(key_walk, spins, fit, method, l2,
                                                      num_draws)
        adaptive_s = time.perf_counter() - t0
    tail = (1 - interval) / 2
    mle_lower, mle_upper = np.quantile(draws, [tail, 1 - tail], axis=0)

    restarts_s = None
    cosine = None
    cosine_flagged = None
    if num_restarts and num_restarts > 1:
        t0 = time.perf_counter()
        table = mle.restart_reliability(key_restarts, spins, num_restarts=num_restarts,
                                        threshold=firing_threshold, l2=l2)
        restarts_s = time.perf_counter() - t0
        cosine, cosine_flagged = _restart_verdict(table, num_neurons)
    kept = np.asarray(mle.firing_threshold_rule(spins, threshold=firing_threshold), dtype=bool)
    firing_flagged = ~kept

    if diagnosis is None:
        diagnosis = diagnostics.diagnose(tree)
    rules = diagnostics.compare_rules(diagnosis, restart_flagged=cosine_flagged,
                                      firing_flagged=firing_flagged)
    diag_flagged = [bool(row["flagged"]) for row in diagnosis["neurons"]]

    theta = np.asarray(fit.theta)
    first, second = np.triu_indices(num_neurons, 1)
    kind = ["h"] * num_neurons + ["J"] * first.size
    names = [f"h[{n}]" for n in ids] + [f"J[{ids[a]},{ids[b]}]" for a, b in
                                        zip(first, second, strict=True)]
    summary = interval_agreement(theta, mle_lower, mle_upper, bayes["lower"], bayes["upper"],
                                 kind)
    for name, sel in (("h", slice(0, num_neurons)), ("J", slice(num_neurons, None))):
        if theta[sel].size > 1:
            summary[f"{name}_correlation"] = float(np.corrcoef(theta[sel],
                                                               bayes["mean"][sel])[0, 1])
        summary[f"{name}_rms_difference"] = float(np.sqrt(np.mean(
            (theta[sel] - bayes["mean"][sel]) ** 2))) if theta[sel].size else None
    mle_total = mle_fit_s + adaptive_s + (restarts_s or 0.0)
    return {
        "neurons": [str(n) for n in ids],
        "cell_types": None if bayes["cell_types"] is None else [str(t) for t in
                                                                bayes["cell_types"]],
        "interval": interval,
        "parameters": {
            "name": names, "kind": kind,
            "i": list(range(num_neurons)) + first.tolist(),
            "j": [-1] * num_neurons + second.tolist(),
            "mle": theta, "mle_lower": mle_lower, "mle_upper": mle_upper,
            "bayes_mean": bayes["mean"], "bayes_lower": bayes["lower"],
            "bayes_upper": bayes["upper"],
        },
        "summary": summary,
        "flagged": {
            "neurons": [str(n) for n in ids], "diagnostics": diag_flagged,
            "cosine": None if cosine_flagged is None else [bool(v) for v in cosine_flagged],
            "cosine_similarity": None if cosine is None else [float(v) for v in cosine],
            "firing_threshold": [bool(v) for v in firing_flagged],
            "agreement": rules["agreement"],
        },
        "timing": {"mle_fit_s": mle_fit_s, "adaptive_metropolis_s": adaptive_s,
                   "restarts_s": restarts_s, "mle_total_s": mle_total,
                   "nuts_s": bayes["seconds"],
                   "comparison_total_s": time.perf_counter() - started},
        "mle": {"method": fit.method, "moment_error": dict(fit.moment_error),
                "converged": bool(fit.converged), "iterations": int(fit.iterations),
                "warnings": list(fit.warnings) + list(walk_info.get("warnings", []))},
        "adaptive_metropolis": {"num_draws": int(draws.shape[0]),
                                "acceptance_rate": walk_info.get("acceptance_rate"),
                                "warnings": walk_info.get("warnings", [])},
        "settings": {"method": method, "l2": l2, "num_draws": num_draws,
                     "num_restarts": num_restarts, "interval": interval,
                     "firing_threshold": firing_threshold},
    }


def _restart_verdict(table, num_neurons):
    """(cosine similarity (N,), flagged (N,) bool) from ``mle.restart_reliability``'s table."""
    def column(*names):
        for name in names:
            try:
                value = table[name]
            except (KeyError, TypeError, IndexError):
                value = getattr(table, name, None)
            if value is not None:
                return np.asarray(value)
        return None

    similarity = column("mean_cosine", "cosine_similarity", "similarity")
    reliable = column("reliable", "kept", "passes")
    if reliable is None and similarity is not None:
        cut = getattr(table, "cut", None)
        if cut is None and isinstance(table, dict):
            cut = table.get("cut")
        reliable = similarity >= float(cut) if cut is not None else None
    if reliable is None:
        raise DataError("mle.restart_reliability returned no per-neuron verdict")
    similarity = (np.full(num_neurons, np.nan) if similarity is None
                  else similarity.astype(float).reshape(num_neurons))
    return similarity, ~reliable.astype(bool).reshape(num_neurons)
