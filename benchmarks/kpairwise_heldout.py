"""Issue 18: held-out blocks of bins (exact MLE and pseudolikelihood fits) and the Gibbs P(K)
check of pseudolikelihood fits, independent vs pairwise vs K-pairwise, on retina15.mat.

Usage: PYTHONPATH=. python benchmarks/kpairwise_heldout.py [num_blocks, 10]
Writes benchmarks/output/kpairwise_heldout.json.
"""

import json
import os
import sys
import time
from pathlib import Path

import jax

jax.config.update("jax_enable_x64", True)

import numpy as np  # noqa: E402

import bayes_ising as bi  # noqa: E402
from bayes_ising.analysis import families  # noqa: E402
from bayes_ising.core import gibbs, kpairwise  # noqa: E402
from bayes_ising.fit import kpairwise_fit  # noqa: E402

OUTPUT = Path(__file__).resolve().parent / "output" / "kpairwise_heldout.json"


def _gibbs_synchrony(spins, families):
    """Max |P_model(K) − P_data(K)| and P(K) per family, pseudolikelihood fit, Gibbs P(K)."""
    suff = kpairwise.sufficient_statistics(spins)
    observed = suff.k_counts / suff.num_bins
    out = {}
    for family in families:
        fit = kpairwise_fit.fit_pseudo(spins, family)
        run = gibbs.sample_kpairwise(jax.random.PRNGKey(0), fit.h, fit.J, fit.V,
                                     num_chains=64, num_sweeps=3200, burn_in=200)
        exact = np.asarray(kpairwise.exact_moments(fit.h, fit.J, fit.V)[2])
        seen = suff.k_counts >= 10
        rel = np.abs(run.p_k[0, 0] - observed)[seen] / observed[seen]
        out[family] = dict(p_k_gibbs=run.p_k[0, 0].tolist(), p_k_exact=exact.tolist(),
                           max_abs_gibbs_minus_exact=float(np.max(np.abs(run.p_k[0, 0] - exact))),
                           max_relative_error_vs_data=float(rel.max()),
                           gibbs_seconds=run.wall_time_s)
    return dict(observed=observed.tolist(), families=out)


def _thermodynamics(spins):
    """Exact C(T)/N and S(T)/N of the exact MLE of the pairwise and K-pairwise models."""
    temperatures = np.linspace(0.5, 3.0, 26)
    out = {}
    for family in ("pairwise", "k_pairwise"):
        start = time.time()
        fit = kpairwise_fit.fit_mle(spins, family)
        res = families.thermodynamics(fit.h, fit.J, fit.V, temperatures)
        out[family] = dict(temperatures=temperatures.tolist(),
                           heat_capacity_per_neuron=res.heat_capacity_per_neuron[0].tolist(),
                           entropy_per_neuron=res.entropy_per_neuron[0].tolist(),
                           peak_temperature=float(np.ravel(res.peak_temperature)[0]),
                           peak_heat_capacity_per_neuron=float(
                               np.ravel(res.peak_heat_capacity_per_neuron)[0]),
                           entropy_integration_error=res.entropy_integration_error,
                           mle_max_moment_error=fit.max_moment_error,
                           seconds=time.time() - start)
    return out


def main(num_blocks=10, path="/work/shared/data/retina15.mat"):
    spins = np.asarray(bi.load(path).spins)
    out = dict(load_average_before=os.getloadavg(), num_blocks=num_blocks)
    for method in ("exact", "pseudo"):
        start = time.time()
        res = kpairwise_fit.held_out_blocks(spins, kpairwise.FAMILIES, num_blocks=num_blocks,
                                            method=method)
        res["block_scores"] = res["block_scores"].tolist()
        res["seconds"] = time.time() - start
        out[method] = res
        print(method, json.dumps({k: res[k] for k in ("per_bin", "difference", "se",
                                                      "seconds")}, indent=1))
    out["gibbs_synchrony_of_pseudo_fits"] = _gibbs_synchrony(spins, ("pairwise", "k_pairwise"))
    print(json.dumps({f: {k: v for k, v in d.items() if not k.startswith("p_k")}
                      for f, d in out["gibbs_synchrony_of_pseudo_fits"]["families"].items()},
                     indent=1))
    out["thermodynamics_of_mle"] = _thermodynamics(spins)
    print(json.dumps({f: {k: v for k, v in d.items() if not isinstance(v, list)}
                      for f, d in out["thermodynamics_of_mle"].items()}, indent=1))
    out["load_average_after"] = os.getloadavg()
    OUTPUT.write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 10)
