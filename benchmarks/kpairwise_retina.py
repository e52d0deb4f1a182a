"""Issue 18: independent vs pairwise vs K-pairwise on retina15.mat (PSIS-LOO, P(K) band).

Usage: PYTHONPATH=. python benchmarks/kpairwise_retina.py [num_draws (= num_warmup), 800]
Prints the comparison table (bayes-ising compare-families' format), P(K) band counts, fit times
and diagnostics, and writes benchmarks/output/kpairwise_retina.json
(:func:`bayes_ising.analysis.families.comparison_summary` plus the run's settings and load average).
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
from bayes_ising.cli.commands.compare_families import format_table  # noqa: E402
from bayes_ising.core import kpairwise  # noqa: E402

OUTPUT = Path(__file__).resolve().parent / "output" / "kpairwise_retina.json"


def main(num_draws=800, path="/work/shared/data/retina15.mat"):
    spins = np.asarray(bi.load(path).spins)
    start = time.time()
    load_before = os.getloadavg()
    res = families.compare_families(spins, kpairwise.FAMILIES, rng_key=0, num_chains=2,
                                     num_draws=num_draws, num_warmup=num_draws,
                                     check_draws=200)
    summary = families.comparison_summary(res)
    print("\n".join(format_table(summary)))
    summary.update(settings=dict(num_chains=2, num_draws=num_draws, num_warmup=num_draws,
                                 check_draws=200, rng_key=0, num_bins=int(spins.shape[0]),
                                 num_neurons=int(spins.shape[1])),
                   load_average_before=load_before, load_average_after=os.getloadavg(),
                   total_seconds=time.time() - start)
    OUTPUT.write_text(json.dumps(summary, indent=1) + "\n")
    print(f"total {summary['total_seconds']:.0f} s; load {load_before} -> {os.getloadavg()}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 800)
