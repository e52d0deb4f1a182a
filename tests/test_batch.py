"""Batch fits on Dask: plans, content keys, resuming, corrupted results, failures, crashes.

One spawned LocalCluster (2 single-threaded worker processes) is shared by the module: its
start-up costs several seconds. Its workers import this module by name (``test_batch``, on
``sys.path`` through pytest) to run the injected fit functions below.
"""

import functools
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bayes_ising import cli
from bayes_ising.data import SpikeData
from bayes_ising.errors import DataError, ModelSpecError
from bayes_ising.fit import mle
from bayes_ising.pipeline import batch

ROOT = Path(__file__).resolve().parents[1]
TESTS = Path(__file__).resolve().parent
# keep this module's tests on one xdist worker (with --dist loadgroup): they share one cluster
pytestmark = pytest.mark.xdist_group("batch")


# --------------------------------------------------------------------------------------------
# Fit functions run on the workers (module level: workers import them by name)
# --------------------------------------------------------------------------------------------


def crash_once(task, data, *, marker_dir):
    """Kill the worker process the first time any task runs (exactly once: O_EXCL marker)."""
    try:
        fd = os.open(Path(marker_dir) / "crashed", os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        return batch.fit(task, data)
    os.write(fd, task.key.encode())
    os.close(fd)
    os._exit(1)


def slow_fit(task, data):
    """A real fit that takes at least a second (so a run can be killed midway)."""
    time.sleep(1.0)
    return batch.fit(task, data)


def normal_posterior(task, data):
    """A posterior-shaped DataTree without NUTS (fast): Gaussian draws around the independent
    model's fields, couplings around 0, with the sample stats the summary reads."""
    import xarray as xr

    rng = np.random.default_rng(task.seed)
    num_neurons, num_bins = data.num_neurons, data.num_bins
    num_pairs = num_neurons * (num_neurons - 1) // 2
    h0 = np.arctanh(data.spins.mean(axis=0))
    shape = (task.chains, task.draws)
    posterior = xr.Dataset({
        "h": (("chain", "draw", "neuron"),
              h0 + rng.normal(size=shape + (num_neurons,)) / np.sqrt(num_bins)),
        "J": (("chain", "draw", "pair"), rng.normal(size=shape + (num_pairs,)) * 0.05),
    }, coords={"neuron": data.neuron_ids})
    stats = xr.Dataset({"diverging": (("chain", "draw"), np.zeros(shape, bool)),
                        "n_steps": (("chain", "draw"), np.full(shape, 7))})
    tree = xr.DataTree.from_dict({"posterior": posterior, "sample_stats": stats})
    tree.attrs.update(bayes_ising_version="test", wall_time_s=0.01)
    return tree


# --------------------------------------------------------------------------------------------
# Fixtures
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def client():
    from distributed import Client

    with batch.local_cluster(2) as cluster, Client(cluster) as c:
        c.wait_for_workers(2, timeout=120)
        yield c


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """small.npz (8 neurons: 6 E, 2 I; states wake/deep; 2000 bins) and a corrupt bad.npz."""
    path = tmp_path_factory.mktemp("batch")
    rng = np.random.default_rng(7)
    num_bins = 2000
    p = rng.uniform(0.1, 0.35, 8)
    common = rng.random(num_bins) < 0.2  # shared input: real correlations
    raster = ((rng.random((num_bins, 8)) < p) | (common[:, None] & (rng.random((num_bins, 8))
                                                                     < 0.3))).astype(np.int8)
    states = np.where(np.arange(num_bins) % 200 < 100, "wake", "deep")
    SpikeData.from_raster(raster, cell_types=["E"] * 6 + ["I"] * 2, states=states,
                          source="test").to_npz(path / "small.npz")
    (path / "bad.npz").write_bytes(b"this is not an npz file")
    return path


def write_plan(directory, text, name="plan.toml"):
    path = Path(directory) / name
    path.write_text(textwrap.dedent(text))
    return path


MLE_PLAN = """
    name = "mle6"
    [datasets]
    small = "{data}"
    [defaults]
    kind = "mle"
    likelihood = "exact"
    [[fits]]
    datasets = ["small"]
    states = ["wake", "deep"]
    subsample_sizes = [4]
    subsample_seeds = [0, 1, 2]
"""


@pytest.fixture(scope="module")
def completed(client, workdir, tmp_path_factory):
    """Six exact-MLE fits, a fit of an unreadable file and one of a state the data lack."""
    directory = tmp_path_factory.mktemp("completed")
    text = MLE_PLAN.format(data=workdir / "small.npz").replace(
        "[datasets]\n", f'[datasets]\n    bad = "{workdir / "bad.npz"}"\n')
    plan = write_plan(directory, text + '    [[fits]]\n    datasets = ["bad"]\n'
                      '    [[fits]]\n    datasets = ["small"]\n    states = ["rem"]\n')
    result = batch.run_batch(plan, directory / "out", client=client, progress=False)
    return plan, result


# --------------------------------------------------------------------------------------------
# Plans and keys (no cluster)
# --------------------------------------------------------------------------------------------


def test_plan_unknown_key_names_key_and_file(workdir):
    plan = write_plan(workdir, MLE_PLAN.format(data=workdir / "small.npz")
                      + "    sampels = 3\n", "typo.toml")
    with pytest.raises(ModelSpecError, match=r"typo\.toml: fits\[0\]\.sampels: unknown key"):
        batch.load_plan(plan)
    bad_kind = write_plan(workdir, MLE_PLAN.format(data=workdir / "small.npz").replace(
        'kind = "mle"', 'kind = "mcmc"'), "kind.toml")
    with pytest.raises(ModelSpecError, match=r"kind\.toml: defaults\.kind: must be one of"):
        batch.load_plan(bad_kind)
    unknown_ds = write_plan(workdir, MLE_PLAN.format(data=workdir / "small.npz").replace(
        'datasets = ["small"]', 'datasets = ["smal"]'), "ds.toml")
    with pytest.raises(ModelSpecError, match=r"fits\[0\]\.datasets: unknown dataset 'smal'"):
        batch.load_plan(unknown_ds)
    missing = write_plan(workdir, MLE_PLAN.format(data=workdir / "nothere.npz"), "miss.toml")
    with pytest.raises(FileNotFoundError):
        batch.load_plan(missing)
    top = write_plan(workdir, "outt = 'x'\n" + MLE_PLAN.format(data=workdir / "small.npz"),
                     "top.toml")
    with pytest.raises(ModelSpecError, match=r"top\.toml: outt: unknown key"):
        batch.load_plan(top)
    # the CLI: a bad plan is a usage error (exit 2, one line), before any cluster starts
    assert cli.main(["batch", str(top), "--no-progress"]) == 2


def test_keys_follow_content_not_names(workdir, tmp_path):
    plan = batch.load_plan(write_plan(workdir, MLE_PLAN.format(data=workdir / "small.npz")))
    tasks = batch.expand_plan(plan)
    assert len(tasks) == 6 and len({t.key for t in tasks}) == 6
    # the same plan again: the same keys (deterministic)
    assert [t.key for t in batch.expand_plan(plan)] == [t.key for t in tasks]
    # a copy of the data under another name: same keys (content, not path)
    shutil.copy(workdir / "small.npz", tmp_path / "renamed.npz")
    copied = batch.expand_plan(batch.load_plan(write_plan(
        tmp_path, MLE_PLAN.format(data=tmp_path / "renamed.npz"))))
    assert [t.key for t in copied] == [t.key for t in tasks]
    # other data bytes: other keys
    raster = np.random.default_rng(0).integers(0, 2, (50, 8))
    data = SpikeData.from_raster(raster, cell_types=["E"] * 8,
                                 states=["wake"] * 25 + ["deep"] * 25)
    data.to_npz(tmp_path / "renamed.npz", force=True)
    changed = batch.expand_plan(batch.load_plan(write_plan(
        tmp_path, MLE_PLAN.format(data=tmp_path / "renamed.npz"))))
    assert not {t.key for t in changed} & {t.key for t in tasks}
    # a duplicated block adds nothing; another seed changes every key
    doubled = batch.load_plan(write_plan(
        tmp_path, MLE_PLAN.format(data=workdir / "small.npz") * 1 + textwrap.dedent("""
        [[fits]]
        datasets = ["small"]
        states = ["wake"]
        subsample_sizes = [4]
        subsample_seeds = [0]
        """), "dup.toml"))
    assert [t.key for t in batch.expand_plan(doubled)] == [t.key for t in tasks]
    reseeded = batch.expand_plan(batch.load_plan(write_plan(
        tmp_path, MLE_PLAN.format(data=workdir / "small.npz").replace(
            'likelihood = "exact"', 'likelihood = "exact"\n    seed = 1'), "seed.toml")))
    assert not {t.key for t in reseeded} & {t.key for t in tasks}


def test_example_plan_expands():
    plan = batch.load_plan(ROOT / "plans" / "example_plan.toml")
    tasks = batch.expand_plan(plan)
    assert len(tasks) >= 6
    assert {t.kind for t in tasks} == {"bayes", "mle"}
    assert {t.state for t in tasks} >= {"wake", "deep"}
    assert all(t.spec_json for t in tasks if t.kind == "bayes")


def test_select_data_subsample(workdir):
    plan = batch.load_plan(write_plan(workdir, MLE_PLAN.format(data=workdir / "small.npz")))
    task = batch.expand_plan(plan)[1]  # wake, subsample 4 with seed 1
    assert (task.state, task.subsample_size, task.subsample_seed) == ("wake", 4, 1)
    data = batch.select_data(task)
    full = SpikeData.from_raster(np.load(workdir / "small.npz")["raster"])
    states = np.load(workdir / "small.npz")["states"]
    chosen = np.sort(np.random.default_rng(1).choice(8, 4, replace=False))
    np.testing.assert_array_equal(data.spins, full.spins[states == "wake"][:, chosen])
    assert data.neuron_ids.tolist() == [str(i) for i in chosen]
    too_big = batch.FitTask(**{**task.to_dict(), "population": "I", "subsample_size": 3})
    with pytest.raises(DataError, match="subsample of 3 neurons .* leaves only 2"):
        batch.select_data(too_big)


# --------------------------------------------------------------------------------------------
# Running on the cluster
# --------------------------------------------------------------------------------------------


def test_batch_completes_and_reports_failure(completed, workdir):
    plan, result = completed
    out = result.out_dir
    summary = pd.read_csv(out / "summary.csv")
    assert len(summary) == 8
    assert (result.num_done, result.num_failed) == (6, 2)
    good = summary[(summary.state != "rem") & (summary.dataset == "small")]
    assert (good.status == "done").all() and good.converged.all()
    assert set(good.num_neurons) == {4} and set(good.num_bins) == {1000}
    assert (good.max_moment_error < 1e-5).all()
    bad = summary[summary.dataset == "bad"].iloc[0]
    assert bad.status == "failed" and bad.error.startswith("DataError: cannot read bad.npz")
    rem = summary[summary.state == "rem"].iloc[0]
    assert rem.status == "failed" and "no bins of state 'rem'" in rem.error
    failures = json.loads((out / "failures.json").read_text())
    assert len(failures) == 2 and "bad.npz" in failures[0]["error"]
    assert "Traceback" in failures[0]["traceback"]
    assert pd.read_parquet(out / "summary.parquet").shape == summary.shape
    # the worker computed the right fit: compare one stored result with an in-process fit
    task = batch.expand_plan(batch.load_plan(plan))[4]
    stored = json.loads(batch.result_path(task, out).read_text())
    assert stored["batch_key"] == task.key
    reference = mle.fit_exact(batch.select_data(task))
    np.testing.assert_allclose(stored["fit"]["h"], reference.h, atol=1e-8)
    np.testing.assert_allclose(stored["fit"]["J"], reference.J, atol=1e-8)


def test_rerun_skips_valid_and_redoes_corrupted(completed, client, tmp_path):
    plan, result = completed
    out = tmp_path / "out"
    shutil.copytree(result.out_dir, out)
    files = sorted(out.glob("mle-*.json"))
    assert len(files) == 6
    files[0].write_bytes(files[0].read_bytes()[:100])  # truncated
    before = {f.name: f.stat().st_mtime_ns for f in files[1:]}
    messages = []
    rerun = batch.run_batch(plan, out, client=client, progress=False, log=messages.append)
    assert (rerun.num_existing, rerun.num_done, rerun.num_failed) == (5, 1, 2)
    assert any("redoing" in m and "unreadable result" in m for m in messages)
    assert {f.name: f.stat().st_mtime_ns for f in files[1:]} == before
    assert json.loads(files[0].read_text())["batch_key"].startswith(files[0].stem[4:])


@pytest.mark.parametrize("real", [
    pytest.param(False, id="normal_posterior"),
    pytest.param(True, id="nuts", marks=pytest.mark.slow),  # fit_posterior: minutes here
])
def test_bayes_results_are_netcdf_and_validated(client, workdir, tmp_path, real):
    plan = write_plan(tmp_path, f"""
        [datasets]
        small = "{workdir / 'small.npz'}"
        [[fits]]
        kind = "bayes"
        likelihood = "exact"
        states = ["wake", "deep"]
        populations = ["I"]
        num_chains = 2
        num_draws = 60
        num_warmup = 40
    """)
    fit_function = None if real else normal_posterior
    first = batch.run_batch(plan, tmp_path / "out", client=client, progress=False,
                            fit_function=fit_function)
    assert first.num_done == 2, first.summary.error.tolist()
    rows = first.summary
    assert (rows.num_neurons == 2).all() and np.isfinite(rows.max_rhat).all()
    assert (rows.min_ess_bulk > 0).all() and rows.converged.notna().all()
    # exact likelihood: valid without a simulation check, and the summary says so
    assert rows.valid.all() and rows.validity_reason.str.contains("exact").all()
    files = sorted((tmp_path / "out").glob("bayes-*.nc"))
    assert len(files) == 2
    tasks = batch.expand_plan(batch.load_plan(plan))
    for task in tasks:
        row = batch.read_result(batch.result_path(task, tmp_path / "out"), task.key)
        assert row["key"] == task.key
    with pytest.raises(DataError, match="does not match"):
        batch.read_result(batch.result_path(tasks[0], tmp_path / "out"), tasks[1].key)
    path = batch.result_path(tasks[1], tmp_path / "out")
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(DataError, match="not a readable netCDF"):
        batch.read_result(path, tasks[1].key)
    second = batch.run_batch(plan, tmp_path / "out", client=client, progress=False,
                             fit_function=fit_function)
    assert (second.num_existing, second.num_done) == (1, 1)
    batch.read_result(path, tasks[1].key)  # valid again


def test_worker_killed_midway_is_retried(client, workdir, tmp_path):
    plan = write_plan(tmp_path, MLE_PLAN.format(data=workdir / "small.npz").replace(
        'states = ["wake", "deep"]', 'states = ["wake"]'))
    fit_function = functools.partial(crash_once, marker_dir=str(tmp_path))
    result = batch.run_batch(plan, tmp_path / "out", client=client, progress=False,
                             fit_function=fit_function)
    assert (tmp_path / "crashed").exists()  # a worker process did die
    assert (result.num_done, result.num_failed) == (3, 0), result.summary.error.tolist()
    assert len(list((tmp_path / "out").glob("mle-*.json"))) == 3
    # (the nanny restarts the dead worker in the background; later tests need only one)


def test_killed_run_resumes_without_redoing(client, workdir, tmp_path):
    plan = write_plan(tmp_path, MLE_PLAN.format(data=workdir / "small.npz").replace(
        "subsample_seeds = [0, 1, 2]", "subsample_seeds = [0, 1, 2, 3, 4]"))
    out = tmp_path / "out"
    address = client.scheduler.address
    script = (f"import test_batch\nfrom bayes_ising import batch\n"
              f"batch.run_batch({str(plan)!r}, {str(out)!r}, scheduler={address!r},"
              f" fit_function=test_batch.slow_fit, progress=False)\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), str(ROOT)])}
    proc = subprocess.Popen([sys.executable, "-c", script], env=env, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 180
        while len(list(out.glob("mle-*.json"))) < 2:
            assert proc.poll() is None, "the batch ended before it could be killed"
            assert time.monotonic() < deadline, "no results after 180 s"
            time.sleep(0.05)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the whole run: the process we started
        proc.wait()
    before = {f.name: f.stat().st_mtime_ns for f in out.glob("mle-*.json")}
    assert 2 <= len(before) < 10
    code = cli.main(["batch", str(plan), "--scheduler", client.scheduler.address,
                     "--out", str(out), "--no-progress"])
    assert code == 0
    summary = pd.read_csv(out / "summary.csv")
    assert len(summary) == 10 and set(summary.status) <= {"done", "existing"}
    assert (summary.status == "existing").sum() >= len(before)
    after = {f.name: f.stat().st_mtime_ns for f in out.glob("mle-*.json")}
    assert len(after) == 10
    assert {name: after[name] for name in before} == before  # completed fits not redone


def test_run_all_table_and_missing_benchmarks():
    import importlib.util

    spec = importlib.util.spec_from_file_location("run_all", ROOT / "benchmarks" / "run_all.py")
    run_all = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(run_all)
    assert run_all.run_benchmark("does_not_exist") == (
        None, "skipped: bench_does_not_exist.py not present")
    rows = run_all.table_rows({
        "batch": {"kind": "mle", "num_fits": 6, "cpu_count": 2,
                  "one_worker": {"fits_per_s": 2.0}, "two_workers": {"fits_per_s": 3.0}},
        "other": {"sizes": {"50": {"x_speedup": 4.0, "y": 1.0}}},
        "missing": None,
        "mle": {"exact_retina15": {"warm_s": 0.5}, "pseudo_n50": {"warm_s": 2.0},
                "coniii": {"enumerate": {"wall_s": 5.0}, "pseudo": {"skipped": "no"}}},
        "gibbs": {"sizes": {"50": {"jax_float32": {"updates_per_s": 1e8},
                                   "numpy_single_chain": {"updates_per_s": 1e5},
                                   "numba": {"skipped": "no numba"},
                                   "coniii_metropolis": {"updates_per_s": 1e6}}}},
    })
    ratios = [r["ratio"] for r in rows]
    assert ratios[:2] == [1.5, 4.0]
    assert ratios[2:4] == [10.0, None]  # exact MLE 5 s vs 0.5 s; pseudo: ConIII skipped
    assert ratios[4:] == [1000.0, None, None, 100.0]
    assert rows[5]["note"] == "no numba"
    assert "1.50x" in run_all.format_table(rows)


def test_fit_task_sizes_in_the_one_vocabulary():
    """FitTask holds num_chains/num_draws/num_warmup; the old attribute names still read them
    (one release) with a DeprecationWarning."""
    import dataclasses

    task = batch.FitTask(**{f.name: None for f in dataclasses.fields(batch.FitTask)})
    task = dataclasses.replace(task, num_chains=3, num_draws=50, num_warmup=20)
    with pytest.warns(DeprecationWarning, match="num_draws"):
        assert task.draws == 50
    assert (task.num_chains, task.num_warmup) == (3, 20)
