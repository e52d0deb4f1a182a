"""Batch throughput: the same small fits on a LocalCluster of 1 and of 2 worker processes.

    python benchmarks/bench_batch.py [--quick] [--kind bayes|mle] [--fits K]

Each run fits K (default 8; 6 with --quick) random 6-neuron subsamples of a synthetic
8-neuron E/I raster of 4 000 bins (exact likelihood) with
:func:`bayes_ising.pipeline.batch.run_batch`.
Cluster start-up and each worker's first compilation are excluded: every worker first runs
one warm-up fit (``client.run``), then the K fits are timed from submission to the written
summary. Reported: fits per second for 1 and 2 workers and their ratio (ideal: 2 on 2 free
cores; JAX already uses several threads inside one fit, and the machine may be shared, so
expect less).
Results: ``benchmarks/output/batch.json``.
"""

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

OUTPUT = Path(__file__).resolve().parent / "output"


def _write_data(directory, num_neurons=8, num_bins=4000, seed=3):
    from bayes_ising.data import SpikeData

    rng = np.random.default_rng(seed)
    p = rng.uniform(0.1, 0.3, num_neurons)
    shared = rng.random(num_bins) < 0.15
    raster = (rng.random((num_bins, num_neurons)) < p) | (
        shared[:, None] & (rng.random((num_bins, num_neurons)) < 0.4))
    half = num_neurons // 2
    SpikeData.from_raster(raster.astype(np.int8), cell_types=["E"] * half + ["I"] * (
        num_neurons - half), source="bench_batch").to_npz(directory / "data.npz", force=True)


def _plan(directory, kind, num_fits, subsample, draws):
    text = f"""
name = "bench_batch"
[datasets]
bench = "data.npz"
[defaults]
kind = "{kind}"
likelihood = "exact"
chains = 2
draws = {draws}
warmup = {draws // 2}
[[fits]]
subsample_sizes = [{subsample}]
subsample_seeds = {list(range(num_fits))}
"""
    path = directory / f"plan_{kind}.toml"
    path.write_text(text)
    return path


def _time_workers(num_workers, plan_path, warm_path, directory):
    from distributed import Client

    from bayes_ising.pipeline import batch

    warm_task = batch.expand_plan(batch.load_plan(warm_path))[0]
    with batch.local_cluster(num_workers) as cluster, Client(cluster) as client:
        client.wait_for_workers(num_workers, timeout=300)
        start = time.perf_counter()
        # every worker compiles once (its own process), outside the timed part
        client.run(batch.execute_task, warm_task, str(directory / f"warm{num_workers}"))
        warm_s = time.perf_counter() - start
        out = directory / f"out{num_workers}"
        start = time.perf_counter()
        result = batch.run_batch(plan_path, out, client=client, progress=False,
                                 log=lambda message: None)
        elapsed = time.perf_counter() - start
    if result.num_failed:
        raise RuntimeError(f"benchmark fits failed: {result.failures[0]['error']}")
    per_fit = result.summary["wall_time_s"].astype(float)
    return {
        "workers": num_workers,
        "fits": int(len(result.summary)),
        "elapsed_s": elapsed,
        "fits_per_s": len(result.summary) / elapsed,
        "mean_fit_wall_s": float(per_fit.mean()),
        "warmup_s": warm_s,
    }


def main(quick=False, kind="bayes", num_fits=None):
    """Time K fits with 1 and 2 workers; return the figures (also written as JSON)."""
    from bayes_ising._io import write_json

    num_fits = num_fits or (6 if quick else 8)
    draws = 200 if quick else 400
    with tempfile.TemporaryDirectory(prefix="bench_batch_") as tmp:
        directory = Path(tmp)
        _write_data(directory)
        plan_path = _plan(directory, kind, num_fits, 6, draws)
        warm_dir = directory / "warm"
        warm_dir.mkdir()
        (warm_dir / "data.npz").symlink_to(directory / "data.npz")
        # the warm-up fit has the timed fits' shapes but another subsample (its own key)
        warm_path = _plan(warm_dir, kind, 1, 6, draws)
        warm_path.write_text(warm_path.read_text().replace("subsample_seeds = [0]",
                                                           "subsample_seeds = [999]"))
        runs = [_time_workers(k, plan_path, warm_path, directory) for k in (1, 2)]
    one, two = runs
    result = {
        "kind": kind,
        "num_fits": num_fits,
        "num_neurons": 6,
        "num_draws": draws,
        "cpu_count": os.cpu_count(),
        # on a shared machine the ratio also reflects the other processes' share of the cores
        "load_average_1min_at_end": os.getloadavg()[0],
        "one_worker": one,
        "two_workers": two,
        "speedup_2_vs_1": two["fits_per_s"] / one["fits_per_s"],
    }
    write_json(OUTPUT / "batch.json", result, force=True)
    print(f"batch throughput ({num_fits} {kind} fits, N = 6, {draws} draws x 2 chains; "
          f"{os.cpu_count()} CPU cores)")
    print(f"  {'workers':>8} {'elapsed s':>10} {'fits/s':>8} {'mean fit s':>11}")
    for run in runs:
        print(f"  {run['workers']:>8} {run['elapsed_s']:>10.1f} {run['fits_per_s']:>8.3f} "
              f"{run['mean_fit_wall_s']:>11.2f}")
    print(f"  2 vs 1 workers: {result['speedup_2_vs_1']:.2f}x the throughput "
          f"(1-min load average at the end: {result['load_average_1min_at_end']:.1f})")
    return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--kind", choices=["bayes", "mle"], default="bayes")
    parser.add_argument("--fits", type=int, default=None)
    args = parser.parse_args()
    import jax

    jax.config.update("jax_enable_x64", True)
    main(quick=args.quick, kind=args.kind, num_fits=args.fits)
    sys.exit(0)
