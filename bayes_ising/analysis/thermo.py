r"""Thermodynamics of a fitted Ising model: energy, heat capacity, entropy, the peak.

The fitted energy :math:`E(s) = -\sum_i h_i s_i - \sum_{i<j} J_{ij} s_i s_j` (each pair once) is
scaled by a temperature T,

.. math:: P_T(s) = e^{-E(s)/T} / Z(T), \qquad \beta = 1/T,

so T = 1 is the fitted model. Reported per neuron (N neurons, entropies in nats):

* energy :math:`\langle E\rangle_T / N`;
* heat capacity :math:`C(T)/N = \mathrm{Var}_T(E) / (N T^2)`;
* entropy :math:`S(T)/N` by thermodynamic integration from :math:`S(\infty) = N \log 2`:
  with :math:`S(\beta) = \log Z(\beta) + \beta\langle E\rangle_\beta`,
  :math:`d\log Z/d\beta = -\langle E\rangle_\beta` and :math:`\log Z(0) = N\log 2`,

  .. math::

      S(\beta) = N\log 2 - \int_0^\beta \langle E\rangle_{\beta'}\, d\beta'
                 + \beta \langle E\rangle_\beta .

  **Integration grid and rule.** The β grid is 0 (T = ∞, where :math:`\langle E\rangle_0 = 0`
  and :math:`\mathrm{Var}_0(E) = \sum_i h_i^2 + \sum_{i<j} J_{ij}^2` are known in closed form,
  since every term of E has mean zero over uniform spins), a uniform grid of ``num_grid`` steps
  on :math:`(0, \beta_{\max}]` with :math:`\beta_{\max} = 1/\min T` (grid points closer than
  half a step to a requested temperature are dropped) and the requested :math:`\beta = 1/T`
  themselves (so no gap exceeds 1.5 steps). Each interval :math:`[a, b]` is integrated with
  the endpoint-corrected trapezoid (cubic Hermite) rule, which uses the derivative
  :math:`d\langle E\rangle/d\beta = -\mathrm{Var}_\beta(E)` that we estimate anyway:

  .. math::

      \int_a^b \langle E\rangle\, d\beta \approx \tfrac{b-a}{2}\big(\langle E\rangle_a
      + \langle E\rangle_b\big) + \tfrac{(b-a)^2}{12}\big(\mathrm{Var}_b - \mathrm{Var}_a\big),

  with error :math:`O((b-a)^5)` per interval (fourth order overall). In exact mode the result
  is checked against :math:`S = \log Z(\beta) + \beta \langle E\rangle_\beta` computed
  directly, and the largest difference is reported (``entropy_integration_error``).

* the peak of C(T)/N inside the requested range: the grid maximum refined by the parabola
  through it and its two neighbours (at an end of the range the end is reported and flagged).

Exact enumeration (:func:`bayes_ising.core.ising.exact_energy_moments`) for small N; otherwise the
JAX Gibbs sampler (:mod:`bayes_ising.core.gibbs`), all temperatures of the grid in one vectorised
run, with replica exchange across the ladder by default. The energy's integrated
autocorrelation time (multi-chain, so chains stuck in different modes count) is reported per
temperature, and a run shorter than ``min_sweeps_per_tau`` autocorrelation times is refused
(:class:`RunTooShortError`) or warned about (:class:`AutocorrelationWarning`).

Posterior bands repeat everything over posterior draws and report the median and a central
interval of each curve, of T* and of C_max. A peak near T = 1 can arise from subsampling,
shared input or the inference itself, not only from criticality (:data:`CRITICALITY_CAVEAT`);
the shuffled-data control (:func:`shuffled_control`) and C_max versus the number of neurons
(:func:`peak_versus_subsample`) help to read it.

References
----------
Tkačik et al. (2015), PNAS 112, 11508 (thermodynamics of retinal codes, C(T) peak near T = 1).
Zanoci, Dehghani & Tegmark (2019), Phys. Rev. E 99, 032408.
Sokal (1997), Monte Carlo methods in statistical mechanics (integrated autocorrelation time).
Vehtari et al. (2021), Bayesian Analysis 16, 667 (multi-chain effective sample size).
"""

from __future__ import annotations

import dataclasses
import functools
import math
import sys
import time
import warnings

import jax
import jax.numpy as jnp
import numpy as np

from bayes_ising._deprecation import module_aliases
from bayes_ising.core import ising, limits, stats
from bayes_ising.core import pseudolikelihood as pl
from bayes_ising.core.convergence import MAX_RHAT, MIN_ESS, rule_failures, split_rhat
from bayes_ising.core.convergence import integrated_autocorrelation_time as autocorrelation_time
from bayes_ising.errors import BayesIsingError, DataError

__all__ = [
    "CRITICALITY_CAVEAT",
    "AUTO_EXACT_THERMO_NEURONS",
    "ThermoResult",
    "TemperatureError",
    "RunTooShortError",
    "AutocorrelationWarning",
    "parse_temperatures",
    "integration_grid",
    "thermodynamics",
    "exact_thermodynamics",
    "sampled_thermodynamics",
    "independent_thermodynamics",
    "posterior_parameters",
    "posterior_thermodynamics",
    "posterior_subsample_peaks",
    "fit_thermodynamics",
    "FitThermodynamics",
    "tidy_curves",
    "peak_summary",
    "DEFAULT_TEMPERATURES",
    "DEFAULT_POSTERIOR_DRAWS",
    "shuffle_bins",
    "shuffled_control",
    "mean_field_fit",
    "peak_versus_subsample",
    "autocorrelation_time",
    "split_rhat",
    "SamplerSchedule",
]

#: Printed with every thermodynamic result.
CRITICALITY_CAVEAT = (
    "a peak near T = 1 can arise from subsampling, shared input or the inference itself, "
    "not only from criticality"
)

#: ``method="auto"`` enumerates up to this many neurons (2^20 states per temperature and
#: posterior draw), and samples above it.
AUTO_EXACT_THERMO_NEURONS = limits.AUTO_EXACT_THERMO_NEURONS
__getattr__ = module_aliases(__name__, globals(),
                             {"AUTO_EXACT_MAX_NEURONS": "AUTO_EXACT_THERMO_NEURONS"})

#: Sokal's rule of thumb: an autocorrelation time is only estimated reliably, and a mean or
#: variance has a usable MCSE, when the run is at least ~50 autocorrelation times long.
MIN_SWEEPS_PER_TAU = 50.0


class TemperatureError(BayesIsingError):
    """A temperature specification that cannot be used (not positive, badly formed, ...)."""


#: R-hat above which chains are taken to sit in different modes (Gelman's classic 1.1 cut):
#: the run is refused rather than reported, whatever the within-chain autocorrelation time.
STUCK_RHAT = 1.1


class RunTooShortError(BayesIsingError):
    """A Gibbs run shorter than the energy's autocorrelation time allows to trust."""


class AutocorrelationWarning(UserWarning):
    """A Gibbs run too short for the energy's autocorrelation time (estimates unreliable)."""


# --------------------------------------------------------------------------------------------
# Temperatures and the integration grid
# --------------------------------------------------------------------------------------------


def parse_temperatures(text):
    """Parse ``"start:stop:count"`` (inclusive, evenly spaced), ``"T1,T2,..."`` or ``"T"``.

    Returns a sorted float64 array of distinct positive temperatures.

    Raises
    ------
    TemperatureError
        Badly formed text, count < 2, stop ≤ start, non-positive or non-finite temperatures.
    """
    text = str(text).strip()
    if not text:
        raise TemperatureError("--temperatures is empty; expected START:STOP:COUNT, e.g. 0.5:3:26")
    if ":" in text:
        parts = text.split(":")
        if len(parts) != 3:
            raise TemperatureError(
                f"--temperatures {text!r}: expected START:STOP:COUNT (three fields), e.g. 0.5:3:26"
            )
        try:
            start, stop = float(parts[0]), float(parts[1])
        except ValueError:
            raise TemperatureError(
                f"--temperatures {text!r}: START and STOP must be numbers"
            ) from None
        try:
            count = int(parts[2])
        except ValueError:
            raise TemperatureError(
                f"--temperatures {text!r}: COUNT must be an integer, got {parts[2]!r}"
            ) from None
        if count < 2:
            raise TemperatureError(f"--temperatures {text!r}: COUNT must be at least 2")
        if not (np.isfinite(start) and np.isfinite(stop)) or stop <= start:
            raise TemperatureError(f"--temperatures {text!r}: need finite STOP > START")
        values = np.linspace(start, stop, count)
    else:
        try:
            values = np.array([float(v) for v in text.split(",")], dtype=np.float64)
        except ValueError:
            raise TemperatureError(
                f"--temperatures {text!r}: expected START:STOP:COUNT or comma-separated numbers"
            ) from None
    return _check_temperatures(values, what=f"--temperatures {text!r}: temperatures")


def _check_temperatures(temperatures, what="temperatures"):
    values = np.atleast_1d(np.asarray(temperatures, dtype=np.float64))
    if values.ndim != 1 or values.size == 0:
        raise TemperatureError(f"{what} must be a non-empty 1-D list, got {values.shape}")
    if not np.all(np.isfinite(values)) or np.any(values <= 0):
        raise TemperatureError(f"{what} must be finite and positive, got min {values.min()}")
    values = np.unique(values)  # sorted, distinct
    return values


def integration_grid(temperatures, num_grid=64, extra_temperatures=()):
    r"""The β grid of the thermodynamic integration, from 0 to :math:`1/\min T`.

    β = 0, then ``num_grid`` uniform steps on :math:`(0, \beta_{\max}]` except those within
    half a step of a requested β, then the requested β = 1/T (and ``extra_temperatures``).

    Returns
    -------
    betas : (G,) float64, sorted, ``betas[0] == 0``
    index : (K,) int, positions of the requested temperatures in ``betas``
    """
    temperatures = _check_temperatures(temperatures)
    targets = 1.0 / temperatures
    extra = 1.0 / _check_temperatures(extra_temperatures) if len(extra_temperatures) else []
    beta_max = targets.max()
    step = beta_max / int(num_grid)
    uniform = step * np.arange(1, int(num_grid) + 1)
    keep = np.min(np.abs(uniform[:, None] - targets[None, :]), axis=1) > 0.5 * step
    betas = np.unique(np.concatenate([[0.0], uniform[keep], targets, np.asarray(extra)]))
    index = np.searchsorted(betas, targets)
    return betas, index


def _entropy_weights(betas):
    r"""Matrices with :math:`S(\beta_k) - N\log 2 = W_E \langle E\rangle + W_V \mathrm{Var}(E)`.

    Over the grid ``betas`` (G,): the cumulative Hermite rule (see the module docstring) plus
    :math:`\beta_k \langle E\rangle_k`. Returns ``(W_E, W_V)``, each (G, G).
    """
    betas = np.asarray(betas, dtype=np.float64)
    size = betas.size
    width = np.diff(betas)  # (G-1,)
    per_mean = np.zeros((size - 1, size))
    per_var = np.zeros((size - 1, size))
    rows = np.arange(size - 1)
    per_mean[rows, rows] = per_mean[rows, rows + 1] = width / 2
    # ∫ f ≈ Δ/2 (f_a + f_b) + Δ²/12 (f'_a − f'_b) with f' = −Var.
    per_var[rows, rows] = -(width**2) / 12
    per_var[rows, rows + 1] = width**2 / 12
    cum_mean = np.vstack([np.zeros((1, size)), np.cumsum(per_mean, axis=0)])
    cum_var = np.vstack([np.zeros((1, size)), np.cumsum(per_var, axis=0)])
    return np.diag(betas) - cum_mean, -cum_var


# --------------------------------------------------------------------------------------------
# Results
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class ThermoResult:
    r"""Thermodynamic curves of one or more models (posterior draws, shuffles, ...).

    Attributes
    ----------
    temperatures : (K,) requested temperatures, sorted
    energy_per_neuron, heat_capacity_per_neuron, entropy_per_neuron : (D, K)
        :math:`\langle E\rangle_T/N`, :math:`\mathrm{Var}_T(E)/(N T^2)`, :math:`S(T)/N` (nats),
        one row per model (posterior draw)
    peak_temperature, peak_heat_capacity_per_neuron : (D,) T* and C_max/N per model
    peak_at_edge : (D,) bool, the maximum is at an end of the requested range (T* is a bound)
    method : "exact" or "gibbs"
    num_neurons : N
    mcse : dict of (D, K) Monte Carlo standard errors of the three curves (Gibbs) or None
    autocorrelation_time : (D, K) energy autocorrelation time in sweeps (Gibbs) or None
    entropy_integration_error : max |S_integrated − S_exact|/N over draws and temperatures
        (exact mode) or None
    settings : the settings used (grid, sampler), JSON-able
    warnings : list of str
    """

    temperatures: np.ndarray
    energy_per_neuron: np.ndarray
    heat_capacity_per_neuron: np.ndarray
    entropy_per_neuron: np.ndarray
    peak_temperature: np.ndarray
    peak_heat_capacity_per_neuron: np.ndarray
    peak_at_edge: np.ndarray
    method: str
    num_neurons: int
    mcse: dict | None = None
    autocorrelation_time: np.ndarray | None = None
    entropy_integration_error: float | None = None
    settings: dict = dataclasses.field(default_factory=dict)
    warnings: list = dataclasses.field(default_factory=list)

    @property
    def num_draws(self):
        return int(self.energy_per_neuron.shape[0])

    def to_dict(self, interval=0.9):
        """The JSON layout of ``bayes-ising thermo``: medians and central intervals over draws."""
        curves = {
            name: _band(getattr(self, name), interval)
            for name in ("energy_per_neuron", "heat_capacity_per_neuron", "entropy_per_neuron")
        }
        out = {
            "temperature": self.temperatures,
            **curves,
            "peak": {
                "temperature": _band(self.peak_temperature, interval, axis=0),
                "heat_capacity_per_neuron": _band(
                    self.peak_heat_capacity_per_neuron, interval, axis=0
                ),
                "fraction_at_edge": float(np.mean(self.peak_at_edge)),
            },
            "method": self.method,
            "num_neurons": self.num_neurons,
            "num_draws": self.num_draws,
            "caveat": CRITICALITY_CAVEAT,
        }
        if self.autocorrelation_time is not None:
            out["autocorrelation_time_sweeps"] = {
                "median": np.median(self.autocorrelation_time, axis=0),
                "max": np.max(self.autocorrelation_time, axis=0),
            }
        else:
            out["autocorrelation_time_sweeps"] = None
        if self.mcse is not None:
            out["mcse_max_over_draws"] = {k: np.max(v, axis=0) for k, v in self.mcse.items()}
        if self.entropy_integration_error is not None:
            out["entropy_integration_error"] = self.entropy_integration_error
        out["settings"] = self.settings
        out["warnings"] = list(self.warnings)
        return out


def _band(values, interval, axis=0):
    values = np.asarray(values, dtype=np.float64)
    tail = (1.0 - float(interval)) / 2
    lower, median, upper = np.quantile(values, [tail, 0.5, 1.0 - tail], axis=axis)
    out = {"median": median, "lower": lower, "upper": upper}
    if values.ndim > 1:
        out["interval"] = float(interval)
    return out


def _peaks(temperatures, heat_capacity, low, high):
    """T* and C_max per row of ``heat_capacity`` (D, G) over ``temperatures`` (G,) in [low, high].

    The grid maximum refined by the vertex of the parabola through it and its neighbours
    (uneven spacing allowed); a maximum at an end of [low, high] is returned as is, flagged.
    """
    inside = (temperatures >= low * (1 - 1e-12)) & (temperatures <= high * (1 + 1e-12))
    x = temperatures[inside]
    order = np.argsort(x)
    x = x[order]
    y = np.asarray(heat_capacity)[:, inside][:, order]
    best = np.argmax(y, axis=1)
    at_edge = (best == 0) | (best == x.size - 1)
    k = np.clip(best, 1, max(x.size - 2, 1))
    rows = np.arange(y.shape[0])
    peak_t = x[best].astype(np.float64)
    peak_c = y[rows, best].astype(np.float64)
    if x.size >= 3:
        x0, x1, x2 = x[k - 1], x[k], x[k + 1]
        y0, y1, y2 = y[rows, k - 1], y[rows, k], y[rows, k + 1]
        denom = (x0 - x1) * (x0 - x2) * (x1 - x2)
        a = (x2 * (y1 - y0) + x1 * (y0 - y2) + x0 * (y2 - y1)) / denom
        b = (x2**2 * (y0 - y1) + x1**2 * (y2 - y0) + x0**2 * (y1 - y2)) / denom
        c = (x1 * x2 * (x1 - x2) * y0 + x2 * x0 * (x2 - x0) * y1 + x0 * x1 * (x0 - x1) * y2) / denom
        good = ~at_edge & (a < 0)
        with np.errstate(divide="ignore", invalid="ignore"):
            vertex_t = -b / (2 * a)
            vertex_c = c - b**2 / (4 * a)
        good &= (vertex_t >= x0) & (vertex_t <= x2)
        peak_t = np.where(good, vertex_t, peak_t)
        peak_c = np.where(good, np.maximum(vertex_c, peak_c), peak_c)
    return peak_t, peak_c, at_edge


def _assemble(temperatures, betas, index, mean_e, var_e, num_neurons, peak_low_high, *,
              method, settings, mcse_mean=None, mcse_var=None, autocorrelation=None,
              entropy_error=None, warning_list=()):
    """Curves per neuron at the requested temperatures from grid moments (D, G)."""
    mean_e = np.asarray(mean_e, dtype=np.float64)
    var_e = np.asarray(var_e, dtype=np.float64)
    weights_mean, weights_var = _entropy_weights(betas)
    entropy = num_neurons * math.log(2.0) + mean_e @ weights_mean.T + var_e @ weights_var.T
    grid_t = np.full(betas.shape, np.inf)
    grid_t[1:] = 1.0 / betas[1:]
    heat_grid = var_e * betas**2 / num_neurons  # Var/(N T²), 0 at β = 0
    peak_t, peak_c, at_edge = _peaks(grid_t, heat_grid, *peak_low_high)
    mcse = None
    if mcse_mean is not None:
        mcse_mean = np.asarray(mcse_mean, dtype=np.float64)
        mcse_var = np.asarray(mcse_var, dtype=np.float64)
        # Temperatures treated as independent (replica exchange correlates them somewhat).
        mcse_entropy = np.sqrt(
            mcse_mean**2 @ (weights_mean.T**2) + mcse_var**2 @ (weights_var.T**2)
        )
        mcse = {
            "energy_per_neuron": mcse_mean[:, index] / num_neurons,
            "heat_capacity_per_neuron": (mcse_var * betas**2)[:, index] / num_neurons,
            "entropy_per_neuron": mcse_entropy[:, index] / num_neurons,
        }
    return ThermoResult(
        temperatures=np.asarray(temperatures, dtype=np.float64),
        energy_per_neuron=mean_e[:, index] / num_neurons,
        heat_capacity_per_neuron=heat_grid[:, index],
        entropy_per_neuron=entropy[:, index] / num_neurons,
        peak_temperature=peak_t,
        peak_heat_capacity_per_neuron=peak_c,
        peak_at_edge=at_edge,
        method=method,
        num_neurons=int(num_neurons),
        mcse=mcse,
        autocorrelation_time=None if autocorrelation is None else autocorrelation[:, index],
        entropy_integration_error=entropy_error,
        settings=settings,
        warnings=list(warning_list),
    )


def _as_batch(h, J):
    h = np.asarray(h, dtype=np.float64)
    J = np.asarray(J, dtype=np.float64)
    if h.ndim == 1:
        h, J = h[None], J[None]
    if h.ndim != 2 or J.shape != (h.shape[0], h.shape[1], h.shape[1]):
        raise ValueError(f"expected h (N,) / (D, N) and J (N, N) / (D, N, N); got {h.shape}, "
                         f"{J.shape}")
    if not np.allclose(J, np.swapaxes(J, -1, -2)) or np.any(np.diagonal(J, axis1=1, axis2=2)):
        raise ValueError("J must be symmetric with zero diagonal (each pair once in E)")
    return h, J


def _uniform_moments(h, J):
    """⟨E⟩ and Var(E) at β = 0 (uniform spins): 0 and Σ h² + Σ_{i<j} J² (D,)."""
    var0 = np.sum(h**2, axis=-1) + 0.5 * np.sum(J**2, axis=(-2, -1))
    return np.zeros_like(var0), var0


# --------------------------------------------------------------------------------------------
# Exact enumeration
# --------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=16)
def _exact_kernel(grid_betas, target_betas, batch_size):
    """Jitted map over models of (⟨E⟩, Var E) on the grid and log Z at the targets.

    Cached on the (hashable) grids so that repeated calls with the same temperatures reuse
    the compiled code.
    """
    grid_temperatures = 1.0 / np.asarray(grid_betas)
    targets = np.asarray(target_betas)

    def one(params):
        model_h, model_J = params
        mean_e, var_e = ising.exact_energy_moments(model_h, model_J, grid_temperatures)
        log_z = jax.vmap(lambda b: ising.log_partition(b * model_h, b * model_J))(targets)
        return mean_e, var_e, log_z

    return jax.jit(lambda h, J: jax.lax.map(one, (h, J), batch_size=batch_size))


def exact_thermodynamics(h, J, temperatures, *, num_grid=64, peak_points=201, batch_size=4):
    r"""Exact thermodynamics by enumeration of all :math:`2^N` states, for one or more models.

    Parameters
    ----------
    h : (N,) or (D, N);  J : (N, N) or (D, N, N), symmetric, zero diagonal
    temperatures : (K,) positive
    num_grid : uniform β steps of the integration grid (module docstring)
    peak_points : extra temperatures evenly spaced over the requested range, to place the peak
        (exact evaluation is cheap; 0 uses only the requested temperatures)
    batch_size : models evaluated together (``jax.lax.map``; memory ∝ batch × 2^N)

    Returns
    -------
    ThermoResult with method "exact" and ``entropy_integration_error`` = max over draws and
    requested temperatures of :math:`|S_{\rm integrated} - (\log Z + \beta\langle E\rangle)|/N`.
    """
    temperatures = _check_temperatures(temperatures)
    h, J = _as_batch(h, J)
    num_neurons = h.shape[1]
    ising.check_exact(num_neurons, "exact thermodynamics")
    extra = np.linspace(temperatures[0], temperatures[-1], peak_points) if peak_points else ()
    betas, index = integration_grid(temperatures, num_grid, extra_temperatures=extra)
    targets = betas[index]
    kernel = _exact_kernel(tuple(betas[1:].tolist()), tuple(targets.tolist()),
                           min(int(batch_size), h.shape[0]))
    mean_e, var_e, log_z = kernel(jnp.asarray(h), jnp.asarray(J))
    mean0, var0 = _uniform_moments(h, J)
    mean_e = np.concatenate([mean0[:, None], np.asarray(mean_e)], axis=1)
    var_e = np.concatenate([var0[:, None], np.asarray(var_e)], axis=1)
    entropy_exact = np.asarray(log_z) + targets * mean_e[:, index]
    settings = {
        "num_grid": int(num_grid),
        "grid_size": int(betas.size),
        "beta_max": float(betas[-1]),
        "rule": "Hermite (endpoint-corrected trapezoid) on a beta grid from 0",
        "peak_points": int(peak_points),
    }
    result = _assemble(temperatures, betas, index, mean_e, var_e, num_neurons,
                       (temperatures[0], temperatures[-1]), method="exact", settings=settings)
    error = np.max(np.abs(result.entropy_per_neuron - entropy_exact / num_neurons))
    return dataclasses.replace(result, entropy_integration_error=float(error))


def independent_thermodynamics(h, temperatures):
    r"""Closed form for J = 0 (independent neurons), per neuron, shape (K,) each:

    .. math::

        \langle E\rangle_T = -\sum_i h_i \tanh(h_i/T), \quad
        \frac{C}{N} = \frac{1}{N}\sum_i \frac{h_i^2}{T^2\cosh^2(h_i/T)}, \quad
        S = \sum_i \Big[\log\big(2\cosh(h_i/T)\big) - \frac{h_i}{T}\tanh\frac{h_i}{T}\Big].

    Returns ``(energy_per_neuron, heat_capacity_per_neuron, entropy_per_neuron)``.
    """
    h = np.asarray(h, dtype=np.float64)
    temperatures = np.asarray(temperatures, dtype=np.float64)
    x = h[None, :] / temperatures[:, None]
    num_neurons = h.size
    energy = -np.sum(h * np.tanh(x), axis=1) / num_neurons
    heat = np.sum(x**2 / np.cosh(x) ** 2, axis=1) / num_neurons
    entropy = np.sum(pl.log_2cosh(x) - x * np.tanh(x), axis=1) / num_neurons
    return energy, heat, entropy


# --------------------------------------------------------------------------------------------
# Gibbs sampling
# --------------------------------------------------------------------------------------------


def _moments_from_energies(energies, thin):
    """⟨E⟩, Var(E), their MCSEs and τ (sweeps) per temperature from (draws, chains, temps)."""
    energies = np.asarray(energies, dtype=np.float64)
    num_draws, num_chains = energies.shape[:2]
    total = num_draws * num_chains
    mean = energies.mean(axis=(0, 1))
    squared = (energies - mean) ** 2
    var = squared.mean(axis=(0, 1))
    tau_e = autocorrelation_time(energies)
    tau_sq = autocorrelation_time(squared)
    mcse_mean = np.sqrt(energies.var(axis=(0, 1)) * tau_e / total)
    mcse_var = np.sqrt(squared.var(axis=(0, 1)) * tau_sq / total)
    return mean, var, mcse_mean, mcse_var, tau_e * thin


#: Sweeps scanned per compiled chunk of the vectorised sampler (one compilation per shape; the
#: burn-in, every extension of an adaptive run and the progress bar all advance by chunks).
SWEEP_CHUNK = 100


@dataclasses.dataclass(frozen=True)
class SamplerSchedule:
    """How long the vectorised Gibbs run is (sweeps per chain and temperature).

    ``num_sweeps`` an int fixes the kept sweeps; ``"auto"`` starts with ``initial_sweeps`` and
    extends in chunks, each time to the length the measured autocorrelation times ask for
    (``min_sweeps_per_tau`` τ and ``min_ess`` effective draws of the energy at every model and
    temperature, R-hat ≤ ``max_rhat``), up to ``max_sweeps``. With ``max_mcse_fraction``, also
    until the Monte Carlo error of C_max/N is at most that fraction of its posterior spread over
    the first ``band_size`` models (the posterior draws; see :func:`_band_noise`).
    """

    num_sweeps: int | str = "auto"
    burn_in: int = 200
    initial_sweeps: int = 500
    max_sweeps: int = 8000
    max_rhat: float = MAX_RHAT
    min_ess: float = float(MIN_ESS)
    min_sweeps_per_tau: float = MIN_SWEEPS_PER_TAU
    max_mcse_fraction: float | None = None
    band_size: int = 0

    def first_target(self):
        return int(self.num_sweeps) if self.num_sweeps != "auto" else int(self.initial_sweeps)

    def next_target(self, done, checks, num_chains):
        """Kept sweeps to reach next, or None to stop (fixed length, converged or at the cap)."""
        if self.num_sweeps != "auto" or checks["converged"] or done >= self.max_sweeps:
            return None
        tau = np.max(checks["autocorrelation_time_sweeps"])
        wanted = max(self.min_sweeps_per_tau * tau, self.min_ess * tau / num_chains)
        # R-hat alone failing: grow by half (more draws sharpen the between-chain comparison).
        wanted = max(1.1 * wanted, 1.5 * done)
        noise = checks.get("band_noise")
        if self.max_mcse_fraction is not None and noise is not None and np.isfinite(noise):
            wanted = max(wanted, 1.1 * done * (noise / self.max_mcse_fraction) ** 2)
        # At most doubling: the estimates that set the target are noisy on short runs.
        wanted = SWEEP_CHUNK * math.ceil(min(wanted, 2 * done) / SWEEP_CHUNK)
        return int(min(max(wanted, done + SWEEP_CHUNK), self.max_sweeps))


def _band_noise(var_e, mcse_var, betas, band_size):
    r"""Monte Carlo error of C_max/N relative to its posterior spread over ``band_size`` models.

    With :math:`C_d = \beta^2 \mathrm{Var}_d(E)` on the grid (the 1/N cancels), per draw d the
    grid maximum :math:`C_{\max,d}` and its MCSE :math:`\epsilon_d`; the ratio is
    :math:`\tilde\epsilon / \sqrt{\max(s^2 - \tilde\epsilon^2, 0)}`, with
    :math:`\tilde\epsilon` the median MCSE and s² the variance of :math:`C_{\max,d}` over
    draws (which contains the MC variance, hence the subtraction). A band's endpoints move out
    by a factor :math:`\sqrt{1 + r^2}` when the MC noise is r times the posterior spread.
    NaN when fewer than 10 models.
    """
    if band_size < 10:
        return float("nan")
    heat = var_e[:band_size] * betas**2
    noise = mcse_var[:band_size] * betas**2
    best = np.argmax(heat, axis=1)
    rows = np.arange(band_size)
    typical = np.median(noise[rows, best])
    spread2 = np.var(heat[rows, best], ddof=1) - typical**2
    return float(typical / np.sqrt(max(spread2, (1e-3 * typical) ** 2, 1e-300)))


def _energy_checks(energies, thin, schedule, tau=None, band_noise=None):
    """The Gibbs run's own convergence checks per model and temperature.

    energies : (draws, chains, D, K). Rank-normalised split R-hat (:func:`split_rhat`) over
    chains, ESS = draws · chains / τ with τ from :func:`autocorrelation_time` (the τ of the
    MCSEs; pass it as ``tau`` when known), and kept draws per τ. Returns a dict of (D, K)
    arrays and the verdict.
    """
    num_draws, num_chains = energies.shape[:2]
    series = np.moveaxis(energies, (0, 1), (-1, -2))  # (D, K, chains, draws)
    if num_chains > 1 and num_draws >= 4:
        rhat = split_rhat(series)
    else:
        rhat = np.full(series.shape[:2], np.nan)
    tau = autocorrelation_time(energies) if tau is None else tau  # in draws, (D, K)
    ess = num_draws * num_chains / tau
    per_tau = num_draws / tau
    rhat_over, ess_under = rule_failures(rhat, ess, max_rhat=schedule.max_rhat,
                                         min_ess=schedule.min_ess)  # the one rule; NaN fails
    converged = (~rhat_over & ~ess_under & ~np.isnan(rhat) & ~np.isnan(ess)
                 & (per_tau >= schedule.min_sweeps_per_tau))
    band_ok = (schedule.max_mcse_fraction is None or band_noise is None
               or not np.isfinite(band_noise) or band_noise <= schedule.max_mcse_fraction)
    return {"rhat": rhat, "ess_bulk": ess, "autocorrelation_time_sweeps": tau * thin,
            "sweeps_per_autocorrelation_time": per_tau, "converged_each": converged,
            "band_noise": band_noise, "converged": bool(np.all(converged) and band_ok)}


def _run_ladder(rng_key, h, J, ladder, num_chains, replica_exchange, schedule, progress):
    """Burn-in, then kept sweeps of all models (D) × chains × ladder temperatures at once.

    Returns the kept energies (sweeps, chains, D, K; K in increasing β), their moments
    (:func:`_moments_from_energies`), the last checks, the mean exchange
    acceptance (D, K − 1) and the wall time of the sampling.
    """
    from bayes_ising.core import gibbs

    init_key, run_key = jax.random.split(rng_key)
    betas = 1.0 / ladder[::-1]
    state = gibbs.init_models(init_key, h, J, ladder, num_chains)
    burn_in = SWEEP_CHUNK * math.ceil(int(schedule.burn_in) / SWEEP_CHUNK)
    target = schedule.first_target()
    bar = _progress_bar(progress, burn_in + target, h.shape[0], num_chains, ladder.size)
    run = functools.partial(gibbs.sample_models_energies, run_key, h, J,
                            temperatures=ladder, num_chains=num_chains,
                            replica_exchange=replica_exchange, chunk_size=SWEEP_CHUNK, bar=bar)
    start = time.perf_counter()
    if burn_in:
        state, _, _ = run(state, num_sweeps=burn_in)
    pieces, accepted, done = [], 0.0, 0
    while True:
        state, energies, chunk_accepted = run(state, num_sweeps=target - done,
                                              first_sweep=burn_in + done)
        pieces.append(np.moveaxis(energies, 1, 2)[..., ::-1])  # (sweeps, chains, D, K), β up
        accepted = accepted + chunk_accepted
        done = target
        kept = np.concatenate(pieces, axis=0)
        moments = _moments_from_energies(kept, 1)
        noise = _band_noise(moments[1], moments[3], betas, schedule.band_size)
        checks = _energy_checks(kept, 1, schedule, tau=moments[4], band_noise=noise)
        target = schedule.next_target(done, checks, num_chains)
        if target is None:
            break
        if bar is not None:
            bar.total = burn_in + target
            bar.refresh()
    if bar is not None:
        bar.close()
    return kept, moments, checks, accepted / done, time.perf_counter() - start


def _progress_bar(progress, total, num_models, num_chains, num_temps):
    if not progress:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, unit="sweep", file=sys.stderr, leave=False,
                desc=f"Gibbs ({num_models} models × {num_chains} chains × {num_temps} T)")


def _short_run_message(kept_sweeps, worst, temperatures, min_sweeps_per_tau, short):
    worst_k = int(np.argmax(worst))
    return (
        f"Gibbs run too short: {kept_sweeps} sweeps per chain but the energy "
        f"autocorrelation time reaches {worst[worst_k]:.3g} sweeps at "
        f"T = {temperatures[worst_k]:.3g} (need >= {min_sweeps_per_tau:g} tau, "
        f"too short at {int(np.sum(short))} of {short.size} temperatures); heat capacity "
        "and entropy are unreliable — increase num_sweeps (--num-sweeps), or check the "
        "model for multimodality"
    )


def _checks_summary(checks, index, schedule, num_sweeps):
    """JSON-able summary of the Gibbs checks over models, on the whole ladder."""
    ok = checks["converged_each"]
    return {
        "converged": checks["converged"],
        "max_rhat": float(np.nanmax(checks["rhat"])),
        "min_ess_bulk": float(np.min(checks["ess_bulk"])),
        "min_sweeps_per_autocorrelation_time": float(
            np.min(checks["sweeps_per_autocorrelation_time"])),
        "max_autocorrelation_time_sweeps": float(np.max(checks["autocorrelation_time_sweeps"])),
        "fraction_converged": float(np.mean(ok)),
        "models_converged": np.all(ok, axis=1).tolist(),
        "c_max_mcse_over_posterior_sd": checks["band_noise"],
        "num_sweeps": int(num_sweeps),
        "thresholds": {"max_rhat": schedule.max_rhat, "min_ess": schedule.min_ess,
                       "min_sweeps_per_autocorrelation_time": schedule.min_sweeps_per_tau},
    }


def _unconverged_message(summary, kept_sweeps, max_mcse_fraction):
    """Why a Gibbs run stopped unconverged: its chains, or only the MC error of the C_max band."""
    band = summary.get("c_max_mcse_over_posterior_sd")
    if (summary["fraction_converged"] == 1.0 and max_mcse_fraction is not None
            and band is not None and np.isfinite(band)):
        ratio = "≥ 30" if band >= 30 else f"{band:.2f}"
        return (f"after {kept_sweeps} sweeps every chain check passes (max R-hat "
                f"{summary['max_rhat']:.4f}, min energy ESS {summary['min_ess_bulk']:.0f}), but "
                f"the MC error of C_max/N is {ratio} × its posterior spread (target "
                f"{max_mcse_fraction:g}): the T* and C_max/N intervals are widened by MC noise")
    return (f"Gibbs checks not all met after {kept_sweeps} sweeps: max R-hat "
            f"{summary['max_rhat']:.4f}, min energy ESS {summary['min_ess_bulk']:.0f} "
            f"({100 * summary['fraction_converged']:.1f}% of model × temperature pairs pass)")


def sampled_thermodynamics(rng_key, h, J, temperatures, *, num_chains=4, num_sweeps="auto",
                           burn_in=200, thin=1, num_grid=16, replica_exchange="auto",
                           min_sweeps_per_tau=MIN_SWEEPS_PER_TAU, on_short_run="raise",
                           max_sweeps=8000, max_mcse_fraction=None, band_size=0,
                           progress=False):
    r"""Thermodynamics from the Gibbs sampler: every model (posterior draw) × chain × grid
    temperature advances in one vectorised, jitted run (float32 spins, replica exchange).

    Parameters
    ----------
    rng_key : JAX PRNG key
    h : (N,) or (D, N);  J : (N, N) or (D, N, N)
    temperatures : (K,) positive
    num_chains : chains per model and temperature (≥ 2 for R-hat)
    num_sweeps : kept sweeps per chain (int), or "auto": extended in chunks of
        :data:`SWEEP_CHUNK` until R-hat ≤ 1.01, energy ESS ≥ 400 and ≥ ``min_sweeps_per_tau``
        autocorrelation times hold for every model and grid temperature, or ``max_sweeps``
    burn_in : discarded sweeps (rounded up to whole chunks); ``thin``: keep every thin-th
    num_grid : uniform β steps of the integration grid; every grid temperature is sampled
    replica_exchange : True, False or "auto" (on when the ladder has ≥ 4 temperatures)
    on_short_run : "raise" (:class:`RunTooShortError`) or "warn" (:class:`AutocorrelationWarning`)
        when the kept sweeps are fewer than ``min_sweeps_per_tau`` τ at a requested temperature
    max_mcse_fraction, band_size : with "auto", also run until the MC error of C_max/N is at
        most this fraction of its spread over the first ``band_size`` models (posterior draws)

    Returns
    -------
    ThermoResult with method "gibbs", MCSEs, ``autocorrelation_time`` (sweeps) and
    ``settings["gibbs_convergence"]`` (:func:`_checks_summary`).
    """
    if on_short_run not in ("raise", "warn"):
        raise ValueError(f"on_short_run must be 'raise' or 'warn', got {on_short_run!r}")
    temperatures = _check_temperatures(temperatures)
    h, J = _as_batch(h, J)
    num_models, num_neurons = h.shape
    betas, index = integration_grid(temperatures, num_grid)
    ladder = 1.0 / betas[:0:-1]  # β = 0 is known in closed form; the ladder in increasing T
    if replica_exchange == "auto":
        replica_exchange = ladder.size >= 4
    schedule = SamplerSchedule(num_sweeps=num_sweeps, burn_in=int(burn_in),
                               max_sweeps=int(max_sweeps),
                               min_sweeps_per_tau=float(min_sweeps_per_tau),
                               max_mcse_fraction=max_mcse_fraction, band_size=int(band_size))
    energies, moments, checks, acceptance, wall = _run_ladder(
        rng_key, h, J, ladder, int(num_chains), bool(replica_exchange), schedule, progress)
    kept_sweeps = energies.shape[0]
    if int(thin) > 1:  # judge the kept, thinned draws
        energies = energies[int(thin) - 1::int(thin)]
        moments = _moments_from_energies(energies, int(thin))
        checks = _energy_checks(energies, int(thin), schedule, tau=moments[4] / int(thin),
                                band_noise=checks["band_noise"])
    mean_e, var_e, mcse_mean, mcse_var, tau = moments
    mean0, var0 = _uniform_moments(h, J)
    zeros = np.zeros((num_models, 1))

    def with_zero(values, first):
        return np.concatenate([first[:, None], values], axis=1)

    tau_full = with_zero(tau, np.ones(num_models))
    worst = np.max(tau_full[:, index], axis=0)
    short = kept_sweeps < min_sweeps_per_tau * worst
    warning_list = []
    summary = _checks_summary(checks, index, schedule, kept_sweeps)
    if np.any(short):
        message = _short_run_message(kept_sweeps, worst, temperatures, min_sweeps_per_tau, short)
        if on_short_run == "raise":
            raise RunTooShortError(message)
        warnings.warn(message, AutocorrelationWarning, stacklevel=2)
        warning_list.append(message)
    if on_short_run == "raise" and summary["max_rhat"] > STUCK_RHAT:
        # chains left in different modes: the within-chain τ looks short, R-hat does not
        raise RunTooShortError(
            f"Gibbs chains did not mix after {kept_sweeps} sweeps: max R-hat "
            f"{summary['max_rhat']:.3f} > {STUCK_RHAT} (chains stuck in different modes); use "
            "replica exchange or more sweeps")
    if not summary["converged"] and not np.any(short):
        warning_list.append(_unconverged_message(summary, kept_sweeps, max_mcse_fraction))
    settings = {
        "num_grid": int(num_grid), "grid_size": int(betas.size), "beta_max": float(betas[-1]),
        "rule": "Hermite (endpoint-corrected trapezoid) on a beta grid from 0",
        "num_chains": int(num_chains), "num_sweeps": int(kept_sweeps),
        "num_sweeps_setting": num_sweeps, "max_sweeps": int(max_sweeps),
        "burn_in": int(SWEEP_CHUNK * math.ceil(int(burn_in) / SWEEP_CHUNK)), "thin": int(thin),
        "replica_exchange": bool(replica_exchange), "dtype": "float32",
        "min_sweeps_per_tau": float(min_sweeps_per_tau),
        "min_swap_acceptance": float(np.min(acceptance)) if ladder.size > 1 and
        replica_exchange else None,
        "sampling_wall_s": float(wall),
        "spin_updates_per_s": float(num_models * num_chains * ladder.size * num_neurons
                                    * (kept_sweeps + int(burn_in)) / max(wall, 1e-9)),
        "gibbs_convergence": summary,
    }
    return _assemble(
        temperatures, betas, index, with_zero(mean_e, mean0), with_zero(var_e, var0),
        num_neurons, (temperatures[0], temperatures[-1]), method="gibbs", settings=settings,
        mcse_mean=np.concatenate([zeros, mcse_mean], axis=1),
        mcse_var=np.concatenate([zeros, mcse_var], axis=1),
        autocorrelation=tau_full, warning_list=warning_list,
    )


def thermodynamics(rng_key, h, J, temperatures, *, method="auto", **options):
    """Exact (N ≤ :data:`AUTO_EXACT_THERMO_NEURONS` for "auto") or sampled thermodynamics.

    ``options`` go to :func:`exact_thermodynamics` or :func:`sampled_thermodynamics` (the
    exact path ignores the sampler's options); ``rng_key`` is unused by the exact path. The
    sampled path integrates in NumPy float64 whatever the JAX precision; the exact one needs
    float64 (:class:`~bayes_ising.errors.Float64Error`).
    """
    h_batch, _ = _as_batch(h, J)
    num_neurons = h_batch.shape[1]
    if method == "auto":
        method = "exact" if num_neurons <= AUTO_EXACT_THERMO_NEURONS else "gibbs"
    if method == "exact":
        exact_keys = {"num_grid", "peak_points", "batch_size"}
        return exact_thermodynamics(
            h, J, temperatures, **{k: v for k, v in options.items() if k in exact_keys}
        )
    if method == "gibbs":
        return sampled_thermodynamics(rng_key, h, J, temperatures, **options)
    raise ValueError(f"method must be 'auto', 'exact' or 'gibbs', got {method!r}")


# --------------------------------------------------------------------------------------------
# Posterior bands
# --------------------------------------------------------------------------------------------


def posterior_parameters(rng_key, tree, num_draws=None):
    """``(h (D, N), J (D, N, N))`` for D posterior draws, picked at random without replacement
    with ``rng_key`` — :func:`bayes_ising.fit.posterior.posterior_draws` (the posterior
    contract)."""
    from bayes_ising.fit.posterior import posterior_draws

    return posterior_draws(tree, num_draws, rng_key)


def posterior_thermodynamics(rng_key, tree, temperatures, *, num_draws=100, method="auto",
                             **options):
    """Thermodynamic curves over ``num_draws`` posterior draws of a posterior DataTree.

    The exact path evaluates all draws in batches (``jax.lax.map``); the Gibbs path runs one
    vectorised (chains × temperatures) sampler per draw. Bands come from
    :meth:`ThermoResult.to_dict`.
    """
    draw_key, run_key = jax.random.split(rng_key)
    h, J = posterior_parameters(draw_key, tree, num_draws)
    return thermodynamics(run_key, h, J, temperatures, method=method, **options)


def posterior_subsample_peaks(rng_key, tree, sizes, temperatures, *, num_subsets=10,
                              interval=0.9, method="auto", **options):
    """C_max/N and T* of sub-models on random neuron subsets of each size in ``sizes``, from
    the posterior-mean h and J restricted to the subset (not refits; the study's finite-size
    check), with central ``interval`` bands over the subsets.

    Raises BayesIsingError for sizes outside 1..N or ``num_subsets`` < 1.
    """
    if num_subsets < 1:
        raise BayesIsingError(f"--num-subsets must be at least 1, got {num_subsets}")
    h, J = posterior_parameters(rng_key, tree)
    num_neurons = h.shape[1]
    sizes = sorted({int(v) for v in sizes})
    if sizes[0] < 1 or sizes[-1] > num_neurons:
        raise BayesIsingError(f"--subsample-sizes must lie in 1..{num_neurons}, got {sizes}")
    results = peak_versus_subsample(rng_key, h.mean(axis=0), J.mean(axis=0), sizes,
                                    temperatures, num_subsets=num_subsets, method=method,
                                    **options)
    peaks = {name: {} for name in ("temperature", "heat_capacity_per_neuron")}
    for size, result in results.items():
        for name, values in (("temperature", result.peak_temperature),
                             ("heat_capacity_per_neuron", result.peak_heat_capacity_per_neuron)):
            lower, median, upper = np.quantile(values, [(1 - interval) / 2, 0.5,
                                                        (1 + interval) / 2])
            peaks[name][str(size)] = {"median": median, "lower": lower, "upper": upper}
    return {"sizes": sizes, "num_subsets": num_subsets, "interval": interval,
            "parameters": "posterior mean h and J restricted to each subset (not refits)",
            "peak": peaks}


#: Default temperature grid (:data:`bayes_ising.core.limits.DEFAULT_TEMPERATURES`, JAX-free for
#: ``--help``).
DEFAULT_TEMPERATURES = limits.DEFAULT_TEMPERATURES

#: Default posterior draws (:data:`bayes_ising.core.limits.DEFAULT_POSTERIOR_DRAWS`: why 64).
DEFAULT_POSTERIOR_DRAWS = limits.DEFAULT_POSTERIOR_DRAWS

#: Default Monte Carlo error of each draw's C_max/N, as a fraction of the posterior sd, that the
#: adaptive Gibbs run aims for: MC noise r σ widens the band by √(1 + r²), at r = 0.5 by 12%
#: (endpoints +0.19 σ, comparable to the ±0.26 σ of 64 draws). The sampling cost grows as D/r².
DEFAULT_MAX_MCSE_FRACTION = 0.5


def _take_rows(result, rows):
    """The ThermoResult of a subset ``rows`` of its models (draws)."""
    def take(value):
        return None if value is None else np.asarray(value)[rows]

    mcse = None if result.mcse is None else {k: take(v) for k, v in result.mcse.items()}
    settings = dict(result.settings)
    if "gibbs_convergence" in settings:
        checks = dict(settings["gibbs_convergence"])
        checks["models_converged"] = np.asarray(checks["models_converged"])[rows].tolist()
        settings["gibbs_convergence"] = checks
    return dataclasses.replace(
        result, energy_per_neuron=take(result.energy_per_neuron),
        heat_capacity_per_neuron=take(result.heat_capacity_per_neuron),
        entropy_per_neuron=take(result.entropy_per_neuron),
        peak_temperature=take(result.peak_temperature),
        peak_heat_capacity_per_neuron=take(result.peak_heat_capacity_per_neuron),
        peak_at_edge=take(result.peak_at_edge), mcse=mcse,
        autocorrelation_time=take(result.autocorrelation_time), settings=settings)


def tidy_curves(results, interval=0.9):
    """Long table of the bands: one row per (model, quantity, temperature) with columns
    ``model``, ``quantity``, ``temperature``, ``median``, ``lower``, ``upper``, ``interval``,
    ``max_mcse`` (largest Monte Carlo standard error over draws; NaN when exact).

    ``results``: mapping name → :class:`ThermoResult` (e.g. "posterior", "shuffled").
    """
    import pandas as pd

    rows = []
    for model, result in results.items():
        for quantity in ("energy_per_neuron", "heat_capacity_per_neuron", "entropy_per_neuron"):
            band = _band(getattr(result, quantity), interval)
            mcse = (np.max(result.mcse[quantity], axis=0) if result.mcse is not None
                    else np.full(result.temperatures.shape, np.nan))
            for k, temperature in enumerate(result.temperatures):
                rows.append({"model": model, "quantity": quantity,
                             "temperature": float(temperature),
                             "median": float(band["median"][k]),
                             "lower": float(band["lower"][k]), "upper": float(band["upper"][k]),
                             "interval": float(interval), "max_mcse": float(mcse[k])})
    return pd.DataFrame(rows)


def peak_summary(result, interval=0.9):
    """``{"T_peak": {median, lower, upper}, "C_max_per_neuron": {...}, "fraction_at_edge"}``
    over the models (draws) of a :class:`ThermoResult`."""
    def band(values):
        return {k: float(v) for k, v in _band(values, interval).items()}

    return {"T_peak": band(result.peak_temperature),
            "C_max_per_neuron": band(result.peak_heat_capacity_per_neuron),
            "fraction_at_edge": float(np.mean(result.peak_at_edge)), "interval": float(interval)}


@dataclasses.dataclass(frozen=True)
class FitThermodynamics:
    """Output of :func:`fit_thermodynamics` for one fit.

    posterior, control : ThermoResult (control None without spins); control_info : the
    shuffles' fit details; curves : pandas DataFrame (:func:`tidy_curves`); summary : dict
    with ``T_peak``, ``C_max_per_neuron`` ({median, lower, upper}), ``control`` (the same for
    the shuffled control), ``gibbs_convergence``, ``wall_s``, ``caveat``.
    """

    posterior: ThermoResult
    control: ThermoResult | None
    control_info: dict | None
    curves: object
    summary: dict

    def to_dict(self, interval=0.9):
        """JSON layout of ``bayes-ising thermo`` plus the summary."""
        out = self.posterior.to_dict(interval=interval)
        if self.control is not None:
            control = self.control.to_dict(interval=interval)
            control.pop("caveat", None)
            control.update(self.control_info)
            out["shuffled_control"] = control
        out["summary"] = self.summary
        return out


def fit_thermodynamics(rng_key, posterior, control_spins=None, *, temperatures=None,
                       num_posterior_draws=DEFAULT_POSTERIOR_DRAWS, num_shuffles=1,
                       method="auto", interval=0.9, progress=False, **sampler):
    """C(T)/N, S(T)/N and ⟨E⟩/N with posterior bands, T* and C_max/N with intervals, and the
    shuffled-data control, for one fit — the call the study pipeline makes per fit.

    Parameters
    ----------
    rng_key : JAX PRNG key (draw choice, shuffles, sampler)
    posterior : posterior DataTree, or ``(h (D, N), J (D, N, N))`` draws
    control_spins : (num_bins, N) ±1 spins the posterior was fit to, in its neuron order
        (e.g. ``posterior.align(tree, data).spins``), or None for no control
    temperatures : (K,) or a :func:`parse_temperatures` string (default
        :data:`DEFAULT_TEMPERATURES`)
    num_posterior_draws : draws used (:data:`DEFAULT_POSTERIOR_DRAWS`; all when fewer)
    num_shuffles : shuffled copies for the control
    method : "auto" (exact for N ≤ :data:`AUTO_EXACT_THERMO_NEURONS`), "exact" or "gibbs"
    sampler : options of :func:`sampled_thermodynamics` (num_chains, num_sweeps, ...)

    With Gibbs, the posterior draws and the control's models run in one vectorised program.

    A K-pairwise posterior (draws of ``V``: :func:`bayes_ising.fit.posterior.family`) is run
    as the K-pairwise model by :func:`bayes_ising.analysis.families.thermodynamics` — exact
    for N ≤ :data:`AUTO_EXACT_THERMO_NEURONS` under "auto", else its Gibbs sampler on a fixed
    schedule (``num_chains``, ``num_sweeps`` (2000 for "auto"), ``burn_in``; 24 grid
    temperatures) with the energies' split R-hat per model and temperature in
    ``summary["gibbs_convergence"]``; the shuffled control's models are pairwise fits (V = 0).
    Returns :class:`FitThermodynamics`.
    """
    start = time.perf_counter()
    draw_key, shuffle_key, run_key = jax.random.split(rng_key, 3)
    if temperatures is None or isinstance(temperatures, str):
        temperatures = parse_temperatures(temperatures or DEFAULT_TEMPERATURES)
    if isinstance(posterior, tuple):
        from bayes_ising.fit.posterior import thin

        h, J = (np.asarray(a, dtype=np.float64) for a in posterior)
        keep = thin(h.shape[0], num_posterior_draws, draw_key)  # the contract's thinning rule
        h, J = h[keep], J[keep]
        V = None
    else:
        from bayes_ising.fit.posterior import posterior_draws

        h, J, V = posterior_draws(posterior, num_posterior_draws, draw_key, potential=True)
        V = None if V is None or not np.any(V) else V
    num_draws, num_neurons = h.shape
    control_info = None
    if control_spins is not None:
        control_spins = np.asarray(control_spins)
        if control_spins.ndim != 2 or control_spins.shape[1] != num_neurons:
            raise DataError(f"control spins must be (num_bins, {num_neurons}) like the "
                            f"posterior's neurons, got shape {control_spins.shape}")
        h_c, J_c, fit_method, fit_warnings = _fit_shuffles(
            shuffle_key, control_spins, num_shuffles, 1e-3, "auto")
        control_info = {"max_abs_J": np.max(np.abs(J_c), axis=(1, 2)),
                        "fit_method": fit_method, "l2": 1e-3,
                        "num_shuffles": int(num_shuffles), "fit_warnings": fit_warnings}
        h, J = np.concatenate([h, h_c]), np.concatenate([J, J_c])
        if V is not None:
            V = np.concatenate([V, np.zeros((h_c.shape[0], num_neurons + 1))])
    gibbs = method == "gibbs" or (method == "auto" and num_neurons > AUTO_EXACT_THERMO_NEURONS)
    if V is not None:
        combined = _kpairwise_thermodynamics(run_key, h, J, V, temperatures, gibbs, sampler)
    else:
        options = {}
        if gibbs:
            options = {"max_mcse_fraction": DEFAULT_MAX_MCSE_FRACTION, **sampler,
                       "band_size": num_draws, "progress": progress}
        combined = thermodynamics(run_key, h, J, temperatures, method=method, **options)
    result = _take_rows(combined, np.arange(num_draws))
    control = None
    if control_info is not None:
        control = _take_rows(combined, np.arange(num_draws, h.shape[0]))
    parts = {"posterior": result} | ({"shuffled": control} if control is not None else {})
    summary = peak_summary(result, interval)
    summary["control"] = None if control is None else peak_summary(control, interval)
    summary["method"] = combined.method
    summary["num_posterior_draws"] = int(num_draws)
    summary["num_neurons"] = int(num_neurons)
    summary["gibbs_convergence"] = combined.settings.get("gibbs_convergence")
    summary["family"] = "pairwise" if V is None else "k_pairwise"
    summary["wall_s"] = time.perf_counter() - start
    summary["caveat"] = CRITICALITY_CAVEAT
    return FitThermodynamics(result, control, control_info, tidy_curves(parts, interval),
                             summary)


def _kpairwise_thermodynamics(rng_key, h, J, V, temperatures, gibbs, sampler):
    """The K-pairwise branch of :func:`fit_thermodynamics` (exact, or Gibbs on a fixed
    schedule with the energies' split R-hat and a warning above :data:`MAX_RHAT`)."""
    from bayes_ising.analysis import families
    from bayes_ising.core.convergence import MAX_RHAT, split_rhat

    if not gibbs:
        return families.thermodynamics(h, J, V, temperatures, method="exact")
    num_sweeps = sampler.get("num_sweeps", "auto")
    num_sweeps = 2000 if num_sweeps == "auto" else int(num_sweeps)
    burn_in = int(sampler.get("burn_in", 200))
    num_chains = int(sampler.get("num_chains", 4))
    result = families.thermodynamics(
        h, J, V, temperatures, method="gibbs", num_grid=24, rng_key=rng_key,
        num_chains=num_chains, num_sweeps=num_sweeps + burn_in, burn_in=burn_in,
        return_energies=True)
    result, energies = result
    # energies (D, kept, chains, G − 1) → (D, G − 1, chains, kept)
    rhat = np.asarray(split_rhat(np.moveaxis(energies, (1, 2, 3), (3, 2, 1))))
    worst = float(np.nanmax(rhat))
    checks = {"rule": f"split R-hat of the energy <= {MAX_RHAT} at every grid temperature",
              "max_rhat": worst, "models_converged": (np.nanmax(rhat, axis=1) <= MAX_RHAT)
              .tolist(), "schedule": "fixed (K-pairwise sampler: no automatic extension)"}
    warnings_ = list(result.warnings)
    if not worst <= MAX_RHAT:
        warnings_.append(f"K-pairwise Gibbs: max split R-hat of the energy {worst:.3f} > "
                         f"{MAX_RHAT}; run more sweeps (--num-sweeps)")
    return dataclasses.replace(result, settings=dict(result.settings, gibbs_convergence=checks),
                               warnings=warnings_)


# --------------------------------------------------------------------------------------------
# Controls
# --------------------------------------------------------------------------------------------


def shuffle_bins(rng_key, spins):
    """Permute each neuron's bins independently: keeps firing rates, destroys correlations.

    ``spins`` (num_bins, N) → same shape and dtype. One sort: each column is reordered by
    i.i.d. uniform keys (a uniformly random permutation per neuron).
    """
    spins = np.asarray(spins)
    keys = jax.random.uniform(rng_key, spins.shape, jnp.float32)
    order = np.argsort(np.asarray(keys), axis=0, kind="stable")
    return np.take_along_axis(spins, order, axis=0)


def mean_field_fit(spins, min_rate_bins=1.0):
    r"""Naive mean-field inverse Ising fit (Kappen & Rodríguez 1998), for nearly independent data.

    .. math:: J = -(C^{-1})_{i \ne j}, \qquad h_i = \operatorname{atanh} m_i - \sum_j J_{ij} m_j,

    with :math:`C_{ij} = \langle s_i s_j\rangle - m_i m_j`. Exact to first order in the
    connected correlations, so accurate for shuffled data, whose correlations are sampling noise
    of order :math:`1/\sqrt{T}` (checked against the pseudolikelihood fit in the tests).
    Rates are clipped to ``min_rate_bins`` bins from 0 and 1 (a silent neuron gets a finite
    h and couplings of order 1/T). Returns ``(h (N,), J (N, N))`` float64.
    """
    x = np.asarray(spins, dtype=np.float64)
    num_bins = x.shape[0]
    bound = 1.0 - 2.0 * float(min_rate_bins) / num_bins
    m = np.clip(x.mean(axis=0), -bound, bound)
    cov = x.T @ x / num_bins - np.outer(m, m)
    # A clipped (silent or saturated) neuron keeps the variance of its clipped rate.
    cov[np.diag_indices_from(cov)] = np.maximum(np.diag(cov), 1.0 - m**2)
    J = -np.linalg.inv(cov)
    np.fill_diagonal(J, 0.0)
    J = 0.5 * (J + J.T)
    return stats.independent_fields(m, num_bins) - J @ m, J


def _fit_shuffles(rng_key, spins, num_shuffles, l2, fit):
    """Fit ``num_shuffles`` bin-shuffled copies of ``spins``; (h (S, N), J (S, N, N), method,
    deduplicated fit warnings)."""
    from bayes_ising.fit import mle

    num_neurons = spins.shape[1]
    if fit == "auto":
        fit = "exact" if num_neurons <= AUTO_EXACT_THERMO_NEURONS else "mean_field"
    if fit not in ("exact", "pseudo", "mean_field"):
        raise ValueError(f"fit must be 'auto', 'exact', 'pseudo' or 'mean_field', got {fit!r}")
    hs, Js, fit_warnings = [], [], []
    for key in jax.random.split(rng_key, int(num_shuffles)):
        shuffled = shuffle_bins(key, spins)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            if fit == "mean_field":
                h, J = mean_field_fit(shuffled)
            else:
                fitter = mle.fit_exact if fit == "exact" else functools.partial(
                    mle.fit_pseudo, check_moments=False)
                result = fitter(shuffled, l2=l2)
                h, J = result.h, result.J
        hs.append(np.asarray(h, dtype=np.float64))
        Js.append(np.asarray(J, dtype=np.float64))
        # e.g. pairs of sparse neurons that never fire together in a shuffle (finite by l2)
        fit_warnings.extend(str(w.message) for w in caught if str(w.message) not in fit_warnings)
    return np.stack(hs), np.stack(Js), fit, fit_warnings


def shuffled_control(rng_key, spins, temperatures, *, num_shuffles=1, l2=1e-3, method="auto",
                     fit="auto", **options):
    """Thermodynamics of models fitted to shuffled data (each neuron's bins permuted).

    Each of ``num_shuffles`` shuffles is fitted — by exact moment matching
    (:func:`bayes_ising.fit.mle.fit_exact`, L2 penalty ``l2``) when N ≤
    :data:`AUTO_EXACT_THERMO_NEURONS`, by the naive mean-field inverse (:func:`mean_field_fit`,
    accurate for data without correlations and O(N³)) otherwise, or by the pseudolikelihood
    (``fit="pseudo"``) — and the curves of the fits are returned as the draws of a
    :class:`ThermoResult` (a band over shuffles). Shuffling destroys the correlations, so the
    fitted J are near 0 (finite-sample noise) and the curves approach the independent model's.

    Returns ``(ThermoResult, info)`` with ``info`` = {"max_abs_J": (num_shuffles,),
    "fit_method", "l2", "num_shuffles", "fit_warnings": the fits' warnings, deduplicated}.
    """
    fit_key, run_key = jax.random.split(rng_key)
    h, J, fit_method, fit_warnings = _fit_shuffles(fit_key, np.asarray(spins), num_shuffles,
                                                   l2, fit)
    result = thermodynamics(run_key, h, J, temperatures, method=method, **options)
    info = {"max_abs_J": np.max(np.abs(J), axis=(1, 2)), "fit_method": fit_method,
            "l2": float(l2), "num_shuffles": int(num_shuffles), "fit_warnings": fit_warnings}
    return result, info


def peak_versus_subsample(rng_key, h, J, sizes, temperatures, *, num_subsets=10,
                          method="auto", **options):
    """C_max/N and T* of sub-models on random subsets of neurons, per subset size.

    For each size n in ``sizes``, ``num_subsets`` random subsets of n neurons; the sub-model
    keeps their h_i and J_ij (it is *not* the marginal of the full model over them, nor a
    refit to their data). Returns {n: ThermoResult} with one draw per subset.
    """
    h = np.asarray(h, dtype=np.float64)
    J = np.asarray(J, dtype=np.float64)
    num_neurons = h.shape[0]
    out = {}
    for n, key in zip(sizes, jax.random.split(rng_key, len(sizes)), strict=True):
        n = int(n)
        if not 1 <= n <= num_neurons:
            raise ValueError(f"subset size {n} outside 1..{num_neurons}")
        subset_key, run_key = jax.random.split(key)
        subsets = np.stack([
            np.sort(np.asarray(jax.random.choice(k, num_neurons, (n,), replace=False)))
            for k in jax.random.split(subset_key, int(num_subsets))
        ])
        sub_h = h[subsets]
        sub_J = J[subsets[:, :, None], subsets[:, None, :]]
        out[n] = thermodynamics(run_key, sub_h, sub_J, temperatures, method=method, **options)
    return out
