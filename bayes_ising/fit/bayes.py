r"""Bayesian posteriors over the fields h and couplings J of the pairwise Ising model (NumPyro).

Model (one convention everywhere): :math:`P(s \mid h, J) = e^{-E(s)}/Z`,
:math:`E(s) = -\sum_i h_i s_i - \sum_{i<j} J_{ij} s_i s_j`; couplings are a flat vector in
:func:`bayes_ising.core.ising.pair_indices` order (dimension ``pair``).

Likelihoods
    * ``"exact"`` (N ≤ 22): :math:`\log L = T[\sum_i h_i m_i + \sum_{i<j} J_{ij} Q_{ij} -
      \log Z(h, J)]` — the data enter only through (T, m, Q); log Z by exact enumeration.
    * ``"pseudo"`` (any N): :math:`\log \mathrm{PL} = \sum_u c_u \sum_i \log\sigma(2 s_{ui}
      H_{ui})` over the unique patterns u with counts :math:`c_u` (Besag 1975), evaluated as
      :math:`h\cdot a + \sum_{i\ne j} J_{ij}B_{ij} - \sum_u c_u \sum_i \log 2\cosh H_{ui}`
      (sufficient sums a, B; a blocked, neuron-major sweep with a fused gradient;
      ``docs/sampler.md``).

Priors (:class:`~bayes_ising.fit.model_spec.ModelSpec`, packaged TOML specs loaded by name)
    :math:`h_i \sim \mathcal N(\mu_h, \sigma_h)`; :math:`J_{ij} \sim \mathcal N(0, \sigma_J)`, or
    hierarchical :math:`J_{ij} \sim \mathcal N(0, \sigma_{b(ij)})`,
    :math:`\sigma_b \sim \mathcal N^+(0, s_J)` per cell-type block b (E-E, E-I, I-I; non-centred),
    or the regularised horseshoe (Piironen & Vehtari 2017, non-centred).

Sampler (fast by construction)
    NUTS is started near the posterior mode with a good metric instead of being left to find
    both: (1) the MAP is found by damped Newton iterations on the log posterior in NumPyro's
    unconstrained space, with the exact Hessian :math:`J_\theta^\top H_{\rm lik} J_\theta +
    \nabla^2[\text{prior part}]`, where :math:`H_{\rm lik} = T\,F(\theta)` (F = Fisher
    information of one bin, exact enumeration) for the exact likelihood and the closed-form
    pseudolikelihood Hessian :math:`\sum_i X_i^\top \mathrm{diag}(c\,\mathrm{sech}^2 H_{\cdot i})
    X_i` otherwise; (2) the **inverse of that Hessian is the fixed dense mass matrix** (for the
    Normal prior it is exactly :math:`(T F + \mathrm{diag}(\sigma^{-2}))^{-1}`), so the
    posterior looks like a unit Gaussian to the integrator and trajectories are short (~7–15
    leapfrog steps instead of 127–1023); (3) each chain starts at a draw from this Laplace
    approximation, so it is already in the typical set; (4) warmup only adapts the step size
    (dual averaging), so it can be short. ``mass_matrix = "adapt"`` in the spec gives plain NUTS
    (diagonal mass adapted from scratch, random start) — the benchmark baseline.
    ``algorithm = "hmc"`` replaces NUTS's U-turn rule with a static trajectory of
    ``trajectory_length`` (default π/2, a quarter period of the whitened unit Gaussian, which
    decorrelates both z and z²; NUTS stops near half a period, where |z| barely moves) —
    and ``algorithm = "split_hmc"`` runs the same trajectory with the split integrator of
    :mod:`bayes_ising.fit.split_hmc` (the whitened Gaussian moved exactly, only the rest by
    kicks: 2 gradients per draw at N = 92 instead of 14) — the choice of ``--model
    pseudo_large`` for many parameters (``docs/sampler.md``).

Pseudo-posterior calibration (``adjust``; Bouranis, Friel & Maire 2017, 2018)
    Draws θ of the pseudo-posterior with mode :math:`\hat\theta_{PL}` are mapped to
    :math:`\hat\theta_c + W(\theta - \hat\theta_{PL})`. ``"curvature"``: :math:`\hat\theta_c =
    \hat\theta_{PL}`, W chosen so that the covariance :math:`\Sigma_{PL} = (H_{PL} +
    \Lambda)^{-1}` becomes :math:`\Sigma_F = (T F(\hat\theta_c) + \Lambda)^{-1}`
    (:math:`W = L_F L_{PL}^{-1}` with Cholesky factors; Λ the prior precision, at the MAP
    scales for hierarchical priors); ``"mode"``: W = I and :math:`\hat\theta_c` the
    full-likelihood MAP (exact enumeration for N ≤ 22, Boltzmann learning for larger N);
    ``"mode+curvature"``: both. For N > 22 the Fisher information comes from Gibbs samples and
    every centre is checked by simulating it (:func:`bayes_ising.fit.mle.model_check`).

The result is an ArviZ 1.x :class:`xarray.DataTree` (see :func:`fit_posterior`).
"""

import functools
import json
import math
import time
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import scipy.linalg
import scipy.optimize
import xarray as xr
from jax.flatten_util import ravel_pytree

from bayes_ising._io import atomic_path, to_jsonable
from bayes_ising.core import ising, stats
from bayes_ising.core import pseudolikelihood as pl
from bayes_ising.errors import (
    BayesIsingError,
    DataError,
    Float64Error,
    ModelCheckError,
    ModelSpecError,
)
from bayes_ising.fit import provenance, split_hmc
from bayes_ising.fit.fit_data import FitData, as_fit_data
from bayes_ising.fit.model_spec import (
    ADJUSTMENTS,
    LIKELIHOODS,
    ModelSpec,
    default_model_spec,
    load_model_spec,
)
from bayes_ising.fit.posterior import j_matrix

__all__ = [
    "ModelSpec",
    "load_model_spec",
    "default_model_spec",
    "exact_model",
    "pseudo_model",
    "fit_posterior",
    "save_posterior",
    "load_posterior",
    "j_matrix",
    "pair_blocks",
    "convergence_summary",
]

#: keep the raw spin raster in ``observed_data`` when it has at most this many entries
MAX_STORED_SPINS = 4_000_000


# --------------------------------------------------------------------------------------------
# Cell-type blocks
# --------------------------------------------------------------------------------------------


def pair_blocks(cell_types, num_neurons):
    """Block label of every pair in pair order, the sorted block names and each pair's index.

    The label of pair (i, j) is the two cell types sorted and joined by "-" ("E-E", "E-I",
    "I-I"); without cell types every label is "".

    Returns
    -------
    labels : (P,) str;  blocks : tuple of str (sorted unique);  index : (P,) int
    """
    i, j = ising.pair_indices(num_neurons)
    if cell_types is None:
        labels = np.full(i.shape, "", dtype=object)
    else:
        types = np.asarray(cell_types).astype(str)
        if types.shape != (num_neurons,):
            raise DataError(f"cell_types has shape {types.shape}, expected ({num_neurons},)")
        pairs = zip(types[i], types[j], strict=True)
        labels = np.array(["-".join(sorted((a, b))) for a, b in pairs], dtype=object)
    blocks = tuple(sorted(set(labels.tolist()))) or ("",)
    index = np.array([blocks.index(label) for label in labels], dtype=np.int32)
    return labels.astype(str), blocks, index


# --------------------------------------------------------------------------------------------
# Priors and models
# --------------------------------------------------------------------------------------------


def _horseshoe_scale(tau, lam, c2):
    """Regularised horseshoe sd: τ λ̃ with λ̃² = c² λ² / (c² + τ² λ²) (Piironen & Vehtari 2017)."""
    lam_tilde_sq = c2 * lam**2 / (c2 + tau**2 * lam**2)
    return tau * jnp.sqrt(lam_tilde_sq)


def _sample_prior(spec, num_neurons, block_index, num_blocks):
    """The prior sample sites; returns (h (N,), j (P,)) in the constrained space."""
    num_pair = ising.num_pairs(num_neurons)
    h = numpyro.sample(
        "h", dist.Normal(spec.h_mean, spec.h_scale).expand([num_neurons]).to_event(1)
    )
    if spec.j_family == "normal":
        j = numpyro.sample("J", dist.Normal(0.0, spec.j_scale).expand([num_pair]).to_event(1))
    elif spec.j_family == "hierarchical":
        block_scale = numpyro.sample(
            "J_block_scale", dist.HalfNormal(spec.j_scale).expand([num_blocks]).to_event(1)
        )
        raw = numpyro.sample("J_raw", dist.Normal(0.0, 1.0).expand([num_pair]).to_event(1))
        j = numpyro.deterministic("J", raw * block_scale[block_index])
    elif spec.j_family == "horseshoe":
        tau = numpyro.sample("J_tau", dist.HalfCauchy(spec.global_scale))
        lam = numpyro.sample("J_lambda", dist.HalfCauchy(1.0).expand([num_pair]).to_event(1))
        c2 = numpyro.sample(
            "J_slab_c2",
            dist.InverseGamma(0.5 * spec.slab_df, 0.5 * spec.slab_df * spec.slab_scale**2),
        )
        raw = numpyro.sample("J_raw", dist.Normal(0.0, 1.0).expand([num_pair]).to_event(1))
        j = numpyro.deterministic("J", raw * _horseshoe_scale(tau, lam, c2))
    else:  # pragma: no cover - validated in model_spec
        raise ModelSpecError(f"unknown prior.J.family {spec.j_family!r}")
    return h, j


def _conditional_j_scale(spec, params, block_index):
    """Prior sd of each J_ij given the hyperparameters in ``params`` (constrained), (P,)."""
    num_pair = block_index.shape[0]
    if spec.j_family == "normal":
        return np.full(num_pair, spec.j_scale)
    if spec.j_family == "hierarchical":
        return np.asarray(params["J_block_scale"])[block_index]
    return np.asarray(
        _horseshoe_scale(params["J_tau"], params["J_lambda"], params["J_slab_c2"])
    )


def _resolve_blocks(block_index, num_neurons):
    num_pair = ising.num_pairs(num_neurons)
    if block_index is None:
        block_index = np.zeros(num_pair, dtype=np.int32)
    block_index = np.asarray(block_index, dtype=np.int32)
    if block_index.shape != (num_pair,):
        raise ValueError(f"block_index must have shape ({num_pair},), got {block_index.shape}")
    return block_index, int(block_index.max(initial=0)) + 1


class _Sufficient(NamedTuple):
    """What the exact likelihood needs of the data (duck-types ``stats.Moments``)."""

    num_bins: object  # T (a float, so that it can be a traced argument)
    m: object  # (N,)
    Q: object  # (N, N), unit diagonal


class _Config(NamedTuple):
    """Static (hashable) description of one model; data and block index are array arguments."""

    kind: str  # "exact" | "pseudo"
    spec: ModelSpec
    num_neurons: int
    num_blocks: int


def _exact_log_likelihood(h, j, moments, num_neurons, float32=False):
    dtype = jnp.float32 if float32 else jnp.result_type(h.dtype, jnp.float32)
    J = ising.couplings_to_matrix(j.astype(dtype), num_neurons)
    return ising.exact_log_likelihood(h.astype(dtype), J, moments)


def _pseudo_log_likelihood(h, j, data, float32=False):
    r"""Log pseudolikelihood of the flat couplings ``j`` (:func:`pseudolikelihood.
    log_pseudolikelihood`: linear part from the sufficient sums, the log-cosh sweep in float32
    when ``float32``, accumulated in float64)."""
    num_neurons = data.patterns.shape[1]
    wide = jnp.result_type(h.dtype, jnp.float32)
    J = ising.couplings_to_matrix(j.astype(wide), num_neurons)
    return pl.log_pseudolikelihood(h.astype(wide), J, data, float32)


def _model(config, data, block_index):
    """The NumPyro model of ``config``; ``data`` is a _Sufficient (exact) or (patterns, counts)."""
    spec = config.spec
    h, j = _sample_prior(spec, config.num_neurons, block_index, config.num_blocks)
    if config.kind == "exact":
        value = _exact_log_likelihood(h, j, data, config.num_neurons, spec.float32)
        numpyro.factor("log_likelihood", value.astype(h.dtype))
    else:
        value = _pseudo_log_likelihood(h, j, data, spec.float32)
        numpyro.factor("log_pseudolikelihood", value.astype(h.dtype))


def _prior_only(config, block_index):
    _sample_prior(config.spec, config.num_neurons, block_index, config.num_blocks)


def exact_model(moments, num_neurons, spec=None, block_index=None):
    r"""NumPyro model with the exact likelihood :math:`T[h\cdot m + \sum_{i<j} J_{ij}Q_{ij} -
    \log Z]` (``numpyro.factor("log_likelihood", ...)``).

    Parameters
    ----------
    moments : object with ``num_bins``, ``m`` (N,), ``Q`` (N, N) (e.g. ``stats.Moments``)
    num_neurons : N ≤ 22
    spec : :class:`ModelSpec` (default :func:`default_model_spec`)
    block_index : (P,) int cell-type block of each pair (hierarchical prior); default one block
    """
    spec = default_model_spec() if spec is None else spec
    block_index, num_blocks = _resolve_blocks(block_index, num_neurons)
    data = _Sufficient(moments.num_bins, jnp.asarray(moments.m), jnp.asarray(moments.Q))
    _model(_Config("exact", spec, int(num_neurons), num_blocks), data, block_index)


def pseudo_model(patterns, counts, spec=None, block_index=None):
    r"""NumPyro model with the log pseudolikelihood :math:`\sum_u c_u \sum_i \log\sigma(2 s_{ui}
    H_{ui})` over unique patterns (``numpyro.factor("log_pseudolikelihood", ...)``).

    Parameters
    ----------
    patterns : (U, N) ±1 unique patterns;  counts : (U,) multiplicities
    spec, block_index : as in :func:`exact_model`
    """
    spec = default_model_spec() if spec is None else spec
    num_neurons = patterns.shape[1]
    block_index, num_blocks = _resolve_blocks(block_index, num_neurons)
    data = _data_arrays("pseudo", None, np.asarray(patterns), np.asarray(counts))
    _model(_Config("pseudo", spec, int(num_neurons), num_blocks), data, block_index)


# --------------------------------------------------------------------------------------------
# Likelihood derivatives in theta = pack(h, J) (pack order)
# --------------------------------------------------------------------------------------------


def _log_likelihood_theta(config, theta, data):
    n = config.num_neurons
    if config.kind == "exact":
        return _exact_log_likelihood(theta[:n], theta[n:], data, n)
    return _pseudo_log_likelihood(theta[:n], theta[n:], data)


def _neg_hessian_theta(config, theta, data):
    """−∇² log likelihood in theta: T·F(θ) (exact) or the closed-form pseudo Hessian."""
    if config.kind == "exact":
        h, J = ising.unpack(theta, config.num_neurons)
        return data.num_bins * ising.fisher_information(h, J)
    return pl.neg_hessian(theta, data)


_POSITIVE_SITES = ("J_block_scale", "J_tau", "J_lambda", "J_slab_c2")


def _site_template(config):
    """Zeros shaped like every unconstrained sample site (fixes the ravel_pytree order)."""
    n, p = config.num_neurons, ising.num_pairs(config.num_neurons)
    family = config.spec.j_family
    if family == "normal":
        return {"h": jnp.zeros(n), "J": jnp.zeros(p)}
    if family == "hierarchical":
        return {"h": jnp.zeros(n), "J_block_scale": jnp.zeros(config.num_blocks),
                "J_raw": jnp.zeros(p)}
    return {"h": jnp.zeros(n), "J_tau": jnp.zeros(()), "J_lambda": jnp.zeros(p),
            "J_slab_c2": jnp.zeros(()), "J_raw": jnp.zeros(p)}


class _Functions(NamedTuple):
    """Jitted functions of one model configuration, compiled once per shape of the data."""

    potential: object  # (phi, data, block_index) -> U (not jitted; used inside NUTS)
    value_and_grad: object  # (phi, data, block_index) -> (U, ∇U), U = −log posterior
    hessian: object  # (phi, data, block_index) -> ∇²U (Pφ, Pφ)
    constrained: object  # (phi, block_index) -> dict of constrained sites and "J"
    neg_hessian: object  # (theta, data) -> −∇² log likelihood (P, P)
    unravel: object  # flat phi -> dict


@functools.lru_cache(maxsize=32)
def _functions(config):
    r"""Build and jit the potential, its exact Hessian and the constraining map for ``config``.

    Hessian: :math:`J_\theta^\top H_{\rm lik} J_\theta + \nabla^2_\phi[U_{\rm prior}(\phi) -
    g\cdot\theta(\phi)]` with :math:`g = \nabla_\theta \log L` held fixed — exact, and cheap
    because the only P×P likelihood term is the closed form :func:`_neg_hessian_theta`.
    """
    from numpyro.infer.util import constrain_fn, potential_energy

    _, unravel = ravel_pytree(_site_template(config))

    def potential(phi, data, block_index):
        return potential_energy(_model, (config, data, block_index), {}, unravel(phi))

    def prior_potential(phi, block_index):
        return potential_energy(_prior_only, (config, block_index), {}, unravel(phi))

    def constrained(phi, block_index):
        return constrain_fn(_prior_only, (config, block_index), {}, unravel(phi),
                            return_deterministic=True)

    def theta_of_phi(phi, block_index):
        params = constrained(phi, block_index)
        return jnp.concatenate([params["h"], params["J"]])

    if config.spec.j_family == "normal":  # θ is a permutation of φ (ravel order: J, h)
        size = config.num_neurons + ising.num_pairs(config.num_neurons)
        where = unravel(jnp.arange(size, dtype=jnp.float64))  # φ position of every entry
        perm = jnp.asarray(np.r_[np.asarray(where["h"]), np.asarray(where["J"])].astype(int))

    def hessian(phi, data, block_index):
        if config.spec.j_family == "normal":  # no Jacobian product (P³ flops saved)
            lik = _neg_hessian_theta(config, phi[perm], data)
            return (jnp.zeros_like(lik).at[perm[:, None], perm[None, :]].set(lik)
                    + jax.hessian(prior_potential)(phi, block_index))
        theta = theta_of_phi(phi, block_index)
        jac = jax.jacfwd(theta_of_phi)(phi, block_index)
        grad_lik = jax.lax.stop_gradient(
            jax.grad(_log_likelihood_theta, argnums=1)(config, theta, data)
        )
        second = jax.hessian(
            lambda p: prior_potential(p, block_index) - grad_lik @ theta_of_phi(p, block_index)
        )(phi)
        return jac.T @ _neg_hessian_theta(config, theta, data) @ jac + second

    return _Functions(
        potential,
        jax.jit(jax.value_and_grad(potential)),
        jax.jit(hessian),
        jax.jit(constrained),
        jax.jit(functools.partial(_neg_hessian_theta, config)),
        unravel,
    )


def _data_arrays(kind, moments, patterns, counts, num_rows=None):
    """Model data as arrays; patterns padded with zero-count rows to a size class (at least
    ``num_rows``), so that datasets of the same N share one compilation."""
    if kind == "exact":
        return _Sufficient(jnp.asarray(float(moments.num_bins)), jnp.asarray(moments.m),
                           jnp.asarray(moments.Q))
    return pl.prepare(patterns, counts, num_rows=num_rows)


# --------------------------------------------------------------------------------------------
# MAP and Laplace approximation in the unconstrained space
# --------------------------------------------------------------------------------------------


class _Laplace(NamedTuple):
    phi: np.ndarray  # (Pφ,) MAP in NumPyro's unconstrained space, ravel_pytree order
    hessian: np.ndarray  # (Pφ, Pφ) −∇² log posterior at the MAP (made positive definite)
    theta: np.ndarray  # (P,) pack(h, J) at the MAP
    params: dict  # constrained values (and deterministics) at the MAP
    iterations: int  # Newton iterations
    converged: bool
    gradient_norm: float
    gradient_evaluations: int = 0  # L-BFGS and line-search value+grad calls


def _initial_phi(config, h0, j0=None):
    """Unconstrained start: h = h0, J = j0 (default 0), prior scales at their nominal values."""
    spec = config.spec
    num_pair = ising.num_pairs(config.num_neurons)
    j0 = np.zeros(num_pair) if j0 is None else np.asarray(j0)
    values = {"h": np.asarray(h0, dtype=np.float64)}
    if spec.j_family == "normal":
        values["J"] = j0
    elif spec.j_family == "hierarchical":
        values["J_block_scale"] = np.log(np.full(config.num_blocks, spec.j_scale))
        values["J_raw"] = j0 / spec.j_scale
    else:
        values["J_tau"] = np.log(spec.global_scale)
        values["J_lambda"] = np.zeros(num_pair)
        values["J_slab_c2"] = np.log(spec.slab_scale**2)
        values["J_raw"] = j0 / float(_horseshoe_scale(spec.global_scale, 1.0, spec.slab_scale**2))
    values = {k: jnp.asarray(v, dtype=jnp.float64) for k, v in values.items()}
    return np.asarray(ravel_pytree(values)[0])


#: from this many parameters on, the MAP search starts with L-BFGS whitened by the Hessian at
#: the start (cheap gradients), and Newton only polishes: one Hessian costs ~N gradients
LBFGS_MIN_PARAMS = 1000


def _whitened_lbfgs(fns, phi0, hess0, data, block_index, *, max_iterations=500):
    r"""Minimise U(φ) by L-BFGS in :math:`y = L_0^\top(\phi - \phi_0)`, :math:`L_0 L_0^\top
    = \nabla^2 U(\phi_0)` (made positive definite): there U is close to ½|y|² + const, so a
    few dozen closed-form gradients replace most Newton iterations. Returns φ and the
    number of gradient evaluations."""
    chol = _cholesky(hess0)
    if chol is None:
        chol = _cholesky(_make_positive_definite(hess0))
    to_phi = functools.partial(scipy.linalg.solve_triangular, chol, trans="T", lower=True)
    count = [0]

    def fun(y):
        count[0] += 1
        value, grad = fns.value_and_grad(phi0 + to_phi(y), data, block_index)
        grad = scipy.linalg.solve_triangular(chol, np.asarray(grad), lower=True)
        return float(value), grad

    result = scipy.optimize.minimize(
        fun, np.zeros(phi0.shape[0]), jac=True, method="L-BFGS-B",
        options={"maxiter": max_iterations, "gtol": 1e-7, "ftol": 1e-15, "maxcor": 20})
    return phi0 + to_phi(result.x), count[0]


def _laplace(config, data, block_index, phi0, *, max_iterations=100, tolerance=1e-10):
    """MAP by damped Newton on U(φ) = −log posterior (unconstrained space) and ∇²U there.

    Newton steps use the exact Hessian (a Cholesky solve; reflected eigenvalues where it is
    not positive definite: non-centred priors can be non-convex away from the mode), so every
    step is a descent direction; Armijo backtracking. Stops when the Newton decrement λ²/2 <
    ``tolerance``. With ≥ :data:`LBFGS_MIN_PARAMS` parameters, :func:`_whitened_lbfgs` first.
    """
    fns = _functions(config)
    block_index = jnp.asarray(block_index)
    phi = np.asarray(phi0, dtype=np.float64)
    converged = False
    iterations = 0
    hess = np.asarray(fns.hessian(phi, data, block_index))
    evaluations = 0
    if phi.shape[0] >= LBFGS_MIN_PARAMS:
        phi, evaluations = _whitened_lbfgs(fns, phi, hess, data, block_index)
        hess = np.asarray(fns.hessian(phi, data, block_index))
    value, grad = fns.value_and_grad(phi, data, block_index)
    value, grad = float(value), np.asarray(grad)
    for iterations in range(1, max_iterations + 1):  # noqa: B007
        if iterations > 1:
            hess = np.asarray(fns.hessian(phi, data, block_index))
        step = -_solve_positive(hess, grad)
        decrement = float(-grad @ step)
        if not math.isfinite(decrement):
            raise BayesIsingError("MAP search failed: non-finite gradient or Hessian")
        if decrement / 2 < tolerance:
            converged = True
            break
        t = 1.0
        while True:
            trial_value, trial_grad = fns.value_and_grad(phi + t * step, data, block_index)
            trial_value = float(trial_value)
            evaluations += 1
            if (math.isfinite(trial_value) and trial_value <= value - 1e-4 * t * decrement) or (
                t < 1e-10
            ):
                break
            t *= 0.5
        phi = phi + t * step
        value, grad = trial_value, np.asarray(trial_grad)
    if not converged:
        hess = np.asarray(fns.hessian(phi, data, block_index))
    hess = _make_positive_definite(hess)
    params = {k: np.asarray(v) for k, v in fns.constrained(phi, block_index).items()}
    theta = np.concatenate([params["h"], params["J"]])
    return _Laplace(phi, hess, theta, params, iterations, converged,
                    float(np.linalg.norm(grad)), evaluations)


def _cholesky(matrix):
    """Lower Cholesky factor of the symmetrised matrix, or None when it is not positive
    definite (numerically)."""
    try:
        return np.linalg.cholesky(0.5 * (matrix + matrix.T))
    except np.linalg.LinAlgError:
        return None


def _reflected(matrix):
    """Eigen-decomposition with |λ| floored at 1e-10 · max|λ| (the fallback for matrices that
    are not positive definite: non-centred priors far from the mode)."""
    evals, evecs = np.linalg.eigh(0.5 * (matrix + matrix.T))
    floor = max(np.abs(evals).max() * 1e-10, 1e-12)
    return np.maximum(np.abs(evals), floor), evecs


def _make_positive_definite(matrix):
    """The symmetrised matrix if it is positive definite (one Cholesky, O(P³/3)); else with
    reflected and floored eigenvalues."""
    if _cholesky(matrix) is not None:
        return 0.5 * (matrix + matrix.T)
    evals, evecs = _reflected(matrix)
    return (evecs * evals) @ evecs.T


def _solve_positive(matrix, vector):
    """Solve with the positive-definite version of a symmetric matrix (Newton step): a
    Cholesky solve when it is positive definite, else the reflected eigenvalues."""
    chol = _cholesky(matrix)
    if chol is not None:
        return scipy.linalg.cho_solve((chol, True), vector)
    evals, evecs = _reflected(matrix)
    return evecs @ ((evecs.T @ vector) / evals)


def _whitening_factor(precision, float32=False):
    """A square root M of precision⁻¹ (M Mᵀ = precision⁻¹): :math:`M = L^{-\top}` with L the
    Cholesky factor of the precision (two O(P³/3) steps; no inverse, no second factor).

    ``float32``: M rounded to float32. The sampler's φ = φ̂ + Mz then reads half the bytes
    (at N = 92, P = 4,278, M is 146 MB in float64 and its two products per gradient took 16
    of 70 ms); the draws are mapped back with the same rounded M, so the map is one fixed
    linear reparametrisation and the sampled posterior is unchanged (the rounding moves φ by
    ~1e-7 of a posterior sd)."""
    chol = _cholesky(precision)
    if chol is None:
        factor = _inverse_and_cholesky(precision)[1]
    else:
        factor = scipy.linalg.solve_triangular(chol, np.eye(chol.shape[0]), lower=True).T
    return factor.astype(np.float32) if float32 else factor


def _inverse_and_cholesky(precision):
    """Covariance = precision⁻¹ and its lower Cholesky factor: from the Cholesky factor of the
    precision (O(P³)), or the eigen-decomposition when that fails."""
    chol = _cholesky(precision)
    if chol is not None:
        inv_chol = scipy.linalg.solve_triangular(chol, np.eye(chol.shape[0]), lower=True)
        cov = inv_chol.T @ inv_chol
    else:
        evals, evecs = np.linalg.eigh(0.5 * (precision + precision.T))
        cov = (evecs / evals) @ evecs.T
    cov = 0.5 * (cov + cov.T)
    return cov, np.linalg.cholesky(cov)


# --------------------------------------------------------------------------------------------
# NUTS in whitened coordinates, compiled once per configuration
# --------------------------------------------------------------------------------------------


class _NutsArgs(NamedTuple):
    """Dynamic arguments of the whitened potential (so one compilation serves many fits)."""

    data: object  # _Sufficient or (patterns, counts)
    block_index: object  # (P,) int
    centre: object  # (Pφ,) φ̂ (the MAP), or 0 for plain NUTS
    chol: object  # (Pφ, Pφ) lower Cholesky factor of the inverse Hessian, or I


#: sample_stats recorded at every iteration
_RECORDED = ("diverging", "num_steps", "accept_prob", "energy", "potential_energy",
             "step_size")


def _whitened_potential(potential, z, data, block_index, centre, chol):
    """The sampler's potential in z: ``potential(φ̂ + Lz)``, the product Lz in the dtype of
    L (float32 with a float32 spec, :func:`_whitening_factor`)."""
    return potential(centre + (chol @ z.astype(chol.dtype)).astype(z.dtype), data, block_index)


@functools.lru_cache(maxsize=16)
def _nuts_program(config, num_warmup, adapt_mass, target_accept, max_tree_depth, chunk,
                  num_devices, shared_args, algorithm="nuts", trajectory_length=None):
    r"""Jitted (or pmapped) NUTS (or static HMC) init and chunk functions for ``config``.

    NUTS runs on :math:`z` with :math:`\phi = \hat\phi + L z`, :math:`L L^\top =
    H^{-1}` (H the posterior Hessian at the MAP): identity mass in z is the dense mass
    :math:`H` in φ, and because :math:`\hat\phi, L` and the data are *arguments*, not
    constants, every fit of the same configuration and shapes reuses one compilation.
    The leading "lane" axis (chains, or datasets × chains) is vmapped, and split over
    ``num_devices`` CPU devices with ``pmap`` when > 1. ``algorithm="hmc"``: NumPyro's HMC
    with ``trajectory_length`` (in z units) instead of NUTS's tree; ``"split_hmc"``: the same
    trajectory by :func:`bayes_ising.fit.split_hmc.split_hmc`.
    """
    from numpyro.infer.hmc import hmc

    potential = _functions(config).potential

    def potential_gen(data, block_index, centre, chol):
        return lambda z: _whitened_potential(potential, z, data, block_index, centre, chol)

    if algorithm == "split_hmc":
        init_kernel, sample_kernel = split_hmc.split_hmc(potential_gen)
    else:
        init_kernel, sample_kernel = hmc(potential_fn_gen=potential_gen, algo=algorithm.upper())
    length = ({"max_tree_depth": max_tree_depth} if algorithm == "nuts"
              else {"trajectory_length": trajectory_length})

    def init_one(z0, rng_key, args):
        step_size = (trajectory_length / 4 if algorithm == "split_hmc"
                     else 1.0 / z0.shape[0] ** 0.25)
        return init_kernel(
            z0, num_warmup, step_size=step_size, adapt_step_size=True,
            adapt_mass_matrix=adapt_mass != "none", dense_mass=adapt_mass == "dense",
            target_accept_prob=target_accept, model_args=tuple(args), rng_key=rng_key,
            **length,
        )

    def chunk_one(state, num_iter, args):
        size = state.z.shape[0]
        buffers = {
            "z": jnp.zeros((chunk, size), state.z.dtype),
            "diverging": jnp.zeros(chunk, bool),
            "num_steps": jnp.zeros(chunk, jnp.int32),
            "accept_prob": jnp.zeros(chunk, state.z.dtype),
            "energy": jnp.zeros(chunk, state.z.dtype),
            "potential_energy": jnp.zeros(chunk, state.z.dtype),
            "step_size": jnp.zeros(chunk, state.z.dtype),
        }

        def body(k, carry):
            state, buffers = carry
            state = sample_kernel(state, model_args=tuple(args))
            record = {"z": state.z, "diverging": state.diverging,
                      "num_steps": state.num_steps.astype(jnp.int32),
                      "accept_prob": state.accept_prob, "energy": state.energy,
                      "potential_energy": state.potential_energy,
                      "step_size": state.adapt_state.step_size}
            buffers = {name: buffers[name].at[k].set(record[name].astype(buffers[name].dtype))
                       for name in buffers}
            return state, buffers

        return jax.lax.fori_loop(0, num_iter, body, (state, buffers))

    args_axis = None if shared_args else 0
    init_lanes = jax.vmap(init_one, in_axes=(0, 0, args_axis))
    chunk_lanes = jax.vmap(chunk_one, in_axes=(0, None, args_axis))
    if num_devices > 1:
        return (jax.pmap(init_lanes, in_axes=(0, 0, args_axis)),
                jax.pmap(chunk_lanes, in_axes=(0, None, args_axis)))
    return jax.jit(init_lanes), jax.jit(chunk_lanes)


def _run_nuts(rng_key, config, args, z0, *, num_warmup, num_draws, max_draws=0, stop=None,
              adapt_mass="none", target_accept=0.8, max_tree_depth=10, num_devices=1,
              shared_args=True, progress=False, desc="NUTS", algorithm="nuts",
              trajectory_length=None):
    """Run NUTS on L lanes (z0: (L, Pφ)); returns draws of z (L, D, Pφ) and stats (L, D).

    Iterations run in chunks of one compiled function (progress bar between chunks); the
    first ``num_warmup`` (step-size adaptation, and mass adaptation when asked) are dropped.
    With ``stop`` (a function of the result so far → bool) and ``max_draws``: after
    ``num_draws`` draws, and after every further ``num_draws``, stop when ``stop`` says so or
    ``max_draws`` are reached.
    """
    num_lanes = z0.shape[0]
    total = num_warmup + num_draws
    chunk = max(1, -(-total // 20))
    if num_devices > 1 and num_lanes % num_devices:
        num_devices = 1
    init_fn, chunk_fn = _nuts_program(
        config, num_warmup, adapt_mass, float(target_accept), int(max_tree_depth), chunk,
        num_devices, bool(shared_args), algorithm,
        None if trajectory_length is None else float(trajectory_length))
    keys = jax.random.split(rng_key, num_lanes)

    def split(x):
        x = jnp.asarray(x)
        return x.reshape((num_devices, num_lanes // num_devices) + x.shape[1:])

    if num_devices > 1:
        z0, keys = split(z0), split(keys)
        if not shared_args:
            args = jax.tree.map(split, args)
    state = init_fn(jnp.asarray(z0), keys, args)
    limit = num_warmup + max(int(max_draws or 0), num_draws) if stop is not None else total
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=total, desc=f"{desc} ({num_lanes} chains)", leave=False)
    outputs, done = [], 0
    while True:
        while done < total:
            num_iter = min(chunk, total - done)
            state, buffers = chunk_fn(state, num_iter, args)
            outputs.append(_lane_buffers(buffers, num_iter, num_lanes, num_devices))
            done += num_iter
            if bar is not None:
                bar.update(num_iter)
        result = {k: np.concatenate([o[k] for o in outputs], axis=1)[:, num_warmup:]
                  for k in outputs[0]}
        if stop is None or stop(result) or total >= limit:  # the last chunk is judged too
            break
        more = min(num_draws, limit - total)
        total += more
        if bar is not None:
            bar.total = total
            bar.refresh()
    if bar is not None:
        bar.close()
    return result


def _lane_buffers(buffers, num_iter, num_lanes, num_devices):
    """One chunk's device buffers as NumPy arrays (L, num_iter, ...)."""
    buffers = {k: np.asarray(v) for k, v in buffers.items()}
    if num_devices > 1:
        buffers = {k: v.reshape((num_lanes,) + v.shape[2:]) for k, v in buffers.items()}
    return {k: v[:, :num_iter] for k, v in buffers.items()}


# --------------------------------------------------------------------------------------------
# The driver
# --------------------------------------------------------------------------------------------


def _chain_method(num_chains, requested=None):
    """"parallel": chains split over the CPU devices (pmap), each device vectorising its
    share; "vectorized": all chains vectorised on one device."""
    if requested is not None:
        if requested not in ("parallel", "vectorized"):
            raise BayesIsingError(
                f"chain_method must be 'parallel' or 'vectorized', got {requested!r}")
        return requested
    devices = jax.local_device_count()
    return "parallel" if devices > 1 and num_chains % devices == 0 else "vectorized"


def _as_key(rng_key):
    if isinstance(rng_key, (int, np.integer)):
        return jax.random.PRNGKey(int(rng_key)), int(rng_key)
    key = jnp.asarray(rng_key)
    if jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        key = jax.random.key_data(key)
    return key, [int(k) for k in np.asarray(key).ravel()]


#: a neuron that fires (or stays silent) in fewer bins than this is (near-)silent
FEW_EVENTS = 10
#: NUTS target acceptance used when the data hold (near-)silent neurons
WALL_TARGET_ACCEPT = 0.95


def _target_accept(spec, data):
    r"""The NUTS target acceptance: the spec's, raised to :data:`WALL_TARGET_ACCEPT` when a
    neuron fires (or is silent) in fewer than :data:`FEW_EVENTS` bins; returns (value, reason).

    Why: for a neuron j that never fires, the likelihood of its 0/1 field and couplings is a
    one-sided wall, :math:`-T \log(1 + \langle e^{a_j + \sum_k b_{jk} x_k}\rangle)`, whose
    curvature grows like :math:`T e^{u}` towards it while the posterior mass spreads over the
    prior on the other side. No linear change of coordinates removes that (the dense Hessian
    whitening is affine invariant), so the leapfrog step must resolve the wall: with the
    default 0.8 a planted 10-neuron model with a silent and a 3-spike neuron had 38 of 4,000
    transitions divergent; with 0.95, 1 (≈1.5× the gradient evaluations).
    """
    events = np.minimum(data.firing_counts, data.num_bins - data.firing_counts)
    few = np.flatnonzero(events < FEW_EVENTS)
    if not few.size or spec.target_accept >= WALL_TARGET_ACCEPT:
        return float(spec.target_accept), None
    return WALL_TARGET_ACCEPT, (
        f"{few.size} neuron(s) fire (or stay silent) in fewer than {FEW_EVENTS} bins: their "
        f"likelihood is a one-sided exponential wall, so target_accept "
        f"{spec.target_accept} -> {WALL_TARGET_ACCEPT} (smaller leapfrog steps)")


class _Run(NamedTuple):
    """Resolved settings of one fit (spec overridden by keyword arguments, validated)."""

    spec: ModelSpec
    likelihood: str
    adjust: str
    num_chains: int
    num_draws: int  # draws of the first chunk, and of every further chunk
    num_warmup: int
    max_draws: int  # 0: exactly num_draws; else sample on until mixed or this many


def _resolve(spec, likelihood, adjust, num_chains, num_draws, num_warmup, max_draws):
    """Validated :class:`_Run` from a spec (or TOML path) and keyword overrides."""
    if spec is None:
        spec = default_model_spec()
    elif not isinstance(spec, ModelSpec):
        spec = load_model_spec(spec)
    if spec.family != "pairwise":
        raise ModelSpecError(
            f"model spec {spec.name!r} is family {spec.family!r}: fit it with "
            "bayes_ising.fit.kpairwise_fit.fit_posterior (or bayes-ising fit --model, which does)")
    likelihood = spec.likelihood if likelihood is None else likelihood
    if likelihood not in LIKELIHOODS:
        raise BayesIsingError(f"likelihood must be one of {LIKELIHOODS}, got {likelihood!r}")
    if adjust is None:
        adjust = spec.adjust if likelihood == "pseudo" else "none"
    if adjust not in ADJUSTMENTS:
        raise BayesIsingError(f"adjust must be one of {ADJUSTMENTS}, got {adjust!r}")
    if likelihood == "exact" and adjust != "none":
        raise BayesIsingError(
            f"adjust={adjust!r} calibrates pseudo-posteriors; the exact posterior needs none "
            "(use adjust='none' with likelihood='exact')"
        )
    num_chains = spec.num_chains if num_chains is None else int(num_chains)
    num_draws = spec.num_draws if num_draws is None else int(num_draws)
    num_warmup = spec.num_warmup if num_warmup is None else int(num_warmup)
    if max_draws is None:  # the spec's stop rule goes with the spec's chunk of draws: a
        # caller asking for another number of draws gets exactly that many
        max_draws = spec.max_draws if num_draws == spec.num_draws else 0
    max_draws = int(max_draws)
    if num_chains < 1 or num_draws < 1 or num_warmup < 0:
        raise BayesIsingError(
            f"need chains >= 1, draws >= 1, warmup >= 0; got {num_chains}, {num_draws}, "
            f"{num_warmup}"
        )
    if max_draws and max_draws < num_draws:
        raise BayesIsingError(f"max_draws ({max_draws}) must be 0 (no stop rule) or at least "
                              f"num_draws ({num_draws})")
    return _Run(spec, likelihood, adjust, num_chains, num_draws, num_warmup, max_draws)


class _Prepared(NamedTuple):
    """The data of one fit (a :class:`~bayes_ising.fit.fit_data.FitData`: moments and unique
    patterns computed once) with its model arrays, its model configuration and the Laplace
    approximation (None for plain NUTS)."""

    data: object  # FitData
    model_data: object
    labels: np.ndarray
    blocks: tuple
    block_index: np.ndarray
    config: _Config  # float64 (MAP, Hessian, adjustment)
    laplace: object
    centre: object  # (theta_c, adjust_info, model_check) of the adjustment, or None
    time_s: float
    adjustment: object = None  # (theta_pl, theta_c, W) of _adjust_map, or None


def _initial_theta(init, data, spec):
    """Start (h0 (N,), j0 (P,) or None) of the MAP search: the independent model shrunk to the
    prior mean, or ``init`` — (h, J) arrays, a theta vector, or a posterior DataTree whose
    mean is matched by neuron id (neurons it lacks start independent, their couplings at 0)."""
    num_bins, num_neurons = data.num_bins, data.num_neurons
    h0 = stats.independent_fields(data.m, num_bins)
    h0 = (h0 * spec.h_scale**2 * num_bins + spec.h_mean) / (spec.h_scale**2 * num_bins + 1)
    if init is None:
        return h0, None
    if hasattr(init, "children"):  # a posterior: same neurons in another state, or a subset
        from bayes_ising.fit import posterior

        h_draws, J_draws = posterior.posterior_draws(init)  # (D, N), (D, N, N)
        ids = [str(i) for i in posterior.neuron_ids(init)]
        h_prev, J_prev = h_draws.mean(axis=0), J_draws.mean(axis=0)
        where = {n: k for k, n in enumerate(ids)}
        rows = np.array([where.get(n, -1) for n in data.neuron_ids])
        have = rows >= 0
        J0 = np.zeros((num_neurons, num_neurons))
        J0[np.ix_(have, have)] = J_prev[np.ix_(rows[have], rows[have])]
        h0 = np.where(have, h_prev[np.maximum(rows, 0)], h0)
        return h0, np.asarray(ising.matrix_to_couplings(jnp.asarray(J0)))
    if isinstance(init, tuple):
        h, J = (np.asarray(x, np.float64) for x in init)
        return h, np.asarray(ising.matrix_to_couplings(jnp.asarray(J)))
    theta = np.asarray(init, np.float64)
    if theta.shape != (num_neurons + ising.num_pairs(num_neurons),):
        raise BayesIsingError(f"init has shape {theta.shape}; expected (h, J), a theta vector "
                              f"of {num_neurons + ising.num_pairs(num_neurons)} or a posterior")
    return theta[:num_neurons], theta[num_neurons:]


def _prepare(rng_key, data, run, init=None, pad_patterns=None):
    """Reduce the data once, find the MAP and Hessian (skipped for plain NUTS unless the
    adjustment needs them) and, for an adjusted pseudo-posterior, its checked centre
    (:func:`_adjustment_centre`; ``rng_key`` for Boltzmann learning and the model check)."""
    start = time.perf_counter()
    data = as_fit_data(data, min_neurons=2)
    num_neurons = data.num_neurons
    if run.likelihood == "exact":
        ising.check_exact(num_neurons, "the exact likelihood (likelihood='exact')")
    labels, blocks, block_index = pair_blocks(data.cell_types, num_neurons)
    model_data = _data_arrays(run.likelihood, data.moments, data.patterns, data.counts,
                              pad_patterns)
    spec = run.spec
    config = _Config(run.likelihood, spec.replace(float32=False) if spec.float32 else spec,
                     num_neurons, len(blocks))
    h0, j0 = _initial_theta(init, data, spec)
    laplace = None
    if spec.mass_matrix != "adapt" or (run.likelihood == "pseudo" and run.adjust != "none"):
        laplace = _laplace(config, model_data, block_index, _initial_phi(config, h0, j0))
    centre = adjustment = None
    if run.likelihood == "pseudo" and run.adjust != "none":
        # the adjustment's centre first: a centre that fails its check stops the fit here,
        # before any sampling (ModelCheckError); then its map, fixed before sampling, so
        # that the stop rule judges the draws that are returned (the adjusted ones)
        centre = _adjustment_centre(rng_key, run.adjust, laplace, config, data, block_index)
        adjustment = _adjust_map(jax.random.fold_in(rng_key, 1), run.adjust, laplace, config,
                                 model_data, data, centre[0], centre[1], block_index)
    return _Prepared(data, model_data, labels, blocks, block_index, config, laplace, centre,
                     time.perf_counter() - start, adjustment)


class _Whitening(NamedTuple):
    centre: np.ndarray  # (Pφ,) φ̂, or 0 for plain NUTS
    chol: np.ndarray  # (Pφ, Pφ) L with L Lᵀ = H⁻¹, or I
    z0: np.ndarray  # (chains, Pφ) starts in z
    adapt_mass: str


def _whiten(rng_key, prepared, run):
    """φ = φ̂ + L z with L Lᵀ = H⁻¹ (the Laplace approximation), chains started at z ~ N(0, I)
    (a draw from it); plain NUTS ("adapt"): φ = z from uniform(−2, 2) starts."""
    size = _initial_phi(prepared.config, np.zeros(prepared.config.num_neurons)).shape[0]
    if run.spec.mass_matrix == "adapt":
        z0 = jax.random.uniform(rng_key, (run.num_chains, size), minval=-2, maxval=2)
        return _Whitening(np.zeros(size), np.eye(size), np.asarray(z0), "diagonal")
    chol = _whitening_factor(prepared.laplace.hessian, run.spec.float32)
    z0 = np.asarray(jax.random.normal(rng_key, (run.num_chains, size)))
    adapt = "dense" if run.spec.mass_matrix == "hessian+adapt" else "none"
    return _Whitening(prepared.laplace.phi, chol, z0, adapt)


def _constrained_draws(prepared, whitening, z):
    """Draws of z (C, D, Pφ) → dict of constrained sites, each (C, D, ...) float64."""
    fns = _functions(prepared.config)
    size = z.shape[-1]
    phi = whitening.centre + z @ whitening.chol.T
    flat = jax.vmap(fns.constrained, in_axes=(0, None))(
        jnp.asarray(phi.reshape(-1, size)), jnp.asarray(prepared.block_index))
    return {k: np.asarray(v, dtype=np.float64).reshape(z.shape[:2] + v.shape[1:])
            for k, v in flat.items()}


def _mixing(prepared, whitening, out):
    """The convergence verdict (:func:`bayes_ising.core.convergence.verdict`) of the draws so far:
    h and J as they will be returned, i.e. mapped by the pseudo-posterior adjustment when
    there is one (an affine map mixes parameters, so its R-hat and ESS differ from the
    unadjusted draws')."""
    from bayes_ising.core import convergence

    samples = _constrained_draws(prepared, whitening, out["z"])
    theta = np.concatenate([samples["h"], samples["J"]], axis=-1)
    if prepared.adjustment is not None:
        theta = _apply_map(theta, prepared.adjustment)
    rhat, ess_bulk, ess_tail = convergence.draw_statistics(theta)
    return convergence.verdict(rhat, ess_bulk, ess_tail, int(out["diverging"].sum()),
                               num_chains=theta.shape[0])


def _sample(rng_key, prepared, run, whitening, chain_method=None, progress=True):
    """Run the chains; with ``run.max_draws`` in chunks of ``num_draws`` until every
    parameter is mixed (:func:`_mixing`) or the cap is reached. Returns (samples, sample
    stats, info dict: draws, chunks, stop reason, time)."""
    start = time.perf_counter()
    spec = run.spec
    method = _chain_method(run.num_chains, chain_method)
    num_devices = jax.local_device_count() if method == "parallel" else 1
    target_accept, target_accept_reason = _target_accept(spec, prepared.data)
    args = _NutsArgs(prepared.model_data, jnp.asarray(prepared.block_index),
                     jnp.asarray(whitening.centre), jnp.asarray(whitening.chol))
    checks = []

    def stop(out):
        verdict = _mixing(prepared, whitening, out)
        checks.append({"num_draws": int(out["z"].shape[1]), "max_rhat": verdict.max_rhat,
                       "min_ess_bulk": verdict.min_ess_bulk,
                       "min_ess_tail": verdict.min_ess_tail,
                       "num_divergent": verdict.num_divergent, "mixed": verdict.converged})
        return verdict.converged

    out = _run_nuts(rng_key, prepared.config._replace(spec=spec), args, whitening.z0,
                    num_warmup=run.num_warmup, num_draws=run.num_draws,
                    max_draws=run.max_draws, stop=stop if run.max_draws else None,
                    adapt_mass=whitening.adapt_mass, target_accept=target_accept,
                    max_tree_depth=spec.max_tree_depth, num_devices=num_devices,
                    progress=progress, desc=f"{run.likelihood} posterior",
                    algorithm=spec.algorithm, trajectory_length=spec.trajectory_length)
    samples = _constrained_draws(prepared, whitening, out.pop("z"))
    num_draws = int(out["diverging"].shape[1])
    info = {"chain_method": method, "num_draws": num_draws, "stop_rule": bool(run.max_draws),
            "checks": checks, "time_s": time.perf_counter() - start,
            "gradient_evaluations": int(out["num_steps"].sum()),
            "target_accept": target_accept, "target_accept_reason": target_accept_reason or ""}
    if run.max_draws:
        info["stopped"] = "mixed" if checks and checks[-1]["mixed"] else "max_draws"
    return samples, out, info


def _calibrate(rng_key, prepared, run, samples):
    """Pseudo-posterior calibration (:func:`_adjust`) and, for N > 22, the model check.
    Returns (samples, point estimates, adjust_info, model_check)."""
    laplace, num_neurons = prepared.laplace, prepared.config.num_neurons
    point, adjust_info, model_check = {}, {}, None
    if laplace is not None:
        point["h_map"] = laplace.theta[:num_neurons]
        point["J_map"] = laplace.theta[num_neurons:]
    if prepared.centre is not None:
        theta_c, adjust_info, model_check = prepared.centre
        theta = _apply_map(np.concatenate([samples["h"], samples["J"]], axis=-1),
                           prepared.adjustment)
        samples = {**samples, "h": theta[..., :num_neurons], "J": theta[..., num_neurons:]}
        point["h_centre"] = theta_c[:num_neurons]
        point["J_centre"] = theta_c[num_neurons:]
    elif num_neurons > ising.MAX_EXACT_NEURONS and laplace is not None:
        model_check = _model_check(rng_key, laplace.theta, prepared.data)
    return samples, point, adjust_info, model_check


def fit_posterior(
    rng_key,
    data,
    spec=None,
    *,
    likelihood=None,
    adjust=None,
    num_chains=None,
    num_draws=None,
    num_warmup=None,
    max_draws=None,
    init=None,
    pad_patterns=None,
    progress=True,
    chain_method=None,
):
    """Sample the posterior over (h, J) with NUTS; return an ArviZ DataTree.

    Parameters
    ----------
    rng_key : JAX PRNG key or int seed (recorded in ``attrs["seed"]``)
    data : :class:`bayes_ising.data.SpikeData` (or a (num_bins, N) ±1 array)
    spec : :class:`ModelSpec` or a path to a TOML file; default :func:`default_model_spec`
    likelihood : "exact" | "pseudo"; default ``spec.likelihood``
    adjust : "none" | "curvature" | "mode" | "mode+curvature" — pseudo-posterior calibration
        (module docstring); default ``spec.adjust`` for "pseudo", "none" for "exact"
    num_chains, num_draws, num_warmup : override the spec's sampler settings
    max_draws : the stop rule (default ``spec.max_draws`` when ``num_draws`` is the spec's,
        else 0: a smoke run with fewer draws is not extended): 0 samples exactly
        ``num_draws``; otherwise sampling goes on in chunks of ``num_draws`` until every h
        and J has R-hat ≤ 1.01 and bulk and tail ESS ≥ 400 and nothing diverged (checked
        after each chunk, :mod:`bayes_ising.core.convergence`) or ``max_draws`` draws per chain
        are reached — then ``attrs["stopped"]`` is "max_draws" and the printed summary says
        so
    init : warm start of the MAP search: (h, J), a theta vector, or a posterior DataTree
        (e.g. the same neurons in another state; an E+I fit for the E-only fit), matched
        by neuron id
    pad_patterns : pad the unique patterns with zero-count rows to at least this many, so
        that the fits of several states with the same N share one compiled sampler
    progress : show a progress bar
    chain_method : "parallel" (chains split over the CPU devices) or "vectorized"; default
        "parallel" when the chains fit on the devices, else "vectorized"

    Returns
    -------
    xarray.DataTree with groups ``posterior`` (``h`` (chain, draw, neuron), ``J`` (chain, draw,
    pair) with pair coordinates ``neuron_i``, ``neuron_j``, ``block``; neuron coordinate
    ``cell_type``; hyperparameters of hierarchical priors), ``sample_stats`` (diverging,
    tree_depth, n_steps, acceptance_rate, energy, lp, step_size), ``observed_data`` (num_bins,
    m, Q, firing_probability, patterns, counts, spins when small), ``point_estimate`` (MAP of the
    sampled density and the centre of the adjusted one) and root attributes ``model_spec``
    (JSON), ``likelihood``, ``adjust``, ``seed``, ``data_source``, ``bayes_ising_version``,
    ``neuron_ids``, ``cell_types``, ``selection`` (JSON, :mod:`bayes_ising.fit.provenance`: the
    data file, its SHA-256 and the selection), timings, gradient evaluations, the stop rule's
    record and (N > 22) ``model_check`` (JSON).

    Raises
    ------
    TooManyNeuronsError : likelihood "exact" with N > 22.
    Float64Error : JAX float64 is off.
    ModelSpecError, BayesIsingError : bad settings.
    """
    if not jax.config.jax_enable_x64:
        raise Float64Error(
            "fit_posterior needs JAX float64 (MAP, Hessian and enumeration); call "
            "bayes_ising.enable_x64() first"
        )
    start = time.perf_counter()
    run = _resolve(spec, likelihood, adjust, num_chains, num_draws, num_warmup, max_draws)
    key, seed = _as_key(rng_key)
    _, key_init, key_mcmc, key_adjust = jax.random.split(key, 4)
    selection = provenance.record(data)
    prepared = _prepare(key_adjust, data, run, init, pad_patterns)
    whitening = _whiten(key_init, prepared, run)
    samples, extra, info = _sample(key_mcmc, prepared, run, whitening, chain_method, progress)
    samples, point, adjust_info, model_check = _calibrate(key_adjust, prepared, run, samples)
    attrs = _attrs(run, prepared, info, seed, selection, adjust_info, model_check,
                   time.perf_counter() - start)
    return _build_tree(samples, extra, point, prepared.data, prepared.labels, prepared.blocks,
                       attrs)


def _attrs(run, prepared, info, seed, selection, adjust_info, model_check, wall_time):
    """Root attributes of the posterior DataTree (JSON-able scalars and JSON text)."""
    from bayes_ising import __version__

    laplace, data = prepared.laplace, prepared.data
    attrs = {
        "model_spec": run.spec.to_json(),
        "likelihood": run.likelihood,
        "adjust": run.adjust,
        "seed": json.dumps(seed),
        "data_source": data.source,
        "selection": json.dumps(to_jsonable(selection)),
        "bayes_ising_version": __version__,
        "neuron_ids": json.dumps(data.neuron_ids.tolist()),
        "cell_types": json.dumps(None if data.cell_types is None else data.cell_types.tolist()),
        "num_chains": run.num_chains,
        "num_draws": info["num_draws"],
        "num_warmup": run.num_warmup,
        "max_draws": run.max_draws,
        "stopped": info.get("stopped", "fixed draws"),
        "stop_checks": json.dumps(to_jsonable(info["checks"])),
        "chain_method": info["chain_method"],
        "mass_matrix": run.spec.mass_matrix,
        "algorithm": run.spec.algorithm,
        "preparation_time_s": prepared.time_s,
        "sampling_time_s": info["time_s"],
        "wall_time_s": wall_time,
        "gradient_evaluations": info["gradient_evaluations"],
        "target_accept": info["target_accept"],
        "target_accept_reason": info["target_accept_reason"],
        "map_converged": int(bool(laplace.converged)) if laplace is not None else -1,
        "map_iterations": laplace.iterations if laplace is not None else 0,
        "map_gradient_evaluations": laplace.gradient_evaluations if laplace is not None else 0,
        "adjust_info": json.dumps(to_jsonable(adjust_info)),
    }
    if model_check is not None:
        attrs["model_check"] = json.dumps(to_jsonable(model_check))
    return attrs


# --------------------------------------------------------------------------------------------
# Pseudo-posterior adjustment
# --------------------------------------------------------------------------------------------


def _prior_precision(spec, params, block_index, num_neurons):
    """Diagonal prior precision on theta = (h, J), J's at the MAP hyperparameters."""
    j_scale = _conditional_j_scale(spec, params, block_index)
    return np.concatenate([np.full(num_neurons, spec.h_scale**-2.0), j_scale**-2.0])


def _fisher_from_samples(rng_key, h, J, num_samples=20_000, V=None):
    """Fisher information of one bin as the covariance of the sufficient statistics
    (:func:`bayes_ising.core.ising.sufficient_features`: s_i, s_i s_j and, with the K-pairwise
    potential ``V`` (N+1,), the indicators [K = k]) over Gibbs samples of the model."""
    from bayes_ising.core import gibbs

    if V is None:
        samples = gibbs.sample_spins(rng_key, h, J, num_samples)
    else:
        samples = gibbs.sample_kpairwise_spins(rng_key, np.asarray(h)[None], np.asarray(J)[None],
                                               np.asarray(V)[None], num_samples)[0]
    return _covariance_of_counts(ising.sufficient_features(np.asarray(samples, np.float32),
                                                           potential=V is not None))


def _covariance_of_counts(features):
    """Sample covariance (P, P) float64 of features (S, P) valued in {−1, 0, 1}: the Gram
    matrix FᵀF by a float32 SYRK, exact while S < 2²⁴ (its entries are integer sums), then
    (FᵀF − S f̄ f̄ᵀ)/(S − 1) in float64 (at S = 20,000, P = 4,278: 3.8 s against 9.1 s for
    the centred float64 product, equal to 1e-14)."""
    num_samples = features.shape[0]
    if num_samples >= 2**24:
        centred = np.asarray(features, np.float64) - np.mean(features, axis=0, dtype=np.float64)
        return centred.T @ centred / (num_samples - 1)
    upper = np.triu(scipy.linalg.blas.ssyrk(1.0, np.asarray(features, np.float32).T, trans=0))
    gram = upper.astype(np.float64)
    gram += np.triu(gram, 1).T
    mean = features.sum(axis=0, dtype=np.float64) / num_samples
    return (gram - num_samples * np.outer(mean, mean)) / (num_samples - 1)


def _model_check(rng_key, theta, data):
    """Simulate the model at ``theta`` and compare with the data, a FitData
    (mle.model_check)."""
    from bayes_ising.fit import mle

    h, J = ising.unpack(jnp.asarray(theta), data.num_neurons)
    result = mle.model_check(rng_key, np.asarray(h), np.asarray(J), data)
    return result.to_dict() if hasattr(result, "to_dict") else result


def _curvature_transform(neg_hess_pl, fisher, num_bins, precision_prior):
    r"""W with :math:`W \Sigma_{PL} W^\top = \Sigma_F`: :math:`W = L_F L_{PL}^{-1}`, where
    :math:`\Sigma_{PL} = (H_{PL} + \Lambda)^{-1}` and :math:`\Sigma_F = (T F + \Lambda)^{-1}`
    (Cholesky factors L). ``precision_prior`` Λ: its diagonal (P,) or the full (P, P) matrix
    (the K-pairwise random-walk prior on V is tridiagonal). Returns W and the ratio of target
    to pseudo sds."""
    precision_prior = np.asarray(precision_prior, np.float64)
    if precision_prior.ndim == 1:
        precision_prior = np.diag(precision_prior)
    precision_pl = neg_hess_pl + precision_prior
    precision_full = num_bins * fisher + precision_prior
    # With E the exchange matrix and M the lower Cholesky factor of E A E, the lower Cholesky
    # factor of A⁻¹ is E M⁻ᵀ E, so W = L_F L_PL⁻¹ = E M_F⁻ᵀ M_PLᵀ E: two Cholesky factors and
    # triangular solves (~2.3 P³ flops; forming both covariances and their factors took ~10 P³)
    m_pl, m_full = _cholesky(precision_pl[::-1, ::-1]), _cholesky(precision_full[::-1, ::-1])
    if m_pl is None or m_full is None:  # not positive definite: reflected eigenvalues
        cov_pl, chol_pl = _inverse_and_cholesky(precision_pl)
        cov_full, chol_full = _inverse_and_cholesky(precision_full)
        transform = chol_full @ np.linalg.inv(chol_pl)
        return transform, np.sqrt(np.diag(cov_full) / np.diag(cov_pl))
    transform = scipy.linalg.solve_triangular(m_full, m_pl.T, lower=True, trans="T",
                                              check_finite=False)[::-1, ::-1]

    def variances(m):  # diag(A⁻¹) = diag(E M⁻ᵀ M⁻¹ E): column sums of (M⁻¹)², reversed
        inverse, _ = scipy.linalg.lapack.dtrtri(m, lower=1)
        return (np.tril(inverse) ** 2).sum(axis=0)[::-1]

    return np.ascontiguousarray(transform), np.sqrt(variances(m_full) / variances(m_pl))


#: the curvature adjustment is suspect when it changes the median posterior sd by more than
#: this factor (either way): diagnose then calls the posterior not valid
SD_RATIO_LIMIT = 4.0


def _centre_failure(adjust, info, check):
    """One line: which centre failed which check, its numbers, and what to try."""
    what = info.get("centre", "pseudo-posterior MAP")
    fit = info.get("boltzmann")
    learning = "" if fit is None else (
        f"; Boltzmann learning {'converged' if fit['converged'] else 'did NOT converge'} "
        f"(max |z| {fit['max_abs_z']:.1f}, {fit['iterations']} steps)")
    if check is None:
        failed = "did not converge"
    else:
        failed = f"fails the model check: {check['verdict']} ({check['reason']})"
    return (f"adjust={adjust!r}: the centre ({what}) {failed}{learning}; the adjusted "
            "posterior would be wrong, so the fit stopped. Try: fewer or busier neurons "
            "(--min-rate), more bins, or adjust = \"none\" (the unadjusted pseudo-posterior, "
            "with its own model check in `bayes-ising diagnose`)")


def _adjustment_centre(rng_key, adjust, laplace, config, data, block_index):
    r"""The centre :math:`\hat\theta_c` of the adjustment, checked: (theta, info, model_check).

    ``"mode"`` adjustments: the exact-likelihood MAP (N ≤ 22, enumeration) or the Boltzmann
    MLE started from the pseudo-MAP; ``"curvature"`` alone: the pseudo-MAP. For N > 22 the
    centre must pass :func:`bayes_ising.fit.validity.model_check` (simulated from random and
    data
    starts it reproduces the data's means and correlations) and for N ≤ 22 the MAP must have
    converged; otherwise :class:`ModelCheckError`, before any sampling. ``data`` is the fit's
    FitData (or spins: :func:`~bayes_ising.fit.fit_data.as_fit_data`).
    """
    data = as_fit_data(data)
    num_neurons = data.num_neurons
    key_mode, key_check = jax.random.split(rng_key)
    large = num_neurons > ising.MAX_EXACT_NEURONS
    info = {"theta_pl": "pseudo-posterior MAP"}
    centre = laplace.theta
    if "mode" in adjust and not large:
        exact_config = config._replace(kind="exact")
        exact_data = _data_arrays("exact", data.moments, None, None)
        full = _laplace(exact_config, exact_data, block_index, laplace.phi)
        centre = full.theta
        info["centre"] = "exact-likelihood MAP (enumeration)"
        info["centre_converged"] = bool(full.converged)
        if not full.converged:
            raise ModelCheckError(_centre_failure(adjust, info, None))
    elif "mode" in adjust:
        from bayes_ising.fit import mle

        h_pl, J_pl = ising.unpack(jnp.asarray(centre), num_neurons)
        fit = mle.fit_boltzmann(key_mode, data, init=(np.asarray(h_pl), np.asarray(J_pl)))
        centre = np.asarray(ising.pack(jnp.asarray(fit.h), jnp.asarray(fit.J)))
        info["centre"] = "full-likelihood MLE (Boltzmann learning)"
        info["centre_converged"] = bool(fit.converged)
        info["boltzmann"] = {
            "converged": bool(fit.converged), "iterations": int(fit.iterations),
            "wall_time_s": float(fit.wall_time_s),
            **{k: fit.moment_error[k] for k in ("max_abs_z", "max_abs_mean",
                                                 "max_abs_connected", "z_critical")}}
    check = _model_check(key_check, centre, data) if large else None
    if check is not None and not check["passed"]:
        raise ModelCheckError(_centre_failure(adjust, info, check))
    return centre, info, check


def _adjust(rng_key, adjust, samples, laplace, config, model_data, data, centre, info,
            block_index):
    """Map pseudo-posterior draws to θ̂_c + W(θ − θ̂_PL) (module docstring), the centre
    θ̂_c from :func:`_adjustment_centre`; records the curvature in ``info``."""
    num_neurons = data.num_neurons
    amap = _adjust_map(rng_key, adjust, laplace, config, model_data, data, centre, info,
                       block_index)
    adjusted = _apply_map(np.concatenate([samples["h"], samples["J"]], axis=-1), amap)
    return adjusted[..., :num_neurons], adjusted[..., num_neurons:]


def _apply_map(theta, amap):
    """θ (..., P) → θ̂_c + (θ − θ̂_PL) Wᵀ for ``amap`` = (θ̂_PL, θ̂_c, W) of :func:`_adjust_map`."""
    theta_pl, centre, transform = amap
    return centre + (theta - theta_pl) @ transform.T


def _adjust_map(rng_key, adjust, laplace, config, model_data, data, centre, info,
                block_index):
    """The adjustment's affine map (θ̂_PL (P,), θ̂_c (P,), W (P, P)); W = I without
    "curvature". It depends on the data and the centre only, not on the draws; records the
    curvature (``sd_ratio_median``) in ``info``; ``data`` is the fit's FitData."""
    num_bins, num_neurons = data.num_bins, data.num_neurons
    theta_pl = laplace.theta
    if "curvature" in adjust:
        h_c, J_c = ising.unpack(jnp.asarray(centre), num_neurons)
        if num_neurons <= ising.MAX_EXACT_NEURONS:
            fisher = np.asarray(ising.fisher_information(h_c, J_c))
            info["fisher"] = "exact (enumeration)"
        else:
            fisher = _fisher_from_samples(rng_key, np.asarray(h_c), np.asarray(J_c))
            info["fisher"] = "Gibbs samples"
        neg_hess_pl = np.asarray(_functions(config).neg_hessian(jnp.asarray(theta_pl),
                                                                model_data))
        precision_prior = _prior_precision(config.spec, laplace.params, block_index,
                                           num_neurons)
        transform, sd_ratio = _curvature_transform(neg_hess_pl, fisher, num_bins,
                                                   precision_prior)
        info["sd_ratio_median"] = float(np.median(sd_ratio))
        info["sd_ratio_limit"] = SD_RATIO_LIMIT
    else:
        transform = np.eye(theta_pl.shape[0])
    return np.asarray(theta_pl), np.asarray(centre), transform


# --------------------------------------------------------------------------------------------
# Many small fits at once (calibration studies)
# --------------------------------------------------------------------------------------------


def _prepare_patterns(patterns, counts, run, num_rows=None):
    """:class:`_Prepared` of a dataset given as unique patterns with counts (no cell types):
    the same reduction and MAP as :func:`_prepare`, for :func:`_fit_many`."""
    start = time.perf_counter()
    data = FitData.from_patterns(patterns, counts)
    model_data = _data_arrays(run.likelihood, data.moments, data.patterns, data.counts,
                              num_rows)
    spec = run.spec
    num_neurons = data.num_neurons
    config = _Config(run.likelihood, spec.replace(float32=False) if spec.float32 else spec,
                     num_neurons, 1)
    labels, blocks, block_index = pair_blocks(None, num_neurons)
    h0, j0 = _initial_theta(None, data, spec)
    laplace = _laplace(config, model_data, block_index, _initial_phi(config, h0, j0))
    return _Prepared(data, model_data, labels, blocks, block_index, config, laplace, None,
                     time.perf_counter() - start)


def _fit_many(rng_key, datasets, spec=None, *, adjusts=ADJUSTMENTS, num_chains=2,
              num_draws=200, num_warmup=100, progress=False, chain_method=None):
    """Exact and (adjusted) pseudo-posteriors of many small datasets, vectorised.

    Every dataset is prepared, whitened and adjusted by the pieces of :func:`fit_posterior`
    (:func:`_prepare_patterns`, :func:`_whitening_factor`, :func:`_constrained_draws`,
    :func:`_adjust`); only the sampling differs: the chains of all datasets run as lanes of
    one compiled program (vmapped, split over the CPU devices). Used by the calibration study
    (benchmarks/calibration.py).

    Parameters
    ----------
    datasets : list of (patterns (U, N) ±1, counts (U,)) with one N ≤ 12
    adjusts : the pseudo-posterior adjustments to return ("none" = unadjusted)

    Returns
    -------
    dict: "exact" and "pseudo/<adjust>" → draws of theta = pack(h, J), (K, chains·draws, P);
    "<kind>/diverging" → divergences per dataset; "settings" → dict.
    """
    spec = default_model_spec() if spec is None else spec
    num_neurons = datasets[0][0].shape[1]
    num_sets = len(datasets)
    method = _chain_method(num_sets * num_chains, chain_method)
    results = {"settings": {"num_datasets": num_sets, "num_chains": num_chains,
                            "num_draws": num_draws, "num_warmup": num_warmup,
                            "num_neurons": num_neurons}}
    key_exact, key_pseudo, key_adjust = jax.random.split(jnp.asarray(_as_key(rng_key)[0]), 3)
    for kind, key in (("exact", key_exact), ("pseudo", key_pseudo)):
        run = _Run(spec, kind, "none", num_chains, num_draws, num_warmup, 0)
        prepared = [_prepare_patterns(p, c, run) for p, c in datasets]
        samples, diverging = _sample_lanes(key, prepared, run, method, progress)
        results[f"{kind}/diverging"] = diverging
        theta = np.stack([np.concatenate([x["h"], x["J"]], axis=-1).reshape(
            num_chains * num_draws, -1) for x in samples])
        if kind == "exact":
            results["exact"] = theta
            continue
        for adjust in adjusts:
            if adjust == "none":
                results["pseudo/none"] = theta
                continue
            adjusted = [_adjusted_theta(key_adjust, adjust, x, prep) for x, prep
                        in zip(samples, prepared, strict=True)]
            results[f"pseudo/{adjust}"] = np.stack([a.reshape(num_chains * num_draws, -1)
                                                    for a in adjusted])
    return results


def _adjusted_theta(rng_key, adjust, samples, prepared):
    """Draws θ (C, D, P) of one pseudo-posterior mapped by ``adjust`` (the centre of
    :func:`_adjustment_centre`, the map of :func:`_adjust`), as in :func:`fit_posterior`."""
    args = (prepared.laplace, prepared.config)
    data, block_index = prepared.data, prepared.block_index
    theta_c, info, _ = _adjustment_centre(rng_key, adjust, *args, data, block_index)
    h, J = _adjust(jax.random.fold_in(rng_key, 1), adjust, samples, *args,
                   prepared.model_data, data, theta_c, info, block_index)
    return np.concatenate([h, J], axis=-1)


def _sample_lanes(rng_key, prepared, run, method, progress=False):
    """The chains of every prepared dataset as lanes of one compiled sampler; returns the
    constrained draws per dataset (list of dicts (C, D, ...)) and divergences (K,)."""
    num_sets, num_chains = len(prepared), run.num_chains
    num_devices = jax.local_device_count() if method == "parallel" else 1
    whitenings = [_Whitening(p.laplace.phi, _whitening_factor(p.laplace.hessian,
                                                              run.spec.float32), None, "none")
                  for p in prepared]
    lanes = lambda xs: jnp.repeat(jnp.stack(xs), num_chains, axis=0)  # noqa: E731
    args = _NutsArgs(jax.tree.map(lambda *xs: lanes(xs), *[p.model_data for p in prepared]),
                     lanes([jnp.asarray(p.block_index) for p in prepared]),
                     lanes([w.centre for w in whitenings]), lanes([w.chol for w in whitenings]))
    key_init, key_run = jax.random.split(rng_key)
    size = whitenings[0].centre.shape[0]
    z0 = np.asarray(jax.random.normal(key_init, (num_sets * num_chains, size)))
    spec = run.spec
    out = _run_nuts(key_run, prepared[0].config._replace(spec=spec), args, z0,
                    num_warmup=run.num_warmup, num_draws=run.num_draws,
                    target_accept=spec.target_accept, max_tree_depth=spec.max_tree_depth,
                    num_devices=num_devices, algorithm=spec.algorithm,
                    trajectory_length=spec.trajectory_length, shared_args=False,
                    progress=progress, desc=f"{run.likelihood} x {num_sets}")
    z = out["z"].reshape((num_sets, num_chains) + out["z"].shape[1:])
    samples = [_constrained_draws(p, w, z[k])
               for k, (p, w) in enumerate(zip(prepared, whitenings, strict=True))]
    return samples, out["diverging"].reshape(num_sets, -1).sum(axis=1)


# --------------------------------------------------------------------------------------------
# ArviZ DataTree
# --------------------------------------------------------------------------------------------


def _sample_stats(extra, algorithm="nuts"):
    num_steps = extra["num_steps"].astype(np.int64)
    depth = {"tree_depth": np.ceil(np.log2(num_steps + 1)).astype(np.int64)}
    return {
        "diverging": extra["diverging"].astype(bool),
        "n_steps": num_steps,
        **(depth if algorithm == "nuts" else {}),  # static HMC has no tree
        "acceptance_rate": extra["accept_prob"].astype(np.float64),
        "energy": extra["energy"].astype(np.float64),
        "lp": -extra["potential_energy"].astype(np.float64),
        "step_size": extra["step_size"].astype(np.float64),
    }


def _build_tree(samples, extra, point, data, labels, blocks, attrs):
    """The posterior DataTree of the draws, with ``data`` (the fit's FitData) as observed
    data."""
    import arviz_base

    moments = data.moments
    num_neurons = data.num_neurons
    i, j = ising.pair_indices(num_neurons)
    ids = np.asarray(data.neuron_ids, dtype=str)
    posterior = {"h": samples["h"], "J": samples["J"]}
    dims = {"h": ["neuron"], "J": ["pair"], "J_block_scale": ["coupling_block"],
            "J_lambda": ["pair"], "m": ["neuron"], "firing_probability": ["neuron"],
            "Q": ["neuron_i", "neuron_j"], "patterns": ["pattern", "neuron"],
            "counts": ["pattern"], "spins": ["bin", "neuron"],
            "h_map": ["neuron"], "J_map": ["pair"], "h_centre": ["neuron"],
            "J_centre": ["pair"]}
    for name in ("J_block_scale", "J_tau", "J_lambda", "J_slab_c2"):
        if name in samples:
            posterior[name] = samples[name]
    observed = {
        "num_bins": np.asarray(moments.num_bins, dtype=np.int64),
        "m": np.asarray(moments.m),
        "Q": np.asarray(moments.Q),
        "firing_probability": stats.probability_from_mean(moments.m),
        "patterns": data.patterns,
        "counts": data.counts,
    }
    if data.spins.size <= MAX_STORED_SPINS:
        observed["spins"] = data.spins
    groups = {"posterior": posterior,
              "sample_stats": _sample_stats(extra, attrs.get("algorithm", "nuts")),
              "observed_data": observed}
    coords = {"neuron": ids, "pair": np.arange(i.size), "neuron_i": ids, "neuron_j": ids,
              "coupling_block": np.asarray(blocks, dtype=str)}
    tree = arviz_base.from_dict(groups, coords=coords, dims=dims, attrs={"/": attrs},
                                check_conventions=False)
    if point:
        tree["point_estimate"] = xr.DataTree(xr.Dataset(
            {k: (dims[k], np.asarray(v)) for k, v in point.items()},
            coords={"neuron": ids, "pair": coords["pair"]},
        ))
    cell_types = (np.asarray(data.cell_types, dtype=str) if data.cell_types is not None
                  else np.full(num_neurons, "", dtype=str))
    pair_coords = {"neuron_i": ("pair", ids[i]), "neuron_j": ("pair", ids[j]),
                   "block": ("pair", np.asarray(labels, dtype=str))}
    for group in ("posterior", "point_estimate"):
        if group in tree.children:
            ds = tree[group].to_dataset()
            ds = ds.assign_coords(pair_coords).assign_coords(cell_type=("neuron", cell_types))
            tree[group] = xr.DataTree(ds)
    ds = tree["observed_data"].to_dataset()
    tree["observed_data"] = xr.DataTree(ds.assign_coords(cell_type=("neuron", cell_types)))
    for name, value in attrs.items():
        tree.attrs[name] = value
    return tree


def save_posterior(tree, path, force=False):
    """Write a posterior DataTree to netCDF (h5netcdf) atomically.

    Raises
    ------
    ExistingOutputError : ``path`` exists and ``force`` is false.
    """
    with atomic_path(path, force) as tmp:
        tree.to_netcdf(tmp, engine="h5netcdf")
    return path


def load_posterior(path, *, family="pairwise"):
    """Read a posterior written by :func:`save_posterior` (fully into memory; no pickle).

    ``family``: the energy family expected ("pairwise", the trees of :func:`fit_posterior`;
    "k_pairwise" / "independent" / None for any, the trees of
    :func:`bayes_ising.fit.kpairwise_fit.fit_posterior`, whose root attribute ``family`` says
    which).

    Raises
    ------
    DataError : the file is not a bayes_ising posterior, or one of another family.
    """
    try:
        with xr.open_datatree(path, engine="h5netcdf") as opened:
            tree = opened.load().copy(deep=True)
    except (OSError, ValueError) as err:
        if isinstance(err, FileNotFoundError):
            raise
        raise DataError(f"{path}: not a readable netCDF posterior ({err})") from None
    if "posterior" not in tree.children or "bayes_ising_version" not in tree.attrs:
        raise DataError(f"{path}: not a bayes_ising posterior (no posterior group or version)")
    stored = tree.attrs.get("family", "pairwise")
    if family is not None and stored != family:
        raise DataError(
            f"{path}: a {stored} posterior (bayes_ising.core.kpairwise); this reads {family} "
            "posteriors only (for K-pairwise fits use bayes-ising compare-families or the "
            "bayes_ising.core.kpairwise functions, docs/models.md)")
    return tree


# --------------------------------------------------------------------------------------------
# Convergence summary (for the CLI)
# --------------------------------------------------------------------------------------------


def convergence_summary(tree):
    """R-hat max, min bulk/tail ESS over h and J, divergences, the mixing verdict
    (:func:`bayes_ising.fit.posterior.mixing_verdict`), mean leapfrog steps, time."""
    from bayes_ising.fit.posterior import mixing_verdict

    mixing = mixing_verdict(tree)
    posterior = tree["posterior"]
    stats = tree["sample_stats"]
    wall = float(tree.attrs.get("wall_time_s", float("nan")))
    return {
        "max_rhat": mixing.max_rhat,
        "min_ess_bulk": mixing.min_ess_bulk,
        "min_ess_tail": mixing.min_ess_tail,
        "num_divergent": mixing.num_divergent,
        "converged": mixing.converged,
        "reasons": list(mixing.reasons),
        "mean_leapfrog_steps": float(np.asarray(stats["n_steps"]).mean()),
        "num_chains": int(posterior.sizes["chain"]),
        "num_draws": int(posterior.sizes["draw"]),
        "wall_time_s": wall,
        "min_ess_per_s": mixing.min_ess_bulk / wall if wall > 0 else float("nan"),
    }


