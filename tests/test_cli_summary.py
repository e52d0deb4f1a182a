"""The ``bayes-ising summary`` verb: exit codes, printed text, JSON output."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from bayes_ising.cli import main

EXPECTED_KEYS = {
    "source", "num_bins", "num_neurons", "bin_size", "time_units", "neuron_ids",
    "cell_type_counts", "state_bin_counts", "selection", "firing_probability", "never_fire",
    "always_fire", "inactive_neurons", "mean_pairwise_correlation", "synchrony",
    "num_unique_patterns", "entropy", "warnings",
}


@pytest.fixture
def spike_npz(tmp_path):
    """Spike times of 4 neurons (E, E, I, silent I) over 20 s with wake/deep epochs."""
    rng = np.random.default_rng(5)
    times, neurons = [], []
    for k, rate in enumerate([8.0, 4.0, 12.0]):
        t = np.sort(rng.uniform(0, 20, rng.poisson(rate * 20)))
        times.append(t)
        neurons.append(np.full(len(t), k))
    path = tmp_path / "spikes.npz"
    np.savez(path, spike_times=np.concatenate(times), spike_neurons=np.concatenate(neurons),
             neuron_ids=np.array([0, 1, 2, 3]), cell_types=np.array(["E", "E", "I", "I"]),
             time_units="s", state_names=np.array(["wake", "deep"]),
             state_starts=np.array([0.0, 12.0]), state_stops=np.array([12.0, 20.0]))
    return path


def test_summary_writes_json(spike_npz, tmp_path, capsys):
    out = tmp_path / "s.json"
    code = main(["summary", str(spike_npz), "--bin-size", "50", "--time-units", "ms",
                 "--out", str(out)])
    assert code == 0
    text = capsys.readouterr().out
    assert "400 bins of 0.05 s x 4 neurons" in text
    assert "cell types: E 2, I 2" in text and "states (bins): deep 160, wake 240" in text
    assert "never fires (kept)" in text and "data entropy" in text
    summary = json.loads(out.read_text())
    assert EXPECTED_KEYS <= set(summary)
    assert summary["num_bins"] == 400 and summary["num_neurons"] == 4
    assert summary["never_fire"] == ["3"]
    assert summary["warnings"] == [
        "neurons that never fire: '3' (kept, listed in inactive_neurons)"]
    # an existing output is not overwritten without --force
    assert main(["summary", str(spike_npz), "--bin-size", "0.05", "--out", str(out)]) == 2
    assert "exists; pass --force" in capsys.readouterr().err
    assert main(["summary", str(spike_npz), "--bin-size", "0.05", "--out", str(out),
                 "--force", "--state", "deep", "--population", "E"]) == 0
    summary = json.loads(out.read_text())
    assert summary["num_bins"] == 160 and summary["neuron_ids"] == ["0", "1"]
    assert summary["selection"] == {"state": "deep", "population": "E"}


@pytest.mark.parametrize("extra, message", [
    ([], "bayes-ising: error: spikes.npz holds spike times: give a bin size "
         "(--bin-size / bin_size)"),
    (["--bin-size", "0.05", "--state", "rem"],
     "bayes-ising: error: selection state='rem' leaves zero bins: no bins of state 'rem' "
     "(states present: deep, wake)"),
    (["--bin-size", "0.05", "--min-rate", "0.99"],
     "bayes-ising: error: selection min_rate=0.99 leaves zero neurons"),
    (["--bin-size", "0.05", "--time-units", "hours"], "invalid choice: 'hours'"),
])
def test_summary_bad_input_exit_2(spike_npz, capsys, extra, message):
    assert main(["summary", str(spike_npz), *extra]) == 2
    err = capsys.readouterr().err
    assert message in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_summary_unknown_format_and_missing(tmp_path, capsys):
    p = tmp_path / "d.csv"
    p.write_text("0,1\n")
    assert main(["summary", str(p)]) == 2
    assert capsys.readouterr().err.strip() == (
        "bayes-ising: error: unknown data format '.csv' of d.csv "
        "(expected .npz, .mat, .nwb or .npy)")
    assert main(["summary", str(tmp_path / "nope.npz")]) == 2
    assert "nope.npz" in capsys.readouterr().err


def test_summary_subprocess(tmp_path):
    exe = Path(sys.executable).parent / "bayes-ising"
    if not exe.exists():
        pytest.skip(f"entry point not installed next to {sys.executable}")
    raster = (np.random.default_rng(0).random((300, 5)) < 0.2).astype(np.uint8)
    np.save(tmp_path / "r.npy", raster)
    out = tmp_path / "s.json"
    proc = subprocess.run([str(exe), "summary", str(tmp_path / "r.npy"), "--out", str(out)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "300 bins x 5 neurons" in proc.stdout
    summary = json.loads(out.read_text())
    assert summary["firing_probability"]["max"] == pytest.approx(raster.mean(0).max())
    proc = subprocess.run([str(exe), "summary", str(tmp_path / "r.npy"), "--variable"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
