r"""The posterior contract: the one way to read a bayes_ising posterior DataTree.

A posterior (written by :func:`bayes_ising.fit.bayes.fit_posterior`, read back by
:func:`bayes_ising.fit.bayes.load_posterior`) holds, in group ``posterior``:

- ``h`` (chain, draw, neuron) — fields, coordinate ``neuron`` (the neuron ids, str) and,
  optionally, ``cell_type`` (neuron,);
- ``J`` (chain, draw, pair) — couplings, one per pair, with pair coordinates ``neuron_i`` and
  ``neuron_j`` naming the two neurons of each pair (ids, or integer positions);
- ``V`` (chain, draw, k), k = 0 … N, only in a K-pairwise posterior
  (:mod:`bayes_ising.core.kpairwise`: E(s) gains −V(K(s)), K the number of active neurons,
  V(0) = 0). :func:`family` says which energy the draws belong to, and
  ``posterior_draws(tree, ..., potential=True)`` returns V with h and J (None without it), so
  every reader that simulates or enumerates the model sees the whole energy.

**Pair order rule** (one rule, used by every reader): the two neurons of pair p are the
positions of ``neuron_i[p]`` and ``neuron_j[p]`` in the ``neuron`` coordinate; when those
coordinates are absent (or do not name the posterior's neurons) the pairs are in
:func:`bayes_ising.core.ising.pair_indices` order (``np.triu_indices(N, 1)``).

**Thinning rule**: ``num_draws`` of the D = chains × draws pooled draws (chain-major); evenly
spaced (``round(linspace(0, D−1, num_draws))``, deterministic) when no ``rng_key`` is given,
a random subset without replacement, kept in the pooled order, when a key is given.

Every module reads posteriors through :func:`posterior_draws`, :func:`pair_members`,
:func:`neuron_ids`, :func:`cell_types` and :func:`align`; none indexes ``J`` itself.
"""

import dataclasses
import json

import numpy as np

from bayes_ising.core import convergence
from bayes_ising.core.draws import thin  # the thinning rule (module docstring)
from bayes_ising.errors import DataError

__all__ = [
    "parameter_statistics",
    "mixing_verdict",
    "lattice_gas_group",
    "posterior_group",
    "family",
    "has_potential",
    "neuron_ids",
    "cell_types",
    "selection",
    "pair_members",
    "thin",
    "flat_draws",
    "posterior_draws",
    "packed_draws",
    "j_matrix",
    "data_columns",
    "id_columns",
    "missing_ids",
    "align",
]


def posterior_group(tree):
    """The ``posterior`` group of a DataTree as an ``xr.Dataset`` with ``h`` and ``J``.

    Raises
    ------
    DataError : no ``posterior`` group, or no ``h`` / ``J`` in it.
    """
    try:
        group = tree["posterior"]
        dataset = group.to_dataset() if hasattr(group, "to_dataset") else group
    except (KeyError, TypeError, AttributeError):
        dataset = None
    if dataset is None or "h" not in dataset or "J" not in dataset:
        raise DataError(
            "not a bayes_ising posterior: expected a group 'posterior' with 'h' "
            "(chain, draw, neuron) and 'J' (chain, draw, pair)")
    return dataset


def has_potential(tree):
    """True when the posterior has draws of the K-pairwise potential ``V`` (chain, draw, k)."""
    return "V" in posterior_group(tree)


def family(tree):
    """The energy family of the draws: "k_pairwise" when the posterior has ``V``, else the
    root attribute ``family`` ("pairwise" when absent; "independent" for J ≡ 0 fits of
    :func:`bayes_ising.fit.kpairwise_fit.fit_posterior`)."""
    if has_potential(tree):
        return "k_pairwise"
    return str((getattr(tree, "attrs", None) or {}).get("family", "pairwise"))


def _attr_list(tree, name):
    value = (getattr(tree, "attrs", None) or {}).get(name)
    if value is None:
        return None
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            value = value.split(",")
    if value is None:
        return None
    return np.atleast_1d(np.asarray(value)).astype(str)


def neuron_ids(tree):
    """(N,) str neuron ids: the ``neuron`` coordinate, else the ``neuron_ids`` attribute,
    else ``n0 … n{N−1}``."""
    dataset = posterior_group(tree)
    num_neurons = dataset["h"].sizes["neuron"]
    if "neuron" in dataset.coords:
        return np.asarray(dataset.coords["neuron"].values).astype(str)
    ids = _attr_list(tree, "neuron_ids")
    if ids is not None and ids.size == num_neurons:
        return ids
    return np.array([f"n{k}" for k in range(num_neurons)])


def cell_types(tree):
    """(N,) str cell types (the ``cell_type`` coordinate, else the ``cell_types`` attribute),
    or None when the posterior has none (absent, wrong length or all empty)."""
    dataset = posterior_group(tree)
    num_neurons = dataset["h"].sizes["neuron"]
    types = None
    if "cell_type" in dataset.coords:
        types = np.asarray(dataset.coords["cell_type"].values).astype(str)
    if types is None:
        types = _attr_list(tree, "cell_types")
    if types is None or types.size != num_neurons or np.all(types == ""):
        return None
    return types


def selection(tree):
    """The data selection the posterior was fitted with (attribute ``selection``, JSON), as a
    dict; empty when it was not recorded."""
    value = (getattr(tree, "attrs", None) or {}).get("selection")
    if value is None:
        return {}
    if isinstance(value, str):
        value = json.loads(value)
    return dict(value or {})


def pair_members(tree):
    """Positions ``(first, second)`` (P,) int of the two neurons of each flat coupling.

    The pair order rule of the module docstring. Raises DataError when P ≠ N(N−1)/2.
    """
    from bayes_ising.core.ising import num_pairs, pair_indices

    dataset = posterior_group(tree)
    num_neurons = dataset["h"].sizes["neuron"]
    if "pair" not in dataset["J"].dims:
        raise DataError(f"posterior J has dims {tuple(dataset['J'].dims)}, expected (chain, "
                        "draw, pair): a posterior written before the K-pairwise trees "
                        "followed this contract; fit it again")
    pairs = dataset["J"].sizes["pair"]
    if pairs != num_pairs(num_neurons):
        raise DataError(f"posterior J has {pairs} pairs, expected N(N-1)/2 = "
                        f"{num_pairs(num_neurons)} for N = {num_neurons}")
    if "neuron_i" in dataset["J"].coords and "neuron_j" in dataset["J"].coords:
        first = np.asarray(dataset["J"].coords["neuron_i"].values)
        second = np.asarray(dataset["J"].coords["neuron_j"].values)
        if first.dtype.kind in "iu":
            return first.astype(int), second.astype(int)
        position = {name: k for k, name in enumerate(neuron_ids(tree).tolist())}
        try:
            return (np.array([position[str(a)] for a in first], dtype=int),
                    np.array([position[str(b)] for b in second], dtype=int))
        except KeyError:
            pass  # coordinates not in terms of the neuron ids: fall back to the package order
    first, second = pair_indices(num_neurons)
    return np.asarray(first), np.asarray(second)


def flat_draws(tree):
    """Stored draws, not thinned: h (chain, draw, N), J (chain, draw, P) float64, with J in the
    posterior's own pair order (see :func:`pair_members`)."""
    dataset = posterior_group(tree)
    h = np.asarray(dataset["h"].transpose("chain", "draw", "neuron").values, dtype=np.float64)
    J = np.asarray(dataset["J"].transpose("chain", "draw", "pair").values, dtype=np.float64)
    return h, J


def posterior_draws(tree, num_draws=None, rng_key=None, *, potential=False):
    """Posterior draws of (h, J) — and, with ``potential``, V — as arrays, chains pooled.

    Parameters
    ----------
    tree : posterior DataTree (see the module docstring).
    num_draws : keep this many of the D = chains × draws pooled draws (all when None or ≥ D);
        evenly spaced when ``rng_key`` is None, else a random subset without replacement.
    rng_key : JAX PRNG key for the random subset, or None.
    potential : also return the K-pairwise potential (the same draws).

    Returns
    -------
    h (D', N), J (D', N, N) float64 — J symmetric with zero diagonal; with ``potential`` a
    third array V (D', N+1) float64 (V[:, 0] = 0), or None when the posterior has no ``V``
    (a pairwise posterior: V ≡ 0).
    """
    h, j_flat = flat_draws(tree)
    first, second = pair_members(tree)
    num_neurons = h.shape[-1]
    h = h.reshape(-1, num_neurons)
    j_flat = j_flat.reshape(h.shape[0], -1)
    keep = thin(h.shape[0], num_draws, rng_key)
    J = np.zeros((keep.size, num_neurons, num_neurons))
    J[:, first, second] = j_flat[keep]
    J[:, second, first] = j_flat[keep]
    if not potential:
        return h[keep], J
    return h[keep], J, _potential(tree, keep, num_neurons)


def _potential(tree, keep, num_neurons):
    """V draws (D', N+1) at the pooled positions ``keep``, or None without ``V``."""
    dataset = posterior_group(tree)
    if "V" not in dataset:
        return None
    V = dataset["V"]
    other = [d for d in V.dims if d not in ("chain", "draw")]
    if len(other) != 1 or V.sizes[other[0]] != num_neurons + 1:
        raise DataError(f"posterior V has dims {tuple(V.dims)} and shape {V.shape}; expected "
                        f"(chain, draw, k) with N+1 = {num_neurons + 1} levels")
    V = np.asarray(V.transpose("chain", "draw", other[0]).values, dtype=np.float64)
    return V.reshape(-1, num_neurons + 1)[keep]


def packed_draws(tree):
    """All draws as (D, N + N(N−1)/2) vectors in :func:`bayes_ising.core.ising.pack` order
    (h, then J_ij for i<j in ``np.triu_indices`` order), chains pooled."""
    from bayes_ising.core.ising import pair_indices

    h, j_flat = flat_draws(tree)
    num_neurons = h.shape[-1]
    first, second = pair_members(tree)
    position = np.full((num_neurons, num_neurons), -1)
    position[np.minimum(first, second), np.maximum(first, second)] = np.arange(first.size)
    order = position[pair_indices(num_neurons)]
    if np.any(order < 0):
        raise DataError("the posterior's couplings do not cover every pair i<j")
    h = h.reshape(-1, num_neurons)
    return np.concatenate([h, j_flat.reshape(h.shape[0], -1)[:, order]], axis=1)


def j_matrix(tree):
    """Couplings as draws of symmetric matrices: DataArray (chain, draw, neuron_i, neuron_j).

    Zero diagonal; J[..., i, j] = J[..., j, i] = the pair (i, j) coupling.
    """
    import xarray as xr

    dataset = posterior_group(tree)
    _, j_flat = flat_draws(tree)
    first, second = pair_members(tree)
    ids = neuron_ids(tree)
    matrix = np.zeros(j_flat.shape[:2] + (ids.size, ids.size), dtype=j_flat.dtype)
    matrix[..., first, second] = j_flat
    matrix[..., second, first] = j_flat
    return xr.DataArray(
        matrix, dims=("chain", "draw", "neuron_i", "neuron_j"),
        coords={"chain": dataset["chain"].values, "draw": dataset["draw"].values,
                "neuron_i": ids, "neuron_j": ids},
        name="J")


def data_columns(tree, data_ids):
    """Column indices (N,) into data with neuron ids ``data_ids`` giving the posterior's
    neurons in the posterior's order.

    Raises
    ------
    DataError : some of the posterior's neurons are not in ``data_ids`` (named in the message).
    """
    return id_columns(data_ids, neuron_ids(tree))


def missing_ids(data_ids, wanted):
    """The ids of ``wanted`` (in order, as str) that are not among ``data_ids``: the one
    "these neurons ⊆ the data's neurons" check (empty when all are present)."""
    present = {str(v) for v in np.asarray(data_ids).tolist()}
    return [str(v) for v in np.asarray(wanted).tolist() if str(v) not in present]


def id_columns(data_ids, wanted, what="the posterior's"):
    """Column indices into data with neuron ids ``data_ids`` giving the neurons ``wanted`` (ids,
    in that order); DataError naming those the data lack (``what``: whose neurons they are)."""
    wanted = [str(v) for v in np.asarray(wanted).tolist()]
    position = {str(v): k for k, v in enumerate(np.asarray(data_ids).tolist())}
    missing = missing_ids(data_ids, wanted)
    if missing:
        shown = ", ".join(repr(v) for v in missing[:5]) + (" …" if len(missing) > 5 else "")
        raise DataError(
            f"the data lack {len(missing)} of {what} neurons ({shown}): the data's "
            f"neurons differ from {what}; pass the data the posterior was fit to, with "
            "the same selection flags (--population, --state, --min-rate)")
    return np.array([position[v] for v in wanted], dtype=int)


def align(tree, data):
    """The data restricted to, and reordered as, the posterior's neurons.

    ``data`` is a :class:`bayes_ising.data.SpikeData` (returned as a SpikeData with the
    posterior's neurons, in its order) or a (num_bins, N) spin array whose neurons are taken to
    be ``n0 … n{N−1}`` (returned as the array's columns). Raises DataError naming the
    posterior's neurons that the data lack.
    """
    if hasattr(data, "neuron_ids") and hasattr(data, "spins"):
        cols = data_columns(tree, np.asarray(data.neuron_ids).astype(str))
        if np.array_equal(cols, np.arange(data.num_neurons)):
            return data
        types = None if data.cell_types is None else np.asarray(data.cell_types)[cols]
        return dataclasses.replace(data, spins=np.asarray(data.spins)[:, cols],
                                   neuron_ids=np.asarray(data.neuron_ids)[cols],
                                   cell_types=types)
    spins = np.asarray(data)
    if spins.ndim != 2:
        raise DataError(f"spins must be (num_bins, N); got shape {spins.shape}")
    return spins[:, data_columns(tree, [f"n{k}" for k in range(spins.shape[1])])]


def lattice_gas_group(tree):
    """The posterior's draws in the 0/1 convention (group ``lattice_gas``): ``a`` (chain,
    draw, neuron) and ``b`` (chain, draw, pair, in the posterior's pair order), each draw
    converted exactly by :func:`bayes_ising.core.ising.to_lattice_gas`."""
    import xarray as xr

    from bayes_ising.core import ising

    group = posterior_group(tree)
    shape = (group.sizes["chain"], group.sizes["draw"])
    h, J = posterior_draws(tree)
    a, b = ising.convert(h, J, "01")
    first, second = pair_members(tree)
    return xr.DataTree(xr.Dataset({
        "a": (("chain", "draw", "neuron"), a.reshape(shape + a.shape[1:])),
        "b": (("chain", "draw", "pair"), b[:, first, second].reshape(shape + (first.size,))),
    }, coords={"neuron": group["neuron"].values}, attrs={
        "convention": "01: x = (s + 1) / 2, -E = sum_i a_i x_i + sum_{i<j} b_ij x_i x_j"}))


def parameter_statistics(tree):
    """R-hat, bulk ESS, tail ESS (P,) of every h and J of a posterior DataTree (h first, then
    J in the posterior's pair order), and the number of chains."""
    h, J = flat_draws(tree)
    rhat, ess_bulk, ess_tail = convergence.draw_statistics(np.concatenate([h, J], axis=-1))
    return rhat, ess_bulk, ess_tail, h.shape[0]


def mixing_verdict(tree, *, max_rhat=convergence.MAX_RHAT, min_ess=convergence.MIN_ESS):
    """The convergence rule (:func:`bayes_ising.core.convergence.verdict`) on a posterior
    DataTree: R-hat and ESS of every h and J, divergences from ``sample_stats``."""
    rhat, ess_bulk, ess_tail, num_chains = parameter_statistics(tree)
    posterior = tree["posterior"]
    transitions = int(posterior.sizes.get("chain", 1) * posterior.sizes.get("draw", 0))
    return convergence.verdict(rhat, ess_bulk, ess_tail, convergence.num_divergent(tree),
                               num_chains=num_chains, num_transitions=transitions,
                               max_rhat=max_rhat, min_ess=min_ess)
