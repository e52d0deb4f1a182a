r"""The pseudolikelihood of the pairwise Ising model, in one place (Besag 1975; Aurell & Ekeberg
2012): its value, gradient and Hessian in closed form, over unique patterns with counts.

Model and conventions as in :mod:`bayes_ising.core.ising`: :math:`E(s) = -\sum_i h_i s_i -
\sum_{i<j} J_{ij} s_i s_j`, spins ±1, :math:`H = h + sJ` the local fields (J symmetric, zero
diagonal), :math:`\theta = \mathrm{pack}(h, J)`. Since :math:`P(s_i \mid s_{\setminus i}) =
\sigma(2 s_i H_i)` and :math:`\log\sigma(2sH) = sH - \log 2\cosh H`,

.. math::

    \log\mathrm{PL} = \sum_u c_u \sum_i \log\sigma(2 s_{ui} H_{ui})
      = h\cdot a + \sum_{i\ne j} J_{ij} B_{ij} - \sum_u c_u \sum_i \log 2\cosh H_{ui},

with the sufficient sums :math:`a = \sum_u c_u s_u`, :math:`B = \sum_u c_u s_u s_u^\top`.
Only the log-cosh sum runs over patterns; it is one blocked, neuron-major sweep
(:func:`sum_log_2cosh`) with a fused gradient, so value+gradient costs the two matrix products
:math:`J s_b^\top` and :math:`(c\odot\tanh H_b)^\top s_b` per block and one exp, log and
division per entry. Vmapped over chains both products stay canonical GEMMs.

Everything that evaluates the pseudolikelihood goes through this module: the NumPyro models
and the MAP of :mod:`bayes_ising.fit.bayes`, :func:`bayes_ising.fit.mle.fit_pseudo` and
``restart_reliability``, :func:`bayes_ising.core.ising.log_pseudolikelihood`, the independent
model's log 2cosh in :mod:`bayes_ising.analysis.thermo`, and the K-pairwise model's pseudolikelihood
(:func:`log_pseudolikelihood_kpairwise`, used by :mod:`bayes_ising.fit.kpairwise_fit`).
"""

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

__all__ = [
    "BLOCK",
    "Patterns",
    "padded_size",
    "prepare",
    "log_2cosh",
    "sum_log_2cosh",
    "log_pseudolikelihood",
    "log_pseudolikelihood_kpairwise",
    "value_and_grad",
    "neg_hessian",
]

#: patterns per block of the sweep: a block's (chains·N, block) intermediates stay in a
#: core's cache (one pass over all U patterns at once was memory-bound)
BLOCK = 2048


class Patterns(NamedTuple):
    r"""Unique patterns with counts, padded with zero rows of zero count to K whole blocks,
    and the count-weighted sums :math:`a = \sum_u c_u s_u`, :math:`B = \sum_u c_u s_u
    s_u^\top` (float64). A pytree: pass it to jitted functions as an argument."""

    patterns: object  # (U, N) ±1 float32, U = K · block
    patterns_t: object  # (K, N, block): the same, transposed block by block
    counts: object  # (U,) float64, zero on padding rows
    sum_s: object  # (N,) a
    sum_ss: object  # (N, N) B


def padded_size(num_unique, num_neurons, num_rows=None):
    """Rows after padding: at least ``num_rows``; 2^N for N ≤ 12 (all datasets of one small N
    share a shape); else a size class (multiples of 1/16 of the enclosing power of two, so at
    most 1/16 wasted) rounded up to whole blocks. Equal sizes share one compilation."""
    num = max(int(num_unique), int(num_rows or 0), 1)
    if num_neurons <= 12:
        num = max(num, 2**num_neurons)
    else:
        step = max(256, 2 ** max(math.floor(math.log2(num)) - 4, 0))
        num = step * math.ceil(num / step)
    block = min(num, BLOCK)
    return block * math.ceil(num / block)


def prepare(patterns, counts=None, *, num_rows=None):
    """:class:`Patterns` from unique (or repeated) ±1 patterns (U, N) and counts (U,)
    (default one each); ``num_rows`` pads to at least that many rows (e.g. the largest U of
    several states, so that their fits share one compiled program). Traceable (shapes are
    static), so it also runs inside jitted functions."""
    num_unique, num_neurons = patterns.shape
    wide = jnp.result_type(float)
    s = jnp.asarray(patterns, wide)
    counts = jnp.ones(num_unique, wide) if counts is None else jnp.asarray(counts, wide)
    size = padded_size(num_unique, num_neurons, num_rows)
    block = min(size, BLOCK)
    padded = jnp.pad(s.astype(jnp.float32), ((0, size - num_unique), (0, 0)))
    blocks_t = padded.reshape(size // block, block, num_neurons).transpose(0, 2, 1)
    weighted = counts[:, None] * s
    return Patterns(padded, blocks_t, jnp.pad(counts, (0, size - num_unique)),
                    weighted.sum(axis=0), s.T @ weighted)


def log_2cosh(x):
    r""":math:`\log(2\cosh x) = |x| + \log(1 + e^{-2|x|})`, elementwise, stable for any x
    (NumPy in, NumPy out; JAX in, JAX out)."""
    xp = np if isinstance(x, (np.ndarray, float, int)) else jnp
    magnitude = xp.abs(x)
    return magnitude + xp.log1p(xp.exp(-2.0 * magnitude))


def _block_terms(fields_t, c_b):
    r"""Per block: :math:`\sum_i \log 2\cosh H` per pattern (block,) and :math:`c\odot\tanh H`
    (N, block), from one exp, one log and one division per entry: with
    :math:`e = e^{-2|H|}`, :math:`r = 1/(1+e)`: :math:`\log 2\cosh H = |H| - \log r`,
    :math:`\tanh H = \mathrm{sign}(H)(2r - 1)`."""
    magnitude = jnp.abs(fields_t)
    r = 1.0 / (1.0 + jnp.exp(-2.0 * magnitude))
    per_pattern = jnp.sum(magnitude - jnp.log(r), axis=0)
    weighted_tanh = jnp.sign(fields_t) * (2.0 * r - 1.0) * c_b[None, :]
    return per_pattern, weighted_tanh


@jax.custom_vjp
def sum_log_2cosh(h, J, s, s_t, counts):
    r""":math:`K = \sum_u c_u \sum_i \log(2\cosh H_{ui})`, :math:`H = h + sJ`, with the
    gradient :math:`\partial_h K = \sum_u c_u \tanh H_u`, :math:`\partial_{J_{ki}} K = \sum_u
    c_u s_{uk} \tanh H_{ui}` fused into the same sweep over blocks (``s`` (U, N), ``s_t``
    (K, N, block), ``counts`` (U,)).

    Per block, neuron-major: :math:`H_b^\top = h + J s_b^\top` (N, block) and
    :math:`G \mathrel{+}= (c\odot\tanh H_b)^\top s_b`. Sums are accumulated in the widest
    float enabled, whatever the dtype of ``h`` (float32 allowed).
    """
    return _sum_log_2cosh_fwd(h, J, s, s_t, counts)[0]


def _sum_log_2cosh_fwd(h, J, s, s_t, counts):
    num_blocks, num_neurons, block = s_t.shape
    wide = jnp.result_type(float)

    def sweep(carry, blocks):
        value, grad_h, grad_J = carry
        s_b, s_t_b, c_b = blocks
        per_pattern, weighted_tanh = _block_terms(h[:, None] + J.T @ s_t_b, c_b)
        return (value + per_pattern.astype(wide) @ c_b.astype(wide),
                grad_h + jnp.sum(weighted_tanh, axis=1).astype(wide),
                grad_J + (weighted_tanh @ s_b).astype(wide)), None

    init = (jnp.zeros((), wide), jnp.zeros(num_neurons, wide),
            jnp.zeros((num_neurons, num_neurons), wide))
    blocks = (s.reshape(num_blocks, block, num_neurons), s_t,
              counts.reshape(num_blocks, block))
    (value, grad_h, grad_J), _ = jax.lax.scan(sweep, init, blocks)
    return value, (grad_h, grad_J.T, s, s_t, counts)  # grad_J[i, k] accumulated as ∂/∂J_ki


def _sum_log_2cosh_bwd(residuals, g):
    grad_h, grad_J, s, s_t, counts = residuals
    return ((g * grad_h).astype(s.dtype), (g * grad_J).astype(s.dtype), jnp.zeros_like(s),
            jnp.zeros_like(s_t), jnp.zeros_like(counts))


sum_log_2cosh.defvjp(_sum_log_2cosh_fwd, _sum_log_2cosh_bwd)


def log_pseudolikelihood(h, J, data, float32=False):
    r""":math:`\log\mathrm{PL} = h\cdot a + \sum_{i\ne j} J_{ij}B_{ij} - \sum_u c_u \sum_i
    \log 2\cosh H_{ui}` for ``data`` a :class:`Patterns`; h (N,), J (N, N) symmetric, zero
    diagonal. The linear part in the dtype of ``h`` (at least float32); the log-cosh sweep in
    float32 when ``float32`` (accumulated in the widest float). Differentiable (fused VJP)."""
    wide = jnp.result_type(jnp.asarray(h).dtype, jnp.float32)
    dtype = jnp.float32 if float32 else wide
    h, J = jnp.asarray(h, wide), jnp.asarray(J, wide)
    linear = h @ data.sum_s.astype(wide) + jnp.sum(J * data.sum_ss.astype(wide))
    log_cosh = sum_log_2cosh(h.astype(dtype), J.astype(dtype), data.patterns.astype(dtype),
                             data.patterns_t.astype(dtype), data.counts.astype(dtype))
    return linear - log_cosh.astype(wide)


def log_pseudolikelihood_kpairwise(h, J, V, data):
    r"""log PL of the K-pairwise model :math:`E = -h\cdot s - \sum_{i<j} J_{ij}s_is_j - V(K)`
    (:mod:`bayes_ising.core.kpairwise`) for ``data`` a :class:`Patterns`; V (N+1,).

    Flipping :math:`s_i` moves K between :math:`K_{-i}` and :math:`K_{-i}+1`
    (:math:`K_{-i}` = active neurons other than i), so the conditional keeps the logistic
    form with the field shifted by half the step of V:

    .. math:: \log P(s_i \mid s_{\setminus i}) = s_i\tilde H_i - \log 2\cosh\tilde H_i,
       \qquad \tilde H_i = h_i + (sJ)_i + \tfrac12\big[V(K_{-i}+1) - V(K_{-i})\big].

    V = 0 gives :func:`log_pseudolikelihood`. One blocked sweep over the patterns in the
    dtype of ``h`` (at least float32); differentiable by JAX autodiff (no fused VJP: the
    shift depends on each pattern's K)."""
    wide = jnp.result_type(jnp.asarray(h).dtype, jnp.float32)
    h, J, V = (jnp.asarray(x, wide) for x in (h, J, V))
    num_blocks, num_neurons, block = data.patterns_t.shape

    def sweep(total, blocks):
        s_b, c_b = blocks
        s_b = s_b.astype(wide)
        active = (s_b > 0).astype(jnp.int32)
        k_rest = jnp.sum(active, axis=1, keepdims=True) - active  # (block, N), ≤ N − 1
        fields = h + s_b @ J + 0.5 * (V[k_rest + 1] - V[k_rest])
        per_pattern = jnp.sum(s_b * fields - log_2cosh(fields), axis=1)
        return total + per_pattern @ c_b.astype(wide), None

    blocks = (data.patterns.reshape(num_blocks, block, num_neurons),
              data.counts.reshape(num_blocks, block))
    total, _ = jax.lax.scan(sweep, jnp.zeros((), wide), blocks)
    return total


def _pair_index(num_neurons):
    return np.triu_indices(num_neurons, 1)  # == ising.pair_indices (row-major i < j)


def value_and_grad(theta, data, float32=False):
    r"""log PL and its gradient in :math:`\theta = (h, J_{i<j})`, in closed form from one
    sweep: :math:`\nabla_h = a - \sum_u c_u\tanh H_u`, :math:`\nabla_{J_{ij}} = 2B_{ij} -
    G_{ij} - G_{ji}` with :math:`G_{ki} = \sum_u c_u s_{uk}\tanh H_{ui}`. Returns
    (value (), grad (P,)), in the dtype of ``theta``."""
    num_neurons = data.sum_s.shape[0]
    wide = jnp.result_type(theta.dtype, jnp.float32)
    dtype = jnp.float32 if float32 else wide
    i, j = _pair_index(num_neurons)
    h = theta[:num_neurons].astype(wide)
    J = jnp.zeros((num_neurons, num_neurons), wide).at[i, j].set(theta[num_neurons:])
    J = J + J.T
    log_cosh, (tanh_h, G, *_) = _sum_log_2cosh_fwd(
        h.astype(dtype), J.astype(dtype), data.patterns.astype(dtype),
        data.patterns_t.astype(dtype), data.counts.astype(dtype))
    a, B = data.sum_s.astype(wide), data.sum_ss.astype(wide)
    value = h @ a + jnp.sum(J * B) - log_cosh.astype(wide)
    grad_h = a - tanh_h.astype(wide)
    grad_j = 2.0 * B[i, j] - (G + G.T).astype(wide)[i, j]
    return value, jnp.concatenate([grad_h, grad_j])


def _param_index(num_neurons):
    """idx[i, k]: position in theta of the coefficient of s_k in H_i (k = i → h_i)."""
    i, j = _pair_index(num_neurons)
    pair_id = np.zeros((num_neurons, num_neurons), dtype=np.int64)
    pair_id[i, j] = np.arange(i.size)
    pair_id[j, i] = np.arange(i.size)
    idx = num_neurons + pair_id
    idx[np.arange(num_neurons), np.arange(num_neurons)] = np.arange(num_neurons)
    return idx


def neg_hessian(theta, data):
    r"""−∇² log PL in θ, (P, P), in closed form from one pass over the patterns:

    .. math:: -\nabla^2 \log\mathrm{PL} = \sum_i X_i^\top \mathrm{diag}(w_{\cdot i}) X_i,
       \qquad w_{ui} = c_u\,\mathrm{sech}^2 H_{ui},

    where row u of :math:`X_i` holds 1 at h_i and :math:`s_{uk}` at J_ik (H_i is linear in θ).
    Per neuron i the weighted Gram matrix :math:`G_i = s^\top \mathrm{diag}(w_{\cdot i}) s`
    (all N of them as one (N², rows)·(rows, N) GEMM per block of rows), whose row and column
    i are then replaced by :math:`(w^\top s)_{i\cdot}` (the feature of h_i is 1, not s_i);
    cost :math:`U N^3`, memory :math:`N^3 + P^2`; scattered into θ's order at the end.
    """
    num_neurons = data.sum_s.shape[0]
    dtype = theta.dtype
    i, j = _pair_index(num_neurons)
    h = theta[:num_neurons]
    J = jnp.zeros((num_neurons, num_neurons), dtype).at[i, j].set(theta[num_neurons:])
    J = J + J.T
    rows = data.patterns.shape[0]
    block = math.gcd(rows, 512)
    s_all = data.patterns.astype(dtype).reshape(rows // block, block, num_neurons)
    c_all = data.counts.astype(dtype).reshape(rows // block, block)

    def sweep(carry, blocks):
        gram, first = carry
        s_b, c_b = blocks
        weights = c_b[:, None] * (1.0 - jnp.tanh(h + s_b @ J) ** 2)  # (block, N)
        products = (weights[:, :, None] * s_b[:, None, :]).reshape(block, -1)  # (block, N·N)
        gram = gram + (products.T @ s_b).reshape((num_neurons,) * 3)
        return (gram, first + weights.T @ s_b), None

    zeros = jnp.zeros((num_neurons,) * 3, dtype), jnp.zeros((num_neurons,) * 2, dtype)
    (gram, first), _ = jax.lax.scan(sweep, zeros, (s_all, c_all))
    n = jnp.arange(num_neurons)
    diagonal = gram[n, n, n]  # Σ_u w_ui · 1 · 1 (s_ui² = 1): already right
    gram = gram.at[n, n, :].set(first).at[n, :, n].set(first).at[n, n, n].set(diagonal)
    idx = jnp.asarray(_param_index(num_neurons))
    hess = jnp.zeros((theta.shape[0],) * 2, dtype)
    return hess.at[idx[:, :, None], idx[:, None, :]].add(gram)
