r"""The pairwise maximum-entropy (Ising) model: energy, parameter packing, exact enumeration,
pseudolikelihood.

Convention (used everywhere in bayes_ising): spins :math:`s_i \in \{-1, +1\}`,

.. math::

    P(s \mid h, J) = \frac{e^{-E(s)}}{Z(h, J)}, \qquad
    E(s) = -\sum_i h_i s_i - \sum_{i<j} J_{ij} s_i s_j ,

each pair counted once; ``J`` is an ``(N, N)`` symmetric matrix with zero diagonal, so
:math:`\sum_{i<j} J_{ij} s_i s_j = \tfrac12 s^\top J s`. The flat parameter vector used by
optimisers and NumPyro is ``theta = [h, J[i, j] for (i, j) in zip(*np.triu_indices(N, 1))]``
(:func:`pack` / :func:`unpack`; :func:`pair_indices` is the one pair order).

Exact routines (``log_partition``, ``exact_*``, ``log_probability``, ``fisher_information``)
enumerate all :math:`2^N` states, need JAX float64 (:class:`~bayes_ising.errors.Float64Error`
otherwise) and refuse ``N > MAX_EXACT_NEURONS``
(:class:`~bayes_ising.errors.TooManyNeuronsError`). The enumeration splits the spins into two
halves A and B,

.. math::

    -E(a, b) = -E_A(a) - E_B(b) + s_A(a)^\top J_{AB}\, s_B(b),

so :math:`\log Z` is a ``logsumexp`` over a :math:`2^{|A|} \times 2^{|B|}` matrix built by one
matrix product :math:`S_A J_{AB} S_B^\top` plus each half's own terms (no
:math:`2^N \times N(N+1)/2` feature matrix).

References
----------
Schneidman, Berry, Segev & Bialek (2006), Nature 440, 1007 (pairwise maximum entropy models of
retinal populations). Besag (1975), J. R. Stat. Soc. D 24, 179 (pseudolikelihood).
Aurell & Ekeberg (2012), Phys. Rev. Lett. 108, 090201 (pseudolikelihood for Ising inference).
Zanoci, Dehghani & Tegmark (2019), Phys. Rev. E 99, 032408 (Ising models of neural data,
thermodynamics).
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import logsumexp

from bayes_ising.core import limits
from bayes_ising.errors import Float64Error, TooManyNeuronsError

__all__ = [
    "to_lattice_gas",
    "from_lattice_gas",
    "convert",
    "CONVENTIONS",
    "MAX_EXACT_NEURONS",
    "num_pairs",
    "pair_indices",
    "pack",
    "unpack",
    "couplings_to_matrix",
    "matrix_to_couplings",
    "energy",
    "all_states",
    "log_partition",
    "exact_moments",
    "exact_synchrony_distribution",
    "exact_entropy",
    "log_probability",
    "exact_log_likelihood",
    "log_pseudolikelihood",
    "log_pseudolikelihood_grad",
    "local_fields",
    "fisher_information",
    "sufficient_features",
    "exact_energy_moments",
    "check_exact",
]

#: Largest N enumerated exactly (:mod:`bayes_ising.core.limits`, the one table of size limits).
MAX_EXACT_NEURONS = limits.MAX_EXACT_NEURONS

# Rows of the per-chunk feature matrix in :func:`fisher_information` are limited so that one
# chunk (rows x num_parameters float64) stays near 64 MiB.
_FISHER_CHUNK_BYTES = 64 * 2**20


# --------------------------------------------------------------------------------------------
# Parameter packing (the one place that fixes the pair order)
# --------------------------------------------------------------------------------------------


def num_pairs(num_neurons):
    """Number of pairs i<j: N(N−1)/2."""
    num_neurons = int(num_neurons)
    return num_neurons * (num_neurons - 1) // 2


@functools.lru_cache(maxsize=64)
def _pair_indices_cached(num_neurons):
    i, j = np.triu_indices(num_neurons, 1)
    i.setflags(write=False)
    j.setflags(write=False)
    return i, j


def pair_indices(num_neurons):
    """Row and column indices ``(i, j)`` of the pairs i<j in the package's order.

    This is ``np.triu_indices(N, 1)``: (0,1), (0,2), ..., (0,N−1), (1,2), ... Every flat vector
    of couplings in bayes_ising (``theta[N:]``, the ``pair`` dimension of posteriors) uses it.
    """
    return _pair_indices_cached(int(num_neurons))


def couplings_to_matrix(j_flat, num_neurons):
    """Flat couplings ``(N(N−1)/2,)`` in pair order → symmetric ``(N, N)`` matrix, zero diagonal.

    Works on a batch: ``(..., N(N−1)/2)`` → ``(..., N, N)``.
    """
    num_neurons = int(num_neurons)
    j_flat = jnp.asarray(j_flat)
    if j_flat.shape[-1] != num_pairs(num_neurons):
        raise ValueError(
            f"couplings_to_matrix: expected {num_pairs(num_neurons)} couplings for "
            f"N = {num_neurons}, got {j_flat.shape[-1]}"
        )
    i, j = pair_indices(num_neurons)
    upper = jnp.zeros(j_flat.shape[:-1] + (num_neurons, num_neurons), j_flat.dtype)
    upper = upper.at[..., i, j].set(j_flat)
    return upper + jnp.swapaxes(upper, -1, -2)


def matrix_to_couplings(J):
    """Symmetric ``(..., N, N)`` coupling matrix → flat ``(..., N(N−1)/2)`` upper triangle."""
    J = jnp.asarray(J)
    i, j = pair_indices(J.shape[-1])
    return J[..., i, j]


def pack(h, J):
    """``(h (N,), J (N, N))`` → ``theta = [h, J[triu(1)]]`` of length N + N(N−1)/2."""
    h = jnp.asarray(h)
    return jnp.concatenate([h, matrix_to_couplings(J).astype(h.dtype)], axis=-1)


def unpack(theta, num_neurons):
    """``theta (..., N + N(N−1)/2)`` → ``(h (..., N), J (..., N, N))``; inverse of :func:`pack`."""
    num_neurons = int(num_neurons)
    theta = jnp.asarray(theta)
    expected = num_neurons + num_pairs(num_neurons)
    if theta.shape[-1] != expected:
        raise ValueError(
            f"unpack: theta has {theta.shape[-1]} entries, expected N + N(N-1)/2 = {expected} "
            f"for N = {num_neurons}"
        )
    return theta[..., :num_neurons], couplings_to_matrix(theta[..., num_neurons:], num_neurons)


# --------------------------------------------------------------------------------------------
# Energy and states
# --------------------------------------------------------------------------------------------


#: parameter conventions a verb can write: ±1 spins (the package's) or 0/1 (lattice gas)
CONVENTIONS = ("pm1", "01")


def to_lattice_gas(h, J):
    r"""±1 parameters → 0/1 ("lattice gas") parameters, exactly: the one conversion.

    With :math:`x = (s + 1)/2 \in \{0, 1\}`,
    :math:`\sum_i h_i s_i + \sum_{i<j} J_{ij} s_i s_j = \sum_i a_i x_i
    + \sum_{i<j} b_{ij} x_i x_j + \text{const}` for

    .. math:: a_i = 2 h_i - 2 \textstyle\sum_{j \ne i} J_{ij}, \qquad b_{ij} = 4 J_{ij}.

    ``a_i`` is the log-odds of neuron i firing when every other neuron is silent, ``b_ij`` the
    change of that log-odds when j fires: the quantities the data constrain locally (a neuron
    that never fires leaves only its own a_i and b_i· unidentified). Batched: h (..., N),
    J (..., N, N) symmetric zero diagonal → a (..., N), b (..., N, N).
    """
    h, J = jnp.asarray(h), jnp.asarray(J)
    return 2.0 * h - 2.0 * jnp.sum(J, axis=-1), 4.0 * J


def from_lattice_gas(a, b):
    """0/1 parameters (a, b) → ±1 (h, J): the inverse of :func:`to_lattice_gas`,
    h_i = a_i / 2 + Σ_j b_ij / 4, J = b / 4."""
    a, b = jnp.asarray(a), jnp.asarray(b)
    J = b / 4.0
    return a / 2.0 + jnp.sum(J, axis=-1), J


def convert(h, J, convention):
    """(h, J) in ``convention`` "pm1" (unchanged) or "01" (:func:`to_lattice_gas`), as numpy."""
    if convention == "pm1":
        return np.asarray(h), np.asarray(J)
    if convention == "01":
        a, b = to_lattice_gas(h, J)
        return np.asarray(a), np.asarray(b)
    raise ValueError(f"convention must be 'pm1' or '01', got {convention!r}")


def energy(spins, h, J):
    r"""Ising energy :math:`E(s) = -h^\top s - \sum_{i<j} J_{ij} s_i s_j`.

    Parameters
    ----------
    spins : array (..., N) of ±1 (any numeric dtype)
    h : array (N,)
    J : array (N, N), symmetric with zero diagonal (each pair once: ½ sᵀ J s)

    Returns
    -------
    array (...,) in the floating dtype of ``h``/``J``.
    """
    h = jnp.asarray(h)
    J = jnp.asarray(J)
    dtype = jnp.result_type(h.dtype, J.dtype, jnp.float32)
    s = jnp.asarray(spins).astype(dtype)
    return -(s @ h.astype(dtype)) - 0.5 * jnp.sum((s @ J.astype(dtype)) * s, axis=-1)


def local_fields(spins, h, J):
    r"""Local fields :math:`H_i(s) = h_i + \sum_{j \ne i} J_{ij} s_j`, shape (..., N)."""
    h = jnp.asarray(h)
    s = jnp.asarray(spins).astype(h.dtype)
    return h + s @ jnp.asarray(J, h.dtype)


def check_exact(num_neurons, what="exact enumeration"):
    """Raise if N is above :data:`MAX_EXACT_NEURONS` or JAX float64 is off.

    Raises
    ------
    TooManyNeuronsError
        N > MAX_EXACT_NEURONS; names N, the limit and the alternatives.
    Float64Error
        ``jax_enable_x64`` is off.
    """
    num_neurons = int(num_neurons)
    if num_neurons > MAX_EXACT_NEURONS:
        raise TooManyNeuronsError(
            f"{what} enumerates all 2^N states and is limited to N <= {MAX_EXACT_NEURONS} "
            f"neurons, got N = {num_neurons}; use the pseudolikelihood "
            "(ising.log_pseudolikelihood, likelihood='pseudo', mle.fit_pseudo) or Gibbs "
            "sampling (gibbs.sample_moments, mle.fit_boltzmann) instead"
        )
    if num_neurons < 1:
        raise ValueError(f"{what}: need at least one neuron, got N = {num_neurons}")
    if not jax.config.jax_enable_x64:
        raise Float64Error(
            f"{what} needs JAX float64 (sums over 2^{num_neurons} states lose precision in "
            "float32); call bayes_ising.enable_x64() first"
        )


@functools.lru_cache(maxsize=32)
def _states_numpy(num_neurons):
    """All 2^N states, row k = binary digits of k (first spin = most significant bit)."""
    codes = np.arange(2**num_neurons, dtype=np.int64)
    shifts = np.arange(num_neurons - 1, -1, -1, dtype=np.int64)
    bits = (codes[:, None] >> shifts[None, :]) & 1
    states = (2 * bits - 1).astype(np.int8)
    states.setflags(write=False)
    return states


def all_states(num_neurons):
    """All 2^N spin patterns as an ``(2^N, N)`` int8 array of ±1.

    Row k holds the binary digits of k, first neuron most significant (−1 for 0, +1 for 1);
    row 0 is all −1. Refuses N > MAX_EXACT_NEURONS.
    """
    num_neurons = int(num_neurons)
    if num_neurons > MAX_EXACT_NEURONS:
        check_exact(num_neurons, "all_states")
    if num_neurons < 0:
        raise ValueError(f"all_states: N must be >= 0, got {num_neurons}")
    return _states_numpy(num_neurons)


# --------------------------------------------------------------------------------------------
# Split-half enumeration
# --------------------------------------------------------------------------------------------


def _split(num_neurons):
    """Sizes of the halves A (first) and B (rest); |A| = ceil(N/2)."""
    size_a = (num_neurons + 1) // 2
    return size_a, num_neurons - size_a


def _half_states(size, dtype):
    return jnp.asarray(_states_numpy(size), dtype=dtype)


def _neg_energy_matrix(h, J):
    """−E over all states as a ``(2^|A|, 2^|B|)`` matrix plus the half-state matrices.

    −E(a, b) = [h_A·s_a + ½ s_aᵀ J_AA s_a] + [h_B·s_b + ½ s_bᵀ J_BB s_b] + s_aᵀ J_AB s_b.
    State (a, b) is row a·2^|B| + b of :func:`all_states` (A = first spins).
    """
    num_neurons = h.shape[0]
    size_a, size_b = _split(num_neurons)
    dtype = h.dtype
    states_a = _half_states(size_a, dtype)  # (2^|A|, |A|)
    states_b = _half_states(size_b, dtype)  # (2^|B|, |B|), a single empty row when |B| = 0
    h_a, h_b = h[:size_a], h[size_a:]
    j_aa, j_bb, j_ab = J[:size_a, :size_a], J[size_a:, size_a:], J[:size_a, size_a:]
    neg_a = states_a @ h_a + 0.5 * jnp.sum((states_a @ j_aa) * states_a, axis=1)
    neg_b = states_b @ h_b + 0.5 * jnp.sum((states_b @ j_bb) * states_b, axis=1)
    cross = (states_a @ j_ab) @ states_b.T
    return neg_a[:, None] + neg_b[None, :] + cross, states_a, states_b


def _as_params(h, J):
    h = jnp.asarray(h)
    dtype = jnp.result_type(h.dtype, jnp.asarray(J).dtype, jnp.float32)
    h = h.astype(dtype)
    J = jnp.asarray(J, dtype)
    if h.ndim != 1 or J.shape != (h.shape[0], h.shape[0]):
        raise ValueError(f"expected h (N,) and J (N, N); got h {h.shape} and J {J.shape}")
    return h, J


@jax.jit
def _log_partition_kernel(h, J):
    neg_energy, _, _ = _neg_energy_matrix(h, J)
    return logsumexp(neg_energy)


def log_partition(h, J):
    r"""Exact :math:`\log Z = \log \sum_s e^{-E(s)}` by split-half enumeration (float64).

    Differentiable: ``jax.grad`` with respect to ``h`` gives the model means :math:`m_i`, with
    respect to the flat couplings (through :func:`couplings_to_matrix`) the pair moments
    :math:`\langle s_i s_j \rangle`.

    Parameters
    ----------
    h : (N,)  J : (N, N) symmetric, zero diagonal; N ≤ MAX_EXACT_NEURONS.

    Raises
    ------
    TooManyNeuronsError, Float64Error
    """
    h, J = _as_params(h, J)
    check_exact(h.shape[0], "log_partition")
    return _log_partition_kernel(h, J)


def _weights(h, J):
    """Normalised probabilities as a ``(2^|A|, 2^|B|)`` matrix, log Z, half-state matrices."""
    neg_energy, states_a, states_b = _neg_energy_matrix(h, J)
    log_z = logsumexp(neg_energy)
    return jnp.exp(neg_energy - log_z), log_z, states_a, states_b


@jax.jit
def _moments_kernel(h, J):
    prob, log_z, states_a, states_b = _weights(h, J)
    p_a = prob.sum(axis=1)  # marginal over the states of half A
    p_b = prob.sum(axis=0)
    m = jnp.concatenate([p_a @ states_a, p_b @ states_b])
    q_aa = states_a.T @ (p_a[:, None] * states_a)
    q_bb = states_b.T @ (p_b[:, None] * states_b)
    q_ab = states_a.T @ prob @ states_b
    Q = jnp.block([[q_aa, q_ab], [q_ab.T, q_bb]])
    return m, Q, log_z


def exact_moments(h, J):
    r"""Model moments :math:`m_i = \langle s_i\rangle` (N,) and :math:`Q_{ij} = \langle s_i s_j
    \rangle` (N, N, unit diagonal), exact by enumeration (weighted sums over the split halves).
    """
    h, J = _as_params(h, J)
    check_exact(h.shape[0], "exact_moments")
    m, Q, _ = _moments_kernel(h, J)
    return m, Q


@jax.jit
def _synchrony_kernel(h, J):
    prob, _, states_a, states_b = _weights(h, J)
    size_a, size_b = states_a.shape[1], states_b.shape[1]
    k_a = jnp.sum(states_a > 0, axis=1)  # number of active spins in each half-state
    k_b = jnp.sum(states_b > 0, axis=1)
    onehot_a = jax.nn.one_hot(k_a, size_a + 1, dtype=prob.dtype)
    onehot_b = jax.nn.one_hot(k_b, size_b + 1, dtype=prob.dtype)
    joint = onehot_a.T @ prob @ onehot_b  # P(K_A = x, K_B = y)
    total = np.add.outer(np.arange(size_a + 1), np.arange(size_b + 1))
    return jnp.zeros(size_a + size_b + 1, prob.dtype).at[total].add(joint)


def exact_synchrony_distribution(h, J):
    r"""Model distribution of the synchrony :math:`K = \#\{i: s_i = +1\}`, shape (N+1,)."""
    h, J = _as_params(h, J)
    check_exact(h.shape[0], "exact_synchrony_distribution")
    return _synchrony_kernel(h, J)


def exact_entropy(h, J):
    r"""Entropy of the model in nats,

    .. math:: S_2 = -\sum_s P(s)\log P(s) = \log Z - \sum_i h_i m_i - \sum_{i<j} J_{ij} Q_{ij}.
    """
    h, J = _as_params(h, J)
    check_exact(h.shape[0], "exact_entropy")
    m, Q, log_z = _moments_kernel(h, J)
    return log_z - h @ m - 0.5 * jnp.sum(J * Q)


def log_probability(spins, h, J):
    r"""Exact :math:`\log P(s) = -E(s) - \log Z` of given patterns, shape (...,)."""
    h, J = _as_params(h, J)
    check_exact(h.shape[0], "log_probability")
    return -energy(spins, h, J) - _log_partition_kernel(h, J)


def exact_log_likelihood(h, J, moments):
    r"""Exact log-likelihood of binned data summarised by its moments,

    .. math:: \log L = T \Big[\sum_i h_i m_i + \sum_{i<j} J_{ij} Q_{ij} - \log Z(h, J)\Big].

    Parameters
    ----------
    h, J : model parameters
    moments : :class:`bayes_ising.core.stats.Moments` (or any object with ``num_bins``, ``m`` (N,)
        and ``Q`` (N, N)).
    """
    h, J = _as_params(h, J)
    check_exact(h.shape[0], "exact_log_likelihood")
    m = jnp.asarray(moments.m, h.dtype)
    Q = jnp.asarray(moments.Q, h.dtype)
    if m.shape != h.shape or Q.shape != J.shape:
        raise ValueError(
            f"exact_log_likelihood: moments of {m.shape[0]} neurons for a model of {h.shape[0]}"
        )
    # ½ Σ_{i≠j} J_ij Q_ij = Σ_{i<j} J_ij Q_ij (J zero diagonal).
    sufficient = h @ m + 0.5 * jnp.sum(J * Q)
    return moments.num_bins * (sufficient - _log_partition_kernel(h, J))


# --------------------------------------------------------------------------------------------
# Pseudolikelihood
# --------------------------------------------------------------------------------------------


def log_pseudolikelihood(h, J, patterns, counts=None):
    r"""Log pseudolikelihood over unique patterns with counts (Besag 1975; Aurell & Ekeberg 2012).

    .. math::

        \log \mathrm{PL} = \sum_u c_u \sum_i \log \sigma\big(2 s_{ui} H_{ui}\big), \qquad
        H_{ui} = h_i + \sum_{j \ne i} J_{ij} s_{uj},

    since :math:`P(s_i \mid s_{\setminus i}) = e^{s_i H_i} / (2\cosh H_i) = \sigma(2 s_i H_i)`.
    Evaluated by :mod:`bayes_ising.core.pseudolikelihood` (one blocked sweep, fused gradient); works
    for any N, in the dtype of ``h`` (float32 allowed).

    Parameters
    ----------
    h : (N,)  J : (N, N) symmetric, zero diagonal
    patterns : (U, N) ±1 (e.g. from ``stats.unique_patterns``)
    counts : (U,) multiplicities; ``None`` means one each.
    """
    from bayes_ising.core import pseudolikelihood as pl

    h = jnp.asarray(h)
    dtype = jnp.result_type(h.dtype, jnp.float32)
    value = pl.log_pseudolikelihood(h.astype(dtype), jnp.asarray(J, dtype),
                                    pl.prepare(patterns, counts))
    return value.astype(dtype)


def log_pseudolikelihood_grad(h, J, patterns, counts=None):
    r"""Gradient of :func:`log_pseudolikelihood` with respect to ``theta`` (pack order), in
    closed form (:func:`bayes_ising.core.pseudolikelihood.value_and_grad`):
    :math:`\partial/\partial h_i = \sum_u c_u (s_{ui} - \tanh H_{ui})`,
    :math:`\partial/\partial J_{ij} = \sum_u c_u [(s_{ui} - \tanh H_{ui}) s_{uj} +
    (s_{uj} - \tanh H_{uj}) s_{ui}]` for i<j. Returns an array of shape (N + N(N−1)/2,).
    """
    from bayes_ising.core import pseudolikelihood as pl

    h = jnp.asarray(h)
    dtype = jnp.result_type(h.dtype, jnp.float32)
    theta = pack(h.astype(dtype), jnp.asarray(J, dtype))
    return pl.value_and_grad(theta, pl.prepare(patterns, counts))[1].astype(dtype)


# --------------------------------------------------------------------------------------------
# Fisher information and thermodynamics
# --------------------------------------------------------------------------------------------


def _states_from_codes(codes, num_neurons, dtype):
    shifts = jnp.arange(num_neurons - 1, -1, -1)
    return (2 * ((codes[:, None] >> shifts[None, :]) & 1) - 1).astype(dtype)


def sufficient_features(spins, potential=False):
    r"""Sufficient statistics of each state, (S, P): :math:`(s_i;\ s_i s_j\ [i<j])` in
    :func:`pack` order and, with ``potential`` (the K-pairwise model,
    :mod:`bayes_ising.core.kpairwise`), the indicators :math:`[K(s) = k]`, k = 1..N, the
    statistics of V(1..N) (V(0) = 0 is fixed). Works on numpy and JAX arrays."""
    xp = jnp if isinstance(spins, jax.Array) else np
    num_neurons = spins.shape[-1]
    i, j = pair_indices(num_neurons)
    parts = [spins, spins[:, i] * spins[:, j]]
    if potential:
        k = xp.sum(spins > 0, axis=1)
        parts.append((k[:, None] == xp.arange(1, num_neurons + 1)[None, :]).astype(spins.dtype))
    return xp.concatenate(parts, axis=1)


@functools.partial(jax.jit, static_argnames=("chunk", "potential"))
def _fisher_kernel(h, J, V, log_z, mean_features, chunk, potential):
    """Σ_s P(s) (f(s) − f̄)(f(s) − f̄)ᵀ over all 2^N states in chunks; P ∝ exp(−E + V(K))
    (V = 0: the pairwise model), f = :func:`sufficient_features`."""
    num_neurons = h.shape[0]
    dtype = h.dtype
    num_params = mean_features.shape[0]
    num_chunks = 2**num_neurons // chunk

    def accumulate(total, chunk_index):
        codes = chunk_index * chunk + jnp.arange(chunk)
        s = _states_from_codes(codes, num_neurons, dtype)
        prob = jnp.exp(-energy(s, h, J) + V[jnp.sum(s > 0, axis=1)] - log_z)
        features = sufficient_features(s, potential) - mean_features
        return total + features.T @ (prob[:, None] * features), None

    total, _ = jax.lax.scan(
        accumulate, jnp.zeros((num_params, num_params), dtype), jnp.arange(num_chunks)
    )
    return total


def _fisher_chunk(num_neurons, num_params):
    """States per chunk: one chunk's features near ``_FISHER_CHUNK_BYTES``."""
    rows = max(1, _FISHER_CHUNK_BYTES // (8 * num_params))
    return min(2**num_neurons, 2 ** int(math.floor(math.log2(rows))))


def fisher_information(h, J):
    r"""Exact Fisher information of one bin: the covariance of the sufficient statistics,

    .. math:: F = \mathrm{Cov}_{P}\big[f(s)\big], \quad f(s) = (s_i;\ s_i s_j\ [i<j]),

    in :func:`pack` order, shape (P, P) with P = N + N(N−1)/2; equal to the Hessian of
    :math:`\log Z` in ``theta``. Computed by weighted enumeration in chunks of states (centred
    features, so no cancellation), keeping one chunk's features near 64 MiB. Cost
    :math:`2^N P^2`: seconds at N = 15, minutes near N = 20. The K-pairwise model's is
    :func:`bayes_ising.core.kpairwise.fisher_information` (the same kernel).
    """
    h, J = _as_params(h, J)
    num_neurons = h.shape[0]
    check_exact(num_neurons, "fisher_information")
    num_params = num_neurons + num_pairs(num_neurons)
    m, Q, log_z = _moments_kernel(h, J)
    i, j = pair_indices(num_neurons)
    return _fisher_kernel(h, J, jnp.zeros(num_neurons + 1, h.dtype), log_z,
                          jnp.concatenate([m, Q[i, j]]),
                          _fisher_chunk(num_neurons, num_params), False)


@jax.jit
def _energy_moments_kernel(h, J, temperatures):
    neg_energy, _, _ = _neg_energy_matrix(h, J)
    energies = -neg_energy.ravel()
    # Shift by the ground state so exp never overflows at low T.
    ground = jnp.min(energies)
    shifted = energies - ground

    def one(temperature):
        log_w = -shifted / temperature
        w = jnp.exp(log_w - logsumexp(log_w))
        mean = w @ shifted
        var = w @ (shifted - mean) ** 2
        return mean + ground, var

    return jax.lax.map(one, temperatures)


def exact_energy_moments(h, J, temperatures):
    r"""Mean and variance of E under :math:`P_T(s) \propto e^{-E(s)/T}`, exact.

    Parameters
    ----------
    h, J : model (T = 1 is the fitted model)
    temperatures : (K,) positive

    Returns
    -------
    mean_energy : (K,) :math:`\langle E\rangle_T`
    var_energy : (K,) :math:`\mathrm{Var}_T(E)`; the heat capacity is
        :math:`C(T) = \mathrm{Var}_T(E)/T^2` (Zanoci et al. 2019).
    """
    h, J = _as_params(h, J)
    check_exact(h.shape[0], "exact_energy_moments")
    temperatures = jnp.atleast_1d(jnp.asarray(temperatures, h.dtype))
    if temperatures.ndim != 1:
        raise ValueError(f"temperatures must be 1-D, got shape {temperatures.shape}")
    if not isinstance(temperatures, jax.core.Tracer) and np.any(np.asarray(temperatures) <= 0):
        raise ValueError(f"temperatures must be positive, got {np.asarray(temperatures)}")
    return _energy_moments_kernel(h, J, temperatures)
