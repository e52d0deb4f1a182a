r"""What data a posterior was fitted to: the selection recorded at fit time, applied later.

A fit records, in the posterior's root attribute ``selection`` (JSON), where its data came
from and how they were selected (:func:`record`):

``source``, ``sha256``
    the data file (as given) and the SHA-256 of its bytes (``None`` for in-memory data);
``state``, ``population``, ``min_rate``, ``neurons``, ``max_neurons``
    the selection flags (``None`` when not used), applied in the order of :func:`select`;
``neuron_ids``, ``num_neurons``, ``num_bins``, ``bin_size``, ``time_units``
    what the selection gave.

Later verbs (``check``, ``thermo``, ``compare-mle``, ``report``) read the data file again;
:func:`apply` selects it the recorded way when no selection flags are given and refuses data
that do not match the record (another file, other bins, missing neurons) with a
:class:`~bayes_ising.errors.DataError` (exit 2 from the CLI, one line).

Selection rules (:func:`select`): bins of ``state``; neurons of the cell types
``population``; neurons firing in ≥ ``min_rate`` of the kept bins; the neurons listed in
``neurons`` (ids, in the data's order); then, with ``max_neurons = K``, the K most active of
what is left (highest firing probability in the kept bins; ties keep the data's order), kept in
the data's order.
"""

import dataclasses
import hashlib
import os

import numpy as np

from bayes_ising.errors import DataError
from bayes_ising.fit.posterior import missing_ids

__all__ = ["SELECTION_FLAGS", "file_sha256", "select", "record", "recorded", "apply",
           "check_match"]

#: the selection flags, in the order they are applied
SELECTION_FLAGS = ("state", "population", "min_rate", "neurons", "max_neurons")


def file_sha256(path, chunk_size=1 << 20):
    """Hex SHA-256 of a file's bytes (read in 1 MiB chunks), or None when it is not a file."""
    if path is None or not os.path.isfile(str(path)):
        return None
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(chunk_size), b""):
            digest.update(block)
    return digest.hexdigest()


def _as_id_list(neurons):
    if neurons is None:
        return None
    if isinstance(neurons, str):
        neurons = [v for v in neurons.split(",") if v.strip()]
    return [str(v).strip() for v in neurons]


def select(data, *, state=None, population=None, min_rate=None, neurons=None,
           max_neurons=None):
    """Apply the selection rules of the module docstring to a SpikeData; return a SpikeData.

    ``state``/``population``/``min_rate`` go through :meth:`SpikeData.select`; ``neurons`` (ids,
    list or comma-separated str) and ``max_neurons`` (int ≥ 1) are applied after them. The
    result's ``selection`` dict holds every flag used.
    """
    data = data.select(population=population, state=state, min_rate=min_rate)
    ids = _as_id_list(neurons)
    if ids is None and max_neurons is None:
        return data
    keep = np.ones(data.num_neurons, dtype=bool)
    selection = dict(data.selection)
    if ids is not None:
        missing = missing_ids(data.neuron_ids, ids)
        if missing:
            raise DataError(f"--neurons: {len(missing)} id(s) not in the selected data "
                            f"(e.g. {missing[0]!r})")
        keep &= np.isin(data.neuron_ids, ids)
        selection["neurons"] = ",".join(data.neuron_ids[keep].tolist())
    if max_neurons is not None:
        max_neurons = int(max_neurons)
        if max_neurons < 1:
            raise DataError(f"max_neurons must be >= 1, got {max_neurons}")
        rate = np.where(keep, data.firing_probability, -np.inf)
        order = np.argsort(-rate, kind="stable")[:min(max_neurons, int(keep.sum()))]
        keep = np.zeros_like(keep)
        keep[order] = True
        selection["max_neurons"] = max_neurons
    return dataclasses.replace(
        data, spins=data.spins[:, keep], neuron_ids=data.neuron_ids[keep],
        cell_types=None if data.cell_types is None else data.cell_types[keep],
        selection=selection)


def record(data, path=None):
    """The selection record of a SpikeData or a (num_bins, N) array (JSON-able dict)."""
    source = str(path) if path is not None else str(getattr(data, "source", "") or "")
    chosen = dict(getattr(data, "selection", {}) or {})
    out = {"source": source or None, "sha256": file_sha256(source) if source else None}
    for flag in SELECTION_FLAGS:
        out[flag] = chosen.get(flag)
    num_bins, num_neurons = np.shape(getattr(data, "spins", data))
    ids = getattr(data, "neuron_ids", None)
    ids = [str(v) for v in (range(num_neurons) if ids is None else ids)]
    out.update(neuron_ids=ids, num_neurons=int(num_neurons), num_bins=int(num_bins),
               bin_size=getattr(data, "bin_size", None),
               time_units=getattr(data, "time_units", None))
    return out


def recorded(tree):
    """The selection record in a posterior's attributes
    (:func:`bayes_ising.fit.posterior.selection`),
    or None (fits made before it was recorded)."""
    from bayes_ising.fit.posterior import selection

    return selection(tree) or None


def _describe(rec):
    parts = [f"{flag}={rec[flag]!r}" for flag in SELECTION_FLAGS if rec.get(flag) is not None]
    return ", ".join(parts) or "no selection flags"


def check_match(data, rec, *, sha256=None):
    """Refuse (DataError, one line) selected data that are not the recorded fit's data.

    Compared: the file's SHA-256 (when both are known), the number of bins, and the presence
    of every recorded neuron id. Extra neurons are allowed (verbs align by id).
    """
    if rec is None:
        return
    where = f"the posterior was fitted to {rec.get('source') or 'in-memory data'} " \
            f"({_describe(rec)}: {rec['num_neurons']} neurons, {rec['num_bins']} bins)"
    if sha256 and rec.get("sha256") and sha256 != rec["sha256"]:
        raise DataError(f"these data differ from the posterior's: another file (SHA-256 "
                        f"differs); {where}; pass that file, or --allow-other-data")
    if int(data.num_bins) != int(rec["num_bins"]):
        raise DataError(f"the selected data differ from the posterior's: {data.num_bins} bins "
                        f"({_describe(data.selection)}); {where}; drop the selection flags "
                        "to use the recorded selection")
    missing = missing_ids(data.neuron_ids, rec["neuron_ids"])
    if missing:
        raise DataError(f"the selected data differ from the posterior's: they lack "
                        f"{len(missing)} of its neurons (e.g. {missing[0]!r}); {where}")


def apply(tree, data, flags=None, *, path=None, allow_other_data=False):
    """Select loaded data the way the posterior ``tree`` records, or by ``flags``; then check.

    Parameters
    ----------
    tree : posterior DataTree (its ``selection`` attribute; older posteriors have none)
    data : SpikeData as loaded (before selection)
    flags : dict of selection flags given by the user (``None`` values = not given); when none
        is given the recorded selection is used
    path : the data file, for the SHA-256 comparison
    allow_other_data : skip the file and bin checks (the neurons must still be present)
    """
    rec = recorded(tree)
    given = {k: v for k, v in (flags or {}).items() if v is not None and k in SELECTION_FLAGS}
    if not given and rec is not None:
        given = {k: rec.get(k) for k in SELECTION_FLAGS if rec.get(k) is not None}
    selected = select(data, **given)
    if rec is None:
        return selected
    if allow_other_data:
        check_match(selected, {**rec, "num_bins": selected.num_bins, "sha256": None})
    else:
        check_match(selected, rec, sha256=file_sha256(path) if path is not None else None)
    return selected
