"""A posterior knows its data: the selection recorded at fit time is applied and enforced later.

Planted data: a 6-neuron raster with E/I types and two states, saved as .npz; a posterior fitted
(exact likelihood, tiny run) to the "deep" bins of the neurons firing in >= 10% of them.
"""

import json

import numpy as np
import pytest

from bayes_ising import cli
from bayes_ising.data import SpikeData, load
from bayes_ising.errors import DataError
from bayes_ising.fit import provenance


def _raster(path, seed=0, num_bins=1200):
    rng = np.random.default_rng(seed)
    rates = np.array([0.3, 0.2, 0.15, 0.12, 0.04, 0.25])
    raster = (rng.random((num_bins, rates.size)) < rates).astype(np.int8)
    states = np.where(np.arange(num_bins) < num_bins // 3, "wake", "deep")
    SpikeData.from_raster(raster, neuron_ids=[f"n{k}" for k in range(rates.size)],
                          cell_types=["E"] * 4 + ["I"] * 2, states=states, bin_size=0.05,
                          time_units="s").to_npz(path)
    return path


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    work = tmp_path_factory.mktemp("provenance")
    data_file = _raster(work / "rec.npz")
    posterior = work / "post.nc"
    code = cli.main(["fit", str(data_file), "--likelihood", "exact", "--num-chains", "2",
                     "--num-draws", "40", "--num-warmup", "40", "--no-progress", "--state", "deep",
                     "--min-rate", "0.1", "--convention", "01", "--out", str(posterior)])
    assert code == 0
    return work, data_file, posterior


def test_select_by_ids_and_cap_states_its_rule():
    rng = np.random.default_rng(1)
    rates = np.array([0.1, 0.4, 0.2, 0.4, 0.05])
    data = SpikeData.from_raster((rng.random((4000, 5)) < rates).astype(np.int8),
                                 neuron_ids=list("abcde"))
    p = data.firing_probability
    picked = provenance.select(data, max_neurons=3)
    expected = np.sort(np.argsort(-p, kind="stable")[:3])  # the 3 most active, file order
    assert picked.neuron_ids.tolist() == data.neuron_ids[expected].tolist()
    assert picked.selection["max_neurons"] == 3
    both = provenance.select(data, neurons="e,a,c", max_neurons=2)
    assert both.neuron_ids.tolist() == ["a", "c"]  # c (0.2) and a (0.1) beat e (0.05)
    with pytest.raises(DataError, match="not in the selected data"):
        provenance.select(data, neurons=["a", "zz"])


def test_fit_records_the_selection(fitted):
    work, data_file, posterior = fitted
    from bayes_ising.fit import bayes

    rec = provenance.recorded(bayes.load_posterior(posterior))
    selected = load(data_file).select(state="deep", min_rate=0.1)
    assert rec["state"] == "deep" and rec["min_rate"] == 0.1
    assert rec["neuron_ids"] == selected.neuron_ids.tolist()
    assert rec["num_bins"] == selected.num_bins == 800
    assert rec["sha256"] == provenance.file_sha256(data_file)
    assert rec["bin_size"] == 0.05 and rec["time_units"] == "s"


def test_fit_writes_the_01_convention_exactly(fitted):
    from bayes_ising.core import ising
    from bayes_ising.fit import bayes, posterior

    tree = bayes.load_posterior(fitted[2])
    h, J = posterior.posterior_draws(tree)
    a, b = ising.convert(h, J, "01")
    first, second = posterior.pair_members(tree)
    group = tree["lattice_gas"]
    np.testing.assert_allclose(group["a"].values.reshape(a.shape), a)
    np.testing.assert_allclose(group["b"].values.reshape(-1, first.size), b[:, first, second])


def test_diagnose_writes_the_01_convention_summary(fitted):
    from bayes_ising.core import ising
    from bayes_ising.fit import bayes, posterior

    work, _, path = fitted
    out = work / "diag01.json"
    assert cli.main(["diagnose", str(path), "--convention", "01", "--out", str(out),
                     "--force"]) == 0
    table = json.loads(out.read_text())["parameters_01"]
    h, J = posterior.posterior_draws(bayes.load_posterior(path))
    a, b = (np.asarray(x) for x in ising.convert(h, J, "01"))
    first, second = posterior.pair_members(bayes.load_posterior(path))
    np.testing.assert_allclose(table["a"]["mean"], a.mean(axis=0), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(table["b"]["sd"], b[:, first, second].std(axis=0, ddof=1),
                               rtol=1e-10, atol=1e-12)
    assert np.all(np.asarray(table["a"]["lower"]) <= np.asarray(table["a"]["upper"]))
    assert len(table["b"]["rhat"]) == first.size


def test_no_flags_apply_the_recorded_selection(fitted):
    work, data_file, posterior = fitted
    out = work / "checks.json"
    code = cli.main(["check", str(posterior), str(data_file), "--out", str(out), "--force",
                     "--posterior-draws", "5", "--no-ei"])
    assert code == 0
    checks = json.loads(out.read_text())
    assert checks["num_bins"] == 800  # the deep bins, not all 1200


@pytest.mark.parametrize("flags, needle", [
    (["--state", "wake"], "bins"),          # other bins than the fit's
    ([], "SHA-256"),                        # another file (same layout, other spikes)
])
def test_mismatched_data_are_refused(fitted, capsys, flags, needle):
    work, data_file, posterior = fitted
    target = data_file if flags else _raster(work / "other.npz", seed=7)
    code = cli.main(["check", str(posterior), str(target), "--out", str(work / "x.json"),
                     "--force", "--posterior-draws", "5", "--no-ei", *flags])
    err = capsys.readouterr().err
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and needle in lines[0], err
    assert not (work / "x.json").exists()


def test_allow_other_data_still_needs_the_neurons(fitted):
    work, data_file, posterior = fitted
    from bayes_ising.fit import bayes

    tree = bayes.load_posterior(posterior)
    other = load(_raster(work / "other2.npz", seed=8))
    kept = provenance.apply(tree, other, path=work / "other2.npz", allow_other_data=True)
    assert set(provenance.recorded(tree)["neuron_ids"]) <= set(kept.neuron_ids.tolist())
    with pytest.raises(DataError, match="lack"):
        provenance.apply(tree, other, {"neurons": "n0,n1"}, allow_other_data=True)


def test_i2_in_outside_unit_interval_carries_a_warning():
    from bayes_ising.analysis import checks

    rng = np.random.default_rng(3)
    h = np.full((4, 5), -0.4)
    coupled = np.full((4, 5, 5), 0.8) * (1 - np.eye(5))
    independent = np.where(rng.random((3000, 5)) < 0.3, 1, -1).astype(np.int8)
    # independent data: IN = S1 - SN is ~0, the ratio explodes -> "too few bins"
    none = checks.information(h, coupled, independent)
    assert not 0 <= none["ratio"]["median"] <= 1 and "not positive" in none["ratio_warning"]
    drive = rng.random(3000) < 0.3
    correlated = np.where(rng.random((3000, 5)) < np.where(drive, 0.6, 0.1)[:, None], 1, -1)
    # a strongly coupled model "checked" on other data: S2 below SN -> ratio > 1
    bad = checks.information(h, coupled, correlated)
    assert bad["ratio"]["upper"] > 1 and "S2" in bad["ratio_warning"]
    fine = checks.information(h, np.zeros((4, 5, 5)), correlated)
    assert 0 <= fine["ratio"]["lower"] and fine["ratio_warning"] is None
