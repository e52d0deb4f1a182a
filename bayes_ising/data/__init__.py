"""Spike data: binning, labels, state epochs, loaders and validation.

The one object here is :class:`SpikeData`, a binarised raster of spins

.. math::  s_i(t) = +1 \\text{ if neuron } i \\text{ fired at least once in bin } t,
           \\text{ else } -1,

stored as ``spins`` of shape ``(num_bins, num_neurons)``, int8 in {−1, +1}, with neuron ids,
optional cell types (any labels, "E"/"I" the common case) and optional per-bin states.

Conventions (see ``docs/data_format.md`` for the full, stable description):

* **Bins** are half-open, ``[t_start + k Δ, t_start + (k + 1) Δ)``: a spike exactly on a
  boundary belongs to the *later* bin. Positions within 1e-9 bin widths of a boundary count as on
  it (so 0.3 s with 0.1 s bins is in bin 3, despite floating point). A last, partial bin is
  dropped.
* **Units**: ``bin_size`` is in ``time_units`` ("s", "ms" or "us"), the units of the spike times.
* **States**: each bin takes the state of the epoch that contains it; bins crossing an epoch
  boundary, and bins outside every epoch, are dropped (with a warning giving the counts).
* **Unsorted spike times** are sorted, with a :class:`DataWarning` naming the neuron; NaN/inf
  and negative times are refused (:class:`~bayes_ising.errors.DataError`).
* **Neurons that never or always fire** are kept, listed in :attr:`SpikeData.inactive_neurons`
  and reported with a :class:`DataWarning`.
* Loading never executes data: every NumPy load uses ``allow_pickle=False``.
"""

from __future__ import annotations

import dataclasses
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np

from bayes_ising.errors import DataError

__all__ = [
    "SpikeData",
    "Epochs",
    "DataWarning",
    "to_spins",
    "load",
    "TIME_UNITS",
]

#: seconds per unit
TIME_UNITS = {"s": 1.0, "ms": 1e-3, "us": 1e-6}
ORIENTATIONS = ("bins-by-neurons", "neurons-by-bins")
# positions this close to a bin boundary (in bin widths) count as on it
_BOUNDARY_TOLERANCE = 1e-9


class DataWarning(UserWarning):
    """Unusual but usable data (inactive neurons, sorted times, dropped bins)."""


# --------------------------------------------------------------------------------------------
# spins


def to_spins(raster):
    """Convert a binary raster to spins: the one 0/1 → ±1 conversion.

    Parameters
    ----------
    raster : array_like, shape (num_bins, N)
        Values in {0, 1} (or bool) or in {−1, +1}. A raster containing only 1 is read as all
        spikes either way.

    Returns
    -------
    np.ndarray, shape (num_bins, N), int8 in {−1, +1}; s = 2x − 1 for 0/1 input.

    Raises
    ------
    DataError
        NaN/inf or a value outside {0, 1} and {−1, +1}; the message names the value and its
        position (row, column) in the array as given.
    """
    arr = np.asarray(raster)
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
        raise DataError(f"raster must be numeric, got dtype {arr.dtype}")
    if arr.ndim != 2:
        raise DataError(f"raster must be 2-D (bins x neurons), got shape {arr.shape}")
    if arr.dtype == bool:
        return np.where(arr, 1, -1).astype(np.int8)
    if np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.complexfloating):
        bad = ~np.isfinite(arr)
        if bad.any():
            r, c = np.argwhere(bad)[0]
            raise DataError(f"raster value {arr[r, c]} at row {r}, column {c} is not finite")
    has_zero = bool((arr == 0).any())
    allowed = (0, 1) if has_zero else (-1, 1)
    bad = (arr != allowed[0]) & (arr != allowed[1])
    if bad.any():
        r, c = np.argwhere(bad)[0]
        value = arr[r, c].item()
        other = " (the raster also contains 0)" if has_zero and value == -1 else ""
        raise DataError(
            f"raster value {value} at row {r}, column {c} is not binary: "
            f"values must be in {{0, 1}} or in {{-1, +1}}{other}"
        )
    if has_zero:
        return np.where(arr == 1, 1, -1).astype(np.int8)
    return arr.astype(np.int8)


# --------------------------------------------------------------------------------------------
# epochs


class Epochs(NamedTuple):
    """Named time intervals ``[start, stop)`` (one row per interval; a name may repeat)."""

    names: np.ndarray  # (E,) str
    starts: np.ndarray  # (E,) float64
    stops: np.ndarray  # (E,) float64

    @classmethod
    def coerce(cls, epochs):
        """Accept ``Epochs``, ``(names, starts, stops)`` or ``{name: [(start, stop), ...]}``;
        validate (finite, start < stop, no overlap) and return them sorted by start."""
        if isinstance(epochs, dict):
            names, starts, stops = [], [], []
            for name, intervals in epochs.items():
                intervals = np.asarray(intervals, dtype=float).reshape(-1, 2) if len(
                    intervals) else np.empty((0, 2))
                for start, stop in intervals:
                    names.append(str(name))
                    starts.append(start)
                    stops.append(stop)
        else:
            names, starts, stops = epochs
        names = np.asarray(names).astype(str).reshape(-1)
        try:
            starts = np.asarray(starts, dtype=float).reshape(-1)
            stops = np.asarray(stops, dtype=float).reshape(-1)
        except (TypeError, ValueError) as err:
            raise DataError(f"epoch starts/stops must be numbers: {err}") from None
        if not (len(names) == len(starts) == len(stops)):
            raise DataError(
                f"epochs: {len(names)} names, {len(starts)} starts and {len(stops)} stops "
                "(the lengths must match)"
            )
        for k in range(len(names)):
            if not (np.isfinite(starts[k]) and np.isfinite(stops[k])):
                raise DataError(
                    f"epoch '{names[k]}' [{starts[k]}, {stops[k]}) has a non-finite bound"
                )
            if not starts[k] < stops[k]:
                raise DataError(
                    f"epoch '{names[k]}' [{starts[k]}, {stops[k]}) has start >= stop"
                )
        order = np.argsort(starts, kind="stable")
        names, starts, stops = names[order], starts[order], stops[order]
        for k in range(1, len(names)):
            # the previous epoch with the latest stop is the one that can overlap
            prev = int(np.argmax(stops[:k]))
            if starts[k] < stops[prev]:
                raise DataError(
                    f"epochs '{names[prev]}' [{starts[prev]:g}, {stops[prev]:g}) and "
                    f"'{names[k]}' [{starts[k]:g}, {stops[k]:g}) overlap"
                )
        return cls(names, starts, stops)


def _bin_states(epochs, bin_starts, bin_size):
    """State of each bin ``[b, b + bin_size)``; '' for bins not inside one epoch."""
    tol = _BOUNDARY_TOLERANCE * bin_size
    bin_stops = bin_starts + bin_size
    # epochs are sorted and disjoint: the candidate is the last epoch starting at/before the bin
    k = np.searchsorted(epochs.starts, bin_starts + tol, side="right") - 1
    inside = k >= 0
    kk = np.clip(k, 0, None)
    inside &= bin_stops <= epochs.stops[kk] + tol
    states = np.where(inside, epochs.names[kk] if len(epochs.names) else "", "")
    return states.astype(str)


# --------------------------------------------------------------------------------------------
# SpikeData


def _as_str_array(values, name, length, what):
    if values is None:
        return None
    arr = np.asarray(values)
    if arr.ndim != 1:
        arr = arr.reshape(-1)
    if len(arr) != length:
        raise DataError(f"{name} has {len(arr)} entries but the data have {length} {what}")
    if not len(arr):
        return arr.astype(str)
    if arr.dtype.kind == "U":
        return arr
    # convert each distinct label once (state labels repeat over tens of thousands of bins)
    distinct, inverse = np.unique(arr.astype(object) if arr.dtype.kind == "O" else arr,
                                  return_inverse=True)
    return np.array([_label(v) for v in distinct], dtype=str)[inverse.reshape(-1)]


def _label(v):
    """A label as text: bytes decoded, integral floats without '.0'."""
    if isinstance(v, bytes | np.bytes_):
        return v.decode()
    if isinstance(v, float | np.floating) and float(v).is_integer():
        return str(int(v))
    return str(v)


@dataclass(frozen=True, eq=False)
class SpikeData:
    """A binarised spike raster with labels.

    Attributes
    ----------
    spins : np.ndarray, shape (num_bins, N), int8 in {−1, +1}
    neuron_ids : np.ndarray, shape (N,), str
    cell_types : np.ndarray, shape (N,), str, or None
    states : np.ndarray, shape (num_bins,), str, or None — the state of each bin
    bin_size : float or None, in ``time_units``
    time_units : str or None ("s", "ms", "us")
    source : str — where the data came from (file name or constructor)
    selection : dict — the selection applied by :meth:`select` (empty when none)
    """

    spins: np.ndarray
    neuron_ids: np.ndarray
    cell_types: np.ndarray | None = None
    states: np.ndarray | None = None
    bin_size: float | None = None
    time_units: str | None = None
    source: str = ""
    selection: dict = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        spins = np.asarray(self.spins)
        if spins.ndim != 2:
            raise DataError(f"spins must be 2-D (bins x neurons), got shape {spins.shape}")
        if spins.dtype != np.int8 or not np.isin(spins, (-1, 1)).all():
            spins = to_spins(spins)
        num_bins, n = spins.shape
        object.__setattr__(self, "spins", spins)
        ids = _as_str_array(self.neuron_ids, "neuron_ids", n, "neurons")
        if ids is None:
            ids = np.arange(n).astype(str)
        if len(set(ids.tolist())) != len(ids):
            dup = [i for i in ids.tolist() if ids.tolist().count(i) > 1][0]
            raise DataError(f"neuron_ids are not unique: '{dup}' appears more than once")
        object.__setattr__(self, "neuron_ids", ids)
        object.__setattr__(
            self, "cell_types", _as_str_array(self.cell_types, "cell_types", n, "neurons"))
        object.__setattr__(self, "states", _as_str_array(self.states, "states", num_bins, "bins"))
        if self.time_units is not None and self.time_units not in TIME_UNITS:
            raise DataError(
                f"unknown time_units '{self.time_units}' (expected one of {', '.join(TIME_UNITS)})")
        if self.bin_size is not None:
            bs = float(self.bin_size)
            if not (np.isfinite(bs) and bs > 0):
                raise DataError(f"bin_size must be a positive number, got {self.bin_size}")
            object.__setattr__(self, "bin_size", bs)

    # ---- properties
    @property
    def num_bins(self) -> int:
        return int(self.spins.shape[0])

    @property
    def num_neurons(self) -> int:
        return int(self.spins.shape[1])

    @property
    def firing_probability(self) -> np.ndarray:
        """(N,) fraction of bins with a spike, p_i = (1 + m_i) / 2 (0 for zero bins)."""
        if self.num_bins == 0:
            return np.zeros(self.num_neurons)
        return (self.spins == 1).mean(axis=0)

    @property
    def inactive_neurons(self) -> np.ndarray:
        """(k,) str ids of neurons that never fire (p = 0) or always fire (p = 1)."""
        p = self.firing_probability
        return self.neuron_ids[(p == 0) | (p == 1)]

    def _warn_inactive(self, stacklevel=3):
        p = self.firing_probability
        never = self.neuron_ids[p == 0].tolist()
        always = self.neuron_ids[p == 1].tolist()
        parts = []
        if never:
            parts.append(f"never fire: {_short_list(never)}")
        if always:
            parts.append(f"fire in every bin: {_short_list(always)}")
        if parts and self.num_bins:
            warnings.warn(
                f"neurons that {'; '.join(parts)} (kept, listed in inactive_neurons)",
                DataWarning, stacklevel=stacklevel)
        return self

    # ---- construction
    @classmethod
    def from_raster(cls, raster, *, neuron_ids=None, cell_types=None, states=None,
                    bin_size=None, time_units=None, orientation=None, source="raster"):
        """Build from a binned raster with values in {0, 1} or {−1, +1}.

        Parameters
        ----------
        raster : array_like, 2-D
        orientation : {"bins-by-neurons", "neurons-by-bins", None}
            ``None`` infers it: the longer axis is bins (a square raster is taken as
            bins × neurons).
        neuron_ids, cell_types : (N,) labels; states : (num_bins,) labels.

        Raises
        ------
        DataError
            non-binary values (named with their row/column in the array as given), mismatched
            label lengths, an unknown orientation.
        """
        spins = to_spins(raster)
        spins = spins.T if _is_transposed(spins.shape, orientation) else spins
        data = cls(spins=spins, neuron_ids=neuron_ids, cell_types=cell_types, states=states,
                   bin_size=bin_size, time_units=time_units, source=source)
        return data._warn_inactive()

    @classmethod
    def from_spike_times(cls, spike_times, spike_neurons=None, *, bin_size, time_units="s",
                         t_start=None, t_stop=None, neuron_ids=None, cell_types=None,
                         epochs=None, source="spike times"):
        """Bin spike times: s_i(t) = +1 if neuron i fired at least once in bin t.

        Parameters
        ----------
        spike_times : list of (n_i,) arrays (one per neuron), or (S,) array with ``spike_neurons``
        spike_neurons : (S,) array, optional
            The neuron of each spike (ids). Neurons are ``neuron_ids`` when given (neurons
            without spikes included), else the sorted unique values.
        bin_size : float, in ``time_units``
        time_units : "s", "ms" or "us" — units of the times, ``bin_size``, ``t_start``, epochs
        t_start : float, default 0 — start of bin 0
        t_stop : float, optional — end of the binned range (a partial last bin is dropped);
            default: the end of the bin holding the last spike or epoch stop.
        epochs : Epochs, (names, starts, stops) or {name: [(start, stop), ...]}, optional
            Each bin gets the state of the epoch containing it; bins crossing an epoch boundary
            or outside every epoch are dropped.

        Notes
        -----
        Bin k is ``[t_start + k·bin_size, t_start + (k+1)·bin_size)``: a spike exactly on a
        boundary falls in the later bin. Spikes outside the binned range are ignored.
        Unsorted times are sorted (DataWarning naming the neuron).
        """
        if time_units not in TIME_UNITS:
            raise DataError(
                f"unknown time_units '{time_units}' (expected one of {', '.join(TIME_UNITS)})")
        try:
            bin_size = float(bin_size)
        except (TypeError, ValueError):
            raise DataError(f"bin_size must be a positive number, got {bin_size!r}") from None
        if not (np.isfinite(bin_size) and bin_size > 0):
            raise DataError(f"bin_size must be a positive number, got {bin_size}")
        ids, trains = _split_trains(spike_times, spike_neurons, neuron_ids)
        n = len(ids)
        if cell_types is not None:
            cell_types = _as_str_array(cell_types, "cell_types", n, "neurons")
        for i, (name, t) in enumerate(zip(ids, trains, strict=True)):
            trains[i] = _check_train(t, name)
        ep = Epochs.coerce(epochs) if epochs is not None else None

        t0 = 0.0 if t_start is None else float(t_start)
        if t_stop is None:
            # up to the bin holding the last spike, and to the last epoch stop
            spike_last = max((t[-1] for t in trains if len(t)), default=None)
            num_bins = 0 if spike_last is None else int(
                np.floor(_round_pos((spike_last - t0) / bin_size))) + 1
            if ep is not None and len(ep.names):
                end = int(np.ceil(_round_pos((float(ep.stops.max()) - t0) / bin_size)))
                num_bins = max(num_bins, end)
        else:
            t_stop = float(t_stop)
            if not t_stop > t0:
                raise DataError(f"t_stop ({t_stop}) must be greater than t_start ({t0})")
            num_bins = int(np.floor(_round_pos((t_stop - t0) / bin_size)))
        num_bins = max(num_bins, 0)
        _check_bin_count(num_bins, n, bin_size, time_units, trains)

        raster = np.zeros((num_bins, n), dtype=bool)
        for i, t in enumerate(trains):
            k = np.floor(_round_pos((t - t0) / bin_size)).astype(np.int64)
            k = k[(k >= 0) & (k < num_bins)]
            raster[k, i] = True

        states = None
        if ep is not None:
            bin_starts = t0 + bin_size * np.arange(num_bins)
            states = _bin_states(ep, bin_starts, bin_size)
            keep = states != ""
            dropped = int((~keep).sum())
            if dropped:
                crossing = _count_crossing(ep, bin_starts, bin_size)
                warnings.warn(
                    f"dropped {dropped} of {num_bins} bins not inside one epoch "
                    f"({crossing} cross an epoch boundary, {dropped - crossing} lie outside "
                    "every epoch)", DataWarning, stacklevel=2)
            raster, states = raster[keep], states[keep]
        if raster.shape[0] == 0:
            raise DataError("binning gives zero bins (check bin_size, t_start/t_stop, epochs)")
        data = cls(spins=np.where(raster, 1, -1).astype(np.int8), neuron_ids=ids,
                   cell_types=cell_types, states=states, bin_size=bin_size,
                   time_units=time_units, source=source)
        return data._warn_inactive()

    # ---- selection
    def select(self, population=None, state=None, min_rate=None) -> SpikeData:
        """Keep bins of ``state`` and neurons of cell type(s) ``population`` firing in at least
        ``min_rate`` of the kept bins (in this order).

        Parameters
        ----------
        population : str or list of str — cell types ("E", "I", "E+I" or ["E", "I"]; "E,I"
            is accepted too)
        state : str or list of str — states to keep
        min_rate : float in [0, 1] — minimum firing probability (after the state selection)

        Raises
        ------
        DataError
            the data lack cell types/states, a requested type/state is absent, or the selection
            leaves zero bins or zero neurons (the message names the selection).
        """
        if population is None and state is None and min_rate is None:
            return self
        sel = dict(self.selection)
        keep_bins = np.ones(self.num_bins, dtype=bool)
        keep_neurons = np.ones(self.num_neurons, dtype=bool)
        if state is not None:
            wanted = _as_list(state)
            sel["state"] = ",".join(wanted)
            if self.states is None:
                raise DataError(f"state='{sel['state']}' asked for, but the data have no states")
            missing = [s for s in wanted if s not in set(self.states.tolist())]
            if missing:
                present = ", ".join(sorted(set(self.states.tolist()))) or "none"
                raise DataError(
                    f"selection state='{sel['state']}' leaves zero bins: no bins of state "
                    f"{', '.join(repr(m) for m in missing)} (states present: {present})")
            keep_bins = np.isin(self.states, wanted)
        if population is not None:
            wanted = _as_list(population, plus=True)
            sel["population"] = "+".join(wanted)
            if self.cell_types is None:
                raise DataError(
                    f"population='{sel['population']}' asked for, but the data have no cell "
                    "types")
            missing = [c for c in wanted if c not in set(self.cell_types.tolist())]
            if missing:
                present = ", ".join(sorted(set(self.cell_types.tolist())))
                raise DataError(
                    f"selection population='{sel['population']}' leaves zero neurons: no "
                    f"neurons of cell type {', '.join(repr(m) for m in missing)} "
                    f"(cell types present: {present})")
            keep_neurons &= np.isin(self.cell_types, wanted)
        if min_rate is not None:
            min_rate = float(min_rate)
            if not (0.0 <= min_rate <= 1.0):
                raise DataError(f"min_rate must be in [0, 1], got {min_rate}")
            sel["min_rate"] = min_rate
            p = (self.spins[keep_bins] == 1).mean(axis=0) if keep_bins.any() else None
            if p is not None:
                keep_neurons &= p >= min_rate
        desc = ", ".join(f"{k}={v!r}" if isinstance(v, str) else f"{k}={v}"
                         for k, v in sel.items())
        if not keep_bins.any():
            raise DataError(f"selection {desc} leaves zero bins")
        if not keep_neurons.any():
            raise DataError(f"selection {desc} leaves zero neurons")
        data = dataclasses.replace(
            self,
            spins=self.spins[np.ix_(keep_bins, keep_neurons)],
            neuron_ids=self.neuron_ids[keep_neurons],
            cell_types=None if self.cell_types is None else self.cell_types[keep_neurons],
            states=None if self.states is None else self.states[keep_bins],
            selection=sel,
        )
        return data._warn_inactive()

    # ---- output
    def summary(self) -> dict:
        """JSON-able summary: sizes, labels, firing probabilities, correlations, P(K), entropy.

        See ``docs/data_format.md`` for the keys.
        """
        from bayes_ising.core import stats

        return stats.summarize(self)

    def to_npz(self, path, force=False):
        """Save in the documented ``.npz`` raster layout (atomic; ``force`` to overwrite)."""
        from bayes_ising._io import atomic_path

        arrays = {"raster": self.spins, "neuron_ids": self.neuron_ids}
        if self.cell_types is not None:
            arrays["cell_types"] = self.cell_types
        if self.states is not None:
            arrays["states"] = self.states
        if self.bin_size is not None:
            arrays["bin_size"] = np.float64(self.bin_size)
        if self.time_units is not None:
            arrays["time_units"] = np.str_(self.time_units)
        path = Path(path)
        with atomic_path(path, force) as tmp:
            with open(tmp, "wb") as f:
                np.savez_compressed(f, **arrays)
        return path

    def __repr__(self):
        extra = []
        if self.cell_types is not None:
            types, counts = np.unique(self.cell_types, return_counts=True)
            extra.append("cell_types=" + ",".join(f"{t}:{c}" for t, c in zip(types, counts,
                                                                                strict=True)))
        if self.states is not None:
            extra.append("states=" + ",".join(np.unique(self.states).tolist()))
        if self.bin_size is not None:
            extra.append(f"bin_size={self.bin_size:g} {self.time_units or ''}".rstrip())
        return (f"SpikeData(num_bins={self.num_bins}, num_neurons={self.num_neurons}"
                + "".join(", " + e for e in extra) + f", source={self.source!r})")


# --------------------------------------------------------------------------------------------
# helpers for binning

#: Most raster entries (bins × neurons) binning may allocate: ~3 bytes each while binning (bool
#: raster, int8 spins, a temporary), so 1e9 entries is ~3 GB.
MAX_RASTER_ENTRIES = 1_000_000_000
#: A raster this long (bins) whose median neuron fires in fewer than :data:`MIN_SPIKES_PER_BIN`
#: of the bins is refused as implausible for spikes (the mark of a unit mix-up).
IMPLAUSIBLE_NUM_BINS = 10_000_000
MIN_SPIKES_PER_BIN = 1e-3
#: Bin widths (in seconds) outside this range are not spike bins (a spike lasts ~1 ms).
PLAUSIBLE_BIN_SECONDS = (1e-4, 3600.0)


def _check_bin_count(num_bins, num_neurons, bin_size, time_units, trains):
    """Refuse, before any allocation, a binning whose raster cannot fit in memory or is
    implausible for spikes; the message gives the bin count and the likely unit mix-up.

    Refused: ``num_bins × num_neurons > MAX_RASTER_ENTRIES``; a bin width outside
    ``PLAUSIBLE_BIN_SECONDS``; more than ``IMPLAUSIBLE_NUM_BINS`` bins with the median neuron
    spiking in fewer than ``MIN_SPIKES_PER_BIN`` of them (spikes counted as ``len`` of each
    train, so nothing is binned to decide).
    """
    seconds = bin_size * TIME_UNITS[time_units]
    span = f"{num_bins * bin_size:.4g} {time_units}"
    shape = f"{num_bins:,} bins × {num_neurons} neurons"
    counts = np.array([len(t) for t in trains]) if len(trains) else np.zeros(1)
    per_bin = float(np.median(counts)) / max(num_bins, 1)
    hint = _unit_hint(bin_size, time_units)
    if not PLAUSIBLE_BIN_SECONDS[0] <= seconds <= PLAUSIBLE_BIN_SECONDS[1]:
        lo, hi = PLAUSIBLE_BIN_SECONDS
        raise DataError(
            f"bin size {bin_size:g} {time_units} ({seconds:g} s) is implausible for spikes "
            f"(expected {lo * 1e3:g} ms to {hi:g} s; binning would make {shape}); {hint}")
    if num_bins * num_neurons > MAX_RASTER_ENTRIES:
        gib = 3 * num_bins * num_neurons / 2**30
        raise DataError(
            f"binning with bin size {bin_size:g} {time_units} would make {shape} (a {span} "
            f"recording, ~{gib:.0f} GiB; the limit is {MAX_RASTER_ENTRIES:,} entries); {hint}")
    if num_bins > IMPLAUSIBLE_NUM_BINS and per_bin < MIN_SPIKES_PER_BIN:
        raise DataError(
            f"binning with bin size {bin_size:g} {time_units} would make {shape} (a {span} "
            f"recording) in which the median neuron spikes in {100 * per_bin:.2g}% of bins: "
            f"implausible for spikes; {hint}")


def _unit_hint(bin_size, time_units):
    """The likely unit mix-up, in the CLI's and the API's words."""
    if time_units != "s" and bin_size * TIME_UNITS[time_units] < PLAUSIBLE_BIN_SECONDS[0]:
        return (f"--bin-size (bin_size) is in --time-units ({time_units}): for {bin_size:g} s "
                f"bins give --bin-size {bin_size / TIME_UNITS[time_units]:g}")
    if time_units == "s":
        return (f"are the spike times in ms? then pass --time-units ms (time_units='ms') and the "
                f"bin size in ms (e.g. --bin-size {bin_size * 1e3:g} for {bin_size:g} s bins)")
    return (f"are the spike times really in {time_units}? --time-units (time_units) gives the "
            "units of both the spike times and --bin-size")


def _round_pos(x):
    """Snap positions (in bin widths) within the boundary tolerance onto the integer."""
    x = np.asarray(x, dtype=float)
    r = np.round(x)
    return np.where(np.abs(x - r) <= _BOUNDARY_TOLERANCE, r, x)


def _count_crossing(ep, bin_starts, bin_size):
    """Number of bins that straddle an epoch start or stop."""
    tol = _BOUNDARY_TOLERANCE * bin_size
    bounds = np.concatenate([ep.starts, ep.stops])
    lo, hi = bin_starts[:, None], bin_starts[:, None] + bin_size
    return int(((bounds[None, :] > lo + tol) & (bounds[None, :] < hi - tol)).any(axis=1).sum())


def _short_list(items, limit=10):
    items = [f"'{i}'" for i in items]
    if len(items) > limit:
        return ", ".join(items[:limit]) + f", ... ({len(items)} in all)"
    return ", ".join(items)


def _as_list(value, plus=False):
    """Labels from a list or a comma-separated string; with ``plus`` also joined by "+" (cell
    types: "E+I", the package's spelling of populations)."""
    if isinstance(value, str):
        text = value.replace("+", ",") if plus else value
        return [v.strip() for v in text.split(",") if v.strip()]
    return [str(v) for v in value]


def _is_transposed(shape, orientation):
    if orientation is None:
        return shape[1] > shape[0]
    if orientation not in ORIENTATIONS:
        raise DataError(
            f"unknown orientation '{orientation}' (expected {' or '.join(ORIENTATIONS)})")
    return orientation == "neurons-by-bins"


def _split_trains(spike_times, spike_neurons, neuron_ids):
    """(ids (N,) str, list of N float arrays) from either input form."""
    if spike_neurons is None:
        if isinstance(spike_times, np.ndarray) and spike_times.dtype != object:
            if spike_times.ndim == 1:
                raise DataError(
                    "spike_times is one flat array: pass spike_neurons (the neuron of each "
                    "spike) or a list with one array per neuron")
            trains = list(spike_times)
        else:
            trains = list(spike_times)
        trains = [np.asarray(t).reshape(-1) for t in trains]
        ids = _as_str_array(neuron_ids, "neuron_ids", len(trains), "neurons (spike trains)")
        if ids is None:
            ids = np.arange(len(trains)).astype(str)
        return ids, trains
    times = np.asarray(spike_times).reshape(-1) if np.ndim(spike_times) else np.asarray(
        spike_times).reshape(-1)
    neurons = np.asarray(spike_neurons).reshape(-1)
    if len(times) != len(neurons):
        raise DataError(
            f"spike_times has {len(times)} entries but spike_neurons has {len(neurons)}")
    if neurons.dtype == object:
        neurons = np.array([_label(v) for v in neurons], dtype=str)
    # labels of the distinct values only (vectorised over spikes)
    uniq, inverse = np.unique(neurons, return_inverse=True)
    uniq_labels = [_label(v) for v in uniq]
    if neuron_ids is None:
        ids = np.array(uniq_labels, dtype=str)
        which = inverse.reshape(-1)
    else:
        ids = np.array([_label(v) for v in np.asarray(neuron_ids).reshape(-1)], dtype=str)
        index = {name: k for k, name in enumerate(ids.tolist())}
        unknown = [lab for lab in uniq_labels if lab not in index]
        if unknown:
            raise DataError(
                f"spike_neurons contains neuron {unknown[0]!r}, which is not in neuron_ids")
        which = np.array([index[lab] for lab in uniq_labels], dtype=np.int64)[inverse]
    order = np.argsort(which, kind="stable")
    bounds = np.cumsum(np.bincount(which, minlength=len(ids)))[:-1]
    trains = np.split(times[order], bounds)
    return ids, trains


def _check_train(t, name):
    t = np.asarray(t)
    if t.dtype == object or not np.issubdtype(t.dtype, np.number) or np.issubdtype(
            t.dtype, np.complexfloating):
        raise DataError(f"spike times of neuron '{name}' are not real numbers (dtype {t.dtype})")
    t = t.astype(float).reshape(-1)
    bad = ~np.isfinite(t)
    if bad.any():
        k = int(np.argmax(bad))
        raise DataError(f"spike time {t[k]} of neuron '{name}' at position {k} is not finite")
    neg = t < 0
    if neg.any():
        k = int(np.argmax(neg))
        raise DataError(f"spike time {t[k]:g} of neuron '{name}' at position {k} is negative")
    if len(t) > 1 and (np.diff(t) < 0).any():
        k = int(np.argmax(np.diff(t) < 0)) + 1
        warnings.warn(
            f"spike times of neuron '{name}' are not sorted (position {k}); sorted them",
            DataWarning, stacklevel=3)
        t = np.sort(t, kind="stable")
    return t


# --------------------------------------------------------------------------------------------
# loaders

_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


def _is_hdf5(path):
    """HDF5 signature at offset 0, 512, 1024, ... (MATLAB v7.3 has a 512-byte user block)."""
    with open(path, "rb") as f:
        offset = 0
        size = Path(path).stat().st_size
        while offset + 8 <= size:
            f.seek(offset)
            if f.read(8) == _HDF5_SIGNATURE:
                return True
            offset = 512 if offset == 0 else offset * 2
    return False


def load(path, *, bin_size=None, time_units=None, variable=None, orientation=None,
         epochs=None, states_table=None, state_column=None,
         cell_type_column=None) -> SpikeData:
    """Load spike data, dispatching on the file type.

    Parameters
    ----------
    path : str or Path
        ``.npz`` (documented layout, see ``docs/data_format.md``), ``.mat`` (MATLAB v5 through
        scipy, v7.3 = HDF5 through h5py, recognised by the HDF5 signature), ``.nwb`` (NWB Units
        table through pynwb: ``spike_times``, optional ``cell_type`` column, optional ``epochs``
        table whose first tag names the state) or ``.npy`` (a plain 2-D raster).
    bin_size : float, optional
        Bin width for spike times (required for spike-time files unless the ``.npz`` stores
        one); for rasters it only labels the bins.
    time_units : "s", "ms" or "us", optional
        Units of ``bin_size``. Spike times keep the file's units (NWB: seconds; ``.npz``: its
        ``time_units``, else s); ``bin_size`` is converted to them.
    variable : str, optional
        MATLAB variable (needed when the file holds several 2-D arrays).
    orientation : "bins-by-neurons" or "neurons-by-bins", optional
        Force a raster's orientation (default: the longer axis is bins).
    epochs : optional
        State epochs for spike-time files (overrides epochs stored in the file).
    states_table, state_column, cell_type_column : str, optional
        NWB only: the interval table holding the states (e.g. DANDI's ``sleep_states``), its
        column naming each interval's state (e.g. ``label``; default: a known name or the one
        text column, else the first tag) and the Units column holding cell types (default: a
        known name such as ``cell_type``/``cell_class``, or the one text column named
        ``*type*``/``*class*``). Each is found automatically when there is one candidate; the
        table and columns used are named in ``SpikeData.source``.

    Raises
    ------
    DataError
        unknown format, unreadable file, missing keys or variables, any invalid content.
    FileNotFoundError
        the file does not exist.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(2, "No such file", str(path))
    if time_units is not None and time_units not in TIME_UNITS:
        raise DataError(
            f"unknown time_units '{time_units}' (expected one of {', '.join(TIME_UNITS)})")
    suffix = path.suffix.lower()
    nwb_only = {"states_table": states_table, "state_column": state_column,
                "cell_type_column": cell_type_column}
    given = [k for k, v in nwb_only.items() if v is not None]
    if given and suffix != ".nwb":
        flags = ", ".join("--" + k.replace("_", "-") for k in given)
        raise DataError(f"{flags} applies to .nwb files only ({path.name} is not one)")
    kwargs = dict(bin_size=bin_size, time_units=time_units, orientation=orientation,
                  epochs=epochs)
    if suffix == ".npz":
        return _load_npz(path, **kwargs)
    if suffix == ".npy":
        return _load_npy(path, **kwargs)
    if suffix == ".mat":
        if _is_hdf5(path):
            return _load_mat73(path, variable=variable, **kwargs)
        return _load_mat5(path, variable=variable, **kwargs)
    if suffix == ".nwb":
        return _load_nwb(path, **kwargs, **nwb_only)
    raise DataError(
        f"unknown data format '{suffix or path.name}' of {path.name} "
        "(expected .npz, .mat, .nwb or .npy)")


def _bin_size_in(file_units, bin_size, time_units):
    """bin_size given in ``time_units`` expressed in ``file_units``."""
    if bin_size is None or time_units is None or file_units is None:
        return bin_size
    return float(bin_size) * TIME_UNITS[time_units] / TIME_UNITS[file_units]


def _raster_data(raster, path, *, bin_size, time_units, orientation, what, neuron_ids=None,
                 cell_types=None, states=None):
    arr = np.asarray(raster)
    if arr.ndim != 2:
        raise DataError(f"{what} in {path.name} is not a 2-D raster (shape {arr.shape})")
    try:
        spins = to_spins(arr)
    except DataError as err:
        raise DataError(f"{what} in {path.name}: {err}") from None
    return SpikeData.from_raster(
        spins, neuron_ids=neuron_ids, cell_types=cell_types, states=states,
        bin_size=bin_size, time_units=time_units if bin_size is not None else None,
        orientation=orientation, source=str(path))


NPZ_KEYS = ("raster", "spike_times", "spike_neurons", "bin_size", "time_units", "t_start",
            "t_stop", "neuron_ids", "cell_types", "states", "state_names", "state_starts",
            "state_stops")


def _load_npz(path, *, bin_size, time_units, orientation, epochs):
    """SpikeData from the .npz layout of :data:`NPZ_KEYS` (a raster or spike times), with the
    file's bin size, time units and state epochs unless the arguments override them."""
    values = _npz_values(path)
    file_bin = _npz_scalar(values, "bin_size", float, path)
    file_units = _npz_scalar(values, "time_units", str, path)
    if file_units is not None and file_units not in TIME_UNITS:
        raise DataError(f"key 'time_units' of {path.name} is '{file_units}' "
                        f"(expected one of {', '.join(TIME_UNITS)})")
    file_epochs = _npz_epochs(values, path)  # checked even when ``epochs`` overrides them
    ep = epochs if epochs is not None else file_epochs
    if "raster" in values:
        if "spike_times" in values:
            raise DataError(f"{path.name} has both 'raster' and 'spike_times'; keep one")
        return _npz_raster(values, path, file_bin, file_units, ep, bin_size=bin_size,
                           time_units=time_units, orientation=orientation)
    return _npz_spike_times(values, path, file_bin, file_units, ep, bin_size=bin_size,
                            time_units=time_units)


def _npz_values(path):
    """{key: array} of an .npz file (no pickle); warns about keys outside :data:`NPZ_KEYS`."""
    try:
        npz = np.load(path, allow_pickle=False)
    except Exception as err:  # zipfile/format errors
        raise DataError(f"cannot read {path.name} as .npz: {err}") from None
    with npz:
        values = {}
        for key in npz.files:
            try:
                values[key] = npz[key]
            except ValueError as err:
                raise DataError(
                    f"key '{key}' of {path.name} cannot be loaded without pickle ({err})"
                ) from None
    unknown = sorted(set(values) - set(NPZ_KEYS))
    if unknown:
        warnings.warn(f"{path.name}: ignoring unknown keys {', '.join(unknown)}", DataWarning,
                      stacklevel=4)
    return values


def _npz_scalar(values, key, kind, path):
    """``kind(values[key])`` for a one-element key, None when absent."""
    if key not in values:
        return None
    v = values[key]
    if v.size != 1:
        raise DataError(f"key '{key}' of {path.name} must be a scalar, got shape {v.shape}")
    try:
        return kind(v.reshape(()).item())
    except (TypeError, ValueError):
        raise DataError(f"key '{key}' of {path.name} is not a {kind.__name__}") from None


def _npz_epochs(values, path):
    """Epochs of the keys state_names/state_starts/state_stops (all three or none), or None."""
    names = ("state_names", "state_starts", "state_stops")
    present = [k for k in names if k in values]
    if not present:
        return None
    if len(present) != 3:
        missing = sorted(set(names) - set(present))
        raise DataError(f"{path.name} has {', '.join(present)} but not {', '.join(missing)}")
    try:
        return Epochs.coerce(tuple(values[k] for k in names))
    except DataError as err:
        raise DataError(f"{path.name}: {err}") from None


def _npz_raster(values, path, file_bin, file_units, ep, *, bin_size, time_units, orientation):
    """SpikeData of the key 'raster'; epochs (in the file's units) label and select bins."""
    if bin_size is not None:
        bs, units = bin_size, time_units or file_units or "s"
    elif file_bin is not None:
        bs, units = file_bin, file_units or "s"
        if time_units is not None and time_units != units:
            bs, units = _bin_size_in(time_units, bs, units), time_units
    else:
        bs, units = None, None
    data = _raster_data(values["raster"], path, bin_size=bs, time_units=units,
                        orientation=orientation, what="key 'raster'",
                        neuron_ids=values.get("neuron_ids"),
                        cell_types=values.get("cell_types"), states=values.get("states"))
    if ep is None or data.states is not None:
        return data
    # epochs are in the file's time units: bin in those units
    file_u = file_units or "s"
    width = file_bin if file_bin is not None else _bin_size_in(
        file_u, bin_size, time_units or file_u)
    if width is None:
        raise DataError(f"{path.name}: state epochs with a raster need 'bin_size'")
    t0 = _npz_scalar(values, "t_start", float, path) or 0.0
    states = _bin_states(Epochs.coerce(ep), t0 + width * np.arange(data.num_bins), width)
    keep = states != ""
    if not keep.any():
        raise DataError(f"{path.name}: no bin lies inside a state epoch")
    if not keep.all():
        warnings.warn(f"{path.name}: dropped {int((~keep).sum())} of {data.num_bins} "
                      "bins not inside one epoch", DataWarning, stacklevel=4)
    return dataclasses.replace(data, spins=data.spins[keep], states=states[keep])


def _npz_spike_times(values, path, file_bin, file_units, ep, *, bin_size, time_units):
    """SpikeData binned from the keys 'spike_times' and 'spike_neurons'."""
    if "spike_times" not in values:
        raise DataError(
            f"{path.name} has neither 'raster' nor 'spike_times' "
            f"(keys: {', '.join(sorted(values)) or 'none'})")
    if "spike_neurons" not in values:
        raise DataError(f"{path.name} has 'spike_times' but no 'spike_neurons'")
    units = file_units or "s"
    if bin_size is not None:
        bs = _bin_size_in(units, bin_size, time_units or units)
    elif file_bin is not None:
        bs = file_bin
    else:
        raise DataError(f"{path.name} holds spike times: give a bin size (--bin-size / bin_size)")
    try:
        return SpikeData.from_spike_times(
            values["spike_times"], values["spike_neurons"], bin_size=bs, time_units=units,
            t_start=_npz_scalar(values, "t_start", float, path),
            t_stop=_npz_scalar(values, "t_stop", float, path),
            neuron_ids=values.get("neuron_ids"), cell_types=values.get("cell_types"),
            epochs=ep, source=str(path))
    except DataError as err:
        raise DataError(f"{path.name}: {err}") from None


def _load_npy(path, *, bin_size, time_units, orientation, epochs):
    try:
        arr = np.load(path, allow_pickle=False)
    except ValueError as err:
        raise DataError(f"cannot read {path.name} without pickle: {err}") from None
    except Exception as err:
        raise DataError(f"cannot read {path.name} as .npy: {err}") from None
    if epochs is not None:
        raise DataError(f"{path.name} is a plain raster: state epochs need the .npz layout")
    return _raster_data(arr, path, bin_size=bin_size, time_units=time_units or (
        "s" if bin_size is not None else None), orientation=orientation, what="the array")


def _pick_variable(candidates, all_names, variable, path):
    """Choose the MATLAB variable: ``variable`` or the only 2-D numeric array."""
    if variable is not None:
        if variable not in all_names:
            raise DataError(f"{path.name} has no variable '{variable}' "
                            f"(variables: {', '.join(sorted(all_names)) or 'none'})")
        if variable not in candidates:
            raise DataError(f"variable '{variable}' of {path.name} is not a 2-D numeric array")
        return variable
    if len(candidates) == 1:
        return next(iter(candidates))
    if not candidates:
        raise DataError(f"{path.name} has no 2-D numeric array "
                        f"(variables: {', '.join(sorted(all_names)) or 'none'})")
    raise DataError(f"{path.name} has several 2-D arrays ({', '.join(sorted(candidates))}); "
                    "choose one with --variable")


def _load_mat5(path, *, variable, bin_size, time_units, orientation, epochs):
    import scipy.io
    import scipy.sparse

    try:
        contents = scipy.io.loadmat(path, squeeze_me=False, mat_dtype=False)
    except Exception as err:
        raise DataError(f"cannot read {path.name} as a MATLAB file: {err}") from None
    names = [k for k in contents if not k.startswith("__")]
    candidates = {}
    for k in names:
        v = contents[k]
        if scipy.sparse.issparse(v):
            v = v.toarray()
        if isinstance(v, np.ndarray) and v.ndim == 2 and v.size > 1 and (
                np.issubdtype(v.dtype, np.number) or v.dtype == bool):
            candidates[k] = v
    name = _pick_variable(candidates, names, variable, path)
    if epochs is not None:
        raise DataError(f"{path.name} is a raster: state epochs need the .npz layout")
    return _raster_data(candidates[name], path, bin_size=bin_size, time_units=time_units or (
        "s" if bin_size is not None else None), orientation=orientation,
        what=f"variable '{name}'")


def _load_mat73(path, *, variable, bin_size, time_units, orientation, epochs):
    import h5py

    try:
        f = h5py.File(path, "r")
    except OSError as err:
        raise DataError(f"cannot read {path.name} as MATLAB v7.3 (HDF5): {err}") from None
    with f:
        names = [k for k in f.keys() if not k.startswith("#")]
        candidates = {}
        for k in names:
            obj = f[k]
            if not isinstance(obj, h5py.Dataset):
                continue
            mclass = obj.attrs.get("MATLAB_class", b"")
            mclass = mclass.decode() if isinstance(mclass, bytes) else str(mclass)
            if mclass in ("cell", "struct", "char") or obj.ndim != 2 or obj.size <= 1:
                continue
            if not (np.issubdtype(obj.dtype, np.number) or obj.dtype == bool):
                continue
            candidates[k] = obj
        name = _pick_variable(candidates, names, variable, path)
        # MATLAB writes column-major: the HDF5 dataset is the transpose of the MATLAB array
        raster = np.asarray(candidates[name]).T
    if epochs is not None:
        raise DataError(f"{path.name} is a raster: state epochs need the .npz layout")
    return _raster_data(raster, path, bin_size=bin_size, time_units=time_units or (
        "s" if bin_size is not None else None), orientation=orientation,
        what=f"variable '{name}'")


#: Units columns read as cell types without being named (first match, in this order).
CELL_TYPE_COLUMNS = ("cell_type", "cell_types", "celltype", "cell_class", "putative_cell_type",
                     "cell_category", "neuron_type")
#: Interval-table columns read as state names without being named.
STATE_COLUMNS = ("label", "state", "sleep_state", "stage", "sleep_stage", "state_name")
_UNITS_STANDARD = {"spike_times", "obs_intervals", "electrodes", "electrode_group",
                   "waveform_mean", "waveform_sd", "waveforms"}
_INTERVALS_STANDARD = {"start_time", "stop_time", "tags", "timeseries"}
#: Interval tables that never hold states.
_NOT_STATE_TABLES = {"trials", "invalid_times"}


def _load_nwb(path, *, bin_size, time_units, orientation, epochs, states_table=None,
              state_column=None, cell_type_column=None):
    """NWB Units (spike times in s), cell types from a Units column, states from a
    TimeIntervals table (``epochs`` or e.g. DANDI's ``intervals/sleep_states`` with a
    ``label`` column); the table and columns used are named in ``source``."""
    try:
        import pynwb
    except ImportError:  # pragma: no cover - the extra is installed in dev
        raise DataError("reading .nwb needs pynwb: pip install 'bayes_ising[nwb]'") from None
    if bin_size is None:
        raise DataError(f"{path.name} holds spike times: give a bin size (--bin-size / bin_size)")
    units_s = "s"  # NWB stores times in seconds
    bs = _bin_size_in(units_s, bin_size, time_units or units_s)
    try:
        io = pynwb.NWBHDF5IO(str(path), "r")
        nwb = io.read()
    except Exception as err:
        raise DataError(f"cannot read {path.name} as NWB: {err}") from None
    used = []
    try:
        units = nwb.units
        if units is None or len(units) == 0:
            raise DataError(f"{path.name} has no Units table (or it is empty)")
        if "spike_times" not in units.colnames:
            raise DataError(f"the Units table of {path.name} has no 'spike_times' column")
        ids = np.asarray(units.id[:])
        trains = [np.asarray(units["spike_times"][i], dtype=float) for i in range(len(ids))]
        col = _nwb_cell_type_column(units, cell_type_column, path)
        cell_types = None if col is None else [_label(v) for v in units[col][:]]
        if col is not None:
            used.append(f"cell types from Units column '{col}'")
        file_epochs = None
        if epochs is None:
            file_epochs, where = _nwb_states(nwb, states_table, state_column, path)
            if where:
                used.append(f"states from {where}")
    finally:
        io.close()
    source = str(path) + (f" ({'; '.join(used)})" if used else "")
    try:
        return SpikeData.from_spike_times(
            trains, bin_size=bs, time_units=units_s, neuron_ids=ids, cell_types=cell_types,
            epochs=epochs if epochs is not None else file_epochs, source=source)
    except DataError as err:
        raise DataError(f"{path.name}: {err}") from None


def _text_columns(table, standard):
    """Names of the table's non-ragged columns holding text, other than ``standard``."""
    from hdmf.common import VectorIndex

    names = []
    for name in table.colnames:
        if name in standard or isinstance(table[name], VectorIndex):
            continue
        values = table[name][:]
        if len(values) and isinstance(values[0], str | bytes | np.str_ | np.bytes_):
            names.append(name)
    return names


def _choose(known, candidates, what, flag, where):
    """The one known name present, else the one candidate; None when there is none."""
    present = [c for c in known if c in candidates]
    pool = present or candidates
    if len(pool) == 1:
        return pool[0]
    if not pool:
        return None
    raise DataError(f"{where} has several {what} ({', '.join(pool)}): choose one with {flag}")


def _nwb_cell_type_column(units, column, path):
    """The Units column holding cell types: ``column``, a known name, or the one text column
    whose name says type/class; None when there is none."""
    if column is not None:
        if column not in units.colnames:
            raise DataError(f"the Units table of {path.name} has no column '{column}' "
                            f"(columns: {', '.join(units.colnames)})")
        return column
    text = _text_columns(units, _UNITS_STANDARD)
    typed = [c for c in text if c in CELL_TYPE_COLUMNS or "type" in c.lower()
             or "class" in c.lower()]
    return _choose(CELL_TYPE_COLUMNS, typed, "candidate cell-type columns",
                   "--cell-type-column", f"the Units table of {path.name}")


def _nwb_states(nwb, table_name, column, path):
    """((names, starts, stops), "intervals/T column 'c'") from the states table, or
    (None, None) when the file has none. The table is ``table_name`` or the one non-empty
    interval table (other than trials/invalid_times) with a state column."""
    tables = {name: t for name, t in (nwb.intervals or {}).items()}
    if table_name is not None:
        if table_name not in tables:
            raise DataError(f"{path.name} has no interval table '{table_name}' "
                            f"(interval tables: {', '.join(sorted(tables)) or 'none'})")
        chosen = [table_name]
    else:
        chosen = [name for name, t in tables.items() if name not in _NOT_STATE_TABLES
                  and len(t) and (column is None or column in t.colnames)]
        if len(chosen) > 1:
            raise DataError(f"{path.name} has several interval tables that could hold states "
                            f"({', '.join(sorted(chosen))}): choose one with --states-table")
        if not chosen:
            return None, None
    name = chosen[0]
    table = tables[name]
    starts = np.asarray(table["start_time"][:], dtype=float)
    stops = np.asarray(table["stop_time"][:], dtype=float)
    where = f"intervals/{name}"
    prefix = "epoch" if name == "epochs" else name
    if column is None:
        column = _choose(STATE_COLUMNS, _text_columns(table, _INTERVALS_STANDARD),
                         "text columns", "--state-column", f"interval table '{name}'")
    if column is not None:
        if column not in table.colnames:
            raise DataError(f"interval table '{name}' of {path.name} has no column '{column}' "
                            f"(columns: {', '.join(table.colnames)})")
        return ([_label(v) for v in table[column][:]], starts, stops), \
            f"{where} column '{column}'"
    if "tags" in table.colnames:
        tags = table["tags"][:]
        names = [_label(t[0]) if len(t) else f"{prefix}{k}" for k, t in enumerate(tags)]
        return (names, starts, stops), f"{where} (first tag)"
    return ([f"{prefix}{k}" for k in range(len(starts))], starts, stops), f"{where} (unnamed)"
