"""The posterior contract and the verbs (check, thermo, compare-mle) on K-pairwise posteriors.

The posteriors are built from known draws (:func:`kpairwise_fit.draws_tree`), no NUTS: each test
compares what a verb reports with the K-pairwise model computed directly, and with the
pairwise model (V dropped), which must differ.
"""

import json

import jax
import numpy as np
import pytest

from bayes_ising.analysis import families
from bayes_ising.core import ising, kpairwise
from bayes_ising.fit import kpairwise_fit, posterior

N = 5


def _draws(num_chains=2, num_draws=6, seed=0):
    """Draws (chain, draw, ...) of h, J, V with a large V bump at K = 3 (so V matters)."""
    rng = np.random.default_rng(seed)
    shape = (num_chains, num_draws)
    h = rng.normal(-0.6, 0.15, shape + (N,))
    J = np.zeros(shape + (N, N))
    for index in np.ndindex(shape):
        J[index] = np.asarray(ising.couplings_to_matrix(
            rng.normal(0, 0.15, ising.num_pairs(N)), N))
    V = np.array([0.0, 0.0, 0.4, 2.0, 1.5, 0.5]) + rng.normal(0, 0.05, shape + (N + 1,))
    V[..., 0] = 0.0
    return h, J, V


def _tree(ids=None, **kwargs):
    h, J, V = _draws(**kwargs)
    return kpairwise_fit.draws_tree(h, J, V, neuron_ids=ids, attrs=dict(
        family="k_pairwise", likelihood="exact", bayes_ising_version="test")), (h, J, V)


def _exact_samples(h, J, V, num_bins, seed):
    states = ising.all_states(N)
    p = np.exp(np.asarray(kpairwise.log_probability(states, h, J, V)))
    rows = np.random.default_rng(seed).choice(states.shape[0], num_bins, p=p / p.sum())
    return states[rows]


def test_posterior_draws_return_v_on_the_same_draws():
    tree, (h, J, V) = _tree()
    h_all, J_all, V_all = posterior.posterior_draws(tree, potential=True)
    np.testing.assert_array_equal(h_all, h.reshape(-1, N))
    np.testing.assert_array_equal(J_all, J.reshape(-1, N, N))
    np.testing.assert_array_equal(V_all, V.reshape(-1, N + 1))
    key = jax.random.key(3)
    h_k, J_k, V_k = posterior.posterior_draws(tree, 4, key, potential=True)
    keep = posterior.thin(12, 4, key)
    np.testing.assert_array_equal(h_k, h.reshape(-1, N)[keep])
    np.testing.assert_array_equal(V_k, V.reshape(-1, N + 1)[keep])
    assert posterior.family(tree) == "k_pairwise" and posterior.has_potential(tree)
    assert len(posterior.posterior_draws(tree, 4)) == 2  # the (h, J) reader is unchanged
    pairwise = kpairwise_fit.draws_tree(h, J, V)
    del pairwise["posterior"]["V"]
    assert posterior.posterior_draws(pairwise, potential=True)[2] is None
    assert posterior.family(pairwise) == "pairwise"


def test_checks_enumerate_the_k_pairwise_model():
    from bayes_ising.analysis import checks

    tree, (h, J, V) = _tree()
    hd, Jd, Vd = (a.reshape((-1,) + a.shape[2:]) for a in (h, J, V))
    spins = _exact_samples(hd[0], Jd[0], Vd[0], 3000, seed=1)
    out = checks.posterior_predictive_checks(jax.random.key(0), tree, spins, num_draws=12,
                                             third_order_draws=12)
    assert out["family"] == "k_pairwise" and out["information"]["family"] == "k_pairwise"
    p_k = np.stack([np.asarray(kpairwise.exact_moments(*p)[2])
                     for p in zip(hd, Jd, Vd, strict=True)])
    np.testing.assert_allclose(out["synchrony"]["draws"], p_k, atol=1e-12)
    pairwise = np.stack([np.asarray(ising.exact_synchrony_distribution(a, b))
                         for a, b in zip(hd, Jd, strict=True)])
    assert np.max(np.abs(p_k - pairwise)) > 0.05  # dropping V would be visible
    assert out["synchrony"]["fraction_in_band"] >= 0.8  # data from the first draw
    first = out["patterns"]["patterns"][0]
    np.testing.assert_allclose(
        out["patterns"]["predicted"]["median"][0],
        np.median(np.exp([kpairwise.log_probability(first, *p)
                          for p in zip(hd, Jd, Vd, strict=True)])),
        rtol=1e-10)
    entropy = [float(kpairwise.exact_entropy(*p)) for p in zip(hd, Jd, Vd, strict=True)]
    np.testing.assert_allclose(out["information"]["S2"]["median"], np.median(entropy),
                               rtol=1e-10)
    third = checks._exact_third_order(hd, Jd, Vd)
    i, j, k = out["third_order"]["triplets"]
    np.testing.assert_allclose(out["third_order"]["predicted"]["median"],
                               np.median(third[:, i, j, k], axis=0), atol=1e-12)


def test_gibbs_spins_of_the_k_pairwise_model_match_enumeration():
    from bayes_ising.analysis import checks
    from bayes_ising.core import gibbs

    tree, (h, J, V) = _tree(num_chains=1, num_draws=2)
    hd, Jd, Vd = (a.reshape((-1,) + a.shape[2:]) for a in (h, J, V))
    samples = gibbs.sample_kpairwise_spins(jax.random.key(1), hd, Jd, Vd, 40_000,
                                           num_chains=200, burn_in=50, thin=2)
    assert samples.shape == (2, 40_000, N) and samples.dtype == np.int8
    for d in range(2):
        m, _, p_k, _ = kpairwise.exact_moments(hd[d], Jd[d], Vd[d])
        sampled = np.bincount((samples[d] > 0).sum(axis=1), minlength=N + 1) / 40_000
        np.testing.assert_allclose(sampled, p_k, atol=0.012)  # MC sd of P(K) ≲ 0.004
        np.testing.assert_allclose(samples[d].mean(axis=0), m, atol=0.03)
    spins = _exact_samples(hd[0], Jd[0], Vd[0], 2000, seed=2)
    out = checks.posterior_predictive_checks(jax.random.key(0), tree, spins, method="gibbs",
                                             num_samples=20_000, third_order_draws=2)
    exact = np.stack([np.asarray(kpairwise.exact_moments(*p)[2])
                       for p in zip(hd, Jd, Vd, strict=True)])
    assert out["synchrony"]["method"] == "gibbs"
    np.testing.assert_allclose(out["synchrony"]["draws"], exact, atol=0.015)


def test_cli_check_thermo_and_compare_mle_on_a_k_pairwise_posterior(tmp_path, capsys):
    from bayes_ising import cli
    from bayes_ising.fit import bayes

    ids = [str(i) for i in range(N)]  # the ids of a raster without names
    tree, (h, J, V) = _tree(ids)
    path = tmp_path / "kp.nc"
    bayes.save_posterior(tree, path)
    hd, Jd, Vd = (a.reshape((-1,) + a.shape[2:]) for a in (h, J, V))
    data = tmp_path / "d.npz"
    np.savez(data, raster=(_exact_samples(hd[0], Jd[0], Vd[0], 3000, 4) > 0).astype(np.int8))

    assert cli.main(["check", str(path), str(data), "--out", str(tmp_path / "c.json"),
                     "--no-progress"]) == 0
    assert "K-pairwise model (V(K) included)" in capsys.readouterr().out
    checks_json = json.loads((tmp_path / "c.json").read_text())
    assert checks_json["family"] == "k_pairwise"
    p_k = np.stack([np.asarray(kpairwise.exact_moments(*p)[2])
                     for p in zip(hd, Jd, Vd, strict=True)])
    np.testing.assert_allclose(checks_json["synchrony"]["predicted"]["median"],
                               np.median(p_k, axis=0), atol=1e-10)
    assert cli.main(["check", str(path), str(data), "--out", str(tmp_path / "c2.json"),
                     "--moments", "yes", "--moments-draws", "4", "--no-progress"]) == 0
    assert "predictive moments" in capsys.readouterr().out
    moments = json.loads((tmp_path / "c2.json").read_text())["predictive_moments"]
    assert moments["method"] == "exact" and moments["family"] == "k_pairwise"
    h4, J4, V4 = posterior.posterior_draws(tree, 4, potential=True)
    np.testing.assert_allclose(moments["m_model"]["exact"], np.mean(
        [kpairwise.exact_moments(*p)[0] for p in zip(h4, J4, V4, strict=True)], axis=0),
        atol=1e-10)

    temperatures = np.linspace(0.5, 2.0, 7)
    assert cli.main(["thermo", str(path), "--temperatures", "0.5:2:7", "--out",
                     str(tmp_path / "t.json"), "--no-progress"]) == 0
    capsys.readouterr()
    thermo_json = json.loads((tmp_path / "t.json").read_text())
    assert thermo_json["summary"]["family"] == "k_pairwise" and thermo_json["method"] == "exact"
    direct = families.thermodynamics(hd, Jd, Vd, temperatures)  # all 12 draws
    np.testing.assert_allclose(thermo_json["heat_capacity_per_neuron"]["median"],
                               np.median(direct.heat_capacity_per_neuron, axis=0), rtol=1e-8)
    dropped = families.thermodynamics(hd, Jd, 0 * Vd, temperatures)
    assert np.max(np.abs(np.median(dropped.heat_capacity_per_neuron, axis=0)
                         - thermo_json["heat_capacity_per_neuron"]["median"])) > 0.01
    assert cli.main(["thermo", str(path), "--temperatures", "0.5:2:7", "--method", "gibbs",
                     "--num-sweeps", "600", "--posterior-draws", "3", "--out",
                     str(tmp_path / "g.json"), "--no-progress"]) == 0
    capsys.readouterr()
    gibbs_json = json.loads((tmp_path / "g.json").read_text())
    assert gibbs_json["method"] == "gibbs"
    assert gibbs_json["summary"]["gibbs_convergence"]["max_rhat"] < 1.05

    assert cli.main(["compare-mle", str(path), str(data), "--out",
                     str(tmp_path / "m.json")]) == 2
    err = capsys.readouterr().err
    assert "k_pairwise posterior" in err and "compare-families" in err and len(
        err.strip().splitlines()) == 1


def _mixing_tree(ids, stuck_level=3):
    """4 chains x 1000 independent draws (they mix), except chain 0 of V(``stuck_level``),
    shifted by +1 (an unmixed level of the potential)."""
    h, J, V = _draws(num_chains=4, num_draws=1000, seed=5)
    V[0, :, stuck_level] += 1.0
    return kpairwise_fit.draws_tree(h, J, V, neuron_ids=ids, attrs=dict(
        family="k_pairwise", likelihood="exact", bayes_ising_version="test",
        num_divergent=3)), (h, J, V)


def test_diagnose_judges_each_neuron_and_each_level_of_v():
    from bayes_ising.analysis import diagnostics
    from bayes_ising.core import convergence

    tree, (h, J, V) = _mixing_tree(None)
    out = diagnostics.diagnose(tree)
    # V's rows: the package's R-hat / ESS of each level, computed here from the raw draws
    rhat_v, bulk_v, _ = convergence.draw_statistics(V[..., 1:])
    assert [row["k"] for row in out["potential"]] == list(range(1, N + 1))
    np.testing.assert_allclose([row["rhat"] for row in out["potential"]], rhat_v)
    np.testing.assert_allclose([row["ess_bulk"] for row in out["potential"]], bulk_v)
    assert [row["flagged"] for row in out["potential"]] == [k == 3 for k in range(1, N + 1)]
    assert not out["converged"] and out["summary"]["num_parameters"] == N + 10 + N
    assert out["sampler"]["num_divergent"] == 3  # from the tree's attribute
    # per neuron: R-hat over its h_i and J_i. only (V's stuck level touches no neuron)
    i, j = ising.pair_indices(N)
    rhat_h, _, _ = convergence.draw_statistics(h)
    rhat_j, _, _ = convergence.draw_statistics(J[..., i, j])
    for n, row in enumerate(out["neurons"]):
        mine = np.concatenate([[rhat_h[n]], rhat_j[(i == n) | (j == n)]])
        assert row["max_rhat"] == pytest.approx(np.max(mine))
        assert not row["non_convergence"]
    # the 0/1 field is the log-odds of firing alone, V(1) included: check by enumeration
    states = ising.all_states(N)
    alone = np.flatnonzero((states > 0).sum(axis=1) <= 1)
    hd, Jd, Vd = h[0, 0], J[0, 0], V[0, 0]
    logp = np.asarray(kpairwise.log_probability(states[alone], hd, Jd, Vd))
    silent = alone[(states[alone] > 0).sum(axis=1) == 0][0]
    a = ising.to_lattice_gas(hd, Jd)[0] + Vd[1]
    for row, pattern in zip(logp, states[alone], strict=True):
        if (pattern > 0).any():
            n = int(np.flatnonzero(pattern > 0)[0])
            assert row - logp[list(alone).index(silent)] == pytest.approx(float(a[n]))
    pairwise = kpairwise_fit.draws_tree(h, J, V)
    del pairwise["posterior"]["V"]
    assert diagnostics.diagnose(pairwise)["potential"] is None


def test_cli_diagnose_and_report_on_a_k_pairwise_posterior(tmp_path, capsys):
    from bayes_ising import cli
    from bayes_ising.fit import bayes

    ids = [str(i) for i in range(N)]
    tree, _ = _mixing_tree(ids)
    path = tmp_path / "kp.nc"
    bayes.save_posterior(tree, path)
    diag = tmp_path / "d.json"
    assert cli.main(["diagnose", str(path), "--out", str(diag)]) == 0
    printed = capsys.readouterr().out
    assert "NOT converged" in printed and "1 of 5 levels of V(K) not converged (V(3))" in printed
    written = json.loads(diag.read_text())
    assert [row["flagged"] for row in written["potential"]] == [False, False, True, False, False]
    assert written["parameters"]["k"] == [1, 2, 3, 4, 5] and len(written["neurons"]) == N
    assert cli.main(["diagnose", str(path), "--out", str(tmp_path / "e.json"),
                     "--convention", "01"]) == 2
    assert "--convention" in capsys.readouterr().err
    html = tmp_path / "r.html"
    assert cli.main(["report", str(path), "--diagnostics", str(diag), "--out", str(html)]) == 0
    text = html.read_text()
    assert "The potential V(K) (K-pairwise)" in text and "1 of 5 levels of V(K)" in text
    assert "K-pairwise model E(s)" in text and "V(3)" in text


def _brute_moments(h, J, V):
    """m (N,) and connected C_{i<j} of one K-pairwise model by explicit sums over 2^N states
    (numpy only: an independent reference for the package's enumeration and sampler)."""
    states = ising.all_states(N).astype(float)
    k = (states > 0).sum(axis=1)
    neg_energy = states @ h + 0.5 * np.einsum("si,ij,sj->s", states, J, states) + V[k]
    p = np.exp(neg_energy - neg_energy.max())
    p /= p.sum()
    m = p @ states
    i, j = ising.pair_indices(N)
    return m, (np.einsum("s,si,sj->ij", p, states, states) - np.outer(m, m))[i, j]


def test_predictive_moments_of_a_k_pairwise_posterior_exact_and_gibbs():
    """The K-pairwise draws' predictive m and C: exact (auto, N <= 22) equal to brute-force
    sums with V, and clearly not the pairwise model's; the Gibbs path (random and data
    starts, V in the sampler) agrees with them within its Monte Carlo error."""
    from bayes_ising.analysis import checks

    tree, (h, J, V) = _tree(num_chains=1, num_draws=3)
    hd, Jd, Vd = (a.reshape((-1,) + a.shape[2:]) for a in (h, J, V))
    spins = _exact_samples(hd[0], Jd[0], Vd[0], 4000, seed=7)
    exact = checks.predictive_moments(jax.random.key(0), tree, spins, num_draws=3)
    summary, moments = exact["summary"], exact["moments"]
    assert summary["method"] == "exact" and list(moments["start"].values) == ["exact"]
    brute = [_brute_moments(*p) for p in zip(hd, Jd, Vd, strict=True)]
    np.testing.assert_allclose(moments["m_model"].sel(start="exact"),
                               [b[0] for b in brute], atol=1e-10)
    np.testing.assert_allclose(moments["C_model"].sel(start="exact"),
                               [b[1] for b in brute], atol=1e-10)
    dropped = [_brute_moments(a, b, 0 * c) for a, b, c in zip(hd, Jd, Vd, strict=True)]
    assert np.max(np.abs(np.array([d[0] for d in dropped]) - [b[0] for b in brute])) > 0.05
    assert summary["passed"], summary["reason"]  # the data come from the first draw
    assert summary["exact"]["degenerate_draws"] == 0.0
    json.dumps(summary)
    gibbs = checks.predictive_moments(jax.random.key(1), tree, spins, num_draws=3,
                                      method="gibbs", num_chains=128, num_sweeps=300,
                                      burn_in=100, batch_size=3)
    assert gibbs["summary"]["method"] == "gibbs"
    for start in ("random", "data"):
        sampled = gibbs["moments"].sel(start=start)
        for name, index in (("m", 0), ("C", 1)):
            reference = np.array([b[index] for b in brute])
            z = (sampled[f"{name}_model"].values - reference) / np.maximum(
                sampled[f"mcse_{name}"].values, 1e-4)
            assert np.max(np.abs(z)) < 5, (start, name, np.max(np.abs(z)))
    with pytest.raises(ValueError, match="method"):
        checks.predictive_moments(jax.random.key(0), tree, spins, method="enumerate")
