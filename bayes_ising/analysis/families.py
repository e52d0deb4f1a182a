r"""The model families side by side (independent, pairwise, K-pairwise; Tkačik et al. 2014):
the checks of each fitted family against the data (P(K) band, pattern frequencies, third
order, information), PSIS-LOO and the heat-capacity peak per family (:func:`compare_families`,
:func:`comparison_summary`), and the thermodynamics of K-pairwise models (:func:`thermodynamics`:
E(T), C(T) = Var E / T², S(T) by the thermodynamic integration of
:mod:`bayes_ising.analysis.thermo`, exactly by enumeration or from the K-pairwise Gibbs sampler
:func:`bayes_ising.core.gibbs.sample_kpairwise`).

The energy and enumeration are :mod:`bayes_ising.core.kpairwise`; the fits (posteriors, point
fits, held-out blocks) :mod:`bayes_ising.fit.kpairwise_fit`.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import logsumexp

from bayes_ising.core import ising, kpairwise, stats
from bayes_ising.fit import kpairwise_fit

__all__ = ["synchrony_draws", "sampled_synchrony_draws", "compare_pseudo_families",
           "third_order_check", "information_check", "pattern_check",
           "predictive_synchrony_band", "compare_families", "comparison_summary",
           "thermodynamics", "uniform_energy_moments", "posterior_thermodynamics", "CRITERIA"]

#: what a comparison of the families scores, by method ("loo": :func:`compare_families`, N ≤ 22;
#: "held_out": :func:`compare_pseudo_families`, any N); the two are not comparable
CRITERIA = {
    "loo": "PSIS-LOO: expected log predictive density of a left-out bin (exact likelihood)",
    "held_out": "held-out log pseudolikelihood of blocks of bins; PSIS-LOO needs the exact "
                "likelihood",
}


def synchrony_draws(tree, num_draws=None, seed=0):
    """Model P(K) of posterior draws of a fit's tree, (D, N+1) (all draws, or ``num_draws``
    chosen at random)."""
    arrays = kpairwise_fit.posterior_arrays(tree, num_draws, seed)
    return np.asarray(jax.lax.map(lambda p: kpairwise._moments_kernel(*p)[2],
                                  tuple(jnp.asarray(a) for a in arrays)))


def third_order_check(tree, spins, num_draws=20, seed=0):
    """Connected third-order correlations of ``num_draws`` posterior draws (exact, N ≤ 16)
    against the data's, over i<j<k: dict(slope (least squares through 0 of the draws' median
    on the observed), rms_error, rms_observed, correlation) — the summaries of
    :func:`bayes_ising.analysis.checks.third_order`; None for N > 16."""
    from bayes_ising.analysis.checks import (
        MAX_EXACT_THIRD_ORDER_NEURONS,
        _exact_third_order,
        _triplets,
    )

    spins = np.asarray(spins)
    n = spins.shape[1]
    if n > MAX_EXACT_THIRD_ORDER_NEURONS or n < 3:
        return None
    i, j, k = _triplets(n)
    observed = stats.third_order_correlations(spins)[i, j, k]
    arrays = kpairwise_fit.posterior_arrays(tree, num_draws, seed)
    median = np.median(_exact_third_order(*arrays)[:, i, j, k],
                       axis=0)
    return dict(slope=float(median @ observed / (observed @ observed)),
                rms_error=float(np.sqrt(np.mean((median - observed) ** 2))),
                rms_observed=float(np.sqrt(np.mean(observed**2))),
                correlation=float(np.corrcoef(median, observed)[0, 1])
                if np.std(median) > 0 else float("nan"))


def information_check(tree, spins, num_draws=20, seed=0):
    r"""Multi-information captured by a family, I2/IN-style: with S1 the data's independent
    entropy, SN its pattern entropy (Miller–Madow, :func:`bayes_ising.core.stats.data_entropy`) and
    :math:`S_f` the exact entropy of each posterior draw, the ratio
    :math:`(S_1 - S_f)/(S_1 - S_N)` (median over ``num_draws`` draws; the pairwise family's is
    :func:`bayes_ising.analysis.checks.information`'s ``ratio_data_S1``). Returns dict(entropy,
    ratio,
    IN, SN_reliable) in nats per bin."""
    from bayes_ising.analysis.checks import _binary_entropy

    spins = np.asarray(spins)
    s1 = float(_binary_entropy(stats.firing_probability(spins)))
    estimate = stats.data_entropy(spins)
    entropy = np.asarray(jax.lax.map(lambda p: kpairwise._entropy_kernel(*p), tuple(
        jnp.asarray(a) for a in kpairwise_fit.posterior_arrays(tree, num_draws, seed))))
    i_n = s1 - float(estimate.miller_madow)
    return dict(entropy=float(np.median(entropy)),
                ratio=float(np.median((s1 - entropy) / i_n)), IN=i_n,
                SN_reliable=bool(estimate.reliable))


def pattern_check(tree, spins, *, top=20, num_draws=50, prob=0.9, seed=0):
    """The ``top`` most frequent observed patterns: their frequencies against the central
    ``prob`` band of replicated frequencies (T bins, binomial from each draw's exact P(s)).
    Returns dict(patterns (top, N), observed, median (model P(s), median over draws), lower,
    upper, in_band (count))."""
    from bayes_ising.analysis.checks import interval

    spins = np.asarray(spins)
    patterns, counts = kpairwise_fit._unique(spins)
    order = np.argsort(-counts, kind="stable")[:top]
    patterns, observed = patterns[order], counts[order] / spins.shape[0]
    h, J, V = (jnp.asarray(a) for a in kpairwise_fit.posterior_arrays(tree, num_draws, seed))
    probs = np.exp(kpairwise.pattern_log_likelihood_draws(patterns, h, J, V))
    replicated = np.random.default_rng(seed).binomial(spins.shape[0], probs) / spins.shape[0]
    band = interval(replicated, prob)
    inside = (observed >= band["lower"]) & (observed <= band["upper"])
    return dict(patterns=patterns, observed=observed, median=np.median(probs, axis=0),
                lower=band["lower"], upper=band["upper"], in_band=int(inside.sum()))


def predictive_synchrony_band(p_k_draws, spins, *, prob=0.9, min_count=10, seed=0):
    """Fraction of observed P(K) inside the central ``prob`` band of replicated data sets
    (T bins multinomial from each draw's P(K)), over K seen in ≥ ``min_count`` bins — the rule
    of :func:`bayes_ising.analysis.checks.predictive_synchrony`. Returns dict(fraction_in_band,
    observed, lower, upper, seen)."""
    from bayes_ising.analysis.checks import interval

    suff = kpairwise.sufficient_statistics(spins)
    observed = suff.k_counts / suff.num_bins
    probs = np.clip(p_k_draws, 0, None)
    probs = probs / probs.sum(axis=1, keepdims=True)
    rng = np.random.default_rng(seed)
    replicated = np.stack([rng.multinomial(suff.num_bins, p) for p in probs]) / suff.num_bins
    band = interval(replicated, prob)
    seen = suff.k_counts >= min_count
    inside = (observed >= band["lower"]) & (observed <= band["upper"])
    return dict(fraction_in_band=float(inside[seen].mean()), observed=observed,
                lower=band["lower"], upper=band["upper"], seen=seen)


def compare_families(spins, families=kpairwise.FAMILIES, *, rng_key=0, check_draws=200,
                     **fit_kwargs):
    """Fit each family on the same spins, PSIS-LOO each
    (:func:`~bayes_ising.fit.kpairwise_fit.weighted_loo`), compare.

    Returns dict(table = ``arviz_stats.compare`` DataFrame (elpd, se, p, elpd_diff, dse,
    weight, …), loo {family: ELPDDataLOO}, pareto_k {family: dict(max, fraction_bad)},
    synchrony {family: fraction_in_band}, bands {family: predictive_synchrony_band dict},
    third_order {family: :func:`third_order_check` or None}, information {family:
    :func:`information_check`}, patterns {family: :func:`pattern_check`}, thermo {family:
    T* and C_max/N medians of a few draws, exact}, seconds {family: fit time},
    fits {family: FitResult}).

    Caveat: bins are autocorrelated (and LOO leaves one bin out, not a block), so se and dse
    assume independent bins and are too small by the data's integrated autocorrelation factor;
    read differences of a few dse with care.
    """
    import arviz_stats as azs

    fits, loos, pk, band, bands, seconds = {}, {}, {}, {}, {}, {}
    third, info, patterns, thermo = {}, {}, {}, {}
    for family in families:
        fit = kpairwise_fit.fit_posterior(spins, family, rng_key=rng_key, **fit_kwargs)
        fits[family], loos[family] = fit, kpairwise_fit.weighted_loo(fit)
        k = np.asarray(loos[family].pareto_k)
        pk[family] = dict(max=float(k.max()), fraction_bad=float(np.mean(k > loos[family].good_k)))
        bands[family] = predictive_synchrony_band(synchrony_draws(fit.tree, check_draws), spins)
        band[family] = bands[family]["fraction_in_band"]
        third[family] = third_order_check(fit.tree, spins, min(check_draws, 20))
        info[family] = information_check(fit.tree, spins, min(check_draws, 20))
        patterns[family] = pattern_check(fit.tree, spins, num_draws=min(check_draws, 50))
        thermo[family] = _peak_summary(fit.tree, min(check_draws, 10))
        seconds[family] = fit.seconds
    table = azs.compare(loos, round_to="none")  # raw numbers (the default rounds them)
    return dict(table=table, loo=loos, pareto_k=pk, synchrony=band, bands=bands,
                third_order=third, information=info, patterns=patterns, thermo=thermo,
                seconds=seconds, fits=fits)


def sampled_synchrony_draws(rng_key, tree, num_draws=50, *, num_chains=64, num_sweeps=1000,
                            burn_in=300, seed=0):
    """Model P(K) of ``num_draws`` random posterior draws by K-pairwise Gibbs sampling
    (:func:`bayes_ising.core.gibbs.sample_kpairwise`, all draws in one vectorised run; any N),
    (D, N+1) — :func:`synchrony_draws` for N > 22."""
    from bayes_ising.core import gibbs

    h, J, V = kpairwise_fit.posterior_arrays(tree, num_draws, seed)
    run = gibbs.sample_kpairwise(rng_key, h, J, V, num_chains=num_chains,
                                 num_sweeps=num_sweeps + burn_in, burn_in=burn_in)
    return np.asarray(run.p_k[:, 0])


def compare_pseudo_families(spins, families=kpairwise.FAMILIES, *, rng_key=0, check_draws=50,
                            num_blocks=10, **fit_kwargs):
    """The families above the enumeration limit (any N): each family's pseudo-posterior
    (:func:`~bayes_ising.fit.kpairwise_fit.fit_posterior` with ``likelihood="pseudo"``,
    unadjusted, as every family is fitted the same way), its predictive P(K) band from Gibbs
    samples of ``check_draws`` draws (:func:`sampled_synchrony_draws`,
    :func:`predictive_synchrony_band`), and the blocked cross-validation that scores them
    (:func:`~bayes_ising.fit.kpairwise_fit.held_out_blocks`, pseudolikelihood fits and
    held-out log pseudolikelihood: comparable between the families, not with LOO). No
    PSIS-LOO: the pseudo-posteriors have no per-bin likelihood.

    Returns a JSON-able dict: ``rows`` (per family, best held-out score first: family,
    held_out_per_bin, held_out_difference, held_out_se, pk_in_band, pk_seen, max_rhat,
    min_ess_bulk, num_divergent, seconds, intervals), ``held_out`` (the held_out_blocks
    result), ``synchrony`` (observed P(K), seen, each family's band), ``caveat``.
    """
    spins = np.asarray(spins)
    key = jax.random.key(rng_key) if isinstance(rng_key, int) else rng_key
    held_out = kpairwise_fit.held_out_blocks(spins, families, num_blocks=num_blocks,
                                             method="pseudo")
    rows, bands = [], {}
    for index, family in enumerate(families):
        fit = kpairwise_fit.fit_posterior(spins, family, rng_key=key, likelihood="pseudo",
                                          **fit_kwargs)
        bands[family] = band = predictive_synchrony_band(sampled_synchrony_draws(
            jax.random.fold_in(key, index), fit.tree, check_draws), spins)
        rhat, ess = kpairwise_fit.fit_diagnostics(fit.tree)
        rows.append(dict(
            family=family, held_out_per_bin=held_out["per_bin"][family],
            held_out_difference=held_out["difference"][family],
            held_out_se=held_out["se"][family],
            pk_in_band=int(np.sum(band["seen"] & (band["observed"] >= band["lower"])
                                  & (band["observed"] <= band["upper"]))),
            pk_seen=int(band["seen"].sum()), max_rhat=rhat, min_ess_bulk=ess,
            num_divergent=int(fit.tree.attrs["num_divergent"]), seconds=float(fit.seconds),
            intervals=str(fit.tree.attrs.get("intervals"))))
    rows.sort(key=lambda r: -r["held_out_per_bin"])
    first = next(iter(bands.values()))
    synchrony = dict(observed=first["observed"].tolist(), seen=first["seen"].tolist(),
                     bands={f: dict(lower=b["lower"].tolist(), upper=b["upper"].tolist())
                            for f, b in bands.items()})
    return dict(rows=rows, held_out=held_out, synchrony=synchrony, caveat=(
        "pseudo-posteriors (unadjusted) compared by held-out log pseudolikelihood over "
        "blocks of bins: comparable between these families, not with PSIS-LOO or "
        "likelihoods; the P(K) bands are of the pseudo-posteriors, usually too narrow"))


def _peak_summary(tree, num_draws, temperatures=np.linspace(0.5, 3.0, 26)):
    """Median T* and C_max/N over ``num_draws`` posterior draws, exact thermodynamics."""
    res = posterior_thermodynamics(tree, temperatures, num_draws=num_draws)
    return dict(peak_temperature=float(np.median(res.peak_temperature)),
                peak_heat_capacity_per_neuron=float(np.median(
                    res.peak_heat_capacity_per_neuron)))


def comparison_summary(result):
    """JSON-able digest of :func:`compare_families`: ``rows`` (one per family, best first:
    elpd, se, p, elpd_diff, dse, weight, pareto_k_max, pareto_k_fraction_bad, good_k,
    pk_in_band, pk_seen, seconds, max_rhat, min_ess_bulk, num_divergent, third_order_slope,
    third_order_rms_error (None for N > 16), entropy, information_ratio (I_f/IN),
    patterns_in_band / patterns_top, peak_temperature, peak_heat_capacity_per_neuron) and
    ``synchrony``
    (observed P(K), seen, and each family's predictive band lower/upper)."""
    rows = []
    for family, row in result["table"].iterrows():
        fit, band = result["fits"][family], result["bands"][family]
        rhat, ess = kpairwise_fit.fit_diagnostics(fit.tree)
        rows.append(dict(
            family=str(family), elpd=float(row["elpd"]), se=float(row["se"]),
            p=float(row["p"]), elpd_diff=float(row["elpd_diff"]), dse=float(row["dse"]),
            weight=float(row["weight"]), pareto_k_max=result["pareto_k"][family]["max"],
            pareto_k_fraction_bad=result["pareto_k"][family]["fraction_bad"],
            good_k=float(result["loo"][family].good_k),
            pk_in_band=int(np.sum(band["seen"] & (band["observed"] >= band["lower"])
                                  & (band["observed"] <= band["upper"]))),
            pk_seen=int(band["seen"].sum()), seconds=float(result["seconds"][family]),
            max_rhat=rhat, min_ess_bulk=ess,
            third_order_slope=(result["third_order"].get(family) or {}).get("slope"),
            third_order_rms_error=(result["third_order"].get(family) or {}).get("rms_error"),
            entropy=result["information"][family]["entropy"],
            information_ratio=result["information"][family]["ratio"],
            patterns_in_band=result["patterns"][family]["in_band"],
            patterns_top=int(result["patterns"][family]["observed"].size),
            **result["thermo"][family],
            num_divergent=int(fit.tree.attrs["num_divergent"])))
    first = next(iter(result["bands"].values()))
    synchrony = dict(observed=first["observed"].tolist(), seen=first["seen"].tolist(),
                     bands={f: dict(lower=b["lower"].tolist(), upper=b["upper"].tolist())
                            for f, b in result["bands"].items()})
    return dict(rows=rows, synchrony=synchrony, caveat=(
        "PSIS-LOO leaves one bin out; bins are autocorrelated, so se and dse assume "
        "independent bins and are too small by the data's autocorrelation factor"))


@jax.jit
def _exact_energy_moments(h, J, V, betas):
    """⟨E⟩, Var E at each β (G,) and log Z_β, by enumeration (one model)."""
    neg = kpairwise._neg_energy_matrix(h, J, V)[0].ravel()

    def at(beta):
        log_z = logsumexp(beta * neg)
        p = jnp.exp(beta * neg - log_z)
        mean = p @ neg
        return -mean, p @ (neg - mean) ** 2, log_z

    return jax.lax.map(at, betas)


def uniform_energy_moments(h, J, V):
    r"""⟨E⟩ and Var E at β = 0 (uniform s) in closed form, any N ≥ 2: with X = h·s,
    Y = Σ_{i<j} J s s, W = V(K): ⟨E⟩ = −E W, Var E = Σh² + Σ_{i<j}J² + Var W
    + 2(Σh) E[s_1 W] + 2(Σ_{i<j}J) E[s_1 s_2 W], the last two from binomials of N−1, N−2."""
    from scipy.stats import binom

    h, J, V = (np.asarray(x, np.float64) for x in (h, J, V))
    n = h.shape[0]

    def mean_v(m, shift):
        return binom.pmf(np.arange(m + 1), m, 0.5) @ V[shift:shift + m + 1]

    mean_w = mean_v(n, 0)
    var_w = binom.pmf(np.arange(n + 1), n, 0.5) @ (V - mean_w) ** 2
    a1 = 0.5 * (mean_v(n - 1, 1) - mean_v(n - 1, 0))
    a2 = 0.25 * (mean_v(n - 2, 2) - 2 * mean_v(n - 2, 1) + mean_v(n - 2, 0))
    upper = J[np.triu_indices(n, 1)]
    var = (h @ h + upper @ upper + var_w + 2 * h.sum() * a1 + 2 * upper.sum() * a2)
    return -mean_w, var


def thermodynamics(h, J, V, temperatures, *, method="exact", num_grid=64, rng_key=None,
                   num_chains=16, num_sweeps=2000, burn_in=200, return_energies=False):
    r"""C(T)/N, S(T)/N, E(T)/N of one or D K-pairwise models → ``thermo.ThermoResult``.

    The β grid and the entropy integral :math:`S(\beta) = N\log 2 + \beta\langle E\rangle -
    \int_0^\beta \langle E\rangle` are those of :mod:`bayes_ising.analysis.thermo`. ``method``
    "exact" (N ≤ 22): ⟨E⟩, Var E by enumeration at every grid β, and
    ``entropy_integration_error`` against :math:`\log Z + \beta\langle E\rangle`; "gibbs":
    every grid β > 0 sampled at once by :func:`bayes_ising.core.gibbs.sample_kpairwise`, β = 0 by
    :func:`uniform_energy_moments` (use a smaller ``num_grid``, e.g. 24); with ``return_energies``
    it returns ``(result, energies (D, kept sweeps, chains, grid − 1))`` for convergence checks.
    """
    from bayes_ising.analysis import thermo
    from bayes_ising.core import gibbs

    temperatures = thermo._check_temperatures(temperatures)
    h, J, V = (np.asarray(x, np.float64) for x in (h, J, V))
    if h.ndim == 1:
        h, J, V = h[None], J[None], V[None]
    n = h.shape[1]
    betas, index = thermo.integration_grid(temperatures, num_grid)
    settings = dict(num_grid=int(num_grid), grid_size=int(betas.size), family="k_pairwise")
    if method == "exact":
        ising.check_exact(n, "families.thermodynamics")
        out = [_exact_energy_moments(*map(jnp.asarray, (a, b, c)), jnp.asarray(betas))
               for a, b, c in zip(h, J, V, strict=True)]
        mean_e, var_e, log_z = (np.stack([np.asarray(o[k]) for o in out]) for k in range(3))
        result = thermo._assemble(temperatures, betas, index, mean_e, var_e, n,
                                  (temperatures[0], temperatures[-1]), method="exact",
                                  settings=settings)
        exact = (log_z + betas * mean_e)[:, index] / n
        return dataclasses.replace(result, entropy_integration_error=float(
            np.max(np.abs(result.entropy_per_neuron - exact))))
    if method != "gibbs":
        raise ValueError(f"method must be 'exact' or 'gibbs', got {method!r}")
    key = jax.random.PRNGKey(0) if rng_key is None else rng_key
    run = gibbs.sample_kpairwise(key, h, J, V, temperatures=1.0 / betas[1:],
                                 num_chains=num_chains, num_sweeps=num_sweeps, burn_in=burn_in)
    trace = run.energies  # (D, kept, chains, G − 1)
    energies = trace.reshape(h.shape[0], -1, betas.size - 1)  # (D, kept·chains, G−1)
    zero = np.array([uniform_energy_moments(*p) for p in zip(h, J, V, strict=True)])
    mean_e = np.concatenate([zero[:, :1], energies.mean(axis=1)], axis=1)
    var_e = np.concatenate([zero[:, 1:], energies.var(axis=1)], axis=1)
    settings.update(num_chains=int(num_chains), num_sweeps=int(num_sweeps), burn_in=burn_in)
    result = thermo._assemble(temperatures, betas, index, mean_e, var_e, n,
                              (temperatures[0], temperatures[-1]), method="gibbs",
                              settings=settings)
    return (result, trace) if return_energies else result


def posterior_thermodynamics(tree, temperatures, *, num_draws=20, seed=0, **options):
    """:func:`thermodynamics` of ``num_draws`` random posterior draws of a
    :func:`bayes_ising.fit.kpairwise_fit.fit_posterior` tree (bands via
    ``ThermoResult.to_dict``)."""
    from bayes_ising.fit.posterior import posterior_draws

    h, J, V = posterior_draws(tree, num_draws, jax.random.key(seed), potential=True)
    if V is None:
        V = np.zeros((h.shape[0], h.shape[1] + 1))
    return thermodynamics(h, J, V, temperatures, **options)
