"""K-pairwise pseudolikelihood, Gibbs sampler, MLE, held-out blocks and thermodynamics,
each against an independent reference: brute-force enumeration of all 2^N states (N ≤ 8), the
pairwise code at V = 0, or exact moments."""

import jax
import numpy as np
import pytest
from jax.scipy.special import logsumexp

from bayes_ising.analysis import families
from bayes_ising.core import gibbs, ising, kpairwise
from bayes_ising.core import pseudolikelihood as pl
from bayes_ising.fit import kpairwise_fit


def _model(num_neurons, seed, v_sd=0.7):
    rng = np.random.default_rng(seed)
    h = rng.normal(-0.3, 0.4, num_neurons)
    J = np.asarray(ising.couplings_to_matrix(rng.normal(0, 0.25, ising.num_pairs(num_neurons)),
                                             num_neurons))
    V = np.concatenate([[0.0], np.cumsum(rng.normal(0, v_sd, num_neurons))])
    return h, J, V


def _brute_log_p(h, J, V):
    """log P of every state by a direct sum (states in ising.all_states order)."""
    s = ising.all_states(h.shape[0]).astype(float)
    neg = s @ h + 0.5 * np.einsum("si,ij,sj->s", s, J, s) + V[(s > 0).sum(axis=1)]
    return s, neg - float(logsumexp(neg))


def _index(states, spins):
    lookup = {tuple(row): k for k, row in enumerate(states.astype(int))}
    return np.array([lookup[tuple(row)] for row in spins.astype(int)])


def _samples(h, J, V, num_bins, seed):
    states, log_p = _brute_log_p(h, J, V)
    rng = np.random.default_rng(seed)
    return states[rng.choice(states.shape[0], num_bins, p=np.exp(log_p))].astype(np.int8)


@pytest.mark.parametrize("num_neurons", [2, 5, 8])
def test_pseudolikelihood_matches_brute_force_conditionals(num_neurons):
    h, J, V = _model(num_neurons, seed=num_neurons)
    states, log_p = _brute_log_p(h, J, V)
    spins = _samples(h, J, V, 300, seed=1)
    patterns, counts = np.unique(spins, axis=0, return_counts=True)
    # log P(s_i | rest) = log P(s) − log[P(s) + P(s with i flipped)], from the joint alone
    brute = 0.0
    for i in range(num_neurons):
        flipped = patterns.copy()
        flipped[:, i] *= -1
        a, b = log_p[_index(states, patterns)], log_p[_index(states, flipped)]
        brute += counts @ (a - np.logaddexp(a, b))
    value = pl.log_pseudolikelihood_kpairwise(h, J, V, pl.prepare(patterns, counts))
    np.testing.assert_allclose(value, brute, rtol=1e-12)
    # V = 0 is the pairwise pseudolikelihood
    data = pl.prepare(patterns, counts)
    np.testing.assert_allclose(
        pl.log_pseudolikelihood_kpairwise(h, J, np.zeros(num_neurons + 1), data),
        pl.log_pseudolikelihood(h, J, data), rtol=1e-12)


def test_gibbs_matches_exact_moments_at_two_temperatures():
    h, J, V = _model(6, seed=11, v_sd=0.8)
    run = gibbs.sample_kpairwise(jax.random.PRNGKey(0), h, J, V, temperatures=(1.0, 2.0),
                                 num_chains=64, num_sweeps=2200, burn_in=200)
    for t, temp in enumerate((1.0, 2.0)):
        m, Q, p_k, _ = kpairwise.exact_moments(h / temp, J / temp, V / temp)
        # 128k draws of weakly correlated sweeps: Monte Carlo sd ≲ 0.003; tolerance 0.012
        np.testing.assert_allclose(run.p_k[0, t], p_k, atol=0.012)
        np.testing.assert_allclose(run.m[0, t], m, atol=0.012)
        np.testing.assert_allclose(run.Q[0, t], Q, atol=0.012)
    # energies of the chain are the K-pairwise energy of its state: mean at T = 1
    states, log_p = _brute_log_p(h, J, V)
    exact_mean_e = np.exp(log_p) @ np.asarray(kpairwise.energy(states, h, J, V))
    assert abs(run.energies[0, :, :, 0].mean() - exact_mean_e) < 0.03


def test_gibbs_zero_v_agrees_with_pairwise_sampler_statistics():
    """V = 0: the K-pairwise sweep samples the pairwise model (reference: exact moments of
    ising, independent of kpairwise)."""
    h, J, _ = _model(5, seed=4)
    run = gibbs.sample_kpairwise(jax.random.PRNGKey(1), h, J, np.zeros(6), num_chains=64,
                                 num_sweeps=1700, burn_in=200)
    m, Q = ising.exact_moments(h, J)[:2]
    np.testing.assert_allclose(run.m[0, 0], m, atol=0.012)
    np.testing.assert_allclose(run.Q[0, 0], Q, atol=0.012)


def test_mle_matches_moments_and_pairwise_reference():
    from bayes_ising.fit import mle

    h, J, V = _model(6, seed=3)
    spins = _samples(h, J, V, 5000, seed=2)
    fit = kpairwise_fit.fit_mle(spins)
    assert fit.converged and fit.max_moment_error < 1e-5, fit.max_moment_error
    suff = kpairwise.sufficient_statistics(spins)
    p_k = kpairwise.exact_moments(fit.h, fit.J, fit.V)[2]
    seen = suff.k_counts > 0
    np.testing.assert_allclose(p_k[seen], (suff.k_counts / suff.num_bins)[seen], atol=1e-5)
    # family "pairwise" is the package's exact pairwise MLE (mle.fit_exact, Newton)
    pair = kpairwise_fit.fit_mle(spins, "pairwise")
    reference = mle.fit_exact(spins)
    np.testing.assert_allclose(pair.h, reference.h, atol=1e-4)
    np.testing.assert_allclose(pair.J, reference.J, atol=1e-4)
    assert np.all(pair.V == 0)


def test_pseudo_fit_recovers_planted_model():
    h, J, V = _model(6, seed=5, v_sd=0.6)
    spins = _samples(h, J, V, 40000, seed=3)
    fit = kpairwise_fit.fit_pseudo(spins)
    assert fit.converged
    # compare identified quantities (V is confounded with h, J along two directions): the
    # model's P(K), m and correlations, exactly, against the planted model's
    m0, Q0, p0, _ = kpairwise.exact_moments(h, J, V)
    m1, Q1, p1, _ = kpairwise.exact_moments(fit.h, fit.J, fit.V)
    np.testing.assert_allclose(p1, p0, atol=0.01)
    np.testing.assert_allclose(m1, m0, atol=0.02)
    np.testing.assert_allclose(Q1, Q0, atol=0.02)


@pytest.mark.slow
def test_held_out_blocks_prefer_the_planted_family():
    h, J, V = _model(6, seed=7, v_sd=0.9)
    spins = _samples(h, J, V, 6000, seed=4)
    for method in ("exact", "pseudo"):
        result = kpairwise_fit.held_out_blocks(spins, ("pairwise", "k_pairwise"),
                                               num_blocks=6, method=method)
        assert result["method"] == method
        assert result["difference"]["k_pairwise"] == 0.0  # the best
        assert -result["difference"]["pairwise"] > 3 * result["se"]["pairwise"], result


def test_held_out_exact_scores_are_log_likelihoods():
    h, J, V = _model(4, seed=8)
    spins = _samples(h, J, V, 400, seed=5)
    result = kpairwise_fit.held_out_blocks(spins, ("independent",), num_blocks=4)
    # independent model: closed-form MLE per training set, scored by direct log P of the bins
    edges = np.linspace(0, 400, 5).astype(int)
    expected = 0.0
    for b in range(4):
        held = np.zeros(400, bool)
        held[edges[b]:edges[b + 1]] = True
        p = np.clip((spins[~held] > 0).mean(axis=0), 0, 1)
        on = spins[held] > 0
        expected += np.sum(np.where(on, np.log(p), np.log1p(-p)))
    np.testing.assert_allclose(result["total"]["independent"], expected, rtol=1e-5)


def test_uniform_energy_moments_match_enumeration():
    h, J, V = _model(7, seed=9)
    states = ising.all_states(7)
    energies = np.asarray(kpairwise.energy(states, h, J, V))
    mean, var = families.uniform_energy_moments(h, J, V)
    np.testing.assert_allclose([mean, var], [energies.mean(), energies.var()], rtol=1e-10)


def test_exact_thermodynamics_brute_force_and_pairwise_limit():
    from bayes_ising.analysis import thermo

    h, J, V = _model(6, seed=10)
    temperatures = np.array([0.8, 1.0, 1.5, 2.5])
    result = families.thermodynamics(h, J, V, temperatures)
    states = ising.all_states(6)
    energies = np.asarray(kpairwise.energy(states, h, J, V))
    for k, temp in enumerate(temperatures):
        w = np.exp(-energies / temp - logsumexp(-energies / temp))
        heat = (w @ energies**2 - (w @ energies) ** 2) / temp**2 / 6
        entropy = -(w @ np.log(w)) / 6
        np.testing.assert_allclose(result.heat_capacity_per_neuron[0, k], heat, rtol=1e-10)
        np.testing.assert_allclose(result.entropy_per_neuron[0, k], entropy, atol=2e-4)
    assert result.entropy_integration_error < 2e-4
    pair = families.thermodynamics(h, J, np.zeros(7), temperatures)
    reference = thermo.exact_thermodynamics(h, J, temperatures, peak_points=0)
    np.testing.assert_allclose(pair.heat_capacity_per_neuron,
                               reference.heat_capacity_per_neuron, rtol=1e-9)


def test_gibbs_thermodynamics_near_exact():
    h, J, V = _model(6, seed=12)
    temperatures = np.array([1.0, 2.0])
    exact = families.thermodynamics(h, J, V, temperatures, num_grid=12)
    sampled = families.thermodynamics(h, J, V, temperatures, method="gibbs", num_grid=12,
                                           rng_key=jax.random.PRNGKey(2), num_chains=32,
                                           num_sweeps=1700, burn_in=200)
    # C: a variance from 48k draws per β, relative sd ~1.5%; tolerance 8%
    np.testing.assert_allclose(sampled.heat_capacity_per_neuron,
                               exact.heat_capacity_per_neuron, rtol=0.08)
    np.testing.assert_allclose(sampled.entropy_per_neuron, exact.entropy_per_neuron, atol=0.01)


@pytest.mark.slow
def test_cli_held_out_blocks_exact_and_above_22_neurons(tmp_path, capsys):
    import json

    from bayes_ising import cli

    h, J, V = _model(4, seed=13)
    small = tmp_path / "small.npz"
    np.savez(small, raster=(_samples(h, J, V, 600, seed=6) > 0).astype(np.int8))
    out = tmp_path / "small.json"
    assert cli.main(["compare-families", str(small), "--held-out-blocks", "3",
                     "--held-out-only", "--out", str(out)]) == 0
    held = json.loads(out.read_text())["held_out"]
    assert held["method"] == "exact" and set(held["total"]) == set(kpairwise.FAMILIES)
    assert "held-out log-likelihood" in capsys.readouterr().out
    big = tmp_path / "big.npz"
    np.savez(big, raster=(np.random.default_rng(7).random((300, 23)) < 0.2).astype(np.int8))
    assert cli.main(["compare-families", str(big)]) == 2
    assert "--held-out-blocks" in capsys.readouterr().err
    assert cli.main(["compare-families", str(big), "--families", "pairwise,k_pairwise",
                     "--held-out-blocks", "2", "--held-out-only",
                     "--out", str(tmp_path / "big.json")]) == 0
    text = capsys.readouterr().out
    assert "pseudo fits" in text and "not comparable with LOO" in text
    held = json.loads((tmp_path / "big.json").read_text())["held_out"]
    assert held["method"] == "pseudo" and held["score"] == "log pseudolikelihood"


def test_sampled_synchrony_draws_match_enumeration():
    """The Gibbs P(K) of posterior draws (used above 22 neurons) against the exact P(K) of the
    same draws (small N)."""
    draws = [_model(5, seed=s) for s in (21, 22)]
    h, J, V = (np.stack([d[k] for d in draws])[None] for k in range(3))
    tree = kpairwise_fit.draws_tree(h, J, V, attrs=dict(family="k_pairwise"))
    sampled = families.sampled_synchrony_draws(jax.random.key(0), tree, num_chains=256,
                                               num_sweeps=2000)
    exact = families.synchrony_draws(tree)
    order = np.argsort(sampled[:, 1])  # both take the draws in a random order
    np.testing.assert_allclose(sampled[order], exact[np.argsort(exact[:, 1])], atol=0.01)


@pytest.mark.slow
def test_cli_compare_families_with_pseudo_posteriors_above_22_neurons(tmp_path, capsys):
    """N = 23: compare-families fits each family's pseudo-posterior (tiny run), reports its
    Gibbs P(K) band and mixing beside the held-out pseudolikelihood scores, JSON included."""
    import json

    from bayes_ising import cli

    rng = np.random.default_rng(3)
    h = rng.normal(-0.9, 0.2, 23)
    J = np.asarray(ising.couplings_to_matrix(rng.normal(0, 0.05, ising.num_pairs(23)), 23))
    V = np.where(np.arange(24) >= 6, 1.5, 0.0)  # a step: no shift of h or J mimics it
    samples = gibbs.sample_kpairwise_spins(jax.random.key(0), h[None], J[None], V[None], 2000,
                                           num_chains=100, burn_in=200, thin=3)[0]
    big = tmp_path / "big.npz"
    np.savez(big, raster=(samples > 0).astype(np.int8))
    out = tmp_path / "big.json"
    assert cli.main(["compare-families", str(big), "--families", "pairwise,k_pairwise",
                     "--held-out-blocks", "3", "--num-chains", "1", "--num-draws", "30",
                     "--num-warmup", "30", "--posterior-draws", "4", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "P(K) in band" in text and "pseudo-posteriors (unadjusted)" in text
    summary = json.loads(out.read_text())
    assert [r["family"] for r in summary["rows"]][0] == "k_pairwise"  # the planted family
    assert summary["held_out"]["method"] == "pseudo"
    k_row = summary["rows"][0]
    assert k_row["intervals"] == "unadjusted" and k_row["pk_seen"] > 3
    assert k_row["pk_in_band"] >= summary["rows"][1]["pk_in_band"]


def _brute_pseudolikelihood(h, J, V, patterns, counts):
    """Σ_u c_u Σ_i log P(s_i | rest) from the joint by enumeration, in JAX (differentiable)."""
    import jax.numpy as jnp

    num_neurons = patterns.shape[1]
    states = ising.all_states(num_neurons).astype(float)
    codes = {tuple(row): k for k, row in enumerate(states.astype(int))}
    neg = (states @ h + 0.5 * jnp.einsum("si,ij,sj->s", states, J, states)
           + V[(states > 0).sum(axis=1)])
    total = 0.0
    for i in range(num_neurons):
        flipped = patterns.copy()
        flipped[:, i] *= -1
        a = neg[np.array([codes[tuple(r)] for r in patterns.astype(int)])]
        b = neg[np.array([codes[tuple(r)] for r in flipped.astype(int)])]
        total = total + counts @ (a - jnp.logaddexp(a, b))
    return total


def test_pseudolikelihood_gradient_matches_brute_force_autodiff():
    """∇ of the K-pairwise log PL (all of h, J, V) against autodiff of the brute-force
    conditionals (the joint enumerated, log Z never enters)."""
    h, J, V = _model(5, seed=21, v_sd=0.9)
    spins = _samples(h, J, V, 400, seed=4)
    patterns, counts = np.unique(spins, axis=0, return_counts=True)
    data = pl.prepare(patterns, counts)
    counts = counts.astype(float)
    # in the fitted parameters: h, the couplings J_{i<j} (J symmetric, zero diagonal), V
    j_flat = ising.matrix_to_couplings(J)

    def fast(h, j, V):
        return pl.log_pseudolikelihood_kpairwise(h, ising.couplings_to_matrix(j, 5), V, data)

    def brute_fn(h, j, V):
        return _brute_pseudolikelihood(h, ising.couplings_to_matrix(j, 5), V, patterns, counts)

    grads = jax.grad(fast, argnums=(0, 1, 2))(h, j_flat, V)
    brute = jax.grad(brute_fn, argnums=(0, 1, 2))(h, j_flat, V)
    for got, want in zip(grads, brute, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-10)
    # d/dV(0) is nonzero in general; the fits hold V(0) = 0 (V[1:] are the parameters)
    assert np.abs(np.asarray(grads[2][1:])).max() > 1.0


def test_pseudo_posterior_k_pairwise_is_labelled_unadjusted():
    """A small NUTS pseudo-posterior: no log-likelihood (no LOO), intervals labelled
    unadjusted; its posterior-mean model reproduces the planted P(K) (exactly enumerated)."""
    h, J, V = _model(5, seed=9, v_sd=0.8)
    spins = _samples(h, J, V, 3000, seed=5)
    fit = kpairwise_fit.fit_posterior(spins, rng_key=1, num_chains=1, num_draws=150,
                                  num_warmup=150, likelihood="pseudo")
    attrs = fit.tree.attrs
    assert attrs["likelihood"] == "pseudo" and attrs["intervals"] == "unadjusted"
    assert "log_likelihood" not in fit.tree.children
    assert "UNADJUSTED" in kpairwise_fit.format_fit_summary(fit)
    from bayes_ising.fit.posterior import posterior_draws

    hd, Jd, Vd = posterior_draws(fit.tree, potential=True)
    p_k = np.asarray(kpairwise.exact_moments(hd.mean(0), Jd.mean(0), Vd.mean(0))[2])
    np.testing.assert_allclose(p_k, kpairwise.exact_moments(h, J, V)[2], atol=0.03)
    check = kpairwise_fit.pseudo_model_check(jax.random.key(0), fit.tree, spins,
                                             num_chains=32, num_sweeps=600)
    assert check["passed"], check["verdict"]


@pytest.mark.slow
def test_cli_fit_k_pairwise_pseudo_above_the_enumeration_limit(tmp_path, capsys):
    """N = 23 > 22: `fit --model k_pairwise --likelihood pseudo` writes a pseudo-posterior
    with unadjusted intervals and its model check; `check` and `thermo` read it by Gibbs."""
    import json

    from bayes_ising import cli
    from bayes_ising.fit import bayes

    num_neurons = 23
    rng = np.random.default_rng(0)
    h = rng.normal(-0.8, 0.2, num_neurons)
    J = np.asarray(ising.couplings_to_matrix(rng.normal(0, 0.05, ising.num_pairs(num_neurons)),
                                             num_neurons))
    V = np.concatenate([[0.0], 0.3 * np.arange(1, num_neurons + 1)
                        - 0.04 * np.arange(1, num_neurons + 1) ** 2])
    samples = gibbs.sample_kpairwise_spins(jax.random.key(0), h[None], J[None], V[None], 3000,
                                           num_chains=100, burn_in=200, thin=3)[0]
    path = tmp_path / "big.npz"
    np.savez(path, raster=(samples > 0).astype(np.int8))
    out = tmp_path / "kp.nc"
    assert cli.main(["fit", str(path), "--model", "k_pairwise", "--likelihood", "pseudo",
                     "--num-chains", "1", "--num-draws", "40", "--num-warmup", "40",
                     "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "pseudo likelihood" in text and "UNADJUSTED" in text and "model check" in text
    tree = bayes.load_posterior(out, family="k_pairwise")
    assert tree.attrs["intervals"] == "unadjusted"
    assert json.loads(tree.attrs["model_check"])["max_abs_error"]["mean"] < 0.05
    assert cli.main(["check", str(out), str(path), "--posterior-draws", "2", "--no-progress",
                     "--moments-draws", "4",
                     "--out", str(tmp_path / "c.json")]) == 0
    checks_json = json.loads((tmp_path / "c.json").read_text())
    assert checks_json["synchrony"]["method"] == "gibbs" and checks_json["family"] == "k_pairwise"
    sync = checks_json["synchrony"]  # the Gibbs-simulated K-pairwise P(K) follows the data
    np.testing.assert_allclose(sync["predicted"]["median"], sync["observed"], atol=0.05)
    moments = checks_json["predictive_moments"]  # N > 20: simulated with V (Gibbs)
    assert moments["method"] == "gibbs" and moments["family"] == "k_pairwise"
    assert set(moments["m_model"]) == {"random", "data"}
    np.testing.assert_allclose(moments["m_model"]["random"], moments["m_data"], atol=0.05)
    assert cli.main(["thermo", str(out), "--posterior-draws", "2", "--num-sweeps", "300",
                     "--temperatures", "0.8:1.6:5", "--no-progress",
                     "--out", str(tmp_path / "t.json")]) == 0
    assert json.loads((tmp_path / "t.json").read_text())["method"] == "gibbs"


@pytest.mark.slow
def test_exact_k_pairwise_intervals_cover_the_planted_moments():
    """Calibration: 10 planted K-pairwise data sets (N = 4, 2000 exact samples each, fixed
    seeds); the exact posterior's central 90% intervals of the identified quantities — the
    model's m_i, ⟨s_i s_j⟩ and P(K), per draw by enumeration — cover the planted values.
    Tolerance: pooled coverage of the 150 intervals in [0.80, 0.98] (nominal 0.90; binomial
    sd ≈ 0.025 if independent, more since one data set's intervals are correlated)."""
    from bayes_ising.fit.posterior import posterior_draws

    h, J, V = _model(4, seed=31, v_sd=0.8)
    m0, Q0, p0, _ = kpairwise.exact_moments(h, J, V)
    i, j = ising.pair_indices(4)
    truth = np.concatenate([m0, np.asarray(Q0)[i, j], p0])
    covered = []
    for rep in range(10):
        spins = _samples(h, J, V, 2000, seed=100 + rep)
        fit = kpairwise_fit.fit_posterior(spins, rng_key=rep, num_chains=1, num_draws=300,
                                      num_warmup=200)
        hd, Jd, Vd = posterior_draws(fit.tree, potential=True)
        moments = jax.vmap(kpairwise.exact_moments)(hd, Jd, Vd)
        draws = np.concatenate([np.asarray(moments[0]), np.asarray(moments[1])[:, i, j],
                                np.asarray(moments[2])], axis=1)
        lower, upper = np.quantile(draws, [0.05, 0.95], axis=0)
        covered.append((truth >= lower) & (truth <= upper))
    coverage = float(np.mean(covered))
    print(f"K-pairwise exact posterior: 90% intervals cover {coverage:.3f} of 150 moments")
    assert 0.80 <= coverage <= 0.98, coverage
