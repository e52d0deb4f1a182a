r"""Maximum-likelihood fits of the pairwise Ising model, and the study's uncertainty and
reliability methods (the baseline the Bayesian fits are compared against).

Convention (:mod:`bayes_ising.ising`): :math:`E(s) = -\sum_i h_i s_i - \sum_{i<j} J_{ij} s_i s_j`,
spins ±1, ``J`` symmetric with zero diagonal, ``theta = pack(h, J)``. The data enter the exact
likelihood only through the moments :math:`\mu = (m_i;\ Q_{ij}\,[i<j])`,

.. math::

    \tfrac1T \log L(\theta) = \theta^\top \mu - \log Z(\theta), \qquad
    \nabla = \mu - \langle f \rangle_\theta, \qquad
    -\nabla^2 = F(\theta) = \mathrm{Cov}_\theta[f],

so the MLE is moment matching and the problem is convex. Fits:

* :func:`fit_independent` — closed form :math:`h_i = \operatorname{atanh} m_i`, J = 0;
* :func:`fit_exact` — damped Newton with the exact Fisher information (N ≤ 22);
* :func:`fit_pseudo` — L-BFGS on the pseudolikelihood, any N (Besag 1975; Aurell & Ekeberg 2012);
* :func:`fit_boltzmann` — Boltzmann learning with persistent Gibbs chains, for N too large to
  enumerate, started from the pseudolikelihood solution (Ackley, Hinton & Sejnowski 1985;
  Tieleman 2008).

Every fit returns a :class:`FitResult`. :func:`model_check` simulates a fitted model from random
and from data starts and names a degenerate fit. :func:`adaptive_metropolis` is Haario, Saksman &
Tamminen (2001); :func:`restart_reliability` and :func:`firing_threshold_rule` are the study's
reliability methods.

**Where the MLE does not exist.** A neuron that never (always) fires has
:math:`\hat h_i = -\infty\ (+\infty)`; a pair that never fires together (more generally, any of
the four joint states of a pair never seen) has :math:`\hat J_{ij} = \pm\infty`. These are
detected from the data before fitting and reported as warnings that name the neurons. By
default (``l2 = 0``) inactive neurons are set to ``J_i· = 0`` and a finite field that reproduces
their mean to within the tolerance, and boundary couplings go as far as the moment tolerance
requires (their values then reflect the tolerance, not the data). ``l2 > 0`` adds
:math:`\tfrac{l_2}{2}\sum_{i<j} J_{ij}^2` to the per-bin negative log-likelihood — the MAP under a
prior :math:`J_{ij} \sim \mathcal N(0, 1/(T l_2))` — which makes every coupling finite.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import time
import warnings
from dataclasses import dataclass, field

import jax
import jax.numpy as jnp
import numpy as np
import scipy.optimize
import scipy.stats

from . import ising
from .errors import BayesIsingError, DataError

__all__ = [
    "FitResult",
    "MLEWarning",
    "fit_independent",
    "fit_exact",
    "fit_pseudo",
    "fit_boltzmann",
    "model_check",
    "adaptive_metropolis",
    "mle_parameter_draws",
    "restart_reliability",
    "firing_threshold_rule",
    "boundary_report",
    "moment_errors",
]


class MLEWarning(UserWarning):
    """A fit that is finite only by convention (non-existent MLE) or did not converge."""


# --------------------------------------------------------------------------------------------
# Result type
# --------------------------------------------------------------------------------------------


@dataclass
class FitResult:
    """One maximum-likelihood fit.

    Attributes
    ----------
    h : ndarray (N,)
    J : ndarray (N, N), symmetric, zero diagonal (each pair once in the energy)
    method : "independent" | "exact" | "pseudo" | "boltzmann"
    neuron_ids : ndarray (N,) of str
    moment_error : dict with ``max_abs_mean`` = max_i |m_i^model − m_i^data|, ``max_abs_pair``
        = max_{i<j} |Q_ij^model − Q_ij^data|, ``max_abs_connected`` (same for C = Q − m mᵀ) and
        ``source`` ("exact" enumeration or "sampled"; sampled errors also carry their noise).
    iterations : int, optimiser iterations (Newton steps, L-BFGS iterations, learning steps)
    wall_time_s : float
    settings : dict, everything needed to rerun the fit
    converged : bool
    warnings : list of str (also emitted as :class:`MLEWarning`)
    """

    h: np.ndarray
    J: np.ndarray
    method: str
    neuron_ids: np.ndarray
    moment_error: dict
    iterations: int
    wall_time_s: float
    settings: dict
    converged: bool
    warnings: list = field(default_factory=list)

    @property
    def num_neurons(self):
        return int(self.h.shape[0])

    @property
    def theta(self):
        """Flat parameters in :func:`ising.pack` order."""
        return np.asarray(ising.pack(self.h, self.J))

    def to_dict(self):
        """The FIT.json layout: neurons, h, J (N×N nested lists), moment_error, method, ..."""
        from . import __version__

        return {
            "neurons": [str(n) for n in self.neuron_ids],
            "h": [float(v) for v in self.h],
            "J": [[float(v) for v in row] for row in self.J],
            "moment_error": dict(self.moment_error),
            "method": self.method,
            "iterations": int(self.iterations),
            "wall_time_s": float(self.wall_time_s),
            "converged": bool(self.converged),
            "settings": dict(self.settings),
            "warnings": list(self.warnings),
            "bayes_ising_version": __version__,
        }


# --------------------------------------------------------------------------------------------
# Data handling
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Data:
    num_bins: int
    m: np.ndarray  # (N,)
    Q: np.ndarray  # (N, N), unit diagonal
    neuron_ids: np.ndarray
    spins: np.ndarray | None  # (T, N) int8, None when given moments only


def _check_spins(spins):
    spins = np.asarray(spins)
    if spins.ndim != 2 or spins.shape[0] < 1 or spins.shape[1] < 1:
        raise DataError(f"spins must be a (num_bins, N) array, got shape {spins.shape}")
    values = np.unique(spins)
    if not np.all(np.isin(values, (-1, 1))):
        raise DataError(
            f"spins must be ±1 (convert 0/1 rasters with bayes_ising.data.to_spins), "
            f"found values {values[:5].tolist()}"
        )
    return spins.astype(np.int8)


def _prepare(data, neuron_ids=None):
    """Accept a SpikeData, a (T, N) ±1 array, or a Moments (num_bins, m, Q)."""
    spins = None
    if hasattr(data, "spins") and hasattr(data, "neuron_ids"):
        spins = _check_spins(data.spins)
        neuron_ids = data.neuron_ids if neuron_ids is None else neuron_ids
    elif hasattr(data, "m") and hasattr(data, "Q") and hasattr(data, "num_bins"):
        num_bins = int(data.num_bins)
        m = np.asarray(data.m, np.float64)
        Q = np.asarray(data.Q, np.float64)
    else:
        spins = _check_spins(data)
    if spins is not None:
        num_bins = spins.shape[0]
        s = spins.astype(np.float64)
        m = s.mean(axis=0)
        Q = (s.T @ s) / num_bins
    num_neurons = m.shape[0]
    if neuron_ids is None:
        neuron_ids = np.array([str(i) for i in range(num_neurons)])
    neuron_ids = np.asarray([str(n) for n in neuron_ids])
    if neuron_ids.shape != (num_neurons,):
        raise DataError(f"{neuron_ids.shape[0]} neuron ids for {num_neurons} neurons")
    return _Data(num_bins, m, Q, neuron_ids, spins)


def _data_mu(m, Q):
    """Data moments in pack order: (m, Q[i<j])."""
    i, j = ising.pair_indices(m.shape[0])
    return np.concatenate([m, Q[i, j]])


def boundary_report(data, neuron_ids=None):
    """Where the maximum-likelihood estimate does not exist (infinite parameters).

    A neuron with :math:`m_i = \\pm 1` (never or always active) has :math:`h_i = \\pm\\infty`;
    among the other neurons, a pair whose 2×2 table of joint states (−−, −+, +−, ++) has an
    empty cell has :math:`J_{ij} = \\pm\\infty` (e.g. never firing together: ``++`` empty,
    :math:`J_{ij} \\to -\\infty`). Higher-order empty faces of the marginal polytope are not
    checked; a fit that does not converge reports them as non-convergence.

    Parameters
    ----------
    data : SpikeData, (T, N) ±1 spins, or Moments

    Returns
    -------
    dict with ``silent`` and ``always_on`` (lists of neuron indices), ``pairs`` (list of
    ``(i, j, cell)`` with cell one of "++", "+-", "-+", "--", the empty joint state) and
    ``messages`` (list of str naming the neurons by id).
    """
    d = data if isinstance(data, _Data) else _prepare(data, neuron_ids)
    ids = d.neuron_ids
    # a joint frequency below half a count is zero (moments of binary data are multiples of 1/T)
    floor = 0.5 / d.num_bins
    p_active = (1.0 + d.m) / 2.0
    silent = [int(k) for k in np.flatnonzero(p_active < floor)]
    always_on = [int(k) for k in np.flatnonzero(p_active > 1.0 - floor)]
    inactive = set(silent) | set(always_on)
    pairs = []
    i_idx, j_idx = ising.pair_indices(d.m.shape[0])
    for i, j in zip(i_idx, j_idx, strict=True):
        if i in inactive or j in inactive:
            continue
        for a, b, cell in ((1, 1, "++"), (1, -1, "+-"), (-1, 1, "-+"), (-1, -1, "--")):
            p = (1.0 + a * d.m[i] + b * d.m[j] + a * b * d.Q[i, j]) / 4.0
            if p < floor:
                pairs.append((int(i), int(j), cell))
    messages = []
    if silent:
        messages.append(
            f"neurons that never fire (h -> -inf, couplings not identified): "
            f"{', '.join(ids[k] for k in silent)}"
        )
    if always_on:
        messages.append(
            f"neurons that fire in every bin (h -> +inf, couplings not identified): "
            f"{', '.join(ids[k] for k in always_on)}"
        )
    meaning = {
        "++": "never fire together (J -> -inf)",
        "--": "are never silent together (J -> -inf)",
        "+-": "first fires only when the second fires (J -> +inf)",
        "-+": "second fires only when the first fires (J -> +inf)",
    }
    for cell in ("++", "--", "+-", "-+"):
        named = [f"({ids[i]}, {ids[j]})" for i, j, c in pairs if c == cell]
        if named:
            messages.append(
                f"{len(named)} pair(s) {meaning[cell]}, so the plain MLE does not exist: "
                f"{', '.join(named[:20])}{' ...' if len(named) > 20 else ''}"
            )
    return {"silent": silent, "always_on": always_on, "pairs": pairs, "messages": messages}


def _inactive_field(p_active, tol):
    """Finite field of an inactive neuron: its model mean is within ``tol`` of ±1."""
    return np.where(p_active > 0.5, 1.0, -1.0) * np.arctanh(1.0 - tol)


def moment_errors(h, J, data, *, model_moments=None):
    """Max |model − data| of means, pair moments Q (i<j) and connected correlations C (i<j).

    ``model_moments = (m, Q)`` gives the model's moments; otherwise they are enumerated
    exactly (N ≤ 22).
    """
    d = data if isinstance(data, _Data) else _prepare(data)
    if model_moments is None:
        model_moments = ising.exact_moments(jnp.asarray(h), jnp.asarray(J))
    m_model, Q_model = (np.asarray(a, np.float64) for a in model_moments)
    i, j = ising.pair_indices(d.m.shape[0])
    C_model = Q_model - np.outer(m_model, m_model)
    C_data = d.Q - np.outer(d.m, d.m)
    pair = np.abs(Q_model - d.Q)[i, j]
    connected = np.abs(C_model - C_data)[i, j]
    return {
        "max_abs_mean": float(np.max(np.abs(m_model - d.m))),
        "max_abs_pair": float(np.max(pair)) if pair.size else 0.0,
        "max_abs_connected": float(np.max(connected)) if connected.size else 0.0,
    }


def _emit(messages, stacklevel=3):
    for message in messages:
        warnings.warn(message, MLEWarning, stacklevel=stacklevel)


def _check_l2(l2):
    l2 = float(l2)
    if not np.isfinite(l2) or l2 < 0:
        raise BayesIsingError(f"l2 must be a finite number >= 0, got {l2}")
    return l2


def _assemble(d, active, theta_active, tol):
    """Full (h, J) from the fit on active neurons; inactive ones get J = 0 and a finite h."""
    num_neurons = d.m.shape[0]
    h = np.zeros(num_neurons)
    J = np.zeros((num_neurons, num_neurons))
    idx = np.flatnonzero(active)
    if idx.size:
        h_a, J_a = ising.unpack(jnp.asarray(theta_active), idx.size)
        h[idx] = np.asarray(h_a)
        J[np.ix_(idx, idx)] = np.asarray(J_a)
    inactive = np.flatnonzero(~active)
    h[inactive] = _inactive_field((1.0 + d.m[inactive]) / 2.0, tol)
    return h, J


def _active_mask(report, num_neurons):
    active = np.ones(num_neurons, bool)
    active[report["silent"] + report["always_on"]] = False
    return active


def _independent_theta(m, num_neurons):
    return np.concatenate([np.arctanh(np.clip(m, -1 + 1e-12, 1 - 1e-12)),
                           np.zeros(ising.num_pairs(num_neurons))])


# --------------------------------------------------------------------------------------------
# Independent model
# --------------------------------------------------------------------------------------------


def fit_independent(spins, *, neuron_ids=None):
    r"""Independent model: J = 0, :math:`h_i = \operatorname{atanh}(m_i)` (closed form MLE).

    A neuron that never (always) fires has :math:`h_i = \mp\infty`; its firing probability is
    clipped to ``[1/(2T), 1 − 1/(2T)]`` (half a count), giving a finite field, with a warning
    naming the neuron.

    Parameters
    ----------
    spins : SpikeData, (T, N) ±1 array, or Moments
    """
    start = time.perf_counter()
    d = _prepare(spins, neuron_ids)
    num_neurons = d.m.shape[0]
    floor = 0.5 / d.num_bins
    p_active = np.clip((1.0 + d.m) / 2.0, floor, 1.0 - floor)
    h = np.arctanh(2.0 * p_active - 1.0)
    report = boundary_report(d)
    messages = []
    inactive = report["silent"] + report["always_on"]
    if inactive:
        messages.append(
            "firing probability clipped to [1/(2T), 1 - 1/(2T)] (half a count) for neurons "
            f"that never or always fire: {', '.join(d.neuron_ids[k] for k in inactive)}; "
            "their fields are finite by this convention"
        )
    _emit(messages)
    J = np.zeros((num_neurons, num_neurons))
    m_model = np.tanh(h)
    errors = moment_errors(h, J, d, model_moments=(m_model, np.outer(m_model, m_model)
                                                    + np.diag(1 - m_model**2)))
    errors["source"] = "exact"
    return FitResult(h=h, J=J, method="independent", neuron_ids=d.neuron_ids,
                     moment_error=errors, iterations=0,
                     wall_time_s=time.perf_counter() - start,
                     settings={"method": "independent", "num_bins": d.num_bins,
                               "clip": "half a count"},
                     converged=True, warnings=messages)


# --------------------------------------------------------------------------------------------
# Exact MLE: damped Newton with the exact Fisher information
# --------------------------------------------------------------------------------------------


def _exact_objective(theta, mu, l2, num_neurons):
    """Per-bin negative log-likelihood + L2: log Z(θ) − θ·μ + (l2/2) Σ_{i<j} J_ij²."""
    h, J = ising.unpack(theta, num_neurons)
    couplings = theta[num_neurons:]
    return ising.log_partition(h, J) - theta @ mu + 0.5 * l2 * couplings @ couplings


@functools.partial(jax.jit, static_argnames=("num_neurons",))
def _exact_value(theta, mu, l2, num_neurons):
    return _exact_objective(theta, mu, l2, num_neurons)


@functools.partial(jax.jit, static_argnames=("num_neurons",))
def _exact_value_and_grad(theta, mu, l2, num_neurons):
    return jax.value_and_grad(_exact_objective)(theta, mu, l2, num_neurons)


@functools.partial(jax.jit, static_argnames=("num_neurons",))
def _newton_direction(theta, mu, l2, num_neurons):
    """Value, gradient and the Newton direction −(F + l2·I_J)⁻¹ g.

    The Hessian of log Z is the Fisher information (``ising.fisher_information``); forming it
    by ``jax.hessian`` of the split-half log Z is the same matrix and ~2× faster at N = 15.
    """
    value, grad = jax.value_and_grad(_exact_objective)(theta, mu, l2, num_neurons)
    hess = jax.hessian(_exact_objective)(theta, mu, l2, num_neurons)
    # A tiny ridge keeps the solve defined when a boundary direction (J -> ±inf) makes F
    # nearly singular; it is far below the curvature of any identified direction.
    ridge = 1e-12 * jnp.trace(hess) / hess.shape[0]
    direction = -jnp.linalg.solve(hess + ridge * jnp.eye(hess.shape[0]), grad)
    return value, grad, direction


def _newton(theta, mu, l2, num_neurons, tol, max_iterations, max_step=2.0):
    """Damped Newton: Armijo backtracking, steps capped at ``max_step`` in any coordinate.

    Stops when the largest gradient entry (= moment error when l2 = 0) is ≤ tol.
    """
    theta = jnp.asarray(theta, jnp.float64)
    mu = jnp.asarray(mu, jnp.float64)
    l2 = jnp.asarray(l2, jnp.float64)
    converged = False
    iterations = 0
    for iterations in range(max_iterations + 1):  # noqa: B007
        value, grad, direction = _newton_direction(theta, mu, l2, num_neurons)
        if float(jnp.max(jnp.abs(grad))) <= tol:
            converged = True
            break
        if iterations == max_iterations:
            break
        step = min(1.0, max_step / max(float(jnp.max(jnp.abs(direction))), 1e-300))
        slope = float(grad @ direction)
        value = float(value)
        for _ in range(40):
            trial = theta + step * direction
            trial_value = float(_exact_value(trial, mu, l2, num_neurons))
            # Armijo, with a rounding allowance: near the optimum f changes below 1e-15·|f|.
            if trial_value <= value + 1e-4 * step * slope + 1e-13 * abs(value):
                break
            step *= 0.5
        theta = trial
    return theta, iterations, converged


def fit_exact(spins, l2=0.0, tol=1e-6, *, neuron_ids=None, max_iterations=100, init=None):
    r"""Exact maximum likelihood by moment matching (N ≤ ``ising.MAX_EXACT_NEURONS``).

    Minimises :math:`\log Z(\theta) - \theta^\top\mu + \tfrac{l_2}{2}\sum_{i<j}J_{ij}^2` (per-bin
    negative log-likelihood, convex) by damped Newton steps with the exact Hessian (the Fisher
    information), which converge quadratically: on ``retina15.mat`` (N = 15) about a dozen steps
    to 1e-6. Stops when every gradient entry is ≤ ``tol``; with ``l2 = 0`` these are the moment
    errors |m^model − m^data| and |Q^model − Q^data|.

    Boundary data (see :func:`boundary_report`): neurons that never/always fire are fitted as
    J_i· = 0 with a field whose model mean is within ``tol`` of ±1 (the rest is fitted exactly;
    a constant spin only shifts the others' fields); pairs with an empty joint state have no
    finite MLE: with ``l2 = 0`` their couplings go as far as ``tol`` requires (the values then
    reflect ``tol``), with ``l2 > 0`` they are finite MAP values. Both cases warn, naming them.

    Parameters
    ----------
    spins : SpikeData, (T, N) ±1 array, or Moments
    l2 : float, ≥ 0; the MAP under :math:`J_{ij} \sim \mathcal N(0, 1/(T l_2))`
    tol : float, the stopping tolerance on the largest gradient entry
    init : optional (h, J) start; default the independent model

    Raises
    ------
    TooManyNeuronsError : N > MAX_EXACT_NEURONS (use fit_pseudo / fit_boltzmann)
    Float64Error : JAX float64 off
    """
    start = time.perf_counter()
    l2 = _check_l2(l2)
    d = _prepare(spins, neuron_ids)
    num_neurons = d.m.shape[0]
    ising.check_exact(num_neurons, "fit_exact")
    report = boundary_report(d)
    messages = list(report["messages"])
    active = _active_mask(report, num_neurons)
    idx = np.flatnonzero(active)
    num_active = idx.size
    iterations, converged = 0, True
    theta = np.zeros(0)
    if num_active:
        m_a, Q_a = d.m[idx], d.Q[np.ix_(idx, idx)]
        mu = _data_mu(m_a, Q_a)
        if init is None:
            theta0 = _independent_theta(m_a, num_active)
        else:
            h0, J0 = (np.asarray(a, np.float64) for a in init)
            theta0 = np.asarray(ising.pack(h0[idx], J0[np.ix_(idx, idx)]))
        theta, iterations, converged = _newton(theta0, mu, l2, num_active, tol, max_iterations)
        theta = np.asarray(theta)
    h, J = _assemble(d, active, theta, tol)
    errors = moment_errors(h, J, d)
    errors["source"] = "exact"
    if report["pairs"]:
        messages.append(
            "the couplings of those pairs are finite only because of "
            + (f"the L2 penalty (l2 = {l2:g})" if l2 > 0 else
               f"the stopping tolerance (tol = {tol:g}); pass l2 > 0 (e.g. 1e-3) for a "
               "finite MAP value")
        )
    if not np.all(np.isfinite(h)) or not np.all(np.isfinite(J)):
        raise FloatingPointError("fit_exact produced non-finite parameters (a bug)")
    if not converged:
        messages.append(
            f"fit_exact did not reach tol = {tol:g} in {max_iterations} Newton steps "
            f"(max moment error {max(errors['max_abs_mean'], errors['max_abs_pair']):.3g})"
        )
    _emit(messages)
    return FitResult(
        h=h, J=J, method="exact", neuron_ids=d.neuron_ids, moment_error=errors,
        iterations=iterations, wall_time_s=time.perf_counter() - start,
        settings={"method": "exact", "l2": l2, "tol": tol, "max_iterations": max_iterations,
                  "num_bins": d.num_bins, "optimizer": "damped Newton (exact Fisher)",
                  "inactive_neurons": [d.neuron_ids[k] for k in np.flatnonzero(~active)],
                  "boundary_pairs": [[d.neuron_ids[i], d.neuron_ids[j], c]
                                     for i, j, c in report["pairs"]]},
        converged=converged, warnings=messages,
    )


# --------------------------------------------------------------------------------------------
# Pseudolikelihood MLE
# --------------------------------------------------------------------------------------------


def _unique_patterns(spins):
    patterns, counts = np.unique(spins, axis=0, return_counts=True)
    return patterns.astype(np.int8), counts.astype(np.int64)


def _from_lattice_gas(phi, num_neurons):
    r"""0/1 ("lattice gas") parameters → ±1 parameters ``theta`` (pack order).

    With :math:`x = (s+1)/2`, :math:`-E = \sum_i a_i x_i + \sum_{i<j} b_{ij} x_i x_j +`
    const for :math:`a_i = 2h_i - 2\sum_j J_{ij}`, :math:`b_{ij} = 4J_{ij}`. For sparse spiking
    the 0/1 statistics are nearly uncorrelated, so optimisers converge far faster in
    :math:`\phi = (a, b)` than in (h, J); the objective is the same function.
    """
    couplings = phi[..., num_neurons:] / 4.0
    J = ising.couplings_to_matrix(couplings, num_neurons)
    h = phi[..., :num_neurons] / 2.0 + jnp.sum(J, axis=-1)
    return jnp.concatenate([h, couplings], axis=-1)


def _to_lattice_gas(theta, num_neurons):
    """Inverse of :func:`_from_lattice_gas`."""
    theta = jnp.asarray(theta)
    J = ising.couplings_to_matrix(theta[..., num_neurons:], num_neurons)
    a = 2.0 * theta[..., :num_neurons] - 2.0 * jnp.sum(J, axis=-1)
    return jnp.concatenate([a, 4.0 * theta[..., num_neurons:]], axis=-1)


def _pseudo_objective(phi, patterns, counts, l2, num_neurons):
    """Per-bin negative log pseudolikelihood + (l2/2) Σ_{i<j} J_ij², in 0/1 coordinates."""
    theta = _from_lattice_gas(phi, num_neurons)
    h, J = ising.unpack(theta, num_neurons)
    couplings = theta[num_neurons:]
    num_bins = jnp.sum(counts)
    return (-ising.log_pseudolikelihood(h, J, patterns, counts) / num_bins
            + 0.5 * l2 * couplings @ couplings)


@functools.partial(jax.jit, static_argnames=("num_neurons",))
def _pseudo_value_and_grad(theta, patterns, counts, l2, num_neurons):
    """One value+grad: a (U×N)·(N×N) product forward and an (N×U)·(U×N) one backward."""
    return jax.value_and_grad(_pseudo_objective)(theta, patterns, counts, l2, num_neurons)


def _lbfgs(value_and_grad, theta0, max_iterations, gtol):
    def fun(x):
        value, grad = value_and_grad(jnp.asarray(x))
        return float(value), np.asarray(grad, np.float64)

    result = scipy.optimize.minimize(
        fun, np.asarray(theta0, np.float64), jac=True, method="L-BFGS-B",
        options={"maxiter": int(max_iterations), "gtol": gtol, "ftol": 1e-15, "maxcor": 20},
    )
    return result.x, int(result.nit), bool(result.success), str(result.message)


def _model_moments_for_report(rng_key, h, J, num_chains, num_sweeps):
    """Exact moments for N ≤ 20 (cheap), Gibbs estimates otherwise; (m, Q, source, noise)."""
    num_neurons = h.shape[0]
    if num_neurons <= 20:
        m, Q = ising.exact_moments(jnp.asarray(h), jnp.asarray(J))
        return np.asarray(m), np.asarray(Q), "exact", None
    m, Q, noise = _sampled_moments(rng_key, h, J, num_chains=num_chains, num_sweeps=num_sweeps,
                                   burn_in=num_sweeps // 2)
    return m, Q, "sampled", noise


def fit_pseudo(spins, l2=0.0, *, neuron_ids=None, tol=1e-8, max_iterations=2000, init=None,
               rng_key=None, num_chains=512, num_sweeps=400):
    r"""Pseudolikelihood MLE (any N), L-BFGS on

    .. math::

        -\tfrac1T \sum_u c_u \sum_i \log\sigma\big(2 s_{ui} H_{ui}\big)
        + \tfrac{l_2}{2}\sum_{i<j} J_{ij}^2, \qquad H_{ui} = h_i + \sum_j J_{ij} s_{uj},

    over the unique patterns u with counts :math:`c_u` (value and gradient jit-compiled, float64).
    The fit is reported with its moment errors: exact by enumeration for N ≤ 20, otherwise from
    Gibbs chains (``rng_key``, default ``PRNGKey(0)``, recorded in ``settings``). The
    pseudolikelihood optimum is not the likelihood's: check large-N fits with
    :func:`model_check` and refine them with :func:`fit_boltzmann`.

    Boundary data are handled as in :func:`fit_exact` (inactive neurons fixed; couplings of
    pairs with an empty joint state are finite only through ``tol`` or ``l2``).

    Parameters
    ----------
    spins : SpikeData or (T, N) ±1 array (the patterns are needed, not only moments)
    l2 : float ≥ 0
    tol : L-BFGS gradient tolerance (max |projected gradient|)
    """
    start = time.perf_counter()
    l2 = _check_l2(l2)
    d = _prepare(spins, neuron_ids)
    if d.spins is None:
        raise DataError("fit_pseudo needs the spins (patterns), not only their moments")
    num_neurons = d.m.shape[0]
    report = boundary_report(d)
    messages = list(report["messages"])
    active = _active_mask(report, num_neurons)
    idx = np.flatnonzero(active)
    iterations, converged, status = 0, True, "no active neurons"
    theta = np.zeros(0)
    num_patterns = 0
    if idx.size:
        patterns, counts = _unique_patterns(d.spins[:, idx])
        num_patterns = patterns.shape[0]
        if init is None:
            theta0 = _independent_theta(d.m[idx], idx.size)
        else:
            h0, J0 = (np.asarray(a, np.float64) for a in init)
            theta0 = np.asarray(ising.pack(h0[idx], J0[np.ix_(idx, idx)]))
        s = jnp.asarray(patterns, jnp.float64)
        c = jnp.asarray(counts, jnp.float64)
        value_and_grad = functools.partial(_pseudo_value_and_grad, patterns=s, counts=c,
                                           l2=jnp.float64(l2), num_neurons=int(idx.size))
        phi, iterations, converged, status = _lbfgs(
            value_and_grad, _to_lattice_gas(theta0, idx.size), max_iterations, tol)
        theta = np.asarray(_from_lattice_gas(jnp.asarray(phi), idx.size))
    h, J = _assemble(d, active, theta, 1e-6)
    if rng_key is None:
        rng_key, seed = jax.random.PRNGKey(0), 0
    else:
        seed = None
    m_model, Q_model, source, noise = _model_moments_for_report(rng_key, h, J, num_chains,
                                                                num_sweeps)
    errors = moment_errors(h, J, d, model_moments=(m_model, Q_model))
    errors["source"] = source
    if noise is not None:
        errors.update(noise)
    if report["pairs"]:
        messages.append(
            "the couplings of those pairs are finite only because of "
            + (f"the L2 penalty (l2 = {l2:g})" if l2 > 0 else
               "the optimiser's stopping rule; pass l2 > 0 for finite MAP values")
        )
    if not converged:
        messages.append(f"fit_pseudo: L-BFGS stopped without converging: {status}")
    _emit(messages)
    return FitResult(
        h=h, J=J, method="pseudo", neuron_ids=d.neuron_ids, moment_error=errors,
        iterations=iterations, wall_time_s=time.perf_counter() - start,
        settings={"method": "pseudo", "l2": l2, "tol": tol, "max_iterations": max_iterations,
                  "num_bins": d.num_bins, "num_unique_patterns": int(num_patterns),
                  "optimizer": "L-BFGS-B (scipy), jit value+grad", "status": status,
                  "moment_check": {"source": source, "seed": seed, "num_chains": num_chains,
                                   "num_sweeps": num_sweeps} if source == "sampled"
                  else {"source": source},
                  "inactive_neurons": [d.neuron_ids[k] for k in np.flatnonzero(~active)],
                  "boundary_pairs": [[d.neuron_ids[i], d.neuron_ids[j], cc]
                                     for i, j, cc in report["pairs"]]},
        converged=converged, warnings=messages,
    )
