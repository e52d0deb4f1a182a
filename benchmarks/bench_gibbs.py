"""Gibbs sampler speed: spin updates per second, JAX (many chains) vs NumPy/Numba/ConIII baselines.

Run ``python benchmarks/bench_gibbs.py [--quick]``. Prints a table with same-run ratios and
writes ``benchmarks/output/gibbs.json``; :func:`main` returns the figures as a dict.

One *spin update* is one heat-bath (or Metropolis, for ConIII) decision for one spin of one
chain; a sweep of C chains of N spins is N·C updates. Wall time and process CPU time are both
reported: on a shared machine the CPU-time rate is the steadier figure. Models: a random dense
model with h_i ~ N(−1, 0.3), J_ij ~ N(0, 0.5/√N) (sparse activity like the retina fits).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

OUTPUT = Path(__file__).resolve().parent / "output" / "gibbs.json"


def _model(num_neurons, seed=0):
    rng = np.random.default_rng(seed)
    h = rng.normal(-1.0, 0.3, num_neurons)
    upper = np.triu(rng.normal(0.0, 0.5 / np.sqrt(num_neurons), (num_neurons, num_neurons)), 1)
    return h, upper + upper.T


def _timed(fn, repeats=3):
    """Best wall and CPU seconds of ``fn()`` over ``repeats`` runs."""
    best_wall, best_cpu = np.inf, np.inf
    for _ in range(repeats):
        wall, cpu = time.perf_counter(), time.process_time()
        fn()
        best_wall = min(best_wall, time.perf_counter() - wall)
        best_cpu = min(best_cpu, time.process_time() - cpu)
    return best_wall, best_cpu


# ------------------------------------------------------------------------ JAX (this package)


def bench_jax(num_neurons, num_chains, num_sweeps, dtype_name="float32"):
    import jax
    import jax.numpy as jnp
    from jax import lax

    from bayes_ising.core import gibbs

    dtype = jnp.dtype(dtype_name)
    h, J = _model(num_neurons)
    state = gibbs.init(jax.random.key(0), h, J, (1.0,), num_chains, dtype=dtype)
    options = (num_chains, 1, "systematic", False, "hash", None)
    h_j, J_j = jnp.asarray(h, dtype), jnp.asarray(J, dtype)
    betas, temp_betas = gibbs._betas((1.0,), num_chains, dtype)

    @jax.jit
    def run(key, flat):
        def one(flat, index):
            flat, _ = gibbs._sweep(jax.random.fold_in(key, index), flat, h_j, J_j, betas,
                                   temp_betas, index, options)
            return flat, None

        return lax.scan(one, flat, jnp.arange(num_sweeps))[0]

    flat = gibbs._to_flat(state)
    compile_start = time.perf_counter()
    jax.block_until_ready(run(jax.random.key(1), flat))
    compile_s = time.perf_counter() - compile_start
    wall, cpu = _timed(lambda: jax.block_until_ready(run(jax.random.key(2), flat)))
    updates = num_neurons * num_chains * num_sweeps
    return {
        "updates_per_s": updates / wall,
        "updates_per_cpu_s": updates / cpu,
        "wall_s": wall,
        "compile_s": compile_s,
        "num_chains": num_chains,
        "num_sweeps": num_sweeps,
        "dtype": dtype_name,
    }


def bench_jax_sample(num_neurons, num_chains, num_sweeps):
    """The public driver (gibbs.sample, energies recorded every sweep), for the overhead."""
    import jax

    from bayes_ising.core import gibbs

    h, J = _model(num_neurons)
    kwargs = dict(num_chains=num_chains, num_sweeps=num_sweeps, burn_in=0)
    gibbs.sample(jax.random.key(0), h, J, **kwargs)  # compile
    wall, cpu = _timed(lambda: gibbs.sample(jax.random.key(1), h, J, **kwargs), repeats=2)
    updates = num_neurons * num_chains * num_sweeps
    return {"updates_per_s": updates / wall, "updates_per_cpu_s": updates / cpu, "wall_s": wall,
            "num_chains": num_chains, "num_sweeps": num_sweeps}


def bench_bounds(num_neurons, num_chains, num_sweeps):
    """What bounds a sweep: its parts alone, as spin updates per CPU-second.

    - ``uniforms_and_thresholds``: the hash uniforms and logit thresholds of a sweep only;
    - ``sweep_without_rng``: the sequential blocked sweep with fixed thresholds;
    - ``field_gemm_only``: one (N×N)·(N×chains) product per sweep — the N multiply-adds per
      update that keeping exact dense fields costs, at the machine's GEMM rate.
    """
    import jax
    import jax.numpy as jnp
    from jax import lax

    from bayes_ising.core import gibbs

    h, J = _model(num_neurons)
    J32 = jnp.asarray(J, jnp.float32)
    spins = jnp.ones((num_neurons, num_chains), jnp.float32)
    fields = jnp.asarray(h, jnp.float32)[:, None] + J32 @ spins
    betas = jnp.ones(num_chains, jnp.float32)
    fixed = jnp.zeros((num_neurons, num_chains), jnp.float32)

    @jax.jit
    def rng_only(key):
        def one(total, index):
            t = gibbs._thresholds(jax.random.fold_in(key, index), fixed.shape, betas,
                                  jnp.float32, "hash")
            return total + t, None

        return lax.scan(one, fixed, jnp.arange(num_sweeps))[0]

    @jax.jit
    def sweep_only(spins, fields):
        def one(carry, index):
            return gibbs._systematic_sweep(*carry, fixed + 0.01 * index, J32), None

        return lax.scan(one, (spins, fields), jnp.arange(num_sweeps))[0]

    @jax.jit
    def gemm_only(spins):
        def one(spins, index):
            return jnp.sign(J32 @ spins + 1e-3), None

        return lax.scan(one, spins, jnp.arange(num_sweeps))[0]

    out = {}
    updates = num_neurons * num_chains * num_sweeps
    for name, fn in (("uniforms_and_thresholds", lambda: rng_only(jax.random.key(0))),
                     ("sweep_without_rng", lambda: sweep_only(spins, fields)),
                     ("field_gemm_only", lambda: gemm_only(spins))):
        jax.block_until_ready(fn())
        wall, cpu = _timed(lambda fn=fn: jax.block_until_ready(fn()))
        out[name] = {"updates_per_s": updates / wall, "updates_per_cpu_s": updates / cpu}
    return out


def bench_models(num_neurons, num_models, num_chains, num_temps, num_sweeps):
    """The thermodynamics shape: D models (posterior draws) × chains × temperatures with replica
    exchange in one vectorised program (:func:`bayes_ising.core.gibbs.sample_models_energies`)."""
    import jax
    import numpy as np

    from bayes_ising.core import gibbs

    rng = np.random.default_rng(1)
    h, J = _model(num_neurons)
    hs = h + 0.03 * rng.normal(size=(num_models, num_neurons))
    noise = np.triu(0.02 * rng.normal(size=(num_models, num_neurons, num_neurons)), 1)
    Js = J + noise + np.swapaxes(noise, 1, 2)
    ladder = np.linspace(0.5, 3.0, num_temps)
    state = gibbs.init_models(jax.random.key(0), hs, Js, ladder, num_chains)

    def run(key):
        return gibbs.sample_models_energies(key, hs, Js, state, ladder, num_chains=num_chains,
                                            num_sweeps=num_sweeps, chunk_size=num_sweeps)

    run(jax.random.key(1))  # compile
    wall, cpu = _timed(lambda: run(jax.random.key(2)), repeats=2)
    updates = num_neurons * num_models * num_chains * num_temps * num_sweeps
    return {"updates_per_s": updates / wall, "updates_per_cpu_s": updates / cpu, "wall_s": wall,
            "num_models": num_models, "num_chains": num_chains, "num_temps": num_temps,
            "num_sweeps": num_sweeps}


# ------------------------------------------------------------------------ NumPy baseline


def bench_numpy(num_neurons, num_sweeps):
    """Straightforward single chain: field recomputed from J for every update."""
    h, J = _model(num_neurons)
    rng = np.random.default_rng(0)
    spins = rng.choice([-1.0, 1.0], num_neurons)

    def run():
        uniforms = rng.random((num_sweeps, num_neurons))
        for sweep in range(num_sweeps):
            for i in range(num_neurons):
                field = h[i] + J[i] @ spins
                spins[i] = 1.0 if uniforms[sweep, i] < 1.0 / (1.0 + np.exp(-2.0 * field)) else -1.0

    wall, cpu = _timed(run, repeats=2)
    updates = num_neurons * num_sweeps
    return {"updates_per_s": updates / wall, "updates_per_cpu_s": updates / cpu,
            "num_chains": 1, "num_sweeps": num_sweeps}


# ------------------------------------------------------------------------ Numba baselines


def _numba_kernels():
    import numba

    @numba.njit(cache=False, fastmath=False)
    def plain(spins, h, J, uniforms):
        n = spins.size
        for sweep in range(uniforms.shape[0]):
            for i in range(n):
                field = h[i]
                for j in range(n):
                    field += J[i, j] * spins[j]
                p = 1.0 / (1.0 + np.exp(-2.0 * field))
                spins[i] = 1.0 if uniforms[sweep, i] < p else -1.0
        return spins

    @numba.njit(cache=False)
    def on_flip(spins, fields, J, uniforms):
        n = spins.size
        for sweep in range(uniforms.shape[0]):
            for i in range(n):
                p = 1.0 / (1.0 + np.exp(-2.0 * fields[i]))
                new = 1.0 if uniforms[sweep, i] < p else -1.0
                if new != spins[i]:
                    delta = new - spins[i]
                    spins[i] = new
                    for j in range(n):
                        fields[j] += J[j, i] * delta
        return spins

    @numba.njit(parallel=True, cache=False)
    def chains_parallel(spins, fields, J, num_sweeps, seed):
        """Many chains, one per loop iteration over threads; fields updated only on flips."""
        num_chains, n = spins.shape
        for c in numba.prange(num_chains):
            np.random.seed(seed + c)
            for _ in range(num_sweeps):
                for i in range(n):
                    p = 1.0 / (1.0 + np.exp(-2.0 * fields[c, i]))
                    new = 1.0 if np.random.random() < p else -1.0
                    if new != spins[c, i]:
                        delta = new - spins[c, i]
                        spins[c, i] = new
                        for j in range(n):
                            fields[c, j] += J[j, i] * delta
        return spins

    return plain, on_flip, chains_parallel


def bench_numba(num_neurons, num_sweeps, num_chains_parallel, sweeps_parallel):
    try:
        plain, on_flip, chains_parallel = _numba_kernels()
    except ImportError as error:
        return {"skipped": f"numba not importable: {error}"}
    h, J = _model(num_neurons)
    h32, J32 = h.astype(np.float32), J.astype(np.float32)
    rng = np.random.default_rng(0)
    out = {}
    uniforms = rng.random((num_sweeps, num_neurons)).astype(np.float32)
    spins = rng.choice([-1.0, 1.0], num_neurons).astype(np.float32)
    plain(spins.copy(), h32, J32, uniforms[:2])
    wall, cpu = _timed(lambda: plain(spins.copy(), h32, J32, uniforms))
    updates = num_neurons * num_sweeps
    out["single_chain_plain"] = {"updates_per_s": updates / wall,
                                 "updates_per_cpu_s": updates / cpu}
    fields = (h32 + J32 @ spins).astype(np.float32)
    on_flip(spins.copy(), fields.copy(), J32, uniforms[:2])
    wall, cpu = _timed(lambda: on_flip(spins.copy(), fields.copy(), J32, uniforms))
    out["single_chain_fields_on_flip"] = {"updates_per_s": updates / wall,
                                          "updates_per_cpu_s": updates / cpu}
    many = rng.choice([-1.0, 1.0], (num_chains_parallel, num_neurons)).astype(np.float32)
    many_fields = (h32 + many @ J32).astype(np.float32)
    chains_parallel(many.copy(), many_fields.copy(), J32, 1, 0)
    wall, cpu = _timed(lambda: chains_parallel(many.copy(), many_fields.copy(), J32,
                                               sweeps_parallel, 1), repeats=2)
    updates = num_neurons * num_chains_parallel * sweeps_parallel
    out["many_chains_parallel_on_flip"] = {
        "updates_per_s": updates / wall, "updates_per_cpu_s": updates / cpu,
        "num_chains": num_chains_parallel, "threads": int(_numba_threads()),
    }
    return out


def _numba_threads():
    import numba

    return numba.get_num_threads()


# ------------------------------------------------------------------------ ConIII


def bench_coniii(num_neurons, num_samples, sweeps_per_sample=2):
    """ConIII's ``Metropolis`` sampler (one chain, systematic single-spin Metropolis; its C++
    Boost extension when built, else pure Python), loaded by ``benchmarks/_coniii.py``."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import _coniii

    coniii = _coniii.load()
    if coniii is None:
        return {"skipped": _coniii.skipped_reason()}
    from coniii.samplers import Metropolis
    from coniii.utils import define_ising_helper_functions

    h, J = _model(num_neurons)
    # ConIII's Ising convention (coniii.utils.define_ising_helper_functions): ±1 spins,
    # E = −Σ h_i s_i − Σ_{i<j} J_ij s_i s_j, theta = concat(h, J_ij for i<j in row-major
    # order = np.triu_indices) — the same as ours; only the packing differs.
    theta = np.concatenate([h, J[np.triu_indices(num_neurons, 1)]])
    calc_e = define_ising_helper_functions()[0]
    sampler = Metropolis(num_neurons, theta, calc_e=calc_e, rng=np.random.RandomState(0),
                         iprint=False)
    # n_iters counts single-spin proposals between samples: sweeps_per_sample sweeps
    n_iters = sweeps_per_sample * num_neurons
    boost = sampler.generate_sample.__name__.endswith("boost")
    if boost:
        def run():
            sampler.generate_sample(num_samples, n_iters=n_iters, burn_in=1,
                                    systematic_iter=True)
    else:
        # ConIII 3.0.1's generate_sample_py fails under NumPy 2 (``self.E[i] = E`` with E of
        # shape (1,)); time its own loop instead: the same sample_metropolis calls per flip
        state = sampler.random_sample(1)
        energy = calc_e(state, theta)
        samples = np.zeros((num_samples, num_neurons), dtype=int)

        def run():
            nonlocal energy
            for k in range(num_samples):
                for j in range(n_iters):
                    energy += sampler.sample_metropolis(state[0], energy, flip_site=j % num_neurons)
                samples[k] = state[0]

    run()
    wall, cpu = _timed(run, repeats=1)
    updates = num_samples * n_iters
    return {"updates_per_s": updates / wall, "updates_per_cpu_s": updates / cpu,
            "wall_s": wall, "num_updates": updates, "version": coniii.__version__,
            "note": f"Metropolis, one chain, {sweeps_per_sample} systematic sweeps per sample, "
                    + ("C++/Boost extension" if boost else "pure Python (no Boost extension)")}


# ------------------------------------------------------------------------ driver


def main(quick=False, only=None):
    import jax

    jax.config.update("jax_enable_x64", True)
    from bayes_ising._io import write_json

    sizes = {50: (4096, 40 if quick else 200), 92: (4096, 20 if quick else 100),
             200: (2048, 10 if quick else 50)}
    if only:
        sizes = {n: sizes[n] for n in only}
    results = {"machine": {"cpu_count": os.cpu_count(), "load_average": os.getloadavg(),
                           "jax": jax.__version__, "python": sys.version.split()[0]},
               "sizes": {}}
    rows = []
    for num_neurons, (num_chains, num_sweeps) in sizes.items():
        entry = {
            "jax_float32": bench_jax(num_neurons, num_chains, num_sweeps),
            "jax_float64": bench_jax(num_neurons, num_chains, max(2, num_sweeps // 2), "float64"),
            "jax_sample_driver": bench_jax_sample(num_neurons, num_chains, num_sweeps),
            "bounds": bench_bounds(num_neurons, num_chains, num_sweeps),
            "jax_models_thermo_shape": bench_models(num_neurons, 64, 4, 27,
                                                    20 if quick else 100),
            "numpy_single_chain": bench_numpy(num_neurons, 5 if quick else 20),
            "numba": bench_numba(num_neurons, 2000 if quick else 20000, 1024,
                                 20 if quick else 100),
            "coniii_metropolis": bench_coniii(num_neurons, 50 if quick else 200),
        }
        reference = entry["jax_float32"]["updates_per_s"]
        for name, value in _flatten(entry):
            rows.append((num_neurons, name, value.get("updates_per_s"),
                         value.get("updates_per_cpu_s"), value.get("skipped")))
            if "updates_per_s" in value:
                value["jax_float32_speedup"] = reference / value["updates_per_s"]
        results["sizes"][str(num_neurons)] = entry
    print(f"{'N':>4} {'method':38s} {'M upd/s':>10} {'M upd/CPU-s':>12} {'JAX f32 ×':>10}")
    for num_neurons, name, rate, cpu_rate, skipped in rows:
        if skipped:
            print(f"{num_neurons:>4} {name:38s} skipped: {skipped}")
            continue
        reference = results["sizes"][str(num_neurons)]["jax_float32"]["updates_per_s"]
        print(f"{num_neurons:>4} {name:38s} {rate / 1e6:10.1f} {cpu_rate / 1e6:12.1f} "
              f"{reference / rate:10.2f}")
    for num_neurons in sizes:
        entry = results["sizes"][str(num_neurons)]
        bound = entry["bounds"]["field_gemm_only"]["updates_per_s"]
        entry["ratio_to_field_gemm_bound"] = {
            name: entry[name]["updates_per_s"] / bound
            for name in ("jax_float32", "jax_models_thermo_shape")}
        print(f"N = {num_neurons}: JAX f32 {entry['jax_float32']['updates_per_s'] / 1e6:.1f} M/s,"
              f" thermo shape {entry['jax_models_thermo_shape']['updates_per_s'] / 1e6:.1f} M/s"
              f" = {entry['ratio_to_field_gemm_bound']['jax_float32']:.2f} and "
              f"{entry['ratio_to_field_gemm_bound']['jax_models_thermo_shape']:.2f} of the "
              f"field-GEMM bound ({bound / 1e6:.1f} M/s, same run); goal 300 M/s")
    results["load_average_after"] = os.getloadavg()
    if "50" in results["sizes"]:
        results["target"] = {
            "updates_per_s_N50": 3e8,
            "reached": results["sizes"]["50"]["jax_float32"]["updates_per_s"] >= 3e8}
    path = OUTPUT if not only else OUTPUT.with_name(
        "gibbs_N" + "_".join(str(n) for n in sizes) + ".json")
    write_json(path, results, force=True)
    return results


def _flatten(entry):
    for name, value in entry.items():
        if "updates_per_s" in value or "skipped" in value:
            yield name, value
        else:
            for sub, subvalue in value.items():
                yield f"{name}/{sub}", subvalue


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short runs (smoke test)")
    parser.add_argument("--sizes", default=None, help="comma-separated N among 50,92,200 "
                        "(default all)")
    arguments = parser.parse_args()
    main(quick=arguments.quick,
         only=[int(v) for v in arguments.sizes.split(",")] if arguments.sizes else None)
