"""compare-mle fits in the machine: its peak memory at N = 50 is measured in a spawned process.

Before: ``jax.hessian`` of the pseudolikelihood held one tangent of every unique pattern per
parameter (P = 1,275 at N = 50), 22.7 GB on a 50-cell recording; the walk's draws grew with its
length. Now: Hessian-vector products a few columns at a time, and at most ``keep`` thinned
draws per walk. The bound (:func:`bayes_ising.analysis.comparison.memory_bound_bytes`) is a small
multiple of the data, the posterior and the walks' (D, D) proposal state, above the process's
footprint after loading (JAX, the posterior, the data).
"""

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest

CHILD = textwrap.dedent("""
    import json, resource, sys
    import jax
    jax.config.update("jax_enable_x64", True)
    import numpy as np
    from bayes_ising.fit import bayes
    from bayes_ising.analysis import comparison
    from bayes_ising.data import load
    tree = bayes.load_posterior(sys.argv[1])
    data = load(sys.argv[2])
    comparison.posterior_intervals(tree)  # warm the readers
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    out = comparison.compare_mle(jax.random.key(0), tree, data, l2=1e-3, walk_draws=1500,
                                 num_restarts=2)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    num_draws = tree["posterior"].sizes["chain"] * tree["posterior"].sizes["draw"]
    bound = comparison.memory_bound_bytes(data.num_bins, data.num_neurons, num_draws)
    print(json.dumps({"base": base, "peak": peak, "bound": bound,
                      "walk_draws": out["adaptive_metropolis"]["num_draws"]}))
""")


def _sparse_raster(num_neurons=50, num_bins=6000, seed=0):
    """Sparse firing (1-20% per bin) with a shared drive: many unique patterns."""
    rng = np.random.default_rng(seed)
    rates = rng.uniform(0.01, 0.2, num_neurons)
    drive = rng.random(num_bins) < 0.2
    p = np.clip(rates * np.where(drive, 2.5, 0.7)[:, None], 0, 0.9)
    return (rng.random((num_bins, num_neurons)) < p).astype(np.int8)


@pytest.mark.long
def test_compare_mle_peak_memory_at_n50(tmp_path):
    import jax

    from bayes_ising.data import SpikeData
    from bayes_ising.fit import bayes

    data = SpikeData.from_raster(_sparse_raster(), neuron_ids=[f"c{k}" for k in range(50)])
    data_file = data.to_npz(tmp_path / "cells50.npz")
    tree = bayes.fit_posterior(jax.random.key(0), data, likelihood="pseudo", adjust="none",
                               num_chains=2, num_draws=50, num_warmup=50, progress=False)
    bayes.save_posterior(tree, tmp_path / "post50.nc")
    result = subprocess.run([sys.executable, "-c", CHILD, str(tmp_path / "post50.nc"),
                             str(data_file)], capture_output=True, text=True, timeout=1800)
    assert result.returncode == 0, result.stderr[-3000:]
    numbers = json.loads(result.stdout.strip().splitlines()[-1])
    growth = numbers["peak"] - numbers["base"]
    print(f"compare-mle N=50: base {numbers['base'] / 2**20:.0f} MiB, peak "
          f"{numbers['peak'] / 2**20:.0f} MiB, growth {growth / 2**20:.0f} MiB, bound "
          f"{numbers['bound'] / 2**20:.0f} MiB")
    assert growth <= numbers["bound"], numbers
