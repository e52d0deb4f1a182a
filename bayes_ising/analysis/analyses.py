r"""Science on top of the fits: E/I synchrony comparisons and sleep-state comparisons.

**E/I synchrony** (:func:`synchrony_comparison`, :func:`ei_analysis`). For a population A
(e.g. the E neurons) compare three distributions of K_A = #{i ∈ A : s_i = +1}: the data, a
pairwise model fitted to A alone ("population-only"), and the marginal over A of a model fitted
to A together with the other population ("joint", E+I). The single number per comparison is

.. math:: \log \frac{P_\text{model}(K_A \ge k_\text{high})}{P_\text{data}(K_A \ge k_\text{high})},

with :math:`k_\text{high}` the smallest k whose observed tail probability is at most ``tail``
(1% by default). Its interval combines the model's parameter uncertainty (one value per
posterior draw; a maximum-likelihood fit has one draw) with the sampling error of the observed
tail (a moving-block bootstrap over bins, blocks of ``block_length`` bins, because bins are
autocorrelated); draws and bootstrap replicates are paired at random. A population-only model
that over-predicts high-K synchrony (log ratio > 0 while the joint model's is near 0) is
missing the other population's input (e.g. feedback inhibition capping E synchrony).

**States** (:func:`state_analysis`). Per state: couplings per cell-type block (E–E, E–I, I–I)
from the fit of that state's bins (intervals over posterior draws), Pearson correlations of the
binned spins per block (intervals from a moving-block bootstrap over bins), and the
probabilities that the mean I–I coupling (over posterior draws of independent per-state fits)
and the mean I–I correlation (over bootstrap replicates) are larger in one state than another.

Fits are either posteriors (:func:`bayes_ising.fit.bayes.fit_posterior`; ``fit="posterior"``) or
maximum-likelihood (``fit="mle"``: :func:`bayes_ising.fit.mle.fit_exact` for N ≤
:data:`MAX_EXACT_FIT_NEURONS`, else :func:`bayes_ising.fit.mle.fit_pseudo`), the fast choice
whose interval then covers only the data's sampling error (and no coupling interval).
"""

import numpy as np

from bayes_ising.analysis import checks
from bayes_ising.core import limits
from bayes_ising.fit import posterior

__all__ = [
    "MAX_EXACT_FIT_NEURONS",
    "block_bootstrap_indices",
    "high_k",
    "synchrony_comparison",
    "fit_draws",
    "ei_analysis",
    "state_analysis",
    "ei_posterior_comparison",
    "state_posterior_comparison",
    "population_only_synchrony",
]

#: maximum-likelihood fits enumerate up to this N (exact MLE); pseudolikelihood above
MAX_EXACT_FIT_NEURONS = limits.MAX_EXACT_FIT_NEURONS
#: posterior fits use the exact likelihood up to this N, the pseudolikelihood above
MAX_EXACT_POSTERIOR_NEURONS = limits.MAX_EXACT_POSTERIOR_NEURONS
#: default moving-block length in bins (50 ms bins: 10 s, far longer than the up/down dwell)
BLOCK_LENGTH = 200


def block_bootstrap_indices(rng, num_bins, num_replicates, block_length=BLOCK_LENGTH):
    """Moving-block bootstrap: (num_replicates, num_bins) bin indices (Künsch 1989).

    Each replicate concatenates blocks of ``block_length`` consecutive bins starting at
    uniformly random positions, cut to ``num_bins``. ``rng`` is a NumPy Generator.
    """
    block_length = max(1, min(int(block_length), num_bins))
    num_blocks = -(-num_bins // block_length)
    starts = rng.integers(0, num_bins - block_length + 1, size=(num_replicates, num_blocks))
    index = starts[:, :, None] + np.arange(block_length)[None, None, :]
    return index.reshape(num_replicates, -1)[:, :num_bins]


def high_k(observed, tail=0.01):
    """Smallest k with observed P(K ≥ k) ≤ ``tail`` (at least 1), from P(K) (n+1,)."""
    survival = np.cumsum(np.asarray(observed, float)[::-1])[::-1]  # P(K >= k)
    candidates = np.flatnonzero(survival <= tail)
    k = int(candidates[0]) if candidates.size else len(observed) - 1
    return max(k, 1)


# --------------------------------------------------------------------------------------------
# Fits
# --------------------------------------------------------------------------------------------


def fit_draws(rng_key, spins, *, fit="mle", num_draws=200, l2=1e-4, posterior_kwargs=None,
              cell_types=None, neuron_ids=None):
    """Fit a pairwise model and return parameter draws (h (D, N), J (D, N, N)) and a label.

    ``fit="mle"``: one draw, :func:`mle.fit_exact` (N ≤ 16) or :func:`mle.fit_pseudo`, with a
    small L2 (``l2``) so pairs that never fire together stay finite. ``fit="posterior"``:
    ``num_draws`` evenly thinned draws of :func:`bayes.fit_posterior` (exact likelihood for
    N ≤ 16, pseudolikelihood with the default calibration above; ``posterior_kwargs`` go to
    it, e.g. ``num_chains``, ``num_draws``, ``num_warmup``).
    """
    import warnings

    spins = np.asarray(spins)
    num_neurons = spins.shape[1]
    if fit == "mle":
        from bayes_ising.fit import mle

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if num_neurons <= MAX_EXACT_FIT_NEURONS:
                result = mle.fit_exact(spins, l2=l2)
                label = "exact maximum likelihood"
            else:
                result = mle.fit_pseudo(spins, l2=l2)
                label = "pseudolikelihood maximum likelihood"
        return np.asarray(result.h)[None], np.asarray(result.J)[None], label
    if fit == "posterior":
        from bayes_ising.data import SpikeData
        from bayes_ising.fit import bayes

        likelihood = "exact" if num_neurons <= MAX_EXACT_POSTERIOR_NEURONS else "pseudo"
        data = SpikeData.from_raster(spins, cell_types=cell_types, neuron_ids=neuron_ids)
        kwargs = dict(progress=False)
        kwargs.update(posterior_kwargs or {})
        tree = bayes.fit_posterior(rng_key, data, likelihood=likelihood, **kwargs)
        h, J = checks.parameter_draws(tree, num_draws)
        return h, J, f"posterior ({likelihood} likelihood)"
    raise ValueError(f"fit must be 'mle' or 'posterior', got {fit!r}")


# --------------------------------------------------------------------------------------------
# E/I synchrony
# --------------------------------------------------------------------------------------------


def synchrony_comparison(rng_key, spins_population, population_draws, joint_draws, subset, *,
                         tail=0.01, k_threshold=None, prob=checks.INTERVAL_PROB,
                         num_bootstrap=400, block_length=BLOCK_LENGTH, method="auto",
                         num_samples=20_000):
    """P(K_A) of the data, the population-only model and the joint model's marginal over A.

    Parameters
    ----------
    rng_key : JAX PRNG key (Gibbs sampling for large N, bootstrap seed).
    spins_population : (T, |A|) observed spins of the population A.
    population_draws : (h (D, |A|), J (D, |A|, |A|)) of the model fitted to A alone.
    joint_draws : (h (D', M), J (D', M, M)) of the model fitted to A and other neurons, or
        None (then only the population-only model is compared with the data).
    subset : (|A|,) indices of A's neurons inside the joint model, in the order of
        ``spins_population``.
    tail, k_threshold : k_high is ``k_threshold`` or the smallest k with observed
        P(K_A ≥ k) ≤ ``tail``.

    Returns
    -------
    dict: ``k_high``, ``observed_tail`` (P_data(K_A ≥ k_high)), ``log_ratio_population_only``
    and ``log_ratio_joint`` (mean, median, lower, upper), ``tail_population_only`` and
    ``tail_joint`` (model tail probabilities over draws), ``ratio_population_only_to_joint``
    (log of the population-only over the joint model's tail, intervals over paired draws),
    ``synchrony`` (``k``, ``observed``, ``population_only`` and ``joint`` bands — the arrays of
    the plot), ``interval``, ``num_draws``.
    """
    import jax

    from bayes_ising.core import stats

    spins_population = np.asarray(spins_population)
    num_bins, size = spins_population.shape
    key_pop, key_joint, key_boot = jax.random.split(rng_key, 3)
    observed = stats.synchrony_distribution(spins_population)
    k_high = int(k_threshold) if k_threshold is not None else high_k(observed, tail)
    pop = checks.model_synchrony_draws(key_pop, *population_draws, method=method,
                                       num_samples=num_samples)
    if joint_draws is not None:
        joint = checks.model_synchrony_draws(key_joint, *joint_draws, method=method,
                                             num_samples=num_samples, subset=subset)
    else:
        joint = np.full_like(pop[:1], np.nan)
    tail_pop = pop[:, k_high:].sum(axis=1)
    tail_joint = joint[:, k_high:].sum(axis=1)
    observed_tail = float(observed[k_high:].sum())
    rng = np.random.default_rng(np.asarray(jax.random.key_data(key_boot)).ravel()[-1])
    k_series = stats.synchrony(spins_population)
    index = block_bootstrap_indices(rng, num_bins, num_bootstrap, block_length)
    boot_tail = np.mean(k_series[index] >= k_high, axis=1)
    boot_tail = np.maximum(boot_tail, 0.5 / num_bins)  # a replicate with no events: floor
    tiny = 1e-300

    def log_ratio(model_tail):
        paired = rng.choice(model_tail, size=num_bootstrap, replace=True)
        return np.log(np.maximum(paired, tiny)) - np.log(boot_tail)

    band = lambda x: {k: np.asarray(v) for k, v in checks.interval(x, prob).items()}  # noqa: E731
    scalar = lambda x: {k: float(v) for k, v in checks.interval(x, prob).items()}  # noqa: E731
    out = dict(
        k_high=k_high, tail=tail, observed_tail=observed_tail, num_bins=num_bins,
        population_size=size,
        log_ratio_population_only=scalar(log_ratio(tail_pop)),
        tail_population_only=scalar(tail_pop),
        synchrony=dict(k=np.arange(size + 1), observed=observed, population_only=band(pop)),
        interval=prob, num_draws=dict(population_only=int(pop.shape[0])),
        num_bootstrap=num_bootstrap, block_length=block_length,
    )
    if joint_draws is not None:
        pair_count = max(len(tail_pop), len(tail_joint), 1)
        cross = (np.log(np.maximum(rng.choice(tail_pop, pair_count), tiny))
                 - np.log(np.maximum(rng.choice(tail_joint, pair_count), tiny)))
        out.update(log_ratio_joint=scalar(log_ratio(tail_joint)),
                   ratio_population_only_to_joint=scalar(cross),
                   tail_joint=scalar(tail_joint))
        out["synchrony"]["joint"] = band(joint)
        out["num_draws"]["joint"] = int(joint.shape[0])
    return out


def ei_analysis(rng_key, data, *, fit="mle", populations=("E", "I"), max_neurons=None,
                tail=0.01, num_draws=200, posterior_kwargs=None, **comparison_kwargs):
    """Population-only vs E+I synchrony for each population (needs cell types).

    Parameters
    ----------
    data : SpikeData with ``cell_types``.
    fit : "mle" or "posterior" (see :func:`fit_draws`).
    populations : cell types to compare; the joint model holds all of them.
    max_neurons : dict type -> number, keep only that many most active neurons of a type (e.g.
        ``{"E": 14}`` keeps the joint model enumerable: 14 E + 8 I = 22); all when None.
    **comparison_kwargs : passed to :func:`synchrony_comparison`.

    Returns
    -------
    dict: one entry per population (the :func:`synchrony_comparison` dict plus ``neurons``
    and ``fit``), and ``settings``.
    """
    import jax

    from bayes_ising.errors import DataError

    if data.cell_types is None:
        raise DataError("the E/I analysis needs cell types; the data have none")
    types = np.asarray(data.cell_types).astype(str)
    firing = np.asarray(data.firing_probability)
    chosen = {}
    for population in populations:
        members = np.flatnonzero(types == population)
        if members.size < 2:
            raise DataError(f"population {population!r} has {members.size} neurons; the E/I "
                            "analysis needs at least 2 per population")
        limit = (max_neurons or {}).get(population)
        if limit is not None and members.size > limit:
            members = np.sort(members[np.argsort(-firing[members], kind="stable")[:limit]])
        chosen[population] = members
    joint_neurons = np.sort(np.concatenate([chosen[p] for p in populations]))
    spins = np.asarray(data.spins)
    keys = jax.random.split(rng_key, 2 * len(populations) + 1)
    ids = np.asarray(data.neuron_ids).astype(str)
    joint_h, joint_J, joint_label = fit_draws(
        keys[0], spins[:, joint_neurons], fit=fit, num_draws=num_draws,
        posterior_kwargs=posterior_kwargs, cell_types=types[joint_neurons],
        neuron_ids=ids[joint_neurons])
    out = {}
    for k, population in enumerate(populations):
        members = chosen[population]
        pop_h, pop_J, pop_label = fit_draws(
            keys[2 * k + 1], spins[:, members], fit=fit, num_draws=num_draws,
            posterior_kwargs=posterior_kwargs, cell_types=types[members],
            neuron_ids=ids[members])
        subset = np.searchsorted(joint_neurons, members)
        result = synchrony_comparison(keys[2 * k + 2], spins[:, members], (pop_h, pop_J),
                                      (joint_h, joint_J), subset, tail=tail,
                                      **comparison_kwargs)
        result.update(neurons=[str(v) for v in ids[members]],
                      fit=dict(population_only=pop_label, joint=joint_label))
        out[population] = result
    out["settings"] = dict(fit=fit, tail=tail, populations=list(populations),
                           joint_neurons=[str(v) for v in ids[joint_neurons]],
                           max_neurons=dict(max_neurons or {}))
    return out


# --------------------------------------------------------------------------------------------
# States
# --------------------------------------------------------------------------------------------


def _block_labels(cell_types):
    """Pair block labels "A-B" (types sorted) over i<j, and the pair indices."""
    types = np.asarray(cell_types).astype(str)
    first, second = np.triu_indices(types.size, 1)
    labels = np.array(["-".join(sorted((types[a], types[b]))) for a, b in zip(first, second,
                                                                               strict=True)])
    return labels, first, second


def _pearson_pairs(spins, first, second):
    """Pearson correlation of the ±1 spins (T, N) for the pairs (first[k], second[k]).

    The sums of ±1 values and products are integers, exact in float32 up to 2^24 bins, so the
    matrix product runs in float32 (SGEMM, half the time of float64) with no rounding at all.
    """
    num_bins = spins.shape[0]
    s = np.asarray(spins, np.float32 if num_bins < 2**24 else np.float64)
    m = s.sum(axis=0, dtype=np.float64) / num_bins
    c = (s.T @ s).astype(np.float64) / num_bins - np.outer(m, m)
    var = np.diag(c)
    denom = np.sqrt(np.maximum(var[first] * var[second], 1e-300))
    return np.where(denom > 1e-150, c[first, second] / denom, 0.0)


def state_analysis(rng_key, data, *, states=None, fit="mle", compare=(("deep", "wake"),),
                   block="I-I", num_draws=200, num_bootstrap=200, block_length=BLOCK_LENGTH,
                   prob=checks.INTERVAL_PROB, posterior_kwargs=None, population=None):
    """Couplings and correlations per state and cell-type block, and state contrasts.

    Parameters
    ----------
    data : SpikeData with ``states`` and ``cell_types``.
    states : states to fit (default: all, in order of appearance).
    fit : "mle" or "posterior" (:func:`fit_draws`), one independent fit per state.
    compare : pairs (a, b): report P(mean ``block`` coupling in a > in b) (over paired
        posterior draws; None for a single maximum-likelihood draw) and P(mean ``block``
        correlation in a > in b) (over paired bootstrap replicates).
    population : restrict the fits to these cell types (e.g. "I" fits the I neurons alone).

    Returns
    -------
    dict: ``states``, ``blocks``, ``coupling_by_block`` and ``correlation_by_block``
    (block -> mean/median/lower/upper lists, one per state: the mean over the block's pairs),
    ``couplings`` and ``correlations`` (state -> block -> per-pair posterior medians / observed
    values: the distributions), ``probabilities`` (statement -> probability), ``fit``,
    ``interval``, ``note``.
    """
    import jax

    from bayes_ising.errors import DataError

    if data.states is None or data.cell_types is None:
        raise DataError("the state analysis needs states and cell types; the data lack "
                        + ("states" if data.states is None else "cell types"))
    if population is not None:
        data = data.select(population=population)
    if states is None:
        _, first_seen = np.unique(np.asarray(data.states).astype(str), return_index=True)
        states = [str(data.states[k]) for k in sorted(first_seen)]
    states = [str(s) for s in states]
    labels, first, second = _block_labels(data.cell_types)
    blocks = [b for b in ("E-E", "E-I", "I-I") if b in set(labels)] + sorted(
        set(labels) - {"E-E", "E-I", "I-I"})
    rng = np.random.default_rng(np.asarray(jax.random.key_data(rng_key)).ravel()[-1])
    keys = jax.random.split(rng_key, len(states))
    coupling_means, correlation_boot = {}, {}
    couplings, correlations = {}, {}
    fit_label = None
    for key, state in zip(keys, states, strict=True):
        sub = data.select(state=state)
        spins = np.asarray(sub.spins)
        h, J, fit_label = fit_draws(key, spins, fit=fit, num_draws=num_draws,
                                    posterior_kwargs=posterior_kwargs,
                                    cell_types=sub.cell_types, neuron_ids=sub.neuron_ids)
        j_pairs = J[:, first, second]  # (D, P)
        coupling_means[state] = {b: j_pairs[:, labels == b].mean(axis=1) for b in blocks}
        couplings[state] = {b: np.median(j_pairs[:, labels == b], axis=0) for b in blocks}
        observed_corr = _pearson_pairs(spins, first, second)
        correlations[state] = {b: observed_corr[labels == b] for b in blocks}
        index = block_bootstrap_indices(rng, spins.shape[0], num_bootstrap, block_length)
        boot = np.stack([_pearson_pairs(spins[idx], first, second) for idx in index])
        correlation_boot[state] = {b: boot[:, labels == b].mean(axis=1) for b in blocks}

    def by_block(values):
        out = {}
        for b in blocks:
            summary = [checks.interval(values[s][b], prob) for s in states]
            out[b] = {k: [float(v[k]) for v in summary]
                      for k in ("mean", "median", "lower", "upper")}
        return out

    probabilities = {}
    for a, b in compare:
        if a not in states or b not in states or block not in blocks:
            continue
        ca, cb = coupling_means[a][block], coupling_means[b][block]
        if ca.size > 1 and cb.size > 1:
            n = max(ca.size, cb.size)
            pa, pb = rng.choice(ca, n), rng.choice(cb, n)
            probabilities[f"P(mean {block} coupling in {a} > {b})"] = float(np.mean(pa > pb))
        ra, rb = correlation_boot[a][block], correlation_boot[b][block]
        probabilities[f"P(mean {block} correlation in {a} > {b})"] = float(np.mean(ra > rb))
    note = ("Couplings: " + (f"intervals over posterior draws ({fit_label})" if fit == "posterior"
                             else f"{fit_label}, one estimate per state (no interval)")
            + f". Correlations: Pearson correlation of the binned spins, intervals from a "
            f"moving-block bootstrap over bins (blocks of {block_length} bins).")
    return dict(states=states, blocks=blocks, coupling_by_block=by_block(coupling_means),
                correlation_by_block=by_block(correlation_boot), couplings=couplings,
                correlations=correlations, probabilities=probabilities, fit=fit_label,
                interval=prob, note=note,
                num_neurons=int(data.num_neurons), num_pairs_by_block={
                    b: int(np.sum(labels == b)) for b in blocks})


# --------------------------------------------------------------------------------------------
# The same analyses from posteriors fitted elsewhere (bayes_ising.pipeline.plan)
# --------------------------------------------------------------------------------------------


def ei_posterior_comparison(rng_key, data, population_tree, joint_tree, *, num_draws=100,
                            tail=0.01, **comparison_kwargs):
    """Population-only posterior vs the joint (E+I) posterior's marginal, over all A's neurons.

    ``population_tree`` is a posterior fitted to the neurons A alone (e.g. every E neuron of a
    state), ``joint_tree`` one fitted to A and the other population on the same bins; ``data``
    holds those bins (and at least the joint posterior's neurons). Predicted P(K_A ≥ k_high)
    per posterior draw of each (the joint model's marginal over exactly A's neurons) against
    the data's, as :func:`synchrony_comparison` (log ratios with intervals combining the
    posterior draws and a block bootstrap of the data).

    Returns the :func:`synchrony_comparison` dict plus ``neurons`` (A's ids) and ``fit``.
    """
    population_ids = posterior.neuron_ids(population_tree).tolist()
    subset = posterior.data_columns(population_tree, posterior.neuron_ids(joint_tree))
    spins = np.asarray(posterior.align(population_tree, data).spins)
    result = synchrony_comparison(
        rng_key, spins, posterior.posterior_draws(population_tree, num_draws),
        posterior.posterior_draws(joint_tree, num_draws), subset, tail=tail,
        **comparison_kwargs)
    result.update(neurons=population_ids, fit=dict(
        population_only=f"posterior ({population_tree.attrs.get('likelihood')} likelihood)",
        joint=f"posterior ({joint_tree.attrs.get('likelihood')} likelihood)"))
    return result


def _ordered_pair_probabilities(samples, states):
    """P(x_a > x_b) for every ordered pair a ≠ b, over all pairs of independent samples.

    ``samples[a]`` (D_a,) are draws of independent posteriors (or bootstrap replicates), so
    every combination (i, j) is a draw of the pair: P = mean_ij [x_a,i > x_b,j] (ties count
    half; P(a > b) + P(b > a) = 1). None when a state has fewer than 2 samples.
    """
    out = {}
    for a in states:
        for b in states:
            if a == b:
                continue
            xa, xb = np.asarray(samples[a], float), np.asarray(samples[b], float)
            if xa.size < 2 or xb.size < 2:
                out[f"{a}>{b}"] = None
                continue
            greater = np.mean(xa[:, None] > xb[None, :])
            ties = np.mean(xa[:, None] == xb[None, :])
            out[f"{a}>{b}"] = float(greater + 0.5 * ties)
    return out


def state_posterior_comparison(rng_key, fits, *, num_draws=100, num_bootstrap=200,
                               block_length=BLOCK_LENGTH, prob=checks.INTERVAL_PROB):
    """Couplings and correlations per cell-type block across states, from per-state posteriors.

    ``fits`` maps state -> (posterior DataTree, SpikeData of that state's bins holding the
    posterior's neurons). Per state and block (E–E, E–I, I–I): the mean coupling over the
    block's pairs per posterior draw and the mean Pearson correlation of the binned spins per
    moving-block bootstrap replicate, each with a central ``prob`` interval; for every block
    and every ordered pair of states (a, b), P(mean coupling in a > in b) over all pairs of
    draws of the independent per-state posteriors and P(mean correlation in a > in b) over
    all pairs of bootstrap replicates (:func:`_ordered_pair_probabilities`).

    Returns
    -------
    dict: ``states``, ``blocks``, ``per_state`` (block -> state -> {"coupling", "correlation"}
    intervals, ``num_pairs``), ``probabilities`` (block -> "a>b" -> {"coupling",
    "correlation"}), ``interval``, ``note``.
    """
    import jax

    states = list(fits)
    rng = np.random.default_rng(np.asarray(jax.random.key_data(rng_key)).ravel()[-1])
    coupling, correlation, per_state, blocks = {}, {}, {}, []
    for state in states:
        tree, data = fits[state]
        data = posterior.align(tree, data)
        types = posterior.cell_types(tree)
        types = np.asarray(data.cell_types if types is None else types).astype(str)
        labels, first, second = _block_labels(types)
        _, J = posterior.posterior_draws(tree, num_draws)
        spins = np.asarray(data.spins)
        index = block_bootstrap_indices(rng, spins.shape[0], num_bootstrap, block_length)
        boot = np.stack([_pearson_pairs(spins[idx], first, second) for idx in index])
        observed = _pearson_pairs(spins, first, second)
        coupling[state], correlation[state] = {}, {}
        for block in ("E-E", "E-I", "I-I"):
            inside = labels == block
            if not inside.any():
                continue
            if block not in blocks:
                blocks.append(block)
            coupling[state][block] = J[:, first[inside], second[inside]].mean(axis=1)
            correlation[state][block] = boot[:, inside].mean(axis=1)
            per_state.setdefault(block, {})[state] = dict(
                coupling=checks._scalar_interval(coupling[state][block], prob),
                correlation={**checks._scalar_interval(correlation[state][block], prob),
                             "observed": float(observed[inside].mean())},
                num_pairs=int(inside.sum()))
    probabilities = {}
    for block in blocks:
        present = [s for s in states if block in coupling[s]]
        pc = _ordered_pair_probabilities({s: coupling[s][block] for s in present}, present)
        pr = _ordered_pair_probabilities({s: correlation[s][block] for s in present}, present)
        probabilities[block] = {k: {"coupling": pc[k], "correlation": pr[k]} for k in pc}
    note = ("Couplings: mean over the block's pairs per posterior draw (independent fits per "
            "state; P(a > b) over all pairs of draws). Correlations: Pearson correlation of "
            f"the binned spins, moving-block bootstrap over bins (blocks of {block_length} bins).")
    return dict(states=states, blocks=blocks, per_state=per_state, probabilities=probabilities,
                interval=prob, note=note)


def population_only_synchrony(rng_key, spins, cell_types, neuron_ids, h_draws, J_draws, *,
                              max_excitatory=14):
    """The E-only and I-only synchrony check of ``bayes-ising check``: for each population,
    an MLE fit to that population alone against the joint posterior's marginal over the same
    neurons (:func:`synchrony_comparison`).

    Parameters
    ----------
    spins : (T, N) ±1, in the posterior's neuron order; cell_types, neuron_ids : (N,)
    h_draws (D, N), J_draws (D, N, N) : the joint posterior's draws
    max_excitatory : keep at most this many E neurons (the most active; the exact MLE
        enumerates them)

    Returns
    -------
    dict population ("E", "I") -> the :func:`synchrony_comparison` block, with ``fit`` and
    ``neurons`` (ids).
    """
    from bayes_ising.core import stats

    types = np.asarray(cell_types).astype(str)
    ids = np.asarray(neuron_ids).astype(str)
    firing = stats.firing_probability(spins)
    result = {}
    for population in ("E", "I"):
        members = np.flatnonzero(types == population)
        if population == "E" and members.size > max_excitatory:
            order = np.argsort(-firing[members], kind="stable")[:max_excitatory]
            members = np.sort(members[order])
        pop_h, pop_J, label = fit_draws(rng_key, spins[:, members], fit="mle")
        block = synchrony_comparison(rng_key, spins[:, members], (pop_h, pop_J),
                                     (h_draws, J_draws), members)
        block["fit"] = {"population_only": label, "joint": "this posterior (all neurons)"}
        block["neurons"] = ids[members].tolist()
        result[population] = block
    return result
