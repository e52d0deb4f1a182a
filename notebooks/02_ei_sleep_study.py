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
# # The study's analyses on the embedded E/I sleep dataset
#
# `bayes_ising.demo.run_demo` runs the whole analysis (the same code as `bayes-ising demo`):
# fits, diagnostics beside the study's cosine/5% verdicts, predictive checks, I2/IN, E-only
# vs E+I, the state comparison, thermodynamics with the shuffled control, and MLE vs Bayes.
# This notebook runs it and looks at the results. `BAYES_ISING_FAST=1` runs it on a small
# subset with few draws (a smoke test, not for conclusions); the default takes a few minutes.

# %%
import os

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=2")

from pathlib import Path

import numpy as np

import bayes_ising as bi
from bayes_ising import datasets, demo, plots

bi.enable_x64()
FAST = demo.fast_mode()
OUT = Path(os.environ.get("BAYES_ISING_NOTEBOOK_OUT", "notebook_output")) / "ei_sleep"

# %% [markdown]
# ## The data: what the dataset was built to show
# 32 E and 8 I neurons, 50 ms bins, 20,000 bins in each of wake, light and deep sleep; a slow
# up/down drive grows from wake to deep sleep. Built-in truths: I–I correlations are higher in
# deep sleep, a few E neurons fire in < 5% of bins, and an E-only pairwise model over-predicts
# large E synchrony.

# %%
print(datasets.ei_sleep.__doc__.split("\n\n")[0])
print(demo.demo_data(demo.demo_settings(FAST)))

# %% [markdown]
# ## Run the whole analysis

# %%
result = demo.run_demo(OUT, force=True, progress=not FAST)
results = result["results"]
print({step: round(seconds, 1) for step, seconds in result["times"].items()})

# %% [markdown]
# ## Which neurons can be trusted?
# The diagnostics' flags beside the study's two rules: restart cosine similarity and the 5%
# firing threshold.

# %%
flags = results["comparison"]["flagged"]
print(f"(on the {results['comparison']['fit']} fit)")
print(f"{'neuron':>7} {'diagnostics':>12} {'cosine':>8} {'<5%':>5}")
for k, neuron in enumerate(flags["neurons"]):
    cosine = flags["cosine"][k] if flags["cosine"] is not None else None
    print(f"{neuron:>7} {flags['diagnostics'][k]!s:>12} {cosine!s:>8} "
          f"{flags['firing_threshold'][k]!s:>5}")
print(flags["agreement"])

# %% [markdown]
# ## E-only vs E+I: does a model of E alone over-predict E synchrony?

# %%
for population in ("E", "I"):
    block = results["ei"][population]
    ratio = block["log_ratio_population_only"]
    print(f"{population}: log P_model(K ≥ {block['k_high']}) / P_data = {ratio['median']:.2f} "
          f"[{ratio['lower']:.2f}, {ratio['upper']:.2f}] ({population}-only); "
          f"{block['log_ratio_joint']['median']:.2f} (E+I marginal)")
sync = results["ei"]["E"]["synchrony"]
plots.plot_synchrony_distribution(sync["observed"], predicted=sync["population_only"]["median"],
                                  lower=sync["population_only"]["lower"],
                                  upper=sync["population_only"]["upper"],
                                  title="E synchrony: data vs the E-only model", label="E-only")

# %% [markdown]
# ## States: are I–I correlations and couplings stronger in deep sleep than in wake?

# %%
states = results["states"]
print(states["probabilities"])
plots.plot_state_comparison(states["states"], states["correlation_by_block"],
                            quantity="correlation")

# %% [markdown]
# ## Heat capacity, with the shuffled-data control

# %%
thermo = results["thermo"]
plots.plot_thermodynamics(thermo["temperature"], thermo["heat_capacity_per_neuron"],
                          thermo["entropy_per_neuron"], peak=thermo["peak"],
                          shuffled={"heat_capacity": thermo["shuffled_control"][
                              "heat_capacity_per_neuron"], "entropy": thermo[
                              "shuffled_control"]["entropy_per_neuron"]},
                          num_neurons=thermo["num_neurons"])

# %% [markdown]
# ## The report
# Everything above, and more (raster, J matrix, P(K), patterns, I2/IN, rank plots), in one file.

# %%
print("report:", result["report"].resolve())
assert np.isfinite(thermo["peak"]["temperature"]["median"])
