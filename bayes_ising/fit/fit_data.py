r"""The data of one fit, validated once and reduced once: :class:`FitData`.

Every fitter (:mod:`bayes_ising.fit.bayes`, :mod:`bayes_ising.fit.mle`) and the model check
take the same spikes. They convert what they are given with :func:`as_fit_data` (a
:class:`FitData` comes back unchanged) and pass the :class:`FitData` down, so that along one
fit the spins are validated once and every reduction of them is computed once, on first use:

* ``spins`` — (num_bins, N) int8 ±1 (validated by :func:`bayes_ising.core.stats.check_spins`);
* ``moments`` — :func:`bayes_ising.core.stats.moments` (T, m, Q);
* ``patterns``, ``counts`` — :func:`bayes_ising.core.stats.unique_patterns`;
* ``firing_counts`` — bins in which each neuron fires;
* ``boundary`` — where the maximum-likelihood estimate does not exist (:class:`Boundary`:
  inactive neurons, pairs with an empty joint state);
* :meth:`FitData.standard_errors` — the batch-means standard errors of m and C
  (:func:`bayes_ising.core.stats.data_standard_errors`), per number of blocks.

A :class:`FitData` may also hold moments only (:meth:`FitData.from_moments`; ``spins`` None):
the exact fits need nothing else.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from bayes_ising.core import ising, stats
from bayes_ising.errors import DataError

__all__ = ["FitData", "Boundary", "as_fit_data"]

#: the four joint states of a pair, (a, b) = (s_i, s_j), in the order they are checked
_CELLS = ((1, 1, "++"), (1, -1, "+-"), (-1, 1, "-+"), (-1, -1, "--"))


class Boundary(NamedTuple):
    """Where the MLE does not exist: ``silent`` and ``always_on`` (neuron indices, m = ∓1)
    and ``pairs`` ((i, j, cell) among the other neurons, cell the empty joint state "++",
    "+-", "-+" or "--")."""

    silent: list
    always_on: list
    pairs: list

    @property
    def inactive(self):
        """Indices of the neurons that never or always fire, silent first."""
        return self.silent + self.always_on


@dataclass(frozen=True, eq=False)
class FitData:
    """The data of one fit: validated spins and their reductions, each computed once.

    Build it with :func:`as_fit_data` (from a SpikeData, a spins array, a Moments or a
    FitData) or :meth:`from_moments`; the reductions are cached properties (module
    docstring). Frozen: a FitData is never changed, only passed down.
    """

    spins: np.ndarray | None  # (num_bins, N) int8 ±1, None when built from moments only
    neuron_ids: np.ndarray  # (N,) str
    cell_types: np.ndarray | None = None  # (N,) str
    source: str = "array"
    given_moments: stats.Moments | None = field(default=None, repr=False)
    given_patterns: tuple | None = field(default=None, repr=False)
    _standard_errors: dict = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_moments(cls, moments, neuron_ids=None):
        """A FitData of moments only (``num_bins``, ``m`` (N,), ``Q`` (N, N)); no spins."""
        given = stats.Moments(int(moments.num_bins), np.asarray(moments.m, np.float64),
                              np.asarray(moments.Q, np.float64))
        return cls(None, _ids(neuron_ids, given.m.shape[0]), given_moments=given,
                   source="moments")

    @classmethod
    def from_patterns(cls, patterns, counts):
        """A FitData of unique patterns (U, N) ±1 with counts (U,): spins are the patterns
        repeated; the patterns keep the given order."""
        patterns = np.asarray(patterns, np.int8)
        counts = np.asarray(counts, np.int64)
        spins = stats.check_spins(np.repeat(patterns, counts, axis=0), min_neurons=2)
        return cls(spins, _ids(None, spins.shape[1]), given_patterns=(patterns, counts))

    @property
    def num_bins(self):
        return int(self.moments.num_bins)

    @property
    def num_neurons(self):
        return int(self.neuron_ids.shape[0])

    @functools.cached_property
    def moments(self):
        """:class:`bayes_ising.core.stats.Moments` (T, m (N,), Q (N, N))."""
        return self.given_moments if self.spins is None else stats.moments(self.spins)

    @property
    def m(self):
        return self.moments.m

    @property
    def Q(self):
        return self.moments.Q

    @functools.cached_property
    def unique_patterns(self):
        """(patterns (U, N) int8, counts (U,) int64) of :func:`stats.unique_patterns`."""
        if self.given_patterns is not None:
            return self.given_patterns
        return stats.unique_patterns(self._need_spins("the unique patterns"))

    @property
    def patterns(self):
        return self.unique_patterns[0]

    @property
    def counts(self):
        return self.unique_patterns[1]

    @functools.cached_property
    def firing_counts(self):
        """(N,) int64: the number of bins in which each neuron fires (s = +1)."""
        return (self._need_spins("firing counts") > 0).sum(axis=0)

    @functools.cached_property
    def boundary(self):
        """:class:`Boundary` from the moments: a neuron with :math:`m_i = \\pm 1` is inactive;
        among the others, a pair whose 2×2 table of joint states has an empty cell is a
        boundary pair (a joint frequency below half a count is zero: moments of binary data
        are multiples of 1/T)."""
        floor = 0.5 / self.num_bins
        p_active = stats.probability_from_mean(self.m)
        silent = [int(k) for k in np.flatnonzero(p_active < floor)]
        always_on = [int(k) for k in np.flatnonzero(p_active > 1.0 - floor)]
        inactive = set(silent) | set(always_on)
        cells = [(stats.pair_probability(self.m, self.Q, a, b), cell) for a, b, cell in _CELLS]
        pairs = []
        for i, j in zip(*ising.pair_indices(self.num_neurons), strict=True):
            if i in inactive or j in inactive:
                continue
            pairs += [(int(i), int(j), cell) for p_cell, cell in cells if p_cell[i, j] < floor]
        return Boundary(silent, always_on, pairs)

    @property
    def active(self):
        """(N,) bool: the neurons that are not inactive (:attr:`boundary`)."""
        active = np.ones(self.num_neurons, bool)
        active[self.boundary.inactive] = False
        return active

    def standard_errors(self, num_blocks=50):
        """:func:`bayes_ising.core.stats.data_standard_errors` of the spins with
        ``num_blocks`` blocks (computed once per number of blocks)."""
        key = int(num_blocks)
        if key not in self._standard_errors:
            self._standard_errors[key] = stats.data_standard_errors(
                self._need_spins("the data's standard errors"), key)
        return self._standard_errors[key]

    def with_neuron_ids(self, neuron_ids):
        """The same data under other neuron ids (the reductions computed so far are kept)."""
        ids = _ids(neuron_ids, self.num_neurons)
        if np.array_equal(ids, self.neuron_ids):
            return self
        other = FitData(self.spins, ids, self.cell_types, self.source, self.given_moments,
                        self.given_patterns, self._standard_errors)
        for name in ("moments", "unique_patterns", "firing_counts", "boundary"):
            if name in self.__dict__:
                other.__dict__[name] = self.__dict__[name]
        return other

    def _need_spins(self, what):
        if self.spins is None:
            raise DataError(f"{what} need the spins, not only their moments")
        return self.spins


def _ids(neuron_ids, num_neurons):
    """Neuron ids as a (N,) str array; ``"0" … "N−1"`` when None."""
    if neuron_ids is None:
        return np.array([str(i) for i in range(num_neurons)])
    ids = np.asarray([str(n) for n in neuron_ids])
    if ids.shape != (num_neurons,):
        raise DataError(f"{ids.shape[0]} neuron ids for {num_neurons} neurons")
    return ids


def as_fit_data(data, neuron_ids=None, *, min_neurons=1):
    """The :class:`FitData` of ``data``: a FitData (returned unchanged, or under
    ``neuron_ids``), a :class:`~bayes_ising.data.SpikeData` (or anything with ``spins`` and,
    optionally, ``neuron_ids``, ``cell_types``, ``source``), a (num_bins, N) ±1 array, or a
    Moments (``num_bins``, ``m``, ``Q``; no spins). ``neuron_ids`` overrides the data's.

    Raises
    ------
    DataError : invalid spins (:func:`bayes_ising.core.stats.check_spins`), fewer than
        ``min_neurons`` neurons, or neuron ids of the wrong length.
    """
    if isinstance(data, FitData):
        if data.num_neurons < min_neurons:
            shape = (data.num_bins, data.num_neurons)
            raise DataError(f"spins must have at least {min_neurons} neuron(s), got shape "
                            f"{shape}")
        return data if neuron_ids is None else data.with_neuron_ids(neuron_ids)
    if not hasattr(data, "spins") and all(hasattr(data, k) for k in ("m", "Q", "num_bins")):
        return FitData.from_moments(data, neuron_ids)
    spins = stats.check_spins(getattr(data, "spins", data), min_neurons=min_neurons)
    if neuron_ids is None:
        neuron_ids = getattr(data, "neuron_ids", None)
    types = getattr(data, "cell_types", None)
    return FitData(spins, _ids(neuron_ids, spins.shape[1]),
                   None if types is None else np.asarray([str(t) for t in list(types)]),
                   str(getattr(data, "source", "array")))
