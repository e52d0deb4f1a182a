"""Tests of fit/fit_data.py: the data of one fit, validated and reduced once and passed down.

A fit through a :class:`FitData` equals the fit from the spins bit for bit, and along one
``fit_posterior`` call (exact at small N; the pseudo-posterior's large-N path with the
Boltzmann centre and the model check) the spins are validated once and reduced to moments,
unique patterns and standard errors once each.
"""

import collections
import sys

import jax
import numpy as np
import pytest

from bayes_ising.core import ising, limits, stats
from bayes_ising.data import synthetic
from bayes_ising.errors import DataError
from bayes_ising.fit import bayes, mle
from bayes_ising.fit.fit_data import FitData, as_fit_data

SETTINGS = dict(num_chains=2, num_draws=50, num_warmup=50, progress=False)


class _Data:
    """Duck-typed SpikeData (spins, neuron ids, cell types, source)."""

    def __init__(self, spins, cell_types=None):
        self.spins = spins
        self.neuron_ids = np.array([f"n{k}" for k in range(spins.shape[1])])
        self.cell_types = cell_types
        self.source = "planted"


@pytest.fixture(scope="module")
def data():
    truth = synthetic.ei_ising_parameters(jax.random.PRNGKey(3), 3, 2)
    spins = np.asarray(synthetic.sample_ising(jax.random.PRNGKey(4), truth.h, truth.J, 3000),
                       np.int8)
    spins[:, 4] = -1  # a silent neuron: inactive, and the boundary
    return _Data(spins, np.asarray(truth.cell_types))


def test_fit_data_reductions_match_stats_and_the_boundary_report(data):
    fd = as_fit_data(data)
    assert as_fit_data(fd) is fd
    assert fd.spins.dtype == np.int8 and fd.spins.shape == data.spins.shape
    assert fd.neuron_ids.tolist() == data.neuron_ids.tolist() and fd.source == "planted"
    observed = stats.moments(data.spins)
    np.testing.assert_array_equal(fd.m, observed.m)
    np.testing.assert_array_equal(fd.Q, observed.Q)
    patterns, counts = stats.unique_patterns(data.spins)
    np.testing.assert_array_equal(fd.patterns, patterns)
    np.testing.assert_array_equal(fd.counts, counts)
    np.testing.assert_array_equal(fd.firing_counts, (data.spins > 0).sum(axis=0))
    report = mle.boundary_report(data.spins)
    assert fd.boundary.silent == report["silent"] == [4]
    assert fd.boundary.always_on == report["always_on"]
    assert fd.boundary.pairs == report["pairs"]
    assert fd.active.tolist() == [True] * 4 + [False]
    assert fd.standard_errors(10) is fd.standard_errors(10)
    renamed = as_fit_data(fd, neuron_ids=list("abcde"))
    assert renamed.neuron_ids.tolist() == list("abcde") and renamed.moments is fd.moments


def test_fit_data_errors_are_the_spins_errors():
    with pytest.raises(DataError, match="±1"):
        as_fit_data(np.zeros((10, 3)))
    with pytest.raises(DataError, match="at least 2 neuron"):
        as_fit_data(as_fit_data(np.ones((10, 1), np.int8)), min_neurons=2)
    moments_only = as_fit_data(stats.moments(np.ones((10, 3), np.int8)))
    assert moments_only.spins is None and moments_only.num_bins == 10
    with pytest.raises(DataError, match="need the spins"):
        _ = moments_only.patterns


def _same_tree(a, b):
    for group in ("posterior", "observed_data", "point_estimate", "sample_stats"):
        assert (group in a.children) == (group in b.children)
        if group in a.children:
            xa, xb = a[group].to_dataset(), b[group].to_dataset()
            assert set(xa.data_vars) == set(xb.data_vars)
            for name in xa.data_vars:
                np.testing.assert_array_equal(xa[name].values, xb[name].values)
    timing = {k for k in a.attrs if "time" in k}
    assert {k: v for k, v in a.attrs.items() if k not in timing} == {
        k: v for k, v in b.attrs.items() if k not in timing}


def test_a_fit_through_fit_data_equals_the_fit_from_spins(data):
    """Same seeds, same numbers: fit_posterior and the MLE fitters given a FitData give
    exactly what they give for the spins."""
    fd = as_fit_data(data)
    _same_tree(bayes.fit_posterior(0, fd, likelihood="exact", **SETTINGS),
               bayes.fit_posterior(0, data, likelihood="exact", **SETTINGS))
    for fitter in (mle.fit_exact, mle.fit_pseudo, mle.fit_independent):
        with pytest.warns(mle.MLEWarning):
            through, direct = fitter(fd), fitter(data)
        np.testing.assert_array_equal(through.h, direct.h)
        np.testing.assert_array_equal(through.J, direct.J)
        assert through.moment_error == direct.moment_error
        assert through.neuron_ids.tolist() == direct.neuron_ids.tolist()


#: the preparations of the data: validation and each reduction of the spins
_PREPARATIONS = ("check_spins", "moments", "unique_patterns", "data_standard_errors")


def _count_preparations(monkeypatch):
    """Count calls of the preparations, under every name a bayes_ising module holds them."""
    counts = collections.Counter()
    for name in _PREPARATIONS:
        original = getattr(stats, name)

        def counted(*args, _name=name, _original=original, **kwargs):
            counts[_name] += 1
            return _original(*args, **kwargs)

        for module in list(sys.modules.values()):
            if getattr(module, "__name__", "").startswith("bayes_ising"):
                for attr, value in list(vars(module).items()):
                    if value is original:
                        monkeypatch.setattr(module, attr, counted)
    return counts


def test_fit_posterior_prepares_the_data_once(data, monkeypatch):
    counts = _count_preparations(monkeypatch)
    bayes.fit_posterior(0, data, likelihood="exact", **SETTINGS)
    assert counts == {"check_spins": 1, "moments": 1, "unique_patterns": 1}


@pytest.mark.filterwarnings("ignore::bayes_ising.fit.mle.MLEWarning")  # the silent neuron
def test_the_large_n_pseudo_posterior_prepares_the_data_once(data, monkeypatch):
    """The N > 22 path of models/pseudo_large (Boltzmann-learning centre, its model check,
    Fisher information from Gibbs samples), taken at N = 5 by lowering the enumeration limit,
    with short learning and checks: one validation, one of each reduction."""
    monkeypatch.setattr(ising, "MAX_EXACT_NEURONS", 4)
    monkeypatch.setattr(limits, "MAX_EXACT_MOMENTS_NEURONS", 4)
    short = dict(num_chains=64, iterations_per_stage=250, max_stages=1, learning_rates=(0.1,),
                 check_sweeps=50, check_burn_in=20)
    for name, value in short.items():
        monkeypatch.setitem(mle.fit_boltzmann.__kwdefaults__, name, value)
    for name, value in dict(num_chains=64, num_sweeps=50, burn_in=20).items():
        monkeypatch.setitem(mle.model_check.__kwdefaults__, name, value)
    counts = _count_preparations(monkeypatch)
    tree = bayes.fit_posterior(0, data, "pseudo_large", **SETTINGS)
    assert "Boltzmann" in tree.attrs["adjust_info"] and "model_check" in tree.attrs
    assert counts == {"check_spins": 1, "moments": 1, "unique_patterns": 1,
                      "data_standard_errors": 1}


def test_fit_data_from_patterns_keeps_their_order():
    patterns = np.array([[-1, 1, 1], [1, -1, -1], [1, 1, 1]], np.int8)
    counts = np.array([2, 5, 1])
    fd = FitData.from_patterns(patterns, counts)
    np.testing.assert_array_equal(fd.patterns, patterns)
    assert fd.num_bins == 8
    np.testing.assert_array_equal(fd.m, stats.moments(np.repeat(patterns, counts, 0)).m)
