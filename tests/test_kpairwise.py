"""K-pairwise model: enumeration against brute force, reduction to pairwise, planted data."""

import dataclasses
import json

import jax
import numpy as np
import pytest
from jax.scipy.special import logsumexp

from bayes_ising.analysis import families
from bayes_ising.core import ising, kpairwise
from bayes_ising.fit import kpairwise_fit


def _random_params(num_neurons, seed):
    rng = np.random.default_rng(seed)
    h = rng.normal(0, 0.5, num_neurons)
    J = np.asarray(ising.couplings_to_matrix(rng.normal(0, 0.3, ising.num_pairs(num_neurons)),
                                             num_neurons))
    V = np.concatenate([[0.0], np.cumsum(rng.normal(0, 0.7, num_neurons))])
    return h, J, V


def _brute(h, J, V):
    """Direct sum over all states: log Z, m, Q, P(K)."""
    s = ising.all_states(h.shape[0]).astype(float)
    k = (s > 0).sum(axis=1)
    neg = s @ h + 0.5 * np.einsum("si,ij,sj->s", s, J, s) + V[k]
    log_z = float(logsumexp(neg))
    p = np.exp(neg - log_z)
    return log_z, p @ s, s.T @ (p[:, None] * s), np.bincount(k, weights=p,
                                                            minlength=h.shape[0] + 1)


@pytest.mark.parametrize("num_neurons", [1, 5, 8])
def test_enumeration_matches_brute_force(num_neurons):
    h, J, V = _random_params(num_neurons, seed=num_neurons)
    log_z, m, Q, p_k = _brute(h, J, V)
    m2, Q2, p_k2, log_z2 = kpairwise.exact_moments(h, J, V)
    np.testing.assert_allclose(kpairwise.log_partition(h, J, V), log_z, rtol=1e-12)
    np.testing.assert_allclose(log_z2, log_z, rtol=1e-12)
    np.testing.assert_allclose(m2, m, atol=1e-12)
    np.testing.assert_allclose(Q2, Q, atol=1e-12)
    np.testing.assert_allclose(p_k2, p_k, atol=1e-12)
    # log Z differentiates to the moments: d/dV(K) log Z = P(K)
    np.testing.assert_allclose(jax.grad(kpairwise.log_partition, argnums=2)(h, J, V), p_k,
                               atol=1e-12)


def test_v_zero_is_pairwise():
    h, J, _ = _random_params(7, seed=3)
    V = np.zeros(8)
    np.testing.assert_allclose(kpairwise.log_partition(h, J, V), ising.log_partition(h, J),
                               rtol=1e-14)
    spins = np.where(np.random.default_rng(0).random((300, 7)) < 0.3, 1, -1)
    suff = kpairwise.sufficient_statistics(spins)
    from bayes_ising.core import stats

    np.testing.assert_allclose(kpairwise.exact_log_likelihood(h, J, V, suff),
                               ising.exact_log_likelihood(h, J, stats.moments(spins)),
                               rtol=1e-12)
    np.testing.assert_allclose(kpairwise.log_probability(spins[:5], h, J, V),
                               ising.log_probability(spins[:5], h, J), rtol=1e-12)


def test_sufficient_likelihood_equals_pattern_sum():
    h, J, V = _random_params(6, seed=5)
    spins = np.where(np.random.default_rng(1).random((500, 6)) < 0.4, 1, -1)
    patterns, counts = np.unique(spins, axis=0, return_counts=True)
    total = counts @ np.asarray(kpairwise.pattern_log_likelihood(patterns, h, J, V))
    value = kpairwise.exact_log_likelihood(h, J, V, kpairwise.sufficient_statistics(spins))
    np.testing.assert_allclose(value, total, rtol=1e-12)
    with pytest.raises(ValueError, match="V must have shape"):
        kpairwise.log_partition(h, J, V[:-1])


def _planted(num_neurons=6, num_bins=4000, seed=0):
    """Exact samples of a K-pairwise model with a non-quadratic V bump at K = 3–4."""
    rng = np.random.default_rng(seed)
    h = np.full(num_neurons, -0.6) + rng.normal(0, 0.2, num_neurons)
    J = np.asarray(ising.couplings_to_matrix(rng.normal(0, 0.2, ising.num_pairs(num_neurons)),
                                             num_neurons))
    V = np.array([0.0, 0.0, 0.3, 1.5, 1.8, 0.8, 0.2][: num_neurons + 1])
    states = ising.all_states(num_neurons)
    logp = np.asarray(kpairwise.log_probability(states, h, J, V))
    index = rng.choice(states.shape[0], num_bins, p=np.exp(logp) / np.exp(logp).sum())
    return states[index], (h, J, V)


@pytest.mark.slow
def test_planted_k_pairwise_loo_prefers_it_and_v_covered():
    spins, (_, _, V) = _planted()
    result = families.compare_families(spins, ("pairwise", "k_pairwise"), rng_key=1,
                                        num_chains=2, num_draws=300, num_warmup=300,
                                        check_draws=100)
    table = result["table"]
    assert table.index[0] == "k_pairwise"
    # the better model by more than 4 standard errors of the difference (elpd_diff <= 0)
    assert -table.loc["pairwise", "elpd_diff"] > 4 * table.loc["pairwise", "dse"]
    assert result["pareto_k"]["k_pairwise"]["fraction_bad"] == 0.0
    # a 95% posterior interval of each V(K) covers the planted value (K = 1..N)
    post = np.asarray(result["fits"]["k_pairwise"].tree["posterior"]["V"]).reshape(-1, 7)
    lower, upper = np.quantile(post, [0.025, 0.975], axis=0)
    assert np.all((V[1:] >= lower[1:]) & (V[1:] <= upper[1:])), (V, lower, upper)
    assert result["synchrony"]["k_pairwise"] >= result["synchrony"]["pairwise"]


def test_weighted_loo_equals_per_bin_loo():
    """LOO over unique patterns weighted by counts = arviz_stats.loo over every bin."""
    import arviz_base
    import arviz_stats as azs

    rng = np.random.default_rng(2)
    spins = np.where(rng.random((150, 4)) < 0.35, 1, -1).astype(np.int8)
    h = -0.6 + 0.05 * rng.normal(size=(2, 200, 4))
    J = np.zeros((2, 200, 4, 4))
    V = np.concatenate([np.zeros((2, 200, 1)), 0.05 * rng.normal(size=(2, 200, 4))], axis=-1)
    patterns, counts = np.unique(spins, axis=0, return_counts=True)
    flat = [a.reshape((400,) + a.shape[2:]) for a in (h, J, V)]
    ll_u = kpairwise.pattern_log_likelihood_draws(patterns, *flat).reshape(2, 200, -1)
    post = {"h": h, "J": J, "V": V}
    tree = arviz_base.from_dict({"posterior": post, "log_likelihood": {"s": ll_u}})
    fit = kpairwise_fit.FitResult(tree, patterns, counts.astype(float), 0.0)
    weighted = kpairwise_fit.weighted_loo(fit)
    order = np.argsort(np.unique(spins, axis=0, return_inverse=True)[1].ravel(), kind="stable")
    ll_bins = kpairwise.pattern_log_likelihood_draws(spins[order], *flat).reshape(2, 200, -1)
    direct = azs.loo(arviz_base.from_dict({"posterior": post, "log_likelihood": {"s": ll_bins}}),
                     pointwise=True)
    np.testing.assert_allclose(weighted.elpd, direct.elpd, rtol=1e-10)
    np.testing.assert_allclose(weighted.se, direct.se, rtol=1e-8)
    np.testing.assert_allclose(weighted.p, direct.p, rtol=1e-8)
    np.testing.assert_allclose(np.asarray(weighted.elpd_i), np.asarray(direct.elpd_i).ravel(),
                               rtol=1e-10)


def test_k_pairwise_spec_and_where_it_is_refused():
    from bayes_ising.errors import ModelSpecError
    from bayes_ising.fit import bayes
    from bayes_ising.fit.model_spec import load_model_spec, model_spec_from_dict

    spec = load_model_spec("k_pairwise")
    assert (spec.family, spec.likelihood, spec.v_scale, spec.mass_matrix) == (
        "k_pairwise", "exact", 1.0, "adapt")
    assert load_model_spec("default").family == "pairwise"
    assert "family" not in load_model_spec("default").to_dict()  # old layouts unchanged
    assert model_spec_from_dict({"family": "k_pairwise", "likelihood": "pseudo"}).likelihood \
        == "pseudo"  # any N, unadjusted intervals
    for bad, needle in [({"family": "k_pairwise", "prior": {"J": {"family": "horseshoe"}}},
                         "prior.J.family"),
                        ({"prior": {"V": {"scale": 1.0}}}, "prior.V applies only"),
                        ({"family": "triplet"}, "family must be one of")]:
        with pytest.raises(ModelSpecError, match=needle):
            model_spec_from_dict(bad)
    with pytest.raises(ModelSpecError, match="kpairwise_fit.fit_posterior"):
        bayes.fit_posterior(0, np.ones((10, 3)), spec)


def _planted_file(tmp_path, num_bins=1500):
    spins, _ = _planted(num_neurons=5, num_bins=num_bins, seed=2)
    path = tmp_path / "planted.npz"
    np.savez(path, raster=(spins > 0).astype(np.int8))
    return path


def test_study_plan_adds_one_family_comparison_per_small_fit(tmp_path):
    from bayes_ising.data import load
    from bayes_ising.pipeline import plan as study_plan

    data = load(_planted_file(tmp_path, 400))
    plain = study_plan.plan_study(data, study_plan.StudySettings(num_draws=50))
    asked = study_plan.plan_study(data, study_plan.StudySettings(compare_families=True,
                                                                 num_draws=50))
    assert "families" not in {t.kind for t in plain.tasks}
    families = [t for t in asked.tasks if t.kind == "families"]
    assert len(families) == 1 and families[0].params["families"] == list(kpairwise.FAMILIES)
    assert families[0].params["num_draws"] == 50
    assert families[0].params["spec"]["family"] == "k_pairwise"
    # the other tasks are the same (their keys do not read the new setting)
    assert [t.key for t in plain.tasks] == [t.key for t in asked.tasks if t.kind != "families"]


@pytest.mark.slow
def test_cli_compare_families_and_fit_k_pairwise(tmp_path, capsys):

    from bayes_ising import cli
    from bayes_ising.fit import bayes

    path = _planted_file(tmp_path)
    out = tmp_path / "cmp.json"
    code = cli.main(["compare-families", str(path), "--families", "pairwise,k_pairwise",
                     "--num-chains", "2", "--num-draws", "150", "--num-warmup", "150",
                     "--posterior-draws", "60", "--out", str(out)])
    text = capsys.readouterr().out
    assert code == 0 and "elpd_loo" in text and "k_pairwise" in text
    summary = json.loads(out.read_text())
    assert [r["family"] for r in summary["rows"]][0] == "k_pairwise"  # planted family first
    assert summary["rows"][1]["elpd_diff"] < 0 and summary["rows"][1]["dse"] > 0
    assert len(summary["synchrony"]["observed"]) == 6
    code = cli.main(["fit", str(path), "--model", "k_pairwise", "--num-chains", "2",
                     "--num-draws", "60", "--num-warmup", "60", "--out",
                     str(tmp_path / "kp.nc")])
    assert code == 0 and "k_pairwise (exact likelihood)" in capsys.readouterr().out
    tree = bayes.load_posterior(tmp_path / "kp.nc", family="k_pairwise")
    assert tree["posterior"]["V"].shape == (2, 60, 6) and tree.attrs["family"] == "k_pairwise"
    assert tree["posterior"]["J"].dims == ("chain", "draw", "pair")  # the posterior contract
    assert cli.main(["check", str(tmp_path / "kp.nc"), str(path), "--out",
                     str(tmp_path / "c.json"), "--no-progress"]) == 0  # V(K) included
    assert "K-pairwise model (V(K) included)" in capsys.readouterr().out
    assert cli.main(["diagnose", str(tmp_path / "kp.nc"), "--out",
                     str(tmp_path / "d.json")]) == 0  # per neuron, and every level V(k)
    capsys.readouterr()
    diagnosis = json.loads((tmp_path / "d.json").read_text())
    assert [row["k"] for row in diagnosis["potential"]] == list(range(1, 6))


@pytest.mark.slow
def test_study_with_family_comparison_writes_table_and_report_section(tmp_path):
    from bayes_ising.pipeline import plan as study_plan
    from bayes_ising.report import study as report_study

    result = study_plan.study(
        _planted_file(tmp_path), tmp_path / "study", progress=False, log=lambda *a: None,
        settings=study_plan.FAST_SETTINGS, compare_families=True, num_draws=100,
        num_warmup=100)
    entry = result.summary["families"][0]
    assert [r["family"] for r in entry["rows"]][0] == "k_pairwise"
    table = result.tables["families"]
    assert set(table["family"]) == set(kpairwise.FAMILIES) and len(table) == 3
    html = report_study.render_study(tmp_path / "study").read_text()
    section = html[html.index('id="families"'):html.index('id="ei"')]
    assert "elpd_loo" in section and "<img" in section and "Not available" not in section


def _large_population(num_bins=400, seed=0, planted=False):
    """SpikeData with 21 E + 3 I neurons (E+I: N = 24 > 22; I: N = 3); ``planted``: spins of a
    K-pairwise model with a step in V (Gibbs), else independent spins."""
    from bayes_ising.data import SpikeData

    n = 24
    rng = np.random.default_rng(seed)
    if planted:
        from bayes_ising.core import gibbs

        h = rng.normal(-0.9, 0.2, n)
        J = np.asarray(ising.couplings_to_matrix(rng.normal(0, 0.05, ising.num_pairs(n)), n))
        V = np.where(np.arange(n + 1) >= 6, 1.5, 0.0)
        spins = np.asarray(gibbs.sample_kpairwise_spins(
            jax.random.key(seed), h[None], J[None], V[None], num_bins, num_chains=50,
            burn_in=200, thin=3)[0])
    else:
        spins = np.where(rng.random((num_bins, n)) < 0.3, 1, -1)
    return SpikeData(spins=spins, neuron_ids=[f"n{i:02d}" for i in range(n)],
                     cell_types=["E"] * 21 + ["I"] * 3, source="synthetic")


def test_study_plan_compares_families_above_22_neurons_by_held_out_blocks():
    from bayes_ising.cli import build_parser
    from bayes_ising.cli.commands.study import settings_from_args
    from bayes_ising.errors import BayesIsingError, DataError
    from bayes_ising.pipeline import plan as study_plan

    data = _large_population()
    settings = study_plan.StudySettings(compare_families=True, populations=("E+I", "I"),
                                        held_out_blocks=4)
    plan = study_plan.plan_study(data, settings)
    tasks = {t.population: t for t in plan.tasks if t.kind == "families"}
    assert set(tasks) == {"E+I", "I"}
    big, small = tasks["E+I"], tasks["I"]
    assert big.params["method"] == "held_out" and big.params["held_out_blocks"] == 4
    assert len(big.params["neurons"]) == 24 and big.params["check_draws"] == 50
    assert small.params["method"] == "loo" and "held_out_blocks" not in small.params
    assert not any("family comparison skipped" in n for n in plan.notes)
    other = study_plan.plan_study(data, dataclasses.replace(settings, held_out_blocks=5))
    keys = {t.population: t.key for t in other.tasks if t.kind == "families"}
    assert keys["E+I"] != big.key and keys["I"] == small.key  # only the task that reads it
    with pytest.raises(DataError, match="held_out_blocks"):
        study_plan.plan_study(data, dataclasses.replace(settings, held_out_blocks=1))
    parser = build_parser()
    args = parser.parse_args(["study", "d.npz", "--out", "o", "--compare-families",
                              "--held-out-blocks", "3"])
    assert settings_from_args(args).held_out_blocks == 3
    with pytest.raises(BayesIsingError, match="--compare-families"):
        settings_from_args(parser.parse_args(["study", "d.npz", "--out", "o",
                                              "--held-out-blocks", "3"]))


@pytest.mark.slow
def test_study_compares_families_above_22_neurons_beside_loo(tmp_path):
    """A study of E+I (N = 24: held-out pseudolikelihood, 3 blocks) and I (N = 3: PSIS-LOO)
    with tiny settings: study.json, tables/families.csv and the report show both, labelled."""

    from bayes_ising.pipeline import plan as study_plan

    result = study_plan.study(
        _large_population(num_bins=300, planted=True), tmp_path / "study", progress=False,
        log=lambda *a: None, settings=study_plan.FAST_SETTINGS, compare_families=True,
        held_out_blocks=3, populations=("E+I", "I"), compare_populations=("I",),
        num_draws=30, num_warmup=30, posterior_draws=4, check_samples=1_000,
        thermo_draws=2, thermo_sweeps=200, walk_draws=100)
    summary = json.loads((tmp_path / "study" / "study.json").read_text())
    entries = {e["population"]: e for e in summary["families"]}
    assert entries["E+I"]["method"] == "held_out" and entries["I"]["method"] == "loo"
    assert "pseudolikelihood" in entries["E+I"]["criterion"]
    rows = entries["E+I"]["rows"]
    assert {r["family"] for r in rows} == set(kpairwise.FAMILIES) and len(rows) == 3
    assert rows[0]["held_out_difference"] == 0 and all(
        r["held_out_se"] >= 0 and 0 <= r["pk_in_band"] <= r["pk_seen"] for r in rows)
    stored = json.loads((tmp_path / "study" / entries["E+I"]["result"]).read_text())["result"]
    assert stored["method"] == "held_out" and len(stored["held_out"]["block_scores"][0]) == 3
    assert "PSIS-LOO needs the exact likelihood" in stored["caveat"]
    table = result.tables["families"]
    assert set(table["method"]) == {"loo", "held_out"} and len(table) == 6
    html = result.report.read_text()
    section = html[html.index('id="families"'):html.index('id="ei"')]
    assert "elpd_loo" in section and 'id="families-held-out"' in section
    assert "held-out log PL per bin" in section and "a different criterion" in section
    assert section.count("<img") == 2 and "Not available" not in section


def test_third_order_check_matches_brute_force():
    from bayes_ising.core import stats

    draws = [_random_params(5, seed=s) for s in (20, 21, 22)]
    h, J, V = (np.stack([d[k] for d in draws])[None] for k in range(3))  # (1 chain, 3 draws)
    tree = kpairwise_fit.draws_tree(h, J, V)
    spins = np.where(np.random.default_rng(4).random((2000, 5)) < 0.3, 1, -1)
    result = families.third_order_check(tree, spins, num_draws=None)
    i, j, k = np.array([(a, b, c) for a in range(5) for b in range(a + 1, 5)
                        for c in range(b + 1, 5)]).T
    states = ising.all_states(5).astype(float)
    brute = []
    for hd, Jd, Vd in draws:  # connected ⟨δs_i δs_j δs_k⟩ by a direct sum over the 32 states
        log_z, m, _, _ = _brute(hd, Jd, Vd)
        neg = (states @ hd + 0.5 * np.einsum("si,ij,sj->s", states, Jd, states)
               + Vd[(states > 0).sum(axis=1)])
        d = states - m
        brute.append(np.exp(neg - log_z) @ (d[:, i] * d[:, j] * d[:, k]))
    median = np.median(brute, axis=0)
    observed = stats.third_order_correlations(spins)[i, j, k]
    np.testing.assert_allclose(result["slope"], median @ observed / (observed @ observed),
                               rtol=1e-9)
    np.testing.assert_allclose(result["rms_error"],
                               np.sqrt(np.mean((median - observed) ** 2)), rtol=1e-9)


def test_exact_entropy_brute_force_and_information_ratio():
    from bayes_ising.analysis.checks import _binary_entropy
    from bayes_ising.core import stats

    h, J, V = _random_params(6, seed=30)
    log_z, _, _, _ = _brute(h, J, V)
    s = ising.all_states(6).astype(float)
    log_p = (s @ h + 0.5 * np.einsum("si,ij,sj->s", s, J, s) + V[(s > 0).sum(axis=1)]) - log_z
    np.testing.assert_allclose(kpairwise.exact_entropy(h, J, V), -np.exp(log_p) @ log_p,
                               rtol=1e-12)
    np.testing.assert_allclose(kpairwise.exact_entropy(h, J, np.zeros(7)),
                               ising.exact_entropy(h, J), rtol=1e-12)
    tree = kpairwise_fit.draws_tree(h[None, None], J[None, None], V[None, None])
    spins = np.where(np.random.default_rng(5).random((3000, 6)) < 0.3, 1, -1)
    info = families.information_check(tree, spins, num_draws=None)
    s1 = _binary_entropy(stats.firing_probability(spins))
    i_n = s1 - stats.data_entropy(spins).miller_madow
    np.testing.assert_allclose(info["ratio"], (s1 - (-np.exp(log_p) @ log_p)) / i_n,
                               rtol=1e-10)


def test_pattern_check_probabilities_match_brute_force():

    h, J, V = _random_params(5, seed=40)
    tree = kpairwise_fit.draws_tree(h[None, None], J[None, None], V[None, None])
    spins = np.where(np.random.default_rng(6).random((1000, 5)) < 0.3, 1, -1)
    result = families.pattern_check(tree, spins, top=6, num_draws=None)
    log_z = _brute(h, J, V)[0]
    s = result["patterns"].astype(float)
    brute = np.exp(s @ h + 0.5 * np.einsum("si,ij,sj->s", s, J, s)
                   + V[(s > 0).sum(axis=1)] - log_z)
    np.testing.assert_allclose(result["median"], brute, rtol=1e-10)
    patterns, counts = np.unique(spins, axis=0, return_counts=True)
    assert np.allclose(result["observed"], np.sort(counts)[::-1][:6] / 1000)
    assert 0 <= result["in_band"] <= 6
