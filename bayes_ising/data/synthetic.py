r"""Synthetic spiking data with known ground truth.

Generators, all taking a JAX PRNG key first:

* **Equilibrium Ising data** — :func:`ei_ising_parameters` plants fields and couplings with an
  excitatory/inhibitory (E/I) block structure and :func:`sample_ising` draws independent
  patterns from :math:`P(s) = e^{-E(s)}/Z`, :math:`E(s) = -\sum_i h_i s_i - \sum_{i<j} J_{ij}
  s_i s_j` (each pair once, as everywhere in the package): exactly by enumeration for
  N ≤ :data:`MAX_EXACT_SAMPLING_NEURONS`, by Gibbs sampling above. Use it to test fits against
  planted parameters.
* **A kinetic E/I network** — :func:`ei_network` runs asymmetric, Dale's-law couplings (every
  E neuron excites its targets, every I neuron inhibits them) as parallel Glauber dynamics with
  a slow up/down drive whose strength depends on the behavioural state (``wake``, ``light``,
  ``deep``), and returns binned :class:`~bayes_ising.data.SpikeData` made from spike *times*.
  It is *not* an equilibrium Ising model, which is what makes it a test of the analysis: the
  phenomena it is built to show are listed in its docstring and checked in
  ``tests/test_synthetic.py``.

* **A pooling-interneuron E/I network** — :func:`pooling_network` runs *symmetric* E/I
  weights in which each I neuron pools about half the E neurons, by heat-bath dynamics, in
  three sleep states; it makes the embedded dataset :func:`bayes_ising.data.datasets.ei_sleep`
  (and, with the pooling off, :func:`bayes_ising.data.datasets.ei_sleep_control`). Its docstring
  says which mechanism produces which of the study's phenomena.

:func:`bayes_ising.data.datasets.ei_sleep_kinetic` is one fixed run of :func:`ei_network` (the
previous default dataset).
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import scipy.signal

from bayes_ising.core import ising, limits
from bayes_ising.errors import ModelSpecError

__all__ = [
    "MAX_EXACT_SAMPLING_NEURONS",
    "IsingTruth",
    "StateDrive",
    "NetworkTruth",
    "DEFAULT_STATE_DRIVES",
    "ei_ising_parameters",
    "sample_ising",
    "ei_network_parameters",
    "simulate_network",
    "ei_network",
    "SleepState",
    "SLEEP_STATES",
    "PoolingTruth",
    "pooling_network_parameters",
    "pooling_network",
    "shared_input_raster",
]

#: Largest N for which :func:`sample_ising` samples exactly (2^20 ≈ 10^6 state probabilities).
MAX_EXACT_SAMPLING_NEURONS = limits.MAX_EXACT_SAMPLING_NEURONS


# --------------------------------------------------------------------------------------------
# Equilibrium Ising model with E/I blocks
# --------------------------------------------------------------------------------------------


class IsingTruth(NamedTuple):
    """Planted parameters of an E/I Ising model.

    h : (N,) fields; J : (N, N) symmetric couplings with zero diagonal (each pair once in the
    energy); cell_types : (N,) str, "E" for the first ``num_excitatory`` neurons, then "I".
    """

    h: np.ndarray
    J: np.ndarray
    cell_types: np.ndarray


def _cell_types(num_excitatory, num_inhibitory):
    return np.array(["E"] * num_excitatory + ["I"] * num_inhibitory, dtype=str)


def _check_sizes(num_excitatory, num_inhibitory, minimum=1):
    for name, value in (("num_excitatory", num_excitatory), ("num_inhibitory", num_inhibitory)):
        if int(value) != value or value < 0:
            raise ModelSpecError(f"{name} must be a non-negative integer, got {value!r}")
    if num_excitatory + num_inhibitory < minimum:
        raise ModelSpecError(
            f"need at least {minimum} neurons, got {num_excitatory} E + {num_inhibitory} I")


def ei_ising_parameters(rng_key, num_excitatory, num_inhibitory, *, rate_excitatory=0.06,
                        rate_inhibitory=0.15, rate_spread=0.4, coupling_ee=(0.10, 0.08),
                        coupling_ii=(0.15, 0.08), coupling_ei=(0.0, 0.12), density=0.6,
                        reference_size=20):
    r"""Plant E/I Ising parameters (h, J) with realistic scales for ~50 ms bins.

    Couplings, each pair once (i < j), drawn per block and kept with probability ``density``:

    .. math:: J_{ij} \sim \mathcal N(\mu_b, \sigma_b) \cdot \mathbb 1[\text{connected}],
       \quad b \in \{EE, II, EI\},

    with E–E and I–I means positive (so mostly positive couplings) and the E–I mean zero
    (mixed signs). The block means are scaled by ``reference_size / N`` and the standard
    deviations by :math:`\sqrt{\text{reference\_size}/N}` for N > ``reference_size`` so that
    the summed input stays in the sparse regime (no all-active mode) as N grows.

    Fields are set through each neuron's *baseline* firing probability :math:`r_i` — its
    probability to fire when all other neurons are silent: with :math:`x = (s+1)/2`,
    :math:`\log\frac{P(x_i=1|x_{\setminus i}=0)}{P(x_i=0|x_{\setminus i}=0)} = 2h_i -
    2\sum_j J_{ij}`, so

    .. math:: h_i = \tfrac12 \operatorname{logit}(r_i) + \sum_{j} J_{ij},
       \quad \operatorname{logit} r_i \sim \mathcal N(\operatorname{logit} r_{E/I},
       \text{rate\_spread}).

    With the defaults most fields are negative (80–100% of them; the rest are small) and
    spiking is sparse: E neurons fire in ~5–10% of bins, I neurons in ~15–20%.

    Parameters
    ----------
    rng_key : jax PRNG key
    num_excitatory, num_inhibitory : int
        Neurons 0..N_E−1 are E, the rest I.
    rate_excitatory, rate_inhibitory : float in (0, 1)
        Median baseline firing probability per bin of E and I neurons.
    rate_spread : float
        Standard deviation of the baseline log-odds across neurons.
    coupling_ee, coupling_ii, coupling_ei : (mean, sd)
        Block distributions of J (values for N = ``reference_size``).
    density : float in (0, 1]
        Probability that a pair is coupled at all.

    Returns
    -------
    IsingTruth(h (N,), J (N, N), cell_types (N,))
    """
    _check_sizes(num_excitatory, num_inhibitory)
    for name, rate in (("rate_excitatory", rate_excitatory), ("rate_inhibitory", rate_inhibitory)):
        if not 0 < rate < 1:
            raise ModelSpecError(f"{name} must be in (0, 1), got {rate}")
    if not 0 < density <= 1:
        raise ModelSpecError(f"density must be in (0, 1], got {density}")
    n = int(num_excitatory + num_inhibitory)
    cell_types = _cell_types(int(num_excitatory), int(num_inhibitory))
    is_e = cell_types == "E"
    key_rates, key_couplings, key_mask = jax.random.split(rng_key, 3)

    mean_scale = min(1.0, reference_size / n)
    sd_scale = np.sqrt(mean_scale)
    same_e = np.outer(is_e, is_e)
    same_i = np.outer(~is_e, ~is_e)
    means = np.where(same_e, coupling_ee[0], np.where(same_i, coupling_ii[0], coupling_ei[0]))
    sds = np.where(same_e, coupling_ee[1], np.where(same_i, coupling_ii[1], coupling_ei[1]))
    noise = np.asarray(jax.random.normal(key_couplings, (n, n)))
    connected = np.asarray(jax.random.uniform(key_mask, (n, n))) < density
    upper = np.triu(np.ones((n, n), dtype=bool), 1)
    J = np.where(upper & connected, means * mean_scale + sds * sd_scale * noise, 0.0)
    J = J + J.T

    base_logit = np.where(is_e, _logit(rate_excitatory), _logit(rate_inhibitory))
    logits = base_logit + rate_spread * np.asarray(jax.random.normal(key_rates, (n,)))
    h = 0.5 * logits + J.sum(axis=1)
    return IsingTruth(h=h.astype(np.float64), J=J.astype(np.float64), cell_types=cell_types)


def _logit(p):
    return float(np.log(p) - np.log1p(-p))


def sample_ising(rng_key, h, J, num_bins, *, method="auto", **gibbs_kwargs):
    r"""Draw ``num_bins`` patterns from :math:`P(s) = e^{-E(s)}/Z(h, J)`.

    ``method="exact"`` (the ``"auto"`` choice for N ≤ :data:`MAX_EXACT_SAMPLING_NEURONS`):
    independent draws by inverse-CDF sampling over the 2^N exactly normalised state
    probabilities (:func:`bayes_ising.core.ising.log_probability` over
    :func:`bayes_ising.core.ising.all_states`; needs float64). ``method="gibbs"`` (``"auto"``
    above that): :func:`bayes_ising.core.gibbs.sample_spins`, which returns correlated draws from
    Markov chains; ``gibbs_kwargs`` are passed on to it.

    Parameters
    ----------
    rng_key : jax PRNG key
    h : (N,) ; J : (N, N) symmetric, zero diagonal
    num_bins : int
    method : "auto", "exact" or "gibbs"

    Returns
    -------
    spins : (num_bins, N) int8 in {−1, +1}

    Raises
    ------
    ModelSpecError
        Unknown method, bad shapes, or ``"exact"`` with N > MAX_EXACT_SAMPLING_NEURONS.
    Float64Error
        Exact sampling with JAX float64 off.
    """
    h = np.asarray(h, dtype=float)
    J = np.asarray(J, dtype=float)
    n = h.shape[0] if h.ndim == 1 else -1
    if h.ndim != 1 or J.shape != (n, n):
        raise ModelSpecError(f"h must be (N,) and J (N, N); got {h.shape} and {J.shape}")
    if not np.allclose(J, J.T) or np.any(np.diag(J) != 0):
        raise ModelSpecError("J must be symmetric with a zero diagonal")
    num_bins = int(num_bins)
    if num_bins < 1:
        raise ModelSpecError(f"num_bins must be >= 1, got {num_bins}")
    if method == "auto":
        method = "exact" if n <= MAX_EXACT_SAMPLING_NEURONS else "gibbs"
    if method == "exact":
        if n > MAX_EXACT_SAMPLING_NEURONS:
            raise ModelSpecError(
                f"exact sampling enumerates 2^N states and is limited to N <= "
                f"{MAX_EXACT_SAMPLING_NEURONS}, got N = {n}; use method='gibbs'")
        if gibbs_kwargs:
            raise ModelSpecError(f"options {sorted(gibbs_kwargs)} apply to method='gibbs' only")
        return _sample_exact(rng_key, h, J, num_bins)
    if method == "gibbs":
        from bayes_ising.core import gibbs

        spins = gibbs.sample_spins(rng_key, jnp.asarray(h), jnp.asarray(J), num_bins,
                                   **gibbs_kwargs)
        return np.asarray(spins, dtype=np.int8)
    raise ModelSpecError(f"unknown method {method!r} (expected 'auto', 'exact' or 'gibbs')")


def _sample_exact(rng_key, h, J, num_bins):
    """Inverse-CDF sampling over all 2^N states (independent draws)."""
    ising.check_exact(h.shape[0], "exact sampling")
    states = ising.all_states(h.shape[0])
    index = _exact_indices(rng_key, jnp.asarray(states), jnp.asarray(h), jnp.asarray(J),
                           num_bins)
    return np.asarray(states)[np.asarray(index)]


@functools.partial(jax.jit, static_argnums=4)
def _exact_indices(rng_key, states, h, J, num_bins):
    log_p = ising.log_probability(states, h, J)
    cdf = jnp.cumsum(jnp.exp(log_p - jnp.max(log_p)))
    u = jax.random.uniform(rng_key, (num_bins,), dtype=cdf.dtype) * cdf[-1]
    return jnp.clip(jnp.searchsorted(cdf, u, side="right"), 0, states.shape[0] - 1)


# --------------------------------------------------------------------------------------------
# Kinetic E/I network (Dale's law, Glauber dynamics, up/down drive, sleep states)
# --------------------------------------------------------------------------------------------


class StateDrive(NamedTuple):
    """Slow up/down drive of one state: a telegraph process u(t) ∈ {−1, +1} with mean dwell
    times ``mean_up`` and ``mean_down`` (seconds) adding ``amplitude · g_i · u(t)`` to each
    neuron's input log-odds (g_i its drive gain)."""

    amplitude: float
    mean_up: float
    mean_down: float


#: Drive per state: weak and fast in wake, a strong slow oscillation in deep sleep.
DEFAULT_STATE_DRIVES = {
    "wake": StateDrive(amplitude=0.2, mean_up=0.2, mean_down=0.2),
    "light": StateDrive(amplitude=0.7, mean_up=0.33, mean_down=0.25),
    "deep": StateDrive(amplitude=1.3, mean_up=0.4, mean_down=0.28),
}


class NetworkTruth(NamedTuple):
    """Ground truth of :func:`ei_network` (0/1 units, time step ``dt``).

    weights : (N, N) W[i, j] = effect of presynaptic j on postsynaptic i (log-odds per spike);
        column j ≥ 0 for E neurons j, ≤ 0 for I neurons (Dale's law); not symmetric.
    bias : (N,) baseline log-odds of firing in one time step.
    drive_gain : (N,) gain g_i of the up/down drive.
    cell_types : (N,) str "E"/"I"; sparse : (N,) bool, the neurons given a very low bias.
    dt : float, seconds per Glauber step.
    """

    weights: np.ndarray
    bias: np.ndarray
    drive_gain: np.ndarray
    cell_types: np.ndarray
    sparse: np.ndarray
    dt: float


def ei_network_parameters(rng_key, num_excitatory, num_inhibitory, *, dt=0.01,
                          connection_probability=(0.3, 0.5, 0.6, 0.5),
                          strength=(0.5, 0.6, 1.2, 0.4), bias_excitatory=-4.0,
                          bias_inhibitory=-3.2, bias_sparse=-5.8, num_sparse=None,
                          excitatory_drive_gain=1.0, inhibitory_drive_gain=1.0):
    r"""Draw the asymmetric Dale's-law network run by :func:`ei_network`.

    W[i, j] (effect of j on i) is nonzero with the block's probability and has magnitude
    :math:`|\mathcal N(w_b, 0.3 w_b)| \cdot 32/N_E` for presynaptic E (sign +) and
    :math:`\cdot 8/N_I` for presynaptic I (sign −), so that the summed input does not depend on
    the network size (values quoted for N_E = 32, N_I = 8).

    Parameters
    ----------
    rng_key : jax PRNG key
    num_excitatory, num_inhibitory : int (both ≥ 1)
    dt : float, seconds per step (the bias values assume 10 ms)
    connection_probability, strength : 4-tuples for the blocks (E→E, E→I, I→E, I→I)
    bias_excitatory, bias_inhibitory : float
        Mean baseline log-odds per step (sd 0.4 for E, 0.3 for I across neurons).
    bias_sparse : float
        Baseline log-odds of the ``num_sparse`` E neurons picked at random (default
        max(2, N // 12)) that fire in fewer than ~5% of 50 ms bins.
    excitatory_drive_gain, inhibitory_drive_gain : float
        Multiply the drive gains of E and I neurons (gains are Uniform(0.7, 1.3)).

    Returns
    -------
    NetworkTruth
    """
    _check_network_sizes(num_excitatory, num_inhibitory)
    n_e, n_i = int(num_excitatory), int(num_inhibitory)
    n = n_e + n_i
    num_sparse = _num_sparse(num_sparse, n, n_e)
    keys = jax.random.split(rng_key, 6)
    e = np.arange(n_e)
    i = np.arange(n_e, n)
    size_scale = {"E": 32.0 / n_e, "I": 8.0 / n_i}
    blocks = [(e, e, +1, "E"), (i, e, +1, "E"), (e, i, -1, "I"), (i, i, -1, "I")]
    connect = np.asarray(jax.random.uniform(keys[0], (n, n), dtype=jnp.float32))
    magnitude = np.asarray(jax.random.normal(keys[1], (n, n), dtype=jnp.float32))
    weights = np.zeros((n, n))
    for (post, pre, sign, kind), p, w in zip(blocks, connection_probability, strength,
                                              strict=True):
        block = np.ix_(post, pre)
        present = connect[block] < p
        weights[block] = sign * present * np.abs(w + 0.3 * w * magnitude[block]) * size_scale[
            kind]
    np.fill_diagonal(weights, 0.0)

    noise = np.asarray(jax.random.normal(keys[2], (n,), dtype=jnp.float32))
    bias = np.where(np.arange(n) < n_e, bias_excitatory + 0.4 * noise,
                    bias_inhibitory + 0.3 * noise)
    order = np.asarray(jax.random.permutation(keys[3], n_e))
    sparse = np.zeros(n, dtype=bool)
    sparse[order[:num_sparse]] = True
    bias[sparse] = bias_sparse
    gain = np.asarray(jax.random.uniform(keys[4], (n,), dtype=jnp.float32, minval=0.7,
                                         maxval=1.3)).astype(float)
    gain[:n_e] *= excitatory_drive_gain
    gain[n_e:] *= inhibitory_drive_gain
    return NetworkTruth(weights=weights, bias=bias.astype(float), drive_gain=gain,
                        cell_types=_cell_types(n_e, n_i), sparse=sparse, dt=float(dt))


def _num_sparse(num_sparse, num_neurons, num_excitatory):
    """How many E neurons get the sparse rate: max(2, N // 12) by default, at most N_E."""
    if num_sparse is None:
        num_sparse = max(2, num_neurons // 12)
    if not 0 <= num_sparse <= num_excitatory:
        raise ModelSpecError(f"num_sparse must be between 0 and {num_excitatory}, got "
                             f"{num_sparse}")
    return num_sparse


def _check_network_sizes(num_excitatory, num_inhibitory):
    _check_sizes(num_excitatory, num_inhibitory)
    if num_excitatory < 1 or num_inhibitory < 1:
        raise ModelSpecError(
            f"the E/I network needs at least one E and one I neuron, got {num_excitatory} E "
            f"and {num_inhibitory} I")


@jax.jit
def _glauber_scan(rng_key, weights, bias, gain, amplitude, p_leave_up, p_leave_down):
    """Parallel Glauber dynamics of 0/1 units with a telegraph drive, scanned over time.

    x_i(t+1) ~ Bernoulli(σ(b_i + Σ_j W_ij x_j(t) + A(t) g_i u(t))), all i at once;
    u(t+1) = −u(t) with probability p_leave_up(t) (u = +1) or p_leave_down(t) (u = −1).
    Inputs indexed by t have shape (T,); returns x (T, N) int8 and u (T,) int8.
    """
    num_neurons = bias.shape[0]

    def step(carry, inputs):
        x, u, key = carry
        amp, leave_up, leave_down = inputs
        key, key_spikes, key_drive = jax.random.split(key, 3)
        logits = bias + weights @ x + amp * gain * u
        x_next = (jax.random.uniform(key_spikes, (num_neurons,), dtype=jnp.float32)
                  < jax.nn.sigmoid(logits)).astype(jnp.float32)
        leave = jnp.where(u > 0, leave_up, leave_down)
        u_next = jnp.where(jax.random.uniform(key_drive, dtype=jnp.float32) < leave, -u, u)
        return (x_next, u_next, key), (x_next.astype(jnp.int8), u_next.astype(jnp.int8))

    init = (jnp.zeros(num_neurons, jnp.float32), jnp.float32(1.0), rng_key)
    _, (x, u) = jax.lax.scan(step, init, (amplitude, p_leave_up, p_leave_down))
    return x, u


def _state_epochs(states, state_order, duration, epoch_duration, bin_size, what):
    """Checked settings of a state-cycling network: ``(states dict, duration, bin_size,
    epoch_duration, epochs (names, starts, stops))`` (:func:`_state_schedule`); ``what`` names
    the per-state settings in the error for a state without any."""
    duration, bin_size = float(duration), float(bin_size)
    if not (duration > 0 and bin_size > 0):
        raise ModelSpecError(f"duration and bin_size must be positive, got {duration}, "
                             f"{bin_size}")
    states = dict(states)
    state_order = tuple(state_order)
    missing = [s for s in state_order if s not in states]
    if missing:
        raise ModelSpecError(f"no {what} for state(s) {missing}; known: {sorted(states)}")
    epoch_duration = float(duration / len(state_order) if epoch_duration is None
                           else epoch_duration)
    epochs = _state_schedule(duration, epoch_duration, state_order, bin_size)
    return states, duration, bin_size, epoch_duration, epochs


def _state_schedule(duration, epoch_duration, state_order, bin_size):
    """Epochs [k·L, (k+1)·L) cycling through ``state_order``; L a whole number of bins."""
    num_epochs = int(round(duration / epoch_duration))
    if num_epochs < 1 or abs(num_epochs * epoch_duration - duration) > 1e-9 * duration:
        raise ModelSpecError(
            f"duration ({duration}) must be a whole number of epoch_duration ({epoch_duration})")
    bins_per_epoch = epoch_duration / bin_size
    if abs(bins_per_epoch - round(bins_per_epoch)) > 1e-9:
        raise ModelSpecError(
            f"epoch_duration ({epoch_duration}) must be a whole number of bins ({bin_size})")
    names = [state_order[k % len(state_order)] for k in range(num_epochs)]
    starts = epoch_duration * np.arange(num_epochs, dtype=float)
    return names, starts, starts + epoch_duration


def simulate_network(rng_key, truth, *, num_steps, state_index, drives):
    """Run the kinetic network: returns x (num_steps, N) int8 0/1 and the drive u (num_steps,).

    state_index : (num_steps,) int, index into ``drives`` (a sequence of StateDrive) per step.
    """
    dt = truth.dt
    amplitude = np.array([d.amplitude for d in drives], dtype=np.float32)[state_index]
    leave_up = np.array([min(1.0, dt / d.mean_up) for d in drives],
                        dtype=np.float32)[state_index]
    leave_down = np.array([min(1.0, dt / d.mean_down) for d in drives],
                          dtype=np.float32)[state_index]
    as32 = lambda a: jnp.asarray(np.asarray(a, dtype=np.float32))
    x, u = _glauber_scan(rng_key, as32(truth.weights), as32(truth.bias), as32(truth.drive_gain),
                         jnp.asarray(amplitude), jnp.asarray(leave_up), jnp.asarray(leave_down))
    return np.asarray(x)[:num_steps], np.asarray(u)[:num_steps]


def ei_network(rng_key, num_excitatory, num_inhibitory, *, duration, bin_size=0.05,
               steps_per_bin=5, epoch_duration=None, state_order=("wake", "light", "deep"),
               drives=None, return_truth=False, **parameter_kwargs):
    r"""Spike times of a kinetic E/I network in three sleep states, binned into SpikeData.

    **Model.** 0/1 units on a time grid of dt = ``bin_size / steps_per_bin`` (10 ms by
    default), updated all at once (parallel Glauber dynamics, a ``lax.scan``):

    .. math:: P(x_i(t+1) = 1) = \sigma\Big(b_i + \sum_j W_{ij} x_j(t) + A_{\text{state}}\,
       g_i\, u(t)\Big),

    with asymmetric Dale's-law couplings W (column j ≥ 0 for E, ≤ 0 for I; see
    :func:`ei_network_parameters`) and a telegraph up/down drive u(t) ∈ {−1, +1} whose
    amplitude and dwell times depend on the state (:data:`DEFAULT_STATE_DRIVES`: amplitude 0.2
    in ``wake``, 0.7 in ``light``, 1.3 in ``deep``). Each active step emits one spike at a
    uniformly random time inside the step; the spike trains are binned with
    :meth:`SpikeData.from_spike_times` (s = +1 if at least one spike in the bin). The recording
    is cut into epochs of ``epoch_duration`` seconds cycling through ``state_order``; the
    dynamics run on across epoch boundaries, which lie on bin edges (no bins are dropped).

    **Phenomena it is built to show** (defaults, checked in ``tests/test_synthetic.py`` on
    :func:`bayes_ising.data.datasets.ei_sleep`):

    1. *I–I correlations higher in deep sleep than in wake.* Statistic: the mean Pearson
       correlation of the binned ±1 spins over I–I pairs; about 0.0 in ``wake``, ~0.1 in
       ``light`` and ~0.3 in ``deep`` (the common drive is stronger in deep sleep).
    2. *A few neurons fire in < 5% of bins.* ``num_sparse`` E neurons (default max(2, N//12))
       have a baseline log-odds of −5.8 per step and fire in ~1.5–3% of 50 ms bins.
    3. *An E-only pairwise model over-predicts high-K E synchrony.* Statistic: fit an Ising
       model to E neurons alone (exact maximum likelihood on the 14 most active E neurons) and
       compare its P(K_E ≥ k_high) with the observed one at k_high, the smallest k with
       observed P(K_E ≥ k) < 1%. The factor is ≈ 2 over all bins, ≈ 5 in ``deep``, ≈ 1.5 in
       ``light`` and ≈ 1.1 in ``wake`` (``ei_sleep``; 2–7 in deep over other keys). Cause:
       the E neurons share inputs that are not pairwise — the slow up/down drive and the
       feedback inhibition from I neurons that are driven by E and by the same drive, which
       caps E synchrony in up states. A pairwise model matches the E pair correlations these
       inputs create but extrapolates them into a too heavy high-K tail. The I neurons carry
       information about these shared inputs, so a pairwise model that includes them (E+I)
       predicts E synchrony better: its E marginal over-predicts less (slow test).
       What the generator does *not* isolate: the excess grows with the drive (≈ 1 without
       drive, even with strong E→I→E feedback) and does not vanish when the I→E weights
       are removed, so it is not caused by inhibition alone.

    Mean firing: E ~10% of bins (~2 Hz at 50 ms), I ~25–40%; E rates rise in deep sleep.

    Parameters
    ----------
    rng_key : jax PRNG key
    num_excitatory, num_inhibitory : int
    duration : float, seconds; a whole number of ``epoch_duration``
    bin_size : float, seconds (default 0.05)
    steps_per_bin : int, Glauber steps per bin
    epoch_duration : float, seconds (default ``duration / len(state_order)``: one epoch each)
    state_order : sequence of str, the cycle of states; each name needs a drive
    drives : dict name → StateDrive (default :data:`DEFAULT_STATE_DRIVES`)
    return_truth : bool, also return the :class:`NetworkTruth`
    **parameter_kwargs : passed to :func:`ei_network_parameters` (not ``dt``)

    Returns
    -------
    SpikeData (spins (num_bins, N), neuron ids "E00".., "I00".., cell types, states), and the
    NetworkTruth if ``return_truth``.
    """
    from bayes_ising.data import SpikeData

    _check_network_sizes(num_excitatory, num_inhibitory)
    if "dt" in parameter_kwargs:
        raise ModelSpecError("set the time step through steps_per_bin, not dt")
    steps_per_bin = int(steps_per_bin)
    if steps_per_bin < 1:
        raise ModelSpecError(f"steps_per_bin must be >= 1, got {steps_per_bin}")
    drives, duration, bin_size, epoch_duration, epochs = _state_epochs(
        DEFAULT_STATE_DRIVES if drives is None else drives, state_order, duration,
        epoch_duration, bin_size, "drive given")
    names = epochs[0]
    num_bins = int(round(duration / bin_size))
    dt = bin_size / steps_per_bin
    num_steps = num_bins * steps_per_bin

    key_params, key_dynamics, key_times = jax.random.split(rng_key, 3)
    truth = ei_network_parameters(key_params, num_excitatory, num_inhibitory, dt=dt,
                                  **parameter_kwargs)
    drive_names = list(drives)
    epoch_state = np.array([drive_names.index(s) for s in names])
    steps_per_epoch = num_steps // len(names)
    state_index = np.repeat(epoch_state, steps_per_epoch)
    x, _ = simulate_network(key_dynamics, truth, num_steps=num_steps, state_index=state_index,
                            drives=[drives[s] for s in drive_names])

    data = _spike_data(SpikeData, x, key_times, truth.cell_types, dt, bin_size, duration,
                       epochs, f"bayes_ising.data.synthetic.ei_network({int(num_excitatory)} E, "
                       f"{int(num_inhibitory)} I, {duration:g} s)")
    return (data, truth) if return_truth else data


# --------------------------------------------------------------------------------------------
# Pooling-interneuron Boltzmann network (the generator of datasets.ei_sleep)
# --------------------------------------------------------------------------------------------


class SleepState(NamedTuple):
    """Per-state settings of :func:`pooling_network`: ``ii_scale`` multiplies the I–I weights;
    a slow telegraph up/down drive u(t) ∈ {−1, +1} (mean dwell ``dwell`` seconds in each
    phase) adds ``drive · u(t)`` to every neuron's log-odds."""

    ii_scale: float
    drive: float
    dwell: float


#: Wake → light → deep: I–I coupling grows, and a modest slow up/down drive appears.
SLEEP_STATES = {
    "wake": SleepState(ii_scale=0.4, drive=0.0, dwell=0.3),
    "light": SleepState(ii_scale=1.0, drive=0.08, dwell=0.3),
    "deep": SleepState(ii_scale=1.6, drive=0.15, dwell=0.4),
}


class PoolingTruth(NamedTuple):
    """Ground truth of :func:`pooling_network` in lattice-gas form (x = (s + 1)/2 ∈ {0, 1}).

    weights : (N, N) symmetric, zero diagonal; W[i, j] the log-odds one active j adds to i.
        The I–I block is given for ``ii_scale = 1`` (each state scales it).
    bias : (N,) baseline log-odds (all other neurons silent).
    cell_types : (N,) str; pooled : (N_I, N_E) bool, which E neurons each I neuron pools;
    sparse : (N,) bool, the E neurons given the low target rate.
    """

    weights: np.ndarray
    bias: np.ndarray
    cell_types: np.ndarray
    pooled: np.ndarray
    sparse: np.ndarray


def pooling_network_parameters(rng_key, num_excitatory, num_inhibitory, *, pooling=1.2,
                               pool_probability=0.5, inhibitory_sign_mix=0.5,
                               coupling_ee=(0.05, 0.25), coupling_ii=(0.3, 0.1),
                               ee_density=0.5, rate_excitatory=0.12, rate_inhibitory=0.5,
                               excitatory_bias_shift=-0.3, num_sparse=None, rate_sparse=0.01,
                               reference_excitatory=12):
    r"""Draw the symmetric E/I network of :func:`pooling_network` (lattice-gas weights).

    * **Pooling** (the mechanism): each I neuron k pools a random set of E neurons (each with
      ``pool_probability``) with weight :math:`\pm w\,|1 + 0.3 z|`,
      :math:`w = \text{pooling}\cdot\sqrt{\text{reference\_excitatory}/N_E}`; the sign is
      + for a fraction ``1 − inhibitory_sign_mix`` of the I neurons (recruited by E activity)
      and − for the rest (silenced by it), so that E–I couplings have mixed signs.
      ``pooling = 0`` switches the mechanism off.
    * E–E: N(μ, σ) of ``coupling_ee`` on a fraction ``ee_density`` of pairs (mostly positive);
      I–I: N(μ, σ) of ``coupling_ii`` on every pair (positive).
    * Biases: naive mean field for the target rates r (E ``rate_excitatory``, I
      ``rate_inhibitory``, × e^{0.3 z} per neuron): :math:`b_i = \operatorname{logit} r_i -
      \sum_j W_{ij} r_j`, plus ``excitatory_bias_shift`` on E neurons (mean field misses the
      positive feedback of the pools, which raises E rates). ``num_sparse`` E neurons
      (default max(2, N // 12)) get the target rate ``rate_sparse`` (they fire in < 5% of
      bins: the low-rate neurons the diagnostics must flag).

    Returns
    -------
    PoolingTruth
    """
    _check_network_sizes(num_excitatory, num_inhibitory)
    n_e, n_i = int(num_excitatory), int(num_inhibitory)
    n = n_e + n_i
    # NumPy draws from a generator seeded by the key: one tiny JAX call, no compilations
    rng = _numpy_rng(rng_key)
    is_e = np.arange(n) < n_e
    w = np.zeros((n, n))
    upper = np.triu(np.ones((n, n), dtype=bool), 1)
    ee = np.outer(is_e, is_e) & upper & (rng.random((n, n)) < ee_density)
    ii = np.outer(~is_e, ~is_e) & upper
    z = rng.standard_normal((n, n))
    w[ee] = coupling_ee[0] + coupling_ee[1] * z[ee]
    w[ii] = coupling_ii[0] + coupling_ii[1] * z[ii]
    pooled = rng.random((n_i, n_e)) < pool_probability
    sign = np.where(np.arange(n_i) < round(n_i * (1 - inhibitory_sign_mix)), 1.0, -1.0)
    strength = pooling * np.sqrt(reference_excitatory / n_e)
    w_ie = sign[:, None] * pooled * strength * np.abs(
        1 + 0.3 * rng.standard_normal((n_i, n_e)))
    w[n_e:, :n_e] = w_ie
    w = np.triu(w, 1) + np.triu(w, 1).T
    w[n_e:, :n_e] = w_ie
    w[:n_e, n_e:] = w_ie.T
    target = np.where(is_e, rate_excitatory, rate_inhibitory) * np.exp(
        0.3 * rng.standard_normal((n,)))
    num_sparse = _num_sparse(num_sparse, n, n_e)
    sparse = np.zeros(n, dtype=bool)
    sparse[rng.permutation(n_e)[:num_sparse]] = True
    target = np.clip(np.where(sparse, rate_sparse, target), 0.005, 0.9)
    bias = np.log(target) - np.log1p(-target) - w @ target
    bias[:n_e] += excitatory_bias_shift
    return PoolingTruth(weights=w, bias=bias, cell_types=_cell_types(n_e, n_i),
                        pooled=pooled, sparse=sparse)


def _numpy_rng(rng_key):
    """A NumPy generator seeded by a JAX key (the same stream with float64 on or off)."""
    return np.random.default_rng(np.asarray(jax.random.bits(rng_key, (4,), dtype=jnp.uint32)))


def _state_weights(truth, ii_scale):
    """Weights of one state: the I–I block scaled by ``ii_scale``."""
    is_i = truth.cell_types == "I"
    scale = np.where(np.outer(is_i, is_i), ii_scale, 1.0)
    return truth.weights * scale


def _heat_bath_chains(rng, weights, bias, drive, num_bins, burn_in, flip_probability):
    """Sequential heat-bath (Glauber) sweeps of 0/1 units, one sweep per bin, C chains.

    weights (C, N, N), bias (N,), drive (C,), flip_probability (C,): per bin the up/down
    drive u ∈ {−1, +1} flips with this probability. Site i in a sweep (random order):
    x_i ~ Bernoulli(σ(b_i + Σ_j W_ij x_j + drive·u)). Returns x (C, num_bins, N) int8.

    NumPy, vectorised over chains (N sequential updates per sweep cannot be vectorised over
    sites): no compilation, so the embedded dataset takes about a second to make.
    """
    num_chains, n = weights.shape[0], bias.shape[0]
    num_sweeps = burn_in + num_bins
    by_site = np.ascontiguousarray(np.transpose(weights, (1, 0, 2)))  # (N, C, N)
    orders = np.argsort(rng.random((num_sweeps, n)), axis=1)
    # log-odds thresholds: x_i = 1 iff logit(U) < field, U uniform
    uniform = rng.random((num_sweeps, n, num_chains))
    thresholds = np.log(uniform) - np.log1p(-uniform)
    flips = rng.random((num_sweeps, num_chains)) < flip_probability
    x = np.zeros((num_chains, n))
    u = np.ones(num_chains)
    out = np.empty((num_bins, num_chains, n), dtype=np.int8)
    for t in range(num_sweeps):
        offset = drive * u
        for k, i in enumerate(orders[t]):
            field = bias[i] + np.einsum("cj,cj->c", by_site[i], x) + offset
            x[:, i] = thresholds[t, k] < field
        u = np.where(flips[t], -u, u)
        if t >= burn_in:
            out[t - burn_in] = x
    return np.swapaxes(out, 0, 1)


def pooling_network(rng_key, num_excitatory, num_inhibitory, *, duration, bin_size=0.05,
                    epoch_duration=None, state_order=("wake", "light", "deep"), states=None,
                    burn_in=200, return_truth=False, **parameter_kwargs):
    r"""Spike times of a pooling-interneuron E/I network in three sleep states, as SpikeData.

    **Model.** 0/1 units with *symmetric* weights W (:func:`pooling_network_parameters`) run
    by sequential heat-bath (Glauber) dynamics, one sweep of all neurons in random order per
    bin:

    .. math:: P(x_i = 1 \mid x_{\setminus i}) = \sigma\Big(b_i + \sum_j W_{ij} x_j
       + a_{\text{state}}\, u(t)\Big),

    whose stationary distribution, without the drive (a = 0), is the Ising (Boltzmann)
    distribution P(x) ∝ exp(b·x + Σ_{i<j} W_ij x_i x_j). Each recorded epoch is one chain
    (after ``burn_in`` sweeps) with its state's settings (:data:`SLEEP_STATES`); an active
    unit emits one spike at a uniform time inside the bin (kept 5% away from its edges), and
    the trains are binned by :meth:`SpikeData.from_spike_times`.

    **Which mechanism produces which phenomenon.**

    * *E-only over-prediction of high-K E synchrony, E+I not* — **pooling interneurons**: each
      I neuron is strongly coupled to about half the E neurons and fires in ~50% of bins, so
      its input h_k + Σ_e W_ke x_e sits in the steep part of its sigmoid for typical E
      activity and saturates when many E neurons fire together. Summing the I neuron out
      adds :math:`\log(1 + e^{h_k + \sum_e W_{ke} x_e})` to log P(x_E): quadratic for small
      inputs, *linear* for large ones. An E-only pairwise model fits the quadratic part and
      extrapolates it into the high-K tail (over-prediction); the E+I pairwise model holds
      the mechanism exactly (its marginal over E is the true one).
    * *I-only slight under-prediction*: summing out the many weakly varying E neurons leaves
      a small, mostly positive higher-order term in the I marginal.
    * *P(K), patterns, I2/IN ≥ 0.8*: without drive the data are samples of a pairwise model
      over all neurons; the modest up/down drive (:data:`SLEEP_STATES`) is the only
      non-pairwise input, which the pairwise model misses (larger in deep sleep).
    * *I–I correlations and couplings larger in deep than wake*: the I–I weights are scaled
      by ``ii_scale`` (0.4 wake, 1.0 light, 1.6 deep) and the drive is common to all neurons.
    * *E–E and I–I couplings mostly positive, E–I mixed*: the planted blocks (E–I sign + for
      recruited and − for silenced I neurons).
    * With ``pooling=0`` (:func:`bayes_ising.data.datasets.ei_sleep_control`) E and I are
      independent pairwise populations: E-only and E+I models agree.

    **Measured on** :func:`~bayes_ising.data.datasets.ei_sleep` (ML fits; intervals 90%, block
    bootstrap; ``tests/test_synthetic.py``): log(model/data) of P(K_E ≥ k_high) for the 12
    most active E neurons, E-only vs the E+I (12 E + 8 I) marginal: wake +1.05 [+0.83, +1.33]
    vs +0.02 [−0.20, +0.29], light +0.98 [+0.81, +1.15] vs +0.02 [−0.15, +0.20], deep +0.45
    [+0.27, +0.68] vs −0.18 [−0.37, +0.04]; on the control both −0.05 [−0.30, +0.20] (wake).
    I-only (8 I): I2/IN 0.97 with a reliable SN in wake and deep. Mean I–I correlation 0.00
    (wake), 0.05 (light), 0.12 (deep).

    **Not reproduced** (measured, not tuned away): the I-only model does not under-predict I
    synchrony (log ratios −0.03 to +0.10, intervals containing 0); on exact *subsets* (12 E
    + 4 I) the P(K) band check fails (≤ 8% of K inside the band, max |log ratio| 0.16–0.25:
    the neurons left out, above all the pooling I neurons, leave non-pairwise structure in the
    subset) and I2/IN is ≈ 0.78 with an unreliable SN (too many distinct patterns); the
    heat-capacity peak of subset fits lies *below* T = 1 (T* ≈ 0.77–0.83; C_max/N is above
    the shuffled control's: 0.49–0.70 vs 0.34–0.42) — the high firing of the pooling I
    neurons (~50% of bins) and E rates of ~12% put the peak there; I–I couplings are mixed
    in wake (the recruited and silenced I groups anti-correlate through E).

    Parameters
    ----------
    rng_key : jax PRNG key
    num_excitatory, num_inhibitory : int
    duration : float, seconds; a whole number of ``epoch_duration``
    bin_size : float, seconds (default 0.05)
    epoch_duration : float, seconds (default ``duration / len(state_order)``)
    state_order : sequence of str, the cycle of states; each needs an entry in ``states``
    states : dict name → SleepState (default :data:`SLEEP_STATES`)
    burn_in : int, sweeps before each epoch's first bin
    return_truth : bool, also return the :class:`PoolingTruth`
    **parameter_kwargs : passed to :func:`pooling_network_parameters`

    Returns
    -------
    SpikeData (neuron ids "E00".., "I00"..; cell types; states) [, PoolingTruth]
    """
    from bayes_ising.data import SpikeData

    _check_network_sizes(num_excitatory, num_inhibitory)
    states, duration, bin_size, epoch_duration, epochs = _state_epochs(
        SLEEP_STATES if states is None else states, state_order, duration, epoch_duration,
        bin_size, "settings")
    names = epochs[0]
    bins_per_epoch = int(round(epoch_duration / bin_size))
    key_params, key_dynamics, key_times = jax.random.split(rng_key, 3)
    truth = pooling_network_parameters(key_params, num_excitatory, num_inhibitory,
                                       **parameter_kwargs)
    weights = np.stack([_state_weights(truth, states[s].ii_scale) for s in names])
    drive = np.array([states[s].drive for s in names])
    flip = np.array([min(1.0, bin_size / states[s].dwell) for s in names])
    x = _heat_bath_chains(_numpy_rng(key_dynamics), weights, truth.bias, drive, bins_per_epoch,
                          int(burn_in), flip)
    x = x.reshape(-1, truth.bias.shape[0])  # epochs in time order
    data = _spike_data(SpikeData, x, key_times, truth.cell_types, bin_size, bin_size,
                       duration, epochs,
                       f"bayes_ising.data.synthetic.pooling_network({int(num_excitatory)} E, "
                       f"{int(num_inhibitory)} I, {duration:g} s)")
    return (data, truth) if return_truth else data


def _spike_data(spike_data_cls, x, key_times, cell_types, step, bin_size, duration, epochs,
                source):
    """SpikeData of activity x (rows, N) 0/1, one row per ``step`` seconds: one spike per
    active (row, neuron), uniform inside the row but kept 5% away from its edges (so that no
    spike sits on a bin boundary), binned back into ``bin_size`` bins by ``from_spike_times``.

    (A NumPy generator seeded from the key: a JAX draw of this data-dependent size would
    compile anew for every size.)
    """
    rows, neurons = np.nonzero(np.asarray(x))
    offset = _numpy_rng(key_times).uniform(0.05, 0.95, size=rows.size)
    times = (rows + offset) * step
    n = x.shape[1]
    order = np.lexsort((times, neurons))
    trains = np.split(times[order], np.searchsorted(neurons[order], np.arange(1, n)))
    n_e = int((cell_types == "E").sum())
    ids = [f"E{k:02d}" for k in range(n_e)] + [f"I{k:02d}" for k in range(n - n_e)]
    data = spike_data_cls.from_spike_times(
        trains, bin_size=bin_size, time_units="s", t_start=0.0, t_stop=duration,
        neuron_ids=ids, cell_types=cell_types, epochs=epochs, source=source)
    num_bins = int(round(x.shape[0] * step / bin_size))
    if data.num_bins != num_bins:
        raise RuntimeError(f"internal: expected {num_bins} bins, binning gave {data.num_bins}")
    return data


# --------------------------------------------------------------------------------------------
# Sparse recording with strong shared input (retina-like; large-population tests)
# --------------------------------------------------------------------------------------------


def shared_input_raster(rng_key, num_neurons, num_bins, *, rate_range=(0.003, 0.28),
                        drive=1.6, persistence=0.95, num_factors=3, factor_scale=0.6):
    r"""Sparse ±1 raster driven by strong shared input, like a retinal recording.

    Each bin t has a slow common drive :math:`u_t` (stationary AR(1), correlation
    ``persistence`` between bins, unit variance) and ``num_factors`` faster latent factors
    :math:`z_{tk}` (independent standard normal); neuron i fires in bin t with probability

    .. math:: \sigma\big(b_i + g_i\,\text{drive}\,u_t + \text{factor\_scale}
              \textstyle\sum_k w_{ik} z_{tk}\big),

    gains :math:`g_i \sim U(0.7, 1.3)`, loadings :math:`w_{ik} \sim |N(0,1)|/\sqrt{K}` (all
    positive: shared excitation), baselines :math:`b_i` set so that the firing probabilities are
    spread over ``rate_range`` (log rates ∝ x^0.55 for x uniform; matched by bisection per
    neuron on a subsample of the latent input).
    Not an Ising model; bins are autocorrelated through u.
    With the defaults at N = 50: firing 0.3–28% of bins, mean ≈ 9%, positive correlations —
    the character of the 50-cell retina recording that exposed the large-N failures.

    Returns
    -------
    SpikeData (num_bins, num_neurons), neuron ids "n00".., source naming this generator.
    """
    from bayes_ising.data import SpikeData

    num_neurons, num_bins = int(num_neurons), int(num_bins)
    if num_neurons < 2 or num_bins < 2:
        raise ModelSpecError(f"need >= 2 neurons and bins, got {num_neurons}, {num_bins}")
    low, high = (float(r) for r in rate_range)
    if not 0 < low < high < 1:
        raise ModelSpecError(f"rate_range must satisfy 0 < low < high < 1, got {rate_range}")
    keys = jax.random.split(rng_key, 5)
    normal = lambda k, shape: np.asarray(jax.random.normal(k, shape, jnp.float64))  # noqa: E731
    gain = 0.7 + 0.6 * np.asarray(jax.random.uniform(keys[0], (num_neurons,), jnp.float64))
    loadings = np.abs(normal(keys[1], (num_neurons, num_factors))) / np.sqrt(num_factors)
    innovations = normal(keys[2], (num_bins,)).copy()
    rho = float(persistence)
    innovations[1:] *= np.sqrt(1.0 - rho**2)
    u = scipy.signal.lfilter([1.0], [1.0, -rho], innovations)  # u_t = ρ u_{t−1} + √(1−ρ²) ε_t
    shared = drive * u[:, None] * gain + factor_scale * normal(keys[3], (num_bins, num_factors)
                                                               ) @ loadings.T
    # log rates spread as low·(high/low)^(x^0.55), x uniform on [0, 1]: mean ≈ 9% by default
    spread = np.linspace(0.0, 1.0, num_neurons) ** 0.55
    target = np.exp(np.log(low) + (np.log(high) - np.log(low)) * spread)
    target = target[np.asarray(jax.random.permutation(keys[4], num_neurons))]
    sample = shared[:: max(1, num_bins // 4000)]  # the latent input's distribution
    lo, hi = np.full(num_neurons, -20.0), np.full(num_neurons, 10.0)
    for _ in range(60):  # bisection: mean_t σ(b + shared_t) = target
        mid = (lo + hi) / 2.0
        rate = (1.0 / (1.0 + np.exp(-(mid + sample)))).mean(axis=0)
        lo, hi = np.where(rate < target, mid, lo), np.where(rate < target, hi, mid)
    probability = 1.0 / (1.0 + np.exp(-((lo + hi) / 2.0 + shared)))
    uniforms = np.asarray(jax.random.uniform(jax.random.fold_in(rng_key, 7),
                                             (num_bins, num_neurons), jnp.float64))
    spins = np.where(uniforms < probability, 1, -1).astype(np.int8)
    return SpikeData.from_raster(
        spins, neuron_ids=[f"n{k:02d}" for k in range(num_neurons)],
        source=f"bayes_ising.data.synthetic.shared_input_raster({num_neurons}, {num_bins})")
