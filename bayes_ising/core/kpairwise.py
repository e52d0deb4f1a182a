r"""The K-pairwise model (Tkačik et al. 2014) with exact enumeration, NUTS posteriors and
PSIS-LOO model comparison against the independent and pairwise models.

.. math::

    E(s) = -\sum_i h_i s_i - \sum_{i<j} J_{ij} s_i s_j - V(K(s)), \qquad
    K(s) = \#\{i : s_i = +1\},

with ``V`` a vector of length N+1 and :math:`V(0) = 0` (a constant in V only shifts log Z).
``V = 0`` is the pairwise model exactly. The sufficient statistics of T bins are
(T, m, Q, n_K): the pairwise moments plus the counts :math:`n_K` of bins with K active neurons,

.. math:: \log L = T\Big[h^\top m + \sum_{i<j} J_{ij} Q_{ij}\Big] + \sum_K n_K V(K)
    - T \log Z(h, J, V).

Enumeration reuses the split-half matrices of :mod:`bayes_ising.core.ising`: over the
:math:`2^{|A|} \times 2^{|B|}` grid of half-states, :math:`K = K_A + K_B`, so the V term is a
gather ``V[K_A[:, None] + K_B[None, :]]`` added to the pairwise −E matrix.

V is only partly identified: a V linear in K is a uniform shift of h, a quadratic one a
uniform shift of J. The random-walk prior (``V(K) − V(K−1) ~ Normal(0, v_scale)``, V(0) = 0)
plus the Normal priors on h and J keep the posterior proper; read V jointly with h and J.

Reference: Tkačik, Marre, Amodei, Schneidman, Bialek & Berry (2014), PLoS Comput. Biol. 10,
e1003408.
"""

from __future__ import annotations

import time
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import logsumexp

from bayes_ising.core import ising

__all__ = [
    "FAMILIES",
    "PSEUDO_INTERVALS_NOTE",
    "KSufficient",
    "sufficient_statistics",
    "energy",
    "log_partition",
    "exact_moments",
    "log_probability",
    "exact_log_likelihood",
    "pattern_log_likelihood",
    "model",
    "fit_posterior",
    "draws_tree",
    "pattern_log_likelihood_draws",
    "weighted_loo",
    "posterior_arrays",
    "synchrony_draws",
    "third_order_check",
    "information_check",
    "pattern_check",
    "exact_entropy",
    "predictive_synchrony_band",
    "compare_families",
    "comparison_summary",
    "format_fit_summary",
    "fit_diagnostics",
]

#: what a K-pairwise pseudo-posterior's intervals are (tree attribute, printed verdict)
PSEUDO_INTERVALS_NOTE = (
    "K-pairwise pseudo-posterior: intervals UNADJUSTED (the pairwise curvature adjustment is "
    "not derived for V(K)); the pseudolikelihood's curvature is not the likelihood's, so they "
    "are usually too narrow: read them as a lower bound on the uncertainty")

#: model families fitted by :func:`fit_posterior` (the first two are special cases of the last)
FAMILIES = ("independent", "pairwise", "k_pairwise")


class KSufficient(NamedTuple):
    """Sufficient statistics of binned ±1 data for the K-pairwise likelihood.

    num_bins : T; m : (N,) mean spins; Q : (N, N) ⟨s_i s_j⟩ (unit diagonal);
    k_counts : (N+1,) number of bins with K = 0 … N active neurons.
    """

    num_bins: int
    m: np.ndarray
    Q: np.ndarray
    k_counts: np.ndarray


def sufficient_statistics(spins):
    """(T, N) ±1 spins → :class:`KSufficient`."""
    s = np.asarray(spins, dtype=np.float64)
    if s.ndim != 2 or s.shape[0] < 1:
        raise ValueError(f"sufficient_statistics: expected spins (T, N), got {s.shape}")
    k = np.sum(s > 0, axis=1)
    counts = np.bincount(k, minlength=s.shape[1] + 1).astype(np.float64)
    return KSufficient(s.shape[0], s.mean(axis=0), s.T @ s / s.shape[0], counts)


def energy(spins, h, J, V):
    r"""K-pairwise energy :math:`E(s) = E_{\rm pair}(s) - V(K(s))`, shape (...,)."""
    s = jnp.asarray(spins)
    k = jnp.sum(s > 0, axis=-1)
    return ising.energy(s, h, J) - jnp.asarray(V)[k]


def _params(h, J, V):
    h, J = ising._as_params(h, J)
    V = jnp.asarray(V, h.dtype)
    if V.shape != (h.shape[0] + 1,):
        raise ValueError(f"V must have shape (N+1,) = ({h.shape[0] + 1},), got {V.shape}")
    return h, J, V


def _neg_energy_matrix(h, J, V):
    """−E over all states as the (2^|A|, 2^|B|) split-half matrix, and the half states."""
    neg, states_a, states_b = ising._neg_energy_matrix(h, J)
    k_a = jnp.sum(states_a > 0, axis=1)
    k_b = jnp.sum(states_b > 0, axis=1)
    return neg + V[k_a[:, None] + k_b[None, :]], states_a, states_b


@jax.jit
def _log_partition_kernel(h, J, V):
    return logsumexp(_neg_energy_matrix(h, J, V)[0])


def log_partition(h, J, V):
    r"""Exact :math:`\log Z(h, J, V)` by split-half enumeration (float64, N ≤ 22)."""
    h, J, V = _params(h, J, V)
    ising.check_exact(h.shape[0], "kpairwise.log_partition")
    return _log_partition_kernel(h, J, V)


@jax.jit
def _moments_kernel(h, J, V):
    neg, states_a, states_b = _neg_energy_matrix(h, J, V)
    log_z = logsumexp(neg)
    prob = jnp.exp(neg - log_z)
    p_a, p_b = prob.sum(axis=1), prob.sum(axis=0)
    m = jnp.concatenate([p_a @ states_a, p_b @ states_b])
    q_ab = states_a.T @ prob @ states_b
    Q = jnp.block([[states_a.T @ (p_a[:, None] * states_a), q_ab],
                   [q_ab.T, states_b.T @ (p_b[:, None] * states_b)]])
    k_a = jnp.sum(states_a > 0, axis=1)
    k_b = jnp.sum(states_b > 0, axis=1)
    p_k = jnp.zeros(h.shape[0] + 1, prob.dtype).at[k_a[:, None] + k_b[None, :]].add(prob)
    return m, Q, p_k, log_z


def exact_moments(h, J, V):
    """Exact model ``(m (N,), Q (N, N), P(K) (N+1,), log Z)`` by enumeration."""
    h, J, V = _params(h, J, V)
    ising.check_exact(h.shape[0], "kpairwise.exact_moments")
    return _moments_kernel(h, J, V)


@jax.jit
def _entropy_kernel(h, J, V):
    neg = _neg_energy_matrix(h, J, V)[0]
    log_z = logsumexp(neg)
    return log_z - jnp.sum(jnp.exp(neg - log_z) * neg)


def exact_entropy(h, J, V):
    r"""Exact model entropy :math:`S = \log Z - \langle -E\rangle` in nats (N ≤ 22)."""
    h, J, V = _params(h, J, V)
    ising.check_exact(h.shape[0], "kpairwise.exact_entropy")
    return _entropy_kernel(h, J, V)


def log_probability(spins, h, J, V):
    r"""Exact :math:`\log P(s) = -E(s) - \log Z`, shape (...,)."""
    h, J, V = _params(h, J, V)
    ising.check_exact(h.shape[0], "kpairwise.log_probability")
    return -energy(spins, h, J, V) - _log_partition_kernel(h, J, V)


def exact_log_likelihood(h, J, V, suff):
    r"""Exact log L from :class:`KSufficient`:
    :math:`T[h^\top m + \tfrac12 \sum J Q - \log Z] + \sum_K n_K V(K)`."""
    h, J, V = _params(h, J, V)
    ising.check_exact(h.shape[0], "kpairwise.exact_log_likelihood")
    m = jnp.asarray(suff.m, h.dtype)
    Q = jnp.asarray(suff.Q, h.dtype)
    if m.shape != h.shape:
        raise ValueError(f"statistics of {m.shape[0]} neurons for a model of {h.shape[0]}")
    n_k = jnp.asarray(suff.k_counts, h.dtype)
    return (suff.num_bins * (h @ m + 0.5 * jnp.sum(J * Q) - _log_partition_kernel(h, J, V))
            + n_k @ V)


def pattern_log_likelihood(patterns, h, J, V):
    """Per-pattern (per-bin) log-likelihood log P(s_u | h, J, V), shape (U,): the pointwise
    terms of LOO. Summed with the pattern counts it equals :func:`exact_log_likelihood`."""
    return log_probability(patterns, h, J, V)


# --------------------------------------------------------------------------------------------
# NumPyro model and NUTS
# --------------------------------------------------------------------------------------------


def _unpack_sites(family, num_neurons, h, j_flat, v_steps):
    dtype = h.dtype
    J = (ising.couplings_to_matrix(j_flat, num_neurons) if family != "independent"
         else jnp.zeros((num_neurons, num_neurons), dtype))
    V = (jnp.concatenate([jnp.zeros(1, dtype), v_steps]) if family == "k_pairwise"
         else jnp.zeros(num_neurons + 1, dtype))
    return J, V


def model(suff, family="k_pairwise", h_mean=0.0, h_scale=2.0, j_scale=1.0, v_scale=1.0,
          likelihood="exact"):
    r"""NumPyro model: :math:`h_i \sim N(h_{mean}, h_{scale})`, :math:`J_{ij} \sim N(0,
    j_{scale})` (the default spec's priors), V(0) = 0 and
    :math:`V(K) \sim N(V(K-1), v_{scale})` (``GaussianRandomWalk``, site ``V_walk`` = V[1:]);
    likelihood :func:`exact_log_likelihood` (``suff`` a :class:`KSufficient`), or with
    ``likelihood="pseudo"`` the pseudolikelihood
    :func:`bayes_ising.core.pseudolikelihood.log_pseudolikelihood_kpairwise` (``suff`` a
    :class:`~bayes_ising.core.pseudolikelihood.Patterns`; any N). ``family`` "pairwise"
    fixes V = 0, "independent" also J = 0."""
    import numpyro
    import numpyro.distributions as dist

    if family not in FAMILIES:
        raise ValueError(f"family must be one of {FAMILIES}, got {family!r}")
    pseudo = likelihood == "pseudo"
    n = int((suff.sum_s if pseudo else np.asarray(suff.m)).shape[0])
    h = numpyro.sample("h", dist.Normal(h_mean, h_scale).expand([n]).to_event(1))
    j_flat = v_steps = None
    if family != "independent":
        j_flat = numpyro.sample(
            "J_flat", dist.Normal(0.0, j_scale).expand([ising.num_pairs(n)]).to_event(1))
    if family == "k_pairwise":
        v_steps = numpyro.sample("V_walk", dist.GaussianRandomWalk(v_scale, num_steps=n))
    J, V = _unpack_sites(family, n, h, j_flat, v_steps)
    if pseudo:
        from bayes_ising.core import pseudolikelihood as pl

        numpyro.factor("log_pseudolikelihood", pl.log_pseudolikelihood_kpairwise(h, J, V, suff))
    else:
        numpyro.factor("log_likelihood", exact_log_likelihood(h, J, V, suff))


class FitResult(NamedTuple):
    """A fitted family: ``tree`` (DataTree: posterior h, J, V; log_likelihood ``s`` over unique
    patterns; constant_data ``counts``), ``patterns`` (U, N), ``counts`` (U,), ``seconds``."""

    tree: object
    patterns: np.ndarray
    counts: np.ndarray
    seconds: float


def _unique(spins):
    patterns, counts = np.unique(np.asarray(spins, np.int8), axis=0, return_counts=True)
    return patterns, counts.astype(np.float64)


def _draw_arrays(family, num_neurons, samples, num_chains):
    """NUTS samples (chain*draw flat) → dict of (chain, draw, ...) numpy h, J, V."""
    h = jnp.asarray(samples["h"])
    J, V = jax.vmap(lambda h_, j_, v_: _unpack_sites(family, num_neurons, h_, j_, v_))(
        h, samples.get("J_flat", jnp.zeros((h.shape[0], 0))),
        samples.get("V_walk", jnp.zeros((h.shape[0], 0))))
    arrays = dict(h=h, J=J, V=V)
    return {k: np.asarray(v).reshape((num_chains, -1) + v.shape[1:]) for k, v in arrays.items()}


def pattern_log_likelihood_draws(patterns, h, J, V):
    """log P(s_u | draw) for draws h (D, N), J (D, N, N), V (D, N+1) → (D, U)."""
    patterns = jnp.asarray(patterns)
    return np.asarray(jax.lax.map(lambda p: log_probability(patterns, *p),
                                  (jnp.asarray(h), jnp.asarray(J), jnp.asarray(V))))


def fit_posterior(spins, family="k_pairwise", *, rng_key=0, num_chains=2, num_draws=500,
                  num_warmup=500, v_scale=1.0, h_scale=2.0, j_scale=1.0, target_accept=0.8,
                  h_mean=0.0, max_tree_depth=10, spec=None, neuron_ids=None,
                  likelihood="exact"):
    """NUTS posterior of one family on (T, N) ±1 spins (float64 on; N ≤ 22 for the exact
    likelihood).

    ``likelihood="pseudo"`` (any N; also a spec's ``likelihood``): the pseudo-posterior of
    :func:`bayes_ising.core.pseudolikelihood.log_pseudolikelihood_kpairwise`. It has no
    curvature adjustment (the pairwise model's, :mod:`bayes_ising.fit.bayes`, is not derived
    for V): its intervals are **unadjusted**, usually too narrow, and the tree says so
    (attributes ``adjust = "none"``, ``intervals = "unadjusted"``); it has no
    ``log_likelihood`` group (no LOO: its terms are not log predictive densities).

    Dense mass matrix adapted in warmup (V and h, J are correlated, see the module docstring).
    ``spec`` (a :class:`~bayes_ising.fit.model_spec.ModelSpec`, e.g. ``models/k_pairwise.toml``)
    replaces the prior scales, target_accept and max_tree_depth by its own.
    Returns :class:`FitResult`; its tree (:func:`draws_tree`: the posterior contract's
    layout, neurons named by ``neuron_ids``) has groups ``posterior`` (h, J, V), ``log_likelihood``
    (``s``: (chain, draw, pattern), log P of each unique pattern) and ``constant_data``
    (``counts`` per pattern), the input of :func:`weighted_loo`.
    """
    from numpyro.infer import MCMC, NUTS

    if spec is not None:
        h_mean, h_scale, j_scale, v_scale = spec.h_mean, spec.h_scale, spec.j_scale, spec.v_scale
        target_accept, max_tree_depth = spec.target_accept, spec.max_tree_depth
    if likelihood not in ("exact", "pseudo"):
        raise ValueError(f"likelihood must be 'exact' or 'pseudo', got {likelihood!r}")
    spins = np.asarray(spins)
    if likelihood == "exact":
        ising.check_exact(spins.shape[1], "kpairwise.fit_posterior")
    start = time.perf_counter()
    patterns, counts = _unique(spins)
    if likelihood == "exact":
        suff = sufficient_statistics(spins)
    else:
        from bayes_ising.core import pseudolikelihood as pl

        suff = pl.prepare(patterns, counts)
    kernel = NUTS(model, dense_mass=True, target_accept_prob=target_accept,
                  max_tree_depth=max_tree_depth)
    mcmc = MCMC(kernel, num_warmup=num_warmup, num_samples=num_draws, num_chains=num_chains,
                chain_method="sequential", progress_bar=False)
    key = jax.random.PRNGKey(rng_key) if isinstance(rng_key, int) else rng_key
    mcmc.run(key, suff, family=family, h_mean=h_mean, h_scale=h_scale, j_scale=j_scale,
             v_scale=v_scale, likelihood=likelihood)
    draws = _draw_arrays(family, spins.shape[1], mcmc.get_samples(), num_chains)
    log_lik = None
    if likelihood == "exact":
        flat = [draws[k].reshape((-1,) + draws[k].shape[2:]) for k in ("h", "J", "V")]
        log_lik = pattern_log_likelihood_draws(patterns, *flat).reshape(num_chains, num_draws,
                                                                         -1)
    seconds = time.perf_counter() - start
    divergent = int(np.asarray(mcmc.get_extra_fields()["diverging"]).sum())
    attrs = _tree_attrs(family, spec, divergent, seconds, num_chains, num_draws, num_warmup,
                        rng_key)
    if likelihood == "pseudo":
        attrs.update(likelihood="pseudo", adjust="none", intervals="unadjusted",
                     intervals_note=PSEUDO_INTERVALS_NOTE)
    tree = draws_tree(draws["h"], draws["J"], draws["V"], neuron_ids=neuron_ids, attrs=attrs,
                      log_likelihood=log_lik, counts=counts if log_lik is not None else None)
    return FitResult(tree, patterns, counts, seconds)


def draws_tree(h, J, V, *, neuron_ids=None, attrs=None, log_likelihood=None, counts=None):
    """A posterior DataTree in the layout of the posterior contract
    (:mod:`bayes_ising.fit.posterior`) from draws h (chain, draw, N), J (chain, draw, N, N)
    and V (chain, draw, N+1): ``h`` (neuron), ``J`` (pair, coordinates ``neuron_i`` /
    ``neuron_j``, :func:`~bayes_ising.core.ising.pair_indices` order), ``V`` (k = 0 … N);
    ``neuron_ids`` default ``n0 …``; optional ``log_likelihood`` ``s`` (chain, draw, pattern)
    and ``constant_data`` ``counts`` (pattern,); ``attrs`` on the root (``neuron_ids`` added
    as JSON, as in the pairwise trees)."""
    import json

    import arviz_base

    h, J, V = (np.asarray(x, np.float64) for x in (h, J, V))
    n = h.shape[-1]
    ids = ([f"n{k}" for k in range(n)] if neuron_ids is None
           else [str(v) for v in np.asarray(neuron_ids).tolist()])
    if len(ids) != n:
        raise ValueError(f"draws_tree: {len(ids)} neuron ids for {n} neurons")
    i, j = ising.pair_indices(n)
    groups = {"posterior": {"h": h, "J": J[..., i, j], "V": V}}
    dims = {"h": ["neuron"], "J": ["pair"], "V": ["k"]}
    if log_likelihood is not None:
        groups["log_likelihood"] = {"s": np.asarray(log_likelihood)}
        dims["s"] = ["pattern"]
    if counts is not None:
        groups["constant_data"] = {"counts": np.asarray(counts)}
        dims["counts"] = ["pattern"]
    root = dict(attrs or {}, neuron_ids=json.dumps(ids))
    tree = arviz_base.from_dict(groups, dims=dims, attrs={"/": root}, coords={
        "neuron": ids, "k": np.arange(n + 1), "pair": np.arange(i.size)})
    post = tree["posterior"]
    post.coords["neuron_i"] = ("pair", np.asarray(ids)[i])
    post.coords["neuron_j"] = ("pair", np.asarray(ids)[j])
    return tree


def fit_diagnostics(tree):
    """(max R-hat, min bulk ESS) over the sampled parameters of a fit's tree: h, J_{i<j}
    (pairwise, K-pairwise) and V(1..N) (K-pairwise); the constant entries (J's diagonal
    and lower triangle, V(0)) are left out."""
    mixing = _fit_verdict(tree)
    return mixing.max_rhat, mixing.min_ess_bulk


def _fit_verdict(tree):
    """The package's one mixing rule (:func:`bayes_ising.core.convergence.verdict`: R-hat, bulk and
    tail ESS by :func:`~bayes_ising.core.convergence.draw_statistics`, divergences) over the sampled
    parameters of a fit's tree."""
    from bayes_ising.core.convergence import draw_statistics, verdict

    post = tree["posterior"]
    arrays = [np.asarray(post["h"])]
    if tree.attrs.get("family", "k_pairwise") != "independent":
        arrays.append(np.asarray(post["J"]))
    if tree.attrs.get("family", "k_pairwise") == "k_pairwise":
        arrays.append(np.asarray(post["V"])[:, :, 1:])
    rhat, ess_bulk, ess_tail = draw_statistics(np.concatenate(arrays, axis=-1))
    return verdict(rhat, ess_bulk, ess_tail, int(tree.attrs.get("num_divergent", 0)),
                   num_chains=post.sizes["chain"])


def format_fit_summary(fit):
    """One line: family, chains × draws, time, max R-hat, min bulk ESS, divergences, and the
    verdict of the package's one mixing rule."""
    from bayes_ising.core.convergence import rule_text

    mixing = _fit_verdict(fit.tree)
    a = fit.tree.attrs
    return (f"{a['family']} ({a.get('likelihood', 'exact')} likelihood): {a['num_chains']} "
            f"chains x {a['num_draws']} draws in {fit.seconds:.1f} s; max R-hat "
            f"{mixing.max_rhat:.4f}, min bulk ESS "
            f"{mixing.min_ess_bulk:.0f}, {a['num_divergent']} divergent transitions; "
            + ("converged" if mixing.converged else f"NOT converged ({rule_text()}): "
               "run longer") + "."
            + (f" {PSEUDO_INTERVALS_NOTE}." if a.get("intervals") == "unadjusted" else ""))


def _tree_attrs(family, spec, divergent, seconds, num_chains, num_draws, num_warmup, seed):
    from bayes_ising import __version__

    return dict(family=family, likelihood="exact", num_divergent=divergent, seconds=seconds,
                num_chains=num_chains, num_draws=num_draws, num_warmup=num_warmup,
                seed=seed if isinstance(seed, int) else -1, bayes_ising_version=__version__,
                model_spec="" if spec is None else spec.to_json())


def weighted_loo(fit):
    r"""PSIS-LOO per bin from the per-pattern log-likelihood of a :class:`FitResult`.

    Bins with the same pattern have the same log-likelihood draws, hence the same PSIS-LOO
    term: ``arviz_stats.loo`` runs once per unique pattern u and each term counts
    :math:`c_u` times, :math:`\mathrm{elpd} = \sum_u c_u\, \mathrm{elpd}_u`,
    se = √T · sd over bins (ddof 1, as arviz_stats). Returns an ``ELPDDataLOO`` whose
    ``elpd_i`` / ``pareto_k`` are per bin (dim ``bin``, bins sorted by pattern), the input of
    ``arviz_stats.compare``.
    Bins of real data are autocorrelated, so se is an underestimate.
    """
    import arviz_stats as azs
    import xarray as xr
    from arviz_stats.utils import ELPDDataLOO

    per_pattern = azs.loo(fit.tree, pointwise=True, var_name="s")
    counts = fit.counts.astype(np.int64)
    elpd_u = np.asarray(per_pattern.elpd_i).ravel()
    ll = np.asarray(fit.tree["log_likelihood"]["s"]).reshape(-1, elpd_u.size)
    lppd_u = np.asarray(logsumexp(ll, axis=0)) - np.log(ll.shape[0])
    elpd_bins = np.repeat(elpd_u, counts)
    k_bins = np.repeat(np.asarray(per_pattern.pareto_k).ravel(), counts)
    return ELPDDataLOO(
        elpd=float(elpd_bins.sum()), se=float(np.sqrt(elpd_bins.size) * elpd_bins.std(ddof=1)),
        p=float(counts @ (lppd_u - elpd_u)), n_samples=ll.shape[0],
        n_data_points=int(elpd_bins.size), scale="log",
        warning=bool(np.any(k_bins > per_pattern.good_k)), good_k=per_pattern.good_k,
        elpd_i=xr.DataArray(elpd_bins, dims=["bin"]), pareto_k=xr.DataArray(k_bins, dims=["bin"]))


def synchrony_draws(tree, num_draws=None, seed=0):
    """Model P(K) of posterior draws of a fit's tree, (D, N+1) (all draws, or ``num_draws``
    chosen at random)."""
    arrays = posterior_arrays(tree, num_draws, seed)
    return np.asarray(jax.lax.map(lambda p: _moments_kernel(*p)[2],
                                  tuple(jnp.asarray(a) for a in arrays)))


def posterior_arrays(tree, num_draws=None, seed=0):
    """(h, J, V) of ``num_draws`` random draws (all when None), through the posterior
    contract (:func:`bayes_ising.fit.posterior.posterior_draws`)."""
    from bayes_ising.fit.posterior import posterior_draws

    h, J, V = posterior_draws(tree, num_draws, jax.random.key(seed), potential=True)
    return [h, J, np.zeros((h.shape[0], h.shape[1] + 1)) if V is None else V]


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
    from bayes_ising.core import stats

    spins = np.asarray(spins)
    n = spins.shape[1]
    if n > MAX_EXACT_THIRD_ORDER_NEURONS or n < 3:
        return None
    i, j, k = _triplets(n)
    observed = stats.third_order_correlations(spins)[i, j, k]
    median = np.median(_exact_third_order(*posterior_arrays(tree, num_draws, seed))[:, i, j, k],
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
    from bayes_ising.core import stats

    spins = np.asarray(spins)
    s1 = float(_binary_entropy(stats.firing_probability(spins)))
    estimate = stats.data_entropy(spins)
    entropy = np.asarray(jax.lax.map(lambda p: _entropy_kernel(*p), tuple(
        jnp.asarray(a) for a in posterior_arrays(tree, num_draws, seed))))
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
    patterns, counts = _unique(spins)
    order = np.argsort(-counts, kind="stable")[:top]
    patterns, observed = patterns[order], counts[order] / spins.shape[0]
    h, J, V = (jnp.asarray(a) for a in posterior_arrays(tree, num_draws, seed))
    probs = np.exp(pattern_log_likelihood_draws(patterns, h, J, V))
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

    suff = sufficient_statistics(spins)
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


def compare_families(spins, families=FAMILIES, *, rng_key=0, check_draws=200, **fit_kwargs):
    """Fit each family on the same spins, PSIS-LOO each (:func:`weighted_loo`), compare.

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
        fit = fit_posterior(spins, family, rng_key=rng_key, **fit_kwargs)
        fits[family], loos[family] = fit, weighted_loo(fit)
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


def _peak_summary(tree, num_draws, temperatures=np.linspace(0.5, 3.0, 26)):
    """Median T* and C_max/N over ``num_draws`` posterior draws, exact thermodynamics."""
    from bayes_ising.fit.kpairwise_fit import posterior_thermodynamics

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
        rhat, ess = fit_diagnostics(fit.tree)
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
