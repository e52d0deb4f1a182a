r"""A pure-function Gibbs (heat-bath) sampler for the Ising model, many chains x temperatures.

Target at temperature T (T = 1 is the fitted model):

.. math::

    P_T(s) \propto e^{-E(s)/T}, \qquad
    E(s) = -\sum_i h_i s_i - \sum_{i<j} J_{ij} s_i s_j ,

with the package's convention (``J`` symmetric, zero diagonal, each pair once). One *sweep*
visits every spin once and redraws it from its conditional,

.. math::

    P_T(s_i = +1 \mid s_{\setminus i}) = \sigma\big(2 H_i / T\big), \qquad
    H_i = h_i + \sum_{j \ne i} J_{ij} s_j .

BlackJAX-style API: :class:`GibbsState` is carried between sweeps, :class:`GibbsInfo` holds
per-sweep diagnostics, :func:`init` and :func:`step` are pure, and :func:`sample` drives them
with ``jax.lax.scan`` (in chunks, with a progress bar on long runs). All chains and all
temperatures advance together as one batch.

Implementation notes (what makes it fast on a CPU):

- the local fields H are kept in the state and updated after each flip instead of being
  recomputed; the updates of a block of ``_BLOCK_SIZE`` consecutive spins are applied to all
  fields at once as one rank-``_BLOCK_SIZE`` product ``J[:, block] @ ΔS`` (a GEMM over chains),
  while inside the block the few fields that the block itself needs are corrected spin by spin.
  The sweep stays strictly sequential (no checkerboard), so it is an exact systematic-scan
  Gibbs sampler for any dense J;
- the uniforms of a whole sweep are drawn up front and turned into thresholds
  :math:`\tau = \mathrm{logit}(u) / (2/T)`, so that the new spin is ``+1`` iff :math:`H_i > \tau`
  (equivalent to :math:`u < \sigma(2 H_i/T)`); the sequential part has no transcendental;
- the uniforms come, by default (``rng="hash"``), from a counter-based integer hash
  (two rounds of the ``lowbias32`` mixer) keyed per sweep by ``jax.random``; on a CPU the
  threefry generator costs more than the sweep itself. ``rng="threefry"`` uses
  ``jax.random.uniform`` instead (tests check both give the same statistics);
- the sampler runs in float32 by default (``dtype``); the fields are recomputed exactly every
  ``_REFRESH_INTERVAL`` sweeps so rounding cannot accumulate, and energies are accumulated in
  float64 when JAX float64 is on. Tests check float32 and float64 agree.

Replica exchange (parallel tempering; Swendsen & Wang 1986, Hukushima & Nemoto 1996): after each
sweep, neighbouring temperatures (k, k+1) exchange configurations with probability
:math:`\min\{1, e^{(1/T_k - 1/T_{k+1})(E_k - E_{k+1})}\}`, alternating even and odd pairs.
"""

from __future__ import annotations

import functools
import math
import sys
import time
import warnings
from dataclasses import dataclass, field
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from bayes_ising.core.convergence import (
    MAX_RHAT,
    MIN_ESS,
    draw_statistics,
    integrated_autocorrelation_time,
    rule_failures,
)

__all__ = [
    "GibbsState",
    "GibbsInfo",
    "GibbsResult",
    "MomentsInfo",
    "ModelsState",
    "init_models",
    "sample_models_energies",
    "sample_models_spins",
    "init",
    "step",
    "sweep_sums",
    "sample",
    "sample_moments",
    "sample_spins",
    "energy_autocorrelation_time",
    "convergence",
    "check_convergence",
    "KPairwiseSamples",
    "sample_kpairwise",
    "sample_kpairwise_spins",
]

#: Spins updated sequentially inside one block before all fields get the block's rank-b update.
_BLOCK_SIZE = 8
#: Sweeps between exact recomputations of the fields h + J s (bounds float32 rounding drift).
_REFRESH_INTERVAL = 64
#: Largest number of chain groups used for Monte Carlo standard errors of the moments.
_MAX_GROUPS = 32


class GibbsState(NamedTuple):
    """State of all chains at all temperatures.

    spins : (chains, temps, N) sampler dtype (float32 by default), values ±1
    fields : (chains, temps, N) sampler dtype, the local fields H_i = h_i + Σ_j J_ij s_j
    energy : (chains, temps) float64 under JAX x64 (float32 otherwise), E(s) at T = 1
    """

    spins: jax.Array
    fields: jax.Array
    energy: jax.Array


class GibbsInfo(NamedTuple):
    """Diagnostics of one sweep.

    num_flips : (chains, temps) int32, spins that changed during the sweep
    swap_attempted : (temps − 1,) bool, whether the pair (k, k+1) was proposed for exchange
    swap_accepted : (temps − 1,) float, fraction of chains whose exchange (k, k+1) was accepted
    """

    num_flips: jax.Array
    swap_attempted: jax.Array
    swap_accepted: jax.Array


class _FlatState(NamedTuple):
    """Internal layout: batch b = chain * temps + temp in the last axis (contiguous)."""

    spins: jax.Array  # (N, B)
    fields: jax.Array  # (N, B)
    energy: jax.Array  # (B,)


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------


def _energy_dtype():
    return jnp.float64 if jax.config.jax_enable_x64 else jnp.float32


def _temperatures(temperatures):
    temps = np.atleast_1d(np.asarray(temperatures, dtype=float))
    if temps.ndim != 1 or temps.size == 0:
        raise ValueError(f"temperatures must be a non-empty 1-D sequence, got {temperatures!r}")
    if not np.all(np.isfinite(temps)) or np.any(temps <= 0):
        raise ValueError(f"temperatures must be positive and finite, got {temps}")
    return temps


def _validate_model(h, J):
    h = np.asarray(h, dtype=float)
    J = np.asarray(J, dtype=float)
    if h.ndim != 1 or J.shape != (h.size, h.size):
        raise ValueError(f"expected h (N,) and J (N, N); got h {h.shape} and J {J.shape}")
    if not (np.all(np.isfinite(h)) and np.all(np.isfinite(J))):
        raise ValueError("h and J must be finite")
    if not np.allclose(J, J.T, rtol=1e-6, atol=1e-10):
        raise ValueError("J must be symmetric (J_ij = J_ji; each pair once in the energy)")
    if np.any(np.diag(J) != 0):
        raise ValueError("J must have a zero diagonal")
    return h, J


def _mix32(x):
    """lowbias32 integer hash (C. Wellons): full avalanche on uint32."""
    x = x ^ (x >> 16)
    x = x * jnp.uint32(0x7FEB352D)
    x = x ^ (x >> 15)
    x = x * jnp.uint32(0x846CA68B)
    return x ^ (x >> 16)


def _uniforms(key, shape, dtype, rng):
    """Uniforms in the open interval (0, 1), shape ``shape``, in ``dtype``."""
    if rng == "threefry":
        tiny = jnp.finfo(dtype).tiny
        return jax.random.uniform(key, shape, dtype, minval=tiny, maxval=1.0)
    if rng != "hash":
        raise ValueError(f"rng must be 'hash' or 'threefry', got {rng!r}")
    seed = jax.random.bits(key, (2,), jnp.uint32)
    counter = lax.iota(jnp.uint32, math.prod(shape)).reshape(shape)
    bits = _mix32(_mix32(counter * jnp.uint32(0x9E3779B9) + seed[0]) ^ seed[1])
    # 24 bits, exact in float32 and float64 alike (so both dtypes see the same uniforms), strictly
    # inside (0, 1); the resolution 2^-24 only matters for flip probabilities below ~1e-7.
    return ((bits >> 8).astype(jnp.int32).astype(dtype) + 0.5) * 2.0**-24


def _thresholds(key, shape, betas, dtype, rng):
    """τ = logit(u) / (2β): the heat-bath update sets s_i = +1 iff H_i > τ_i."""
    u = _uniforms(key, shape, dtype, rng)
    return (jnp.log(u) - jnp.log1p(-u)) * (0.5 / betas)[None, :]


def _block_update(spins, fields, thresholds, J, start, size):
    """Heat-bath updates of spins start..start+size−1 in order, then the rank-size field update."""
    old = lax.dynamic_slice_in_dim(spins, start, size, 0)  # (b, B)
    block_fields = lax.dynamic_slice_in_dim(fields, start, size, 0)  # (b, B)
    block_thresholds = lax.dynamic_slice_in_dim(thresholds, start, size, 0)
    columns = lax.dynamic_slice_in_dim(J, start, size, 1)  # (N, b) = J[:, block]
    inner = lax.dynamic_slice_in_dim(columns, start, size, 0)  # (b, b) = J[block, block]

    def one_spin(carry, r):
        block_fields, delta = carry
        field_r = lax.dynamic_index_in_dim(block_fields, r, 0, keepdims=False)
        threshold_r = lax.dynamic_index_in_dim(block_thresholds, r, 0, keepdims=False)
        new = jnp.where(field_r > threshold_r, 1.0, -1.0).astype(spins.dtype)
        change = new - lax.dynamic_index_in_dim(old, r, 0, keepdims=False)  # 0 or ±2
        # Fields of the block's own spins after flipping spin r (J_rr = 0 leaves H_r alone).
        block_fields = block_fields + lax.dynamic_index_in_dim(inner, r, 1) * change[None, :]
        return (block_fields, lax.dynamic_update_index_in_dim(delta, change, r, 0)), None

    (_, delta), _ = lax.scan(one_spin, (block_fields, jnp.zeros_like(old)), jnp.arange(size))
    fields = fields + columns @ delta
    spins = lax.dynamic_update_slice_in_dim(spins, old + delta, start, 0)
    return spins, fields


def _systematic_sweep(spins, fields, thresholds, J, block_size=None):
    """One sweep over spins 0..N−1 in order; returns new spins and fields."""
    block_size = _BLOCK_SIZE if block_size is None else block_size
    num_neurons = spins.shape[0]
    num_blocks, remainder = divmod(num_neurons, block_size)

    def one_block(carry, index):
        return _block_update(*carry, thresholds, J, index * block_size, block_size), None

    if num_blocks:
        (spins, fields), _ = lax.scan(one_block, (spins, fields), jnp.arange(num_blocks))
    if remainder:
        spins, fields = _block_update(
            spins, fields, thresholds, J, num_blocks * block_size, remainder
        )
    return spins, fields


def _energy_from_fields(spins, fields, h, dtype):
    """E = −h·s − ½ sᵀJs = −½ s·(h + H), since H = h + J s; shape (B,)."""
    s = spins.astype(dtype)
    return -0.5 * jnp.sum(s * (h.astype(dtype)[:, None] + fields.astype(dtype)), axis=0)


def _exact_fields(spins, h, J):
    return h[:, None] + J @ spins


def _replica_exchange(key, state, betas, parity, num_chains, num_temps):
    """Swap configurations between temperatures k and k+1 (k ≡ parity mod 2), per chain."""
    energy = state.energy.reshape(num_chains, num_temps)
    pair = jnp.arange(num_temps - 1)
    attempted = (pair % 2) == parity
    log_ratio = (betas[:-1] - betas[1:])[None, :] * (energy[:, :-1] - energy[:, 1:])
    log_u = jnp.log(jax.random.uniform(key, log_ratio.shape, log_ratio.dtype))
    accept = attempted[None, :] & (log_u < log_ratio)  # (chains, temps − 1), disjoint pairs
    acc = accept.astype(jnp.int32)
    zero = jnp.zeros((num_chains, 1), jnp.int32)
    # slot k receives configuration k + 1 if pair k swapped, k − 1 if pair k − 1 swapped.
    source = jnp.arange(num_temps)[None, :] + jnp.concatenate([acc, zero], 1)
    source = source - jnp.concatenate([zero, acc], 1)
    index = (jnp.arange(num_chains)[:, None] * num_temps + source).reshape(-1)
    new_state = _FlatState(state.spins[:, index], state.fields[:, index], state.energy[index])
    return new_state, attempted, accept.mean(axis=0, dtype=energy.dtype)


def _sweep(key, state, h, J, betas, temp_betas, sweep_index, options):
    """One sweep of the flat state (+ field refresh, energy, optional replica exchange)."""
    num_chains, num_temps, scan_order, replica_exchange, rng, block_size = options
    key_uniform, key_order, key_swap = jax.random.split(key, 3)
    spins, fields = state.spins, state.fields
    thresholds = _thresholds(key_uniform, spins.shape, betas, spins.dtype, rng)
    if scan_order == "random":
        order = jax.random.permutation(key_order, spins.shape[0])
        inverse = jnp.argsort(order)
        new_spins, new_fields = _systematic_sweep(
            spins[order], fields[order], thresholds, J[order][:, order], block_size
        )
        new_spins, new_fields = new_spins[inverse], new_fields[inverse]
    elif scan_order == "systematic":
        new_spins, new_fields = _systematic_sweep(spins, fields, thresholds, J, block_size)
    else:
        raise ValueError(f"scan_order must be 'systematic' or 'random', got {scan_order!r}")
    num_flips = jnp.sum(new_spins != spins, axis=0, dtype=jnp.int32)
    new_fields = lax.cond(
        sweep_index % _REFRESH_INTERVAL == _REFRESH_INTERVAL - 1,
        lambda: _exact_fields(new_spins, h, J),
        lambda: new_fields,
    )
    energy = _energy_from_fields(new_spins, new_fields, h, state.energy.dtype)
    state = _FlatState(new_spins, new_fields, energy)
    if replica_exchange and num_temps > 1:
        state, attempted, accepted = _replica_exchange(
            key_swap, state, temp_betas, sweep_index % 2, num_chains, num_temps
        )
    else:
        attempted = jnp.zeros(num_temps - 1, bool)
        accepted = jnp.zeros(num_temps - 1, state.energy.dtype)
    return state, GibbsInfo(num_flips, attempted, accepted)


def _models_sweep(options):
    """One sweep of every model at once: ``_sweep`` vmapped over (key, state, h, J) of D models,
    sharing the temperature ladder and the sweep index."""
    def model_sweep(key, state, h, J, betas, temp_betas, index):
        return _sweep(key, _FlatState(*state), h, J, betas, temp_betas, index, options)

    return jax.vmap(model_sweep, in_axes=(0, 0, 0, 0, None, None, None))


def _to_flat(state):
    num_chains, num_temps, num_neurons = state.spins.shape
    batch = num_chains * num_temps
    return _FlatState(
        state.spins.reshape(batch, num_neurons).T,
        state.fields.reshape(batch, num_neurons).T,
        state.energy.reshape(batch),
    )


def _from_flat(flat, num_chains, num_temps):
    num_neurons = flat.spins.shape[0]
    return GibbsState(
        flat.spins.T.reshape(num_chains, num_temps, num_neurons),
        flat.fields.T.reshape(num_chains, num_temps, num_neurons),
        flat.energy.reshape(num_chains, num_temps),
    )


def _betas(temperatures, num_chains, dtype):
    temp_betas = 1.0 / jnp.asarray(temperatures, dtype)
    return jnp.tile(temp_betas, num_chains), temp_betas


# --------------------------------------------------------------------------------------------
# Public kernel: init and step
# --------------------------------------------------------------------------------------------


def init(rng_key, h, J, temperatures, num_chains, initial_spins=None, *, dtype=jnp.float32):
    """Initial state of ``num_chains`` chains at each temperature.

    Parameters
    ----------
    rng_key : JAX PRNG key (random starts, or the choice of data rows)
    h : (N,)  J : (N, N) symmetric, zero diagonal
    temperatures : (temps,) positive
    num_chains : int
    initial_spins : None for uniformly random ±1 starts, or ±1 spins of shape (N,) (every
        chain), (num_chains, N) (one per chain, all temperatures), (num_chains, temps, N), or
        (R, N) data rows with R ≠ num_chains, from which each chain draws a row at random.
    dtype : sampler dtype of spins and fields (float32 or float64)

    Returns
    -------
    GibbsState with spins/fields (num_chains, temps, N) and energy (num_chains, temps).
    """
    temps = _temperatures(temperatures)
    h = jnp.asarray(h, dtype)
    J = jnp.asarray(J, dtype)
    num_neurons = h.shape[0]
    num_temps = temps.size
    num_chains = int(num_chains)
    if num_chains < 1:
        raise ValueError(f"num_chains must be >= 1, got {num_chains}")
    shape = (num_chains, num_temps, num_neurons)
    if initial_spins is None:
        spins = jnp.where(jax.random.bernoulli(rng_key, 0.5, shape), 1.0, -1.0).astype(dtype)
    else:
        start = np.asarray(initial_spins)
        if start.shape[-1:] != (num_neurons,):
            raise ValueError(
                f"initial_spins must end in N = {num_neurons} neurons, got shape {start.shape}"
            )
        if not np.all(np.abs(start) == 1):
            raise ValueError("initial_spins must be ±1 (convert 0/1 rasters with data.to_spins)")
        start = jnp.asarray(start, dtype)
        if start.ndim == 1:
            spins = jnp.broadcast_to(start, shape)
        elif start.shape == shape:
            spins = start
        elif start.ndim == 2 and start.shape[0] == num_chains:
            spins = jnp.broadcast_to(start[:, None, :], shape)
        elif start.ndim == 2:
            rows = jax.random.randint(rng_key, (num_chains, num_temps), 0, start.shape[0])
            spins = start[rows]
        else:
            raise ValueError(
                f"initial_spins of shape {start.shape} do not fit {num_chains} chains x "
                f"{num_temps} temperatures x {num_neurons} neurons"
            )
    spins = jnp.asarray(spins, dtype)
    fields = h + spins @ J
    energy = _energy_from_fields(
        spins.reshape(-1, num_neurons).T, fields.reshape(-1, num_neurons).T, h, _energy_dtype()
    ).reshape(num_chains, num_temps)
    return GibbsState(spins, fields, energy)


def step(
    rng_key,
    state,
    h,
    J,
    temperatures,
    *,
    sweep_index=0,
    scan_order="systematic",
    replica_exchange=False,
    rng="hash",
):
    """One sweep of every chain at every temperature (pure; jit-able).

    Parameters
    ----------
    rng_key : JAX PRNG key
    state : GibbsState (chains, temps, N)
    h, J : model; cast to the sampler dtype of ``state.spins``
    temperatures : (temps,)
    sweep_index : int, the sweep's number: picks even/odd exchange pairs and the sweeps on
        which fields are recomputed exactly
    scan_order : "systematic" (spins 0..N−1) or "random" (a fresh random order each sweep)
    replica_exchange : bool, propose exchanges between neighbouring temperatures after the sweep
    rng : "hash" (fast counter-based uniforms) or "threefry"

    Returns
    -------
    (GibbsState, GibbsInfo)
    """
    num_chains, num_temps, _ = state.spins.shape
    dtype = state.spins.dtype
    h = jnp.asarray(h, dtype)
    J = jnp.asarray(J, dtype)
    betas, temp_betas = _betas(temperatures, num_chains, dtype)
    options = (num_chains, num_temps, scan_order, bool(replica_exchange), rng, None)
    flat, info = _sweep(
        rng_key, _to_flat(state), h, J, betas, temp_betas.astype(state.energy.dtype),
        jnp.asarray(sweep_index), options,
    )
    info = GibbsInfo(info.num_flips.reshape(num_chains, num_temps), *info[1:])
    return _from_flat(flat, num_chains, num_temps), info


def sweep_sums(rng_key, spins, h, J, first_sweep, num_sweeps, num_groups):
    """Advance chains (C, N) at T = 1 by ``num_sweeps`` sweeps (the sweeps of :func:`step`,
    numbered from ``first_sweep``, so the same keys give the same chains) and sum over the
    sweeps, per group of C/G consecutive chains, the spins (G, N) and their products
    (G, N, N); ``num_groups`` 0: no sums (burn-in), (spins, None, None). Traceable (no jit);
    the chains stay in the sweep's flat (N, C) layout throughout."""
    dtype = spins.dtype
    h_s, J_s = jnp.asarray(h).astype(dtype), jnp.asarray(J).astype(dtype)
    num_chains, num_neurons = spins.shape
    betas, temp_betas = _betas(jnp.ones(1, dtype), num_chains, dtype)
    options = (num_chains, 1, "systematic", False, "hash", None)
    flat = _FlatState(spins.T, (h_s + spins @ J_s).T, jnp.zeros(num_chains, _energy_dtype()))
    temp_betas = temp_betas.astype(_energy_dtype())

    def one_sweep(carry, offset):
        flat, sums = carry
        index = first_sweep + offset
        flat, _ = _sweep(jax.random.fold_in(rng_key, index), flat, h_s, J_s, betas,
                         temp_betas, index, options)
        if num_groups:
            s = flat.spins.reshape(num_neurons, num_groups, num_chains // num_groups)
            sums = (sums[0] + s.sum(axis=2).T, sums[1] + jnp.einsum("igc,jgc->gij", s, s))
        return (flat, sums), None

    sums = ((jnp.zeros((num_groups, num_neurons), dtype),
             jnp.zeros((num_groups, num_neurons, num_neurons), dtype)) if num_groups else ())
    (flat, sums), _ = lax.scan(one_sweep, (flat, sums), jnp.arange(num_sweeps))
    return (flat.spins.T, *sums) if num_groups else (flat.spins.T, None, None)


# --------------------------------------------------------------------------------------------
# Driver
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GibbsResult:
    """Output of :func:`sample`.

    energies : (draws, chains, temps) float64, E(s) (at T = 1 scale) of the recorded sweeps
    temperatures : (temps,)
    final_state : GibbsState, to continue the chains (``initial_state=``)
    flip_rate : (temps,) mean fraction of spins flipped per sweep (recorded part)
    swap_acceptance : (temps − 1,) acceptance of exchanges (k, k+1), or None
    mean_spins, mean_products : (temps, N), (temps, N, N) ⟨s_i⟩ and ⟨s_i s_j⟩ over draws and
        chains (``record_moments=True``), else None
    group_mean_spins, group_mean_products : the same per group of chains, (groups, temps, ...),
        independent estimates used for Monte Carlo standard errors
    spins : (draws, chains, temps, N) int8 (``record_spins=True``), else None
    num_sweeps, burn_in, thin, wall_time_s, settings
    """

    energies: np.ndarray
    temperatures: np.ndarray
    final_state: GibbsState
    flip_rate: np.ndarray
    swap_acceptance: np.ndarray | None
    mean_spins: np.ndarray | None
    mean_products: np.ndarray | None
    group_mean_spins: np.ndarray | None
    group_mean_products: np.ndarray | None
    spins: np.ndarray | None
    num_sweeps: int
    burn_in: int
    thin: int
    wall_time_s: float
    settings: dict = field(default_factory=dict)

    @property
    def num_draws(self):
        return self.energies.shape[0]


def _num_groups(num_chains):
    """Largest divisor of num_chains that is at most _MAX_GROUPS."""
    return max(d for d in range(1, min(num_chains, _MAX_GROUPS) + 1) if num_chains % d == 0)


@functools.lru_cache(maxsize=64)
def _make_runner(options, num_draws, thin, record_moments, record_spins, num_groups):
    """Jitted scan over ``num_draws`` draws of ``thin`` sweeps each (recording after each)."""
    num_temps = options[1]

    @jax.jit
    def run(key, state, h, J, betas, temp_betas, first_sweep, accumulators):
        def one_draw(carry, draw):
            state, accumulators = carry

            def one_sweep(carry, offset):
                state, flips, accepted = carry
                index = first_sweep + draw * thin + offset
                state, info = _sweep(
                    jax.random.fold_in(key, index), state, h, J, betas, temp_betas, index,
                    options,
                )
                return (state, flips + info.num_flips, accepted + info.swap_accepted), None

            zeros = (jnp.zeros(state.energy.shape, jnp.int32), jnp.zeros(num_temps - 1,
                                                                            temp_betas.dtype))
            (state, flips, accepted), _ = lax.scan(one_sweep, (state,) + zeros, jnp.arange(thin))
            record = {"energy": state.energy, "flips": flips, "accepted": accepted}
            if record_moments:
                num_neurons = state.spins.shape[0]
                grouped = state.spins.reshape(num_neurons, num_groups, -1, num_temps)
                sums = jnp.einsum("ngck->gkn", grouped)
                products = jnp.einsum("ngck,mgck->gknm", grouped, grouped)
                accumulators = (
                    accumulators[0] + sums.astype(accumulators[0].dtype),
                    accumulators[1] + products.astype(accumulators[1].dtype),
                )
            if record_spins:
                record["spins"] = state.spins.astype(jnp.int8).T
            return (state, accumulators), record

        (state, accumulators), records = lax.scan(
            one_draw, (state, accumulators), jnp.arange(num_draws)
        )
        return state, accumulators, records

    return run


@functools.lru_cache(maxsize=64)
def _make_burner(options, num_sweeps):
    @jax.jit
    def burn(key, state, h, J, betas, temp_betas, first_sweep):
        def one_sweep(state, offset):
            index = first_sweep + offset
            state, _ = _sweep(
                jax.random.fold_in(key, index), state, h, J, betas, temp_betas, index, options
            )
            return state, None

        return lax.scan(one_sweep, state, jnp.arange(num_sweeps))[0]

    return burn


def _chunks(total, num_chunks):
    size = max(1, math.ceil(total / max(1, num_chunks)))
    out = [size] * (total // size)
    if total % size:
        out.append(total % size)
    return out


class _Plan(NamedTuple):
    """Validated settings of one :func:`sample` run (the schedule: burn-in, then draws)."""

    temperatures: np.ndarray
    h: np.ndarray
    J: np.ndarray
    num_chains: int
    num_sweeps: int
    burn_in: int
    thin: int
    options: tuple  # (num_chains, temps, scan_order, replica_exchange, rng, block_size)

    @property
    def num_draws(self):
        return self.num_sweeps // self.thin


def _plan(h, J, temperatures, num_chains, num_sweeps, burn_in, thin, scan_order,
          replica_exchange, rng):
    """Check the model and the schedule; raise ValueError on bad settings."""
    temps = _temperatures(temperatures)
    h_np, J_np = _validate_model(h, J)
    thin, num_sweeps, burn_in = int(thin), int(num_sweeps), int(burn_in)
    if thin < 1 or num_sweeps < thin or burn_in < 0:
        raise ValueError(
            f"need thin >= 1, num_sweeps >= thin and burn_in >= 0 (got thin={thin}, "
            f"num_sweeps={num_sweeps}, burn_in={burn_in})"
        )
    options = (int(num_chains), temps.size, scan_order, bool(replica_exchange), rng, None)
    return _Plan(temps, h_np, J_np, int(num_chains), num_sweeps, burn_in, thin, options)


def _initial_state(rng_key, plan, initial_spins, initial_state, dtype):
    """The starting GibbsState: continued (``initial_state``) or from :func:`init`."""
    if initial_state is None:
        return init(rng_key, plan.h, plan.J, plan.temperatures, plan.num_chains, initial_spins,
                    dtype=dtype)
    state = GibbsState(*(jnp.asarray(x) for x in initial_state))
    expected = (plan.num_chains, plan.temperatures.size, plan.h.size)
    if state.spins.shape != expected:
        raise ValueError(f"initial_state has shape {state.spins.shape}, expected {expected}")
    return state


def _run_plan(keys, plan, flat, arrays, record_moments, record_spins, num_chunks, bar):
    """Burn-in chunks, then draw chunks (jitted scans); returns (flat, accumulators, records).

    ``arrays`` = (h, J, betas, temp_betas) in the sampler dtype; the draw offset goes into the
    sweep index, so the random stream does not depend on the chunking.
    """
    key_burn, key_draw = keys
    num_groups = _num_groups(plan.num_chains)
    sweep_index = 0
    for size in (_chunks(plan.burn_in, num_chunks) if plan.burn_in else []):
        flat = _make_burner(plan.options, size)(key_burn, flat, *arrays, sweep_index)
        sweep_index += size
        if bar is not None:
            bar.update(size)
    num_neurons, num_temps = plan.h.size, plan.temperatures.size
    energy_dtype = _energy_dtype()
    accumulators = (
        jnp.zeros((num_groups, num_temps, num_neurons), energy_dtype),
        jnp.zeros((num_groups, num_temps, num_neurons, num_neurons), energy_dtype),
    ) if record_moments else (jnp.zeros(()), jnp.zeros(()))
    records, draw_index = [], 0
    for size in _chunks(plan.num_draws, num_chunks):
        runner = _make_runner(plan.options, size, plan.thin, record_moments, record_spins,
                              num_groups)
        flat, accumulators, chunk_records = runner(
            key_draw, flat, *arrays, draw_index * plan.thin, accumulators)
        records.append(jax.device_get(chunk_records))
        draw_index += size
        if bar is not None:
            bar.update(size * plan.thin)
    return flat, accumulators, records


def _result(plan, flat, accumulators, records, record_moments, settings, wall_start):
    """Assemble the GibbsResult from the recorded chunks (pure NumPy)."""
    num_draws, num_chains = plan.num_draws, plan.num_chains
    num_temps, num_neurons = plan.temperatures.size, plan.h.size

    def stack(name):
        return np.concatenate([r[name] for r in records], axis=0)

    energies = stack("energy").reshape(num_draws, num_chains, num_temps)
    flips = stack("flips").reshape(num_draws, num_chains, num_temps)
    flip_rate = flips.sum(axis=(0, 1)) / (num_draws * plan.thin * num_chains * num_neurons)
    swap_acceptance = None
    if plan.options[3] and num_temps > 1:
        # recorded sweeps are numbered 0, 1, ...; pair k is proposed on sweeps of its parity
        total = num_draws * plan.thin
        attempts = np.array([(total + 1 - k % 2) // 2 for k in range(num_temps - 1)])
        swap_acceptance = stack("accepted").sum(axis=0) / np.maximum(attempts, 1)
    group_spins = group_products = None
    if record_moments:
        per_group = num_draws * (num_chains // _num_groups(num_chains))
        group_spins = np.asarray(accumulators[0]) / per_group
        group_products = np.asarray(accumulators[1]) / per_group
    spins = None
    if "spins" in records[0]:
        spins = stack("spins").reshape(num_draws, num_chains, num_temps, num_neurons)
    return GibbsResult(
        energies=energies, temperatures=plan.temperatures,
        final_state=_from_flat(flat, num_chains, num_temps), flip_rate=flip_rate,
        swap_acceptance=swap_acceptance,
        mean_spins=None if group_spins is None else group_spins.mean(axis=0),
        mean_products=None if group_products is None else group_products.mean(axis=0),
        group_mean_spins=group_spins, group_mean_products=group_products, spins=spins,
        num_sweeps=plan.num_sweeps, burn_in=plan.burn_in, thin=plan.thin,
        wall_time_s=time.perf_counter() - wall_start, settings=settings,
    )


def sample(
    rng_key,
    h,
    J,
    *,
    temperatures=(1.0,),
    num_chains,
    num_sweeps,
    burn_in,
    thin=1,
    initial_spins=None,
    initial_state=None,
    replica_exchange=False,
    progress=False,
    scan_order="systematic",
    record_moments=False,
    record_spins=False,
    dtype=jnp.float32,
    rng="hash",
    num_chunks=None,
):
    """Run ``burn_in`` + ``num_sweeps`` sweeps of many chains at many temperatures.

    Parameters
    ----------
    rng_key : JAX PRNG key; the result depends only on it and the settings (not on chunking)
    h : (N,)  J : (N, N) symmetric, zero diagonal
    temperatures : (temps,) positive; with ``replica_exchange`` sort them (a ladder)
    num_chains : chains per temperature
    num_sweeps : sweeps after burn-in; one draw is recorded every ``thin`` sweeps, so there are
        ``num_sweeps // thin`` draws
    burn_in : sweeps discarded first
    initial_spins : see :func:`init` (e.g. data rows); ``initial_state``: a GibbsState to
        continue (persistent chains), overrides ``initial_spins``
    replica_exchange : exchange neighbouring temperatures after every sweep (even/odd pairs)
    progress : show a tqdm bar (the run is split into chunks of scanned sweeps)
    scan_order : "systematic" or "random"
    record_moments : accumulate ⟨s_i⟩, ⟨s_i s_j⟩ per temperature (costs about one extra sweep
        per draw)
    record_spins : keep the spins of every draw as int8 (draws, chains, temps, N)
    dtype : sampler dtype (float32 default; float64 for reference runs)
    rng : "hash" (default, fast) or "threefry"

    Returns
    -------
    GibbsResult
    """
    wall_start = time.perf_counter()
    plan = _plan(h, J, temperatures, num_chains, num_sweeps, burn_in, thin, scan_order,
                 replica_exchange, rng)
    key_init, key_burn, key_draw = jax.random.split(rng_key, 3)
    state = _initial_state(key_init, plan, initial_spins, initial_state, dtype)
    dtype = state.spins.dtype
    h_j, J_j = jnp.asarray(plan.h, dtype), jnp.asarray(plan.J, dtype)
    betas, temp_betas = _betas(plan.temperatures, plan.num_chains, dtype)
    flat = _to_flat(state)
    flat = _FlatState(flat.spins, _exact_fields(flat.spins, h_j, J_j), flat.energy)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=plan.burn_in + plan.num_draws * plan.thin, unit="sweep", desc="Gibbs",
                   file=sys.stderr)
    arrays = (h_j, J_j, betas, temp_betas.astype(_energy_dtype()))
    flat, accumulators, records = _run_plan(
        (key_burn, key_draw), plan, flat, arrays, record_moments, record_spins,
        (20 if progress else 1) if num_chunks is None else num_chunks, bar)
    if bar is not None:
        bar.close()
    settings = {
        "num_chains": plan.num_chains, "temperatures": plan.temperatures.tolist(),
        "num_sweeps": plan.num_sweeps, "burn_in": plan.burn_in, "thin": plan.thin,
        "replica_exchange": bool(replica_exchange), "scan_order": scan_order,
        "dtype": jnp.dtype(dtype).name, "rng": rng,
        "initial": "state" if initial_state is not None else (
            "random" if initial_spins is None else "spins"),
    }
    return _result(plan, flat, accumulators, records, record_moments, settings, wall_start)


# --------------------------------------------------------------------------------------------
# Many models at once: posterior draws x chains x temperatures in one jitted program
# --------------------------------------------------------------------------------------------


class ModelsState(NamedTuple):
    """State of D models' chains: the flat layout of one model with a leading model axis.

    spins, fields : (D, N, chains · temps) sampler dtype (column b = chain · temps + temp)
    energy : (D, chains · temps) energy dtype, E(s) at T = 1
    """

    spins: jax.Array
    fields: jax.Array
    energy: jax.Array


def init_models(rng_key, h, J, temperatures, num_chains, *, dtype=jnp.float32):
    """Uniformly random ±1 starts for D models, ``num_chains`` chains at each temperature;
    model d's from ``fold_in(rng_key, d)`` (so it does not depend on the other models).

    h : (D, N)  J : (D, N, N) symmetric, zero diagonal (each model's own parameters)
    Returns a :class:`ModelsState`.
    """
    temps = _temperatures(temperatures)
    h = jnp.asarray(h, dtype)
    J = jnp.asarray(J, dtype)
    if h.ndim != 2 or J.shape != h.shape + h.shape[-1:]:
        raise ValueError(f"expected h (D, N) and J (D, N, N); got {h.shape} and {J.shape}")
    num_models, num_neurons = h.shape
    batch = int(num_chains) * temps.size
    keys = jax.vmap(jax.random.fold_in, in_axes=(None, 0))(rng_key, jnp.arange(num_models))
    draws = jax.vmap(lambda key: jax.random.bernoulli(key, 0.5, (num_neurons, batch)))(keys)
    spins = jnp.where(draws, 1.0, -1.0).astype(dtype)
    fields = h[:, :, None] + J @ spins
    energy = jax.vmap(_energy_from_fields, in_axes=(0, 0, 0, None))(
        spins, fields, h, _energy_dtype())
    return ModelsState(spins, fields, energy)


@functools.lru_cache(maxsize=32)
def _make_models_runner(options, num_sweeps):
    """Jitted scan of ``num_sweeps`` sweeps of every model (vmap of :func:`_sweep` over D),
    recording the energies (sweeps, D, chains · temps) and the summed exchange acceptance."""
    num_temps = options[1]

    sweep_all = _models_sweep(options)

    @jax.jit
    def run(model_keys, state, h, J, betas, temp_betas, first_sweep):
        def one(carry, offset):
            state, accepted = carry
            index = first_sweep + offset
            keys = jax.vmap(jax.random.fold_in, in_axes=(0, None))(model_keys, index)
            flat, info = sweep_all(keys, state, h, J, betas, temp_betas, index)
            return (ModelsState(*flat), accepted + info.swap_accepted), flat.energy

        zeros = jnp.zeros((h.shape[0], num_temps - 1), temp_betas.dtype)
        (state, accepted), energies = lax.scan(one, (state, zeros), jnp.arange(num_sweeps))
        return state, energies, accepted

    return run


def sample_models_energies(rng_key, h, J, state, temperatures, *, num_chains, num_sweeps,
                           first_sweep=0, replica_exchange=True, chunk_size=None, bar=None):
    """Advance D models by ``num_sweeps`` sweeps and record the energy after each sweep.

    Every model d uses the key ``fold_in(rng_key, d)`` and sweep s the key
    ``fold_in(that, first_sweep + s)``, so runs continued in pieces (``state`` and
    ``first_sweep`` from the previous piece) equal one long run. ``bar``: a tqdm bar advanced
    by sweeps after each chunk of ``chunk_size`` scanned sweeps.

    Returns
    -------
    state : ModelsState
    energies : (num_sweeps, D, num_chains, temps) NumPy, E(s) at the T = 1 scale
    accepted : (D, temps − 1) summed per-sweep exchange acceptance (zeros without exchange)
    """
    temps = _temperatures(temperatures)
    num_models = h.shape[0]
    dtype = state.spins.dtype
    h = jnp.asarray(h, dtype)
    J = jnp.asarray(J, dtype)
    betas, temp_betas = _betas(temps, num_chains, dtype)
    temp_betas = temp_betas.astype(state.energy.dtype)
    options = (int(num_chains), temps.size, "systematic", bool(replica_exchange), "hash", None)
    model_keys = jax.vmap(jax.random.fold_in, in_axes=(None, 0))(rng_key, jnp.arange(num_models))
    chunks = _chunks(int(num_sweeps), 1 if chunk_size is None else
                     math.ceil(int(num_sweeps) / int(chunk_size)))
    energies, accepted, done = [], 0.0, 0
    for size in chunks:
        runner = _make_models_runner(options, size)
        state, chunk_energies, chunk_accepted = runner(
            model_keys, state, h, J, betas, temp_betas, first_sweep + done)
        energies.append(np.asarray(chunk_energies))
        accepted = accepted + np.asarray(chunk_accepted)
        done += size
        if bar is not None:
            bar.update(size)
    energies = np.concatenate(energies, axis=0).reshape(
        int(num_sweeps), num_models, int(num_chains), temps.size)
    return state, energies, np.broadcast_to(accepted, (num_models, temps.size - 1))


@functools.lru_cache(maxsize=16)
def _make_models_spin_runner(options, num_draws, thin):
    """Jitted scan over ``num_draws`` draws of ``thin`` sweeps of every model, recording the
    spins (draws, D, chains, N) int8 and energies (draws, D, chains) after each draw."""
    sweep_all = _models_sweep(options)

    @jax.jit
    def run(model_keys, state, h, J, betas, temp_betas, first_sweep):
        def one_draw(state, draw):
            def one_sweep(state, offset):
                index = first_sweep + draw * thin + offset
                keys = jax.vmap(jax.random.fold_in, in_axes=(0, None))(model_keys, index)
                flat, _ = sweep_all(keys, state, h, J, betas, temp_betas, index)
                return ModelsState(*flat), None

            state = lax.scan(one_sweep, state, jnp.arange(thin))[0]
            return state, (jnp.swapaxes(state.spins, 1, 2).astype(jnp.int8), state.energy)

        return lax.scan(one_draw, state, jnp.arange(num_draws))

    return run


def sample_models_spins(rng_key, h, J, num_samples, *, num_chains=256, burn_in=200, thin=5,
                        initial_spins=None, temperature=1.0, chunk_draws=None, bar=None):
    """Spin samples of D models at once, one vectorised program: (D, num_samples, N) int8.

    Each model runs ``num_chains`` chains (starts: random data rows of ``initial_spins``
    (R, N) when given — near equilibrium for a model fitted to them — else uniform), discards
    ``burn_in`` sweeps, then records every ``thin``-th sweep, ceil(num_samples / num_chains)
    draws per chain; rows are ordered draw by draw. Model d uses ``fold_in(rng_key, d)``.

    Returns ``(spins (D, num_samples, N) int8, energies (draws, D, num_chains))``.
    """
    h = jnp.asarray(h, jnp.float32)
    J = jnp.asarray(J, jnp.float32)
    num_models, num_neurons = h.shape
    num_chains = int(min(num_chains, num_samples))
    num_draws = math.ceil(int(num_samples) / num_chains)
    init_key, run_key = jax.random.split(rng_key)
    state = init_models(init_key, h, J, (temperature,), num_chains)
    if initial_spins is not None:
        rows = np.asarray(initial_spins, np.float32)
        pick = jax.random.randint(init_key, (num_models, num_chains), 0, rows.shape[0])
        spins = jnp.swapaxes(jnp.asarray(rows)[pick], 1, 2)  # (D, N, chains)
        fields = h[:, :, None] + J @ spins
        energy = jax.vmap(_energy_from_fields, in_axes=(0, 0, 0, None))(
            spins, fields, h, _energy_dtype())
        state = ModelsState(spins, fields, energy)
    if burn_in:
        state, _, _ = sample_models_energies(run_key, h, J, state, (temperature,),
                                             num_chains=num_chains, num_sweeps=burn_in,
                                             replica_exchange=False, chunk_size=100, bar=bar)
    betas, temp_betas = _betas((temperature,), num_chains, jnp.float32)
    temp_betas = temp_betas.astype(state.energy.dtype)
    options = (num_chains, 1, "systematic", False, "hash", None)
    model_keys = jax.vmap(jax.random.fold_in, in_axes=(None, 0))(run_key, jnp.arange(num_models))
    # chunks of at most ~64 MiB of recorded spins
    chunk_draws = chunk_draws or max(1, (64 << 20) // max(1, num_models * num_chains
                                                           * num_neurons))
    spins, energies, done = [], [], 0
    for size in _chunks(num_draws, math.ceil(num_draws / chunk_draws)):
        runner = _make_models_spin_runner(options, size, int(thin))
        state, (chunk_spins, chunk_energy) = runner(
            model_keys, state, h, J, betas, temp_betas, int(burn_in) + done * int(thin))
        spins.append(np.asarray(chunk_spins))
        energies.append(np.asarray(chunk_energy))
        done += size
        if bar is not None:
            bar.update(size * int(thin))
    spins = np.concatenate(spins).swapaxes(0, 1).reshape(num_models, -1, num_neurons)
    return spins[:, :int(num_samples)], np.concatenate(energies)


# --------------------------------------------------------------------------------------------
# Convergence checks
# --------------------------------------------------------------------------------------------


def energy_autocorrelation_time(energies):
    """Integrated autocorrelation time of the energy, in draws, per temperature —
    :func:`bayes_ising.core.convergence.integrated_autocorrelation_time` (multi-chain, Geyer).
    Multiply by ``thin`` for sweeps. A constant energy gives τ = 1.

    Parameters
    ----------
    energies : (draws, chains) or (draws, chains, temps)

    Returns
    -------
    float for 2-D input, (temps,) array for 3-D input.
    """
    x = np.asarray(energies, dtype=float)
    if x.ndim not in (2, 3):
        raise ValueError(f"energies must be (draws, chains[, temps]), got shape {x.shape}")
    tau = integrated_autocorrelation_time(x if x.ndim == 3 else x[:, :, None])
    return float(tau[0]) if x.ndim == 2 else tau


def convergence(result):
    """R-hat, bulk ESS and autocorrelation time of the energy, per temperature.

    R-hat and bulk ESS by :func:`bayes_ising.core.convergence.draw_statistics` (rank-normalised
    split R-hat across chains).

    Returns
    -------
    dict with lists over temperatures: ``rhat``, ``ess_bulk``, ``autocorrelation_time_sweeps``,
    ``sweeps_per_autocorrelation_time``, ``mean_energy``, ``mcse_mean_energy``, and
    ``num_draws``, ``num_chains``.
    """
    energies = np.asarray(result.energies, dtype=float)  # (draws, chains, temps)
    num_draws, num_chains, _ = energies.shape
    by_temp = np.moveaxis(energies, 2, 0).transpose(0, 2, 1)  # (temps, chains, draws)
    # the package's one R-hat and bulk ESS (NaN with < 4 draws; R-hat NaN with one chain)
    rhat, ess, _ = draw_statistics(np.swapaxes(energies, 0, 1))
    constant = by_temp.std(axis=(1, 2)) == 0
    rhat = np.where(constant, 1.0, rhat)
    ess = np.where(constant, num_draws * num_chains, ess)
    tau = energy_autocorrelation_time(energies) * result.thin
    std = by_temp.std(axis=(1, 2))
    return {
        "rhat": rhat.tolist(),
        "ess_bulk": ess.tolist(),
        "autocorrelation_time_sweeps": np.asarray(tau).tolist(),
        "sweeps_per_autocorrelation_time": (result.num_sweeps / np.asarray(tau)).tolist(),
        "mean_energy": by_temp.mean(axis=(1, 2)).tolist(),
        "mcse_mean_energy": (std / np.sqrt(np.maximum(ess, 1.0))).tolist(),
        "num_draws": num_draws,
        "num_chains": num_chains,
    }


def check_convergence(result, *, max_rhat=MAX_RHAT, min_ess=MIN_ESS, min_sweeps_per_tau=50,
                      warn=True):
    """Judge a run: R-hat ≤ ``max_rhat``, ESS ≥ ``min_ess`` and at least
    ``min_sweeps_per_tau`` autocorrelation times, at every temperature.

    Returns :func:`convergence`'s dict plus ``ok`` (bool) and ``messages`` (list of str); with
    ``warn`` each problem is also issued as a ``RuntimeWarning``.
    """
    report = convergence(result)
    # the package's one rule; a NaN statistic (too few draws) fails too
    rhat_over, ess_under = rule_failures(report["rhat"], report["ess_bulk"], max_rhat=max_rhat,
                                         min_ess=min_ess)
    messages = []
    for k, temperature in enumerate(np.asarray(result.temperatures)):
        rhat, ess = report["rhat"][k], report["ess_bulk"][k]
        ratio = report["sweeps_per_autocorrelation_time"][k]
        tau = report["autocorrelation_time_sweeps"][k]
        if rhat_over[k] or not np.isfinite(rhat):
            messages.append(
                f"T = {temperature:g}: energy R-hat {rhat:.3f} > {max_rhat} (chains disagree; "
                "run longer or use replica exchange)"
            )
        if ess_under[k] or not np.isfinite(ess):
            messages.append(f"T = {temperature:g}: energy ESS {ess:.0f} < {min_ess}")
        if not ratio >= min_sweeps_per_tau:
            messages.append(
                f"T = {temperature:g}: the run is {result.num_sweeps} sweeps, only {ratio:.1f} "
                f"autocorrelation times (τ = {tau:.1f} sweeps); need >= {min_sweeps_per_tau}"
            )
    if warn:
        for message in messages:
            warnings.warn(f"Gibbs sampler: {message}", RuntimeWarning, stacklevel=2)
    report["ok"] = not messages
    report["messages"] = messages
    return report


# --------------------------------------------------------------------------------------------
# Convenience: moments and spin samples of the model
# --------------------------------------------------------------------------------------------


class MomentsInfo(NamedTuple):
    """Monte Carlo details of :func:`sample_moments`.

    m_mcse : (N,) Monte Carlo standard error of m (spread of independent chain groups)
    Q_mcse : (N, N) the same for Q (zero diagonal)
    num_samples : int, draws x chains
    num_groups : int, independent groups of chains behind the MCSE (NaN MCSE when 1)
    convergence : dict of :func:`convergence` for the energy
    final_state : GibbsState, to continue the chains (persistent chains)
    """

    m_mcse: np.ndarray
    Q_mcse: np.ndarray
    num_samples: int
    num_groups: int
    convergence: dict
    final_state: GibbsState


def sample_moments(
    rng_key,
    h,
    J,
    *,
    num_chains,
    num_sweeps,
    burn_in,
    initial_spins=None,
    initial_state=None,
    temperature=1.0,
    thin=1,
    dtype=jnp.float32,
    progress=False,
    scan_order="systematic",
):
    r"""Model moments :math:`m_i = \langle s_i\rangle` and :math:`Q_{ij} = \langle s_i s_j\rangle`
    by Gibbs sampling, with Monte Carlo standard errors.

    The chains are split into G ≤ 32 equal groups (G the largest divisor of ``num_chains`` up
    to 32: use a power of two); each group's average over its draws is an independent estimate,
    so MCSE = std over groups / √G includes the autocorrelation.

    Returns
    -------
    m : (N,)  Q : (N, N) unit diagonal  info : MomentsInfo
    """
    result = sample(
        rng_key, h, J, temperatures=(temperature,), num_chains=num_chains,
        num_sweeps=num_sweeps, burn_in=burn_in, thin=thin, initial_spins=initial_spins,
        initial_state=initial_state, progress=progress, record_moments=True, dtype=dtype,
        scan_order=scan_order,
    )
    m = result.mean_spins[0]
    Q = result.mean_products[0].copy()
    np.fill_diagonal(Q, 1.0)
    groups = result.group_mean_spins.shape[0]
    if groups > 1:
        m_mcse = result.group_mean_spins[:, 0].std(axis=0, ddof=1) / np.sqrt(groups)
        Q_mcse = result.group_mean_products[:, 0].std(axis=0, ddof=1) / np.sqrt(groups)
        np.fill_diagonal(Q_mcse, 0.0)
    else:
        m_mcse = np.full_like(m, np.nan)
        Q_mcse = np.full_like(Q, np.nan)
    info = MomentsInfo(
        m_mcse=m_mcse,
        Q_mcse=Q_mcse,
        num_samples=result.num_draws * num_chains,
        num_groups=groups,
        convergence=convergence(result),
        final_state=result.final_state,
    )
    return m, Q, info


def sample_spins(
    rng_key,
    h,
    J,
    num_samples,
    *,
    num_chains=None,
    burn_in=1000,
    thin=10,
    temperature=1.0,
    ladder=None,
    initial_spins=None,
    dtype=jnp.float32,
    progress=False,
):
    """Spin patterns drawn from the model at ``temperature``, shape (num_samples, N) int8 ±1.

    Parameters
    ----------
    num_chains : chains run in parallel (default min(num_samples, 1024)); each contributes
        ceil(num_samples / num_chains) draws, ``thin`` sweeps apart, after ``burn_in`` sweeps
    ladder : optional increasing temperatures above ``temperature`` for replica exchange
        (multimodal models); samples are taken at ``temperature``
    initial_spins : start chains from these spins (e.g. data rows); see :func:`init`

    Rows are ordered draw by draw (all chains of the first draw, then the second, ...).
    """
    num_samples = int(num_samples)
    if num_samples < 1:
        raise ValueError(f"num_samples must be >= 1, got {num_samples}")
    num_chains = min(num_samples, 1024) if num_chains is None else int(num_chains)
    num_draws = math.ceil(num_samples / num_chains)
    temps = [float(temperature)]
    if ladder is not None:
        extra = [float(t) for t in np.atleast_1d(ladder)]
        if any(t <= temperature for t in extra) or sorted(extra) != extra:
            raise ValueError("ladder must be increasing temperatures above `temperature`")
        temps += extra
    result = sample(
        rng_key, h, J, temperatures=temps, num_chains=num_chains, num_sweeps=num_draws * thin,
        burn_in=burn_in, thin=thin, initial_spins=initial_spins,
        replica_exchange=ladder is not None, record_spins=True, dtype=dtype, progress=progress,
    )
    spins = result.spins[:, :, 0, :].reshape(-1, result.spins.shape[-1])
    return spins[:num_samples]


# --------------------------------------------------------------------------------------------
# K-pairwise model: E(s) = E_pair(s) − V(K(s))
# --------------------------------------------------------------------------------------------


class KPairwiseSamples(NamedTuple):
    r"""Gibbs estimates of K-pairwise models (D models, temps temperatures), after burn-in.

    m (D, temps, N) ⟨s⟩; Q (D, temps, N, N) ⟨s sᵀ⟩; p_k (D, temps, N+1) P(K);
    energies (D, kept sweeps, chains, temps) E(s) of every kept sweep (for C(T) = Var E / T²
    and autocorrelation times); num_sweeps, burn_in; wall_time_s.
    """

    m: np.ndarray
    Q: np.ndarray
    p_k: np.ndarray
    energies: np.ndarray
    num_sweeps: int
    burn_in: int
    wall_time_s: float


def _kpairwise_sweep(spins, fields, k, thresholds, J, V):
    r"""One systematic heat-bath sweep of the K-pairwise model over spins 0..N−1.

    spins, fields (N, B) with H = h + J s; k (B,) active counts. Spin i sees
    :math:`\tilde H_i = H_i + \tfrac12[V(K_{-i}+1) - V(K_{-i})]` (the conditional of
    :func:`bayes_ising.core.pseudolikelihood.log_pseudolikelihood_kpairwise`) and becomes +1 iff
    :math:`\tilde H_i > \tau_i`; the fields then get the rank-1 update J[:, i] Δs_i."""
    def one_spin(carry, i):
        spins, fields, k = carry
        s_i = lax.dynamic_index_in_dim(spins, i, 0, keepdims=False)
        k_rest = k - (s_i > 0).astype(k.dtype)
        shifted = (lax.dynamic_index_in_dim(fields, i, 0, keepdims=False)
                   + 0.5 * (V[k_rest + 1] - V[k_rest]))
        threshold = lax.dynamic_index_in_dim(thresholds, i, 0, keepdims=False)
        new = jnp.where(shifted > threshold, 1.0, -1.0).astype(spins.dtype)
        fields = fields + lax.dynamic_index_in_dim(J, i, 1) * (new - s_i)[None, :]
        spins = lax.dynamic_update_index_in_dim(spins, new, i, 0)
        return (spins, fields, k_rest + (new > 0).astype(k.dtype)), None

    (spins, fields, k), _ = lax.scan(one_spin, (spins, fields, k), jnp.arange(spins.shape[0]))
    return spins, fields, k


def _kpairwise_chain(key, h, J, V, betas, spins, num_sweeps, burn_in, rng):
    """All chains (columns) of one model: moments after burn-in and the energy trace."""
    num_neurons, width = spins.shape
    dtype = spins.dtype

    def sweep(carry, index):
        spins, k, sum_s, sum_ss, hist = carry
        thresholds = _thresholds(jax.random.fold_in(key, index), spins.shape, betas, dtype, rng)
        fields = h[:, None] + J @ spins  # exact every sweep: no drift (costs one GEMM)
        spins, fields, k = _kpairwise_sweep(spins, fields, k, thresholds, J, V)
        energy = -0.5 * jnp.sum(spins * (h[:, None] + fields), axis=0) - V[k]
        keep = (index >= burn_in).astype(dtype)
        sum_s = sum_s + keep * spins
        sum_ss = sum_ss + keep * jnp.einsum("ib,jb->bij", spins, spins)
        hist = hist + keep * jax.nn.one_hot(k, num_neurons + 1, dtype=dtype)
        return (spins, k, sum_s, sum_ss, hist), energy

    init = (spins, jnp.sum(spins > 0, axis=0).astype(jnp.int32), jnp.zeros_like(spins),
            jnp.zeros((width, num_neurons, num_neurons), dtype),
            jnp.zeros((width, num_neurons + 1), dtype))
    (_, _, sum_s, sum_ss, hist), energies = lax.scan(sweep, init, jnp.arange(num_sweeps))
    return sum_s.T, sum_ss, hist, energies[burn_in:]


@functools.lru_cache(maxsize=16)
def _make_kpairwise_runner(num_sweeps, burn_in, rng):
    chain = functools.partial(_kpairwise_chain, num_sweeps=num_sweeps, burn_in=burn_in,
                              rng=rng)
    return jax.jit(jax.vmap(chain, in_axes=(0, 0, 0, 0, None, 0)))


def sample_kpairwise(rng_key, h, J, V, *, temperatures=(1.0,), num_chains=16,
                     num_sweeps=2000, burn_in=200, rng="hash", dtype=jnp.float64):
    r"""Gibbs sampling of one or D K-pairwise models at several temperatures at once.

    Target :math:`P_T(s) \propto e^{-E(s)/T}`, :math:`E = -h\cdot s - \sum_{i<j}J_{ij}s_is_j
    - V(K(s))` (:mod:`bayes_ising.core.kpairwise`). Each model's chains × temperatures are the
    columns of one (N, chains·temps) batch swept by :func:`_kpairwise_sweep` (uniform
    thresholds of :func:`_thresholds`, as the pairwise sampler); models are vmapped, sweeps
    scanned: one jitted program, no Python loop over sweeps, spins or models.

    h (N,) or (D, N); J (N, N) or (D, N, N); V (N+1,) or (D, N+1). Random ±1 starts.
    Returns :class:`KPairwiseSamples` (a model axis of size 1 for single inputs).
    """
    start = time.perf_counter()
    h, J, V = (jnp.asarray(x, dtype) for x in (h, J, V))
    single = h.ndim == 1
    if single:
        h, J, V = h[None], J[None], V[None]
    num_models, num_neurons = h.shape
    if J.shape != (num_models, num_neurons, num_neurons) or V.shape != (num_models,
                                                                       num_neurons + 1):
        raise ValueError(f"sample_kpairwise: h {h.shape}, J {J.shape}, V {V.shape} do not fit "
                         "(D, N), (D, N, N), (D, N+1)")
    if not 0 <= burn_in < num_sweeps:
        raise ValueError(f"need 0 <= burn_in < num_sweeps, got {burn_in}, {num_sweeps}")
    temps = _temperatures(temperatures)
    num_temps = temps.size
    betas, _ = _betas(temps, int(num_chains), dtype)  # column c·temps + t has β_t
    key_start, key_run = jax.random.split(rng_key)
    spins = jnp.where(jax.random.bernoulli(
        key_start, 0.5, (num_models, num_neurons, betas.size)), 1.0, -1.0).astype(dtype)
    keys = jax.random.split(key_run, num_models)
    runner = _make_kpairwise_runner(int(num_sweeps), int(burn_in), rng)
    sum_s, sum_ss, hist, energies = runner(keys, h, J, V, betas, spins)
    kept = (num_sweeps - burn_in) * num_chains

    def per_temp(x):  # (D, chains·temps, ...) -> (D, temps, ...), summed over chains / kept
        x = np.asarray(x).reshape((num_models, num_chains, num_temps) + x.shape[2:])
        return x.sum(axis=1) / kept

    energies = np.asarray(energies).reshape(num_models, -1, num_chains, num_temps)
    return KPairwiseSamples(per_temp(sum_s), per_temp(sum_ss), per_temp(hist), energies,
                            int(num_sweeps), int(burn_in), time.perf_counter() - start)


def _kpairwise_spin_chain(key, h, J, V, spins, num_draws, burn_in, thin, rng):
    """All chains (columns) of one K-pairwise model at T = 1: ``burn_in`` sweeps, then the
    spins of every ``thin``-th sweep, (num_draws, chains, N) int8."""
    dtype = spins.dtype
    betas = jnp.ones(spins.shape[1], dtype)

    def sweep(carry, index):
        spins, k = carry
        thresholds = _thresholds(jax.random.fold_in(key, index), spins.shape, betas, dtype, rng)
        fields = h[:, None] + J @ spins
        spins, _, k = _kpairwise_sweep(spins, fields, k, thresholds, J, V)
        return (spins, k), None

    carry = (spins, jnp.sum(spins > 0, axis=0).astype(jnp.int32))
    carry, _ = lax.scan(sweep, carry, jnp.arange(burn_in))

    def draw(carry, d):
        carry, _ = lax.scan(sweep, carry, burn_in + d * thin + jnp.arange(thin))
        return carry, carry[0].T.astype(jnp.int8)

    _, out = lax.scan(draw, carry, jnp.arange(num_draws))
    return out


@functools.lru_cache(maxsize=16)
def _make_kpairwise_spin_runner(num_draws, burn_in, thin, rng):
    chain = functools.partial(_kpairwise_spin_chain, num_draws=num_draws, burn_in=burn_in,
                              thin=thin, rng=rng)
    return jax.jit(jax.vmap(chain))


def sample_kpairwise_spins(rng_key, h, J, V, num_samples, *, num_chains=256, burn_in=200,
                           thin=5, initial_spins=None, rng="hash", dtype=jnp.float32):
    r"""Spin samples of D K-pairwise models at T = 1, one vectorised program:
    (D, num_samples, N) int8 — the K-pairwise counterpart of :func:`sample_models_spins`
    (the same schedule: ``num_chains`` chains per model started from random rows of
    ``initial_spins`` (R, N) when given, else uniform; ``burn_in`` sweeps, then every
    ``thin``-th sweep, rows ordered draw by draw), swept by :func:`_kpairwise_sweep` (the
    conditional with the V step). h (D, N), J (D, N, N), V (D, N+1)."""
    h, J, V = (jnp.asarray(x, dtype) for x in (h, J, V))
    num_models, num_neurons = h.shape
    if J.shape != (num_models, num_neurons, num_neurons) or V.shape != (num_models,
                                                                       num_neurons + 1):
        raise ValueError(f"sample_kpairwise_spins: h {h.shape}, J {J.shape}, V {V.shape} do "
                         "not fit (D, N), (D, N, N), (D, N+1)")
    num_chains = int(min(num_chains, num_samples))
    num_draws = math.ceil(int(num_samples) / num_chains)
    init_key, run_key = jax.random.split(rng_key)
    if initial_spins is not None:
        rows = jnp.asarray(np.asarray(initial_spins), dtype)
        pick = jax.random.randint(init_key, (num_models, num_chains), 0, rows.shape[0])
        spins = jnp.swapaxes(rows[pick], 1, 2)  # (D, N, chains)
    else:
        spins = jnp.where(jax.random.bernoulli(init_key, 0.5, (num_models, num_neurons,
                                                               num_chains)), 1.0, -1.0)
    keys = jax.random.split(run_key, num_models)
    runner = _make_kpairwise_spin_runner(num_draws, int(burn_in), int(thin), rng)
    out = np.asarray(runner(keys, h, J, V, spins.astype(dtype)))  # (D, draws, chains, N)
    return out.reshape(num_models, -1, num_neurons)[:, :int(num_samples)]
