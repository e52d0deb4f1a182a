"""NUTS speed: our sampler (MAP start, posterior Hessian as fixed metric, step-size-only warmup)
against plain NUTS (diagonal mass adapted from scratch, random start), in the same run.

1. Exact likelihood, retina15.mat (N = 15, 120 parameters), 4 chains × 1000 draws: wall time
   including compilation (first fit in a fresh process), CPU time, max R-hat, min bulk ESS,
   divergences, leapfrog steps per draw, min-ESS/s; the baseline is plain NumPyro
   ``MCMC(NUTS)`` on the same model (diagonal mass adapted from scratch, default init and
   chain method), 4 × 300 draws after 300 warmup (``--plain-draws D`` for D × D); the fair
   comparison is min-ESS/s (``min_ess_per_s_ratio``).
   The same fit with float32 sampling follows (compiled afresh: a different program).
2. Pseudolikelihood, N = 50, T = 40,000 synthetic E/I raster (Gibbs samples of planted
   parameters), 4 chains × 500 draws with ``--model pseudo_large`` (float32 sampling,
   quarter-period HMC in the whitened space, 150 warmup), then the same with NUTS
   (target_accept 0.9, max tree depth 4, 75 warmup; skip with ``--no-pseudo-nuts``): the
   same figures, and whether one value+grad is bound by its matrix products (time of
   value+grad ÷ time of the two GEMMs it contains), in float64 and float32.

    python benchmarks/bench_nuts.py [--quick]

On a shared machine wall times include other people's load: the CPU seconds are printed
beside them, and the load average at the start and the end.
"""

import os
import resource
import sys
import time
from pathlib import Path

if "jax" not in sys.modules:  # an edge: 2 host devices (the project's reference machine)
    os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=2")
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

jax.config.update("jax_enable_x64", True)

from bayes_ising._io import write_json  # noqa: E402
from bayes_ising.core import stats  # noqa: E402
from bayes_ising.fit import bayes  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RETINA = ROOT.parent / "shared" / "data" / "retina15.mat"
OUTPUT = Path(__file__).resolve().parent / "output"


def _cpu_seconds():
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _timed_fit(spins, spec, **kwargs):
    wall, cpu = time.perf_counter(), _cpu_seconds()
    tree = bayes.fit_posterior(0, spins, spec, progress=False, **kwargs)
    wall, cpu = time.perf_counter() - wall, _cpu_seconds() - cpu
    summary = bayes.convergence_summary(tree)
    return {
        "wall_s": wall,
        "cpu_s": cpu,
        "preparation_s": float(tree.attrs["preparation_time_s"]),
        "sampling_s": float(tree.attrs["sampling_time_s"]),
        "max_rhat": summary["max_rhat"],
        "min_ess_bulk": summary["min_ess_bulk"],
        "min_ess_tail": summary["min_ess_tail"],
        "num_divergent": summary["num_divergent"],
        "leapfrog_steps_per_draw": summary["mean_leapfrog_steps"],
        "max_tree_depth": (int(np.asarray(tree["sample_stats"]["tree_depth"]).max())
                           if "tree_depth" in tree["sample_stats"] else None),  # HMC: none
        "min_ess_per_s": summary["min_ess_bulk"] / wall,
        "min_ess_per_cpu_s": summary["min_ess_bulk"] / cpu,
        "num_chains": summary["num_chains"],
        "num_draws": summary["num_draws"],
    }


def _retina_spins():
    from bayes_ising import data

    return np.asarray(data.load(str(RETINA)).spins, dtype=np.int8)


def _plain_numpyro(spins, spec, num_chains, num_draws, num_warmup):
    """Plain NumPyro ``MCMC(NUTS)`` on the same model: diagonal mass adapted from scratch,
    NumPyro's default init (uniform(-2, 2) in the unconstrained space) and chain method."""
    import warnings

    from numpyro.infer import MCMC, NUTS

    s = spins.astype(np.float64)
    moments = bayes._Sufficient(float(s.shape[0]), s.mean(axis=0), s.T @ s / s.shape[0])
    wall, cpu = time.perf_counter(), _cpu_seconds()
    mcmc = MCMC(NUTS(bayes.exact_model, target_accept_prob=spec.target_accept),
                num_warmup=num_warmup, num_samples=num_draws, num_chains=num_chains,
                progress_bar=False)
    with warnings.catch_warnings():  # "not enough devices ... drawn sequentially"
        warnings.simplefilter("ignore")
        mcmc.run(jax.random.PRNGKey(0), moments, spins.shape[1], spec,
                 extra_fields=("diverging", "num_steps"))
    samples = mcmc.get_samples(group_by_chain=True)
    wall, cpu = time.perf_counter() - wall, _cpu_seconds() - cpu
    import arviz_stats
    import xarray as xr

    ds = xr.Dataset({k: (("chain", "draw", f"{k}_dim"), np.asarray(samples[k]))
                     for k in ("h", "J")})
    rhat = arviz_stats.rhat(ds)
    bulk = arviz_stats.ess(ds, method="bulk")
    tail = arviz_stats.ess(ds, method="tail")
    extra = mcmc.get_extra_fields()
    ess_min = float(min(np.min(bulk[v]) for v in bulk.data_vars))
    steps = np.asarray(extra["num_steps"])
    return {
        "wall_s": wall,
        "cpu_s": cpu,
        "max_rhat": float(max(np.max(rhat[v]) for v in rhat.data_vars)),
        "min_ess_bulk": ess_min,
        "min_ess_tail": float(min(np.min(tail[v]) for v in tail.data_vars)),
        "num_divergent": int(np.asarray(extra["diverging"]).sum()),
        "leapfrog_steps_per_draw": float(steps.mean()),
        "max_tree_depth": int(np.ceil(np.log2(steps.max() + 1))),
        "min_ess_per_s": ess_min / wall,
        "min_ess_per_cpu_s": ess_min / cpu,
        "num_chains": num_chains,
        "num_draws": num_draws,
        "num_warmup": num_warmup,
    }


def exact_retina(quick=False, plain_draws=None):
    spins = _retina_spins()
    plain_draws = plain_draws or (100 if quick else 300)
    spec = bayes.default_model_spec()
    ours = _timed_fit(spins, spec, likelihood="exact", num_chains=4,
                      num_draws=300 if quick else 1000, num_warmup=200)
    ours32 = _timed_fit(spins, spec.replace(float32=True), likelihood="exact", num_chains=4,
                        num_draws=300 if quick else 1000, num_warmup=200)
    plain = _plain_numpyro(spins, spec, num_chains=4, num_draws=plain_draws,
                           num_warmup=plain_draws)
    ratio = ours["min_ess_per_s"] / plain["min_ess_per_s"]
    return {
        "ours": ours,
        "ours_float32": ours32,
        "plain_nuts": plain,
        "min_ess_per_s_ratio": ratio,
        "min_ess_per_cpu_s_ratio": ours["min_ess_per_cpu_s"] / plain["min_ess_per_cpu_s"],
        "targets_met": {
            "rhat<=1.01": ours["max_rhat"] <= 1.01,
            "min_bulk_ess>=1000": ours["min_ess_bulk"] >= 1000,
            "no_divergences": ours["num_divergent"] == 0,
            "wall<=20s": ours["wall_s"] <= 20,
            "ratio>=10": ratio >= 10,
        },
    }


def _synthetic_n50(num_bins):
    from bayes_ising.core import gibbs
    from bayes_ising.data import synthetic

    truth = synthetic.ei_ising_parameters(jax.random.PRNGKey(50), 40, 10)
    # blocks of 4000 draws (1000 chains × 4 draws, 500 burn-in sweeps, 5 sweeps apart): one
    # call with num_samples = 40,000 was far slower than ten of 4000 (reported to gibbs.py)
    blocks = [gibbs.sample_spins(key, jnp.asarray(truth.h), jnp.asarray(truth.J), 4000,
                                 num_chains=1000, burn_in=500, thin=5)
              for key in jax.random.split(jax.random.PRNGKey(51), -(-num_bins // 4000))]
    spins = np.concatenate([np.asarray(b, np.int8) for b in blocks])[:num_bins]
    return spins, np.asarray(truth.cell_types)


def _gemm_bound(spins, spec):
    """Time of one value+grad of the pseudo-posterior potential ÷ time of the two GEMMs it
    contains (forward J·sᵀ and backward G·s over all pattern blocks), float64 and float32."""
    patterns, counts = stats.unique_patterns(spins)
    data = bayes._data_arrays("pseudo", None, patterns, counts)
    num_neurons = spins.shape[1]
    phi = jnp.zeros(num_neurons + num_neurons * (num_neurons - 1) // 2)
    block_index = jnp.zeros(phi.shape[0] - num_neurons, jnp.int32)

    def best(fn, *args, repeat=20):
        jax.block_until_ready(fn(*args))
        times = []
        for _ in range(repeat):
            start = time.perf_counter()
            jax.block_until_ready(fn(*args))
            times.append(time.perf_counter() - start)
        return min(times)

    result = {"unique_patterns": int(patterns.shape[0]), "padded_rows": int(data.counts.shape[0])}
    for name, dtype, float32 in (("float64", jnp.float64, False), ("float32", jnp.float32, True)):
        config = bayes._Config("pseudo", spec.replace(float32=float32), num_neurons, 1)
        potential = bayes._functions(config).potential
        value_and_grad = jax.jit(jax.value_and_grad(lambda p, f=potential: f(p, data,
                                                                           block_index)))
        s_t = data.patterns_t.astype(dtype)
        s = data.patterns.astype(dtype).reshape(s_t.shape[0], s_t.shape[2], num_neurons)
        J = jnp.eye(num_neurons, dtype=dtype) * 0.1

        @jax.jit
        def gemms(s, s_t, J):  # the forward and backward products of value+grad
            fields_t = J @ s_t  # (K, N, block)
            return jnp.einsum("knb,kbm->nm", fields_t, s)

        t_vg, t_gemm = best(value_and_grad, phi), best(gemms, s, s_t, J)
        result[name] = {"value_and_grad_ms": 1e3 * t_vg, "two_gemms_ms": 1e3 * t_gemm,
                        "value_and_grad_over_gemms": t_vg / t_gemm}
    return result


def pseudo_n50(quick=False, with_nuts=True):
    num_bins = 10_000 if quick else 40_000
    start = time.perf_counter()
    spins, cell_types = _synthetic_n50(num_bins)
    data_s = time.perf_counter() - start
    spec = bayes.load_model_spec("pseudo_large")
    draws = 200 if quick else 500
    ours = _timed_fit(spins, spec, likelihood="pseudo", adjust="none", num_chains=4,
                      num_draws=draws)
    nuts_spec = spec.replace(algorithm="nuts", target_accept=0.9, max_tree_depth=4,
                             num_warmup=75)
    nuts = _timed_fit(spins, nuts_spec, likelihood="pseudo", adjust="none", num_chains=4,
                      num_draws=draws) if with_nuts else None
    return {
        "num_bins": num_bins,
        "data_generation_s": data_s,
        "model": "pseudo_large (quarter-period HMC)",
        "ours": ours,
        "nuts": nuts,
        "gemm_bound": _gemm_bound(spins, spec),
        "targets_met": {
            "rhat<=1.01": ours["max_rhat"] <= 1.01,
            "wall<300s": ours["wall_s"] < 300,
        },
    }


def _print(result):
    print(f"load average at start {result['load_start']}, end {result['load_end']}")
    e = result["exact_retina15"]
    rows = [("exact N=15, ours", e["ours"]), ("exact N=15, ours float32", e["ours_float32"]),
            ("exact N=15, plain NUTS", e["plain_nuts"])]
    if "pseudo_n50" in result:
        p = result["pseudo_n50"]
        rows += [("pseudo N=50, pseudo_large HMC", p["ours"])]
        if p.get("nuts"):
            rows += [("pseudo N=50, NUTS 0.9/depth 4", p["nuts"])]
    print(f"{'run':26s} {'chains x draws':>14s} {'wall s':>7s} {'cpu s':>7s} {'Rhat':>7s} "
          f"{'minESS':>7s} {'div':>4s} {'steps':>6s} {'ESS/s':>7s} {'ESS/cpu-s':>9s}")
    for name, r in rows:
        print(f"{name:26s} {r['num_chains']:>6d} x {r['num_draws']:<5d} {r['wall_s']:7.1f} "
              f"{r['cpu_s']:7.1f} {r['max_rhat']:7.4f} {r['min_ess_bulk']:7.0f} "
              f"{r['num_divergent']:4d} {r['leapfrog_steps_per_draw']:6.1f} "
              f"{r['min_ess_per_s']:7.1f} {r['min_ess_per_cpu_s']:9.1f}")
    print(f"exact N=15: min-ESS/s ratio ours/plain = {e['min_ess_per_s_ratio']:.1f}x "
          f"(per CPU-second {e['min_ess_per_cpu_s_ratio']:.1f}x); targets {e['targets_met']}")
    if "pseudo_n50" in result:
        g = result["pseudo_n50"]["gemm_bound"]
        for name in ("float64", "float32"):
            print(f"pseudo N=50 {name}: value+grad {g[name]['value_and_grad_ms']:.2f} ms vs its "
                  f"two GEMMs {g[name]['two_gemms_ms']:.2f} ms "
                  f"(ratio {g[name]['value_and_grad_over_gemms']:.2f})")
        print(f"pseudo N=50 targets {result['pseudo_n50']['targets_met']}")


def main(quick=False, argv=None):
    if argv is None:
        argv = sys.argv[1:]
    quick = quick or "--quick" in argv
    result = {"load_start": os.getloadavg(), "quick": quick,
              "devices": jax.local_device_count()}
    plain_draws = None
    if "--plain-draws" in argv:  # draws (= warmup) per chain of the plain-NUTS baseline
        plain_draws = int(argv[argv.index("--plain-draws") + 1])
    result["exact_retina15"] = exact_retina(quick, plain_draws)
    if "--exact-only" not in argv:
        result["pseudo_n50"] = pseudo_n50(quick, with_nuts="--no-pseudo-nuts" not in argv)
    result["load_end"] = os.getloadavg()
    result["min_ess_per_s_ratio"] = result["exact_retina15"]["min_ess_per_s_ratio"]
    OUTPUT.mkdir(exist_ok=True)
    write_json(OUTPUT / "nuts.json", result, force=True)
    _print(result)
    return result


if __name__ == "__main__":
    main()
