"""``bayes-ising study``: the whole study on a small recording, resumable, and its bad inputs.

The recording is written here as a spike-times ``.npz`` (spike times, E/I labels, three state
epochs) from the package's kinetic E/I generator (8 neurons: 5 E + 3 I, 3 × 600 bins), with
one E neuron silenced in the ``deep`` epochs. Tiny draws (not for conclusions). Default suite:
the bad inputs (refused with one line, nothing written), the plan's notes, and the task engine
killed and rerun with light stand-in task functions (only what is missing is redone). Slow:
the real study on the recording — the outputs' layout, the silent neuron, a failed fit, and a
real kill and rerun.
"""

import json
from pathlib import Path

import jax
import numpy as np
import pytest

from bayes_ising import cli
from bayes_ising.data.synthetic import ei_network
from bayes_ising.pipeline import plan as study_plan
from bayes_ising.pipeline import tasks as study_tasks

TINY = dict(num_chains=2, num_draws=40, num_warmup=40, posterior_draws=6, check_samples=2_000,
            third_order_draws=3, thermo_draws=3, temperatures="0.5:2.5:6", walk_draws=200,
            num_restarts=2, num_bootstrap=20, min_bins=100)
SILENT = "E04"


def _write_recording(path, data, silent=None, silent_state=None, with_types=True,
                     states=True):
    """A spike-times .npz of ``data``: one spike at the centre of every active bin."""
    bins, neurons = np.nonzero(np.asarray(data.spins) > 0)
    labels = np.asarray(data.states).astype(str)
    if silent is not None:
        column = list(data.neuron_ids).index(silent)
        drop = (neurons == column) & (labels[bins] == silent_state)
        bins, neurons = bins[~drop], neurons[~drop]
    times = (bins + 0.5) * data.bin_size
    arrays = dict(spike_times=times, spike_neurons=np.asarray(data.neuron_ids)[neurons],
                  neuron_ids=np.asarray(data.neuron_ids), bin_size=np.float64(data.bin_size),
                  t_start=np.float64(0.0), t_stop=np.float64(data.num_bins * data.bin_size))
    if with_types:
        arrays["cell_types"] = np.asarray(data.cell_types)
    if states:
        change = np.flatnonzero(labels[1:] != labels[:-1]) + 1
        starts = np.concatenate([[0], change])
        stops = np.concatenate([change, [labels.size]])
        arrays.update(state_names=labels[starts], state_starts=starts * data.bin_size,
                      state_stops=stops * data.bin_size)
    np.savez(path, **arrays)
    return path


@pytest.fixture(scope="module")
def recording(tmp_path_factory):
    data = ei_network(jax.random.key(3), 5, 3, duration=90.0, epoch_duration=30.0)
    return _write_recording(tmp_path_factory.mktemp("rec") / "rec.npz", data, SILENT, "deep")


def _mtimes(folder):
    return {p.relative_to(folder): p.stat().st_mtime_ns for p in folder.rglob("*")
            if p.is_file() and p.parent.name in ("fits", "tasks")}


@pytest.fixture(scope="module")
def finished(recording, tmp_path_factory):
    """A study killed after its third fit (KeyboardInterrupt), then rerun to completion."""
    out = tmp_path_factory.mktemp("study") / "out"
    fits_done = []
    real_fit = study_tasks.RUNNERS["fit"]

    def fit_then_die(task, out_dir, progress=False):
        if len(fits_done) == 3:
            raise KeyboardInterrupt
        real_fit(task, out_dir, progress)
        fits_done.append(task.path)

    study_tasks.RUNNERS["fit"] = fit_then_die
    try:
        with pytest.raises(KeyboardInterrupt):
            study_plan.study(recording, out, progress=False, log=lambda *a: None,
                             scheduler="sync", **TINY)
    finally:
        study_tasks.RUNNERS["fit"] = real_fit
    before = _mtimes(out)
    assert not (out / "study.json").exists()
    result = study_plan.study(recording, out, progress=False, log=lambda *a: None,
                              scheduler="sync", **TINY)
    return out, result, fits_done, before


@pytest.mark.slow
def test_study_writes_the_documented_outputs(finished):
    out, result, _, _ = finished
    summary = json.loads((out / "study.json").read_text())
    assert len(summary["fits"]) == 9  # 3 states x (E+I, E, I)
    for fit in summary["fits"]:
        for key in ("state", "population", "num_neurons", "num_bins", "likelihood",
                    "converged", "valid", "num_flagged", "posterior", "I2_IN", "T_peak",
                    "C_max_per_neuron"):
            assert key in fit, key
        assert fit["error"] == "" and fit["likelihood"] == "exact"
        assert (out / fit["posterior"]).is_file() and fit["posterior"].startswith("fits/")
        for name in ("I2_IN", "T_peak", "C_max_per_neuron"):
            band = fit[name]
            assert set(band) == {"median", "lower", "upper"}
            assert band["lower"] <= band["median"] <= band["upper"]
    sizes = {(f["state"], f["population"]): f["num_neurons"] for f in summary["fits"]}
    assert sizes["deep", "E+I"] == 8 and sizes["wake", "E"] == 5 and sizes["light", "I"] == 3
    assert set(summary["ei"]) == {"wake", "light", "deep"}
    for state in summary["ei"].values():
        for population in ("E", "I"):
            entry = state[population]
            assert entry["k_high"] >= 1
            for key in ("log_ratio_population_only", "log_ratio_joint"):
                assert set(entry[key]) == {"median", "lower", "upper"}
    assert set(summary["states"]) == {"E-E", "E-I", "I-I"}
    pairs = summary["states"]["I-I"]
    assert len(pairs) == 6  # every ordered pair of 3 states
    assert pairs["deep>wake"]["coupling"] + pairs["wake>deep"]["coupling"] == pytest.approx(1)
    assert summary["settings"]["num_draws"] == TINY["num_draws"]
    for name in ("fits", "neurons", "information", "thermo", "ei", "state_probabilities",
                 "comparison"):
        assert (out / "tables" / f"{name}.csv").is_file(), name
        assert len(result.tables[name]) > 0, name
    assert len(list((out / "fits").glob("*.nc"))) == 9


@pytest.mark.slow
def test_a_silent_neuron_is_reported_for_its_state_only(finished):
    out, result, _, _ = finished
    summary = result.summary
    assert summary["data"]["states"]["deep"]["silent_neurons"] == [SILENT]
    assert summary["data"]["states"]["wake"]["silent_neurons"] == []
    deep = [f for f in summary["fits"] if f["state"] == "deep" and "E" in f["population"]]
    assert deep and all(f["silent_neurons"] == [SILENT] and f["error"] == "" for f in deep)
    neurons = result.tables["neurons"]
    assert SILENT in set(neurons.loc[neurons["state"] == "deep", "neuron"])


@pytest.mark.slow
def test_a_killed_study_resumes_without_redoing_finished_fits(finished):
    out, result, fits_done, before = finished
    assert len(fits_done) == 3
    after = _mtimes(out)
    for path in fits_done:  # finished before the kill: neither rewritten nor refitted
        assert before[Path(path)] == after[Path(path)]
    status = {s["name"]: s["status"] for s in result.summary["stages"]}
    assert sum(v == "existing" for v in status.values()) >= 3
    assert all(v in ("done", "existing") for v in status.values()), status


@pytest.mark.slow
def test_a_deleted_result_is_the_only_thing_redone(finished, recording):
    out, _, _, _ = finished
    summary = json.loads((out / "study.json").read_text())
    victim = next(f for f in summary["fits"] if (f["state"], f["population"]) == ("wake", "I"))
    (out / victim["posterior"]).unlink()
    before = _mtimes(out)
    result = study_plan.study(recording, out, progress=False, log=lambda *a: None,
                              scheduler="sync", **TINY)
    redone = {s["name"] for s in result.summary["stages"] if s["status"] == "done"}
    # its analyses' keys depend on the fit's key, not its file: they are still valid
    assert redone == {"fit/wake/I"}
    after = _mtimes(out)
    assert (out / victim["posterior"]).is_file()
    assert all(after[p] == before[p] for p in before)


@pytest.mark.slow
def test_a_failed_fit_is_listed_and_the_rest_completes(recording, tmp_path, monkeypatch):
    real_fit = study_tasks.RUNNERS["fit"]

    def fail_for_i(task, out_dir, progress=False):
        if task.population == "I":
            raise RuntimeError("planted failure")
        real_fit(task, out_dir, progress)

    monkeypatch.setitem(study_tasks.RUNNERS, "fit", fail_for_i)
    result = study_plan.study(recording, tmp_path / "out", progress=False, scheduler="sync",
                              log=lambda *a: None, populations=("E", "I"), states=("wake",),
                              **TINY)
    fits = {f["population"]: f for f in result.summary["fits"]}
    assert "planted failure" in fits["I"]["error"] and fits["I"]["posterior"] is None
    assert fits["E"]["error"] == "" and fits["E"]["converged"] is not None
    assert any("one state only" in n for n in result.summary["notes"])


def _light_runners(calls, die_after=None):
    """Stand-ins for every task kind: a real result file (netCDF or JSON) holding the key."""
    import xarray as xr

    def run(task, out_dir, progress=False):
        if die_after is not None and len(calls) == die_after:
            raise KeyboardInterrupt  # the study is killed here
        calls.append(task.name)
        path = out_dir / task.path
        if task.kind == "fit":
            tree = xr.DataTree(xr.Dataset({"x": ("draw", np.zeros(3))}))
            tree.attrs["study_key"] = task.key
            tree.to_netcdf(path, engine="h5netcdf")
        else:
            study_plan._write_task_result(task, out_dir, {"ok": True})

    return {kind: run for kind in study_tasks.RUNNERS}


def test_the_task_engine_resumes_a_killed_study(recording, tmp_path, monkeypatch):
    from bayes_ising.data import load

    plan = study_plan.plan_study(load(recording), study_plan.StudySettings(**TINY))
    # 9 fits x (fit, checks, thermo), the E+I fits' comparisons, 6 ei, 1 states
    assert len(plan.tasks) == 9 * 3 + 3 + 6 + 1
    out = tmp_path / "out"
    for sub in ("fits", "tasks"):
        (out / sub).mkdir(parents=True)
    study_plan._load_data.cache_clear()
    calls = []
    monkeypatch.setattr(study_tasks, "RUNNERS", _light_runners(calls, die_after=10))
    with pytest.raises(KeyboardInterrupt):
        study_plan.run_tasks(plan.tasks, out, scheduler="sync", progress=False,
                             log=lambda *a: None)
    first = list(calls)
    assert len(first) == 10
    monkeypatch.setattr(study_tasks, "RUNNERS", _light_runners(calls))
    outcomes = study_plan.run_tasks(plan.tasks, out, scheduler="sync", progress=False,
                                    log=lambda *a: None)
    second = calls[10:]
    assert not set(first) & set(second)  # nothing finished before the kill was redone
    assert len(second) == len(plan.tasks) - 10
    assert all(o["status"] in ("done", "existing") for o in outcomes.values())
    # a deleted and a truncated result are redone, nothing else
    fit = next(t for t in plan.tasks if t.kind == "fit")
    (out / fit.path).unlink()
    thermo = next(t for t in plan.tasks if t.kind == "thermo")
    (out / thermo.path).write_text('{"study_key": "trunc')
    calls.clear()
    study_plan.run_tasks(plan.tasks, out, scheduler="sync", progress=False, log=lambda *a: None)
    assert sorted(calls) == sorted([fit.name, thermo.name])


def test_task_keys_follow_the_settings_they_read(recording):
    from bayes_ising.data import load

    data = load(recording)
    base = study_plan.plan_study(data, study_plan.StudySettings(**TINY))
    other = study_plan.plan_study(data, study_plan.StudySettings(**{**TINY,
                                                                   "thermo_draws": 5}))
    changed = {a.name for a, b in zip(base.tasks, other.tasks, strict=True) if a.key != b.key}
    assert changed == {t.name for t in base.tasks if t.kind == "thermo"}


def _run(capsys, *args):
    code = cli.main([str(a) for a in args])
    err = capsys.readouterr().err
    lines = [line for line in err.strip().splitlines() if line.strip()]
    return code, lines


@pytest.mark.parametrize("flags, needle", [
    (["--populations", "E+X"], "unknown population 'E+X'"),
    (["--min-bins", "5000"], "bins; the study needs at least 5000"),
    (["--states", "rem"], "unknown state 'rem'"),
])
def test_bad_input_is_refused_with_one_line_and_nothing_written(capsys, recording, tmp_path,
                                                               flags, needle):
    out = tmp_path / "out"
    code, lines = _run(capsys, "study", recording, "--out", out, "--quiet", *flags)
    assert code == 2 and len(lines) == 1 and needle in lines[0], lines
    assert not out.exists()


def test_a_population_of_one_neuron_is_refused(capsys, tmp_path):
    data = ei_network(jax.random.key(4), 4, 1, duration=30.0, epoch_duration=10.0)
    path = _write_recording(tmp_path / "one_i.npz", data)
    code, lines = _run(capsys, "study", path, "--out", tmp_path / "out", "--quiet")
    assert code == 2 and len(lines) == 1 and "'I' has 1 neuron(s)" in lines[0], lines
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_a_folder_holding_another_study_is_refused(capsys, recording, finished, tmp_path):
    out, _, _, _ = finished
    data = ei_network(jax.random.key(5), 5, 3, duration=30.0, epoch_duration=10.0)
    other = _write_recording(tmp_path / "other.npz", data)
    before = _mtimes(out)
    code, lines = _run(capsys, "study", other, "--out", out, "--quiet")
    assert code == 2 and len(lines) == 1 and "another study" in lines[0], lines
    assert _mtimes(out) == before


def test_no_cell_types_skips_the_ei_analyses_and_keeps_the_rest(tmp_path):
    data = ei_network(jax.random.key(6), 4, 2, duration=30.0, epoch_duration=10.0)
    path = _write_recording(tmp_path / "untyped.npz", data, with_types=False, states=False)
    from bayes_ising.data import load

    plan = study_plan.plan_study(load(path), study_plan.StudySettings(**TINY))
    kinds = {t.kind for t in plan.tasks}
    assert kinds == {"fit", "checks", "thermo", "compare"}
    assert [t.population for t in plan.tasks if t.kind == "fit"] == ["all"]
    assert any(n.startswith("E/I analyses skipped: the data have no cell types")
               for n in plan.notes)
    assert any("one state only" in n for n in plan.notes)


def test_ordered_pair_probabilities_are_complementary_and_right():
    from bayes_ising.analysis.analyses import _ordered_pair_probabilities

    rng = np.random.default_rng(0)
    samples = {"deep": rng.normal(1.0, 1.0, 400), "wake": rng.normal(0.0, 1.0, 300),
               "one": np.array([0.5])}
    p = _ordered_pair_probabilities(samples, ["deep", "wake", "one"])
    assert p["deep>wake"] + p["wake>deep"] == pytest.approx(1.0)
    # P(X > Y) for X ~ N(1, 1), Y ~ N(0, 1) is Phi(1/sqrt(2)) = 0.760; MC sd ~ 0.02
    assert p["deep>wake"] == pytest.approx(0.760, abs=0.05)
    assert p["deep>one"] is None and p["one>wake"] is None


def test_populations_and_their_aliases(recording):
    from bayes_ising.data import load

    data = load(recording)
    assert study_plan._populations(data, None) == ("E+I", "E", "I")
    with pytest.warns(DeprecationWarning):
        assert study_plan.parse_populations("E,I") == ("E+I",)
    assert study_plan.parse_populations("E+I,I") == ("E+I", "I")
    with pytest.raises(study_plan.DataError, match="unknown population 'X'"):
        study_plan._populations(data, ("X",))


def test_compare_populations_limits_the_mle_comparison(recording):
    from bayes_ising.data import load

    data = load(recording)
    default = study_plan.plan_study(data, study_plan.StudySettings(**TINY))
    assert {t.population for t in default.tasks if t.kind == "compare"} == {"E+I"}
    assert any("MLE comparison not run for E, I (by default the joint population E+I only"
               in n for n in default.notes)
    every = study_plan.plan_study(data, study_plan.StudySettings(
        **{**TINY, "compare_populations": ("E+I", "E", "I")}))
    assert sum(t.kind == "compare" for t in every.tasks) == 3 * sum(
        t.kind == "compare" for t in default.tasks)
    assert not any("MLE comparison not run" in n for n in every.notes)
    settings = study_plan.StudySettings(**{**TINY, "compare_populations": ("E",)})
    plan = study_plan.plan_study(data, settings)
    compared = {t.population for t in plan.tasks if t.kind == "compare"}
    assert compared == {"E"}
    assert any("MLE comparison not run for E+I, I (compare_populations = E)" in n
               for n in plan.notes)
    with pytest.raises(study_plan.DataError, match="compare_populations: 'X'"):
        study_plan.plan_study(data, study_plan.StudySettings(
            **{**TINY, "compare_populations": ("X",)}))
    args = cli.build_parser().parse_args(
        ["study", str(recording), "--out", "o", "--compare-populations", "E+I",
         "--walk-seconds", "12"])
    from bayes_ising.cli.commands.study import settings_from_args

    parsed = settings_from_args(args)
    assert parsed.compare_populations == ("E+I",) and parsed.walk_seconds == 12.0


def test_the_walks_budget_is_the_posteriors_sampling_time_unless_given():
    import xarray as xr

    from bayes_ising.pipeline.tasks import walk_budget

    def tree(**attrs):
        node = xr.DataTree()
        node.attrs.update(attrs)
        return node

    assert study_plan.StudySettings().walk_seconds is None
    fitted = tree(sampling_time_s=142.5, wall_time_s=230.0)
    assert walk_budget(fitted, None) == 142.5  # equal cost: the sampler's own seconds
    assert walk_budget(tree(sampling_time_s=3.0), None) == study_plan.MIN_WALK_SECONDS
    assert walk_budget(tree(), None) == study_plan.MIN_WALK_SECONDS
    assert walk_budget(fitted, 12) == 12.0
