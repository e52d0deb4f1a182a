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
# # The study on the embedded E/I sleep dataset
#
# `bi.study` runs the study's whole analysis (the same code as `bayes-ising study` and
# `bayes-ising demo`): for every state × population (E+I, E, I) the posterior, diagnostics
# beside the study's cosine/5% rules, predictive checks, I2/IN, C(T)/N with the shuffled
# control and MLE vs Bayes; across fits E-only / I-only vs E+I and the state comparison. This
# notebook runs it and reads its tables. `BAYES_ISING_FAST=1` runs it on a small subset with
# few draws (a smoke test, not for conclusions); the default fits all 40 neurons.

# %%
import os

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=2")

from pathlib import Path

import numpy as np

import bayes_ising as bi
from bayes_ising.data import datasets
from bayes_ising.pipeline import demo
from bayes_ising.report import plots

bi.enable_x64()
FAST = demo.fast_mode()
OUT = Path(os.environ.get("BAYES_ISING_NOTEBOOK_OUT", "notebook_output")) / "ei_sleep"

# %% [markdown]
# ## The data
# 32 E and 8 I neurons, 50 ms bins, 20,000 bins in each of wake, light and deep sleep.

# %%
print(datasets.ei_sleep.__doc__.split("\n\n")[0])
data = demo.demo_data(demo.demo_settings(FAST))
print(data)

# %% [markdown]
# ## Run the whole study
# A rerun of this cell resumes: finished fits and analyses are read, not recomputed.

# %%
settings = demo.demo_study_settings(FAST)
result = bi.study(data, OUT, settings=settings, progress=not FAST, force=True,
                  min_bins=1000 if FAST else settings.min_bins)
fits = result.tables["fits"]
print(fits[["state", "population", "num_neurons", "likelihood", "converged", "valid",
            "num_flagged", "I2_IN_median", "I2_IN_lower", "I2_IN_upper"]])

# %% [markdown]
# ## Which neurons can be trusted?
# The diagnostics' flags beside the study's two rules: restart cosine similarity and the 5%
# firing threshold, for every fit.

# %%
neurons = result.tables["neurons"]
print(neurons[["state", "population", "neuron", "firing_probability", "flagged",
               "cosine_flagged", "firing_threshold_flagged"]].head(20))

# %% [markdown]
# ## E-only vs E+I: does a model of E alone over-predict E synchrony?
# log P_model(K ≥ k_high) / P_data per state, for the population-only posterior and for the
# E+I posterior's marginal over the same neurons.

# %%
print(result.tables["ei"])
ei_sync = result.tables["ei_synchrony"]
state = fits["state"].iloc[-1]
rows = ei_sync[(ei_sync["state"] == state) & (ei_sync["population"] == "E")]
plots.plot_synchrony_distribution(rows["observed"].to_numpy(),
                                  predicted=rows["population_only_median"].to_numpy(),
                                  lower=rows["population_only_lower"].to_numpy(),
                                  upper=rows["population_only_upper"].to_numpy(),
                                  title=f"E synchrony ({state}): data vs the E-only model",
                                  label="E-only")

# %% [markdown]
# ## States: are I–I couplings and correlations stronger in deep sleep than in wake?
# P(mean of the block in state a > in state b) for every ordered pair of states.

# %%
probabilities = result.tables["state_probabilities"]
print(probabilities[probabilities["block"] == "I-I"])
print(result.tables["state_blocks"])

# %% [markdown]
# ## Heat capacity, with the shuffled-data control

# %%
print(result.tables["peaks"])
curves = result.thermo_curves()
print(curves)

# %% [markdown]
# ## The report
# Everything above, and more, in one file.

# %%
print("report:", result.report)
assert np.isfinite(fits["T_peak_median"].dropna()).all()
