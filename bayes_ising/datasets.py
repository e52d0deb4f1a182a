"""Embedded datasets: generated deterministically in-process (nothing is downloaded or stored).

:func:`ei_sleep` is the package's default dataset (the demo, the README's quick start and many
tests use it).
"""

from __future__ import annotations

import functools

import jax
import numpy as np

from .synthetic import DEFAULT_STATE_DRIVES, ei_network

__all__ = ["EI_SLEEP_SEED", "EI_SLEEP_SETTINGS", "ei_sleep", "ei_sleep_truth"]

#: PRNG seed of :func:`ei_sleep` (``jax.random.key(EI_SLEEP_SEED)``).
EI_SLEEP_SEED = 20190601

#: The arguments of :func:`bayes_ising.synthetic.ei_network` that make :func:`ei_sleep`.
EI_SLEEP_SETTINGS = {
    "num_excitatory": 32,
    "num_inhibitory": 8,
    "duration": 3000.0,  # s: 60,000 bins of 50 ms
    "bin_size": 0.05,
    "steps_per_bin": 5,  # 10 ms Glauber steps
    "epoch_duration": 100.0,  # 30 epochs cycling wake, light, deep: 20,000 bins per state
    "state_order": ("wake", "light", "deep"),
}


@functools.cache
def _ei_sleep():
    data, truth = ei_network(jax.random.key(EI_SLEEP_SEED), return_truth=True,
                             drives=DEFAULT_STATE_DRIVES, **EI_SLEEP_SETTINGS)
    for array in (data.spins, data.neuron_ids, data.cell_types, data.states, *truth[:5]):
        array.setflags(write=False)  # one cached copy is shared: keep it immutable
    return data, truth


def ei_sleep():
    """The embedded synthetic E/I sleep dataset (deterministic; ~2 s on first call, cached).

    40 neurons (32 E ``E00``–``E31``, 8 I ``I00``–``I07``; cell types ``"E"``/``"I"``),
    50 ms bins, 3000 s cut into 30 epochs of 100 s cycling ``wake`` → ``light`` → ``deep``:
    60,000 bins, 20,000 per state. Made by :func:`bayes_ising.synthetic.ei_network` with
    :data:`EI_SLEEP_SETTINGS` and the key ``jax.random.key(EI_SLEEP_SEED)``: a kinetic
    (parallel Glauber, 10 ms steps) network with asymmetric Dale's-law couplings and a slow
    up/down drive that grows from wake to deep sleep; spike times are binned by
    :meth:`~bayes_ising.data.SpikeData.from_spike_times`.

    Ground truth (the network is given by :func:`ei_sleep_truth`; it is not an Ising model):

    * I–I correlations are higher in ``deep`` than in ``wake`` (mean I–I Pearson correlation
      of the binned spins ≈ 0.0 in wake, ≈ 0.3 in deep);
    * a few E neurons (``truth.sparse``) fire in fewer than 5% of bins;
    * an E-only pairwise (Ising) model over-predicts large E synchrony P(K_E ≥ k) — by a
      factor ≈ 2 over all bins and ≈ 5 in deep sleep at the observed 1% tail — because the E
      neurons share non-pairwise inputs (the up/down drive and I-mediated feedback
      inhibition) that the I neurons partly reveal; see
      :func:`~bayes_ising.synthetic.ei_network` for the statistics and what is not isolated.

    The returned arrays are read-only (the object is cached and shared).
    """
    return _ei_sleep()[0]


def ei_sleep_truth():
    """The :class:`~bayes_ising.synthetic.NetworkTruth` behind :func:`ei_sleep` (W, biases,
    drive gains, cell types, the sparse neurons, dt) — read-only arrays."""
    return _ei_sleep()[1]


def _describe():  # pragma: no cover - a convenience for the command line
    data = ei_sleep()
    print(data)
    print(np.round(data.firing_probability, 3))


if __name__ == "__main__":  # pragma: no cover
    _describe()
