r"""Maximum likelihood (the study's way) against the Bayesian posterior, parameter by parameter.

The study's way: fit the MLE (exact moment matching for small N, pseudolikelihood otherwise),
then run an adaptive-Metropolis random walk (Haario et al. 2001) on the same likelihood around
the MLE and read intervals off its draws; judge each neuron by the cosine similarity of its
parameter vector across optimiser restarts, and by the ≥ 5% firing rule. The Bayesian way:
NUTS draws of the posterior and the diagnostics' per-neuron flags.

**A fair comparison.** The walk is run the way a careful user of the study's method would
(:func:`bayes_ising.fit.walk.sample_walks`): ``num_chains`` walks from overdispersed starts
(centre + 2 × the inverse-curvature sd), the first half of each discarded, lengthened by
doubling until every parameter has R-hat ≤ 1.01 and bulk and tail ESS ≥ 400 — the evidence a
converged posterior carries — or until the budget ``max_walk_draws``; a walk stopped by the
budget is labelled unconverged (its intervals too narrow), and the verdict says so instead of
reading its widths as the study's error bars. (A single 4,000-draw walk started at the mode
gave, on retina15.mat, median sd h 0.044 / J 0.0104 against NUTS 0.090 / 0.0215, growing with
the walk's length.) Neurons that never (or always) fire are held at their fitted values.

:func:`compare_mle` returns the CMP.json layout:

``neurons``, ``cell_types``
    the neuron ids (and cell types) shared by the posterior and the data.
``interval``
    probability of the central intervals (0.9 by default).
``parameters``
    columns over the N + N(N−1)/2 parameters in :func:`bayes_ising.core.ising.pack` order (h, then
    J_ij for i<j in ``np.triu_indices`` order): ``name``, ``kind`` ("h"/"J"), ``i``, ``j``
    (−1 for h), ``mle``, ``mle_lower``, ``mle_upper`` (walk interval), ``walk_mean``,
    ``bayes_mean``, ``bayes_sd``, ``bayes_lower``, ``bayes_upper`` (NUTS interval), and for the
    fields the 0/1-convention intervals ``a_mle_lower`` … ``a_bayes_upper``.
    ``parameters_01`` (``--convention 01``): the same columns in the 0/1 convention.
``summary``
    per kind (``h_…``, ``J_…``): ``median_width_ratio`` = median over parameters of
    (walk width / NUTS width); ``fraction_mle_in_bayes_interval``;
    ``fraction_intervals_overlap``; ``correlation`` of MLE and posterior mean; ``rms_difference``.
``groups``
    the same at equal evidence by parameter group (:func:`parameter_groups`: ``h_busy``,
    ``h_rare``, ``J_busy``, ``J_rare``, ``J_never_cofire``, and the 0/1 fields ``a_busy``,
    ``a_rare``): ``median_width_ratio`` with its ``mc_error`` (rule in ``mc_error_rule``),
    ``median_centre_shift_sd``, ``fraction_intervals_overlap``; ``walk_converged``.
``per_neuron``
    per neuron: ``firing_probability``, ``width_ratio_h``, ``width_ratio_a``,
    ``median_width_ratio_J`` and the three verdicts ``flagged_diagnostics``,
    ``flagged_cosine``, ``flagged_firing_threshold``.
``flagged``
    ``neurons``, per-neuron booleans ``diagnostics``, ``cosine`` (fails the restart
    cosine-similarity cut), ``firing_threshold`` (fires in < 5% of bins), the
    ``cosine_similarity`` values and ``agreement`` counts (from
    :func:`bayes_ising.analysis.diagnostics.compare_rules`: both / neither / only_first /
    only_second).
``adaptive_metropolis``
    the walks' diagnostics: ``converged``, ``label``, ``stopped``, ``num_chains``,
    ``num_draws`` (per walk, after burn-in), ``num_steps``, ``thin``, ``max_rhat``,
    ``min_ess_bulk``, ``min_ess_tail``, ``acceptance_rate`` (per walk),
    ``num_logdensity_evals``, ``seconds``, ``history`` (the checks as the walks grew),
    ``warnings``.
``cost``
    each side's price of its evidence (:func:`evidence_cost`): seconds, evaluations (walk:
    log densities; NUTS: gradients) and both per effective draw.
``timing``
    seconds: ``mle_fit_s``, ``adaptive_metropolis_s``, ``restarts_s``, ``mle_total_s`` and
    ``nuts_s`` (from the posterior's attributes; ``None`` when it did not record it).
``verdict``
    one sentence that the numbers above support (:func:`verdict`).
``mle``, ``settings``
    how the MLE side was run (method, moment errors, warnings) and the settings.
"""

import time
import warnings

import numpy as np

from bayes_ising.errors import DataError
from bayes_ising.fit import posterior

__all__ = ["compare_mle", "memory_bound_bytes", "parameter_groups", "group_comparison",
           "evidence_cost", "per_neuron_table", "verdict", "lattice_gas_columns",
           "posterior_intervals", "interval_agreement", "nuts_time"]

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
            "mean": draws.mean(axis=0), "sd": draws.std(axis=0), "lower": lower,
            "upper": upper,
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

    The pseudolikelihood's log-cosh sweep runs in float32, accumulated in float64: it differs
    from float64 by ~1e-3 in a log PL of ~7·10⁵ (N = 40, 20,000 bins; a test bounds it), far
    below the O(1) log ratios a Metropolis step decides on, and the walks take half the time
    (4 walks at N = 40: 5.0 ms per step against 10.5 ms).

    The L2 term is the one of the MLE fit (``l2/2 · Σ_{i<j} J_ij²`` per bin, times T), so the
    adaptive-Metropolis walk explores the same objective the MLE maximised.
    """
    import jax
    import jax.numpy as jnp

    from bayes_ising.core import ising, stats
    from bayes_ising.core import pseudolikelihood as pl

    num_bins, num_neurons = spins.shape
    num_h = num_neurons
    if method == "exact":
        moments = stats.moments(spins)

        def log_likelihood(theta):
            h, J = ising.unpack(theta, num_neurons)
            return ising.exact_log_likelihood(h, J, moments)
    else:
        data = pl.prepare(*stats.unique_patterns(spins))  # once, not at every evaluation

        def log_likelihood(theta):
            h, J = ising.unpack(theta, num_neurons)
            return pl.log_pseudolikelihood(h, J, data, float32=True)

    def logdensity_fn(theta):
        penalty = 0.5 * l2 * num_bins * jnp.sum(theta[num_h:] ** 2)
        return log_likelihood(theta) - penalty

    return jax.jit(logdensity_fn)


def compare_mle(rng_key, tree, data, *, method="auto", l2=0.0, walk_draws=None,
                max_walk_draws=100_000, max_walk_seconds=300.0, num_chains=4, num_restarts=5,
                interval=0.9, diagnosis=None, firing_threshold=0.05, num_draws=None):
    """Compare MLE + adaptive-Metropolis intervals with the NUTS posterior (CMP.json layout).

    Parameters
    ----------
    rng_key : JAX PRNG key (split for the walks and the restarts)
    tree : posterior DataTree (``bayes.fit_posterior``)
    data : SpikeData (or a (num_bins, N) ±1 array) holding at least the posterior's neurons
    method : "exact", "pseudo" or "auto" (exact when N ≤ ``ising.MAX_EXACT_NEURONS`` and the
        posterior used the exact likelihood, else pseudo)
    l2 : L2 penalty of the MLE (0: plain MLE)
    walk_draws : a fixed number of draws per walk, or None (default): run the walks until
        R-hat ≤ 1.01 and bulk/tail ESS ≥ 400 for every parameter, at most ``max_walk_draws``
        per walk or about ``max_walk_seconds`` (checked after each doubling; None: no time
        budget) — then the result is labelled unconverged; ``num_draws`` is an old name
    num_chains : number of walks (overdispersed starts)
    num_restarts : optimiser restarts for the cosine-similarity verdict (0 skips it)
    interval : central interval probability for both methods
    diagnosis : :func:`bayes_ising.analysis.diagnostics.diagnose` of ``tree`` (computed when None)
    firing_threshold : the study's firing rule (fraction of bins)

    Returns
    -------
    dict — see the module docstring.
    """
    import jax

    started = time.perf_counter()
    walk_draws = num_draws if walk_draws is None else walk_draws
    bayes = posterior_intervals(tree, interval)
    ids = bayes["neuron_ids"]
    spins = np.asarray(getattr(posterior.align(tree, data), "spins", data))
    method = _method(method, tree, len(ids))
    key_walk, key_restarts = jax.random.split(rng_key)
    budget = {"walk_draws": walk_draws, "max_walk_draws": max_walk_draws,
              "max_seconds": max_walk_seconds, "num_chains": num_chains}
    study = _study_side(key_walk, spins, ids, method, l2, budget)
    tail = (1 - interval) / 2
    flat = study["draws"].reshape(-1, study["draws"].shape[-1])
    mle_lower, mle_upper = np.quantile(flat, [tail, 1 - tail], axis=0)
    rules, restarts_s = _rules(key_restarts, spins, tree, diagnosis, num_restarts,
                               firing_threshold, l2)
    theta = np.asarray(study["fit"].theta)
    columns = _parameter_columns(ids, theta, mle_lower, mle_upper, flat.mean(axis=0), bayes)
    columns.update(_field_01_columns(flat, posterior.packed_draws(tree), len(ids), interval))
    summary = interval_agreement(theta, mle_lower, mle_upper, bayes["lower"], bayes["upper"],
                                 columns["kind"])
    summary.update(_centre_agreement(theta, bayes, len(ids)))
    walk_info = study["walk"]
    groups = parameter_groups(spins, firing_threshold)
    timing = {"mle_fit_s": study["mle_fit_s"], "adaptive_metropolis_s": walk_info["seconds"],
              "restarts_s": restarts_s, "nuts_s": bayes["seconds"],
              "mle_total_s": study["mle_fit_s"] + walk_info["seconds"] + (restarts_s or 0.0),
              "comparison_total_s": time.perf_counter() - started}
    cost = evidence_cost(tree, rules["diagnosis"], walk_info)
    out = {
        "neurons": [str(n) for n in ids], "cell_types": _strings(bayes["cell_types"]),
        "interval": interval, "parameters": columns, "summary": summary,
        "groups": group_comparison(groups, columns, walk_info, cost),
        "per_neuron": per_neuron_table(ids, groups, columns, rules["flagged"]),
        "flagged": rules["flagged"], "timing": timing, "cost": cost,
        "mle": study["mle"], "adaptive_metropolis": walk_info,
        "settings": {"method": method, "l2": l2, "walk_draws": walk_draws,
                     "max_walk_draws": max_walk_draws, "max_walk_seconds": max_walk_seconds,
                     "num_chains": num_chains,
                     "num_restarts": num_restarts, "interval": interval,
                     "firing_threshold": firing_threshold},
    }
    out["verdict"] = verdict(out)
    return out


def _strings(values):
    return None if values is None else [str(v) for v in values]


def _method(method, tree, num_neurons):
    from bayes_ising.core import ising

    if method == "auto":
        likelihood = str(getattr(tree, "attrs", {}).get("likelihood", "exact"))
        method = ("exact" if num_neurons <= ising.MAX_EXACT_NEURONS and likelihood == "exact"
                  else "pseudo")
    if method not in ("exact", "pseudo"):
        raise DataError(f"method must be 'exact', 'pseudo' or 'auto', not {method!r}")
    if method == "exact":
        ising.check_exact(num_neurons, "compare-mle --method exact")
    return method


def _study_side(rng_key, spins, ids, method, l2, budget):
    """The MLE and its walk: dict with fit, draws (C, K, P), walk info, mle info, mle_fit_s."""
    from bayes_ising.fit import mle

    with warnings.catch_warnings():
        # the MLE's warnings (boundary pairs, ...) are kept in the result ("mle"/"warnings")
        warnings.simplefilter("ignore", mle.MLEWarning)
        t0 = time.perf_counter()
        fit = (mle.fit_exact(spins, l2=l2, neuron_ids=ids) if method == "exact"
               else mle.fit_pseudo(spins, l2=l2, neuron_ids=ids))
        mle_fit_s = time.perf_counter() - t0
        draws, walk_info = _study_walk(rng_key, spins, fit, method, l2, budget)
        boundary = mle.boundary_report(spins)["pairs"]
    messages = []
    if l2 == 0 and boundary:
        messages.append("l2 = 0 with pairs that never co-fire: the likelihood is flat towards "
                        "J -> -inf for them, so the walk drifts along those couplings; pass "
                        "--l2 > 0")
    walk_info["warnings"] = messages
    return {"fit": fit, "draws": draws, "walk": walk_info, "mle_fit_s": mle_fit_s,
            "mle": {"method": fit.method, "moment_error": dict(fit.moment_error),
                    "converged": bool(fit.converged), "iterations": int(fit.iterations),
                    "warnings": list(fit.warnings) + messages}}


def _rules(rng_key, spins, tree, diagnosis, num_restarts, firing_threshold, l2):
    """The three per-neuron verdicts (diagnostics, restart cosine, 5% rule) and the diagnosis."""
    from bayes_ising.analysis import diagnostics
    from bayes_ising.fit import mle

    restarts_s = cosine = cosine_flagged = None
    num_neurons = spins.shape[1]
    if num_restarts and num_restarts > 1:
        t0 = time.perf_counter()
        table = mle.restart_reliability(rng_key, spins, num_restarts=num_restarts,
                                        threshold=firing_threshold, l2=l2)
        restarts_s = time.perf_counter() - t0
        cosine, cosine_flagged = _restart_verdict(table, num_neurons)
    firing_flagged = ~np.asarray(mle.firing_threshold_rule(spins, threshold=firing_threshold),
                                 dtype=bool)
    if diagnosis is None:
        diagnosis = diagnostics.diagnose(tree)
    rules = diagnostics.compare_rules(diagnosis, restart_flagged=cosine_flagged,
                                      firing_flagged=firing_flagged)
    flagged = {
        "neurons": [str(row["id"]) for row in diagnosis["neurons"]],
        "diagnostics": [bool(row["flagged"]) for row in diagnosis["neurons"]],
        "cosine": None if cosine_flagged is None else [bool(v) for v in cosine_flagged],
        "cosine_similarity": None if cosine is None else [float(v) for v in cosine],
        "firing_threshold": [bool(v) for v in firing_flagged],
        "agreement": rules["agreement"],
    }
    return {"flagged": flagged, "diagnosis": diagnosis}, restarts_s


def _parameter_columns(ids, theta, lower, upper, walk_mean, bayes):
    from bayes_ising.core import ising

    num_neurons = len(ids)
    first, second = (np.asarray(v) for v in ising.pair_indices(num_neurons))
    return {
        "name": [f"h[{n}]" for n in ids] + [f"J[{ids[a]},{ids[b]}]" for a, b in
                                            zip(first, second, strict=True)],
        "kind": ["h"] * num_neurons + ["J"] * first.size,
        "i": list(range(num_neurons)) + first.tolist(),
        "j": [-1] * num_neurons + second.tolist(),
        "mle": theta, "mle_lower": lower, "mle_upper": upper, "walk_mean": walk_mean,
        "bayes_mean": bayes["mean"], "bayes_sd": bayes["sd"], "bayes_lower": bayes["lower"],
        "bayes_upper": bayes["upper"],
    }


def lattice_gas_columns(columns, num_neurons):
    """The ``parameters`` columns in the 0/1 convention
    (:func:`bayes_ising.core.ising.to_lattice_gas`):
    ``name`` (a[..], b[..]), ``mle``, ``walk_mean``, ``bayes_mean`` (the linear map of the ±1
    values: exact), ``mle_lower``/``mle_upper``/``bayes_lower``/``bayes_upper`` (fields: the
    quantiles of the converted draws; couplings: 4 × the J quantiles, b = 4J)."""
    from bayes_ising.core import ising

    def convert(packed):
        h, J = ising.unpack(np.asarray(packed, float), num_neurons)
        a, b = ising.convert(h, J, "01")
        return np.concatenate([a, ising.matrix_to_couplings(b)])

    out = {"name": [n.replace("h[", "a[", 1).replace("J[", "b[", 1) for n in columns["name"]],
           "kind": ["a" if k == "h" else "b" for k in columns["kind"]],
           "i": columns["i"], "j": columns["j"]}
    for key in ("mle", "walk_mean", "bayes_mean"):
        out[key] = convert(columns[key])
    for key in ("mle_lower", "mle_upper", "bayes_lower", "bayes_upper"):
        out[key] = np.concatenate([columns[f"a_{key}"], 4.0 * np.asarray(columns[key])[
            num_neurons:]])
    return out


def _field_01_columns(walk_draws, nuts_draws, num_neurons, interval):
    """Intervals of the 0/1-convention fields a_i (:func:`bayes_ising.core.ising.to_lattice_gas`)
    of both sides: ``a_mle_lower``/``a_mle_upper`` (walk), ``a_bayes_lower``/``a_bayes_upper``."""
    from bayes_ising.core import ising

    tail = (1 - interval) / 2
    out = {}
    for side, draws in (("mle", walk_draws), ("bayes", nuts_draws)):
        h, J = ising.unpack(np.asarray(draws), num_neurons)
        a, _ = ising.to_lattice_gas(h, J)
        lower, upper = np.quantile(np.asarray(a), [tail, 1 - tail], axis=0)
        out[f"a_{side}_lower"], out[f"a_{side}_upper"] = lower, upper
    return out


def _centre_agreement(theta, bayes, num_neurons):
    out = {}
    for name, sel in (("h", slice(0, num_neurons)), ("J", slice(num_neurons, None))):
        if theta[sel].size > 1:
            out[f"{name}_correlation"] = float(np.corrcoef(theta[sel], bayes["mean"][sel])[0, 1])
        out[f"{name}_rms_difference"] = float(np.sqrt(np.mean(
            (theta[sel] - bayes["mean"][sel]) ** 2))) if theta[sel].size else None
    return out


#: relative Monte Carlo sd of a central 90% interval's width per sqrt(ESS): the two 5%/95%
#: quantiles each have sd sqrt(p(1-p)/ESS)/f(q) (normal f), added in quadrature, over 2·1.645σ
_WIDTH_MCSE_FACTOR = 0.91


#: fixed allowance of the bound (XLA compilation workspace, arviz/xarray temporaries)
_MEMORY_ALLOWANCE = 512 * 2**20


def memory_bound_bytes(num_bins, num_neurons, num_posterior_draws, *, num_chains=4,
                       keep=1000):
    """The peak memory :func:`compare_mle` may add above the loaded process (bytes):

    ``8·(data + posterior) + 3·walks + 8·D² + 512 MiB`` in float64 numbers, with data =
    num_bins·N, posterior = draws·P, walks = num_chains·(keep + D + 2)·D (kept draws, proposal
    Cholesky factor and history scatter per walk), D = P = N + N(N−1)/2 and 8·D² for the
    Hessian and its eigen-decomposition. Nothing in it grows with the walks' length.
    """
    dim = num_neurons + num_neurons * (num_neurons - 1) // 2
    numbers = (8 * (num_bins * num_neurons + num_posterior_draws * dim)
               + 3 * num_chains * (keep + dim + 2) * dim + 8 * dim * dim)
    return int(8 * numbers + _MEMORY_ALLOWANCE)


def parameter_groups(spins, firing_threshold=0.05):
    """Boolean masks (P,) in pack order of the parameter groups the comparison reports.

    ``h_busy``/``h_rare``: fields of neurons firing in ≥ / < ``firing_threshold`` of bins;
    ``J_busy``: couplings between two busy neurons; ``J_rare``: couplings with a rare neuron
    that co-fire at least once; ``J_never_cofire``: pairs that never fire together (their
    likelihood is flat towards J → −∞). Also ``firing_probability`` (N,).
    """
    from bayes_ising.core import ising

    x = (np.asarray(spins) > 0).astype(np.float64)
    p = x.mean(axis=0)
    busy = p >= firing_threshold
    first, second = (np.asarray(v) for v in ising.pair_indices(p.size))
    together = (x.T @ x)[first, second]
    no_h, no_j = np.zeros(first.size, bool), np.zeros(p.size, bool)
    both = busy[first] & busy[second]
    return {
        "firing_probability": p, "busy": busy,
        "h_busy": np.concatenate([busy, no_h]), "h_rare": np.concatenate([~busy, no_h]),
        "J_busy": np.concatenate([no_j, both & (together > 0)]),
        "J_rare": np.concatenate([no_j, ~both & (together > 0)]),
        "J_never_cofire": np.concatenate([no_j, together == 0]),
    }


def _width_ratio(columns, prefix_a="mle", prefix_b="bayes"):
    width_a = np.asarray(columns[f"{prefix_a}_upper"]) - np.asarray(columns[f"{prefix_a}_lower"])
    width_b = np.asarray(columns[f"{prefix_b}_upper"]) - np.asarray(columns[f"{prefix_b}_lower"])
    return width_a / np.where(width_b > 0, width_b, np.nan)


def _group_numbers(ratio, sel, rel_se, centre_z=None, overlap=None):
    values = ratio[sel]
    values = values[np.isfinite(values)]
    if not values.size:
        return {"num_parameters": 0}
    median = float(np.median(values))
    out = {"num_parameters": int(values.size), "median_width_ratio": median,
           "mc_error": float(1.2533 * median * rel_se / np.sqrt(values.size))
           if rel_se is not None else None}
    if centre_z is not None:
        out["median_centre_shift_sd"] = float(np.median(centre_z[sel]))
    if overlap is not None:
        out["fraction_intervals_overlap"] = float(np.mean(overlap[sel]))
    return out


def group_comparison(groups, columns, walk_info, cost):
    """Per parameter group (:func:`parameter_groups`): median width ratio (walk / NUTS) with
    its Monte Carlo error, median centre shift |walk mean − posterior mean| / posterior sd,
    fraction of overlapping intervals; the same for the 0/1-convention fields (``a_*``).

    MC error of the median ratio: each width has relative MC sd ``0.91/sqrt(ESS)`` (normal
    quantiles); the ratio's adds both sides in quadrature with the smallest bulk/tail ESS of
    each side (conservative), and the median of n ratios has sd ``1.2533 · median · rel/√n``
    (independent errors across parameters assumed).
    """
    ess = [cost["walk"]["min_ess"], cost["nuts"]["min_ess"]]
    rel_se = (_WIDTH_MCSE_FACTOR * float(np.sqrt(sum(1.0 / e for e in ess)))
              if all(e and e > 0 for e in ess) else None)
    ratio = _width_ratio(columns)
    centre_z = np.abs(np.asarray(columns["walk_mean"]) - np.asarray(columns["bayes_mean"])) / \
        np.maximum(np.asarray(columns["bayes_sd"]), 1e-300)
    overlap = ((np.asarray(columns["mle_lower"]) <= np.asarray(columns["bayes_upper"]))
               & (np.asarray(columns["bayes_lower"]) <= np.asarray(columns["mle_upper"])))
    out = {name: _group_numbers(ratio, groups[name], rel_se, centre_z, overlap)
           for name in ("h_busy", "h_rare", "J_busy", "J_rare", "J_never_cofire")}
    ratio_a = _width_ratio(columns, "a_mle", "a_bayes")
    num = ratio_a.size
    out["a_busy"] = _group_numbers(ratio_a, groups["h_busy"][:num], rel_se)
    out["a_rare"] = _group_numbers(ratio_a, groups["h_rare"][:num], rel_se)
    out["walk_converged"] = bool(walk_info["converged"])
    out["mc_error_rule"] = ("relative MC sd of one 90% width 0.91/sqrt(ESS) per side (minimum "
                            "bulk/tail ESS), in quadrature; median of n ratios: 1.2533 x "
                            "median x that / sqrt(n)")
    return out


def evidence_cost(tree, diagnosis, walk_info):
    """What each side paid for its evidence: wall time, density (walk) or gradient (NUTS:
    leapfrog steps of the kept draws, plus warmup estimated at the same mean) evaluations, and
    both per effective draw (per unit of the smallest bulk/tail ESS)."""
    summary = diagnosis.get("summary", {}) if diagnosis else {}
    nuts_ess = min(summary.get("min_ess_bulk") or np.nan, summary.get("min_ess_tail") or np.nan)
    attrs = getattr(tree, "attrs", {}) or {}
    steps = np.asarray(tree["sample_stats"]["n_steps"].values) if "n_steps" in \
        tree["sample_stats"] else None
    nuts_evals = None
    if steps is not None:
        warmup = int(attrs.get("num_warmup", 0) or 0) * steps.shape[0] * float(steps.mean())
        nuts_evals = float(steps.sum() + warmup)
    walk_ess = min(walk_info["min_ess_bulk"], walk_info["min_ess_tail"])

    def per(value, ess):
        return None if value is None or not np.isfinite(ess) or ess <= 0 else float(value / ess)

    nuts_s = nuts_time(tree)
    return {
        "nuts": {"seconds": nuts_s, "gradient_evals": nuts_evals, "min_ess": _finite(nuts_ess),
                 "gradient_evals_per_effective_draw": per(nuts_evals, nuts_ess),
                 "seconds_per_effective_draw": per(nuts_s, nuts_ess),
                 "note": "gradient evaluations = leapfrog steps of the draws + warmup "
                         "(estimated at the draws' mean steps)"},
        "walk": {"seconds": walk_info["seconds"],
                 "logdensity_evals": walk_info["num_logdensity_evals"],
                 "min_ess": _finite(walk_ess),
                 "logdensity_evals_per_effective_draw": per(walk_info["num_logdensity_evals"],
                                                            walk_ess),
                 "seconds_per_effective_draw": per(walk_info["seconds"], walk_ess)},
    }


def _finite(value):
    return float(value) if value is not None and np.isfinite(value) else None


def per_neuron_table(ids, groups, columns, flagged):
    """Per neuron: firing probability, width ratios (h, 0/1 field a, median over J_i·) and the
    three verdicts (diagnostics, restart cosine, 5% rule)."""
    num_neurons = len(ids)
    ratio = _width_ratio(columns)
    ratio_a = _width_ratio(columns, "a_mle", "a_bayes")
    first, second = np.asarray(columns["i"])[num_neurons:], np.asarray(columns["j"])[num_neurons:]
    rows = []
    for k, name in enumerate(ids):
        mine = ratio[num_neurons:][(first == k) | (second == k)]
        mine = mine[np.isfinite(mine)]
        rows.append({
            "id": str(name), "firing_probability": float(groups["firing_probability"][k]),
            "width_ratio_h": _finite(ratio[k]), "width_ratio_a": _finite(ratio_a[k]),
            "median_width_ratio_J": float(np.median(mine)) if mine.size else None,
            "flagged_diagnostics": flagged["diagnostics"][k],
            "flagged_cosine": None if flagged["cosine"] is None else flagged["cosine"][k],
            "flagged_firing_threshold": flagged["firing_threshold"][k],
        })
    return rows


def verdict(result):
    """The one sentence the numbers support (used by the CLI and the report)."""
    walk, groups, cost = result["adaptive_metropolis"], result["groups"], result["cost"]

    def ratio(name):
        g = groups.get(name, {})
        if not g.get("num_parameters"):
            return "n/a"
        err = g.get("mc_error")
        return f"{g['median_width_ratio']:.2f}" + (f" ± {err:.2f}" if err is not None else "")

    busy = (f"h {ratio('h_busy')}, 0/1 field a {ratio('a_busy')}, J {ratio('J_busy')} for "
            f"neurons firing in >= {result['settings']['firing_threshold']:.0%} of bins")
    weak = f"rare-neuron h {ratio('h_rare')}, never co-firing J {ratio('J_never_cofire')}"
    if not walk["converged"]:
        return (f"The study's walk did not reach the posterior's evidence within its budget "
                f"({walk['num_draws']} draws per walk: max R-hat {walk['max_rhat']:.3f}, min "
                f"ESS {min(walk['min_ess_bulk'], walk['min_ess_tail']):.0f}); its intervals "
                f"are unconverged and too narrow, so the width ratios walk/NUTS ({busy}; "
                f"{weak}) are not the study's error bars and say nothing about its method.")
    nuts = cost["nuts"]
    walk_cost = cost["walk"]
    cost_text = (f"cost per effective draw: walk {_num(walk_cost['seconds_per_effective_draw'])}"
                 f" s ({_num(walk_cost['logdensity_evals_per_effective_draw'])} density "
                 f"evaluations), NUTS {_num(nuts['seconds_per_effective_draw'])} s "
                 f"({_num(nuts['gradient_evals_per_effective_draw'])} gradient evaluations)")
    return (f"At equal evidence (walk R-hat {walk['max_rhat']:.3f}, min ESS "
            f"{min(walk['min_ess_bulk'], walk['min_ess_tail']):.0f}), median interval-width "
            f"ratios walk/NUTS (± Monte Carlo error): {busy}; {weak}; {cost_text}.")


def _num(value):
    return "n/a" if value is None else (f"{value:.3g}")


def _active_parameters(active):
    """Positions in pack order of the parameters of active neurons: h_i (i active) and J_ij
    (i and j active). Neurons that never (or always) fire are held at their fitted values."""
    from bayes_ising.core import ising

    num_neurons = active.size
    first, second = ising.pair_indices(num_neurons)
    first, second = np.asarray(first), np.asarray(second)
    return np.concatenate([np.flatnonzero(active),
                           num_neurons + np.flatnonzero(active[first] & active[second])])


def _neg_hessian(spins, method, l2, theta):
    r"""−∇² log π(θ) (P, P) of :func:`_log_density` in closed form: :math:`T\,F(\theta)`
    (exact, :func:`bayes_ising.core.ising.fisher_information`) or the pseudolikelihood's
    (:func:`bayes_ising.core.pseudolikelihood.neg_hessian`, one pass over the patterns), plus
    :math:`T l_2` on the couplings' diagonal."""
    import jax
    import jax.numpy as jnp

    from bayes_ising.core import ising, stats
    from bayes_ising.core import pseudolikelihood as pl

    num_bins, num_neurons = spins.shape
    theta = jnp.asarray(theta, jnp.float64)
    if method == "exact":
        h, J = ising.unpack(theta, num_neurons)
        hessian = num_bins * np.asarray(ising.fisher_information(h, J))
    else:
        data = pl.prepare(*stats.unique_patterns(spins))
        hessian = np.asarray(jax.jit(pl.neg_hessian)(theta, data))
    penalty = np.r_[np.zeros(num_neurons), np.full(theta.shape[0] - num_neurons, l2 * num_bins)]
    return 0.5 * (hessian + hessian.T) + np.diag(penalty)


def _walk_target(spins, fit, method, l2):
    """The walk's log density over the active parameters, its centre (the MLE) and the
    covariance guess (inverse curvature; flat directions — pairs that never co-fire with
    l2 = 0 — get curvature at least 1, i.e. sd ≤ 1 for the starts and first proposal)."""
    import jax
    import jax.numpy as jnp

    from bayes_ising.fit import mle

    num_neurons = spins.shape[1]
    full = _log_density(spins, method, l2)
    theta_full = jnp.asarray(fit.theta, jnp.float64)
    active = np.asarray(mle._active_mask(mle.boundary_report(spins), num_neurons), bool)
    index = _active_parameters(active)
    positions = jnp.asarray(index)

    def logdensity_fn(x):
        return full(theta_full.at[positions].set(x))

    centre = theta_full[positions]
    curvature = _neg_hessian(spins, method, l2, theta_full)[np.ix_(index, index)]
    eigenvalues, eigenvectors = np.linalg.eigh(curvature)
    eigenvalues = np.maximum(eigenvalues, 1.0)
    covariance = (eigenvectors / eigenvalues) @ eigenvectors.T
    return jax.jit(logdensity_fn), centre, covariance, index


def _study_walk(rng_key, spins, fit, method, l2, budget):
    """The study's walk run carefully (:func:`bayes_ising.fit.walk.sample_walks`): draws (C, K, P)
    in pack order (inactive neurons at their fitted values) and the walk's info."""
    from bayes_ising.fit import walk

    logdensity_fn, centre, covariance, index = _walk_target(spins, fit, method, l2)
    kept, info = walk.sample_walks(rng_key, logdensity_fn, centre, covariance, **budget)
    draws = np.broadcast_to(np.asarray(fit.theta), kept.shape[:2] + (fit.theta.size,)).copy()
    draws[:, :, index] = kept
    info["num_parameters_walked"] = int(index.size)
    stop = ("a fixed length" if info["stopped"] == "fixed length"
            else f"the budget ({info['stopped']})")
    info["label"] = ("converged: R-hat and ESS pass for every walked parameter"
                     if info["converged"] else
                     f"UNCONVERGED: stopped at {stop} before R-hat <= "
                     f"{info['thresholds']['max_rhat']} and ESS >= "
                     f"{info['thresholds']['min_ess']}; its intervals are too narrow "
                     "(a walk started at the mode has not yet seen the posterior's spread)")
    return draws, info


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
