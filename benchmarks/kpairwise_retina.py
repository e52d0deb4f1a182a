"""Issue 18: independent vs pairwise vs K-pairwise on retina15.mat (PSIS-LOO, P(K) band).

Usage: PYTHONPATH=. python benchmarks/kpairwise_retina.py [num_draws (= num_warmup), 300]
Prints the arviz-stats compare table, the P(K) band fractions, fit times and diagnostics.
"""

import json
import sys
import time

import jax

jax.config.update("jax_enable_x64", True)

import arviz_stats as azs  # noqa: E402
import numpy as np  # noqa: E402

import bayes_ising as bi  # noqa: E402
from bayes_ising import kpairwise  # noqa: E402


def main(num_draws=300, path="/work/shared/data/retina15.mat"):
    spins = np.asarray(bi.load(path).spins)
    start = time.time()
    res = kpairwise.compare_families(spins, kpairwise.FAMILIES, rng_key=0, num_chains=2,
                                     num_draws=num_draws, num_warmup=num_draws, check_draws=200)
    print(res["table"].to_string())
    out = dict(synchrony_fraction_in_band=res["synchrony"], seconds=res["seconds"],
               pareto_k=res["pareto_k"],
               loo={k: dict(elpd=v.elpd, se=v.se, p=v.p) for k, v in res["loo"].items()})
    for family, fit in res["fits"].items():
        diag = azs.summary(fit.tree, kind="diagnostics")
        out.setdefault("max_rhat", {})[family] = float(np.nanmax(diag["r_hat"]))
        out.setdefault("min_ess_bulk", {})[family] = float(np.nanmin(diag["ess_bulk"]))
        out.setdefault("num_divergent", {})[family] = int(fit.tree.attrs["num_divergent"])
    print(json.dumps(out, indent=1))
    print(f"total {time.time() - start:.0f} s")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 300)
