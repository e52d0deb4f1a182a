"""The posterior contract (bayes_ising.fit.posterior): pair order, thinning, labels, alignment."""

import jax
import numpy as np
import pytest
import xarray as xr

from bayes_ising.data import SpikeData
from bayes_ising.errors import DataError
from bayes_ising.fit import posterior


def _tree(num_neurons=4, num_chains=2, num_draws=5, order=None, coords=True, types=None):
    """A hand-built posterior whose coupling of pair (a, b) is 100·a + b + draw/1000."""
    ids = np.array([f"c{k}" for k in range(num_neurons)])
    first, second = np.triu_indices(num_neurons, 1)
    if order is not None:
        first, second = first[order], second[order]
    draw = np.arange(num_chains * num_draws).reshape(num_chains, num_draws, 1)
    J = 100.0 * first + second + draw / 1000.0
    h = np.arange(num_neurons) + draw / 1000.0
    pair_coords = {"neuron_i": ("pair", ids[first]), "neuron_j": ("pair", ids[second])}
    dataset = xr.Dataset(
        {"h": (("chain", "draw", "neuron"), h), "J": (("chain", "draw", "pair"), J)},
        coords={"neuron": ids, "pair": np.arange(first.size), **(pair_coords if coords else {})})
    if types is not None:
        dataset = dataset.assign_coords(cell_type=("neuron", np.asarray(types)))
    return xr.DataTree.from_dict({"posterior": dataset})


def _expected_matrix(num_neurons):
    a, b = np.meshgrid(np.arange(num_neurons), np.arange(num_neurons), indexing="ij")
    low, high = np.minimum(a, b), np.maximum(a, b)
    matrix = 100.0 * low + high
    np.fill_diagonal(matrix, 0.0)
    return matrix


@pytest.mark.parametrize("order", [None, [5, 0, 3, 1, 4, 2]])
def test_pair_order_from_coordinates(order):
    tree = _tree(order=order)
    h, J = posterior.posterior_draws(tree)
    assert h.shape == (10, 4) and J.shape == (10, 4, 4)
    np.testing.assert_allclose(np.round(J[0]), _expected_matrix(4))
    np.testing.assert_array_equal(J, np.swapaxes(J, 1, 2))
    # draw 7 = chain 1, draw 2 (chain-major pooling)
    np.testing.assert_allclose(h[7], np.arange(4) + 0.007)
    packed = posterior.packed_draws(tree)
    np.testing.assert_allclose(packed[0, 4:], [1, 2, 3, 102, 103, 203])


def test_pair_order_falls_back_to_triu_without_coordinates():
    h, J = posterior.posterior_draws(_tree(coords=False))
    np.testing.assert_allclose(np.round(J[3]), _expected_matrix(4))
    np.testing.assert_array_equal(posterior.pair_members(_tree(coords=False))[0],
                                  [0, 0, 0, 1, 1, 2])


def test_wrong_pair_count_is_a_data_error():
    bad = _tree()["posterior"].to_dataset().isel(pair=[0, 1])
    with pytest.raises(DataError, match="pairs"):
        posterior.posterior_draws(xr.DataTree.from_dict({"posterior": bad}))
    with pytest.raises(DataError, match="not a bayes_ising posterior"):
        posterior.posterior_draws(xr.DataTree())


def test_thinning_even_and_random():
    tree = _tree(num_chains=2, num_draws=50)
    h, _ = posterior.posterior_draws(tree, num_draws=5)
    np.testing.assert_allclose(h[:, 0] * 1000, np.round(np.linspace(0, 99, 5)))
    h1, J1 = posterior.posterior_draws(tree, num_draws=7, rng_key=jax.random.key(3))
    h2, _ = posterior.posterior_draws(tree, num_draws=7, rng_key=jax.random.key(3))
    h3, _ = posterior.posterior_draws(tree, num_draws=7, rng_key=jax.random.key(4))
    np.testing.assert_array_equal(h1, h2)
    assert not np.array_equal(h1, h3)
    index = np.round(h1[:, 0] * 1000).astype(int)
    assert len(set(index)) == 7 and np.all(np.diff(index) > 0)  # no repeats, pooled order
    np.testing.assert_allclose(J1[:, 0, 1], 1 + index / 1000)  # h and J from the same draw
    assert posterior.posterior_draws(tree, num_draws=1000)[0].shape == (100, 4)
    with pytest.raises(DataError, match="at least 1"):
        posterior.posterior_draws(tree, num_draws=0)


def test_labels():
    tree = _tree(types=["E", "E", "I", "E"])
    assert posterior.neuron_ids(tree).tolist() == ["c0", "c1", "c2", "c3"]
    assert posterior.cell_types(tree).tolist() == ["E", "E", "I", "E"]
    assert posterior.cell_types(_tree()) is None
    assert posterior.cell_types(_tree(types=["", "", "", ""])) is None
    assert posterior.selection(_tree()) == {}
    matrix = posterior.j_matrix(tree)
    assert matrix.dims == ("chain", "draw", "neuron_i", "neuron_j")
    assert float(matrix.sel(neuron_i="c3", neuron_j="c1").values[0, 0]) == 103.0


def test_align_reorders_restricts_and_names_missing_neurons():
    tree = _tree()
    spins = np.where(np.random.default_rng(0).random((20, 5)) < 0.3, 1, -1)
    data = SpikeData.from_raster(spins, neuron_ids=["c3", "x", "c0", "c2", "c1"],
                                 cell_types=["I", "E", "E", "E", "E"])
    aligned = posterior.align(tree, data)
    assert aligned.neuron_ids.tolist() == ["c0", "c1", "c2", "c3"]
    assert aligned.cell_types.tolist() == ["E", "E", "E", "I"]
    np.testing.assert_array_equal(aligned.spins, spins[:, [2, 4, 3, 0]])
    short = SpikeData.from_raster(spins[:, :3], neuron_ids=["c3", "x", "c0"])
    with pytest.raises(DataError, match=r"lack 2 of the posterior's neurons \('c1', 'c2'\)"):
        posterior.align(tree, short)
    # a bare array: neurons n0 … n{N-1}
    bare = _tree()
    bare["posterior"] = xr.DataTree(bare["posterior"].to_dataset().assign_coords(
        neuron=["n0", "n1", "n2", "n3"]).drop_vars(["neuron_i", "neuron_j"]))
    np.testing.assert_array_equal(posterior.align(bare, spins), spins[:, :4])
