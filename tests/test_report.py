"""The HTML report and its figures: sections, embedding, labels, the J mask, atomic writes.

These tests build posteriors by hand (DataTrees in the layout of ``bayes.fit_posterior`` with
known draws), so every number the report shows can be checked against a direct NumPy formula.
"""

import base64
import json
import re
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from bayes_ising import report
from bayes_ising.errors import DataError, ExistingOutputError
from bayes_ising.report import plots


def make_tree(num_neurons=6, num_chains=2, num_draws=200, seed=0, shuffle_pairs=False,
              cell_types=None):
    """A posterior DataTree in the contract's layout, with draws around known values."""
    rng = np.random.default_rng(seed)
    ids = np.array([f"n{k}" for k in range(num_neurons)])
    types = np.array(cell_types or (["I", "E"] * num_neurons)[:num_neurons])
    first, second = np.triu_indices(num_neurons, 1)
    order = rng.permutation(first.size) if shuffle_pairs else np.arange(first.size)
    first, second = first[order], second[order]
    h_centre = rng.normal(-1.0, 0.3, num_neurons)
    j_centre = rng.normal(0.0, 0.3, first.size)
    j_centre[:2] = [0.0, 0.01]  # two couplings whose interval must include 0
    h = h_centre + 0.05 * rng.normal(size=(num_chains, num_draws, num_neurons))
    J = j_centre + 0.05 * rng.normal(size=(num_chains, num_draws, first.size))
    blocks = ["-".join(sorted((types[a], types[b]))) for a, b in zip(first, second, strict=True)]
    posterior = xr.Dataset(
        {"h": (("chain", "draw", "neuron"), h), "J": (("chain", "draw", "pair"), J)},
        coords={"chain": np.arange(num_chains), "draw": np.arange(num_draws), "neuron": ids,
                "cell_type": ("neuron", types), "pair": np.arange(first.size),
                "neuron_i": ("pair", ids[first]), "neuron_j": ("pair", ids[second]),
                "block": ("pair", blocks)})
    shape = (num_chains, num_draws)
    sample_stats = xr.Dataset(
        {"diverging": (("chain", "draw"), np.zeros(shape, bool)),
         "tree_depth": (("chain", "draw"), np.full(shape, 3)),
         "n_steps": (("chain", "draw"), np.full(shape, 7)),
         "energy": (("chain", "draw"), rng.normal(size=shape))},
        coords={"chain": np.arange(num_chains), "draw": np.arange(num_draws)})
    spins = np.where(rng.random((800, num_neurons)) < 0.15, 1, -1).astype(np.int8)
    observed = xr.Dataset({"firing_probability": ("neuron", (1 + spins.mean(0)) / 2),
                           "m": ("neuron", spins.mean(0)), "num_bins": 800,
                           "spins": (("bin", "neuron"), spins)}, coords={"neuron": ids})
    tree = xr.DataTree.from_dict({"posterior": posterior, "sample_stats": sample_stats,
                                  "observed_data": observed})
    tree.attrs.update(likelihood="exact", adjust="none", seed="0", data_source="hand-made",
                      bayes_ising_version="test", neuron_ids=json.dumps(ids.tolist()),
                      cell_types=json.dumps(types.tolist()), sampling_time_s=1.5)
    return tree, (first, second, j_centre)


class _Collector(HTMLParser):
    def __init__(self):
        super().__init__()
        self.sections, self.images, self.external, self.headings = [], [], [], []
        self._in_h2 = False

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "section":
            self.sections.append(attrs.get("id"))
        if tag == "img":
            self.images.append(attrs.get("src", ""))
        for key in ("src", "href"):
            value = attrs.get(key) or ""
            if value and not value.startswith(("data:", "#")):
                self.external.append(value)
        if tag in ("script", "link", "iframe"):
            self.external.append(tag)
        self._in_h2 = tag == "h2"

    def handle_data(self, data):
        if self._in_h2:
            self.headings.append(data)
            self._in_h2 = False


def parse(html):
    collector = _Collector()
    collector.feed(html)
    return collector


@pytest.fixture(scope="module")
def tree():
    return make_tree()[0]


def fake_inputs(tree):
    """Result dicts in the layouts of DIAG.json, CHECKS.json, THERMO.json and CMP.json."""
    ids = [str(v) for v in tree["posterior"]["neuron"].values]
    n = len(ids)
    neurons = [{"id": i, "cell_type": "E", "firing_probability": 0.1 + 0.01 * k,
                "flagged": k == 0, "reasons": ["weak identification: test"] if k == 0 else [],
                "max_rhat": 1.001, "min_ess_bulk": 800.0, "contraction": 0.9}
               for k, i in enumerate(ids)]
    diagnostics = {"converged": True, "reasons": [], "neurons": neurons}
    k = np.arange(n + 1)
    p_k = np.exp(-k) / np.exp(-k).sum()
    checks = {"synchrony": {"observed": p_k.tolist(), "independent": (p_k * 0.9).tolist(),
                            "predicted": {"median": p_k.tolist(), "lower": (p_k * 0.8).tolist(),
                                          "upper": (p_k * 1.2).tolist()}},
              "patterns": {"observed": [0.5, 0.1, 0.01], "predicted": {
                  "median": [0.45, 0.12, 0.012], "lower": [0.4, 0.1, 0.01],
                  "upper": [0.5, 0.14, 0.015]}, "num_bins": 800},
              "information": {"S1": 2.0, "S2": {"median": 1.8, "lower": 1.75, "upper": 1.85},
                              "SN": 1.7, "ratio": {"median": 0.67, "lower": 0.5,
                                                   "upper": 0.83}}}
    temperature = np.linspace(0.5, 3, 11)
    band = {"median": np.exp(-(temperature - 1.1) ** 2).tolist(),
            "lower": (0.9 * np.exp(-(temperature - 1.1) ** 2)).tolist(),
            "upper": (1.1 * np.exp(-(temperature - 1.1) ** 2)).tolist(), "interval": 0.9}
    thermo = {"temperature": temperature.tolist(), "heat_capacity_per_neuron": band,
              "entropy_per_neuron": band, "energy_per_neuron": band, "method": "exact",
              "peak": {"temperature": {"median": 1.1, "lower": 1.0, "upper": 1.2},
                       "heat_capacity_per_neuron": {"median": 1.0, "lower": 0.9,
                                                    "upper": 1.1}}}
    num_params = n + n * (n - 1) // 2
    values = np.linspace(-1, 1, num_params)
    comparison = {"interval": 0.9, "parameters": {
        "kind": ["h"] * n + ["J"] * (num_params - n), "mle": values,
        "mle_lower": values - 0.1, "mle_upper": values + 0.1, "bayes_mean": values * 0.9,
        "bayes_lower": values - 0.12, "bayes_upper": values + 0.12},
        "summary": {"J_median_width_ratio": 0.83}, "timing": {"mle_total_s": 1.0},
        "flagged": {"neurons": ids, "diagnostics": [k == 0 for k in range(n)],
                    "cosine": [False] * n, "firing_threshold": [False] * n,
                    "cosine_similarity": [0.99] * n,
                    "agreement": {"diagnostics_vs_restarts": {
                        "both": 0, "neither": n - 1, "only_first": 1, "only_second": 0,
                        "agree": n - 1, "total": n}}}}
    return {"diagnostics": diagnostics, "checks": checks, "thermo": thermo,
            "comparison": comparison}


def test_full_report_has_every_section_embedded_and_offline(tree):
    html = report.build_report(tree, **fake_inputs(tree))
    parsed = parse(html)
    assert parsed.sections == [sid for sid, _ in report.SECTIONS]
    assert parsed.external == []  # nothing fetched: no http(s) src/href, scripts, links
    assert len(parsed.images) >= 10
    for src in parsed.images:
        assert src.startswith("data:image/png;base64,")
        png = base64.b64decode(src.split(",", 1)[1])
        assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert "could not be drawn" not in html
    assert "Not available: posterior predictive" not in html
    # the verdict comes first, in words
    first = html.index('id="verdict"')
    assert first < html.index('id="data"')
    assert "The sampler converged" in html[first:html.index('id="data"')]
    assert report.CRITICALITY_CAVEAT.split(".")[0] in html


def test_missing_inputs_say_so_rather_than_vanish(tree):
    html = report.build_report(tree)
    parsed = parse(html)
    assert parsed.sections == [sid for sid, _ in report.SECTIONS]
    for needle in ("Not available: per-neuron diagnostics", "Not available: posterior "
                   "predictive checks", "Not available: thermodynamics",
                   "Not available: the MLE comparison", "Not available: the E/I comparison",
                   "Not available: the state comparison"):
        assert needle in html
    assert "could not be drawn" not in html
    # without a diagnostics file the verdict is the basic check of the posterior
    assert "basic check of the posterior" in html


def test_report_without_anything_still_builds():
    html = report.build_report()
    assert parse(html).sections == [sid for sid, _ in report.SECTIONS]
    assert "convergence cannot be judged" in html


def test_broken_input_is_named_in_its_section_only(tree):
    thermo = {"temperature": [1.0, 2.0], "heat_capacity_per_neuron": {"median": [1]}}
    html = report.build_report(None, thermo=thermo)
    thermo = html[html.index('id="thermo"'):html.index('id="mle"')]
    assert "could not be drawn" in thermo
    assert html.count("could not be drawn") == 1


def test_significance_mask_and_pair_order_match_direct_quantiles():
    tree, (first, second, _) = make_tree(num_neurons=7, shuffle_pairs=True, seed=3)
    summary = report.posterior_summary(tree, interval=0.9)
    J = tree["posterior"]["J"].values.reshape(-1, first.size)
    lower, upper = np.quantile(J, [0.05, 0.95], axis=0)
    expected_mask = (lower > 0) | (upper < 0)
    assert np.array_equal(summary["J_significant"][first, second], expected_mask)
    assert np.array_equal(summary["J_significant"], summary["J_significant"].T)
    np.testing.assert_allclose(summary["J_mean"][first, second], J.mean(axis=0))
    np.testing.assert_allclose(summary["J_mean"][second, first], J.mean(axis=0))
    assert np.all(np.diag(summary["J_mean"]) == 0)
    assert not summary["J_significant"][first[0], second[0]]  # planted at 0


def test_convergence_summary_flags_a_stuck_chain():
    tree, _ = make_tree(num_chains=4, num_draws=500, seed=1)
    good = report.convergence_summary(report.posterior_summary(tree))
    assert good["converged"] and np.nanmax(good["rhat"]) < 1.01
    J = tree["posterior"]["J"].values.copy()
    J[0, :, 4] += 0.5  # chain 0 stuck elsewhere for one coupling
    tree["posterior"]["J"].values[...] = J
    bad = report.convergence_summary(report.posterior_summary(tree))
    assert not bad["converged"]
    worst = int(np.nanargmax(bad["rhat"]))
    assert worst == 6 + 4  # h first (6 neurons), then the 5th coupling
    assert any("R-hat" in r for r in bad["reasons"])


def _axes_with_data(fig):
    return [ax for ax in fig.axes if ax.has_data() and ax.get_label() != "<colorbar>"]


@pytest.mark.parametrize("name", ["raster", "rates", "states", "rank", "coupling", "sync",
                                  "patterns", "information", "forest", "state_cmp", "thermo",
                                  "mle", "reliability"])
def test_every_figure_has_axis_labels(name):
    rng = np.random.default_rng(0)
    spins = np.where(rng.random((300, 5)) < 0.2, 1, -1)
    types = np.array(["E", "I", "E", "E", "I"])
    band = {"median": [1, 2, 3], "lower": [0.5, 1.5, 2.5], "upper": [1.5, 2.5, 3.5]}
    makers = {
        "raster": lambda: plots.plot_raster(spins, cell_types=types, bin_size=0.05,
                                            time_units="s", states=np.repeat(["a", "b"], 150)),
        "rates": lambda: plots.plot_firing_rates((1 + spins.mean(0)) / 2, cell_types=types,
                                                 bin_size=0.05, time_units="s"),
        "states": lambda: plots.plot_states(["wake", "deep"], [10, 20], bin_size=0.05),
        "rank": lambda: plots.plot_rank_trace(rng.normal(size=(2, 2, 50)), ["a", "b"]),
        "coupling": lambda: plots.plot_coupling_matrix(np.eye(5) * 0 + 0.1, np.ones((5, 5),
                                                                                  bool),
                                                       cell_types=types),
        "sync": lambda: plots.plot_synchrony_distribution([0.5, 0.3, 0.2], predicted=[
            0.5, 0.3, 0.2], lower=[0.4, 0.2, 0.1], upper=[0.6, 0.4, 0.3], independent=[
            0.6, 0.3, 0.1]),
        "patterns": lambda: plots.plot_pattern_frequencies([0.5, 0.1], [0.4, 0.12],
                                                           num_bins=100),
        "information": lambda: plots.plot_information([{"label": "x", "S1": 2, "S2": 1.5,
                                                        "SN": 1.2, "ratio": {
                                                            "median": 0.6, "lower": 0.5,
                                                            "upper": 0.7}}]),
        "forest": lambda: plots.plot_interval_comparison(["a"], [1], [0], [2], xlabel="x (u)"),
        "state_cmp": lambda: plots.plot_state_comparison(["wake", "deep", "x"],
                                                         {"I-I": band}),
        "thermo": lambda: plots.plot_thermodynamics([0.5, 1, 2], band, band, peak={
            "temperature": {"median": 1, "lower": 0.9, "upper": 1.1}},
            shuffled={"heat_capacity": band}),
        "mle": lambda: plots.plot_mle_vs_bayes(["h", "J"], [1, 2], [0, 1], [2, 3], [1, 2],
                                               [0, 1], [2, 3]),
        "reliability": lambda: plots.plot_reliability([0.1, 0.01], [1.0, 1.1], [0.9, 0.1],
                                                      [False, True]),
    }
    fig = makers[name]()
    axes = _axes_with_data(fig)
    assert axes
    for ax in axes:
        if ax.get_ylabel() == "state":  # the state strip shares the raster's time axis
            continue
        assert ax.get_xlabel().strip(), f"{name}: an axis without an x label"
        assert ax.get_ylabel().strip(), f"{name}: an axis without a y label"


def test_cell_type_order_puts_e_before_i_stably():
    order = plots.cell_type_order(np.array(["I", "E", "X", "E", "I"]))
    assert order.tolist() == [1, 3, 0, 4, 2]


def test_write_report_is_atomic_and_refuses_to_overwrite(tmp_path, monkeypatch):
    path = tmp_path / "r.html"
    report.write_report(path, "<html>one</html>")
    with pytest.raises(ExistingOutputError):
        report.write_report(path, "<html>two</html>")
    assert path.read_text() == "<html>one</html>"

    def broken(self, text, encoding=None):
        Path.write_bytes(self, text[:5].encode())
        raise OSError("disk full")

    monkeypatch.setattr(Path, "write_text", broken)
    target = tmp_path / "new.html"
    with pytest.raises(OSError, match="disk full"):
        report.write_report(target, "<html>partial</html>")
    assert not target.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.html"]  # no stray temp file


def test_load_json_names_a_non_json_file(tmp_path):
    path = tmp_path / "x.json"
    path.write_bytes(b"\x89PNG\x00\x01")
    with pytest.raises(DataError, match="not a JSON file"):
        report.load_json(path)
    path.write_text("{not json")
    with pytest.raises(DataError, match=re.escape(str(path))):
        report.load_json(path)


def test_posterior_intervals_follow_the_pack_order():
    """compare-mle's NUTS side: draws mapped from any pair order to ising.pack's triu order."""
    from bayes_ising.analysis import comparison

    tree, (first, second, _) = make_tree(num_neurons=5, shuffle_pairs=True, seed=4)
    result = comparison.posterior_intervals(tree, interval=0.8)
    h = tree["posterior"]["h"].values.reshape(-1, 5)
    J = tree["posterior"]["J"].values.reshape(-1, first.size)
    triu_i, triu_j = np.triu_indices(5, 1)
    column = {(a, b): k for k, (a, b) in enumerate(zip(first, second, strict=True))}
    J_triu = J[:, [column[(a, b)] for a, b in zip(triu_i, triu_j, strict=True)]]
    expected = np.concatenate([h, J_triu], axis=1)
    np.testing.assert_allclose(result["mean"], expected.mean(axis=0))
    np.testing.assert_allclose(result["lower"], np.quantile(expected, 0.1, axis=0))
    np.testing.assert_allclose(result["upper"], np.quantile(expected, 0.9, axis=0))
    assert result["seconds"] == 1.5  # the sampling_time_s attribute


def test_interval_agreement_counts_by_hand():
    from bayes_ising.analysis import comparison

    kind = ["h", "h", "J", "J"]
    estimate = np.array([0.0, 2.0, 0.5, -1.0])
    lower_a, upper_a = estimate - 0.5, estimate + 0.5  # widths 1
    lower_b = np.array([-1.0, 2.6, 0.0, -3.0])
    upper_b = np.array([1.0, 3.0, 2.0, -2.0])  # widths 2, 0.4, 2, 1
    out = comparison.interval_agreement(estimate, lower_a, upper_a, lower_b, upper_b, kind)
    assert out["h_num_parameters"] == 2 and out["J_num_parameters"] == 2
    assert out["h_median_width_ratio"] == pytest.approx(np.median([0.5, 2.5]))
    assert out["J_median_width_ratio"] == pytest.approx(np.median([0.5, 1.0]))
    assert out["h_fraction_mle_in_bayes_interval"] == 0.5  # 0 in [-1, 1]; 2 not in [2.6, 3]
    assert out["h_fraction_intervals_overlap"] == 0.5  # [1.5, 2.5] vs [2.6, 3] do not overlap
    assert out["J_fraction_mle_in_bayes_interval"] == 0.5  # 0.5 in [0, 2]; -1 not in [-3, -2]
    assert out["J_fraction_intervals_overlap"] == 0.5  # [-1.5, -0.5] vs [-3, -2]: no
