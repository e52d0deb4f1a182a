"""The study's scale (issue 15): 74 E + 18 I neurons, three states × 50,000 bins of 50 ms.

1. ``data``: the study-shaped dataset from the package's generator,
   ``synthetic.ei_network(74 E, 18 I)`` (seed 2019), three states (wake, light, deep) of
   50,000 bins each.
2. ``gradient``: the cost of one pseudolikelihood value+gradient (and of the gradient alone,
   split HMC's inner steps) inside the sampler for the deep state's E+I fit (N = 92, 4,278
   parameters, 4 chains vmapped, float32 sweep and whitening factor), against
   the two-GEMM floor (the forward and backward matrix products alone, float32, same shapes),
   measured in the same run.
3. ``fits``: every state × population posterior the study needs (E+I, E, I), through
   ``bayes_ising.study`` when it exists (``--via-study``), else stage by stage: N > 22 with
   ``models/pseudo_large.toml`` and the stop rule (chunks of 250 draws until R-hat ≤ 1.01 and
   bulk and tail ESS ≥ 400, cap 2,000), N ≤ 22 exact; warm starts (the E+I fit of the
   previous state for the next, the E+I fit's parameters for E-only) and one padded pattern
   count per N (one compiled program for the three states).
4. ``thermo``: C(T)/N with posterior bands (50 draws, 20 temperatures) per fit.

Per stage and per fit: wall and CPU seconds, gradient evaluations (sampler integrator steps of
all chains + MAP search), max R-hat, min bulk and tail ESS, ESS per second, and the verdict.
Table on stdout, JSON in benchmarks/output/study.json.

    python benchmarks/bench_study.py [--quick] [--stages data,gradient,fits,thermo]
        [--states deep] [--populations E+I] [--via-study] [--output PATH]

``--quick``: 8 E + 4 I, 3 × 4,000 bins, short chunks: a smoke test of the script in about
a minute. The load average is printed at the start and the end (shared machines).
"""

import argparse
import json
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
from bayes_ising.core import ising, stats  # noqa: E402
from bayes_ising.core import pseudolikelihood as pl  # noqa: E402
from bayes_ising.data import synthetic  # noqa: E402
from bayes_ising.fit import bayes  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
OUTPUT = Path(__file__).resolve().parent / "output"
STATES = ("wake", "light", "deep")
POPULATIONS = ("E+I", "E", "I")
FULL = {"num_excitatory": 74, "num_inhibitory": 18, "bins_per_state": 50_000,
        "num_draws": 250, "max_draws": 2000, "thermo_draws": 50, "temperatures": 20}
QUICK = {"num_excitatory": 8, "num_inhibitory": 4, "bins_per_state": 4_000,
         "num_draws": 100, "max_draws": 400, "thermo_draws": 8, "temperatures": 8}


def _cpu_seconds():
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _load():
    return [round(x, 2) for x in os.getloadavg()]


def _timed(fn):
    wall, cpu = time.perf_counter(), _cpu_seconds()
    value = fn()
    return value, {"wall_s": time.perf_counter() - wall, "cpu_s": _cpu_seconds() - cpu}


def make_data(sizes, seed=2019):
    """The study-shaped dataset: SpikeData of three states (one epoch per state)."""
    duration = 3 * sizes["bins_per_state"] * 0.05
    return synthetic.ei_network(jax.random.PRNGKey(seed), sizes["num_excitatory"],
                                sizes["num_inhibitory"], duration=duration)


def _best(fn, *args, repeat=5):
    jax.block_until_ready(fn(*args))
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - start)
    return min(times)


def gradient_cost(spins, spec, num_chains=4):
    """ms per gradient of the whitened pseudo-posterior potential as the sampler evaluates
    it (num_chains vmapped, float32 sweep, the whitening factor in the spec's precision):
    value+gradient (NumPyro's HMC and NUTS every step, split HMC at a trajectory's end) and
    gradient alone (split HMC's other steps), each ÷ the ms of its two GEMMs alone (float32,
    same shapes)."""
    num_neurons = spins.shape[1]
    patterns, counts = stats.unique_patterns(spins)
    data = pl.prepare(patterns, counts)
    size = num_neurons + ising.num_pairs(num_neurons)
    config = bayes._Config("pseudo", spec, num_neurons, 1)
    potential = bayes._functions(config).potential
    block_index = jnp.zeros(size - num_neurons, jnp.int32)
    rng = np.random.default_rng(0)
    # a dense factor like the sampler's (L Lᵀ = H⁻¹ is dense), rounded as the spec says
    factor = np.tril(rng.normal(0, 1e-4, (size, size))) + np.eye(size) * 0.01
    chol = jnp.asarray(factor, jnp.float32 if spec.float32 else jnp.float64)
    centre = jnp.asarray(np.r_[np.zeros(size - num_neurons), -np.ones(num_neurons)])

    def whitened(zz, centre, chol, data):
        return bayes._whitened_potential(potential, zz, data, block_index, centre, chol)

    value_and_grad = jax.jit(jax.vmap(jax.value_and_grad(whitened), (0, None, None, None)))
    grad = jax.jit(jax.vmap(jax.grad(whitened), (0, None, None, None)))

    s_t = data.patterns_t
    s = data.patterns.reshape(s_t.shape[0], s_t.shape[2], num_neurons)
    J = jnp.asarray(rng.normal(0, 0.01, (num_chains * num_neurons, num_neurons)), jnp.float32)

    @jax.jit
    def gemms(s, s_t, J):  # per block: H^T = J s_b^T for all chains, then G += H^T s_b
        def block(G, blocks):
            s_b, s_t_b = blocks
            return G + (J @ s_t_b) @ s_b, None

        return jax.lax.scan(block, jnp.zeros(J.shape, J.dtype), (s, s_t))[0]

    z = jnp.asarray(rng.normal(size=(num_chains, size)))
    t_vg = _best(value_and_grad, z, centre, chol, data)
    t_g = _best(grad, z, centre, chol, data)
    t_gemm = _best(gemms, s, s_t, J)
    return {"num_neurons": num_neurons, "num_chains": num_chains,
            "unique_patterns": int(patterns.shape[0]), "padded_rows": int(s_t.shape[0]
                                                                          * s_t.shape[2]),
            "factor_dtype": str(chol.dtype),
            "value_and_grad_ms": 1e3 * t_vg, "grad_ms": 1e3 * t_g, "two_gemms_ms": 1e3 * t_gemm,
            "ratio": t_vg / t_gemm, "grad_ratio": t_g / t_gemm,
            "gemm_gflops": 4 * num_chains * s_t.size * num_neurons / t_gemm / 1e9}


def _population(data, population):
    return data if population == "E+I" else data.select(population=population)


def _fit_record(tree, cost):
    """The table row of one fit: cost, evidence (R-hat, ESS), stop rule and validity."""
    summary = bayes.convergence_summary(tree)
    attrs = tree.attrs
    steps = int(np.asarray(tree["sample_stats"]["n_steps"]).sum())
    check = json.loads(attrs["model_check"]) if "model_check" in attrs else None
    min_ess = min(summary["min_ess_bulk"], summary["min_ess_tail"])
    return {**cost, "num_neurons": int(tree["posterior"].sizes["neuron"]),
            "likelihood": attrs["likelihood"], "num_chains": summary["num_chains"],
            "num_draws": summary["num_draws"], "stopped": attrs.get("stopped"),
            "preparation_s": float(attrs["preparation_time_s"]),
            "sampling_s": float(attrs["sampling_time_s"]),
            "gradient_evaluations": steps + int(attrs.get("map_gradient_evaluations", 0)),
            "max_rhat": summary["max_rhat"], "min_ess_bulk": summary["min_ess_bulk"],
            "min_ess_tail": summary["min_ess_tail"], "num_divergent": summary["num_divergent"],
            "min_ess_per_s": min_ess / cost["wall_s"],
            "converged": summary["converged"],
            "model_check": None if check is None else check.get("verdict")}


def run_fits(states, sizes, populations, seed=0):
    """Every state × population posterior, stage by stage, with warm starts and one padded
    pattern count per N. Returns (rows, trees)."""
    large = bayes.load_model_spec("pseudo_large")
    large = large.replace(num_draws=sizes["num_draws"], max_draws=sizes["max_draws"])
    small = bayes.default_model_spec().replace(num_draws=sizes["num_draws"],
                                               max_draws=sizes["max_draws"])
    subsets = {(s, p): _population(states[s], p) for s in states for p in populations}
    rows = {}  # N → the largest number of unique patterns over the states
    for (_, p), sub in subsets.items():
        rows[p] = max(rows.get(p, 0), stats.unique_patterns(sub.spins)[0].shape[0])
    trees, records, previous = {}, [], {}
    for (state, population), sub in subsets.items():
        n = sub.num_neurons
        spec = small if n <= ising.MAX_EXACT_NEURONS else large
        init = trees.get((state, "E+I")) if population != "E+I" else previous.get(population)
        tree, cost = _timed(lambda sub=sub, spec=spec, init=init, population=population:
                            bayes.fit_posterior(seed, sub, spec, init=init,
                                                pad_patterns=rows[population],
                                                progress=False))
        trees[(state, population)] = tree
        previous[population] = tree
        record = {"state": state, "population": population,
                  "warm_start": init is not None, **_fit_record(tree, cost)}
        records.append(record)
        print(_row(record), flush=True)
    return records, trees


def run_thermo(trees, sizes, seed=0):
    """C(T)/N with posterior bands per fit (thermo.posterior_thermodynamics)."""
    from bayes_ising.analysis import thermo

    temperatures = np.linspace(0.6, 2.5, sizes["temperatures"])
    records = []
    for (state, population), tree in trees.items():
        try:
            _, cost = _timed(lambda tree=tree: thermo.posterior_thermodynamics(
                jax.random.PRNGKey(seed), tree, temperatures, num_draws=sizes["thermo_draws"]))
            records.append({"state": state, "population": population, **cost})
        except Exception as err:  # report, do not hide: the row says what failed
            records.append({"state": state, "population": population,
                            "error": f"{type(err).__name__}: {err}"})
        print(f"thermo {state:6} {population:4} " + (
            f"{records[-1]['wall_s']:8.1f} s wall {records[-1]['cpu_s']:8.1f} s CPU"
            if "wall_s" in records[-1] else records[-1]["error"]), flush=True)
    return records


HEADER = (f"{'state':6} {'pop':4} {'N':>3} {'lik':6} {'wall s':>7} {'CPU s':>7} "
          f"{'prep s':>6} {'grads':>8} {'draws':>5} {'R-hat':>6} {'bulk':>6} {'tail':>6} "
          f"{'div':>3} {'ESS/s':>6} stopped / verdict")


def _row(r):
    return (f"{r['state']:6} {r['population']:4} {r['num_neurons']:>3} {r['likelihood']:6} "
            f"{r['wall_s']:7.1f} {r['cpu_s']:7.1f} {r['preparation_s']:6.1f} "
            f"{r['gradient_evaluations']:8d} {r['num_draws']:5d} {r['max_rhat']:6.4f} "
            f"{r['min_ess_bulk']:6.0f} {r['min_ess_tail']:6.0f} {r['num_divergent']:3d} "
            f"{r['min_ess_per_s']:6.2f} {r['stopped']} / "
            f"{'converged' if r['converged'] else 'NOT converged'}"
            + (f", model check: {r['model_check']}" if r["model_check"] else ""))


def run_via_study(data, out_dir, states, populations):
    """The whole study through :func:`bayes_ising.pipeline.plan.study` with its defaults:
    wall and CPU time overall, and the seconds of each stage summed by kind."""
    from bayes_ising.pipeline.plan import study

    result, cost = _timed(lambda: study(data, out_dir, force=True, progress=False,
                                        states=tuple(states), populations=tuple(populations)))
    summary = json.loads((Path(out_dir) / "study.json").read_text())
    by_kind = {}
    for stage in summary["stages"]:
        by_kind[stage["kind"]] = by_kind.get(stage["kind"], 0.0) + (stage["seconds"] or 0.0)
    failed = [s["name"] for s in summary["stages"] if s["status"] == "failed"]
    print("study: " + ", ".join(f"{k} {v:.0f} s" for k, v in by_kind.items())
          + (f"; not done: {', '.join(failed)}" if failed else ""), flush=True)
    return {**cost, "seconds_by_kind": by_kind, "not_done": failed}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--stages", default="data,gradient,fits,thermo")
    parser.add_argument("--states", default=",".join(STATES))
    parser.add_argument("--populations", default=",".join(POPULATIONS))
    parser.add_argument("--via-study", action="store_true")
    parser.add_argument("--output", default=str(OUTPUT / "study.json"))
    args = parser.parse_args(argv)
    sizes = QUICK if args.quick else FULL
    stages = args.stages.split(",")
    out = {"quick": args.quick, "sizes": sizes, "load_start": _load(),
           "devices": [str(d) for d in jax.devices()], "stages": {}}
    print(f"bench_study ({'quick' if args.quick else 'full'}); load average {out['load_start']}")
    full, cost = _timed(lambda: make_data(sizes))
    states = {s: full.select(state=s) for s in args.states.split(",")}
    out["stages"]["data"] = {**cost, "bins": {s: d.num_bins for s, d in states.items()}}
    print(f"data: {cost['wall_s']:.1f} s wall, {cost['cpu_s']:.1f} s CPU")
    if "gradient" in stages:
        spec = bayes.load_model_spec("pseudo_large")
        deep = states.get("deep", next(iter(states.values())))
        out["gradient"], cost = _timed(lambda: gradient_cost(deep.spins, spec))
        g = out["gradient"]
        out["stages"]["gradient"] = cost
        print(f"gradient (N = {g['num_neurons']}, {g['num_chains']} chains, "
              f"{g['unique_patterns']} patterns, {g['factor_dtype']} factor): value+grad "
              f"{g['value_and_grad_ms']:.1f} ms, grad {g['grad_ms']:.1f} ms, two GEMMs "
              f"{g['two_gemms_ms']:.1f} ms ({g['gemm_gflops']:.0f} GFLOP/s), ratios "
              f"{g['ratio']:.2f} and {g['grad_ratio']:.2f}")
    trees = {}
    if "fits" in stages:
        if args.via_study:
            out["stages"]["study"] = run_via_study(full, Path(args.output).parent / "study",
                                                   states, args.populations.split(","))
        else:
            print(HEADER)
            (out["fits"], trees), cost = _timed(
                lambda: run_fits(states, sizes, args.populations.split(",")))
            out["stages"]["fits"] = cost
    if "thermo" in stages and trees:
        out["thermo"], out["stages"]["thermo"] = _timed(lambda: run_thermo(trees, sizes))
    out["load_end"] = _load()
    print("stages: " + ", ".join(f"{k} {v['wall_s']:.1f} s wall / {v['cpu_s']:.1f} s CPU"
                                 for k, v in out["stages"].items())
          + f"; load average {out['load_end']}")
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    write_json(args.output, out, force=True)
    print(f"written {args.output}")


if __name__ == "__main__":
    main()
