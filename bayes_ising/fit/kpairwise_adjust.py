r"""Curvature adjustment of the K-pairwise pseudo-posterior (Bouranis, Friel & Maire 2017).

The pairwise path's adjustment (:mod:`bayes_ising.fit.bayes`, ``adjust``) for the parameters
θ = (h, J_{i<j}, V(1..N)) of :mod:`bayes_ising.fit.kpairwise_fit` (V(0) = 0). Draws θ of the
pseudo-posterior with mode :math:`\hat\theta_{PL}` are mapped to

.. math:: \theta' = \hat\theta_c + W(\theta - \hat\theta_{PL}), \qquad
    W \Sigma_{PL} W^\top = \Sigma_F,

:math:`\Sigma_{PL} = (H_{PL} + \Lambda)^{-1}` (H_PL = −∇² log PL at the mode, by autodiff of
:func:`bayes_ising.core.pseudolikelihood.log_pseudolikelihood_kpairwise`) and
:math:`\Sigma_F = (T F(\hat\theta_c) + \Lambda)^{-1}`, F the Fisher information of one bin —
the covariance of the sufficient statistics (s_i, s_i s_j, [K = k]) — exact by enumeration
for N ≤ 22 (:func:`bayes_ising.core.kpairwise.fisher_information`), else from K-pairwise Gibbs
samples (:func:`bayes_ising.fit.bayes._fisher_from_samples`). Λ is the prior precision:
diagonal for h and J, tridiagonal for V (the random walk V(k) − V(k−1) ~ N(0, v_scale):
:math:`\Lambda_V = D^\top D / v_{scale}^2`, D the first-difference matrix with V(0) = 0).
W = L_F L_PL⁻¹ (:func:`bayes_ising.fit.bayes._curvature_transform`).

``adjust``: ``"curvature"`` — centre :math:`\hat\theta_c = \hat\theta_{PL}`;
``"mode+curvature"`` (N ≤ 22) — centre the exact-likelihood MAP, found by L-BFGS from the
pseudo-MAP. **Validity gate**: the centre's model (exact moments for N ≤ 22, Gibbs samples
above) must reproduce the data's means, connected correlations and P(K)
(:func:`bayes_ising.fit.kpairwise_fit.centre_model_check`), and the adjustment must change the
median sd by less than :data:`bayes_ising.fit.bayes.SD_RATIO_LIMIT` either way; the tree
records both (``model_check``, ``adjust_info``) and ``intervals`` says "adjusted" or why not
valid; :func:`bayes_ising.analysis.diagnostics.posterior_validity` reads them.
"""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np

from bayes_ising.core import ising, kpairwise
from bayes_ising.core import pseudolikelihood as pl

__all__ = ["K_PAIRWISE_ADJUSTMENTS", "prior_precision", "pseudo_map", "exact_map",
           "adjust_draws"]

#: the adjustments offered for K-pairwise pseudo-posteriors ("mode" alone is not: the
#: pseudo-posterior's width is the known fault)
K_PAIRWISE_ADJUSTMENTS = ("none", "curvature", "mode+curvature")


def prior_precision(num_neurons, h_scale, j_scale, v_scale):
    r"""Λ (P, P) of the K-pairwise priors in θ order: :math:`h_{scale}^{-2}` on h,
    :math:`j_{scale}^{-2}` on J, :math:`D^\top D / v_{scale}^2` on V(1..N) (module
    docstring)."""
    pairs = ising.num_pairs(num_neurons)
    difference = np.eye(num_neurons) - np.eye(num_neurons, k=-1)  # (DV)_k = V(k) − V(k−1)
    size = 2 * num_neurons + pairs
    out = np.zeros((size, size))
    out[:num_neurons, :num_neurons] = np.eye(num_neurons) / h_scale**2
    out[num_neurons:num_neurons + pairs, num_neurons:num_neurons + pairs] = (
        np.eye(pairs) / j_scale**2)
    out[-num_neurons:, -num_neurons:] = difference.T @ difference / v_scale**2
    return out


def _prior_mean(num_neurons, h_mean):
    return np.concatenate([np.full(num_neurons, float(h_mean)),
                           np.zeros(ising.num_pairs(num_neurons) + num_neurons)])


def _unpack(theta, num_neurons):
    from bayes_ising.fit.kpairwise_fit import unpack

    return unpack(theta, num_neurons, "k_pairwise")


#: an optimum is accepted when its Newton decrement λ² = gᵀH⁻¹g of the total negative log
#: posterior is below this: the remaining gain in log density, far below its posterior spread
#: (λ is the distance to the optimum in posterior-sd units, here < 1e-4)
MAX_NEWTON_DECREMENT = 1e-8


def _minimise(total, num_bins, hessian, theta0, max_iterations, gtol, num_newton=8):
    r"""Minimise a total negative log posterior: L-BFGS (:func:`bayes_ising.fit.mle._lbfgs`)
    on total/T (``num_bins``), then Newton steps θ ← θ − H⁻¹g with the total Hessian
    ``hessian(θ)`` (P, P) until the Newton decrement :math:`\lambda^2 = g^\top H^{-1} g` ≤
    :data:`MAX_NEWTON_DECREMENT` (the flat V directions make L-BFGS slow to finish; Newton
    finishes it). Returns (θ, converged, H at θ)."""
    from bayes_ising.fit.mle import _lbfgs

    value_and_grad = jax.jit(jax.value_and_grad(lambda t: total(t) / num_bins))
    theta, _, _, _ = _lbfgs(value_and_grad, theta0, max_iterations, gtol)
    theta = np.asarray(theta, np.float64)
    for _ in range(num_newton):
        matrix = np.asarray(hessian(theta), np.float64)
        gradient = np.asarray(value_and_grad(jnp.asarray(theta))[1]) * num_bins
        step = np.linalg.solve(matrix, gradient)
        if float(gradient @ step) <= MAX_NEWTON_DECREMENT:
            return theta, True, matrix
        theta = theta - step
    return theta, False, np.asarray(hessian(theta), np.float64)


def pseudo_map(patterns, counts, theta0, precision, mean, *, max_iterations=300, gtol=1e-8):
    r"""Mode of the pseudo-posterior: minimises :math:`[-\log PL(\theta) + \tfrac12
    (\theta-\mu)^\top\Lambda(\theta-\mu)] / T` from ``theta0``. Returns (θ̂_PL, converged,
    H_PL = −∇² log PL at θ̂_PL (without the prior))."""
    data = pl.prepare(np.asarray(patterns), np.asarray(counts, np.float64))
    num_bins = float(np.sum(counts))
    num_neurons = np.asarray(patterns).shape[1]
    precision, mean = jnp.asarray(precision), jnp.asarray(mean)

    def neg_log_pl(theta):
        return -pl.log_pseudolikelihood_kpairwise(*_unpack(theta, num_neurons), data)

    def total(theta):
        delta = theta - mean
        return neg_log_pl(theta) + 0.5 * delta @ precision @ delta

    hessian_pl = jax.jit(jax.hessian(neg_log_pl))
    theta, converged, matrix = _minimise(
        total, num_bins, lambda t: np.asarray(hessian_pl(jnp.asarray(t))) + precision,
        theta0, max_iterations, gtol)
    return theta, converged, matrix - np.asarray(precision)


def exact_map(spins, theta0, precision, mean, *, max_iterations=300, gtol=1e-9):
    r"""Mode of the exact K-pairwise posterior (N ≤ 22): minimises :math:`[-\log L(\theta) +
    \tfrac12(\theta-\mu)^\top\Lambda(\theta-\mu)] / T`
    (:func:`bayes_ising.core.kpairwise.exact_log_likelihood`) from ``theta0``. Returns
    (θ̂, converged)."""
    num_neurons = np.asarray(spins).shape[1]
    ising.check_exact(num_neurons, "kpairwise_adjust.exact_map")
    suff = kpairwise.sufficient_statistics(spins)
    precision, mean = jnp.asarray(precision), jnp.asarray(mean)

    def total(theta):
        delta = theta - mean
        return (-kpairwise.exact_log_likelihood(*_unpack(theta, num_neurons), suff)
                + 0.5 * delta @ precision @ delta)

    def hessian(theta):  # T F(θ) + Λ: the likelihood's Hessian is T times the Fisher matrix
        h, J, V = _unpack(jnp.asarray(theta), num_neurons)
        return suff.num_bins * np.asarray(kpairwise.fisher_information(h, J, V)) + precision

    theta, converged, _ = _minimise(total, suff.num_bins, hessian, theta0, max_iterations,
                                    gtol)
    return theta, converged


def _fisher(rng_key, theta, num_neurons, num_samples):
    """Fisher information of one bin at θ: exact (N ≤ 22) or from Gibbs samples."""
    from bayes_ising.fit.bayes import _fisher_from_samples

    h, J, V = (np.asarray(x) for x in _unpack(jnp.asarray(theta), num_neurons))
    if num_neurons <= ising.MAX_EXACT_NEURONS:
        return np.asarray(kpairwise.fisher_information(h, J, V)), "exact (enumeration)"
    return (_fisher_from_samples(rng_key, h, J, num_samples, V=V),
            f"K-pairwise Gibbs samples ({num_samples})")


def _flat(draws):
    """dict of (chain, draw, ...) h, J, V → θ (chain, draw, P)."""
    i, j = ising.pair_indices(draws["h"].shape[-1])
    return np.concatenate([draws["h"], draws["J"][..., i, j], draws["V"][..., 1:]], axis=-1)


def _unflat(theta, num_neurons):
    """θ (chain, draw, P) → dict of h, J (symmetric), V (V(0) = 0)."""
    pairs = ising.num_pairs(num_neurons)
    i, j = ising.pair_indices(num_neurons)
    J = np.zeros(theta.shape[:-1] + (num_neurons, num_neurons))
    J[..., i, j] = theta[..., num_neurons:num_neurons + pairs]
    J[..., j, i] = theta[..., num_neurons:num_neurons + pairs]
    V = np.concatenate([np.zeros(theta.shape[:-1] + (1,)), theta[..., -num_neurons:]], axis=-1)
    return {"h": theta[..., :num_neurons], "J": J, "V": V}


def adjust_draws(rng_key, draws, spins, *, adjust, h_mean, h_scale, j_scale, v_scale,
                 num_fisher_samples=50_000):
    """Map pseudo-posterior draws (dict of (chain, draw, ...) h, J, V) through the adjustment
    (module docstring) and gate the result. Returns (adjusted draws dict, attrs dict:
    ``adjust``, ``intervals``, ``adjust_info`` and ``model_check`` as JSON strings)."""
    from bayes_ising.fit import bayes
    from bayes_ising.fit.kpairwise_fit import centre_model_check

    if adjust not in K_PAIRWISE_ADJUSTMENTS[1:]:
        raise ValueError(f"adjust must be one of {K_PAIRWISE_ADJUSTMENTS[1:]}, got {adjust!r}")
    spins = np.asarray(spins)
    num_bins, num_neurons = spins.shape
    if adjust == "mode+curvature" and num_neurons > ising.MAX_EXACT_NEURONS:
        raise ValueError(f"adjust='mode+curvature' centres on the exact MAP (N <= "
                         f"{ising.MAX_EXACT_NEURONS}); N = {num_neurons}: use 'curvature'")
    key_fisher, key_check = jax.random.split(rng_key)
    precision = prior_precision(num_neurons, h_scale, j_scale, v_scale)
    mean = _prior_mean(num_neurons, h_mean)
    theta = _flat(draws)
    patterns, counts = np.unique(spins.astype(np.int8), axis=0, return_counts=True)
    theta_pl, pl_converged, neg_hess_pl = pseudo_map(
        patterns, counts, theta.reshape(-1, theta.shape[-1]).mean(axis=0), precision, mean)
    info = {"adjust": adjust, "pseudo_map_converged": pl_converged,
            "centre": "pseudo-posterior MAP", "centre_converged": pl_converged}
    centre = theta_pl
    if adjust == "mode+curvature":
        centre, converged = exact_map(spins, theta_pl, precision, mean)
        info.update(centre="exact-likelihood MAP (enumeration)", centre_converged=converged)
    fisher, info["fisher"] = _fisher(key_fisher, centre, num_neurons, num_fisher_samples)
    transform, sd_ratio = bayes._curvature_transform(neg_hess_pl, fisher, num_bins, precision)
    adjusted = bayes._apply_map(theta, (theta_pl, centre, transform))
    pairs = ising.num_pairs(num_neurons)
    groups = {"h": sd_ratio[:num_neurons], "J": sd_ratio[num_neurons:num_neurons + pairs],
              "V": sd_ratio[-num_neurons:]}
    info.update(sd_ratio_median=float(np.median(sd_ratio)), sd_ratio_limit=bayes.SD_RATIO_LIMIT,
                sd_ratio={g: {"median": float(np.median(r)), "min": float(r.min()),
                              "max": float(r.max())} for g, r in groups.items()})
    h_c, J_c, V_c = (np.asarray(x) for x in _unpack(jnp.asarray(centre), num_neurons))
    check = centre_model_check(key_check, h_c, J_c, V_c, spins)
    return _unflat(adjusted, num_neurons), _labels(adjust, info, check)


def _labels(adjust, info, check):
    """The tree attributes of an adjusted fit: the gate's verdict in ``intervals``."""
    from bayes_ising.fit.bayes import SD_RATIO_LIMIT

    ratio = info["sd_ratio_median"]
    problems = []
    if not check["passed"]:
        problems.append("the centre fails its model check")
    if not 1 / SD_RATIO_LIMIT <= ratio <= SD_RATIO_LIMIT:
        problems.append(f"median sd ratio {ratio:.2f} outside [1/{SD_RATIO_LIMIT:g}, "
                        f"{SD_RATIO_LIMIT:g}]")
    if not info["centre_converged"]:
        problems.append("the centre's optimiser did not converge")
    intervals = ("adjusted" if not problems else
                 "adjusted, NOT valid: " + "; ".join(problems))
    return {"adjust": adjust, "intervals": intervals, "adjust_info": json.dumps(info),
            "model_check": json.dumps(check)}
