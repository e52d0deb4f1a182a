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
# # Bayesian vs maximum likelihood on real retina data
#
# The study's way: the MLE (exact moment matching), an adaptive-Metropolis random walk around
# it for error bars, and optimiser restarts compared by cosine similarity (plus the ≥ 5%
# firing rule) to decide which neurons to trust. The Bayesian way: NUTS draws of the
# posterior and per-neuron diagnostics. Same data, side by side.
#
# `DATA_PATH` is a parameter: by default `../shared/data/retina15.mat` next to the project
# (15 retinal ganglion cells; see its README) when present, else a synthetic 12-neuron
# recording with known couplings.

# %%
import os

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=2")

from pathlib import Path

import jax
import numpy as np

import bayes_ising as bi
from bayes_ising.fit import bayes
from bayes_ising.analysis import comparison, diagnostics
from bayes_ising import data as bi_data
from bayes_ising.report import plots
from bayes_ising.data import synthetic
from bayes_ising.pipeline.demo import fast_mode

bi.enable_x64()
FAST = fast_mode()
ROOT = Path.cwd().parent if Path.cwd().name == "notebooks" else Path.cwd()
DATA_PATH = os.environ.get("BAYES_ISING_RETINA", str(ROOT.parent / "shared" / "data"
                                                     / "retina15.mat"))

# %%
truth = None
if Path(DATA_PATH).exists():
    data = bi_data.load(DATA_PATH)
else:
    print(f"{DATA_PATH} not found: using a synthetic recording with known couplings")
    truth = synthetic.ei_ising_parameters(jax.random.key(3), 9, 3)
    spins = synthetic.sample_ising(jax.random.key(4), truth.h, truth.J, 20_000)
    data = bi_data.SpikeData.from_raster(spins, cell_types=truth.cell_types,
                                         source="synthetic E/I Ising (12 neurons)")
if FAST:  # a smoke test: fewer bins and neurons
    keep = np.argsort(-data.firing_probability)[:6]
    data = bi_data.SpikeData.from_raster(np.asarray(data.spins)[:5000][:, np.sort(keep)],
                                         source=data.source + " (fast subset)")
print(data)
print("firing probability:", np.round(data.firing_probability, 3))

# %% [markdown]
# ## The posterior (exact likelihood)

# %%
num_draws, num_warmup = (80, 80) if FAST else (1000, 300)
tree = bayes.fit_posterior(jax.random.key(0), data, likelihood="exact", num_chains=2,
                           num_draws=num_draws, num_warmup=num_warmup, progress=not FAST)
print(bi.posterior.mixing_verdict(tree))
diagnosis = diagnostics.diagnose(tree)
diagnosis.pop("parameters")

# %% [markdown]
# ## The study's way, and the comparison
# `l2 = 0`: the plain MLE. On `retina15.mat` two pairs of neurons never fire together, so
# their MLE couplings go to −∞; the MLE side warns and its intervals for those pairs are
# meaningless — the posterior (with its prior) stays finite.

# %%
result = comparison.compare_mle(jax.random.key(1), tree, data,
                                num_draws=500 if FAST else 8000,
                                num_restarts=2 if FAST else 5, diagnosis=diagnosis)
for message in result["mle"]["warnings"]:
    print("MLE warning:", message)
print({k: round(v, 3) for k, v in result["summary"].items() if v is not None})
print({k: (round(v, 1) if v is not None else None) for k, v in result["timing"].items()})

# %%
p = result["parameters"]
plots.plot_mle_vs_bayes(p["kind"], p["mle"], p["mle_lower"], p["mle_upper"], p["bayes_mean"],
                        p["bayes_lower"], p["bayes_upper"])

# %% [markdown]
# ## Which neurons to trust: three verdicts side by side

# %%
flags = result["flagged"]
for k, neuron in enumerate(flags["neurons"]):
    print(f"{neuron:>4}  p = {data.firing_probability[k]:.3f}  diagnostics: "
          f"{'flag' if flags['diagnostics'][k] else 'ok':>4}  cosine: "
          f"{'flag' if flags['cosine'] and flags['cosine'][k] else 'ok':>4}  5% rule: "
          f"{'flag' if flags['firing_threshold'][k] else 'ok':>4}")
print(flags["agreement"])

# %% [markdown]
# With planted couplings (the synthetic fallback) we can also ask which estimate is closer to
# the truth.

# %%
if truth is not None and not FAST:
    first, second = np.triu_indices(len(truth.h), 1)
    true_theta = np.concatenate([np.asarray(truth.h), np.asarray(truth.J)[first, second]])
    for name, estimate in (("MLE", p["mle"]), ("posterior mean", p["bayes_mean"])):
        error = np.sqrt(np.mean((np.asarray(estimate) - true_theta) ** 2))
        print(f"RMS error vs truth, {name}: {error:.4f}")

# %% [markdown]
# ## The same comparison inside the study
# `bi.study` runs this comparison for every fit it makes (here one: no states, no cell types)
# beside the diagnostics, predictive checks, I2/IN and thermodynamics; its `comparison` and
# `neurons` tables hold the numbers above.

# %%
OUT = Path(os.environ.get("BAYES_ISING_NOTEBOOK_OUT", "notebook_output"))
settings = bi.study_plan.FAST_SETTINGS if FAST else bi.StudySettings(num_chains=2,
                                                                     num_draws=num_draws,
                                                                     num_warmup=num_warmup)
study = bi.study(data, OUT / "retina_study", settings=settings, progress=not FAST,
                 scheduler="sync", force=True, min_bins=100)
print(study.tables["comparison"].T)
print(study.tables["neurons"][["neuron", "firing_probability", "flagged", "cosine_flagged",
                               "firing_threshold_flagged"]])
print("notes:", study.summary["notes"])
