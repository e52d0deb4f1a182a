r"""Point fits, held-out comparison and thermodynamics of the K-pairwise family.

Beside the posteriors of :mod:`bayes_ising.core.kpairwise` (exact, N ≤ 22):

* :func:`fit_mle` — exact maximum likelihood (N ≤ 22): moment matching of m, ⟨s_i s_j⟩ and
  P(K) (the gradient of the per-bin log-likelihood is data − model moments);
* :func:`fit_pseudo` — maximum pseudolikelihood for any N
  (:func:`bayes_ising.core.pseudolikelihood.log_pseudolikelihood_kpairwise`);
* :func:`held_out_blocks` — blocked cross-validation of the families where PSIS-LOO does
  not apply (pseudolikelihood fits) or as a check of it: contiguous blocks of bins held out in
  turn (bins are autocorrelated, so single bins would leak);
* :func:`thermodynamics` — E(T), C(T) = Var E / T², S(T) by the thermodynamic integration of
  :mod:`bayes_ising.analysis.thermo`, exactly (enumeration) or from the K-pairwise Gibbs sampler
  (:func:`bayes_ising.core.gibbs.sample_kpairwise`), for one model or posterior draws.

Parameter vector per family: ``theta = [h (N), J_{i<j} (P), V(1..N)]`` (``independent``: h
only; ``pairwise``: h, J); V(0) = 0. A V linear or quadratic in K is a shift of h or J, so the
likelihood is flat along two directions; the small ridge ``l2`` picks one point on that line
(the moments are matched either way).
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import logsumexp

from bayes_ising.core import ising, kpairwise, stats
from bayes_ising.core import pseudolikelihood as pl

__all__ = ["PointFit", "pack", "unpack", "fit_mle", "fit_pseudo", "held_out_blocks",
           "thermodynamics", "uniform_energy_moments", "posterior_thermodynamics"]


class PointFit(NamedTuple):
    """A point estimate: h (N,), J (N, N), V (N+1,), family, method ("exact" | "pseudo"),
    converged, iterations, and max_moment_error (exact fits: max |data − model| over m,
    ⟨s_i s_j⟩ and P(K); NaN for pseudolikelihood fits)."""

    h: np.ndarray
    J: np.ndarray
    V: np.ndarray
    family: str
    method: str
    converged: bool
    iterations: int
    max_moment_error: float


def _sizes(family, num_neurons):
    if family not in kpairwise.FAMILIES:
        raise ValueError(f"family must be one of {kpairwise.FAMILIES}, got {family!r}")
    pairs = ising.num_pairs(num_neurons) if family != "independent" else 0
    return num_neurons, pairs, num_neurons if family == "k_pairwise" else 0


def pack(h, J, V, family="k_pairwise"):
    """(h, J, V) → theta of ``family`` (module docstring)."""
    n = np.asarray(h).shape[0]
    _, pairs, steps = _sizes(family, n)
    parts = [jnp.asarray(h)]
    if pairs:
        parts.append(ising.matrix_to_couplings(jnp.asarray(J)))
    if steps:
        parts.append(jnp.asarray(V)[1:])
    return jnp.concatenate(parts)


def unpack(theta, num_neurons, family="k_pairwise"):
    """theta of ``family`` → (h (N,), J (N, N), V (N+1,)); absent parts are zeros."""
    n, pairs, steps = _sizes(family, num_neurons)
    h = theta[:n]
    J = (ising.couplings_to_matrix(theta[n:n + pairs], n) if pairs
         else jnp.zeros((n, n), theta.dtype))
    V = jnp.concatenate([jnp.zeros(1, theta.dtype),
                         theta[n + pairs:] if steps else jnp.zeros(n, theta.dtype)])
    return h, J, V


def _penalty(theta, num_neurons, l2):
    """(l2/2)·|θ without h|² plus a 1e-8 ridge on h (only the flat directions need it)."""
    return 0.5 * l2 * jnp.sum(theta[num_neurons:] ** 2) + 0.5e-8 * jnp.sum(
        theta[:num_neurons] ** 2)


@functools.partial(jax.jit, static_argnames=("num_neurons", "family"))
def _exact_value_and_grad(theta, m, Q, p_k, l2, num_neurons, family):
    def objective(theta):
        h, J, V = unpack(theta, num_neurons, family)
        return (kpairwise._log_partition_kernel(h, J, V) - h @ m - 0.5 * jnp.sum(J * Q)
                - p_k @ V + _penalty(theta, num_neurons, l2))

    return jax.value_and_grad(objective)(theta)


def fit_mle(spins, family="k_pairwise", *, l2=1e-8, gtol=1e-9, max_iterations=5000):
    r"""Exact maximum likelihood (N ≤ 22) of one family on (T, N) ±1 spins.

    Minimises the per-bin :math:`\log Z - h\cdot m - \sum_{i<j}J_{ij}Q_{ij} - \sum_K \hat
    P(K) V(K)` + ridge by L-BFGS (:func:`bayes_ising.fit.mle._lbfgs`); at the optimum the model's
    m, ⟨s_i s_j⟩ and P(K) match the data's (``max_moment_error``, limited by ``l2`` and
    ``gtol``). A K never observed drives V(K) towards −∞; the ridge keeps it finite.
    Returns :class:`PointFit`.
    """
    from bayes_ising.fit.mle import _lbfgs

    spins = np.asarray(spins)
    n = spins.shape[1]
    ising.check_exact(n, "kpairwise_fit.fit_mle")
    suff = kpairwise.sufficient_statistics(spins)
    args = tuple(jnp.asarray(x, jnp.float64) for x in (
        suff.m, suff.Q, suff.k_counts / suff.num_bins, l2))
    theta0 = jnp.zeros(sum(_sizes(family, n)), jnp.float64)
    theta0 = theta0.at[:n].set(stats.independent_fields(suff.m, suff.num_bins))
    theta, iterations, converged, _ = _lbfgs(
        lambda t: _exact_value_and_grad(t, *args, n, family), theta0, max_iterations, gtol)
    h, J, V = unpack(jnp.asarray(theta), n, family)
    m, Q, p_k, _ = kpairwise.exact_moments(h, J, V)
    error = max(float(jnp.max(jnp.abs(m - args[0]))), float(jnp.max(jnp.abs(Q - args[1]))),
                float(jnp.max(jnp.abs(p_k - args[2]))) if family == "k_pairwise" else 0.0)
    return PointFit(np.asarray(h), np.asarray(J), np.asarray(V), family, "exact",
                    bool(converged), int(iterations), error)


@functools.partial(jax.jit, static_argnames=("num_neurons", "family"))
def _pseudo_value_and_grad(theta, data, num_bins, l2, num_neurons, family):
    def objective(theta):
        h, J, V = unpack(theta, num_neurons, family)
        return (-pl.log_pseudolikelihood_kpairwise(h, J, V, data) / num_bins
                + _penalty(theta, num_neurons, l2))

    return jax.value_and_grad(objective)(theta)


def fit_pseudo(spins, family="k_pairwise", *, l2=1e-4, gtol=1e-7, max_iterations=5000):
    r"""Maximum pseudolikelihood of one family on (T, N) ±1 spins, any N.

    Minimises :math:`-\log\mathrm{PL}/T + (l_2/2)\,|(J, V)|^2` by L-BFGS. The ridge matters
    more than for :func:`fit_mle`: V(K) far from every observed K only enters through a few
    flips. Returns :class:`PointFit` (``max_moment_error`` NaN: check the moments by Gibbs,
    :func:`bayes_ising.core.gibbs.sample_kpairwise`)."""
    from bayes_ising.fit.mle import _lbfgs

    spins = np.asarray(spins)
    n = spins.shape[1]
    patterns, counts = np.unique(spins.astype(np.int8), axis=0, return_counts=True)
    data = pl.prepare(patterns, counts)
    theta0 = jnp.zeros(sum(_sizes(family, n)), jnp.float64)
    theta0 = theta0.at[:n].set(stats.independent_fields(spins.mean(axis=0), spins.shape[0]))
    theta, iterations, converged, _ = _lbfgs(
        lambda t: _pseudo_value_and_grad(t, data, float(spins.shape[0]), l2, n, family),
        theta0, max_iterations, gtol)
    h, J, V = unpack(jnp.asarray(theta), n, family)
    return PointFit(np.asarray(h), np.asarray(J), np.asarray(V), family, "pseudo",
                    bool(converged), int(iterations), float("nan"))


def _block_score(spins, fit, method):
    """Summed held-out score of a block: exact log-likelihood or log pseudolikelihood."""
    if method == "exact":
        return float(kpairwise.exact_log_likelihood(
            fit.h, fit.J, fit.V, kpairwise.sufficient_statistics(spins)))
    patterns, counts = np.unique(spins.astype(np.int8), axis=0, return_counts=True)
    return float(pl.log_pseudolikelihood_kpairwise(fit.h, fit.J, fit.V,
                                                   pl.prepare(patterns, counts)))


def held_out_blocks(spins, families=kpairwise.FAMILIES, *, num_blocks=10, method="auto",
                    l2=None):
    r"""Blocked cross-validation: each of ``num_blocks`` contiguous blocks of bins is held out
    in turn, every family is fitted on the rest (:func:`fit_mle` for ``method`` "exact",
    :func:`fit_pseudo` for "pseudo"; "auto": exact when N ≤ 22) and scored on the block.

    Scores: "exact" — held-out log-likelihood, comparable across families and, per bin, with
    PSIS-LOO's elpd/T (a point fit rather than the posterior predictive); "pseudo" — held-out
    log pseudolikelihood :math:`\sum_t\sum_i\log P(s_{ti}\mid s_{t\setminus i})`, comparable
    between families fitted the same way but not with likelihoods or LOO (it scores each
    neuron's conditional, not the joint pattern).

    Returns dict(method, score, families, block_scores (F, B), total {family}, per_bin
    {family}, difference {family: total − best total}, se {family: √B·sd_b(d_b)} of the
    blockwise differences to the best family (blocks treated as independent), num_bins).
    """
    spins = np.asarray(spins)
    num_bins, n = spins.shape
    if method == "auto":
        method = "exact" if n <= ising.MAX_EXACT_NEURONS else "pseudo"
    if method not in ("exact", "pseudo") or not 2 <= num_blocks <= num_bins:
        raise ValueError(f"method must be auto/exact/pseudo and 2 <= num_blocks <= T; got "
                         f"{method!r}, {num_blocks}")
    fit = fit_mle if method == "exact" else fit_pseudo
    options = {} if l2 is None else {"l2": l2}
    edges = np.linspace(0, num_bins, num_blocks + 1).astype(int)
    scores = np.zeros((len(families), num_blocks))
    for b in range(num_blocks):
        held = np.zeros(num_bins, bool)
        held[edges[b]:edges[b + 1]] = True
        for f, family in enumerate(families):
            scores[f, b] = _block_score(spins[held], fit(spins[~held], family, **options),
                                        method)
    totals = scores.sum(axis=1)
    best = int(np.argmax(totals))
    diffs = scores - scores[best]
    return dict(method=method, score="log-likelihood" if method == "exact"
                else "log pseudolikelihood", families=list(families), block_scores=scores,
                total=dict(zip(families, totals.tolist(), strict=True)),
                per_bin=dict(zip(families, (totals / num_bins).tolist(), strict=True)),
                difference=dict(zip(families, diffs.sum(axis=1).tolist(), strict=True)),
                se=dict(zip(families, (math.sqrt(num_blocks) * diffs.std(axis=1, ddof=1))
                            .tolist(), strict=True)), num_bins=int(num_bins))


# --------------------------------------------------------------------------------------------
# Thermodynamics
# --------------------------------------------------------------------------------------------


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
                   num_chains=16, num_sweeps=2000, burn_in=200):
    r"""C(T)/N, S(T)/N, E(T)/N of one or D K-pairwise models → ``thermo.ThermoResult``.

    The β grid and the entropy integral :math:`S(\beta) = N\log 2 + \beta\langle E\rangle -
    \int_0^\beta \langle E\rangle` are those of :mod:`bayes_ising.analysis.thermo`. ``method``
    "exact" (N ≤ 22): ⟨E⟩, Var E by enumeration at every grid β, and
    ``entropy_integration_error`` against :math:`\log Z + \beta\langle E\rangle`; "gibbs":
    every grid β > 0 sampled at once by :func:`bayes_ising.core.gibbs.sample_kpairwise`, β = 0 by
    :func:`uniform_energy_moments` (use a smaller ``num_grid``, e.g. 24).
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
        ising.check_exact(n, "kpairwise_fit.thermodynamics")
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
    energies = run.energies.reshape(h.shape[0], -1, betas.size - 1)  # (D, kept·chains, G−1)
    zero = np.array([uniform_energy_moments(*p) for p in zip(h, J, V, strict=True)])
    mean_e = np.concatenate([zero[:, :1], energies.mean(axis=1)], axis=1)
    var_e = np.concatenate([zero[:, 1:], energies.var(axis=1)], axis=1)
    settings.update(num_chains=int(num_chains), num_sweeps=int(num_sweeps), burn_in=burn_in)
    return thermo._assemble(temperatures, betas, index, mean_e, var_e, n,
                            (temperatures[0], temperatures[-1]), method="gibbs",
                            settings=settings)


def posterior_thermodynamics(tree, temperatures, *, num_draws=20, seed=0, **options):
    """:func:`thermodynamics` of ``num_draws`` random posterior draws of a
    :func:`bayes_ising.core.kpairwise.fit_posterior` tree (bands via ``ThermoResult.to_dict``)."""
    return thermodynamics(*kpairwise.posterior_arrays(tree, num_draws, seed), temperatures,
                          **options)
