"""The fair comparison with the study's method (comparison.compare_mle, walk.sample_walks).

Fast: the walks' diagnostics are in the result (and compare-mle's JSON) and an unconverged walk
is labelled so. Slow: on retina15.mat (exact likelihood, l2 = 1e-3) the converged walks'
median interval widths agree with NUTS within Monte Carlo error for the neurons that fire in
>= 5% of bins.
"""

import json

import numpy as np
import pytest

from bayes_ising.fit import walk


def test_walks_reach_the_evidence_on_a_gaussian():
    import jax
    import jax.numpy as jnp

    rng = np.random.default_rng(0)
    A = rng.normal(size=(6, 6))
    covariance = A @ A.T / 6 + 0.2 * np.eye(6)
    precision = jnp.asarray(np.linalg.inv(covariance))
    draws, info = walk.sample_walks(jax.random.key(1), lambda x: -0.5 * x @ precision @ x,
                                    np.zeros(6), 1.5 * covariance, keep=400)
    assert info["converged"] and info["stopped"] == "evidence reached"
    assert info["max_rhat"] <= 1.01 and min(info["min_ess_bulk"], info["min_ess_tail"]) >= 400
    sd = draws.reshape(-1, 6).std(axis=0) / np.sqrt(np.diag(covariance))
    np.testing.assert_allclose(sd, 1.0, atol=0.15)  # ESS >= 400: sd within ~4 MC errors
    assert draws.shape[1] <= 400  # memory: at most `keep` draws per walk, whatever the length


def test_walk_time_budget_is_kept_before_the_first_diagnostic():
    import jax

    # 50 dimensions: the first diagnostic would come after 16 · 50 = 800 steps per walk; a
    # budget of 0 s must stop after the first chunk of 100 kept draws and say so.
    draws, info = walk.sample_walks(jax.random.key(2), lambda x: -0.5 * x @ x, np.zeros(50),
                                    np.eye(50), keep=100, max_seconds=0.0)
    assert info["stopped"] == "budget: max_seconds 0" and not info["converged"]
    assert info["num_steps"] == 100 and draws.shape[1] == 50


@pytest.mark.parametrize("method", ["exact", "pseudo"])
def test_walk_curvature_closed_form_equals_autodiff(method):
    """The walk's covariance guess comes from the closed-form −∇² log π (T·F or the
    pseudolikelihood's one-pass Hessian, plus T·l2 on J): equal to autodiff of the density."""
    import jax
    import jax.numpy as jnp

    from bayes_ising.analysis import comparison

    rng = np.random.default_rng(5)
    spins = np.where(rng.random((400, 5)) < 0.3, 1.0, -1.0)
    theta = jnp.asarray(rng.normal(scale=0.3, size=15))
    if method == "exact":
        density = comparison._log_density(spins, method, 0.01)
    else:  # the walk's density sweeps in float32: differentiate the float64 one
        from bayes_ising.core import ising, stats

        patterns, counts = stats.unique_patterns(spins)

        def density(t):
            h, J = ising.unpack(t, 5)
            return (ising.log_pseudolikelihood(h, J, patterns, counts)
                    - 0.5 * 0.01 * 400 * jnp.sum(t[5:] ** 2))
    reference = -np.asarray(jax.hessian(density)(theta))
    np.testing.assert_allclose(comparison._neg_hessian(spins, method, 0.01, theta), reference,
                               rtol=1e-9, atol=1e-8 * np.abs(reference).max())


def test_walk_log_density_float32_sweep_changes_nothing_a_metropolis_step_sees():
    """The walk's pseudolikelihood runs its sweep in float32 (accumulated in float64): against
    float64 at random points near the MLE, the log density and its differences between points
    (what Metropolis decides on) agree to < 0.02 on a 30-neuron, 20,000-bin raster."""
    import jax.numpy as jnp

    from bayes_ising.analysis import comparison
    from bayes_ising.core import ising, stats
    from bayes_ising.core import pseudolikelihood as pl

    rng = np.random.default_rng(7)
    drive = rng.random(20_000) < 0.2
    spins = np.where(rng.random((20_000, 30)) < np.where(drive[:, None], 0.35, 0.08), 1.0, -1.0)
    density = comparison._log_density(spins, "pseudo", 0.0)
    data = pl.prepare(*stats.unique_patterns(spins))
    values, references = [], []
    for _ in range(6):
        theta = jnp.asarray(rng.normal(scale=0.2, size=30 + 435))
        h, J = ising.unpack(theta, 30)
        values.append(float(density(theta)))
        references.append(float(pl.log_pseudolikelihood(h, J, data)))
    values, references = np.array(values), np.array(references)
    assert np.max(np.abs(values - references)) < 0.02
    assert np.max(np.abs(np.diff(values) - np.diff(references))) < 0.02


@pytest.fixture(scope="module")
def small_case(tmp_path_factory):
    import jax

    from bayes_ising.data import SpikeData
    from bayes_ising.fit import bayes

    rng = np.random.default_rng(2)
    drive = rng.random(3000) < 0.3
    p = np.where(drive[:, None], 0.4, 0.1)
    data = SpikeData.from_raster((rng.random((3000, 4)) < p).astype(np.int8))
    tree = bayes.fit_posterior(jax.random.key(0), data, likelihood="exact", num_chains=2,
                               num_draws=300, num_warmup=100, progress=False)
    return data, tree


def test_compare_mle_reports_the_walks_and_labels_unconverged(small_case):
    import jax

    from bayes_ising._io import to_jsonable
    from bayes_ising.analysis import comparison

    data, tree = small_case
    short = comparison.compare_mle(jax.random.key(0), tree, data, l2=1e-3, walk_draws=60,
                                   num_restarts=0)
    walk_info = short["adaptive_metropolis"]
    for key in ("converged", "max_rhat", "min_ess_bulk", "min_ess_tail", "num_chains",
                "num_draws", "num_logdensity_evals", "label", "history"):
        assert key in walk_info, key
    assert not walk_info["converged"] and "UNCONVERGED" in walk_info["label"]
    assert "too narrow" in short["verdict"]
    json.dumps(to_jsonable(short))  # JSON-able as written by compare-mle


@pytest.mark.slow
def test_compare_mle_converges_on_small_data(small_case):
    import jax

    from bayes_ising.analysis import comparison

    data, tree = small_case
    full = comparison.compare_mle(jax.random.key(0), tree, data, l2=1e-3, num_restarts=0)
    assert full["adaptive_metropolis"]["converged"], full["adaptive_metropolis"]["history"]
    assert full["verdict"].startswith("At equal evidence")
    assert full["cost"]["walk"]["logdensity_evals_per_effective_draw"] > 0
    assert full["cost"]["nuts"]["gradient_evals_per_effective_draw"] > 0
    assert {"h_busy", "J_busy", "a_busy", "J_never_cofire"} <= set(full["groups"])
    columns = comparison.lattice_gas_columns(full["parameters"], 4)
    np.testing.assert_allclose(np.asarray(columns["mle_upper"])[4:],
                               4 * np.asarray(full["parameters"]["mle_upper"])[4:])


@pytest.mark.long
def test_retina_converged_walk_widths_agree_with_nuts(retina_path):
    """Tolerance: |median width ratio − 1| ≤ 3 × its Monte Carlo error (groups' ``mc_error``,
    rule in comparison.group_comparison) + 0.02 (the L2 prior of the walk, sd 1/√(l2·T) = 0.16
    on J, against the posterior's Normal(0, 1): it narrows a coupling of posterior sd 0.02 by
    < 1%), for the couplings among neurons firing in ≥ 5% of bins and their 0/1 fields."""
    import jax

    from bayes_ising.analysis import comparison
    from bayes_ising.data import load
    from bayes_ising.fit import bayes

    data = load(retina_path)
    tree = bayes.fit_posterior(jax.random.key(0), data, likelihood="exact", progress=False)
    result = comparison.compare_mle(jax.random.key(1), tree, data, l2=1e-3, num_restarts=0,
                                    max_walk_draws=400_000, max_walk_seconds=None)
    walk_info = result["adaptive_metropolis"]
    assert walk_info["converged"], walk_info["history"]
    for group in ("J_busy", "a_busy"):
        numbers = result["groups"][group]
        tolerance = 3 * numbers["mc_error"] + 0.02
        assert abs(numbers["median_width_ratio"] - 1) <= tolerance, (group, numbers)
