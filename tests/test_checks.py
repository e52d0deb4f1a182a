"""Posterior predictive checks and information ratios against brute-force enumeration."""

import itertools

import jax
import numpy as np
import pytest

from bayes_ising.analysis import checks
from bayes_ising.core import ising, stats


def _brute(h, J):
    """All states (2^N, N) and their probabilities by direct summation."""
    n = h.shape[0]
    states = np.array(list(itertools.product([-1, 1], repeat=n)), float)
    neg_energy = states @ h + 0.5 * np.einsum("si,ij,sj->s", states, J, states)
    p = np.exp(neg_energy - neg_energy.max())
    return states, p / p.sum()


def _random_model(seed, n, scale_h=0.6, scale_j=0.5):
    rng = np.random.default_rng(seed)
    h = rng.normal(-0.5, scale_h, n)
    J = np.triu(rng.normal(0, scale_j, (n, n)), 1)
    return h, J + J.T


def _sample(seed, h, J, num_bins):
    states, p = _brute(h, J)
    rng = np.random.default_rng(seed)
    return states[rng.choice(len(p), size=num_bins, p=p)].astype(np.int8)


def test_independent_synchrony_is_poisson_binomial():
    p = np.array([0.1, 0.5, 0.3, 0.05])
    h = np.arctanh(2 * p - 1)  # independent model: P(s_i = +1) = (1 + tanh h_i)/2
    states, prob = _brute(h, np.zeros((4, 4)))
    expected = np.bincount((states > 0).sum(axis=1), weights=prob, minlength=5)
    np.testing.assert_allclose(checks.independent_synchrony_distribution(p), expected,
                               atol=1e-14)


def test_subset_synchrony_matches_brute_force():
    h, J = _random_model(0, 6)
    states, prob = _brute(h, J)
    subset = [0, 2, 5]
    expected = np.bincount((states[:, subset] > 0).sum(axis=1), weights=prob, minlength=4)
    got = checks.subset_synchrony_distribution(h, J, subset, chunk_bits=3)  # 8 chunks
    np.testing.assert_allclose(got, expected, atol=1e-13)
    full = checks.subset_synchrony_distribution(h, J, np.arange(6))
    np.testing.assert_allclose(full, np.asarray(ising.exact_synchrony_distribution(h, J)),
                               atol=1e-13)


def test_exact_third_order_matches_brute_force():
    h, J = _random_model(1, 5)
    states, prob = _brute(h, J)
    delta = states - prob @ states
    expected = np.einsum("s,si,sj,sk->ijk", prob, delta, delta, delta)
    got = checks._exact_third_order(h[None], J[None])[0]
    np.testing.assert_allclose(got, expected, atol=1e-14)


def test_third_order_of_the_true_model_fits_sampled_data():
    """Observed T_ijk of 200k samples agree with the true model's within 4 standard errors."""
    h, J = _random_model(2, 5)
    spins = _sample(3, h, J, 200_000)
    out = checks.third_order(jax.random.key(0), h[None], J[None], spins)
    assert out["triplets"].shape == (3, 10)
    states, prob = _brute(h, J)
    delta = states - prob @ states
    i, j, k = out["triplets"]
    se = np.sqrt(prob @ (delta[:, i] * delta[:, j] * delta[:, k]) ** 2 / spins.shape[0])
    assert np.all(np.abs(out["observed"] - out["predicted"]["median"]) < 4 * se + 1e-3)
    assert out["correlation"] > 0.9


def test_predictive_synchrony_covers_data_from_the_model():
    h, J = _random_model(4, 6)
    spins = _sample(5, h, J, 20_000)
    # "posterior" = the true parameters with small jitter: 50 draws
    rng = np.random.default_rng(6)
    h_draws = h + 0.01 * rng.normal(size=(50, 6))
    J_draws = np.repeat(J[None], 50, axis=0)
    out = checks.predictive_synchrony(jax.random.key(1), h_draws, J_draws, spins)
    np.testing.assert_allclose(out["draws"].sum(axis=1), 1.0, atol=1e-12)
    assert out["method"] == "exact"
    assert out["fraction_in_band"] >= 0.7  # 90% replicated band, 7 values of K
    assert out["max_abs_log_ratio"] < out["max_abs_log_ratio_independent"]
    np.testing.assert_allclose(out["observed"], stats.synchrony_distribution(spins))


def test_pattern_frequencies_exact_probabilities():
    h, J = _random_model(7, 5)
    spins = _sample(8, h, J, 20_000)
    out = checks.pattern_frequencies(jax.random.key(0), h[None], J[None], spins, top=5)
    states, prob = _brute(h, J)
    lookup = {tuple(s.astype(int)): p for s, p in zip(states, prob, strict=True)}
    expected = np.array([lookup[tuple(p.astype(int))] for p in out["patterns"]])
    np.testing.assert_allclose(out["predicted"]["median"], expected, rtol=1e-10)
    assert out["counts"][0] == out["top"][0]["count"] and len(out["top"]) == 5
    assert out["mean_abs_log_ratio"] < out["mean_abs_log_ratio_independent"]


def test_information_matches_definitions():
    h, J = _random_model(9, 5)
    spins = _sample(10, h, J, 50_000)
    out = checks.information(np.stack([h, h]), np.stack([J, J]), spins)
    states, prob = _brute(h, J)
    s2 = -np.sum(prob * np.log(prob))
    m = prob @ states
    p = (1 + m) / 2
    s1_model = -np.sum(p * np.log(p) + (1 - p) * np.log(1 - p))
    pd = stats.firing_probability(spins)
    s1 = -np.sum(pd * np.log(pd) + (1 - pd) * np.log(1 - pd))
    sn = stats.data_entropy(spins).miller_madow
    assert out["S2"]["median"] == pytest.approx(s2, abs=1e-10)
    assert out["S1"] == pytest.approx(s1, abs=1e-12)
    assert out["SN"] == pytest.approx(sn)
    assert out["ratio"]["median"] == pytest.approx((s1_model - s2) / (s1 - sn), rel=1e-9)
    # data drawn from a pairwise model: the pairwise model captures all the multi-information
    # (up to the sampling error of SN, T = 50,000, 32 states)
    assert out["ratio"]["median"] == pytest.approx(1.0, abs=0.05)
    assert out["SN_reliable"] and "Miller-Madow" in out["note"]


def test_independent_model_has_zero_multi_information():
    spins = _sample(11, *_random_model(12, 4, scale_j=0.0), 5000)
    m = stats.moments(spins).m
    out = checks.information(np.arctanh(m)[None], np.zeros((1, 4, 4)), spins)
    assert out["I2"]["median"] == pytest.approx(0.0, abs=1e-12)


def test_parameter_draws_layout():
    import xarray as xr

    ids = np.array(["a", "b", "c"])
    first, second = np.triu_indices(3, 1)
    j_flat = np.arange(2 * 4 * 3, dtype=float).reshape(2, 4, 3)
    tree = xr.DataTree.from_dict({"posterior": xr.Dataset(
        {"h": (("chain", "draw", "neuron"), np.zeros((2, 4, 3))),
         "J": (("chain", "draw", "pair"), j_flat)},
        coords={"neuron": ids, "pair": np.arange(3), "neuron_i": ("pair", ids[first]),
                "neuron_j": ("pair", ids[second])})})
    h, J = checks.parameter_draws(tree)
    assert h.shape == (8, 3) and J.shape == (8, 3, 3)
    np.testing.assert_array_equal(J[5], J[5].T)
    assert J[5, 0, 2] == j_flat[1, 1, 1] and np.all(np.diagonal(J, axis1=1, axis2=2) == 0)
    assert checks.parameter_draws(tree, 3)[0].shape == (3, 3)


def test_retina_information_ratio_exact(retina_path):
    """I2/IN on retina15.mat from the exact maximum-likelihood fit (S2 by enumeration)."""
    import warnings

    from bayes_ising import data
    from bayes_ising.fit import mle

    spins = data.load(retina_path).spins
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = mle.fit_exact(spins, l2=1e-4)  # two pairs never fire together: a small L2
    out = checks.information(fit.h[None], fit.J[None], spins)
    assert out["SN_reliable"]
    # pairwise models capture most of the multi-information of retinal populations
    # (Schneidman et al. 2006: ~90% at N = 10); here with Miller-Madow SN
    assert 0.6 < out["ratio"]["median"] < 0.95
    assert out["ratio_plugin"]["median"] < out["ratio"]["median"]  # plug-in SN biased low
    assert out["S2"]["median"] < out["S1"]


@pytest.mark.slow
def test_retina_posterior_checks(retina_path):
    """Exact NUTS posterior on retina15: I2/IN interval, P(K), rare neurons flagged."""
    from bayes_ising import data
    from bayes_ising.fit import bayes

    spikes = data.load(retina_path)
    tree = bayes.fit_posterior(jax.random.key(0), spikes, num_chains=4, num_draws=1000,
                               progress=False)
    out = checks.posterior_predictive_checks(jax.random.key(1), tree, spikes.spins,
                                             num_draws=100, third_order_draws=20)
    ratio = out["information"]["ratio"]
    assert 0.6 < ratio["lower"] < ratio["median"] < ratio["upper"] < 0.95
    assert out["synchrony"]["max_abs_log_ratio"] < out["synchrony"][
        "max_abs_log_ratio_independent"]
    # the rarely firing neurons are flagged (weak identification); none above 5% is
    from bayes_ising.analysis import diagnostics

    diag = diagnostics.diagnose(tree)
    assert diag["converged"], diag["reasons"]
    for row in diag["neurons"]:
        if row["firing_probability"] < 0.006:
            assert row["flagged"] and row["weak_identification"], row
        if row["firing_probability"] > 0.05:
            assert not row["flagged"], row


def test_cli_check_keys_and_exit_codes(tmp_path, capsys):
    """check on a 6-neuron E/I posterior (draws near the truth) and its data (npz)."""
    import json

    import xarray as xr

    from bayes_ising.cli import main
    from bayes_ising.fit import bayes

    n = 6
    h, J = _random_model(13, n, scale_j=0.3)
    spins = _sample(14, h, J, 5000)
    ids = np.array([f"c{i}" for i in range(n)])
    types = np.array(["E", "E", "E", "I", "I", "I"])  # equal sizes: one MLE compilation
    first, second = np.triu_indices(n, 1)
    rng = np.random.default_rng(15)
    tree = xr.DataTree.from_dict({"posterior": xr.Dataset(
        {"h": (("chain", "draw", "neuron"), h + 0.02 * rng.normal(size=(2, 50, n))),
         "J": (("chain", "draw", "pair"), J[first, second] + 0.02 * rng.normal(size=(2, 50, 15)))},
        coords={"neuron": ids, "cell_type": ("neuron", types), "pair": np.arange(15),
                "neuron_i": ("pair", ids[first]), "neuron_j": ("pair", ids[second])})})
    tree.attrs["bayes_ising_version"] = "test"
    posterior = tmp_path / "post.nc"
    bayes.save_posterior(tree, posterior)
    data_path = tmp_path / "data.npz"
    np.savez(data_path, raster=(spins > 0).astype(np.uint8), neuron_ids=ids, cell_types=types)
    out = tmp_path / "checks.json"
    assert main(["check", str(posterior), str(data_path), "--out", str(out),
                 "--draws", "20"]) == 0
    result = json.loads(out.read_text())
    assert {"synchrony", "patterns", "third_order", "information", "ei"} <= set(result)
    sync = result["synchrony"]
    assert len(sync["observed"]) == n + 1 and set(sync["predicted"]) >= {"median", "lower",
                                                                          "upper"}
    ratio = result["information"]["ratio"]
    assert ratio["lower"] <= ratio["median"] <= ratio["upper"]
    assert set(result["ei"]) == {"E", "I"}
    assert set(result["ei"]["E"]["log_ratio_population_only"]) >= {"median", "lower", "upper"}
    assert "I2/IN" in capsys.readouterr().out
    assert main(["check", str(posterior), str(data_path), "--out", str(out)]) == 2  # exists
    np.savez(data_path, raster=(spins[:, :4] > 0).astype(np.uint8), neuron_ids=ids[:4])
    assert main(["check", str(posterior), str(data_path), "--out", str(out), "--force"]) == 2
    assert "lack 2 of the posterior's neurons" in capsys.readouterr().err


@pytest.mark.slow
def test_gibbs_checks_agree_with_exact():
    """The large-N path (Gibbs samples) reproduces exact P(K) and pattern probabilities."""
    h, J = _random_model(7, 5)
    spins = _sample(8, h, J, 20_000)
    hs, Js = np.stack([h] * 3), np.stack([J] * 3)
    exact = checks.pattern_frequencies(jax.random.key(0), h[None], J[None], spins)
    gibbs = checks.pattern_frequencies(jax.random.key(0), hs, Js, spins, method="gibbs",
                                       num_samples=50_000)
    # 3 × 50,000 correlated samples: sd of a frequency <= ~0.004
    np.testing.assert_allclose(gibbs["predicted"]["mean"], exact["predicted"]["mean"],
                               atol=0.01)
    sync_exact = checks.predictive_synchrony(jax.random.key(0), h[None], J[None], spins)
    sync_gibbs = checks.predictive_synchrony(jax.random.key(0), hs, Js, spins, method="gibbs",
                                             num_samples=50_000)
    np.testing.assert_allclose(sync_gibbs["predicted"]["mean"], sync_exact["predicted"]["mean"],
                               atol=0.01)


def test_sampled_third_order_equals_the_stats_routine():
    """The jitted float32 third-order sum (Gibbs path) equals the float64 one to rounding,
    also when the sample count is not a multiple of the chunk."""
    from bayes_ising.analysis import checks
    from bayes_ising.core import stats

    rng = np.random.default_rng(3)
    x = np.where(rng.random((5000, 9)) < 0.3, 1, -1).astype(np.int8)
    x[:, 1] = x[:, 0] * np.where(rng.random(5000) < 0.8, 1, -1)
    np.testing.assert_allclose(checks._sampled_third_order(x, chunk_size=1024),
                               stats.third_order_correlations(x), atol=1e-5)
