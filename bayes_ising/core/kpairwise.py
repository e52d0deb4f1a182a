r"""The K-pairwise model (Tkačik et al. 2014): energy, exact enumeration and likelihood (its
posteriors and point fits are :mod:`bayes_ising.fit.kpairwise_fit`, the comparison of the
families and their thermodynamics :mod:`bayes_ising.analysis.families`).

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

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import logsumexp

from bayes_ising.core import ising

__all__ = [
    "FAMILIES",
    "KSufficient",
    "sufficient_statistics",
    "energy",
    "log_partition",
    "exact_moments",
    "log_probability",
    "exact_log_likelihood",
    "pattern_log_likelihood",
    "pattern_log_likelihood_draws",
    "exact_entropy",
    "fisher_information",
]


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


def pattern_log_likelihood_draws(patterns, h, J, V):
    """log P(s_u | draw) for draws h (D, N), J (D, N, N), V (D, N+1) → (D, U)."""
    patterns = jnp.asarray(patterns)
    return np.asarray(jax.lax.map(lambda p: log_probability(patterns, *p),
                                  (jnp.asarray(h), jnp.asarray(J), jnp.asarray(V))))




def fisher_information(h, J, V):
    r"""Exact Fisher information of one bin of the K-pairwise model in the parameters
    θ = (h, J_{i<j}, V(1..N)) (:func:`bayes_ising.fit.kpairwise_fit.pack` order): the
    covariance of the sufficient statistics
    :math:`f(s) = (s_i;\ s_i s_j\ [i<j];\ [K(s) = k]\ k = 1..N)`
    (:func:`bayes_ising.core.ising.sufficient_features`), = the Hessian of log Z(θ). Singular
    along V linear or quadratic in K (shifts of h and J: Σ_i s_i = 2K − N); a prior fixes that.
    Weighted enumeration in chunks (the kernel of
    :func:`bayes_ising.core.ising.fisher_information`), N ≤ 22. Shape (P, P), P = 2N + N(N−1)/2.
    """
    h, J, V = _params(h, J, V)
    num_neurons = h.shape[0]
    ising.check_exact(num_neurons, "kpairwise.fisher_information")
    m, Q, p_k, log_z = _moments_kernel(h, J, V)
    i, j = ising.pair_indices(num_neurons)
    mean_features = jnp.concatenate([m, Q[i, j], p_k[1:]])
    return ising._fisher_kernel(h, J, V, log_z, mean_features,
                                ising._fisher_chunk(num_neurons, mean_features.shape[0]), True)
