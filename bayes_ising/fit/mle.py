r"""Maximum-likelihood fits of the pairwise Ising model, and the study's uncertainty and
reliability methods (the baseline the Bayesian fits are compared against).

Convention (:mod:`bayes_ising.core.ising`): :math:`E(s) = -\sum_i h_i s_i - \sum_{i<j} J_{ij} s_i
s_j`,
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

import functools
import math
import time
import warnings
from dataclasses import dataclass, field
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import scipy.optimize
import scipy.stats

from bayes_ising.core import gibbs, ising, limits, stats
from bayes_ising.core import pseudolikelihood as pl
from bayes_ising.errors import BayesIsingError, DataError
from bayes_ising.fit import validity, walk
from bayes_ising.fit.fit_data import as_fit_data

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
        from bayes_ising import __version__

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


# The data of a fit: :class:`bayes_ising.fit.fit_data.FitData`, prepared once
# (:func:`~bayes_ising.fit.fit_data.as_fit_data`) and passed down.


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
    d = as_fit_data(data, neuron_ids)
    ids = d.neuron_ids
    silent, always_on, pairs = d.boundary
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
    return {"silent": list(silent), "always_on": list(always_on), "pairs": list(pairs),
            "messages": messages}


def _inactive_field(p_active, tol):
    """Finite field of an inactive neuron: its model mean is within ``tol`` of ±1."""
    return np.where(p_active > 0.5, 1.0, -1.0) * np.arctanh(1.0 - tol)


def moment_errors(h, J, data, *, model_moments=None):
    """Max |model − data| of means, pair moments Q (i<j) and connected correlations C (i<j).

    ``model_moments = (m, Q)`` gives the model's moments; otherwise they are enumerated
    exactly (N ≤ 22).
    """
    d = as_fit_data(data)
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
    h[inactive] = _inactive_field(stats.probability_from_mean(d.m[inactive]), tol)
    return h, J


def _active_mask(report, num_neurons):
    active = np.ones(num_neurons, bool)
    active[report["silent"] + report["always_on"]] = False
    return active


def _independent_theta(m, num_bins):
    """The independent model's θ = (atanh m, 0): the start of the MLE optimisers."""
    return np.concatenate([stats.independent_fields(m, num_bins),
                           np.zeros(ising.num_pairs(np.size(m)))])


class _Solution(NamedTuple):
    """What a fitter's solver returns to :func:`_fit_skeleton`: the full (h, J), optimiser
    iterations, convergence, moment errors, method settings and extra warning messages."""

    h: np.ndarray
    J: np.ndarray
    iterations: int
    converged: bool
    errors: dict
    settings: dict
    messages: list


def _fit_skeleton(method, spins, neuron_ids, l2, solve, *, finite_by, needs_spins=False,
                  inactive_tol=1e-6):
    """The shared frame of :func:`fit_exact`, :func:`fit_pseudo` and :func:`fit_boltzmann`.

    Prepares the data, finds the boundary (:func:`boundary_report`), calls
    ``solve(d, idx, assemble)`` on the active neurons ``idx`` (``assemble(theta_active)`` →
    full (h, J) with inactive neurons fixed, J_i· = 0), adds the boundary warnings
    (``finite_by`` says what keeps boundary couplings finite when l2 = 0), emits them as
    :class:`MLEWarning` and builds the :class:`FitResult`.
    """
    start = time.perf_counter()
    l2 = _check_l2(l2)
    d = as_fit_data(spins, neuron_ids)
    if needs_spins and d.spins is None:
        raise DataError(f"fit_{method} needs the spins (patterns), not only their moments")
    report = boundary_report(d)
    active = _active_mask(report, d.m.shape[0])
    solution = solve(d, np.flatnonzero(active),
                     lambda theta: _assemble(d, active, theta, inactive_tol))
    messages = list(report["messages"])
    if report["pairs"]:
        messages.append("the couplings of those pairs are finite only because of "
                        + (f"the L2 penalty (l2 = {l2:g})" if l2 > 0 else finite_by))
    messages += solution.messages
    _emit(messages, stacklevel=4)
    settings = {"method": method, "l2": l2, "num_bins": d.num_bins, **solution.settings,
                "inactive_neurons": [d.neuron_ids[k] for k in np.flatnonzero(~active)],
                "boundary_pairs": [[d.neuron_ids[i], d.neuron_ids[j], c]
                                   for i, j, c in report["pairs"]]}
    return FitResult(h=solution.h, J=solution.J, method=method, neuron_ids=d.neuron_ids,
                     moment_error=solution.errors, iterations=solution.iterations,
                     wall_time_s=time.perf_counter() - start, settings=settings,
                     converged=solution.converged, warnings=messages)


def _active_start(init, d, idx):
    """Start on the active neurons: the independent model, or ``init`` = (h, J) restricted."""
    if init is None:
        return _independent_theta(d.m[idx], d.num_bins)
    h0, J0 = (np.asarray(a, np.float64) for a in init)
    return np.asarray(ising.pack(h0[idx], J0[np.ix_(idx, idx)]))


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
    d = as_fit_data(spins, neuron_ids)
    num_neurons = d.m.shape[0]
    h = stats.independent_fields(d.m, d.num_bins)
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


#: above this N the Newton Hessian comes from ising.fisher_information (chunked) rather than
#: jax.hessian, whose forward-mode tangents need P × 2^N memory


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
    if num_neurons <= limits.MAX_AUTODIFF_HESSIAN_NEURONS:
        hess = jax.hessian(_exact_objective)(theta, mu, l2, num_neurons)
    else:
        # forward-mode over 2^N states would hold P tangents of the 2^N matrix at once;
        # ising.fisher_information accumulates the same matrix in bounded chunks
        h, J = ising.unpack(theta, num_neurons)
        penalty = jnp.concatenate([jnp.zeros(num_neurons),
                                   jnp.full(ising.num_pairs(num_neurons), l2)])
        hess = ising.fisher_information(h, J) + jnp.diag(penalty)
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
    def solve(d, idx, assemble):
        ising.check_exact(d.m.shape[0], "fit_exact")
        iterations, converged, theta = 0, True, np.zeros(0)
        if idx.size:
            mu = _data_mu(d.m[idx], d.Q[np.ix_(idx, idx)])
            theta, iterations, converged = _newton(_active_start(init, d, idx), mu, l2,
                                                   idx.size, tol, max_iterations)
        h, J = assemble(np.asarray(theta))
        if not np.all(np.isfinite(h)) or not np.all(np.isfinite(J)):
            raise FloatingPointError("fit_exact produced non-finite parameters (a bug)")
        errors = dict(moment_errors(h, J, d), source="exact")
        messages = [] if converged else [
            f"fit_exact did not reach tol = {tol:g} in {max_iterations} Newton steps "
            f"(max moment error {max(errors['max_abs_mean'], errors['max_abs_pair']):.3g})"]
        settings = {"tol": tol, "max_iterations": max_iterations,
                    "optimizer": "damped Newton (exact Fisher)"}
        return _Solution(h, J, iterations, converged, errors, settings, messages)

    return _fit_skeleton("exact", spins, neuron_ids, l2, solve, inactive_tol=tol,
                         finite_by=f"the stopping tolerance (tol = {tol:g}); pass l2 > 0 "
                                   "(e.g. 1e-3) for a finite MAP value")


# --------------------------------------------------------------------------------------------
# Pseudolikelihood MLE
# --------------------------------------------------------------------------------------------


def _from_lattice_gas(phi, num_neurons):
    r"""0/1 ("lattice gas") parameters → ±1 parameters ``theta`` (pack order).

    With :math:`x = (s+1)/2`, :math:`-E = \sum_i a_i x_i + \sum_{i<j} b_{ij} x_i x_j +`
    const for :math:`a_i = 2h_i - 2\sum_j J_{ij}`, :math:`b_{ij} = 4J_{ij}`. For sparse spiking
    the 0/1 statistics are nearly uncorrelated, so optimisers converge far faster in
    :math:`\phi = (a, b)` than in (h, J); the objective is the same function.
    """
    b = ising.couplings_to_matrix(phi[..., num_neurons:], num_neurons)
    h, _ = ising.from_lattice_gas(phi[..., :num_neurons], b)
    return jnp.concatenate([h, phi[..., num_neurons:] / 4.0], axis=-1)


def _to_lattice_gas(theta, num_neurons):
    """Inverse of :func:`_from_lattice_gas`."""
    theta = jnp.asarray(theta)
    J = ising.couplings_to_matrix(theta[..., num_neurons:], num_neurons)
    a, _ = ising.to_lattice_gas(theta[..., :num_neurons], J)
    return jnp.concatenate([a, 4.0 * theta[..., num_neurons:]], axis=-1)


def _lattice_gas_scale(m, Q, num_bins):
    r"""Diagonal preconditioner :math:`\sqrt{p_k(1-p_k)}` of the 0/1 statistics
    (:math:`p_i`, :math:`p_{ij}`), floored at half a count; optimisers work in
    :math:`\psi = \phi \cdot` scale, where the curvature is of order one in every coordinate.
    """
    p = _lattice_gas_moments(m, Q)
    floor = 0.5 / num_bins
    p = np.clip(p, floor, 1.0 - floor)
    return np.sqrt(p * (1.0 - p))


def _pseudo_theta_value_and_grad(theta, data, l2, num_neurons, float32=False):
    r"""Per-bin negative log pseudolikelihood (+ L2) and its closed-form gradient in ``theta``
    (:func:`bayes_ising.core.pseudolikelihood.value_and_grad`: one blocked sweep, two GEMMs per
    block), :math:`-\log\mathrm{PL}/T + \tfrac{l_2}{2}\sum_{i<j} J_{ij}^2`; ``data`` a
    :class:`~bayes_ising.core.pseudolikelihood.Patterns`; ``float32``: the sweep in float32
    (accumulated in float64)."""
    num_bins = jnp.sum(data.counts)
    value, grad = pl.value_and_grad(theta, data, float32=float32)
    couplings = theta[num_neurons:]
    value = -value / num_bins + 0.5 * l2 * couplings @ couplings
    grad = -grad / num_bins
    return value, grad.at[num_neurons:].add(l2 * couplings)


@functools.partial(jax.jit, static_argnames=("num_neurons",))
def _pseudo_value_and_grad(psi, data, l2, scale, num_neurons):
    """One value+grad in the preconditioned 0/1 coordinates ``psi = phi * scale``: the
    closed-form gradient of :func:`_pseudo_theta_value_and_grad` pulled back through the
    linear maps psi → phi → theta."""
    theta = _from_lattice_gas(psi / scale, num_neurons)
    value, grad_theta = _pseudo_theta_value_and_grad(theta, data, l2, num_neurons)
    # theta = (a/2 + rowsum J(b/4), b/4):  d/da = d/dh / 2,  d/db_ij = (d/dc_ij + d/dh_i + d/dh_j)/4
    i, j = ising.pair_indices(num_neurons)
    grad_h = grad_theta[:num_neurons]
    grad_a = grad_h / 2.0
    grad_b = (grad_theta[num_neurons:] + grad_h[i] + grad_h[j]) / 4.0
    return value, jnp.concatenate([grad_a, grad_b]) / scale


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
    if num_neurons <= limits.MAX_EXACT_MOMENTS_NEURONS:
        m, Q = ising.exact_moments(jnp.asarray(h), jnp.asarray(J))
        return np.asarray(m), np.asarray(Q), "exact", None
    m, Q, noise = _sampled_moments(rng_key, h, J, num_chains=num_chains, num_sweeps=num_sweeps,
                                   burn_in=num_sweeps // 2)
    return m, Q, "sampled", noise


def fit_pseudo(spins, l2=0.0, *, neuron_ids=None, tol=1e-8, max_iterations=2000, init=None,
               rng_key=None, num_chains=512, num_sweeps=400, check_moments=True):
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
    ``check_moments=False`` skips the moment errors (NaN; used inside other fits).

    Parameters
    ----------
    spins : SpikeData or (T, N) ±1 array (the patterns are needed, not only moments)
    l2 : float ≥ 0
    tol : L-BFGS gradient tolerance (max |gradient| in the preconditioned 0/1 coordinates of
        :func:`_lattice_gas_scale`, where the curvature is of order one)
    """
    def solve(d, idx, assemble):
        theta, iterations, converged, status, num_patterns = _pseudo_solve(
            d, idx, _active_start(init, d, idx), l2, tol, max_iterations)
        h, J = assemble(theta)
        errors, moment_check = _pseudo_moment_errors(d, h, J, rng_key, check_moments,
                                                     num_chains, num_sweeps)
        messages = [] if converged else [
            f"fit_pseudo: L-BFGS stopped without converging: {status}"]
        settings = {"tol": tol, "max_iterations": max_iterations,
                    "num_unique_patterns": int(num_patterns),
                    "optimizer": "L-BFGS-B (scipy), jit value+grad", "status": status,
                    "moment_check": moment_check}
        return _Solution(h, J, iterations, converged, errors, settings, messages)

    return _fit_skeleton("pseudo", spins, neuron_ids, l2, solve, needs_spins=True,
                         finite_by="the optimiser's stopping rule; pass l2 > 0 for finite "
                                   "MAP values")


def _pseudo_solve(d, idx, theta0, l2, tol, max_iterations):
    """L-BFGS on the active neurons' pseudolikelihood in the preconditioned 0/1 coordinates;
    (theta, iterations, converged, status, number of unique patterns)."""
    if not idx.size:
        return np.zeros(0), 0, True, "no active neurons", 0
    patterns, counts = (d.unique_patterns if idx.size == d.num_neurons
                        else stats.unique_patterns(d.spins[:, idx]))
    scale = jnp.asarray(_lattice_gas_scale(d.m[idx], d.Q[np.ix_(idx, idx)], d.num_bins))
    value_and_grad = functools.partial(_pseudo_value_and_grad,
                                       data=pl.prepare(patterns, counts),
                                       l2=jnp.float64(float(l2)), scale=scale,
                                       num_neurons=int(idx.size))
    psi, iterations, converged, status = _lbfgs(
        value_and_grad, _to_lattice_gas(theta0, idx.size) * scale, max_iterations, tol)
    theta = np.asarray(_from_lattice_gas(jnp.asarray(psi) / scale, idx.size))
    return theta, iterations, converged, status, patterns.shape[0]


def _pseudo_moment_errors(d, h, J, rng_key, check_moments, num_chains, num_sweeps):
    """Moment errors of a pseudolikelihood fit (exact for N ≤ 20, sampled otherwise, NaN when
    not asked for) and the settings of that check."""
    if not check_moments:
        nan = float("nan")
        return ({"max_abs_mean": nan, "max_abs_pair": nan, "max_abs_connected": nan,
                 "source": "not computed"}, {"source": "not computed"})
    seed = 0 if rng_key is None else None
    rng_key = jax.random.PRNGKey(0) if rng_key is None else rng_key
    m_model, Q_model, source, noise = _model_moments_for_report(rng_key, h, J, num_chains,
                                                                num_sweeps)
    errors = dict(moment_errors(h, J, d, model_moments=(m_model, Q_model)), source=source)
    errors.update(noise or {})
    if source != "sampled":
        return errors, {"source": source}
    return errors, {"source": source, "seed": seed, "num_chains": num_chains,
                    "num_sweeps": num_sweeps}


# --------------------------------------------------------------------------------------------
# Adaptive Metropolis (Haario, Saksman & Tamminen 2001)
# --------------------------------------------------------------------------------------------


AdaptiveMetropolisState = walk.WalkState  # the carry of one walk (bayes_ising.fit.walk)


class AdaptiveMetropolisInfo(NamedTuple):
    """acceptance_rate () over all steps ; covariance (D, D) the last proposal covariance."""

    acceptance_rate: jax.Array
    covariance: jax.Array


def adaptive_metropolis(rng_key, logdensity_fn, initial, num_draws, *, initial_covariance=None,
                        adaptation_start=None, epsilon=1e-8, scale=None, num_warmup=0,
                        adapt_every=1, return_info=False):
    r"""Adaptive Metropolis random walk (Haario, Saksman & Tamminen 2001, Bernoulli 7, 223).

    Gaussian proposals :math:`x' \sim \mathcal N(x_t, C_t)` with

    .. math::

        C_t = \begin{cases} C_0 & t \le t_0 \\
              s_d\,\mathrm{Cov}(x_0, \dots, x_{t-1}) + s_d\,\varepsilon\, I_d & t > t_0
              \end{cases}, \qquad s_d = 2.38^2 / d,

    the covariance of the whole history updated recursively (Welford) in a ``lax.scan``.
    The chain is not Markov, but it is ergodic with the right target (Haario et al. 2001,
    Theorem 1). Departure from the paper: the Cholesky factor of :math:`C_t` is refreshed every
    ``adapt_every`` steps (the paper's own suggestion for cheaper updates).

    Parameters
    ----------
    rng_key : PRNG key
    logdensity_fn : callable (D,) → scalar log density (up to a constant), jit-traceable
    initial : (D,) starting point
    num_draws : int, draws returned (after ``num_warmup`` steps that adapt but are dropped)
    initial_covariance : (D, D) :math:`C_0`; default :math:`s_d \cdot 0.01\, I`
    adaptation_start : :math:`t_0`, default ``max(100, 10 d)``
    epsilon : the paper's ε, keeps :math:`C_t` positive definite
    scale : :math:`s_d`, default :math:`2.38^2/d`
    return_info : also return :class:`AdaptiveMetropolisInfo`

    Returns
    -------
    draws : (num_draws, D) [, info]
    """
    initial = jnp.asarray(initial, jnp.result_type(jnp.asarray(initial).dtype, jnp.float32))
    dim = initial.shape[0]
    dtype = initial.dtype
    scale = 2.38**2 / dim if scale is None else float(scale)
    if adaptation_start is None:
        adaptation_start = max(100, 10 * dim)
    if initial_covariance is None:
        initial_covariance = scale * 0.01 * jnp.eye(dim, dtype=dtype)
    initial_cholesky = jnp.linalg.cholesky(jnp.asarray(initial_covariance, dtype))
    if not bool(jnp.all(jnp.isfinite(initial_cholesky))):
        raise BayesIsingError("adaptive_metropolis: initial_covariance is not positive definite")
    num_steps = int(num_warmup) + int(num_draws)
    state = walk.init_state(logdensity_fn, initial, initial_cholesky)
    final, positions = walk.run_steps(logdensity_fn, state, rng_key, num_steps, 1, scale=scale,
                                      epsilon=epsilon, adaptation_start=adaptation_start,
                                      adapt_every=adapt_every)
    draws = positions[int(num_warmup):]
    if not return_info:
        return draws
    info = AdaptiveMetropolisInfo(
        acceptance_rate=final.num_accepted / num_steps,
        covariance=final.cholesky @ final.cholesky.T,
    )
    return draws, info


def mle_parameter_draws(rng_key, spins, fit=None, num_draws=5000, *, l2=None, num_warmup=None,
                        neuron_ids=None, interval=0.95):
    r"""The study's uncertainty method: adaptive Metropolis around the MLE on the exact
    log-likelihood (N ≤ 22),

    .. math:: \log \pi(\theta) = T\big[\theta^\top\mu - \log Z(\theta)
              - \tfrac{l_2}{2}\textstyle\sum_{i<j}J_{ij}^2\big],

    started at the MLE with proposal covariance :math:`s_d (T\,(F + l_2 I_J))^{-1}` (inverse
    Fisher information) until adaptation starts. Inactive neurons are held at their fitted
    values (their likelihood is flat). With boundary pairs and ``l2 = 0`` the density is
    improper along those couplings: a warning says so and their intervals are meaningless.

    Returns
    -------
    dict: ``draws`` (num_draws, P) in pack order (inactive neurons fixed), ``h_interval``
    (N, 2), ``J_interval`` (N, N, 2), ``acceptance_rate``, ``settings``, ``warnings``.
    """
    d = as_fit_data(spins, neuron_ids)
    num_neurons = d.m.shape[0]
    ising.check_exact(num_neurons, "mle_parameter_draws")
    if fit is None:
        fit = fit_exact(d, l2=0.0 if l2 is None else l2)
    if l2 is None:
        l2 = float(fit.settings.get("l2", 0.0))
    l2 = _check_l2(l2)
    report = boundary_report(d)
    messages = []
    if report["pairs"] and l2 == 0:
        messages.append(
            "adaptive Metropolis with l2 = 0 on data with boundary pairs: the likelihood is flat "
            "towards J -> -inf for them, so their draws drift and their intervals are not "
            "meaningful; pass l2 > 0"
        )
    active = _active_mask(report, num_neurons)
    idx = np.flatnonzero(active)
    num_active = idx.size
    mu = jnp.asarray(_data_mu(d.m[idx], d.Q[np.ix_(idx, idx)]))
    theta_hat = jnp.asarray(ising.pack(fit.h[idx], fit.J[np.ix_(idx, idx)]))
    num_bins = float(d.num_bins)
    l2_j = jnp.float64(l2)

    def logdensity_fn(theta):
        return -num_bins * _exact_objective(theta, mu, l2_j, num_active)

    hess = jax.hessian(_exact_objective)(theta_hat, mu, l2_j, num_active)
    dim = theta_hat.shape[0]
    # Regularise the (possibly near-singular, boundary) curvature before inverting.
    hess = hess + 1e-8 * jnp.eye(dim)
    initial_covariance = (2.38**2 / dim) * jnp.linalg.inv(num_bins * hess)
    initial_covariance = 0.5 * (initial_covariance + initial_covariance.T)
    if num_warmup is None:
        num_warmup = max(1000, num_draws // 2)
    draws_active, info = adaptive_metropolis(
        rng_key, jax.jit(logdensity_fn), theta_hat, num_draws,
        initial_covariance=initial_covariance, num_warmup=num_warmup,
        adapt_every=max(1, dim // 10), return_info=True)
    draws_active = np.asarray(draws_active)
    h_draws = np.broadcast_to(fit.h, (num_draws, num_neurons)).copy()
    J_draws = np.broadcast_to(fit.J, (num_draws, num_neurons, num_neurons)).copy()
    h_a, J_a = ising.unpack(jnp.asarray(draws_active), num_active)
    h_draws[:, idx] = np.asarray(h_a)
    J_draws[:, idx[:, None], idx[None, :]] = np.asarray(J_a)
    tail = (1.0 - interval) / 2.0
    quantiles = (tail, 1.0 - tail)
    h_interval = np.moveaxis(np.quantile(h_draws, quantiles, axis=0), 0, -1)
    J_interval = np.moveaxis(np.quantile(J_draws, quantiles, axis=0), 0, -1)
    _emit(messages)
    draws = np.asarray(ising.pack(jnp.asarray(h_draws), jnp.asarray(J_draws)))
    return {
        "draws": draws, "h_interval": h_interval, "J_interval": J_interval,
        "acceptance_rate": float(info.acceptance_rate),
        "settings": {"num_draws": int(num_draws), "num_warmup": int(num_warmup), "l2": l2,
                     "interval": interval, "likelihood": "exact"},
        "warnings": messages,
    }


# --------------------------------------------------------------------------------------------
# Reliability: optimiser restarts and the firing-threshold rule
# --------------------------------------------------------------------------------------------


def firing_threshold_rule(spins, threshold=0.05):
    """The study's rule: keep neurons that fire in at least ``threshold`` of the bins.

    Returns a bool mask (N,).
    """
    return stats.firing_probability(as_fit_data(spins).spins) >= threshold


@functools.partial(jax.jit, static_argnames=("num_neurons", "float32"))
def _pseudo_value_and_grad_theta(theta, data, l2, num_neurons, float32=False):
    return _pseudo_theta_value_and_grad(theta, data, l2, num_neurons, float32)


def _cosine_table(thetas, num_neurons):
    """Per-neuron cosine similarity of v_i = (h_i, J_i·) across restarts: mean and min."""
    h, J = ising.unpack(jnp.asarray(thetas), num_neurons)
    h, J = np.asarray(h), np.asarray(J)
    num_restarts = thetas.shape[0]
    # v[r, i] = (h_i, J_i,j for j != i): the diagonal of J is zero, so replace it by h_i.
    vectors = J.copy()
    vectors[:, np.arange(num_neurons), np.arange(num_neurons)] = h
    norms = np.linalg.norm(vectors, axis=-1)  # (R, N)
    r1, r2 = np.triu_indices(num_restarts, 1)
    dots = np.sum(vectors[r1] * vectors[r2], axis=-1)  # (pairs of restarts, N)
    cosine = dots / np.maximum(norms[r1] * norms[r2], 1e-300)
    return cosine.mean(axis=0), cosine.min(axis=0)


def restart_reliability(rng_key, spins, num_restarts=5, cut=0.9, *, method="auto",
                        max_iterations=300, init_scale=0.5, l2=0.0, threshold=0.05,
                        neuron_ids=None, float32=True):
    r"""The study's reliability method: optimiser restarts from random initial conditions.

    Each restart draws :math:`\theta_0 \sim \mathcal N(0, \text{init\_scale}^2 I)` and runs
    L-BFGS in the (h, J) coordinates for at most ``max_iterations`` iterations (the study's
    optimiser had a fixed budget), on the exact likelihood (``method="exact"``; "auto" picks it
    for N ≤ 16) or the pseudolikelihood. Where the data identify the parameters every restart
    lands in the same place; where they do not (sparse neurons) the restarts stay apart. For
    each neuron the vector :math:`v_i = (h_i, J_{i\cdot})` (N entries) is compared across
    restarts by cosine similarity; a neuron is kept when its mean similarity is ≥ ``cut``.
    The firing-threshold verdict (≥ ``threshold`` of bins) is given beside it. The verdict
    depends on the budget, as the study's did: run long enough every convex fit converges and
    all similarities approach 1 (on retina15.mat: ≥ 0.994 at 300 iterations, 1.000 at 1000).
    ``float32`` (pseudolikelihood only): the per-pattern sweep in float32, accumulated in
    float64, about twice as fast. Measured at N = 92 (``ei_network(74, 18)`` deep state,
    44,272 unique patterns, 4 restarts × 300 iterations): 34 s against 69 s in float64, the
    mean cosines within 0.005 of float64's and the same verdict for every neuron.

    Returns
    -------
    dict (JSON-able): ``neurons``, ``firing_probability``, ``mean_cosine``, ``min_cosine``,
    ``reliable`` (mean_cosine ≥ cut), ``above_firing_threshold``, ``agreement`` (fraction of
    neurons where the two verdicts agree), ``restart_objectives``, ``settings``.
    """
    d = as_fit_data(spins, neuron_ids)
    num_neurons = d.m.shape[0]
    if num_restarts < 2:
        raise BayesIsingError(f"restart_reliability needs at least 2 restarts, got {num_restarts}")
    if method == "auto":
        method = "exact" if num_neurons <= limits.MAX_EXACT_FIT_NEURONS else "pseudo"
    if method not in ("exact", "pseudo"):
        raise BayesIsingError(f"restart_reliability: method must be exact|pseudo|auto, got "
                              f"{method!r}")
    l2 = jnp.float64(_check_l2(l2))
    if method == "exact":
        ising.check_exact(num_neurons, "restart_reliability(method='exact')")
        mu = jnp.asarray(_data_mu(d.m, d.Q))
        value_and_grad = functools.partial(_exact_value_and_grad, mu=mu, l2=l2,
                                           num_neurons=num_neurons)
    else:
        if d.spins is None:
            raise DataError("restart_reliability(method='pseudo') needs spins, not moments")
        value_and_grad = functools.partial(
            _pseudo_value_and_grad_theta, data=pl.prepare(d.patterns, d.counts), l2=l2,
            num_neurons=num_neurons, float32=bool(float32))
    num_params = num_neurons + ising.num_pairs(num_neurons)
    starts = init_scale * jax.random.normal(rng_key, (num_restarts, num_params), jnp.float64)
    thetas, objectives = [], []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        for start in np.asarray(starts):
            theta, _, _, _ = _lbfgs(value_and_grad, start, max_iterations, 1e-10)
            thetas.append(theta)
            objectives.append(float(value_and_grad(jnp.asarray(theta))[0]))
    thetas = np.stack(thetas)
    mean_cosine, min_cosine = _cosine_table(thetas, num_neurons)
    firing = stats.probability_from_mean(d.m)
    reliable = mean_cosine >= cut
    above = firing >= threshold
    return {
        "neurons": [str(n) for n in d.neuron_ids],
        "firing_probability": firing.tolist(),
        "mean_cosine": mean_cosine.tolist(),
        "min_cosine": min_cosine.tolist(),
        "reliable": reliable.tolist(),
        "above_firing_threshold": above.tolist(),
        "agreement": float(np.mean(reliable == above)),
        "restart_objectives": objectives,
        "settings": {"num_restarts": int(num_restarts), "cut": float(cut), "method": method,
                     "max_iterations": int(max_iterations), "init_scale": float(init_scale),
                     "l2": float(l2), "threshold": float(threshold),
                     "float32": bool(float32) and method == "pseudo",
                     "objective": "per-bin negative log-likelihood" if method == "exact"
                     else "per-bin negative log pseudolikelihood"},
    }


# --------------------------------------------------------------------------------------------
# Sampled moments of a model (gibbs.sample_moments)
# --------------------------------------------------------------------------------------------


def _lattice_gas_moments(m, Q, xp=np):
    """Moments of the 0/1 statistics x = (s+1)/2 in pack order, (p_i; p_ij [i<j]), from the
    ±1 moments m (N,), Q (N, N); ``xp`` the array module (``jnp`` inside jitted code)."""
    i, j = ising.pair_indices(m.shape[0])
    return xp.concatenate([stats.probability_from_mean(m), stats.pair_probability(m, Q)[i, j]])


def _sampled_moments(rng_key, h, J, *, num_chains, num_sweeps, burn_in, initial_spins=None):
    """Model moments from ``gibbs.sample_moments``: (m, Q, noise dict with max MCSEs)."""
    m, Q, info = gibbs.sample_moments(rng_key, np.asarray(h), np.asarray(J),
                                      num_chains=num_chains, num_sweeps=num_sweeps,
                                      burn_in=burn_in, initial_spins=initial_spins)
    i, j = ising.pair_indices(np.asarray(h).shape[0])
    noise = {"mcse_mean": float(np.nanmax(info.m_mcse)),
             "mcse_pair": float(np.nanmax(info.Q_mcse[i, j])) if i.size else 0.0}
    return np.asarray(m, np.float64), np.asarray(Q, np.float64), noise


# --------------------------------------------------------------------------------------------
# Boltzmann learning: persistent chains, preconditioned stochastic steps, Polyak averaging
# --------------------------------------------------------------------------------------------

#: learning iterations per compiled chunk (progress and the Polyak average are per chunk)
_CHUNK_ITERATIONS = 250


@functools.partial(jax.jit, static_argnames=("num_iterations", "num_sweeps", "num_neurons"))
def _learning_chunk(rng_key, chains, phi, target, variance, rate, l2, max_step, first,
                    num_iterations, num_sweeps, num_neurons):
    r"""``num_iterations`` steps of preconditioned stochastic Boltzmann learning.

    Each step advances the persistent chains (C, N) ``num_sweeps`` Gibbs sweeps under the
    current parameters, estimates the 0/1 moments :math:`\hat p` (x_i, x_i x_j) from all their
    states and steps the lattice-gas parameters
    :math:`\phi \leftarrow \phi + \mathrm{clip}(\eta\,(p^{data} - \hat p - l_2 b/16) / v)`,
    v the data variances p(1 − p) (a diagonal Fisher preconditioner). Returns the chains, the
    last φ, the sum of the iterates (for the Polyak average) and per step max |error|/√v.
    """
    i, j = ising.pair_indices(num_neurons)
    num_samples = num_sweeps * chains.shape[0]
    penalty = jnp.concatenate([jnp.zeros(num_neurons), jnp.full(i.shape[0], l2 / 16.0)])

    def one_step(carry, k):
        chains, phi, phi_sum = carry
        h, J = ising.unpack(_from_lattice_gas(phi, num_neurons), num_neurons)
        chains, sum_s, sum_ss = gibbs.sweep_sums(
            jax.random.fold_in(rng_key, first + k), chains, h, J, 0, num_sweeps, 1)
        m = sum_s[0] / num_samples
        Q = sum_ss[0] / num_samples
        p = _lattice_gas_moments(m, Q, jnp)
        error = target - p.astype(phi.dtype)
        step = jnp.clip(rate * (error - penalty * phi) / variance, -max_step, max_step)
        phi = phi + step
        return (chains, phi, phi_sum + phi), jnp.max(jnp.abs(error) / jnp.sqrt(variance))

    (chains, phi, phi_sum), history = jax.lax.scan(
        one_step, (chains, phi, jnp.zeros_like(phi)), jnp.arange(num_iterations))
    return chains, phi, phi_sum, history


def _learning_stage(key, state, rate, num_chunks, learn, bar):
    """One stage at learning rate ``rate``: ``num_chunks`` chunks; φ ends at the Polyak
    average of the second half's iterates. ``state`` = (chains, phi, first iteration)."""
    chains, phi, first = state
    phi_sum, count, scores = jnp.zeros_like(phi), 0, []
    for chunk in range(num_chunks):
        chains, phi, chunk_sum, history = _learning_chunk(
            key, chains, phi, rate=jnp.float64(rate), first=first, **learn)
        first += _CHUNK_ITERATIONS
        scores.append(float(history[-1]))
        if chunk >= num_chunks // 2:  # average the iterates of the second half
            phi_sum, count = phi_sum + chunk_sum, count + _CHUNK_ITERATIONS
        if bar is not None:
            bar.update(_CHUNK_ITERATIONS)
            bar.set_postfix(rate=f"{rate:.3g}", err=f"{scores[-1]:.2f}")
    return (chains, phi_sum / count, first), scores


def _check_fit(rng_key, h, J, spins, data, check, data_weight, significance):
    """Fresh chains from data rows (``check`` = num_chains, num_sweeps, burn_in): the moment
    comparison of :func:`validity.compare_moments`."""
    sim = validity.simulate_moments(rng_key, h, J, initial_spins=spins, **check)
    return validity.compare_moments(sim, data, significance=significance,
                                    data_weight=data_weight), sim


def _boltzmann_solve(rng_key, d, idx, assemble, h0, J0, options):
    """Stages of :func:`_learning_stage` with a fresh-chain check after each; stops when
    converged, or when a stage at the smallest rate did not lower max |z| by 10%."""
    o = options
    num_active = idx.size
    key_chains, key_learn, key_check = jax.random.split(rng_key, 3)
    target = _lattice_gas_moments(d.m[idx], d.Q[np.ix_(idx, idx)])
    floor = 0.5 / d.num_bins
    p = np.clip(target, floor, 1.0 - floor)
    learn = dict(target=jnp.asarray(target), variance=jnp.asarray(p * (1.0 - p)),
                 l2=jnp.float64(o["l2"]), max_step=jnp.float64(o["max_step"]),
                 num_iterations=_CHUNK_ITERATIONS, num_sweeps=int(o["sweeps_per_iteration"]),
                 num_neurons=int(num_active))
    rows = np.asarray(jax.random.randint(key_chains, (o["num_chains"],), 0, d.num_bins))
    state = (jnp.asarray(d.spins[rows][:, idx], jnp.float32),
             _to_lattice_gas(ising.pack(h0[idx], J0[np.ix_(idx, idx)]), num_active), 0)
    data = d.standard_errors(o["num_blocks"])
    num_chunks = max(2, int(math.ceil(o["iterations_per_stage"] / _CHUNK_ITERATIONS)))
    rates = list(o["learning_rates"])
    rates += [rates[-1]] * max(0, o["max_stages"] - len(rates))
    bar = _progress_bar(o["progress"], num_chunks * _CHUNK_ITERATIONS * len(rates))
    history, best = [], None
    for stage, rate in enumerate(rates):
        state, scores = _learning_stage(jax.random.fold_in(key_learn, stage), state, rate,
                                        num_chunks, learn, bar)
        h, J = assemble(np.asarray(_from_lattice_gas(state[1], num_active)))
        result, sim = _check_fit(jax.random.fold_in(key_check, stage), h, J, d.spins, data,
                                 o["check"], o["data_weight"], o["significance"])
        history.append({"stage": stage, "rate": rate, "iterations": state[2],
                        "max_error_over_sd": scores, **result})
        previous = best
        if best is None or result["max_z"] < best[0]["max_z"]:
            best = (result, sim, h, J)
        if result["within"] or (stage >= len(o["learning_rates"]) - 1 and previous is not None
                                and result["max_z"] > 0.9 * previous[0]["max_z"]):
            break
    if bar is not None:
        bar.close()
    return best, history, state[2]


def _progress_bar(progress, total):
    if not progress:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, unit="step", desc="Boltzmann")


def fit_boltzmann(rng_key, spins, init=None, *, l2=0.0, num_chains=1024,
                  sweeps_per_iteration=10, learning_rates=(0.033, 0.01),
                  iterations_per_stage=1500, max_stages=5, max_step=0.5,
                  check_sweeps=1000, check_burn_in=500, data_weight=0.5, significance=0.05,
                  num_blocks=50, neuron_ids=None, progress=False):
    r"""Boltzmann learning (full likelihood) with persistent Gibbs chains, for any N.

    Stochastic ascent on the per-bin log-likelihood, whose gradient is data moments minus model
    moments, in the 0/1 (lattice-gas) parameters :math:`\phi = (a_i, b_{ij})` of
    :func:`_from_lattice_gas`, preconditioned by the data variances of the 0/1 statistics
    (:func:`_learning_chunk`). ``num_chains`` persistent chains (Tieleman 2008), started from
    data rows, advance ``sweeps_per_iteration`` sweeps per step. The steps run in stages of
    ``iterations_per_stage`` at the ``learning_rates`` 0.033 → 0.01 (then more stages at
    the last rate, up to ``max_stages``); each stage ends at the Polyak average of its second
    half's iterates, which removes the steps' noise (Polyak & Juditsky 1992).

    Convergence, after every stage, from fresh chains started at data rows (``check_sweeps``
    after ``check_burn_in``; the check's own MCSE from 32 groups of chains): converged when
    every moment error (means m_i, connected correlations C_ij) is within the Bonferroni
    critical number of combined standard errors :math:`\sqrt{\mathrm{MCSE}^2 +
    (w\,\mathrm{SE}_{data})^2}`, w = ``data_weight`` = 0.5 (an error below half the data's
    sampling error adds at most ~12% to the MLE's variance); the data SEs are batch means over
    ``num_blocks`` blocks of bins (:func:`bayes_ising.fit.validity.data_standard_errors`).
    Stops
    when converged or when a stage at the last rate no longer lowers max |z| by 10%; the
    stage with the smallest max |z| is returned, with its numbers when not converged.

    Started (``init=None``) from :func:`fit_pseudo`. The schedule, measured (same seeds, same
    starts, the pseudo-MLE; 2 cores at load 0.7–1.8): a first stage at rate 0.1 ends *further* from
    the MLE than one at 0.033 on every data set tried: the diagonal preconditioner
    underestimates the curvature along the population's collective mode, so the larger steps
    oscillate there. Max |z| after each stage:

    ============================================  =====================  ======================
    data                                          0.1 → 0.033 → 0.01     0.033 → 0.01
    ============================================  =====================  ======================
    N = 50 shared input, 20,000 bins              38.9, 20.7, 1.35       20.4, 1.85 (crit 4.8)
                                                  (28.8 s)               (23.6 s)
    N = 92 ``ei_network(74, 18)`` deep, 50,000    176, 91.1, 2.73        87.7, 2.02 (crit 5.2)
                                                  (54.8 s)               (39.3 s)
    embedded E/I data, N = 40, wake / deep        53.3, 1.32 / 25.9,     1.12 / 0.98
                                                  1.18 (3,000 steps)     (1,500 steps)
    ============================================  =====================  ======================

    Returns
    -------
    FitResult with method "boltzmann"; ``moment_error`` from the check (``max_abs_mean``,
    ``max_abs_pair``, ``max_abs_connected``, ``max_abs_z``, ``max_z_mc``,
    ``max_error_over_data_se``, MCSEs) or exact for N ≤ 20; ``settings["history"]`` per stage.
    """
    if init is None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", MLEWarning)
            init = fit_pseudo(spins, l2=l2, neuron_ids=neuron_ids,
                              rng_key=jax.random.fold_in(rng_key, 1), check_moments=False)
    h0, J0 = (init.h, init.J) if isinstance(init, FitResult) else init
    h0, J0 = np.asarray(h0, np.float64), np.asarray(J0, np.float64)
    options = dict(
        l2=float(l2), num_chains=int(validity.NUM_GROUPS * math.ceil(
            num_chains / validity.NUM_GROUPS)), sweeps_per_iteration=int(sweeps_per_iteration),
        learning_rates=tuple(float(r) for r in learning_rates),
        iterations_per_stage=int(iterations_per_stage), max_stages=int(max_stages),
        max_step=float(max_step), data_weight=float(data_weight),
        significance=float(significance), num_blocks=int(num_blocks), progress=progress,
        check={"num_chains": int(num_chains), "num_sweeps": int(check_sweeps),
               "burn_in": int(check_burn_in)})

    def solve(d, idx, assemble):
        (result, _sim, h, J), history, iterations = _boltzmann_solve(
            rng_key, d, idx, assemble, h0, J0, options)
        errors = dict(result, source="sampled", max_abs_z=result["max_z"])
        if d.m.shape[0] <= limits.MAX_EXACT_MOMENTS_NEURONS:
            errors.update(moment_errors(h, J, d), source="exact")
        messages = [] if result["within"] else [
            f"fit_boltzmann: moment errors above their noise after {iterations} steps "
            f"(max |z| = {result['max_z']:.2f} > {result['z_critical']:.2f}; max |Δm| "
            f"{result['max_abs_mean']:.4f}, max |ΔC| {result['max_abs_connected']:.4f})"]
        settings = {k: v for k, v in options.items() if k != "progress"}
        settings.update(history=history, init="pseudo" if isinstance(init, FitResult)
                        and init.method == "pseudo" else "given",
                        z_critical=result["z_critical"])
        return _Solution(h, J, iterations, bool(result["within"]), errors, settings, messages)

    return _fit_skeleton("boltzmann", spins, neuron_ids, l2, solve, needs_spins=True,
                         finite_by="the finite number of learning steps; pass l2 > 0 for "
                                   "finite MAP values")


# --------------------------------------------------------------------------------------------
# Sampling check of a fitted model
# --------------------------------------------------------------------------------------------


def model_check(rng_key, h, J, spins, *, num_chains=1024, num_sweeps=1000, burn_in=500,
                significance=0.05, neuron_ids=None):
    r"""Simulate a fitted model from random and from data starts and compare it with the data;
    name a degenerate fit. :func:`bayes_ising.fit.validity.model_check` (see there) on the
    spins of
    ``spins`` (SpikeData or (T, N) ±1): a dict with ``passed``, ``verdict``, ``reason`` and the
    numbers."""
    d = as_fit_data(spins, neuron_ids)
    if d.spins is None:
        raise DataError("model_check needs the spins (chains also start from data rows)")
    h = np.asarray(h, np.float64)
    J = np.asarray(J, np.float64)
    if h.shape != d.m.shape or J.shape != d.Q.shape:
        raise DataError(f"model of {h.shape[0]} neurons checked against data of "
                        f"{d.m.shape[0]}")
    return validity.model_check(rng_key, h, J, d.spins, num_chains=num_chains,
                                num_sweeps=num_sweeps, burn_in=burn_in,
                                significance=significance, data=d.standard_errors())
