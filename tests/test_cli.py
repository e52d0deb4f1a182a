"""Every ``bayes-ising`` verb run as a subprocess on small data.

Exit codes (0 ok, 2 bad input or usage with one line on stderr and no traceback), the messages
for bad input (missing file, wrong format, unknown cell type, N too large for the exact
likelihood, conflicting flags, an existing output), and that an interrupted write leaves
nothing under the final name and no stray temporary file.

One small pipeline (fit → diagnose → check → thermo → compare-mle → report) is run once per
module on a 5-neuron raster; verbs not built yet are skipped with a message.
"""

import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

from bayes_ising import cli

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "JAX_PLATFORMS": "cpu", "MPLBACKEND": "Agg",
       "XLA_FLAGS": "--xla_force_host_platform_device_count=2", "PYTHONWARNINGS": "ignore"}


def run_cli(*args, timeout=300, cwd=None):
    """Run ``python -m bayes_ising.cli ARGS``; returns the CompletedProcess."""
    return subprocess.run([sys.executable, "-m", "bayes_ising.cli", *map(str, args)],
                          capture_output=True, text=True, timeout=timeout, env=ENV,
                          cwd=cwd or ROOT)


def assert_usage_error(result, *needles):
    """Exit 2, exactly one line on stderr naming the problem, no traceback."""
    assert result.returncode == 2, (result.returncode, result.stderr[-2000:])
    lines = [line for line in result.stderr.strip().splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert lines[0].startswith("bayes-ising")
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


def run_main(capsys, *args):
    """The same CLI in this process (cheaper than a subprocess); returns (code, stderr)."""
    code = cli.main([str(a) for a in args])
    return code, capsys.readouterr().err


def assert_usage_error_inproc(code, err, *needles):
    assert code == 2, (code, err[-2000:])
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])


def verb_available(verb):
    return importlib.util.find_spec(f"bayes_ising.cli.commands.{cli.VERBS[verb]}") is not None


def needs(verb):
    if not verb_available(verb):
        pytest.skip(f"`bayes-ising {verb}` is not built yet")


def write_raster(path, num_neurons, num_bins, seed=0):
    """A raster npz with cell types and two states (E first, then I)."""
    from bayes_ising.data import SpikeData

    rng = np.random.default_rng(seed)
    drive = rng.random(num_bins) < 0.3  # a shared drive correlates the neurons
    p = np.where(drive[:, None], 0.45, 0.12)
    raster = (rng.random((num_bins, num_neurons)) < p).astype(np.int8)
    types = np.array(["E"] * (num_neurons - 2) + ["I"] * 2)
    states = np.where(np.arange(num_bins) < num_bins // 2, "wake", "deep")
    SpikeData.from_raster(raster, neuron_ids=[f"n{k}" for k in range(num_neurons)],
                          cell_types=types, states=states, bin_size=0.05,
                          time_units="s").to_npz(path)
    return path


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    return tmp_path_factory.mktemp("cli")


@pytest.fixture(scope="module")
def data_file(work):
    return write_raster(work / "small.npz", num_neurons=5, num_bins=1500)


@pytest.fixture(scope="module")
def posterior_file(work, data_file):
    """POSTERIOR.nc from `bayes-ising fit` (or the Python API when the verb is not built)."""
    path = work / "posterior.nc"
    if verb_available("fit"):
        result = run_cli("fit", data_file, "--likelihood", "exact", "--chains", 2, "--draws",
                         60, "--warmup", 60, "--seed", 1, "--out", path)
        assert result.returncode == 0, result.stderr[-3000:]
    else:
        import jax

        from bayes_ising import data
        from bayes_ising.fit import bayes

        tree = bayes.fit_posterior(jax.random.key(1), data.load(data_file),
                                   likelihood="exact", num_chains=2, num_draws=60,
                                   num_warmup=60, progress=False)
        bayes.save_posterior(tree, path)
    return path


@pytest.fixture(scope="module")
def results(work, posterior_file, data_file):
    """DIAG/CHECKS/THERMO/CMP json from their verbs (None where a verb is not built)."""
    out = {}
    commands = {
        "diagnose": ("diagnose", posterior_file),
        "check": ("check", posterior_file, data_file, "--draws", 10, "--moments", "yes",
                  "--moments-draws", 8),
        "thermo": ("thermo", posterior_file, "--temperatures", "0.5:2.0:4",
                   "--posterior-draws", 3),
        "compare-mle": ("compare-mle", posterior_file, data_file, "--draws", 200,
                        "--restarts", 2),
    }
    for verb, args in commands.items():
        if not verb_available(verb):
            out[verb] = None
            continue
        path = work / f"{verb}.json"
        result = run_cli(*args, "--out", path)
        out[verb] = (result, path)
    return out


# ------------------------------------------------------------------ happy paths, one per verb


def test_help_lists_every_built_verb():
    result = run_cli("--help")
    assert result.returncode == 0
    for verb in cli.VERBS:
        if verb_available(verb):
            assert verb in result.stdout


def test_summary_verb(data_file):
    result = run_cli("summary", data_file)
    assert result.returncode == 0, result.stderr
    assert "1500 bins of 0.05 s x 5 neurons" in result.stdout


def test_mle_verb(data_file, work):
    needs("mle")
    out = work / "fit.json"
    result = run_cli("mle", data_file, "--method", "exact", "--out", out)
    assert result.returncode == 0, result.stderr[-2000:]
    fit = json.loads(out.read_text())
    assert fit["neurons"] == [f"n{k}" for k in range(5)]
    J = np.array(fit["J"])
    assert J.shape == (5, 5) and np.allclose(J, J.T) and np.all(np.diag(J) == 0)
    assert fit["moment_error"]["max_abs_mean"] < 1e-5


def test_fit_verb_writes_a_posterior(posterior_file):
    needs("fit")
    from bayes_ising.fit import bayes

    tree = bayes.load_posterior(posterior_file)
    assert tree["posterior"]["h"].shape == (2, 60, 5)
    assert tree["posterior"]["J"].shape == (2, 60, 10)
    assert tree.attrs["likelihood"] == "exact"


@pytest.mark.parametrize("verb, keys", [
    ("diagnose", {"converged", "reasons", "neurons"}),
    ("check", {"synchrony"}),
    ("thermo", {"temperature", "heat_capacity_per_neuron", "entropy_per_neuron", "peak",
                "method"}),
    ("compare-mle", {"parameters", "summary", "flagged", "timing"}),
])
def test_result_verbs_write_documented_json(results, verb, keys):
    needs(verb)
    result, path = results[verb]
    assert result.returncode == 0, result.stderr[-3000:]
    data = json.loads(path.read_text())
    assert keys <= set(data), set(data)


def test_check_reports_the_predictive_moments(results, data_file):
    """``check --moments yes``: the posterior's models, simulated from random and data starts,
    against the data's means and connected correlations (issue 12), in the JSON and the
    printed line. The exact posterior of these 5 neurons reproduces its own data."""
    needs("check")
    from bayes_ising import data as data_module

    result, path = results["check"]
    assert result.returncode == 0, result.stderr[-3000:]
    moments = json.loads(path.read_text())["predictive_moments"]
    assert moments["passed"], moments["reason"]
    assert moments["num_draws"] == 8 and moments["neurons"] == [f"n{k}" for k in range(5)]
    spins = data_module.load(data_file).spins.astype(float)
    np.testing.assert_allclose(moments["m_data"], spins.mean(axis=0), atol=1e-12)
    assert len(moments["C_data"]) == len(moments["pairs"]) == 10
    for start in ("random", "data"):
        model = np.asarray(moments["m_model"][start])
        assert np.max(np.abs(model - moments["m_data"])) < 4 * max(moments["se_m"])
        assert moments[start]["mean"]["max_abs_z"] <= moments["z_critical"]
    assert "predictive moments passed" in result.stdout


def test_compare_mle_columns_and_timing(results):
    needs("compare-mle")
    result, path = results["compare-mle"]
    assert result.returncode == 0, result.stderr[-3000:]
    cmp = json.loads(path.read_text())
    params = cmp["parameters"]
    assert len(params["mle"]) == 5 + 10 and params["kind"].count("h") == 5
    lower, upper = np.array(params["mle_lower"]), np.array(params["mle_upper"])
    assert np.all(lower <= upper)
    assert np.all(np.array(params["bayes_lower"]) <= np.array(params["bayes_upper"]))
    assert cmp["timing"]["mle_total_s"] > 0 and cmp["timing"]["nuts_s"] is not None
    assert len(cmp["flagged"]["firing_threshold"]) == 5
    assert "MLE (exact) + adaptive Metropolis" in result.stdout
    walk = cmp["adaptive_metropolis"]  # the walks' own diagnostics are in the JSON
    assert {"converged", "max_rhat", "min_ess_bulk", "min_ess_tail", "label"} <= set(walk)
    assert cmp["verdict"]


class _Sections(HTMLParser):
    def __init__(self):
        super().__init__()
        self.sections, self.images, self.external = [], [], []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "section":
            self.sections.append(attrs["id"])
        if tag == "img":
            self.images.append(attrs.get("src", ""))
        for key in ("src", "href"):
            if (attrs.get(key) or "#").split(":")[0] in ("http", "https", "file"):
                self.external.append(attrs[key])


def test_report_verb_builds_a_self_contained_report(results, posterior_file, data_file, work):
    from bayes_ising.report import SECTIONS

    out = work / "report.html"
    flags = []
    for verb, flag in (("diagnose", "--diagnostics"), ("check", "--checks"),
                       ("thermo", "--thermo"), ("compare-mle", "--comparison")):
        if results.get(verb) is not None and results[verb][0].returncode == 0:
            flags += [flag, results[verb][1]]
    result = run_cli("report", posterior_file, data_file, *flags, "--out", out)
    assert result.returncode == 0, result.stderr[-3000:]
    html = out.read_text()
    parsed = _Sections()
    parsed.feed(html)
    assert parsed.sections == [sid for sid, _ in SECTIONS]
    assert parsed.images and all(s.startswith("data:image/png;base64,") for s in parsed.images)
    assert parsed.external == []
    assert "could not be drawn" not in html
    # an existing report is not overwritten without --force
    again = run_cli("report", posterior_file, "--out", out)
    assert_usage_error(again, "exists; pass --force")


def test_demo_verb_refuses_another_study_without_force(work):
    (work / "demo").mkdir()
    (work / "demo" / "study_identity.json").write_text('{"data_sha256": "another"}')
    (work / "demo" / "study.json").write_text("earlier")
    result = run_cli("demo", "--fast", "--out", work / "demo")
    assert_usage_error(result, "holds the results of another study", "--force")
    assert (work / "demo" / "study.json").read_text() == "earlier"


@pytest.mark.slow
def test_demo_verb_fast_end_to_end(work):
    out = work / "demo_fast"
    result = run_cli("demo", "--fast", "--quiet", "--out", out, timeout=1200)
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"study: {out.resolve() / 'study.json'}" in result.stdout
    summary = json.loads((out / "study.json").read_text())
    assert len(summary["fits"]) == 6  # wake, deep x E+I, E, I
    assert all(f["error"] == "" for f in summary["fits"])
    if (out / "report.html").exists():
        assert "could not be drawn" not in (out / "report.html").read_text()


# ------------------------------------------------------------------------------- bad input


def test_missing_file(work):
    result = run_cli("summary", work / "nope.npz")
    assert_usage_error(result, "nope.npz")


def test_missing_posterior_for_report(work, capsys):
    code, err = run_main(capsys, "report", work / "nope.nc", "--out", work / "x.html")
    assert_usage_error_inproc(code, err, "nope.nc")
    assert not (work / "x.html").exists()


def test_wrong_format_data(work):
    bad = work / "notes.txt"
    bad.write_text("these are not spikes\n")
    result = run_cli("summary", bad)
    assert_usage_error(result, "notes.txt")


def test_wrong_format_posterior(work, data_file, capsys):
    bad = work / "bad.nc"
    bad.write_bytes(b"\x00not a netcdf file" * 10)
    code, err = run_main(capsys, "report", bad, "--out", work / "bad.html")
    assert_usage_error_inproc(code, err, "bad.nc")
    code, err = run_main(capsys, "compare-mle", data_file, data_file, "--out",
                         work / "bad.json")
    assert_usage_error_inproc(code, err, "small.npz")
    assert not (work / "bad.html").exists() and not (work / "bad.json").exists()


def test_wrong_format_json_input(work, posterior_file, capsys):
    bad = work / "diag.json"
    bad.write_text("{ not json")
    code, err = run_main(capsys, "report", posterior_file, "--diagnostics", bad, "--out",
                         work / "r2.html")
    assert_usage_error_inproc(code, err, "diag.json", "not a JSON file")


def test_unknown_cell_type(data_file, work, capsys):
    result = run_cli("summary", data_file, "--population", "X")
    assert_usage_error(result, "X")
    if verb_available("fit"):
        code, err = run_main(capsys, "fit", data_file, "--population", "X", "--out",
                             work / "p.nc")
        assert_usage_error_inproc(code, err, "X")
        assert not (work / "p.nc").exists()


def test_too_many_neurons_for_exact(work):
    needs("fit")
    big = write_raster(work / "big.npz", num_neurons=23, num_bins=200)
    result = run_cli("fit", big, "--likelihood", "exact", "--out", work / "big.nc")
    assert_usage_error(result, "22")
    assert not (work / "big.nc").exists()


def test_conflicting_flags(data_file, work, posterior_file, capsys):
    if verb_available("fit"):
        code, err = run_main(capsys, "fit", data_file, "--likelihood", "exact", "--adjust",
                             "curvature", "--out", work / "c.nc")
        assert_usage_error_inproc(code, err, "adjust")
    code, err = run_main(capsys, "compare-mle", posterior_file, data_file, "--restarts", 1,
                         "--out", work / "c.json")
    assert_usage_error_inproc(code, err, "--restarts")
    code, err = run_main(capsys, "report", posterior_file, data_file, "--population", "E",
                         "--out", work / "c.html")
    assert_usage_error_inproc(code, err, "differ from the posterior")
    assert not any((work / name).exists() for name in ("c.nc", "c.json", "c.html"))


def test_demo_conflicting_flags(capsys, work):
    code, err = run_main(capsys, "demo", "--fast", "--full", "--out", work / "demo_conflict")
    assert_usage_error_inproc(code, err, "--fast and --full")
    assert not (work / "demo_conflict").exists()


def test_unknown_verb_and_flag(capsys, work):
    assert_usage_error_inproc(*run_main(capsys, "fly"), "invalid choice")
    assert_usage_error_inproc(*run_main(capsys, "report", work / "p.nc", "--out",
                                        work / "y.html", "--no-such-flag"), "--no-such-flag")


# ------------------------------------------------------------------------ interrupted writes


_INTERRUPTED_WRITER = """
import json, signal, sys, time
# A job started in the background of a non-interactive shell inherits SIGINT ignored: install
# Python's handler here, in the child, rather than with a preexec_fn (which makes subprocess
# fork this JAX-loaded process instead of spawning the child; JAX warns that this deadlocks).
signal.signal(signal.SIGINT, signal.default_int_handler)
from bayes_ising import cli
original = json.dump
def slow_dump(obj, f, **kwargs):
    text = json.dumps(obj, **kwargs)
    f.write(text[: len(text) // 2])
    f.flush()
    print("HALF-WRITTEN", flush=True)
    time.sleep(60)
    return original(obj, f, **kwargs)
json.dump = slow_dump
sys.exit(cli.main(sys.argv[1:]))
"""


def _temps(folder, name):
    return [p.name for p in folder.iterdir() if p.name.startswith(f".{name}.")]


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL])
def test_killed_mid_write_leaves_no_partial_result(tmp_path, data_file, sig):
    """A real process interrupted while its output is half written (SIGINT, then SIGKILL)."""
    out = tmp_path / "summary.json"
    process = subprocess.Popen(
        [sys.executable, "-c", _INTERRUPTED_WRITER, "summary", str(data_file), "--out",
         str(out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV,
        cwd=ROOT)
    try:
        deadline = time.time() + 240
        line = ""
        while "HALF-WRITTEN" not in line and time.time() < deadline:
            line = process.stdout.readline()
            if not line and process.poll() is not None:
                break
        assert "HALF-WRITTEN" in line, process.stderr.read()[-2000:]
        assert _temps(tmp_path, out.name)  # the partial file is the temporary one
        process.send_signal(sig)
        code = process.wait(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert not out.exists()
    if sig == signal.SIGINT:
        assert code == 130
        assert _temps(tmp_path, out.name) == []  # cleaned up on the way out
    else:
        # nothing can clean up after SIGKILL; the final name is untouched and the temporary
        # file is a hidden dot-file next to it
        assert code == -signal.SIGKILL


def test_writer_error_leaves_nothing(tmp_path, posterior_file, monkeypatch):
    """The report writer raising half-way (disk full): no file, no stray temporary file."""
    out = tmp_path / "report.html"

    def failing(self, text, *args, **kwargs):
        with open(self, "w") as f:
            f.write(text[:100])
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Path, "write_text", failing)
    with pytest.raises(OSError, match="No space left"):
        cli.main(["report", str(posterior_file), "--out", str(out)])
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_fit_persists_compiled_programs_and_reuses_them(tmp_path, data_file):
    """BAYES_ISING_JAX_CACHE: the first fit fills the cache; a second identical fit reads it
    and gives the same draws (same seed)."""
    cache = tmp_path / "jax-cache"
    env = {**ENV, "BAYES_ISING_JAX_CACHE": str(cache)}
    outputs = []
    for run in range(2):
        out = tmp_path / f"posterior{run}.nc"
        result = subprocess.run(
            [sys.executable, "-m", "bayes_ising.cli", "fit", str(data_file), "--likelihood",
             "exact", "--chains", "2", "--draws", "30", "--warmup", "30", "--seed", "3",
             "--out", str(out)], capture_output=True, text=True, timeout=300, env=env, cwd=ROOT)
        assert result.returncode == 0, result.stderr[-3000:]
        if run == 0:
            cached = list(cache.iterdir())
            assert cached, "no compiled program was persisted"
        outputs.append(out)
    from bayes_ising.fit import bayes

    first, second = (bayes.load_posterior(p) for p in outputs)
    np.testing.assert_array_equal(first["posterior"]["J"].values, second["posterior"]["J"].values)
    assert {p.name for p in cache.iterdir()} >= {p.name for p in cached}
