"""The whole-study report: render_study on a real (small, fast) study output.

The study folder is made by :func:`bayes_ising.study.study` itself on a small slice of the
embedded dataset (5 E + 3 I neurons, two states, tiny draws), so the report is
checked against the layout the pipeline really writes, not against invented numbers. That run
takes minutes on 2 cores (six fits, each with its checks, thermodynamics and MLE comparison), so
the tests that read it are ``slow``; the wording rules are tested fast.
"""

import json
import re
from html.parser import HTMLParser

import numpy as np
import pytest

from bayes_ising.report import study as report_study

STATES = ("wake", "deep")


class _Collector(HTMLParser):
    """Sections in order, images, anything fetched from outside, and the visible text."""

    def __init__(self):
        super().__init__()
        self.sections, self.images, self.external, self.text = [], [], [], []
        self._skip = 0

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
        if tag == "style":
            self._skip += 1

    def handle_endtag(self, tag):
        if tag == "style":
            self._skip -= 1

    def handle_data(self, data):
        if not self._skip:
            self.text.append(data)


def _parse(html):
    collector = _Collector()
    collector.feed(html)
    return collector


def _small_data():
    from bayes_ising.data import SpikeData, datasets

    data = datasets.ei_sleep()
    types = np.asarray(data.cell_types)
    columns = np.concatenate([np.flatnonzero(types == "E")[:5], np.flatnonzero(types == "I")[:3]])
    states = np.asarray(data.states)
    rows = np.concatenate([np.flatnonzero(states == s)[:1000] for s in STATES])
    return SpikeData.from_raster(np.asarray(data.spins)[np.ix_(rows, columns)],
                                 neuron_ids=np.asarray(data.neuron_ids)[columns],
                                 cell_types=types[columns], states=states[rows],
                                 bin_size=data.bin_size, time_units=data.time_units,
                                 source="ei_sleep slice (5 E + 3 I, 1000 bins per state)")


#: tiny draws everywhere: the layout is what is tested, not the numbers
TINY = dict(num_chains=2, num_draws=40, num_warmup=40, posterior_draws=6, check_samples=2_000,
            third_order_draws=3, thermo_draws=3, temperatures="0.5:2.5:6", walk_draws=200,
            num_restarts=2, num_bootstrap=20, min_bins=100)


@pytest.fixture(scope="module")
def study_dir(tmp_path_factory):
    study_plan = pytest.importorskip("bayes_ising.pipeline.plan")
    out = tmp_path_factory.mktemp("study")
    study_plan.study(_small_data(), out, scheduler="sync", progress=False, render=False,
                     log=lambda *a: None, **TINY)
    return out


@pytest.fixture(scope="module")
def study_html(study_dir):
    """(path, text) of the rendered study report (rendered once for the module)."""
    path = report_study.render_study(study_dir)
    return path, path.read_text()


@pytest.mark.slow
def test_render_study_writes_one_self_contained_report(study_dir, study_html):
    path, html = study_html
    assert path == study_dir / "report.html"
    parsed = _parse(html)
    assert parsed.sections == [sid for sid, _ in report_study.SECTIONS]
    assert parsed.external == []  # no external src/href, scripts, style sheets
    assert len(parsed.images) >= 5  # Fig. 4, 6, 7, 8 and the width comparison
    assert all(src.startswith("data:image/png;base64,") for src in parsed.images)
    assert "could not be drawn" not in html
    text = " ".join(parsed.text)
    assert not re.search(r"\b(nan|None|NaN|undefined)\b", text)


@pytest.mark.slow
def test_verdict_table_comes_first_and_lists_every_fit(study_dir, study_html):
    html = study_html[1]
    verdict = html[html.index('id="verdict"'):html.index('id="synchrony"')]
    assert html.index('id="verdict"') < html.index("<img")  # the first screen: no figure yet
    summary = json.loads((study_dir / "study.json").read_text())
    assert len(summary["fits"]) == len(STATES) * 3
    for fit in summary["fits"]:
        assert f"<td class=\"l\">{fit['population']}</td>" in verdict
    assert "Headline numbers" in verdict
    assert "I2/IN (E+I)" in verdict and "T* (E+I)" in verdict
    assert "E-only model / data" in verdict
    assert "P(mean I–I coupling in deep &gt; wake)" in verdict


@pytest.mark.slow
def test_every_figure_section_has_its_figure_and_the_caveat(study_html):
    html = study_html[1]
    ids = [sid for sid, _ in report_study.SECTIONS]
    for sid, following in zip(ids, ids[1:] + [None], strict=True):
        body = html[html.index(f'id="{sid}"'):html.index(f'id="{following}"') if following
                    else None]
        if sid in ("synchrony", "ei", "states", "thermo", "mle"):
            assert "<img" in body, sid
        assert "Not available" not in body, sid
    assert report_study.CRITICALITY_CAVEAT.split(".")[0] in html


@pytest.mark.slow
def test_missing_inputs_say_what_produces_them(study_dir, tmp_path):
    summary = json.loads((study_dir / "study.json").read_text())
    summary.update(ei={}, states={}, state_blocks={})
    for fit in summary["fits"]:
        fit.update(I2_IN=None, results={}, converged=False)
    (tmp_path / "study.json").write_text(json.dumps(summary))
    html = report_study.render_study(tmp_path).read_text()
    for needle in ("Not available: the E/I comparison", "Not available: the state comparison",
                   "Not available: I2/IN", "Not available: thermodynamics",
                   "Not available: the MLE comparison", "Not available: per-neuron diagnostics"):
        assert needle in html
    assert "0 of 6 fits converged" in html
    assert "could not be drawn" not in html


def test_unconverged_walk_is_worded_as_such():
    from bayes_ising import report

    css, text = report.walk_verdict({"converged": False, "max_rhat": 1.2, "min_ess_bulk": 40},
                                    0.42)
    assert css == "bad" and "did not converge" in text and "too narrow" in text
    css, text = report.walk_verdict({})
    assert css == "warn" and "not checked" in text
    css, _ = report.walk_verdict({"converged": True, "max_rhat": 1.003, "min_ess_bulk": 900})
    assert css == "ok"


def test_a_folder_without_a_study_is_refused(tmp_path):
    from bayes_ising.errors import DataError

    with pytest.raises(DataError, match="no study.json"):
        report_study.render_study(tmp_path)


def test_state_sentences_order_each_pair_once():
    import pandas as pd

    frame = pd.DataFrame({
        "block": ["I-I"] * 4, "quantity": ["coupling"] * 4,
        "state_a": ["wake", "deep", "wake", "light"], "state_b": ["deep", "wake", "light", "wake"],
        "probability": [0.01, 0.99, 0.40, 0.60]})
    (sentence,) = report_study._state_sentences(frame)
    assert sentence == ("Mean I-I coupling: larger in deep than wake (0.990); not resolved: "
                        "wake vs light.")


def test_ei_sentence_reads_the_intervals_against_zero():
    block = {"k_high": 4, "log_ratio_population_only": {"median": 0.4, "lower": 0.05,
                                                        "upper": 0.8},
             "log_ratio_joint": {"median": 0.1, "lower": -0.3, "upper": 0.7}}
    text = report_study.ei_sentence("deep", "E", "E+I", block)
    assert "E-only model over-predicts the probability that 4 or more E neurons" in text
    assert "E+I model's marginal agrees with the data" in text
    block["log_ratio_population_only"] = {"median": -0.5, "lower": -0.9, "upper": -0.1}
    assert "under-predicts" in report_study.ei_sentence("deep", "E", "E+I", block)


def test_comparison_verdict_prefers_the_comparisons_own_sentence():
    result = {"verdict": "At equal evidence (walk R-hat 1.004, min ESS 512), ...",
              "adaptive_metropolis": {"converged": True, "max_rhat": 1.004}}
    assert report_study.comparison_verdict(result) == ("ok", result["verdict"])
    result = {"adaptive_metropolis": {"converged": False, "max_rhat": 1.3, "min_ess_bulk": 20}}
    css, text = report_study.comparison_verdict(result)
    assert css == "bad" and "did not converge" in text


def test_single_report_shows_the_walk_groups_and_verdict():
    from test_report import fake_inputs, make_tree

    from bayes_ising import report

    tree = make_tree()[0]
    inputs = fake_inputs(tree)
    inputs["comparison"].update(
        verdict="The study's walk did not reach the posterior's evidence within its budget.",
        adaptive_metropolis={"converged": False, "max_rhat": 1.2, "min_ess_bulk": 30},
        groups={"J_busy": {"num_parameters": 15, "median_width_ratio": 0.61,
                           "mc_error": 0.04}})
    html = report.build_report(tree, **inputs)
    mle = html[html.index('id="mle"'):]
    assert "within its budget" in mle and 'class="verdict bad"' in mle
    assert "J between those neurons" in mle and "0.610" in mle and "0.04" in mle


def test_report_verb_on_a_folder_without_a_study_exits_2(tmp_path, capsys):
    from bayes_ising import cli

    assert cli.main(["report", str(tmp_path), "--out", str(tmp_path / "r.html")]) == 2
    assert "no study.json" in capsys.readouterr().err
    assert not (tmp_path / "r.html").exists()


def test_information_table_says_why_a_large_fit_has_no_ratio():
    ok = dict(status="done", converged=True, valid=True)
    fits = [dict(ok, state="deep", population="I", num_neurons=8,
                 I2_IN={"median": 0.9, "lower": 0.85, "upper": 0.95}, SN_reliable=True),
            dict(ok, state="deep", population="E+I", num_neurons=40, I2_IN=None,
                 I2_IN_note="I2/IN not computed: S2 needs exact enumeration")]
    study = {"summary": {"fits": fits, "populations": ["E+I", "I"]}, "tables": {}}
    view = report_study._information_view(study)
    (row,) = view["table"]["rows"]
    assert row[1] == "not computed (N = 40)" and row[2].startswith("0.9")
    assert any(s.startswith("E+I, deep: I2/IN not computed") for s in view["sentences"])


def test_a_peak_at_the_grids_end_is_read_as_no_peak():
    fit = {"T_peak": {"median": 0.5, "lower": 0.5, "upper": 0.5},
           "C_max_per_neuron": {"median": 0.3, "lower": 0.29, "upper": 0.31},
           "C_max_per_neuron_control": {"median": 0.2, "lower": 0.2, "upper": 0.2}}
    assert report_study._peak_reading(fit).startswith("T* below 1")
    reading = report_study._peak_reading(fit, at_edge=True)
    assert reading.startswith("no peak inside the temperature grid")
    assert "above the shuffled control" in reading
