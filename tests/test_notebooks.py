"""The notebooks (jupytext percent sources in notebooks/) run without error in fast mode.

Each is converted with jupytext and executed with nbclient in a fresh kernel, with
``BAYES_ISING_FAST=1`` (small subsets, few draws) and outputs written to a temporary folder;
any error in any cell fails the test. The quick start runs in the default suite; the others
(which fit several models each) are marked slow.
"""

from pathlib import Path

import pytest

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
FAST_NOTEBOOKS = ["01_quickstart.py"]
SLOW_NOTEBOOKS = ["02_ei_sleep_study.py", "03_bayes_vs_mle_retina.py", "04_thermodynamics.py"]


def execute(name, tmp_path, monkeypatch):
    jupytext = pytest.importorskip("jupytext")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    monkeypatch.setenv("BAYES_ISING_FAST", "1")
    monkeypatch.setenv("BAYES_ISING_NOTEBOOK_OUT", str(tmp_path))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.setenv("JAX_PLATFORMS", "cpu")
    notebook = jupytext.read(NOTEBOOKS / name)
    client = nbclient.NotebookClient(notebook, timeout=900, kernel_name="python3",
                                     resources={"metadata": {"path": str(NOTEBOOKS)}})
    client.execute()  # raises CellExecutionError on the first failing cell
    return notebook


def test_every_notebook_is_listed():
    assert sorted(p.name for p in NOTEBOOKS.glob("*.py")) == sorted(FAST_NOTEBOOKS
                                                                    + SLOW_NOTEBOOKS)


@pytest.mark.parametrize("name", FAST_NOTEBOOKS)
def test_fast_notebook_runs(name, tmp_path, monkeypatch):
    notebook = execute(name, tmp_path, monkeypatch)
    outputs = "".join(str(o.get("text", "")) for cell in notebook.cells
                      for o in cell.get("outputs", []))
    assert "converged:" in outputs and "report:" in outputs
    assert (tmp_path / "quickstart_report.html").exists()


@pytest.mark.slow
@pytest.mark.parametrize("name", SLOW_NOTEBOOKS)
def test_slow_notebook_runs(name, tmp_path, monkeypatch):
    execute(name, tmp_path, monkeypatch)
