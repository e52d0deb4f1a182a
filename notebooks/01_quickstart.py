# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Quick start: a Bayesian pairwise model of your own spike times
#
# From spike times to a posterior over fields h and couplings J, a convergence verdict, the
# neurons the data do not pin down, and a self-contained HTML report to send to a collaborator.
#
# Replace the simulated spike times in the second cell by your own: one array of spike times
# per neuron (or parallel arrays of times and neuron ids), in seconds or milliseconds. With a
# file, use `bi.data.load("my_spikes.npz", bin_size=0.02)` (npz, MATLAB, NWB; see
# `docs/data_format.md`). Set `BAYES_ISING_FAST=1` for a quick run with few draws.

# %%
import os

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=2")  # 2 chains at once

from pathlib import Path

import jax
import numpy as np

import bayes_ising as bi
from bayes_ising.fit import bayes
from bayes_ising.analysis import diagnostics
from bayes_ising.report import plots
from bayes_ising import report
from bayes_ising.pipeline.demo import fast_mode

bi.enable_x64()  # exact enumeration and MLE need float64: switched on here, at the edge
FAST = fast_mode()
OUT = Path(os.environ.get("BAYES_ISING_NOTEBOOK_OUT", "notebook_output"))
OUT.mkdir(parents=True, exist_ok=True)

# %% [markdown]
# ## 1. Spike times → binned spins
# Here: 8 neurons (6 E, 2 I) for 10 minutes, with a shared slow drive that correlates them
# and one neuron that rarely fires. Bins of 20 ms: s_i(t) = +1 if neuron i fired in bin t.

# %%
rng = np.random.default_rng(1)
duration = 120.0 if FAST else 600.0  # s
rates = np.array([6, 5, 8, 4, 7, 0.4, 15, 12])  # spikes/s; neuron 5 is sparse
cell_types = ["E"] * 6 + ["I"] * 2
drive_times = np.arange(0, duration, 0.5)
drive = np.exp(0.8 * rng.standard_normal(drive_times.size))  # slow shared gain


def poisson_train(rate):
    """Inhomogeneous Poisson spike train by thinning, rate × drive(t)."""
    peak = rate * drive.max()
    candidates = np.sort(rng.uniform(0, duration, rng.poisson(peak * duration)))
    gain = drive[np.minimum((candidates / 0.5).astype(int), drive.size - 1)]
    return candidates[rng.random(candidates.size) < rate * gain / peak]


spike_times = [poisson_train(r) for r in rates]
# your recording as a file: parallel arrays of spike times and neuron ids, plus labels
# (the .npz layout of docs/data_format.md; MATLAB and NWB files load the same way)
recording = OUT / "my_spikes.npz"
np.savez(recording, spike_times=np.concatenate(spike_times),
         spike_neurons=np.concatenate([[f"n{k}"] * len(t) for k, t in enumerate(spike_times)]),
         neuron_ids=np.array([f"n{k}" for k in range(8)]), cell_types=np.array(cell_types),
         t_start=0.0, t_stop=duration, bin_size=0.02, time_units="s")  # 20 ms bins
data = bi.load(recording)
print(data)
print("firing probability per bin:", np.round(data.firing_probability, 3))

# %% [markdown]
# ## 2. The posterior
# Exact likelihood (N ≤ 20: all 2^N states are enumerated), NUTS started at the MAP with the
# Hessian as mass matrix. Few draws in fast mode.

# %%
num_draws, num_warmup = (100, 100) if FAST else (1000, 300)
tree = bayes.fit_posterior(jax.random.key(0), data, likelihood="exact", num_chains=2,
                           num_draws=num_draws, num_warmup=num_warmup, progress=not FAST)
print(bi.posterior.mixing_verdict(tree))

# %% [markdown]
# ## 3. Can we trust it? Convergence and per-neuron reliability
# A neuron is flagged when its parameters did not converge or when the data barely move them
# from the prior (weak identification) — typically a neuron that rarely fires.

# %%
diagnosis = diagnostics.diagnose(tree)
diagnosis.pop("parameters")
print("converged:", diagnosis["converged"], diagnosis["reasons"])
for neuron in diagnosis["neurons"]:
    print(f"{neuron['id']:>4} {neuron['cell_type']}  p = {neuron['firing_probability']:.3f}  "
          f"{'FLAGGED: ' + '; '.join(neuron['reasons']) if neuron['flagged'] else 'ok'}")

# %% [markdown]
# ## 4. The couplings
# Posterior mean of J and the couplings whose 90% interval excludes 0.

# %%
summary = report.posterior_summary(tree)
plots.plot_coupling_matrix(summary["J_mean"], summary["J_significant"],
                           neuron_ids=summary["neuron_ids"], cell_types=summary["cell_types"])

# %% [markdown]
# ## 5. One report to send
# Everything in one offline HTML file (add `checks`, `thermo` and `comparison` results to fill
# the other sections; see notebooks 02–04 and `bayes-ising report --help`).

# %%
path = report.write_report(OUT / "quickstart_report.html",
                           report.build_report(tree, data, diagnostics=diagnosis,
                                               title="Quick start"), force=True)
print("report:", path.resolve())

# %% [markdown]
# ## 6. The whole study of the file in one call
# `bi.study` (the same as `bayes-ising study my_spikes.npz --out DIR`) fits every state ×
# population (here no states: all bins; E+I, E and I), checks each fit, computes I2/IN and
# C(T)/N with the shuffled control, compares the study's MLE method with each posterior, and
# compares E-only and I-only models with the E+I model. Its results are tables (pandas);
# rerunning the cell resumes instead of refitting.

# %%
settings = bi.study_plan.FAST_SETTINGS if FAST else bi.StudySettings()
result = bi.study(recording, OUT / "quickstart_study", settings=settings, progress=not FAST,
                  scheduler="sync", min_bins=100)
print(result.tables["fits"][["state", "population", "num_neurons", "likelihood", "converged",
                             "num_flagged", "I2_IN_median", "T_peak_median"]])
print(result.tables["ei"])
print("notes:", result.summary["notes"])
