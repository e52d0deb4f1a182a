"""Validity of large-N fits (issue 12): moment checks by simulation, Boltzmann learning on
sparse data with strong shared input, and the gate that keeps a bad centre out of a posterior.

The test case is :func:`synthetic.shared_input_raster` — sparse firing (0.3–28% of bins, mean
≈ 9%) driven by a strong slow common input, the character of the 50-cell retina recording on
which the old large-N path failed (issue 12)."""

import json
import warnings

import jax
import numpy as np
import pytest

from bayes_ising import bayes, ising, mle, synthetic, validity
from bayes_ising.errors import ModelCheckError
from bayes_ising.mle import MLEWarning


@pytest.fixture(scope="module")
def sparse50():
    """N = 50, 10,000 bins of retina-like data."""
    return synthetic.shared_input_raster(jax.random.PRNGKey(0), 50, 10_000)


def test_shared_input_raster_has_the_character_of_the_retina_recording(sparse50):
    p = (1.0 + sparse50.spins.mean(axis=0)) / 2.0
    assert p.min() < 0.006 and 0.2 < p.max() < 0.35  # 0.3% ... 28% by construction
    assert 0.07 < p.mean() < 0.11
    c = np.corrcoef(sparse50.spins.T.astype(float))
    i, j = ising.pair_indices(50)
    assert c[i, j].mean() > 0.08  # strong shared input: mostly positive correlations


def test_data_standard_errors_include_the_autocorrelation_of_bins(sparse50):
    """The slow drive makes bins autocorrelated: batch means exceed the independent-bins SE."""
    data = validity.data_standard_errors(sparse50.spins)
    iid = np.sqrt((1 - data["m"] ** 2) / sparse50.num_bins)
    assert np.all(data["se_m"] >= iid)
    assert np.median(data["se_m"] / iid) > 1.5
    assert data["se_C"].shape == (ising.num_pairs(50),) and np.all(data["se_C"] > 0)


def _degenerate(num_neurons):
    h = np.full(num_neurons, 2.0)
    J = np.full((num_neurons, num_neurons), 0.1)
    np.fill_diagonal(J, 0.0)
    return h, J


def test_model_check_flags_the_pseudolikelihood_fit_of_sparse_shared_input(sparse50):
    """Today's failure: the pseudolikelihood MLE of such data, simulated, fires far more than
    the data (a high-activity phase) — the check fails and says why, with numbers."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MLEWarning)
        pseudo = mle.fit_pseudo(sparse50, check_moments=False)
    check = validity.model_check(jax.random.PRNGKey(1), pseudo.h, pseudo.J, sparse50.spins,
                                 num_chains=256, num_sweeps=200, burn_in=300)
    assert not check["passed"] and check["verdict"] != "ok"
    assert check["random_start"]["mean_activity"] > 2 * check["data"]["mean_activity"]
    assert "mean activity" in check["reason"]
    json.dumps(check)


def test_model_check_names_a_degenerate_model_and_passes_the_truth():
    """N = 30: the all-active model is named; the planted model checked against its own
    samples passes."""
    rng = np.random.default_rng(3)
    spins = np.where(rng.random((4000, 30)) < 0.1, 1, -1).astype(np.int8)
    h, J = _degenerate(30)
    check = validity.model_check(jax.random.PRNGKey(2), h, J, spins, num_chains=128,
                                 num_sweeps=100, burn_in=50)
    assert check["verdict"] == "degenerate: runs to an all-active state", check
    truth = synthetic.ei_ising_parameters(jax.random.PRNGKey(4), 24, 6)
    planted = np.asarray(synthetic.sample_ising(jax.random.PRNGKey(5), truth.h, truth.J,
                                                4000), np.int8)
    check = validity.model_check(jax.random.PRNGKey(6), np.asarray(truth.h),
                                 np.asarray(truth.J), planted, num_chains=256,
                                 num_sweeps=200, burn_in=200)
    assert check["passed"], check


class _Laplace:
    """The parts of bayes._laplace's result that _adjustment_centre reads."""

    def __init__(self, theta):
        self.theta = theta


def test_a_degenerate_centre_stops_the_adjustment_with_a_clear_error():
    """adjust = "curvature" at N = 30 > 22 whose centre (the pseudo-MAP) runs to the
    all-active state: ModelCheckError (a BayesIsingError: exit 2 in the CLI), one line that
    names the failure and what to try."""
    rng = np.random.default_rng(7)
    spins = np.where(rng.random((3000, 30)) < 0.1, 1, -1).astype(np.int8)
    h, J = _degenerate(30)
    laplace = _Laplace(np.asarray(ising.pack(h, J)))
    with pytest.raises(ModelCheckError) as err:
        bayes._adjustment_centre(jax.random.PRNGKey(8), "curvature", laplace, None, spins,
                                 None, None)
    message = str(err.value)
    assert "\n" not in message
    assert "degenerate: runs to an all-active state" in message
    assert "Try:" in message and 'adjust = "none"' in message
