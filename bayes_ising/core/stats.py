"""Empirical statistics of a spin raster.

All functions take ``spins`` of shape ``(T, N)`` with values in {−1, +1} (NumPy or JAX arrays;
computed in NumPy float64) and are safe for neurons that never or always fire: a constant
neuron has m = ±1, C = 0 with everyone, never NaN.

.. math::
    m_i = ⟨s_i⟩,\\quad Q_{ij} = ⟨s_i s_j⟩,\\quad C_{ij} = Q_{ij} − m_i m_j,\\quad
    p_i = (1 + m_i)/2,\\quad K(t) = \\#\\{i : s_i(t) = +1\\}.

Entropies are in nats.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from bayes_ising.errors import DataError

__all__ = [
    "Moments",
    "EntropyEstimate",
    "check_spins",
    "moments",
    "connected_correlations",
    "firing_probability",
    "probability_from_mean",
    "pair_probability",
    "independent_fields",
    "synchrony",
    "synchrony_distribution",
    "unique_patterns",
    "third_order_correlations",
    "connected_pairs",
    "data_standard_errors",
    "entropy_plugin",
    "entropy_miller_madow",
    "data_entropy",
    "summarize",
    "RELIABLE_MAX_SINGLETON_FRACTION",
    "RELIABLE_MAX_PATTERN_FRACTION",
]

#: the entropy of the data is trusted only if at most this fraction of bins hold a pattern
#: seen once (Good–Turing coverage 1 − n1/T ≥ 0.95) ...
RELIABLE_MAX_SINGLETON_FRACTION = 0.05
#: ... and the number of distinct patterns is at most this fraction of the bins (U ≪ T).
RELIABLE_MAX_PATTERN_FRACTION = 0.1


def _spins(spins):
    s = np.asarray(spins)
    if s.ndim != 2:
        raise DataError(f"spins must be 2-D (bins x neurons), got shape {s.shape}")
    if s.shape[0] == 0:
        raise DataError("spins have zero bins")
    return s


def check_spins(spins, min_neurons=1):
    """Validate a ``(num_bins, N)`` array of ±1 spins and return it as int8.

    Raises
    ------
    DataError
        Not 2-D, no bins, fewer than ``min_neurons`` columns, or values other than ±1 (0/1
        rasters are converted, explicitly, by :func:`bayes_ising.data.to_spins`).
    """
    s = _spins(spins)
    if s.shape[1] < min_neurons:
        raise DataError(f"spins must have at least {min_neurons} neuron(s), got shape {s.shape}")
    values = np.unique(s)
    if not np.all(np.isin(values, (-1, 1))):
        raise DataError(f"spins must be ±1 (got values {values[:5].tolist()}); convert 0/1 "
                        "rasters with bayes_ising.data.to_spins")
    return s.astype(np.int8)


@dataclass(frozen=True, eq=False)
class Moments:
    """Sufficient statistics of the pairwise model: T, m (N,), Q (N, N) with unit diagonal."""

    num_bins: int
    m: np.ndarray  # (N,) float64
    Q: np.ndarray  # (N, N) float64, symmetric, Q_ii = 1


def moments(spins) -> Moments:
    """m_i = ⟨s_i⟩ and Q_ij = ⟨s_i s_j⟩ over bins; ``Moments(T, m, Q)``."""
    s = _spins(spins).astype(np.float64)
    t = s.shape[0]
    m = s.mean(axis=0)
    q = (s.T @ s) / t
    q = 0.5 * (q + q.T)
    np.fill_diagonal(q, 1.0)
    return Moments(num_bins=int(t), m=m, Q=q)


def connected_correlations(spins) -> np.ndarray:
    """C = Q − m mᵀ, shape (N, N) (diagonal 1 − m_i², the variance of s_i)."""
    mo = moments(spins)
    return mo.Q - np.outer(mo.m, mo.m)


def firing_probability(spins) -> np.ndarray:
    """p_i = (1 + m_i)/2 = fraction of bins where neuron i fired, shape (N,)."""
    return (_spins(spins) == 1).mean(axis=0)


def _float_array(x):
    """``x`` as a float64 NumPy array; JAX arrays (and tracers) pass through unchanged, so the
    formulas below also run inside jitted code."""
    if type(x).__module__.partition(".")[0] in ("jax", "jaxlib"):
        return x
    return np.asarray(x, dtype=np.float64)


def probability_from_mean(m):
    """Firing probability of a ±1 spin from its mean: p = (1 + m)/2 (any shape; NumPy or
    JAX)."""
    return (1.0 + _float_array(m)) / 2.0


def pair_probability(m, Q, a=1, b=1):
    r"""Joint probability :math:`P(s_i = a, s_j = b) = (1 + a m_i + b m_j + a b Q_{ij})/4` of
    ±1 spins from their means m (N,) and pair moments Q (N, N); returns (N, N) (NumPy or JAX;
    the diagonal is meaningless). With a = b = +1: the 0/1 pair moment ⟨x_i x_j⟩."""
    m, Q = _float_array(m), _float_array(Q)
    return (1.0 + a * m[:, None] + b * m[None, :] + a * b * Q) / 4.0


def independent_fields(m, num_bins):
    r"""Fields of the independent model (J = 0) matching the means m (N,):
    :math:`h_i = \operatorname{atanh} m_i`.

    One clip rule: a neuron that never (always) fires would need h = ∓∞, so its firing
    probability is clipped to half a count, [1/(2T), 1 − 1/(2T)] with T = ``num_bins``, i.e.
    m to [−1 + 1/T, 1 − 1/T]. Active neurons (0 < count < T, so |m| ≤ 1 − 2/T) are never
    clipped: for them this is the exact closed-form MLE.
    """
    bound = 1.0 - 1.0 / float(num_bins)
    return np.arctanh(np.clip(np.asarray(m, dtype=np.float64), -bound, bound))


def synchrony(spins) -> np.ndarray:
    """K(t) = #{i : s_i(t) = +1}, shape (T,) int64."""
    return (_spins(spins) == 1).sum(axis=1).astype(np.int64)


def synchrony_distribution(spins) -> np.ndarray:
    """P(K) for K = 0..N, shape (N + 1,), sums to 1."""
    s = _spins(spins)
    k = synchrony(s)
    return np.bincount(k, minlength=s.shape[1] + 1) / s.shape[0]


def unique_patterns(spins):
    """Distinct rows and their multiplicities.

    Returns
    -------
    patterns : (U, N) int8 ±1, ordered by decreasing count (ties: lexicographic on the bits)
    counts : (U,) int64, summing to T

    Rows are packed to bytes first, so this costs O(T log T) comparisons of N/8 bytes.
    """
    s = _spins(spins)
    t, n = s.shape
    if n == 0:
        return np.zeros((1, 0), np.int8), np.array([t], np.int64)
    packed = np.packbits(s == 1, axis=1)  # (T, ceil(N/8)) uint8
    keys = np.ascontiguousarray(packed).view(np.dtype((np.void, packed.shape[1]))).reshape(-1)
    _, first, counts = np.unique(keys, return_index=True, return_counts=True)
    order = np.argsort(-counts, kind="stable")
    patterns = np.where(s[first[order]] == 1, 1, -1).astype(np.int8)
    return patterns, counts[order].astype(np.int64)


def third_order_correlations(spins, *, chunk_size=4096) -> np.ndarray:
    """Connected third-order correlations T_ijk = ⟨δs_i δs_j δs_k⟩, δs = s − m, (N, N, N).

    Computed over unique patterns weighted by their frequency, in chunks of ``chunk_size``
    patterns (memory chunk_size × N²).
    """
    s = _spins(spins)
    t, n = s.shape
    m = s.astype(np.float64).mean(axis=0)
    patterns, counts = unique_patterns(s)
    d = patterns.astype(np.float64) - m
    w = counts / t
    out = np.zeros((n, n * n))
    for lo in range(0, len(w), chunk_size):
        dc, wc = d[lo:lo + chunk_size], w[lo:lo + chunk_size]
        pair = (dc[:, :, None] * dc[:, None, :]).reshape(len(wc), n * n)
        out += (dc * wc[:, None]).T @ pair
    return out.reshape(n, n, n)


def _pair_indices(num_neurons):
    """:func:`bayes_ising.core.ising.pair_indices`, the one pair order (imported here, not at
    the top: core.ising imports JAX, and ``stats`` serves the quick CLI verbs)."""
    from bayes_ising.core.ising import pair_indices

    return pair_indices(num_neurons)


def connected_pairs(m, Q):
    """C_ij = Q_ij − m_i m_j for i<j: (..., P) from m (..., N) and Q (..., N, N)."""
    i, j = _pair_indices(m.shape[-1])
    return Q[..., i, j] - m[..., i] * m[..., j]


def data_standard_errors(spins, num_blocks=50):
    r"""Moments of the data and their standard errors (batch means over contiguous blocks).

    spins : (T, N) ±1. Returns dict with ``m`` (N,), ``C`` (P,) (i<j), ``se_m`` (N,), ``se_C``
    (P,), ``num_blocks``. Each SE is the larger of the batch-means value (sd over B blocks of
    the block estimates / √B: it includes the bins' autocorrelation) and the independent-bins
    value :math:`\mathrm{sd}(s_i)/\sqrt T`, resp. :math:`\mathrm{sd}((s_i-m_i)(s_j-m_j))/\sqrt T`.
    """
    s = np.asarray(spins, np.float64)
    num_bins, num_neurons = s.shape
    m = s.mean(axis=0)
    d = s - m
    Q = s.T @ s / num_bins
    C = connected_pairs(m, Q)
    i, j = _pair_indices(num_neurons)
    d2 = d * d
    var_C = np.maximum((d2.T @ d2 / num_bins)[i, j] - C**2, 0.0)
    se_m = np.sqrt(np.maximum(1.0 - m**2, 0.0) / num_bins)
    se_C = np.sqrt(var_C / num_bins)
    num_blocks = int(min(num_blocks, num_bins // 2))
    if num_blocks >= 2:
        length = num_bins // num_blocks
        blocks = s[: num_blocks * length].reshape(num_blocks, length, num_neurons)
        m_b = blocks.mean(axis=1)
        C_b = connected_pairs(m_b, np.einsum("bti,btj->bij", blocks, blocks) / length)
        se_m = np.maximum(se_m, m_b.std(axis=0, ddof=1) / math.sqrt(num_blocks))
        se_C = np.maximum(se_C, C_b.std(axis=0, ddof=1) / math.sqrt(num_blocks))
    return {"m": m, "C": C, "se_m": se_m, "se_C": se_C, "num_blocks": num_blocks,
            "activity": probability_from_mean(s).mean(axis=1)}


def entropy_plugin(counts) -> float:
    """Plug-in (maximum-likelihood) entropy −Σ p̂ log p̂, p̂ = c/T, in nats."""
    c = np.asarray(counts, dtype=np.float64)
    c = c[c > 0]
    if c.size == 0:
        raise DataError("entropy of zero observations")
    p = c / c.sum()
    return float(-(p * np.log(p)).sum())


def entropy_miller_madow(counts) -> float:
    """Miller–Madow bias-corrected entropy Ŝ_plugin + (U − 1)/(2T), nats (U observed patterns).

    Miller (1955): the plug-in estimator is biased low by about (U − 1)/(2T) to first order.
    """
    c = np.asarray(counts, dtype=np.float64)
    c = c[c > 0]
    return entropy_plugin(c) + (c.size - 1) / (2.0 * c.sum())


@dataclass(frozen=True)
class EntropyEstimate:
    """Entropy of the data (nats) with the information needed to judge it."""

    plugin: float
    miller_madow: float
    num_bins: int
    num_patterns: int
    reliable: bool
    note: str
    num_singletons: int = 0
    coverage: float = 1.0  # Good–Turing estimate 1 − n1/T of the probability mass observed

    def to_dict(self):
        return {
            "plugin_nats": self.plugin,
            "miller_madow_nats": self.miller_madow,
            "num_bins": self.num_bins,
            "num_patterns": self.num_patterns,
            "num_singletons": self.num_singletons,
            "coverage": self.coverage,
            "reliable": self.reliable,
            "note": self.note,
        }


def data_entropy(spins) -> EntropyEstimate:
    """Entropy S_N of the observed patterns: plug-in and Miller–Madow, with a reliability rule.

    Rule: the estimate is *reliable* when the Good–Turing coverage 1 − n1/T ≥ 0.95 (at most 5%
    of the bins hold a pattern seen only once) and the number of distinct patterns U ≤ T/10.
    Otherwise much of the probability mass lies on unseen patterns, both estimators are biased
    low by an unknown amount, and ``note`` says so. Miller–Madow only corrects the first-order
    bias (U − 1)/(2T), which is small only when the same rule holds.
    """
    patterns, counts = unique_patterns(spins)
    t = int(counts.sum())
    u = int(len(counts))
    n1 = int((counts == 1).sum())
    coverage = 1.0 - n1 / t
    plugin = entropy_plugin(counts)
    mm = entropy_miller_madow(counts)
    singleton_ok = n1 / t <= RELIABLE_MAX_SINGLETON_FRACTION
    pattern_ok = u <= RELIABLE_MAX_PATTERN_FRACTION * t
    reliable = bool(singleton_ok and pattern_ok)
    facts = (f"{u} distinct patterns in {t} bins, {n1} seen once "
             f"(Good-Turing coverage {coverage:.3f})")
    if reliable:
        note = (f"{facts}: the sample is large enough for the entropy estimate "
                f"(Miller-Madow correction {mm - plugin:.2g} nats)")
    else:
        why = []
        if not singleton_ok:
            why.append(f"more than {RELIABLE_MAX_SINGLETON_FRACTION:.0%} of bins hold a "
                       "pattern seen once")
        if not pattern_ok:
            why.append(f"distinct patterns exceed {RELIABLE_MAX_PATTERN_FRACTION:.0%} of bins")
        note = (f"{facts}: the sample is too small to trust the entropy estimate "
                f"({'; '.join(why)}); both estimators are biased low")
    return EntropyEstimate(plugin=plugin, miller_madow=mm, num_bins=t, num_patterns=u,
                           reliable=reliable, note=note, num_singletons=n1,
                           coverage=coverage)


def _quantiles(x):
    x = np.asarray(x, dtype=float)
    return {"min": float(x.min()), "median": float(np.median(x)), "max": float(x.max())}


def summarize(data) -> dict:
    """The data summary of a :class:`~bayes_ising.data.SpikeData` as a JSON-able dict.

    Keys: source, num_bins, num_neurons, bin_size, time_units, neuron_ids, cell_type_counts,
    state_bin_counts, selection, firing_probability {min, median, max, per_neuron},
    never_fire, always_fire, inactive_neurons, mean_pairwise_correlation (mean over i<j of the
    Pearson correlation, constant neurons counted as 0), mean_connected_correlation,
    synchrony {mean_K, max_K_observed, P_K}, num_unique_patterns, entropy {...}.
    """
    s = data.spins
    n = data.num_neurons
    p = firing_probability(s)
    mo = moments(s)
    c = mo.Q - np.outer(mo.m, mo.m)
    var = np.diag(c)
    denom = np.sqrt(np.outer(var, var))
    with np.errstate(invalid="ignore", divide="ignore"):
        r = np.where(denom > 0, c / np.where(denom > 0, denom, 1.0), 0.0)
    iu = np.triu_indices(n, 1)
    pk = synchrony_distribution(s)
    k = synchrony(s)
    ent = data_entropy(s)
    ids = data.neuron_ids.tolist()
    out = {
        "source": data.source,
        "num_bins": data.num_bins,
        "num_neurons": n,
        "bin_size": data.bin_size,
        "time_units": data.time_units,
        "neuron_ids": ids,
        "cell_type_counts": None,
        "state_bin_counts": None,
        "selection": dict(data.selection),
        "firing_probability": {**_quantiles(p), "per_neuron": dict(zip(ids, p.tolist(),
                                                                          strict=True))},
        "never_fire": [i for i, v in zip(ids, p, strict=True) if v == 0],
        "always_fire": [i for i, v in zip(ids, p, strict=True) if v == 1],
        "inactive_neurons": data.inactive_neurons.tolist(),
        "mean_pairwise_correlation": float(r[iu].mean()) if n > 1 else None,
        "mean_connected_correlation": float(c[iu].mean()) if n > 1 else None,
        "synchrony": {"mean_K": float(k.mean()), "max_K_observed": int(k.max()),
                      "P_K": pk.tolist()},
        "num_unique_patterns": ent.num_patterns,
        "entropy": ent.to_dict(),
    }
    if data.cell_types is not None:
        types, counts = np.unique(data.cell_types, return_counts=True)
        out["cell_type_counts"] = {str(t): int(c) for t, c in zip(types, counts, strict=True)}
        out["cell_types"] = data.cell_types.tolist()
    if data.states is not None:
        names, counts = np.unique(data.states, return_counts=True)
        out["state_bin_counts"] = {str(t): int(c) for t, c in zip(names, counts, strict=True)}
    return out
