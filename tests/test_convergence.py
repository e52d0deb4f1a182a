"""The one convergence rule (bayes_ising.core.convergence): thresholds, verdict, autocorrelation."""

import numpy as np
import xarray as xr

from bayes_ising.core import convergence
from bayes_ising.fit import posterior


def _tree(draws_h, draws_j, divergent=0):
    num_chains, num_draws = draws_h.shape[:2]
    diverging = np.zeros((num_chains, num_draws), bool)
    diverging.flat[:divergent] = True
    return xr.DataTree.from_dict({
        "posterior": xr.Dataset({"h": (("chain", "draw", "neuron"), draws_h),
                                 "J": (("chain", "draw", "pair"), draws_j)}),
        "sample_stats": xr.Dataset({"diverging": (("chain", "draw"), diverging)})})


def test_thresholds_are_the_documented_ones():
    assert convergence.MAX_RHAT == 1.01 and convergence.MIN_ESS == 400
    assert convergence.rule_text() == "R-hat ≤ 1.01, bulk and tail ESS ≥ 400, no divergences"


def test_verdict_of_iid_draws_then_of_a_stuck_chain_and_divergences():
    rng = np.random.default_rng(0)
    h, J = rng.normal(size=(4, 500, 3)), rng.normal(size=(4, 500, 3))
    good = posterior.mixing_verdict(_tree(h, J))
    assert good.converged and good.reasons == ()
    assert good.max_rhat < 1.01 and min(good.min_ess_bulk, good.min_ess_tail) > 1000
    J_stuck = J.copy()
    J_stuck[0, :, 1] += 3.0
    bad = posterior.mixing_verdict(_tree(h, J_stuck, divergent=3))
    assert not bad.converged and bad.num_divergent == 3
    assert bad.max_rhat > 1.1
    assert any("R-hat > 1.01" in r for r in bad.reasons)
    assert "3 of 2000 transitions diverged" in bad.reasons
    # too few effective draws: strongly autocorrelated chains
    walk = np.cumsum(rng.normal(size=(4, 500, 3)), axis=1)
    slow = posterior.mixing_verdict(_tree(walk, J))
    assert not slow.converged and slow.min_ess_bulk < 400
    assert any("bulk or tail ESS < 400" in r for r in slow.reasons)


def test_one_chain_is_not_a_verdict():
    rng = np.random.default_rng(1)
    result = posterior.mixing_verdict(_tree(rng.normal(size=(1, 2000, 2)),
                                              rng.normal(size=(1, 2000, 1))))
    assert not result.converged and np.isnan(result.max_rhat)
    assert result.reasons[0] == "only one chain: R-hat cannot detect non-convergence"


def test_autocorrelation_time_ar1_white_constant_and_stuck():
    rng = np.random.default_rng(2)
    phi = 0.8
    for num_chains in (4, 64):
        noise = rng.normal(size=(4000, num_chains, 1))
        x = np.zeros_like(noise)
        for t in range(1, x.shape[0]):
            x[t] = phi * x[t - 1] + noise[t]
        tau = convergence.integrated_autocorrelation_time(x)
        np.testing.assert_allclose(tau, (1 + phi) / (1 - phi), rtol=0.15)
    white = convergence.integrated_autocorrelation_time(rng.normal(size=(2000, 4, 3)))
    assert white.shape == (3,) and np.all((white > 0.8) & (white < 1.2))
    assert convergence.integrated_autocorrelation_time(np.ones((50, 4, 1)))[0] == 1.0
    stuck = rng.normal(size=(500, 4, 1)) * 0.1 + np.array([0, 0, 5, 5])[None, :, None]
    assert convergence.integrated_autocorrelation_time(stuck)[0] >= 500


def test_rule_failures_is_the_verdicts_rule():
    """verdict counts exactly what rule_failures flags; NaN statistics fail nothing there."""
    rhat = np.array([1.0, 1.02, np.nan, 1.005])
    bulk = np.array([500.0, 900.0, 800.0, 300.0])
    tail = np.array([450.0, 390.0, 700.0, 600.0])
    over, under = convergence.rule_failures(rhat, bulk, tail)
    assert over.tolist() == [False, True, False, False]
    assert under.tolist() == [False, True, False, True]
    mixing = convergence.verdict(rhat, bulk, tail, num_chains=4)
    assert (mixing.num_rhat_over, mixing.num_ess_under) == (1, 2) and not mixing.converged


def _ar1(rng, num_chains, num_draws, num_params, phi):
    x = np.zeros((num_chains, num_draws, num_params))
    noise = rng.normal(size=x.shape)
    for t in range(1, num_draws):
        x[:, t] = phi * x[:, t - 1] + noise[:, t]
    return x


def test_vectorised_rhat_and_ess_equal_arviz_stats():
    """draw_statistics computes all parameters at once; its numbers are arviz-stats' per-
    parameter ones (rank-normalised split R-hat, bulk ESS, tail ESS of the 5%/95% quantile
    indicators) to rounding, for even and odd draw counts, strong autocorrelation (Geyer's
    truncation and monotone sequence), ties, a constant parameter, chains with shifted means
    and one chain."""
    from arviz_stats.base import array_stats

    from bayes_ising.core import convergence

    rng = np.random.default_rng(0)
    shifted = _ar1(rng, 4, 200, 10, 0.99) + np.arange(4)[:, None, None]
    constant = _ar1(rng, 4, 500, 6, 0.9)
    constant[:, :, 3] = 1.0
    cases = [constant, _ar1(rng, 4, 501, 8, 0.0), _ar1(rng, 2, 37, 8, 0.5), shifted,
             rng.integers(0, 3, (4, 100, 8)).astype(float), _ar1(rng, 1, 100, 4, 0.3)]
    for x in cases:
        rhat, bulk, tail = convergence.draw_statistics(x)
        ess = {m: np.asarray(array_stats.ess(x, chain_axis=0, draw_axis=1, method=m,
                                             **({"prob": (0.05, 0.95)} if m == "tail" else {})),
                             float) for m in ("bulk", "tail")}
        np.testing.assert_allclose(bulk, ess["bulk"], rtol=1e-10)
        np.testing.assert_allclose(tail, ess["tail"], rtol=1e-10)
        if x.shape[0] == 1:
            assert np.isnan(rhat).all()
            continue
        with np.errstate(invalid="ignore", divide="ignore"):
            reference = np.asarray(array_stats.rhat(np.moveaxis(x, (0, 1), (-2, -1)),
                                                    chain_axis=-2, draw_axis=-1), float)
        reference = np.where(np.ptp(x, axis=(0, 1)) == 0, 1.0, reference)
        np.testing.assert_allclose(rhat, reference, rtol=1e-12)
    assert convergence.draw_statistics(shifted)[0].min() > 1.1  # the rule can fail
