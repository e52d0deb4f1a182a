r"""Posterior predictive checks and information ratios of a pairwise (Ising) model.

The core functions take parameter draws as arrays — ``h_draws`` (D, N) and ``J_draws``
(D, N, N), symmetric with zero diagonal, energy E(s) = −Σ h_i s_i − Σ_{i<j} J_ij s_i s_j — so
they serve a posterior (D draws, :func:`parameter_draws`) and a single maximum-likelihood fit
(D = 1) alike. With ``V_draws`` (D, N+1) they check the K-pairwise model
(:mod:`bayes_ising.core.kpairwise`, E gains −V(K(s))): enumeration with the V term
(:func:`bayes_ising.core.kpairwise.exact_moments`, ``log_probability``, ``exact_entropy``), or
Gibbs sampling with it (:func:`bayes_ising.core.gibbs.sample_kpairwise_spins`);
:func:`posterior_predictive_checks` passes the V draws of a K-pairwise posterior. Observed
data are a ``(T, N)`` ±1 spin raster. Entropies are in nats.

* :func:`predictive_synchrony` — P(K) of the model per draw (exact enumeration for
  N ≤ 22, :func:`bayes_ising.core.gibbs.sample_spins` otherwise) with central bands, against the
  data and the independent model (the Poisson-binomial of the observed firing probabilities).
* :func:`pattern_frequencies` — observed vs predicted probability of every observed pattern
  (the data of a log–log scatter) and the most frequent patterns.
* :func:`third_order` — connected third-order correlations
  T_ijk = ⟨δs_i δs_j δs_k⟩, δs = s − m, predicted vs observed over i<j<k.
* :func:`information` — S1, S2, SN and I2/IN with intervals over draws (below).
* :func:`predictive_moments` — the large-N counterpart of the exact checks: means and
  connected correlations of models drawn from a (pseudo-)posterior, each simulated by Gibbs
  from random and from data-row starts (vectorised over draws), against the data's with the
  data's batch-means sampling error.

**Information.** S1 is the entropy of the independent model, S2 of the pairwise model, SN of
the data (Schneidman et al. 2006). I2/IN = (S1 − S2)/(S1 − SN) is the fraction of the
multi-information captured by pairwise interactions. Per posterior draw d we use the draw's own
independent model: S1_d = Σ_i H_b((1 + m_i^d)/2), with m^d the draw's model means, so that
I2_d = S1_d − S2_d ≥ 0 is exactly the multi-information of model d (at the maximum-likelihood
fit m^d equals the data's m and this is the textbook formula). IN = S1_data − SN uses the data's
S1 and the Miller–Madow estimate of SN. *SN caveat:* the plug-in entropy is biased low by
about (U − 1)/(2T) (U distinct patterns), Miller–Madow removes only that first-order term; when
:func:`bayes_ising.core.stats.data_entropy` says the sample is too small, IN is overestimated and
the ratio underestimated by an unknown amount — the note says so.
"""

import numpy as np

from bayes_ising.core import limits

__all__ = [
    "parameter_draws",
    "independent_synchrony_distribution",
    "model_synchrony_draws",
    "subset_synchrony_distribution",
    "predictive_synchrony",
    "pattern_frequencies",
    "third_order",
    "information",
    "posterior_predictive_checks",
    "predictive_moments",
    "interval",
]

#: central interval of every band and interval reported here
INTERVAL_PROB = 0.9
#: default posterior draws of the checks: the ends of a central 90% band from D draws scatter
#: by about 2.1 σ/√D (σ the posterior sd; sample 5%/95% quantiles, √(p(1−p)/D)/φ(z_p)),
#: ±0.21 σ at 100 draws; 200 would give ±0.15 σ for twice the sampling.
DEFAULT_CHECK_DRAWS = 100
#: the exact routines (enumeration) are used up to this N; Gibbs sampling above
MAX_EXACT_CHECK_NEURONS = limits.MAX_EXACT_CHECK_NEURONS
#: exact third-order moments build a (2^N, N²) matrix: limit N for memory
MAX_EXACT_THIRD_ORDER_NEURONS = limits.MAX_EXACT_THIRD_ORDER_NEURONS


def interval(values, prob=INTERVAL_PROB, axis=0):
    """dict(mean, median, lower, upper) of ``values`` over ``axis`` (central ``prob``)."""
    values = np.asarray(values, float)
    tail = (1 - prob) / 2
    return dict(mean=np.mean(values, axis=axis), median=np.median(values, axis=axis),
                lower=np.quantile(values, tail, axis=axis),
                upper=np.quantile(values, 1 - tail, axis=axis))


def _scalar_interval(values, prob=INTERVAL_PROB):
    return {k: float(v) for k, v in interval(values, prob).items()}


def _spins(spins):
    s = np.asarray(spins)
    if s.ndim != 2:
        raise ValueError(f"spins must be (num_bins, N), got shape {s.shape}")
    return s


# --------------------------------------------------------------------------------------------
# Draws from a posterior DataTree
# --------------------------------------------------------------------------------------------


def parameter_draws(tree, num_draws=None, *, potential=False):
    """Posterior draws h (D, N), J (D, N, N) (and, with ``potential``, V (D, N+1) or None),
    evenly thinned to ``num_draws`` — :func:`bayes_ising.fit.posterior.posterior_draws` (the
    posterior contract)."""
    from bayes_ising.fit.posterior import posterior_draws

    return posterior_draws(tree, num_draws, potential=potential)


# --------------------------------------------------------------------------------------------
# Synchrony P(K)
# --------------------------------------------------------------------------------------------


def independent_synchrony_distribution(firing_probability):
    r"""P(K) of independent neurons (Poisson-binomial), shape (N+1,).

    .. math:: \prod_i (1 - p_i + p_i z) = \sum_K P(K) z^K, by repeated convolution.
    """
    dist = np.array([1.0])
    for p in np.asarray(firing_probability, float):
        dist = np.convolve(dist, [1.0 - p, p])
    return dist


def _exact_synchrony_draws(h_draws, J_draws, V_draws=None):
    import jax
    import jax.numpy as jnp

    from bayes_ising.core import ising, kpairwise

    if V_draws is not None:
        fn = lambda p: kpairwise.exact_moments(*p)[2]  # noqa: E731
        return np.asarray(jax.lax.map(fn, tuple(jnp.asarray(a, jnp.float64)
                                                for a in (h_draws, J_draws, V_draws))))
    fn = lambda hj: ising.exact_synchrony_distribution(hj[0], hj[1])  # noqa: E731
    return np.asarray(jax.lax.map(fn, (jnp.asarray(h_draws), jnp.asarray(J_draws))))


def _as_v(V_draws, h_draws):
    """V draws (D, N+1) float64 or None (the pairwise model)."""
    if V_draws is None:
        return None
    V = np.asarray(V_draws, float).reshape(h_draws.shape[0], h_draws.shape[1] + 1)
    return None if not np.any(V) else V


def _gibbs_samples(rng_key, h_draws, J_draws, num_samples, initial_spins=None,
                   progress=False, V_draws=None):
    """Model samples of every draw in one vectorised Gibbs run, (D, num_samples, N) int8.

    :func:`bayes_ising.core.gibbs.sample_models_spins`: 256 chains per draw started from random
    data rows (``initial_spins``; uniform starts without), 200 burn-in sweeps, every 5th sweep
    recorded (the energy's autocorrelation time of fitted retina-like models is 1–3 sweeps).
    With ``V_draws`` the K-pairwise models, on the same schedule
    (:func:`bayes_ising.core.gibbs.sample_kpairwise_spins`).
    """
    import jax.numpy as jnp

    from bayes_ising.core import gibbs

    if V_draws is not None:
        return gibbs.sample_kpairwise_spins(
            rng_key, h_draws, J_draws, V_draws, int(num_samples),
            num_chains=min(256, int(num_samples)), burn_in=200, thin=5,
            initial_spins=initial_spins)

    bar = None
    num_chains = min(256, int(num_samples))
    sweeps = 200 + 5 * -(-int(num_samples) // num_chains)
    if progress:
        import sys

        from tqdm.auto import tqdm

        bar = tqdm(total=sweeps, unit="sweep", file=sys.stderr, leave=False,
                   desc=f"model samples ({len(h_draws)} draws × {num_samples})")
    spins, _ = gibbs.sample_models_spins(
        rng_key, jnp.asarray(h_draws), jnp.asarray(J_draws), int(num_samples),
        num_chains=num_chains, burn_in=200, thin=5, initial_spins=initial_spins, bar=bar)
    if bar is not None:
        bar.close()
    return spins


def _sampled_third_order(samples, chunk_size=2048):
    """T_ijk = ⟨δs_i δs_j δs_k⟩ (N, N, N) of model samples (S, N), δs = s − m: the
    :func:`bayes_ising.core.stats.third_order_correlations` sum as jitted float32 GEMMs over chunks
    of samples (rounding ~1e-6, far below the Monte Carlo error ~1/√S)."""
    import jax.numpy as jnp

    x = jnp.asarray(samples, jnp.float32)
    num_samples, num_neurons = x.shape
    pad = -num_samples % chunk_size
    return np.asarray(_third_order_kernel(jnp.pad(x, ((0, pad), (0, 0))), num_samples,
                                          chunk_size), dtype=np.float64)


def _third_order_kernel_impl(x, num_samples, chunk_size):
    import jax
    import jax.numpy as jnp

    num_neurons = x.shape[1]
    valid = (jnp.arange(x.shape[0]) < num_samples)[:, None]
    d = jnp.where(valid, x - x[:num_samples].mean(axis=0), 0.0)
    chunks = d.reshape(-1, chunk_size, num_neurons)

    def add(total, chunk):
        pair = (chunk[:, :, None] * chunk[:, None, :]).reshape(chunk_size, -1)
        return total + chunk.T @ pair, None

    total = jax.lax.scan(add, jnp.zeros((num_neurons, num_neurons**2), x.dtype), chunks)[0]
    return (total / num_samples).reshape(num_neurons, num_neurons, num_neurons)


def _third_order_kernel(x, num_samples, chunk_size):
    return _third_order_jitted()(x, num_samples, chunk_size)


def _third_order_jitted():
    global _THIRD_ORDER_JIT
    if _THIRD_ORDER_JIT is None:
        import jax

        _THIRD_ORDER_JIT = jax.jit(_third_order_kernel_impl, static_argnums=(1, 2))
    return _THIRD_ORDER_JIT


_THIRD_ORDER_JIT = None


def _progress(items, progress, desc):
    if not progress:
        return items
    import sys

    from tqdm.auto import tqdm

    return tqdm(items, desc=desc, file=sys.stderr, leave=False)


def _use_exact(num_neurons, method):
    if method not in ("auto", "exact", "gibbs"):
        raise ValueError(f"method must be 'auto', 'exact' or 'gibbs', got {method!r}")
    if method == "auto":
        return num_neurons <= MAX_EXACT_CHECK_NEURONS
    return method == "exact"


def model_synchrony_draws(rng_key, h_draws, J_draws, *, method="auto", num_samples=20_000,
                          subset=None, model_samples=None, initial_spins=None, progress=False,
                          V_draws=None):
    """Model P(K) (or P(K_subset)) per draw, shape (D, n+1), n = N or len(subset).

    Exact by enumeration when ``method`` is "exact" (or "auto" with N ≤ 22); otherwise from
    ``num_samples`` Gibbs samples of each draw, all draws in one run (:func:`_gibbs_samples`;
    ``model_samples`` (D, S, N) reuses samples drawn before). ``V_draws`` (D, N+1): the
    K-pairwise model (a ``subset`` then needs Gibbs samples: its marginal is not enumerated).
    """
    h_draws = np.atleast_2d(np.asarray(h_draws, float))
    J_draws = np.asarray(J_draws, float).reshape(h_draws.shape + (h_draws.shape[1],))
    V_draws = _as_v(V_draws, h_draws)
    num_neurons = h_draws.shape[1]
    if _use_exact(num_neurons, method) and (subset is None or V_draws is None):
        if subset is None:
            return _exact_synchrony_draws(h_draws, J_draws, V_draws)
        return _subset_synchrony_draws(h_draws, J_draws, subset)
    cols = np.arange(num_neurons) if subset is None else np.asarray(subset)
    if model_samples is None:
        model_samples = _gibbs_samples(rng_key, h_draws, J_draws, num_samples, initial_spins,
                                       progress, V_draws)
    out = []
    for samples in model_samples:
        k = np.sum(samples[:, cols] > 0, axis=1)
        out.append(np.bincount(k, minlength=cols.size + 1) / samples.shape[0])
    return np.stack(out)


def _subset_synchrony_kernel(h, J, in_subset, num_subset, chunk_bits):
    """P(K_A) by chunked enumeration; traced (jit/vmap-able); in_subset (N,) 0/1."""
    import jax
    import jax.numpy as jnp

    num_neurons = h.shape[0]
    chunk = 2 ** min(chunk_bits, num_neurons)
    num_chunks = 2**num_neurons // chunk
    shifts = jnp.arange(num_neurons - 1, -1, -1)

    def block(start):
        codes = start * chunk + jnp.arange(chunk)
        bits = (codes[:, None] >> shifts[None, :]) & 1
        spins = (2 * bits - 1).astype(h.dtype)
        neg_energy = spins @ h + 0.5 * jnp.sum((spins @ J) * spins, axis=1)
        return neg_energy, bits @ in_subset

    neg_energy, k = jax.lax.map(block, jnp.arange(num_chunks))
    neg_energy, k = neg_energy.reshape(-1), k.reshape(-1)
    weights = jnp.exp(neg_energy - jax.scipy.special.logsumexp(neg_energy))
    return jax.ops.segment_sum(weights, k, num_segments=num_subset + 1)


def _subset_synchrony_draws(h_draws, J_draws, subset, chunk_bits=16):
    import functools

    import jax
    import jax.numpy as jnp

    from bayes_ising.core import ising

    num_neurons = h_draws.shape[1]
    ising.check_exact(num_neurons, "subset synchrony (enumeration)")
    subset = np.asarray(subset, int)
    mask = np.zeros(num_neurons, np.int64)
    mask[subset] = 1
    kernel = functools.partial(_subset_synchrony_kernel, in_subset=jnp.asarray(mask),
                               num_subset=int(subset.size), chunk_bits=int(chunk_bits))
    fn = jax.jit(lambda hs, js: jax.lax.map(lambda hj: kernel(hj[0], hj[1]), (hs, js)))
    return np.asarray(fn(jnp.asarray(h_draws, jnp.float64), jnp.asarray(J_draws, jnp.float64)))


def subset_synchrony_distribution(h, J, subset, *, chunk_bits=16):
    r"""Exact P(K_A) of the full model's marginal over the neurons in ``subset`` (A).

    Enumerates all 2^N states in chunks of 2^``chunk_bits`` (float64, logsumexp):
    :math:`P(K_A = k) = \sum_{s:\,\#\{i\in A: s_i=+1\}=k} e^{-E(s)}/Z`. Shape (|A|+1,).
    """
    h = np.asarray(h, float)
    return _subset_synchrony_draws(h[None], np.asarray(J, float)[None], subset, chunk_bits)[0]


def predictive_synchrony(rng_key, h_draws, J_draws, spins, *, method="auto",
                         num_samples=20_000, prob=INTERVAL_PROB, min_count=10,
                         model_samples=None, progress=False, V_draws=None):
    """Posterior predictive P(K) against the data and the independent model (``V_draws``:
    of the K-pairwise model).

    Returns
    -------
    dict: ``k`` (N+1,), ``observed`` (data P(K)), ``predicted`` (mean, median, lower, upper over
    draws: parameter uncertainty), ``replicated`` (the same for replicated data sets of T
    independent bins, multinomial from each draw's P(K): parameter and sampling uncertainty,
    ignoring the data's autocorrelation), ``independent`` (Poisson-binomial of the observed
    firing probabilities), ``draws`` (D, N+1), ``interval``, ``method``, and summaries over the
    K observed in at least ``min_count`` bins: ``fraction_in_band`` (observed inside the
    replicated band), ``max_abs_log_ratio``
    and ``max_abs_log_ratio_independent`` (max |log(predicted/observed)|, posterior median and
    independent model).
    """
    from bayes_ising.core import stats

    spins = _spins(spins)
    num_bins, num_neurons = spins.shape
    observed = stats.synchrony_distribution(spins)
    independent = independent_synchrony_distribution(stats.firing_probability(spins))
    draws = model_synchrony_draws(rng_key, h_draws, J_draws, method=method,
                                  num_samples=num_samples, model_samples=model_samples,
                                  initial_spins=spins, progress=progress, V_draws=V_draws)
    band = interval(draws, prob)
    # replicated data: T independent bins from each draw's P(K) (multinomial)
    import jax

    rng = np.random.default_rng(np.asarray(jax.random.key_data(rng_key)).ravel()[-1])
    probs = np.clip(draws, 0, None)
    probs = probs / probs.sum(axis=1, keepdims=True)
    replicated = np.stack([rng.multinomial(num_bins, p) for p in probs]) / num_bins
    replicated_band = interval(replicated, prob)
    seen = observed * num_bins >= min_count
    tiny = 1e-300
    log_ratio = np.log(np.maximum(band["median"][seen], tiny) / observed[seen])
    log_ratio_ind = np.log(np.maximum(independent[seen], tiny) / observed[seen])
    inside = ((observed[seen] >= replicated_band["lower"][seen])
              & (observed[seen] <= replicated_band["upper"][seen]))
    return dict(
        k=np.arange(num_neurons + 1), observed=observed, predicted=band,
        replicated=replicated_band, independent=independent, draws=draws, interval=prob,
        method="exact" if _use_exact(num_neurons, method) else "gibbs",
        num_bins=num_bins, min_count=min_count,
        fraction_in_band=float(inside.mean()) if inside.size else float("nan"),
        max_abs_log_ratio=float(np.max(np.abs(log_ratio))) if log_ratio.size else float("nan"),
        max_abs_log_ratio_independent=float(np.max(np.abs(log_ratio_ind)))
        if log_ratio_ind.size else float("nan"),
    )


# --------------------------------------------------------------------------------------------
# Pattern frequencies
# --------------------------------------------------------------------------------------------


def _independent_log_probability(patterns, firing_probability):
    p = np.clip(np.asarray(firing_probability, float), 1e-12, 1 - 1e-12)
    on = np.asarray(patterns) > 0
    return np.sum(np.where(on, np.log(p), np.log1p(-p)), axis=1)


def _pattern_codes(spins):
    """One sortable code per row of ±1 spins: its packed bits as bytes (numpy ``S`` dtype)."""
    packed = np.ascontiguousarray(np.packbits(np.asarray(spins) > 0, axis=1))
    return packed.view(np.dtype((np.bytes_, packed.shape[1]))).reshape(-1)


def pattern_frequencies(rng_key, h_draws, J_draws, spins, *, method="auto", top=20,
                        num_samples=20_000, prob=INTERVAL_PROB, min_count=10,
                        model_samples=None, progress=False, V_draws=None):
    """Observed vs predicted probability of each observed pattern (a log–log scatter;
    ``V_draws``: of the K-pairwise model).

    Exact: P(s | h, J) of every distinct observed pattern per draw. Gibbs (large N): each
    draw's ``num_samples`` samples are counted against the observed patterns (patterns never
    sampled get probability 0, shown at the floor of a log plot).

    Returns
    -------
    dict: ``patterns`` (U, N) int8 (by decreasing count), ``counts`` (U,), ``observed`` (U,)
    frequencies, ``predicted`` (mean, median, lower, upper over draws), ``independent`` (U,),
    ``num_bins``, ``top`` (list of the ``top`` most frequent patterns, each with the indices of
    its active neurons, observed and predicted probability), and over patterns seen at least
    ``min_count`` times the count-weighted mean |log(predicted/observed)| of the pairwise
    (posterior median) and independent models (``mean_abs_log_ratio``,
    ``mean_abs_log_ratio_independent``).
    """
    import jax
    import jax.numpy as jnp

    from bayes_ising.core import ising, kpairwise, stats

    spins = _spins(spins)
    num_bins, num_neurons = spins.shape
    patterns, counts = stats.unique_patterns(spins)
    observed = counts / num_bins
    h_draws = np.atleast_2d(np.asarray(h_draws, float))
    J_draws = np.asarray(J_draws, float).reshape(h_draws.shape + (num_neurons,))
    V_draws = _as_v(V_draws, h_draws)
    if _use_exact(num_neurons, method):
        pats = jnp.asarray(patterns, jnp.float64)
        if V_draws is None:
            fn = lambda hj: ising.log_probability(pats, hj[0], hj[1])  # noqa: E731
            params = (jnp.asarray(h_draws), jnp.asarray(J_draws))
        else:
            fn = lambda p: kpairwise.log_probability(pats, *p)  # noqa: E731
            params = (jnp.asarray(h_draws), jnp.asarray(J_draws), jnp.asarray(V_draws))
        predicted_draws = np.exp(np.asarray(jax.lax.map(fn, params)))
    else:
        if model_samples is None:
            model_samples = _gibbs_samples(rng_key, h_draws, J_draws, num_samples, spins,
                                           progress, V_draws)
        observed_codes = _pattern_codes(patterns)
        order = np.argsort(observed_codes)
        sorted_codes = observed_codes[order]
        predicted_draws = np.zeros((h_draws.shape[0], len(counts)))
        for d, samples in enumerate(model_samples):
            codes = _pattern_codes(samples)
            position = np.clip(np.searchsorted(sorted_codes, codes), 0, len(sorted_codes) - 1)
            found = sorted_codes[position] == codes
            np.add.at(predicted_draws[d], order[position[found]], 1.0)
            predicted_draws[d] /= codes.shape[0]
    band = interval(predicted_draws, prob)
    independent = np.exp(_independent_log_probability(patterns,
                                                      stats.firing_probability(spins)))
    seen = counts >= min_count
    weights = counts[seen] / counts[seen].sum() if seen.any() else np.array([])
    tiny = 1e-300
    lr = np.abs(np.log(np.maximum(band["median"][seen], tiny) / observed[seen]))
    lr_ind = np.abs(np.log(np.maximum(independent[seen], tiny) / observed[seen]))
    top_rows = [dict(active=[int(i) for i in np.flatnonzero(patterns[u] > 0)],
                     count=int(counts[u]), observed=float(observed[u]),
                     predicted=float(band["median"][u]), lower=float(band["lower"][u]),
                     upper=float(band["upper"][u]), independent=float(independent[u]))
                for u in range(min(top, len(counts)))]
    return dict(patterns=patterns, counts=counts, observed=observed, predicted=band,
                independent=independent, num_bins=num_bins, interval=prob, top=top_rows,
                method="exact" if _use_exact(num_neurons, method) else "gibbs",
                mean_abs_log_ratio=float(np.sum(weights * lr)) if seen.any() else float("nan"),
                mean_abs_log_ratio_independent=float(np.sum(weights * lr_ind))
                if seen.any() else float("nan"))


# --------------------------------------------------------------------------------------------
# Third-order correlations
# --------------------------------------------------------------------------------------------


def _triplets(num_neurons):
    i, j, k = np.array([(a, b, c) for a in range(num_neurons) for b in range(a + 1, num_neurons)
                        for c in range(b + 1, num_neurons)], dtype=int).reshape(-1, 3).T
    return i, j, k


def _exact_third_order(h_draws, J_draws, V_draws=None):
    r"""Connected T_ijk per draw, (D, N, N, N), by enumeration (N ≤ 16); with ``V_draws``
    (D, N+1) of the K-pairwise model (:mod:`bayes_ising.core.kpairwise`).

    Raw moments M_ijk = Σ_s P(s) s_i s_j s_k use the draw-independent (2^N, N²) matrix of
    s_j s_k; then T_ijk = M_ijk − m_i Q_jk − m_j Q_ik − m_k Q_ij + 2 m_i m_j m_k.
    """
    import jax
    import jax.numpy as jnp

    from bayes_ising.core import ising

    num_neurons = h_draws.shape[1]
    states = jnp.asarray(ising.all_states(num_neurons), jnp.float64)
    pair = (states[:, :, None] * states[:, None, :]).reshape(states.shape[0], -1)

    def one(hj):
        if V_draws is None:
            p = jnp.exp(ising.log_probability(states, hj[0], hj[1]))
        else:
            from bayes_ising.core.kpairwise import log_probability

            p = jnp.exp(log_probability(states, hj[0], hj[1], hj[2]))
        m = p @ states
        q = (pair.T @ p).reshape(num_neurons, num_neurons)
        m3 = ((states * p[:, None]).T @ pair).reshape((num_neurons,) * 3)
        return (m3 - m[:, None, None] * q[None] - m[None, :, None] * q[:, None, :]
                - m[None, None, :] * q[:, :, None]
                + 2 * m[:, None, None] * m[None, :, None] * m[None, None, :])

    params = (jnp.asarray(h_draws), jnp.asarray(J_draws)) + (
        () if V_draws is None else (jnp.asarray(V_draws),))
    return np.asarray(jax.lax.map(one, params))


def third_order(rng_key, h_draws, J_draws, spins, *, method="auto", num_samples=50_000,
                prob=INTERVAL_PROB, progress=False, V_draws=None):
    """Connected third-order correlations, predicted (per draw) vs observed, over i<j<k
    (``V_draws``: of the K-pairwise model).

    Exact by enumeration for N ≤ 16 (:data:`MAX_EXACT_THIRD_ORDER_NEURONS`); otherwise from
    ``num_samples`` Gibbs samples per draw, all draws in one run (their Monte Carlo error adds
    to the band).

    Returns
    -------
    dict: ``triplets`` (3, M), ``observed`` (M,), ``predicted`` (mean, median, lower, upper),
    ``independent`` (zeros: independent neurons have T = 0), and summaries: ``rms_observed``,
    ``rms_error`` (posterior median vs observed), ``correlation`` (Pearson, median vs
    observed), ``slope`` (least squares through 0 of median on observed).
    """

    from bayes_ising.core import stats

    spins = _spins(spins)
    num_neurons = spins.shape[1]
    i, j, k = _triplets(num_neurons)
    observed = stats.third_order_correlations(spins)[i, j, k]
    h_draws = np.atleast_2d(np.asarray(h_draws, float))
    J_draws = np.asarray(J_draws, float).reshape(h_draws.shape + (num_neurons,))
    V_draws = _as_v(V_draws, h_draws)
    exact = _use_exact(num_neurons, method) and num_neurons <= MAX_EXACT_THIRD_ORDER_NEURONS
    if exact:
        draws = _exact_third_order(h_draws, J_draws, V_draws)[:, i, j, k]
    else:
        samples = _gibbs_samples(rng_key, h_draws, J_draws, num_samples, spins, progress,
                                 V_draws)
        draws = np.stack([_sampled_third_order(x)[i, j, k]
                          for x in _progress(samples, progress, "third-order moments")])
    band = interval(draws, prob)
    med = band["median"]
    corr = (float(np.corrcoef(med, observed)[0, 1])
            if observed.size > 1 and np.std(observed) > 0 and np.std(med) > 0 else float("nan"))
    return dict(triplets=np.stack([i, j, k]), observed=observed, predicted=band,
                independent=np.zeros_like(observed), interval=prob,
                method="exact" if exact else "gibbs",
                rms_observed=float(np.sqrt(np.mean(observed**2))),
                rms_error=float(np.sqrt(np.mean((med - observed) ** 2))),
                correlation=corr,
                slope=float(med @ observed / (observed @ observed)) if np.any(observed)
                else float("nan"))


# --------------------------------------------------------------------------------------------
# Information
# --------------------------------------------------------------------------------------------


def _binary_entropy(p):
    p = np.clip(np.asarray(p, float), 0.0, 1.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = -(np.where(p > 0, p * np.log(p), 0.0) + np.where(p < 1, (1 - p) * np.log1p(-p),
                                                                   0.0))
    return np.sum(terms, axis=-1)


def ratio_warning(ratio, i_n, s2, s_n):
    """Why an I2/IN interval leaves [0, 1] (it cannot, for a model of these data), or None.

    I2 = S1_model − S2 ≥ 0 always; so a ratio below 0 means IN = S1 − SN ≤ 0 (the data's SN
    estimate reaches S1: too few bins for the pattern entropy), and a ratio above 1 means the
    model's S2 is below the data's SN (the model does not describe these data: often data that
    are not the fit's, or an SN estimate biased high).
    """
    lower, upper = ratio["lower"], ratio["upper"]
    if 0.0 <= lower and upper <= 1.0:
        return None
    shown = f"I2/IN interval [{lower:.3f}, {upper:.3f}] lies outside [0, 1], which is impossible"
    if i_n <= 0 or lower < 0:
        return (f"{shown}: IN = S1 - SN = {i_n:.4g} nats is not positive (SN {s_n:.4g}), so "
                "the data have too few bins to estimate their entropy; do not use this ratio")
    return (f"{shown}: the model's S2 (median {s2:.4g}) is below the data's SN ({s_n:.4g}), "
            "so the model does not describe these data (are they the fit's data?) or SN is "
            "biased; do not use this ratio")


def information(h_draws, J_draws, spins, *, prob=INTERVAL_PROB, V_draws=None):
    """S1, S2, SN and I2/IN with intervals over draws (exact S2 by enumeration, N ≤ 22).

    See the module docstring for the definitions and the SN caveat. With ``V_draws`` the
    model is K-pairwise: ``S2`` and ``I2`` are then its entropy S_K and S1 − S_K (the
    information captured by pairwise couplings and V together), ``family`` says which.

    Returns
    -------
    dict: ``S1`` (data), ``S1_model`` / ``S2`` / ``I2`` (intervals over draws), ``SN`` (Miller–
    Madow), ``SN_plugin``, ``IN`` (= S1 − SN), ``ratio`` (I2/IN, interval over draws),
    ``ratio_warning`` (None, or why ``ratio`` leaves [0, 1]: :func:`ratio_warning`),
    ``ratio_plugin`` (with the plug-in SN), ``ratio_data_S1`` ((S1_data − S2_d)/IN, the
    literal formula per draw), ``SN_reliable``, ``note``, ``num_draws``. Raises
    :class:`~bayes_ising.errors.TooManyNeuronsError` for N > 22.
    """
    import jax
    import jax.numpy as jnp

    from bayes_ising.core import ising, kpairwise, stats

    spins = _spins(spins)
    num_neurons = spins.shape[1]
    ising.check_exact(num_neurons, "information (S2 by enumeration)")
    h_draws = np.atleast_2d(np.asarray(h_draws, float))
    J_draws = np.asarray(J_draws, float).reshape(h_draws.shape + (num_neurons,))
    V_draws = _as_v(V_draws, h_draws)

    def per_draw(hj):
        m, _ = ising.exact_moments(hj[0], hj[1])
        return m, ising.exact_entropy(hj[0], hj[1])

    def per_draw_k(p):
        return kpairwise.exact_moments(*p)[0], kpairwise.exact_entropy(*p)

    if V_draws is None:
        m_draws, s2 = jax.lax.map(per_draw, (jnp.asarray(h_draws), jnp.asarray(J_draws)))
    else:
        m_draws, s2 = jax.lax.map(per_draw_k, tuple(jnp.asarray(a) for a in (
            h_draws, J_draws, V_draws)))
    m_draws, s2 = np.asarray(m_draws), np.asarray(s2)
    s1_model = _binary_entropy(stats.probability_from_mean(m_draws))
    i2 = s1_model - s2
    s1 = float(_binary_entropy(stats.firing_probability(spins)))
    entropy = stats.data_entropy(spins)
    i_n = s1 - entropy.miller_madow
    i_n_plugin = s1 - entropy.plugin
    note = ("SN from the data's pattern counts (plug-in and Miller-Madow): " + entropy.note
            + ". A biased-low SN inflates IN = S1 - SN and so deflates I2/IN.")
    ratio = _scalar_interval(i2 / i_n, prob)
    return dict(
        S1=s1, S1_model=_scalar_interval(s1_model, prob), S2=_scalar_interval(s2, prob),
        ratio_warning=ratio_warning(ratio, i_n, float(np.median(s2)), float(
            entropy.miller_madow)),
        I2=_scalar_interval(i2, prob), SN=float(entropy.miller_madow),
        SN_plugin=float(entropy.plugin), IN=float(i_n),
        ratio=ratio,
        ratio_plugin=_scalar_interval(i2 / i_n_plugin, prob),
        ratio_data_S1=_scalar_interval((s1 - s2) / i_n, prob),
        SN_reliable=bool(entropy.reliable), note=note, interval=prob,
        num_draws=int(h_draws.shape[0]), units="nats per bin",
        family="pairwise" if V_draws is None else "k_pairwise",
    )


# --------------------------------------------------------------------------------------------
# All checks of a posterior
# --------------------------------------------------------------------------------------------


def posterior_predictive_checks(rng_key, tree, spins, *, num_draws=DEFAULT_CHECK_DRAWS,
                                method="auto", num_samples=20_000, third_order_draws=50,
                                prob=INTERVAL_PROB, progress=False):
    """Every check of this module for a posterior DataTree and its data.

    ``num_draws`` posterior draws (evenly thinned) for P(K), patterns and information;
    ``third_order_draws`` of them for the third-order correlations. Information is skipped
    (with a note) for N > 22. With Gibbs (large N), P(K) and the patterns share one vectorised
    run over all draws, the third order a second one; ``progress`` shows their bars (stderr).

    A K-pairwise posterior (draws of ``V``, :func:`bayes_ising.fit.posterior.family`) is
    checked as the K-pairwise model: every function gets its V draws.

    Returns
    -------
    dict with ``synchrony``, ``patterns``, ``third_order``, ``information`` (the outputs of the
    functions above) and ``num_bins``, ``num_neurons``, ``num_draws``, ``family``.
    """
    import jax

    spins = _spins(spins)
    num_neurons = spins.shape[1]
    from bayes_ising.fit.posterior import neuron_ids

    posterior_ids = neuron_ids(tree).tolist()
    if len(posterior_ids) != num_neurons:
        from bayes_ising.errors import DataError

        raise DataError(f"the data have {num_neurons} neurons but the posterior has "
                        f"{len(posterior_ids)}; select the same neurons (population, min-rate)")
    key_sync, key_pat, key_third = jax.random.split(rng_key, 3)
    from bayes_ising.fit.posterior import family

    h_draws, J_draws, V_draws = parameter_draws(tree, num_draws, potential=True)
    out = dict(num_bins=int(spins.shape[0]), num_neurons=num_neurons,
               num_draws=int(h_draws.shape[0]), family=family(tree))
    samples = None
    if not _use_exact(num_neurons, method):
        samples = _gibbs_samples(key_sync, h_draws, J_draws, num_samples, spins, progress,
                                 V_draws)
    out["synchrony"] = predictive_synchrony(key_sync, h_draws, J_draws, spins, method=method,
                                            num_samples=num_samples, prob=prob,
                                            model_samples=samples, V_draws=V_draws)
    out["patterns"] = pattern_frequencies(key_pat, h_draws, J_draws, spins, method=method,
                                          num_samples=num_samples, prob=prob,
                                          model_samples=samples, V_draws=V_draws)
    del samples
    thin = np.round(np.linspace(0, h_draws.shape[0] - 1,
                                min(third_order_draws, h_draws.shape[0]))).astype(int)
    out["third_order"] = third_order(key_third, h_draws[thin], J_draws[thin], spins,
                                     method=method, prob=prob, num_samples=num_samples,
                                     progress=progress,
                                     V_draws=None if V_draws is None else V_draws[thin])
    if num_neurons <= MAX_EXACT_CHECK_NEURONS:
        out["information"] = information(h_draws, J_draws, spins, prob=prob, V_draws=V_draws)
    else:
        from bayes_ising.core import stats

        entropy = stats.data_entropy(spins)
        out["information"] = dict(
            SN_reliable=bool(entropy.reliable),
            note=f"I2/IN not computed: S2 needs exact enumeration (N <= "
                 f"{MAX_EXACT_CHECK_NEURONS}; N = {num_neurons}), and the data's entropy SN "
                 f"needs far more bins than patterns ({entropy.note})")
    return out


# --------------------------------------------------------------------------------------------
# Posterior predictive moments (any N, Gibbs)
# --------------------------------------------------------------------------------------------


def _simulate_draws(rng_key, h_draws, J_draws, spins, batch_size, kwargs, V_draws=None):
    """Gibbs moments of every draw from random and data-row starts, in batches of
    ``batch_size`` draws (the last padded, so one compile serves all): dict start → the
    :func:`bayes_ising.fit.validity.simulate_moments` arrays with leading axis D (with
    ``V_draws`` (D, N+1) of the K-pairwise models)."""
    import jax

    from bayes_ising.fit import validity

    num_draws = h_draws.shape[0]
    out = {}
    for name, start in (("random", None), ("data", spins)):
        parts = []
        for first in range(0, num_draws, batch_size):
            take = np.minimum(np.arange(first, first + batch_size), num_draws - 1)
            key = jax.random.fold_in(jax.random.fold_in(rng_key, first), int(name == "data"))
            sim = validity.simulate_moments(
                key, h_draws[take], J_draws[take], initial_spins=start,
                V=None if V_draws is None else V_draws[take], **kwargs)
            parts.append({k: v[: min(batch_size, num_draws - first)] for k, v in sim.items()})
        out[name] = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    return out


def _moments_method(method, k_pairwise, num_neurons):
    """"exact" or "gibbs" for :func:`predictive_moments` (see there for "auto")."""
    from bayes_ising.core import ising
    from bayes_ising.errors import DataError

    if method not in ("auto", "exact", "gibbs"):
        raise ValueError(f"method must be 'auto', 'exact' or 'gibbs', got {method!r}")
    if method == "exact" and num_neurons > ising.MAX_EXACT_NEURONS:
        raise DataError(f"method='exact' enumerates 2^N states (N <= "
                        f"{ising.MAX_EXACT_NEURONS}); this posterior has N = {num_neurons}")
    if method == "auto":
        return "exact" if k_pairwise and num_neurons <= ising.MAX_EXACT_NEURONS else "gibbs"
    return method


def _exact_moment_draws(h_draws, J_draws, V_draws):
    """Exact m (D, N), C (D, P), zero MCSEs, mean activity (D,) and P(K) (D, N+1) of each
    draw's model by enumeration (:func:`bayes_ising.core.kpairwise.exact_moments`; V = 0 is
    the pairwise model)."""
    from bayes_ising.core import ising, kpairwise, stats

    num_neurons = h_draws.shape[1]
    if V_draws is None:
        V_draws = np.zeros((h_draws.shape[0], num_neurons + 1))
    i, j = ising.pair_indices(num_neurons)
    m, C, p_k = [], [], []
    for h, J, V in zip(h_draws, J_draws, V_draws, strict=True):
        mean, second, dist, _ = kpairwise.exact_moments(h, J, V)
        mean, second = np.asarray(mean), np.asarray(second)
        m.append(mean)
        C.append((second - np.outer(mean, mean))[i, j])
        p_k.append(np.asarray(dist))
    m, C = np.array(m), np.array(C)
    return {"m": m, "C": C, "mcse_m": np.zeros_like(m), "mcse_C": np.zeros_like(C),
            "p_k": np.array(p_k),
            "mean_activity": stats.probability_from_mean(m).mean(axis=-1)}


def _runaway(sim, data):
    """Degenerate draws (D,) bool: ≥ 5% of the model's mass all active (≥ 90% of neurons) or
    beyond the data's most active bin — over the chains' final states (Gibbs) or, exactly,
    over P(K)."""
    from bayes_ising.fit import validity

    if "p_k" in sim:
        share = np.arange(sim["p_k"].shape[1]) / (sim["p_k"].shape[1] - 1)  # K / N
        all_active = sim["p_k"][:, share >= validity.ALL_ACTIVE].sum(axis=1)
        beyond = sim["p_k"][:, share > np.max(data["activity"])].sum(axis=1)
        return (all_active >= 0.05) | (beyond >= 0.05)
    final = sim["final_activity"]  # (D, C)
    return (np.mean(final >= validity.ALL_ACTIVE, axis=1) >= 0.05) | (
        np.mean(final > np.max(data["activity"]), axis=1) >= 0.05)


def _predictive_summary(sim, data, critical, prob):
    """Summary numbers of one start type: data vs the predictive distribution of the moments
    (model moment of a draw + the data's sampling error)."""
    summary = {}
    for name, se in (("mean", data["se_m"]), ("connected", data["se_C"])):
        key, mcse = ("m", "mcse_m") if name == "mean" else ("C", "mcse_C")
        model = sim[key]  # (D, K)
        centre = model.mean(axis=0)
        spread = np.sqrt(model.var(axis=0) + np.mean(sim[mcse] ** 2, axis=0) + se**2)
        z = (data[key] - centre) / np.maximum(spread, 1e-12)
        lo, hi = np.quantile(model, [(1 - prob) / 2, (1 + prob) / 2], axis=0)
        inside = (data[key] >= lo - 2 * se) & (data[key] <= hi + 2 * se)
        summary[name] = {"max_abs_z": float(np.max(np.abs(z))),
                         "num_outside": int(np.sum(np.abs(z) > critical)),
                         "coverage": float(np.mean(inside)),
                         "rms_error": float(np.sqrt(np.mean((centre - data[key]) ** 2))),
                         "max_abs_error": float(np.max(np.abs(centre - data[key])))}
    activity = sim["mean_activity"]
    runaway = _runaway(sim, data)
    summary["mean_activity"] = _scalar_interval(activity, prob)
    summary["degenerate_draws"] = float(np.mean(runaway))
    return summary


def predictive_moments(rng_key, tree, spins, *, num_draws=40, num_chains=256, num_sweeps=400,
                       burn_in=300, batch_size=10, num_blocks=50, significance=0.05,
                       prob=INTERVAL_PROB, method="auto"):
    r"""Posterior predictive means :math:`m_i` and connected correlations :math:`C_{ij}`
    (i<j), for any N, of a pairwise or a K-pairwise posterior.

    ``num_draws`` draws (h, J) — with V for a K-pairwise posterior — of the posterior
    (:func:`bayes_ising.fit.posterior.posterior_draws`, evenly thinned) are each simulated by
    Gibbs sampling (``num_chains`` chains, ``burn_in`` + ``num_sweeps`` sweeps; the
    K-pairwise sampler with the V step for K-pairwise draws) from uniformly random states and
    from random data rows, vectorised over ``batch_size`` draws at a time — or, with
    ``method="exact"`` (N ≤ 22), enumerated (:func:`bayes_ising.core.kpairwise.exact_moments`;
    one "start", ``exact``, MCSE 0). ``method="auto"``: exact for a K-pairwise posterior of
    N ≤ 22, Gibbs otherwise (a pairwise posterior keeps its random/data-start simulation).
    For each moment k the replicated-data predictive
    distribution is the draws' model moments plus the data's sampling error, so
    :math:`z_k = (\text{data}_k - \bar x_k) / \sqrt{\mathrm{Var}_d x_{dk}
    + \overline{\mathrm{MCSE}^2} + \mathrm{SE}_k^2}`, SE the data's batch-means standard
    error over ``num_blocks`` blocks of bins (bins are autocorrelated;
    :func:`bayes_ising.fit.validity.data_standard_errors`).
    ``passed`` when no draw is degenerate (≥ 5% of its chains — exactly: of its P(K) — all
    active or beyond the data's most active bin) and every |z| ≤ the Bonferroni critical value
    (t with 31 d.o.f.).

    spins : (T, N) ±1, the posterior's neurons in its order.

    Returns
    -------
    dict: ``moments`` — xarray.Dataset with ``m_model`` (start, draw, neuron), ``C_model``
    (start, draw, pair), their MCSEs, ``m_data``, ``se_m`` (neuron), ``C_data``, ``se_C``
    (pair), ``mean_activity`` (start, draw); ``summary`` (JSON-able) — per start ("random",
    "data"; or "exact"): for means and connected correlations max |z|, number outside,
    coverage of the data by the central ``prob`` interval (widened by 2 data SEs), RMS and max
    error of the predictive mean; mean-activity interval; fraction of degenerate draws; plus
    ``passed``, ``reason``, ``z_critical``, ``method``, ``family``, ``num_draws`` and the
    data's mean activity.
    """
    import xarray as xr

    from bayes_ising.core import ising
    from bayes_ising.errors import DataError
    from bayes_ising.fit import validity
    from bayes_ising.fit.posterior import neuron_ids, posterior_draws

    spins = _spins(spins)
    ids = [str(v) for v in neuron_ids(tree)]
    if len(ids) != spins.shape[1]:
        raise DataError(f"the data have {spins.shape[1]} neurons but the posterior has "
                        f"{len(ids)}; select the same neurons (population, min-rate)")
    h_draws, J_draws, V_draws = posterior_draws(tree, num_draws, potential=True)
    method = _moments_method(method, V_draws is not None, len(ids))
    V_draws = _as_v(V_draws, h_draws)
    data = validity.data_standard_errors(spins, num_blocks)
    kwargs = dict(num_chains=num_chains, num_sweeps=num_sweeps, burn_in=burn_in)
    if method == "exact":
        sims = {"exact": _exact_moment_draws(h_draws, J_draws, V_draws)}
    else:
        sims = _simulate_draws(rng_key, h_draws, J_draws, spins, int(batch_size), kwargs,
                               V_draws)
    num_moments = data["m"].size + data["C"].size
    critical = validity.z_critical(num_moments, significance)
    summary = {name: _predictive_summary(sims[name], data, critical, prob) for name in sims}
    worst = max(max(summary[n][k]["max_abs_z"] for k in ("mean", "connected")) for n in sims)
    degenerate = max(summary[n]["degenerate_draws"] for n in sims)
    passed = bool(degenerate == 0 and worst <= critical)
    reason = (f"{100 * degenerate:.0f}% of draws degenerate (run to states the data never show)"
              if degenerate else f"max |z| = {worst:.1f} "
              f"{'<=' if worst <= critical else '>'} {critical:.1f} over {num_moments} moments")
    summary.update(passed=passed, reason=reason, z_critical=critical, method=method,
                   family="pairwise" if V_draws is None else "k_pairwise",
                   num_draws=int(h_draws.shape[0]),
                   data_mean_activity=float(np.mean(data["activity"])),
                   settings=dict(kwargs, batch_size=int(batch_size), num_blocks=num_blocks))
    first, second = ising.pair_indices(len(ids))
    starts = list(sims)
    stack = lambda key: np.stack([sims[n][key] for n in starts])  # noqa: E731
    moments = xr.Dataset(
        {"m_model": (("start", "draw", "neuron"), stack("m")),
         "mcse_m": (("start", "draw", "neuron"), stack("mcse_m")),
         "C_model": (("start", "draw", "pair"), stack("C")),
         "mcse_C": (("start", "draw", "pair"), stack("mcse_C")),
         "mean_activity": (("start", "draw"), stack("mean_activity")),
         "m_data": (("neuron",), data["m"]), "se_m": (("neuron",), data["se_m"]),
         "C_data": (("pair",), data["C"]), "se_C": (("pair",), data["se_C"])},
        coords={"start": starts, "neuron": ids, "neuron_i": ("pair", np.asarray(ids)[first]),
                "neuron_j": ("pair", np.asarray(ids)[second])})
    return {"moments": moments, "summary": summary}
