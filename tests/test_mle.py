"""Maximum-likelihood fits: closed forms, exact moment matching, recovery of planted
parameters, pseudolikelihood consistency, Boltzmann learning, adaptive Metropolis, boundary
data, reliability, the ``mle`` CLI verb.

Tolerances are stated where they are used; every random test has a fixed seed.
"""

import json
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pl_reference
import pytest

from bayes_ising.cli import main
from bayes_ising.core import gibbs, ising, stats
from bayes_ising.core import pseudolikelihood as pl
from bayes_ising.data import SpikeData
from bayes_ising.fit import mle
from bayes_ising.fit.mle import MLEWarning


def sample_exact(rng_key, h, J, num_bins):
    """Exact samples of the model: categorical over all 2^N states (N small), drawn by
    inverting the cumulative distribution at uniform variates."""
    states = ising.all_states(h.shape[0])
    log_p = ising.log_probability(states, jnp.asarray(h), jnp.asarray(J))
    cdf = np.cumsum(np.exp(np.asarray(log_p, np.float64)))
    uniforms = np.asarray(jax.random.uniform(rng_key, (num_bins,), jnp.float64)) * cdf[-1]
    index = np.minimum(np.searchsorted(cdf, uniforms, side="right"), cdf.size - 1)
    return np.asarray(states)[index]


def planted(rng_key, num_neurons, field_mean=-0.8, field_sd=0.3, coupling_sd=0.3):
    key_h, key_j = jax.random.split(rng_key)
    h = field_mean + field_sd * jax.random.normal(key_h, (num_neurons,))
    j_flat = coupling_sd * jax.random.normal(key_j, (ising.num_pairs(num_neurons),))
    return np.asarray(h), np.asarray(ising.couplings_to_matrix(j_flat, num_neurons))


def two_neuron_closed_form(spins):
    """N = 2: 4J = log(p++ p-- / (p+- p-+)), 4h1 = log(p++ p+- / (p-+ p--)), ..."""
    s1, s2 = spins[:, 0], spins[:, 1]
    p = {(a, b): np.mean((s1 == a) & (s2 == b)) for a in (1, -1) for b in (1, -1)}
    J = 0.25 * np.log(p[1, 1] * p[-1, -1] / (p[1, -1] * p[-1, 1]))
    h1 = 0.25 * np.log(p[1, 1] * p[1, -1] / (p[-1, 1] * p[-1, -1]))
    h2 = 0.25 * np.log(p[1, 1] * p[-1, 1] / (p[1, -1] * p[-1, -1]))
    return np.array([h1, h2]), J


# ---------------------------------------------------------------------------------------------
# closed forms
# ---------------------------------------------------------------------------------------------


def test_two_neurons_closed_form():
    h_true = np.array([-0.4, 0.2])
    J_true = np.array([[0.0, 0.5], [0.5, 0.0]])
    spins = sample_exact(jax.random.PRNGKey(0), h_true, J_true, 5000)
    h_expected, j_expected = two_neuron_closed_form(spins)
    fit = mle.fit_exact(spins, tol=1e-12)
    assert fit.converged and fit.method == "exact"
    np.testing.assert_allclose(fit.h, h_expected, atol=1e-9)
    np.testing.assert_allclose(fit.J[0, 1], j_expected, atol=1e-9)
    assert fit.J[1, 0] == fit.J[0, 1] and np.all(np.diag(fit.J) == 0)

    independent = mle.fit_independent(spins)
    np.testing.assert_allclose(independent.h, np.arctanh(spins.mean(axis=0)), atol=1e-12)
    assert np.all(independent.J == 0)
    assert independent.moment_error["max_abs_mean"] < 1e-12


# ---------------------------------------------------------------------------------------------
# exact MLE
# ---------------------------------------------------------------------------------------------


def test_exact_mle_retina_reaches_tolerance_and_names_boundary_pairs(retina_path):
    """retina15.mat: pairs (1, 11) and (10, 11) never fire together, so J -> -inf there.

    Default (l2 = 0): the fit warns naming both pairs and still reproduces every data moment to
    1e-6 (the two couplings are as negative as the tolerance requires). With l2 > 0 the
    couplings are finite MAP values and the gradient (moments + l2 J) vanishes instead.
    """
    from bayes_ising.data import load

    data = load(retina_path)
    with pytest.warns(MLEWarning, match=r"never fire together.*\(1, 11\), \(10, 11\)"):
        fit = mle.fit_exact(data)
    assert fit.converged
    assert fit.moment_error["max_abs_mean"] <= 1e-6
    assert fit.moment_error["max_abs_pair"] <= 1e-6
    assert sorted(map(tuple, fit.settings["boundary_pairs"])) == [("1", "11", "++"),
                                                                 ("10", "11", "++")]
    # the boundary couplings are the most negative ones
    assert fit.J[1, 11] < -1.0 and fit.J[10, 11] < -1.0
    m_model, Q_model = ising.exact_moments(fit.h, fit.J)
    observed = stats.moments(data.spins)
    np.testing.assert_allclose(m_model, observed.m, atol=1e-6)
    np.testing.assert_allclose(Q_model, observed.Q, atol=1e-6)

    l2 = 1e-3
    with pytest.warns(MLEWarning, match="L2 penalty"):
        penalised = mle.fit_exact(data, l2=l2)
    assert penalised.converged and np.all(np.isfinite(penalised.J))
    # stationarity of the penalised objective: Q_model - Q_data + l2 J = 0 for every pair
    m_model, Q_model = ising.exact_moments(penalised.h, penalised.J)
    i, j = ising.pair_indices(15)
    np.testing.assert_allclose(Q_model[i, j] - observed.Q[i, j] + l2 * penalised.J[i, j], 0,
                               atol=1e-6)
    assert penalised.J[1, 11] > fit.J[1, 11]


def test_exact_mle_synthetic_matches_moments_and_recovers_planted():
    """Planted N = 6 model, T = 200,000 exact samples.

    Moments reproduced to 1e-6; every parameter within 4.5 standard errors of the truth, the
    standard errors from the inverse Fisher information / T (Bonferroni over 21 parameters at
    about 1e-5 per parameter).
    """
    num_neurons, num_bins = 6, 200_000
    h_true, J_true = planted(jax.random.PRNGKey(1), num_neurons)
    spins = sample_exact(jax.random.PRNGKey(2), h_true, J_true, num_bins)
    fit = mle.fit_exact(spins)
    assert fit.converged and not fit.warnings
    assert fit.moment_error["max_abs_mean"] <= 1e-6
    assert fit.moment_error["max_abs_pair"] <= 1e-6
    fisher = np.asarray(ising.fisher_information(h_true, J_true))
    standard_error = np.sqrt(np.diag(np.linalg.inv(fisher)) / num_bins)
    z = (fit.theta - np.asarray(ising.pack(h_true, J_true))) / standard_error
    assert np.max(np.abs(z)) < 4.5, np.max(np.abs(z))
    # and the errors are not suspiciously small either (the estimator has noise)
    assert 0.5 < np.std(z) < 1.6


def test_exact_accepts_moments_and_float64_result():
    h_true, J_true = planted(jax.random.PRNGKey(3), 6)
    spins = sample_exact(jax.random.PRNGKey(4), h_true, J_true, 20_000)
    from_spins = mle.fit_exact(spins)
    from_moments = mle.fit_exact(stats.moments(spins))
    np.testing.assert_allclose(from_moments.theta, from_spins.theta, atol=1e-10)
    assert from_spins.h.dtype == np.float64 and from_spins.J.dtype == np.float64


def test_exact_refuses_too_many_neurons():
    from bayes_ising.errors import TooManyNeuronsError

    spins = np.where(np.random.default_rng(0).random((100, 23)) < 0.3, 1, -1).astype(np.int8)
    with pytest.raises(TooManyNeuronsError, match="N <= 22"):
        mle.fit_exact(spins)


# ---------------------------------------------------------------------------------------------
# pseudolikelihood
# ---------------------------------------------------------------------------------------------


def test_pseudo_converges_to_exact_mle_as_bins_grow():
    """Both estimators are consistent: |θ_PL − θ_ML| shrinks like 1/sqrt(T).

    From T = 2,000 to 200,000 the expected shrink is 10×; we require at least 3× and a
    monotone decrease across the three sizes (same planted N = 6 model, fixed seeds).
    """
    h_true, J_true = planted(jax.random.PRNGKey(5), 6, coupling_sd=0.4)
    gaps = []
    for k, num_bins in enumerate((2_000, 20_000, 200_000)):
        spins = sample_exact(jax.random.PRNGKey(10 + k), h_true, J_true, num_bins)
        exact = mle.fit_exact(spins)
        pseudo = mle.fit_pseudo(spins)
        assert pseudo.converged and pseudo.moment_error["source"] == "exact"
        gaps.append(np.max(np.abs(pseudo.theta - exact.theta)))
    assert gaps[0] > gaps[1] > gaps[2], gaps
    assert gaps[2] < gaps[0] / 3, gaps
    assert gaps[2] < 0.02, gaps


def test_pseudo_gradient_vanishes_at_optimum():
    """Independent check of the optimum with ising's closed-form PL gradient."""
    h_true, J_true = planted(jax.random.PRNGKey(6), 6)
    spins = sample_exact(jax.random.PRNGKey(7), h_true, J_true, 10_000)
    fit = mle.fit_pseudo(spins, l2=1e-3)
    patterns, counts = stats.unique_patterns(spins)
    grad = np.asarray(ising.log_pseudolikelihood_grad(fit.h, fit.J, patterns, counts))
    grad = grad / spins.shape[0]
    grad[6:] -= 1e-3 * fit.theta[6:]  # d/dJ of −(l2/2) J² per bin
    assert np.max(np.abs(grad)) < 1e-6


def test_pseudo_fused_value_and_grad_matches_autodiff_and_ising():
    """The closed-form value+grad (pseudolikelihood module) equals autodiff of the objective
    written with the tests' reference pseudolikelihood, in the preconditioned 0/1
    coordinates, with L2."""
    h_true, J_true = planted(jax.random.PRNGKey(8), 7)
    spins = sample_exact(jax.random.PRNGKey(9), h_true, J_true, 3_000)
    patterns, counts = stats.unique_patterns(spins)
    observed = stats.moments(spins)
    scale = jnp.asarray(mle._lattice_gas_scale(observed.m, observed.Q, observed.num_bins))
    theta = jnp.asarray(np.random.default_rng(0).normal(0.0, 0.5, 7 + 21))
    psi = mle._to_lattice_gas(theta, 7) * scale
    value, grad = mle._pseudo_value_and_grad(psi, pl.prepare(patterns, counts),
                                             jnp.float64(0.3), scale, 7)

    def objective(x):  # the tests' reference pseudolikelihood, autodiff, per bin, with L2
        t = mle._from_lattice_gas(x / scale, 7)
        h, J = ising.unpack(t, 7)
        return (-pl_reference.log_pseudolikelihood(h, J, jnp.asarray(patterns, jnp.float64),
                                                   counts) / counts.sum()
                + 0.15 * t[7:] @ t[7:])

    ref_value, ref_grad = jax.value_and_grad(objective)(psi)
    np.testing.assert_allclose(float(value), float(ref_value), rtol=1e-12)
    np.testing.assert_allclose(np.asarray(grad), np.asarray(ref_grad), rtol=1e-9, atol=1e-12)


# ---------------------------------------------------------------------------------------------
# boundary data
# ---------------------------------------------------------------------------------------------


def test_silent_and_always_on_neurons_are_finite_with_warning():
    rng = np.random.default_rng(8)
    spins = np.where(rng.random((3000, 6)) < 0.2, 1, -1).astype(np.int8)
    spins[:, 1] = -1  # silent
    spins[:, 3] = 1  # always on
    ids = ["a", "silent", "c", "on", "e", "f"]
    data = SpikeData.from_raster(spins, neuron_ids=ids)
    for fit_fn in (mle.fit_independent, mle.fit_exact, mle.fit_pseudo):
        with pytest.warns(MLEWarning) as record:
            fit = fit_fn(data)
        text = " ".join(str(w.message) for w in record)
        assert "silent" in text and "on" in text, text
        assert np.all(np.isfinite(fit.h)) and np.all(np.isfinite(fit.J))
        assert fit.h[1] < -3 and fit.h[3] > 3
        assert np.all(fit.J[1] == 0) and np.all(fit.J[:, 3] == 0)
        assert fit.moment_error["max_abs_mean"] < 1e-3
        assert not np.isnan(list(v for v in fit.moment_error.values()
                                 if isinstance(v, float))).any()


def test_boundary_report_names_every_empty_cell():
    # neuron 0 fires only when 1 fires (+- empty), 2 and 3 never together (++ empty)
    spins = -np.ones((8, 4), np.int8)
    spins[0, [0, 1]] = 1
    spins[1, 1] = 1
    spins[2, 2] = 1
    spins[3, 3] = 1
    spins[4, [1, 2]] = 1
    spins[5, [1, 3]] = 1
    spins[6, [0, 1, 3]] = 1
    spins[7, [0, 1, 2]] = 1
    report = mle.boundary_report(spins)
    assert (0, 1, "+-") in report["pairs"]
    assert (2, 3, "++") in report["pairs"]
    assert report["silent"] == [] and report["always_on"] == []


# ---------------------------------------------------------------------------------------------
# Boltzmann learning and the sampling check
# ---------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_boltzmann_matches_exact_mle_n12():
    """N = 12, T = 20,000: Boltzmann learning (started from the pseudolikelihood) lands within
    4 standard errors (inverse Fisher / T) of the exact MLE in every parameter, with exact
    moment errors below 0.02 (about 4 data standard errors)."""
    h_true, J_true = planted(jax.random.PRNGKey(20), 12, field_mean=-1.0, coupling_sd=0.2)
    spins = sample_exact(jax.random.PRNGKey(21), h_true, J_true, 20_000)
    exact = mle.fit_exact(spins)
    fit = mle.fit_boltzmann(jax.random.PRNGKey(22), spins)
    assert fit.converged and fit.method == "boltzmann"
    assert fit.moment_error["max_abs_mean"] < 0.02
    assert fit.moment_error["max_abs_pair"] < 0.02
    fisher = np.asarray(ising.fisher_information(exact.h, exact.J))
    standard_error = np.sqrt(np.diag(np.linalg.inv(fisher)) / spins.shape[0])
    assert np.max(np.abs(fit.theta - exact.theta) / standard_error) < 4.0


@pytest.mark.slow
def test_boltzmann_repairs_degenerate_pseudolikelihood_fit_ei_sleep():
    """The previous embedded E/I dataset (``ei_sleep_kinetic``), 32 E neurons in deep sleep
    (T = 20,000, strong shared up/down
    input): the pseudolikelihood MLE is a poor model of the data — Gibbs chains from random
    states and from data rows both settle at about 2.5 times the data's mean activity
    (max |Δm| ≈ 0.45). Boltzmann learning started from it converges, and the sampling check
    from both kinds of start then reproduces the data (max |Δm|, max |ΔC| < 0.025, about
    3–4 data standard errors plus the check's own Monte Carlo error)."""
    from bayes_ising.data import datasets

    spins = datasets.ei_sleep_kinetic().select(population="E", state="deep")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MLEWarning)
        pseudo = mle.fit_pseudo(spins, check_moments=False)
        before = mle.model_check(jax.random.PRNGKey(40), pseudo.h, pseudo.J, spins,
                                 num_sweeps=400, burn_in=200)
        fit = mle.fit_boltzmann(jax.random.PRNGKey(41), spins, init=pseudo)
    assert before["verdict"] != "ok"
    assert before["data_start"]["max_abs_mean"] > 0.2
    assert fit.converged, fit.settings["history"]
    after = mle.model_check(jax.random.PRNGKey(42), fit.h, fit.J, spins, num_sweeps=600,
                            burn_in=300)
    assert after["verdict"] == "ok", after
    for start in ("random_start", "data_start"):
        assert after[start]["max_abs_mean"] < 0.025
        assert after[start]["max_abs_connected"] < 0.025
        assert abs(after[start]["mean_activity"] - after["data"]["mean_activity"]) < 0.01


def test_boltzmann_refines_a_poor_start_n6():
    """From the independent model (J = 0) the preconditioned, Polyak-averaged stages reach the
    exact MLE's moments within sampling noise (N = 6, fast settings)."""
    h_true, J_true = planted(jax.random.PRNGKey(23), 6, field_mean=-0.7, coupling_sd=0.4)
    spins = sample_exact(jax.random.PRNGKey(24), h_true, J_true, 5_000)
    start = mle.fit_independent(spins)
    fit = mle.fit_boltzmann(jax.random.PRNGKey(25), spins, init=start, num_chains=256,
                            iterations_per_stage=500, check_sweeps=400, check_burn_in=100)
    assert fit.converged, fit.settings["history"]
    assert fit.iterations <= 3 * 500  # converged within the three default rates
    start_error = start.moment_error["max_abs_connected"]
    assert fit.moment_error["max_abs_connected"] < start_error / 3
    # within 5 standard errors (inverse Fisher / T) of the exact MLE in every parameter
    exact = mle.fit_exact(spins)
    fisher = np.asarray(ising.fisher_information(exact.h, exact.J))
    standard_error = np.sqrt(np.diag(np.linalg.inv(fisher)) / spins.shape[0])
    assert np.max(np.abs(fit.theta - exact.theta) / standard_error) < 5.0
    assert np.all(np.isfinite(fit.J)) and np.all(fit.J == fit.J.T)


def _sparse_data(seed, num_neurons=10, num_bins=4000, p=0.1):
    rng = np.random.default_rng(seed)
    return np.where(rng.random((num_bins, num_neurons)) < p, 1, -1).astype(np.int8)


def test_model_check_names_all_active_degenerate_model():
    """h = 0.5, J = 0.1 (N = 10) has mean activity ≈ 0.9 from any start; the data (10% active)
    are nothing like it."""
    spins = _sparse_data(30)
    h = np.full(10, 0.5)
    J = np.full((10, 10), 0.1) - np.diag(np.full(10, 0.1))
    m_exact, _ = ising.exact_moments(h, J)
    assert float(np.mean((1 + m_exact) / 2)) > 0.9  # the premise, by enumeration
    check = mle.model_check(jax.random.PRNGKey(31), h, J, spins, num_chains=128,
                            num_sweeps=100, burn_in=50)
    assert check["verdict"] == "degenerate: runs to an all-active state"
    assert check["data_start"]["mean_activity"] > 0.9
    json.dumps(check)


def test_model_check_names_multimodal_model_and_passes_a_good_fit():
    """h = −0.3, J = 0.3 (N = 10): two deep modes; data starts stay silent, random starts
    split between them. A fit of planted data passes."""
    spins = _sparse_data(32)
    h = np.full(10, -0.3)
    J = np.full((10, 10), 0.3) - np.diag(np.full(10, 0.3))
    check = mle.model_check(jax.random.PRNGKey(33), h, J, spins, num_chains=128,
                            num_sweeps=100, burn_in=50)
    assert check["verdict"].startswith("multimodal"), check
    h_true, J_true = planted(jax.random.PRNGKey(34), 6, coupling_sd=0.2)
    planted_spins = sample_exact(jax.random.PRNGKey(35), h_true, J_true, 10_000)
    fit = mle.fit_exact(planted_spins)
    check = mle.model_check(jax.random.PRNGKey(36), fit.h, fit.J, planted_spins,
                            num_chains=256, num_sweeps=200, burn_in=100)
    assert check["verdict"] == "ok", check


# ---------------------------------------------------------------------------------------------
# adaptive Metropolis
# ---------------------------------------------------------------------------------------------


def test_adaptive_metropolis_gaussian_covariance():
    """Correlated 3-d Gaussian: mean within 5 MCSE (batch means), covariance within 10%.

    The initial proposal is deliberately poor (isotropic, small); adaptation must find the
    target's shape. 40,000 draws after 2,000 adapting warm-up steps.
    """
    covariance = jnp.array([[1.0, 0.8, 0.0], [0.8, 2.0, -0.5], [0.0, -0.5, 0.5]])
    precision = jnp.linalg.inv(covariance)
    mean = jnp.array([1.0, -2.0, 0.5])

    def logdensity_fn(x):
        return -0.5 * (x - mean) @ precision @ (x - mean)

    draws, info = mle.adaptive_metropolis(jax.random.PRNGKey(11), logdensity_fn, jnp.zeros(3),
                                          40_000, num_warmup=2_000, return_info=True)
    draws = np.asarray(draws)
    assert draws.shape == (40_000, 3)
    assert 0.15 < float(info.acceptance_rate) < 0.5  # ~0.3 expected for d = 3 at 2.38²/d
    batches = draws.reshape(40, 1000, 3).mean(axis=1)
    mcse = batches.std(axis=0, ddof=1) / np.sqrt(40)
    assert np.all(np.abs(draws.mean(axis=0) - np.asarray(mean)) < 5 * mcse)
    np.testing.assert_allclose(np.cov(draws.T), covariance, atol=0.1 * 2.0)
    rel = np.linalg.norm(np.cov(draws.T) - covariance) / np.linalg.norm(covariance)
    assert rel < 0.1
    # the adapted proposal is s_d Cov: its shape matches the target's
    np.testing.assert_allclose(np.asarray(info.covariance) / (2.38**2 / 3), covariance,
                               atol=0.25)


def test_adaptive_metropolis_is_deterministic_and_jittable():
    logdensity_fn = lambda x: -0.5 * jnp.sum(x**2)
    a = mle.adaptive_metropolis(jax.random.PRNGKey(0), logdensity_fn, jnp.ones(2), 50)
    b = mle.adaptive_metropolis(jax.random.PRNGKey(0), logdensity_fn, jnp.ones(2), 50)
    np.testing.assert_array_equal(a, b)
    assert a.dtype == jnp.float64


# ---------------------------------------------------------------------------------------------
# reliability
# ---------------------------------------------------------------------------------------------


def test_firing_threshold_rule_by_hand():
    spins = -np.ones((100, 3), np.int8)
    spins[:5, 0] = 1  # 5% -> kept
    spins[:4, 1] = 1  # 4% -> dropped
    spins[:50, 2] = 1
    np.testing.assert_array_equal(mle.firing_threshold_rule(spins), [True, False, True])


def test_restart_reliability_table():
    """Identified parameters: every restart lands in the same place (cosine ≈ 1, all kept).
    Neuron 5 a copy of neuron 4: only J_4j + J_5j is identified, the difference keeps its
    random start, so the restarts disagree and the table flags neurons as unreliable."""
    h_true, J_true = planted(jax.random.PRNGKey(12), 6, field_mean=-0.5)
    spins = sample_exact(jax.random.PRNGKey(13), h_true, J_true, 4000)
    table = mle.restart_reliability(jax.random.PRNGKey(14), spins, num_restarts=3, cut=0.99,
                                    max_iterations=200)
    assert set(table) >= {"neurons", "mean_cosine", "min_cosine", "reliable",
                          "above_firing_threshold", "agreement", "settings"}
    assert np.all(np.asarray(table["mean_cosine"]) > 0.999), table["mean_cosine"]
    assert all(table["reliable"])
    json.dumps(table)

    spins[:, 5] = spins[:, 4]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MLEWarning)
        table = mle.restart_reliability(jax.random.PRNGKey(14), spins, num_restarts=3,
                                        cut=0.99, max_iterations=200)
    # The unidentified directions (J_i4 − J_i5 for every i, h_4 − h_5) keep their random
    # starts, so the copied pair falls below the cut — and so can its partners, whose vectors
    # contain J_i4 and J_i5 (the cosine rule cannot say which neuron is at fault).
    cos = np.asarray(table["mean_cosine"])
    assert cos[4] < 0.99 and cos[5] < 0.99, cos
    assert not table["reliable"][4] and not table["reliable"][5]


def test_restart_reliability_float32_sweep_agrees_with_float64():
    """The float32 pseudolikelihood sweep (the default) gives the float64 restarts' verdict:
    same starts, same budget, cosines within 5e-3 (N = 24, beyond enumeration; the two
    L-BFGS paths drift apart slowly, 1.6e-3 here after 100 iterations)."""
    h_true, J_true = planted(jax.random.PRNGKey(15), 24, field_mean=-1.0)
    spins = np.asarray(gibbs.sample_spins(jax.random.PRNGKey(16), h_true, J_true, 5000))
    tables = [mle.restart_reliability(jax.random.PRNGKey(17), spins, num_restarts=3,
                                      max_iterations=100, float32=f32) for f32 in (False, True)]
    assert tables[1]["settings"]["float32"] and not tables[0]["settings"]["float32"]
    for name in ("mean_cosine", "min_cosine"):
        np.testing.assert_allclose(tables[1][name], tables[0][name], atol=5e-3)
    assert tables[1]["reliable"] == tables[0]["reliable"]
    np.testing.assert_allclose(tables[1]["restart_objectives"],
                               tables[0]["restart_objectives"], rtol=1e-4)


# ---------------------------------------------------------------------------------------------
# FIT.json and the CLI
# ---------------------------------------------------------------------------------------------


def test_to_dict_layout():
    h_true, J_true = planted(jax.random.PRNGKey(15), 6)
    spins = sample_exact(jax.random.PRNGKey(16), h_true, J_true, 5000)
    layout = mle.fit_exact(spins).to_dict()
    assert {"neurons", "h", "J", "moment_error", "method", "iterations", "wall_time_s",
            "settings", "warnings"} <= set(layout)
    J = np.asarray(layout["J"])
    assert J.shape == (6, 6) and np.all(J == J.T) and np.all(np.diag(J) == 0)
    assert set(layout["moment_error"]) >= {"max_abs_mean", "max_abs_pair"}
    json.dumps(layout, allow_nan=False)


def _write_npy(tmp_path, spins, name="spins.npy"):
    path = tmp_path / name
    np.save(path, np.asarray((spins + 1) // 2, np.uint8))
    return path


def test_cli_mle_exact(tmp_path, capsys):
    h_true, J_true = planted(jax.random.PRNGKey(17), 6)
    spins = sample_exact(jax.random.PRNGKey(18), h_true, J_true, 4000)
    path = _write_npy(tmp_path, spins)
    out = tmp_path / "fit.json"
    code = main(["mle", str(path), "--method", "exact", "--out", str(out),
                 "--restarts", "2", "--adaptive-mcmc", "200"])
    assert code == 0, capsys.readouterr().err
    fit = json.loads(out.read_text())
    assert {"neurons", "h", "J", "moment_error", "method", "iterations", "wall_time_s",
            "settings", "warnings", "reliability", "adaptive_mcmc"} <= set(fit)
    assert fit["method"] == "exact" and len(fit["h"]) == 6
    assert fit["moment_error"]["max_abs_mean"] <= 1e-6
    assert np.asarray(fit["adaptive_mcmc"]["J_interval"]).shape == (6, 6, 2)
    assert len(fit["reliability"]["mean_cosine"]) == 6
    # existing output without --force: exit 2, one line naming the file
    assert main(["mle", str(path), "--out", str(out)]) == 2
    assert "exists" in capsys.readouterr().err
    assert main(["mle", str(path), "--method", "independent", "--out", str(out),
                 "--force"]) == 0
    assert json.loads(out.read_text())["method"] == "independent"


def test_cli_mle_exact_refuses_large_n(tmp_path, capsys):
    spins = np.where(np.random.default_rng(1).random((200, 23)) < 0.2, 1, -1)
    path = _write_npy(tmp_path, spins)
    code = main(["mle", str(path), "--method", "exact", "--out", str(tmp_path / "f.json")])
    assert code == 2
    err = capsys.readouterr().err
    assert "N <= 22" in err and "N = 23" in err
    assert not (tmp_path / "f.json").exists()


def test_repeated_sampling_reuses_compiled_code():
    """model_check / fit_boltzmann call the Gibbs sampler many times with new parameters and
    the same shapes: no call after the first may build or trace a new runner."""
    from bayes_ising.core import gibbs

    h, J = planted(jax.random.PRNGKey(50), 5)
    kwargs = {"num_chains": 32, "num_sweeps": 20, "burn_in": 10}
    gibbs.sample_moments(jax.random.PRNGKey(0), h, J, **kwargs)
    runners = gibbs._make_runner.cache_info()
    runner = gibbs._make_runner((32, 1, "systematic", False, "hash", None), 20, 1, True, False,
                                gibbs._num_groups(32))
    traced = runner._cache_size()
    for k in range(1, 3):
        gibbs.sample_moments(jax.random.PRNGKey(k), h + 0.1 * k, J * (1 + k), **kwargs)
    assert gibbs._make_runner.cache_info().misses == runners.misses
    assert runner._cache_size() == traced == 1
    # the model check's simulation and fit_boltzmann's learning chunks: one compile per shape
    from bayes_ising.fit import validity

    check = {"num_chains": 32, "num_sweeps": 20, "burn_in": 10}
    validity.simulate_moments(jax.random.PRNGKey(1), h, J, **check)
    size = validity._simulate._cache_size()
    validity.simulate_moments(jax.random.PRNGKey(2), h + 0.1, 2 * J, **check)
    assert validity._simulate._cache_size() == size
    spins = jnp.ones((32, 5), jnp.float32)
    phi = mle._to_lattice_gas(ising.pack(jnp.asarray(h), jnp.asarray(J)), 5)
    learn = dict(target=jnp.full(phi.shape, 0.2), variance=jnp.full(phi.shape, 0.16),
                 l2=jnp.float64(0.0), max_step=jnp.float64(0.5), num_iterations=5,
                 num_sweeps=2, num_neurons=5)
    mle._learning_chunk(jax.random.PRNGKey(3), spins, phi, rate=jnp.float64(0.1), first=0,
                        **learn)
    size = mle._learning_chunk._cache_size()
    mle._learning_chunk(jax.random.PRNGKey(4), spins, phi + 0.1, rate=jnp.float64(0.01),
                        first=5, **learn)
    assert mle._learning_chunk._cache_size() == size
