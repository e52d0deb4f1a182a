"""Embedded datasets: generated deterministically in-process (nothing is downloaded or stored).

:func:`ei_sleep` is the package's default dataset (the demo, the README's quick start and many
tests use it); :func:`ei_sleep_control` is the same generator with its E/I mechanism switched
off; :func:`ei_sleep_kinetic` is the previous default (a kinetic network whose E-only and E+I
models fail alike), kept for the tests that need a dataset a pairwise model fits poorly.
"""

from __future__ import annotations

import functools

import jax
import numpy as np

from bayes_ising.data.synthetic import DEFAULT_STATE_DRIVES, ei_network, pooling_network

__all__ = ["EI_SLEEP_SEED", "EI_SLEEP_SETTINGS", "EI_SLEEP_CONTROL_SETTINGS",
           "EI_KINETIC_SETTINGS", "ei_sleep", "ei_sleep_truth", "ei_sleep_control",
           "ei_sleep_control_truth", "ei_sleep_kinetic", "ei_sleep_kinetic_truth"]

#: PRNG seed of :func:`ei_sleep` and :func:`ei_sleep_control` (``jax.random.key(seed)``).
EI_SLEEP_SEED = 20190601

#: The arguments of :func:`bayes_ising.data.synthetic.pooling_network` that make :func:`ei_sleep`.
EI_SLEEP_SETTINGS = {
    "num_excitatory": 32,
    "num_inhibitory": 8,
    "duration": 3000.0,  # s: 60,000 bins of 50 ms
    "bin_size": 0.05,
    "epoch_duration": 100.0,  # 30 epochs cycling wake, light, deep: 20,000 bins per state
    "state_order": ("wake", "light", "deep"),
}

#: :func:`ei_sleep_control`: the same, with the pooling mechanism switched off.
EI_SLEEP_CONTROL_SETTINGS = {**EI_SLEEP_SETTINGS, "pooling": 0.0}

#: The arguments of :func:`bayes_ising.data.synthetic.ei_network` behind :func:`ei_sleep_kinetic`.
EI_KINETIC_SETTINGS = {
    "num_excitatory": 32,
    "num_inhibitory": 8,
    "duration": 3000.0,
    "bin_size": 0.05,
    "steps_per_bin": 5,
    "epoch_duration": 100.0,
    "state_order": ("wake", "light", "deep"),
}


def _frozen(data, truth):
    for array in (data.spins, data.neuron_ids, data.cell_types, data.states):
        array.setflags(write=False)  # one cached copy is shared: keep it immutable
    for array in truth:
        if isinstance(array, np.ndarray):
            array.setflags(write=False)
    return data, truth


@functools.cache
def _pooling(control):
    settings = EI_SLEEP_CONTROL_SETTINGS if control else EI_SLEEP_SETTINGS
    return _frozen(*pooling_network(jax.random.key(EI_SLEEP_SEED), return_truth=True,
                                    **settings))


@functools.cache
def _kinetic():
    return _frozen(*ei_network(jax.random.key(EI_SLEEP_SEED), return_truth=True,
                               drives=DEFAULT_STATE_DRIVES, **EI_KINETIC_SETTINGS))


def ei_sleep():
    """The embedded synthetic E/I sleep dataset (deterministic; seconds on first call, cached).

    40 neurons (32 E ``E00``–``E31``, 8 I ``I00``–``I07``; cell types ``"E"``/``"I"``),
    50 ms bins, 3000 s cut into 30 epochs of 100 s cycling ``wake`` → ``light`` → ``deep``:
    60,000 bins, 20,000 per state. Made by :func:`bayes_ising.data.synthetic.pooling_network` with
    :data:`EI_SLEEP_SETTINGS` and the key ``jax.random.key(EI_SLEEP_SEED)``: symmetric E/I
    weights run by heat-bath dynamics, in which each I neuron pools about half the E neurons
    (the mechanism behind the E/I synchrony result), the I–I weights grow from wake to deep
    sleep and a modest slow up/down drive appears in sleep; spike times are binned by
    :meth:`~bayes_ising.data.SpikeData.from_spike_times`. The generator's docstring says which
    mechanism makes which phenomenon; ``tests/test_synthetic.py`` measures them.

    The returned arrays are read-only (the object is cached and shared).
    """
    return _pooling(False)[0]


def ei_sleep_truth():
    """The :class:`~bayes_ising.data.synthetic.PoolingTruth` behind :func:`ei_sleep` (weights,
    biases, cell types, the pools, the sparse neurons) — read-only arrays."""
    return _pooling(False)[1]


def ei_sleep_control():
    """:func:`ei_sleep` with the mechanism switched off (``pooling = 0``: E and I neurons
    uncoupled), same size, states and seed: E-only and E+I models agree on E synchrony."""
    return _pooling(True)[0]


def ei_sleep_control_truth():
    """The :class:`~bayes_ising.data.synthetic.PoolingTruth` behind :func:`ei_sleep_control`."""
    return _pooling(True)[1]


def ei_sleep_kinetic():
    """The previous default dataset (:func:`bayes_ising.data.synthetic.ei_network`, settings
    :data:`EI_KINETIC_SETTINGS`): a kinetic Dale's-law network with a strong up/down drive, on
    which pairwise models of E alone and of E+I over-predict E synchrony alike."""
    return _kinetic()[0]


def ei_sleep_kinetic_truth():
    """The :class:`~bayes_ising.data.synthetic.NetworkTruth` behind :func:`ei_sleep_kinetic`."""
    return _kinetic()[1]


def _describe():  # pragma: no cover - a convenience for the command line
    data = ei_sleep()
    print(data)
    print(np.round(data.firing_probability, 3))


if __name__ == "__main__":  # pragma: no cover
    _describe()
