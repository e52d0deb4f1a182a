"""Diagnostics: run verdicts, per-neuron reliability flags, rule comparison.

Hand-built posterior DataTrees in the contract's layout (known Gaussian draws) test the rule
exactly; a real NUTS fit on a small synthetic Ising sample tests the pass/fail verdicts end to
end, and the retina posterior (slow) the flags on real data.
"""

import json

import jax
import numpy as np
import pytest
import xarray as xr

from bayes_ising.analysis import diagnostics

NUM_CHAINS, NUM_DRAWS, N = 4, 300, 6


def _tree(rng, *, sd_h, sd_j, mean_h=None, mean_j=None, shift_chain=None, diverging=None,
          tree_depth=None, energy=None, prior_scale=(2.0, 1.0), firing=None):
    """Posterior with independent Normal draws: h_i ~ N(mean_h_i, sd_h_i), J_p ~ N(mean, sd)."""
    num_pairs = N * (N - 1) // 2
    first, second = np.triu_indices(N, 1)
    mean_h = np.linspace(-1.5, -0.5, N) if mean_h is None else mean_h
    mean_j = rng.normal(0, 0.1, num_pairs) if mean_j is None else mean_j
    h = mean_h + sd_h * rng.normal(size=(NUM_CHAINS, NUM_DRAWS, N))
    J = mean_j + sd_j * rng.normal(size=(NUM_CHAINS, NUM_DRAWS, num_pairs))
    if shift_chain is not None:
        h[0] += shift_chain * np.asarray(sd_h)
        J[0] += shift_chain * np.asarray(sd_j)
    ids = np.array([f"n{i}" for i in range(N)])
    posterior = xr.Dataset(
        {"h": (("chain", "draw", "neuron"), h), "J": (("chain", "draw", "pair"), J)},
        coords={"chain": np.arange(NUM_CHAINS), "draw": np.arange(NUM_DRAWS), "neuron": ids,
                "cell_type": ("neuron", np.array(["E"] * (N - 2) + ["I"] * 2)),
                "pair": np.arange(num_pairs), "neuron_i": ("pair", ids[first]),
                "neuron_j": ("pair", ids[second])})
    stats = {"diverging": (("chain", "draw"), np.zeros((NUM_CHAINS, NUM_DRAWS), bool)
                           if diverging is None else diverging),
             "tree_depth": (("chain", "draw"), np.full((NUM_CHAINS, NUM_DRAWS), 3)
                            if tree_depth is None else tree_depth),
             "energy": (("chain", "draw"), rng.normal(size=(NUM_CHAINS, NUM_DRAWS))
                        if energy is None else energy)}
    firing = np.linspace(0.01, 0.3, N) if firing is None else firing
    observed = xr.Dataset({"firing_probability": (("neuron",), firing)},
                          coords={"neuron": ids})
    tree = xr.DataTree.from_dict({"posterior": posterior, "sample_stats": xr.Dataset(stats),
                                  "observed_data": observed})
    spec = {"prior": {"h": {"family": "normal", "mean": 0.0, "scale": prior_scale[0]},
                      "J": {"family": "normal", "scale": prior_scale[1]}}}
    tree.attrs["model_spec"] = json.dumps(spec)
    return tree


def _good_sds():
    return np.full(N, 0.02), np.full(N * (N - 1) // 2, 0.01)


def test_good_run_passes_and_nothing_flagged():
    rng = np.random.default_rng(0)
    sd_h, sd_j = _good_sds()
    diag = diagnostics.diagnose(_tree(rng, sd_h=sd_h, sd_j=sd_j))
    assert diag["converged"], diag["reasons"]
    assert diag["reasons"] == []
    assert diag["num_flagged"] == 0
    assert diag["summary"]["max_rhat"] < 1.01
    assert diag["summary"]["min_ess_bulk"] > 700  # independent draws: ESS ≈ 1200
    row = diag["neurons"][0]
    assert set(row) >= {"id", "cell_type", "firing_probability", "flagged", "reasons",
                        "max_rhat", "min_ess_bulk", "contraction"}
    assert row["cell_type"] == "E" and diag["neurons"][-1]["cell_type"] == "I"


def test_stuck_chain_fails_run_and_flags_every_neuron():
    rng = np.random.default_rng(1)
    sd_h, sd_j = _good_sds()
    diag = diagnostics.diagnose(_tree(rng, sd_h=sd_h, sd_j=sd_j, shift_chain=3.0))
    assert not diag["converged"]
    assert any("R-hat" in r for r in diag["reasons"])
    assert diag["num_flagged"] == N
    assert all(row["non_convergence"] and not row["weak_identification"]
               for row in diag["neurons"])
    assert all("non-convergence: max R-hat" in row["reasons"][0] for row in diag["neurons"])


def test_prior_contraction_matches_known_variances():
    rng = np.random.default_rng(2)
    sd_h, sd_j = _good_sds()
    params = diagnostics.parameter_table(_tree(rng, sd_h=sd_h, sd_j=sd_j,
                                               prior_scale=(2.0, 0.5)))
    # 1 − Var_post/Var_prior with Var_post = sd², sampling error of a variance from 1200 draws
    np.testing.assert_allclose(params["contraction_prior_h"], 1 - 0.02**2 / 4, atol=2e-5)
    np.testing.assert_allclose(params["contraction_prior_J"], 1 - 0.01**2 / 0.25, atol=4e-5)
    np.testing.assert_allclose(params["prior_var_J"], 0.25)
    # 90% central interval of a normal: width 2 · 1.645 sd (quantile error ~3%)
    np.testing.assert_allclose(params["width_h"], 2 * 1.6449 * 0.02, rtol=0.05)


def test_hierarchical_and_horseshoe_prior_variances():
    rng = np.random.default_rng(3)
    sd_h, sd_j = _good_sds()
    tree = _tree(rng, sd_h=sd_h, sd_j=sd_j)
    tree.attrs["model_spec"] = json.dumps(
        {"prior": {"J": {"family": "hierarchical", "scale": 0.3}}})
    np.testing.assert_allclose(diagnostics.prior_variance(tree)["J"], 0.09)
    tree.attrs["model_spec"] = json.dumps(
        {"prior": {"J": {"family": "horseshoe", "global_scale": 0.1, "slab_scale": 1.0,
                         "slab_df": 4.0}}})
    var = diagnostics.prior_variance(tree)["J"][0]
    assert 0 < var < 1.0  # bounded by the slab: E[c²] = s² ν/(ν − 2) = 2


def test_weakly_identified_neuron_flagged_with_reason():
    """Neuron 0's h and couplings have a posterior sd as large as the population spread."""
    rng = np.random.default_rng(4)
    sd_h, sd_j = _good_sds()
    first, second = np.triu_indices(N, 1)
    sd_h = sd_h.copy()
    sd_j = sd_j.copy()
    sd_h[0] = 1.0
    sd_j[(first == 0) | (second == 0)] = 0.3  # population spread of J means is 0.1
    diag = diagnostics.diagnose(_tree(rng, sd_h=sd_h, sd_j=sd_j))
    flagged = [row["id"] for row in diag["neurons"] if row["flagged"]]
    assert flagged == ["n0"]
    row = diag["neurons"][0]
    assert row["weak_identification"] and not row["non_convergence"]
    assert any("contraction of its 0/1 field a" in r for r in row["reasons"])  # the rule: a_i
    assert any("median contraction of its couplings" in r for r in row["reasons"])
    assert diag["converged"]  # weak identification is not a convergence failure


def test_divergences_localised_on_one_neuron():
    rng = np.random.default_rng(5)
    sd_h, sd_j = _good_sds()
    tree = _tree(rng, sd_h=sd_h, sd_j=sd_j)
    h3 = tree["posterior"]["h"].values[..., 3]
    diverging = h3 < np.quantile(h3, 0.01)  # 12 divergences, all in h_3's lower tail
    stats = tree["sample_stats"].to_dataset()
    stats["diverging"] = (("chain", "draw"), diverging)
    tree["sample_stats"] = xr.DataTree(stats)
    local = diagnostics.divergence_localization(tree)
    assert np.flatnonzero(local["h"]).tolist() == [3]
    assert not local["J"].any()
    diag = diagnostics.diagnose(tree)
    assert not diag["converged"] and any("diverged" in r for r in diag["reasons"])
    assert [row["id"] for row in diag["neurons"] if row["divergence_touched"]] == ["n3"]


def test_tree_depth_saturation_and_low_bfmi():
    rng = np.random.default_rng(6)
    sd_h, sd_j = _good_sds()
    depth = np.full((NUM_CHAINS, NUM_DRAWS), 4)
    depth[1, :100] = 10
    energy = rng.normal(size=(NUM_CHAINS, NUM_DRAWS))
    energy[2] = np.cumsum(rng.normal(size=NUM_DRAWS)) * 0.1  # a slow random walk: low E-BFMI
    diag = diagnostics.diagnose(_tree(rng, sd_h=sd_h, sd_j=sd_j, tree_depth=depth,
                                      energy=energy))
    assert diag["sampler"]["tree_depth_saturation"] == pytest.approx(100 / 1200)
    assert diag["sampler"]["bfmi"][2] < 0.3 < min(diag["sampler"]["bfmi"][k] for k in (0, 1, 3))
    # 8% saturation is an efficiency warning; only extreme saturation fails the run
    assert any("tree depth" in w for w in diag["warnings"])
    assert not any("tree depth" in r for r in diag["reasons"])
    assert any("E-BFMI" in r and "[2]" in r for r in diag["reasons"])
    depth[:, : int(0.3 * NUM_DRAWS)] = 10
    diag = diagnostics.diagnose(_tree(rng, sd_h=sd_h, sd_j=sd_j, tree_depth=depth))
    assert any("tree depth" in r for r in diag["reasons"]) and not diag["converged"]


def test_bfmi_matches_arviz_stats():
    import arviz_stats

    rng = np.random.default_rng(7)
    energy = np.cumsum(rng.normal(size=(3, 400)), axis=1)
    ours = diagnostics._bfmi(energy)
    theirs = np.asarray(arviz_stats.bfmi(energy))
    np.testing.assert_allclose(ours, theirs, rtol=1e-10)


def test_compare_rules_agreement_counts():
    rng = np.random.default_rng(8)
    sd_h, sd_j = _good_sds()
    sd_h = sd_h.copy()
    sd_h[0] = 1.0
    diag = diagnostics.diagnose(_tree(rng, sd_h=sd_h, sd_j=sd_j))
    out = diagnostics.compare_rules(diag, restart_flagged=[1, 1, 0, 0, 0, 0],
                                    firing_flagged=[1, 0, 0, 0, 0, 0])
    assert out["agreement"]["diagnostics_vs_restarts"] == dict(
        both=1, neither=4, only_first=0, only_second=1, agree=5, total=6)
    assert out["agreement"]["diagnostics_vs_firing"]["agree"] == 6
    assert out["neurons"][1] == {"id": "n1", "diagnostics": False, "restarts": True,
                                 "firing": False}


def test_rule_recovery_auc_and_precision():
    errors = np.array([0.5, 0.4, 0.05, 0.02, 0.01, 0.03])
    rules = {"perfect": (errors > 0.1, errors), "inverted": (errors < 0.1, -errors),
             "flags_only": (np.array([1, 0, 1, 0, 0, 0], bool), None)}
    out = diagnostics.rule_recovery(errors, 0.1, rules)
    assert out["num_bad"] == 2
    assert out["perfect"]["auc"] == 1.0 and out["perfect"]["precision"] == 1.0
    assert out["inverted"]["auc"] == 0.0
    assert out["flags_only"]["precision"] == 0.5 and out["flags_only"]["recall"] == 0.5
    assert out["flags_only"]["auc"] == pytest.approx(0.625)


@pytest.fixture(scope="module")
def small_sample():
    from bayes_ising.data import synthetic

    truth = synthetic.ei_ising_parameters(jax.random.key(1), 4, 2)
    spins = synthetic.sample_ising(jax.random.key(2), truth.h, truth.J, 3000)
    return truth, spins


@pytest.mark.slow
def test_real_nuts_run_good_vs_too_little_warmup(small_sample):
    """A NUTS fit with a normal warmup passes; 2 warmup steps of plain NUTS do not."""
    from bayes_ising.fit import bayes, model_spec

    _, spins = small_sample
    good = bayes.fit_posterior(jax.random.key(0), spins, num_chains=4, num_draws=500,
                               num_warmup=200, progress=False)
    diag = diagnostics.diagnose(good)
    assert diag["converged"], diag["reasons"]
    spec = model_spec.default_model_spec().replace(mass_matrix="adapt")
    bad = bayes.fit_posterior(jax.random.key(0), spins, spec, num_chains=4, num_draws=200,
                              num_warmup=2, progress=False)
    diag_bad = diagnostics.diagnose(bad)
    assert not diag_bad["converged"]
    assert diag_bad["reasons"]


def test_cli_diagnose_keys_and_exit_codes(tmp_path, capsys):
    from bayes_ising.cli import main
    from bayes_ising.fit import bayes

    rng = np.random.default_rng(9)
    sd_h, sd_j = _good_sds()
    sd_h = sd_h.copy()
    sd_h[0] = 1.0
    tree = _tree(rng, sd_h=sd_h, sd_j=sd_j)
    tree.attrs["bayes_ising_version"] = "test"
    posterior = tmp_path / "post.nc"
    bayes.save_posterior(tree, posterior)
    out = tmp_path / "diag.json"
    assert main(["diagnose", str(posterior), "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["converged"] is True and result["reasons"] == []
    assert isinstance(result["rule"], str)
    neuron = result["neurons"][0]
    for key in ("id", "cell_type", "firing_probability", "flagged", "reasons", "max_rhat",
                "min_ess_bulk", "contraction"):
        assert key in neuron
    assert neuron["id"] == "n0" and neuron["flagged"] is True
    assert [n["flagged"] for n in result["neurons"]].count(True) == 1
    assert len(result["parameters"]["rhat_J"]) == N * (N - 1) // 2
    assert "1 of 6 neurons flagged (n0)" in capsys.readouterr().out
    # existing output without --force, a missing posterior, a file that is no posterior: exit 2
    assert main(["diagnose", str(posterior), "--out", str(out)]) == 2
    assert main(["diagnose", str(posterior), "--out", str(out), "--force"]) == 0
    assert main(["diagnose", str(tmp_path / "missing.nc"), "--out", str(out), "--force"]) == 2
    not_nc = tmp_path / "x.nc"
    not_nc.write_text("not netcdf")
    assert main(["diagnose", str(not_nc), "--out", str(out), "--force"]) == 2
    assert "error" in capsys.readouterr().err


@pytest.mark.slow
def test_rule_recovery_on_planted_truth():
    """Diagnostics vs restart cosine similarity vs the 5% rule: which predicts the neurons whose
    parameters are recovered badly (RMS error over h_i, J_i. > 0.1)? 10 neurons with widely
    spread rates, 4000 bins, exact posterior. Asserts the numbers exist and that the
    diagnostics' score ranks badly recovered neurons better than chance (AUC > 0.5)."""
    from bayes_ising.data import synthetic
    from bayes_ising.fit import bayes

    truth = synthetic.ei_ising_parameters(jax.random.key(11), 8, 2, rate_excitatory=0.04,
                                          rate_spread=1.0)
    spins = synthetic.sample_ising(jax.random.key(12), truth.h, truth.J, 4000)
    tree = bayes.fit_posterior(jax.random.key(13), spins, num_chains=4, num_draws=500,
                               progress=False)
    out = diagnostics.recovery_comparison(jax.random.key(14), tree, spins, truth.h, truth.J)
    print(json.dumps({k: out[k] for k in ("rules", "agreement")}, default=float, indent=1))
    print("errors", np.round(out["errors"], 3), "firing", np.round(out["firing_probability"], 3))
    assert set(out["rules"]) >= {"diagnostics", "restarts", "firing", "num_bad"}
    if 0 < out["rules"]["num_bad"] < 10:
        assert out["rules"]["diagnostics"]["auc"] > 0.5


@pytest.mark.slow
def test_ei_sleep_low_rate_neurons_flagged():
    """Wake bins of ei_sleep_kinetic (the previous embedded dataset, on which this was
    measured), 12 neurons including the 3 sparse ones (1.3-1.5% of wake bins):
    exact posterior; the sparse neurons are flagged for weak identification, the neurons firing
    in more than 8% of bins are not."""
    from bayes_ising.data import SpikeData, datasets
    from bayes_ising.fit import bayes

    data = datasets.ei_sleep_kinetic()
    truth = datasets.ei_sleep_kinetic_truth()
    types = np.asarray(data.cell_types)
    excitatory = np.flatnonzero(types == "E")
    others = [i for i in excitatory if not truth.sparse[i]][:7]
    keep = np.sort(np.concatenate([np.flatnonzero(truth.sparse), others,
                                   np.flatnonzero(types == "I")[:2]]))
    wake = data.select(state="wake")
    sub = SpikeData.from_raster(np.asarray(wake.spins)[:, keep],
                                neuron_ids=np.asarray(data.neuron_ids)[keep],
                                cell_types=types[keep])
    tree = bayes.fit_posterior(jax.random.key(0), sub, num_chains=4, num_draws=500,
                               progress=False)
    diag = diagnostics.diagnose(tree)
    rows = {row["id"]: row for row in diag["neurons"]}
    for k in np.flatnonzero(truth.sparse):
        row = rows[str(data.neuron_ids[k])]
        assert row["flagged"] and row["weak_identification"], row
    for row in diag["neurons"]:
        if row["firing_probability"] > 0.08:
            assert not row["weak_identification"], row


def test_old_threshold_spellings_warn_and_mean_the_same():
    """diagnose(rhat_max=, ess_min=, contraction_min=) and diagnostics.RHAT_MAX & co. still work
    (one release) with a DeprecationWarning; the JSON thresholds use the one spelling."""
    rng = np.random.default_rng(3)
    tree = _tree(rng, sd_h=np.full(N, 0.02), sd_j=np.full(N * (N - 1) // 2, 0.01))
    new = diagnostics.diagnose(tree, max_rhat=1.05, min_ess=100, min_contraction=0.4)
    with pytest.warns(DeprecationWarning, match="rhat_max"):
        old = diagnostics.diagnose(tree, rhat_max=1.05, ess_min=100, contraction_min=0.4)
    assert old["thresholds"] == new["thresholds"]
    assert new["thresholds"]["max_rhat"] == 1.05 and new["thresholds"]["min_contraction"] == 0.4
    assert [row["reasons"] for row in old["neurons"]] == [row["reasons"] for row in new["neurons"]]
    with pytest.warns(DeprecationWarning, match="MIN_CONTRACTION"):
        assert diagnostics.CONTRACTION_MIN == diagnostics.MIN_CONTRACTION
    with pytest.raises(TypeError, match="unexpected keyword"):
        diagnostics.diagnose(tree, rhat_limit=1.05)
