"""Time of the Boltzmann step (:func:`bayes_ising.fit.mle.fit_boltzmann`) at N = 50 and N = 92.

1. N = 50: :func:`synthetic.shared_input_raster` (key 0, 20,000 bins; the data of the long
   test of issue 12), started from the pseudolikelihood MLE, as the large-N posterior does.
2. N = 92: :func:`synthetic.ei_network` (74 E, 18 I; key 0), the deep state only, 50,000 bins
   of 50 ms (the study's population size), started from the pseudolikelihood MLE.

For each: wall and CPU seconds (process time, all threads), learning steps, stages,
converged, max |z| against its critical value, max |Δm| and |ΔC| of the final check, the
pseudo-MLE's model-check verdict (the "before"), and the load average before and after.

Run: ``nice -n 10 .venv/bin/python benchmarks/bench_boltzmann.py [--only 50|92]``; writes
``benchmarks/output/boltzmann.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import time
import warnings
from pathlib import Path

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=1")

import jax  # noqa: E402
import numpy as np  # noqa: E402

jax.config.update("jax_enable_x64", True)

from bayes_ising.data import synthetic  # noqa: E402
from bayes_ising.fit import mle, validity  # noqa: E402
from bayes_ising.fit.mle import MLEWarning  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def cases():
    """name → function returning (T, N) ±1 spins."""
    def n50():
        return synthetic.shared_input_raster(jax.random.PRNGKey(0), 50, 20_000).spins

    def n92():
        data = synthetic.ei_network(jax.random.PRNGKey(0), 74, 18, duration=2500.0,
                                    state_order=("deep",))
        return data.spins[:50_000]

    return {"50": n50, "92": n92}


def measure(spins):
    """Pseudo MLE → its model check → fit_boltzmann (timed) → the fit's numbers."""
    spins = np.asarray(spins, np.int8)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MLEWarning)
        pseudo = mle.fit_pseudo(spins, check_moments=False)
    before = validity.model_check(jax.random.PRNGKey(1), pseudo.h, pseudo.J, spins)
    load_before = os.getloadavg()
    wall, cpu = time.perf_counter(), time.process_time()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MLEWarning)
        fit = mle.fit_boltzmann(jax.random.PRNGKey(2), spins, init=pseudo)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    e = fit.moment_error
    return {
        "num_bins": int(spins.shape[0]), "num_neurons": int(spins.shape[1]),
        "data_mean_activity": float(np.mean(spins > 0)),
        "pseudo_check": {"verdict": before["verdict"], "reason": before["reason"]},
        "wall_s": wall, "cpu_s": cpu, "iterations": int(fit.iterations),
        "stages": len(fit.settings["history"]), "converged": bool(fit.converged),
        "max_abs_z": float(e["max_abs_z"]), "z_critical": float(e["z_critical"]),
        "max_abs_mean": float(e["max_abs_mean"]),
        "max_abs_connected": float(e["max_abs_connected"]),
        "history": [{k: h[k] for k in ("stage", "rate", "iterations", "max_z", "within")}
                    for h in fit.settings["history"]],
        "load_before": load_before, "load_after": os.getloadavg()}


def main(argv=None):
    """Measure the cases (``--only 50|92`` for one); returns and saves the figures."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", choices=("50", "92"), default=None)
    args = parser.parse_args(argv)
    out = {}
    for name, make in cases().items():
        if args.only and name != args.only:
            continue
        out[f"N{name}"] = measure(make())
        print(json.dumps({name: out[f"N{name}"]}, default=float), flush=True)
    path = ROOT / "benchmarks" / "output" / "boltzmann.json"
    path.parent.mkdir(exist_ok=True)
    previous = json.loads(path.read_text()) if path.exists() else {}
    path.write_text(json.dumps({**previous, **out}, indent=1, default=float))
    return out


if __name__ == "__main__":
    main()
