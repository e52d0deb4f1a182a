"""Simulation-based calibration of the exact posterior and the (adjusted) pseudo-posteriors.

For each of K synthetic datasets: draw (h, J) from the prior of the fit, sample T bins from
P(s | h, J) exactly (multinomial over the 2^N enumerated states), fit the exact posterior and
the pseudo-posterior (one NUTS run each; the adjusted pseudo-posteriors are transforms of the
same draws), and record whether each true parameter lies in the central 50/80/90/95%
posterior interval. A calibrated method covers each parameter with the nominal frequency.

Errors: "binomial" is sqrt(c(1−c)/n) over the n = K·P (dataset, parameter) pairs as if they
were independent; "cluster" is the standard error of the per-dataset coverages over the K
datasets (parameters of one dataset share its data, so this is the honest one).

Run: ``.venv/bin/python benchmarks/calibration.py [--datasets K] [--quick]``; writes
benchmarks/output/calibration.json and calibration.md.
"""

import argparse
import json
import os
import sys
import time
from pathlib import Path

if "jax" not in sys.modules:  # an edge: choose devices and float64 before JAX starts
    os.environ.setdefault("XLA_FLAGS", f"--xla_force_host_platform_device_count="
                                       f"{min(os.cpu_count() or 1, 8)}")
import jax  # noqa: E402
import numpy as np  # noqa: E402

jax.config.update("jax_enable_x64", True)

from bayes_ising.cli.commands._common import add_deprecated_alias  # noqa: E402
from bayes_ising.core import ising  # noqa: E402
from bayes_ising.fit import bayes  # noqa: E402
from bayes_ising.fit.model_spec import ADJUSTMENTS  # noqa: E402

OUTPUT = Path(__file__).resolve().parent / "output"
LEVELS = (0.5, 0.8, 0.9, 0.95)

#: prior of the calibration study (and of its fits): neural-like sparse firing and
#: couplings of the size seen in retina/cortex; (h, J) are drawn from it
CALIBRATION_SPEC = bayes.default_model_spec().replace(
    name="calibration", description="SBC prior: h ~ N(-1, 0.5), J ~ N(0, 0.5)",
    h_mean=-1.0, h_scale=0.5, j_scale=0.5)

#: the same prior with a large-N sampler: quarter-period trajectories in the Laplace-whitened
#: space with a float32 pseudolikelihood sweep; "split_hmc" (and its warmup) is the one of
#: models/pseudo_large.toml, "hmc" the leapfrog one it replaced (150 warmup)
_LARGE = bayes.load_model_spec("pseudo_large")
LARGE_N_SAMPLER_SPECS = {
    "split_hmc": CALIBRATION_SPEC.replace(
        name="calibration-split-hmc", algorithm="split_hmc", float32=True,
        trajectory_length=_LARGE.trajectory_length, target_accept=_LARGE.target_accept,
        num_warmup=_LARGE.num_warmup),
    "hmc": CALIBRATION_SPEC.replace(
        name="calibration-hmc", algorithm="hmc", trajectory_length=float(np.pi / 2),
        float32=True, num_warmup=150),
}


def simulate(seed, spec, num_sets, num_neurons, num_bins):
    """Truths (K, P) drawn from ``spec``'s Normal prior and exact multinomial pattern counts."""
    rng = np.random.default_rng(seed)
    states = ising.all_states(num_neurons)
    num_pair = ising.num_pairs(num_neurons)
    truths, datasets = [], []
    for _ in range(num_sets):
        h = rng.normal(spec.h_mean, spec.h_scale, num_neurons)
        j = rng.normal(0.0, spec.j_scale, num_pair)
        theta = np.concatenate([h, j])
        hh, JJ = ising.unpack(jax.numpy.asarray(theta), num_neurons)
        log_p = np.asarray(ising.log_probability(states, hh, JJ))
        p = np.exp(log_p - log_p.max())
        counts = rng.multinomial(num_bins, p / p.sum())
        keep = counts > 0
        truths.append(theta)
        datasets.append((states[keep], counts[keep]))
    return np.stack(truths), datasets


def coverage(draws, truths, levels=LEVELS, num_neurons=None):
    """Central-interval coverage of ``truths`` (K, P) by ``draws`` (K, D, P).

    Returns {level: {"coverage", "binomial_se", "cluster_se", "coverage_h", "coverage_J"}}.
    """
    table = {}
    for level in levels:
        low = np.quantile(draws, (1 - level) / 2, axis=1)
        high = np.quantile(draws, (1 + level) / 2, axis=1)
        inside = (truths >= low) & (truths <= high)  # (K, P)
        c = float(inside.mean())
        per_set = inside.mean(axis=1)
        row = {
            "coverage": c,
            "binomial_se": float(np.sqrt(c * (1 - c) / inside.size)),
            "cluster_se": float(per_set.std(ddof=1) / np.sqrt(per_set.size)),
        }
        if num_neurons is not None:
            row["coverage_h"] = float(inside[:, :num_neurons].mean())
            row["coverage_J"] = float(inside[:, num_neurons:].mean())
        table[str(level)] = row
    return table


def run(num_sets=200, num_neurons=6, num_bins=2000, num_chains=2, num_draws=200,
        num_warmup=100, seed=0, spec=CALIBRATION_SPEC, progress=True):
    """Simulate, fit and tabulate; returns a JSON-able dict."""
    start = time.perf_counter()
    truths, datasets = simulate(seed, spec, num_sets, num_neurons, num_bins)
    fits = bayes._fit_many(seed, datasets, spec, adjusts=ADJUSTMENTS, num_chains=num_chains,
                           num_draws=num_draws, num_warmup=num_warmup, progress=progress)
    methods = ["exact"] + [f"pseudo/{a}" for a in ADJUSTMENTS]
    table = {m: coverage(fits[m], truths, num_neurons=num_neurons) for m in methods}
    return {
        "settings": {"num_datasets": num_sets, "num_neurons": num_neurons,
                     "num_bins": num_bins, "num_chains": num_chains, "num_draws": num_draws,
                     "num_warmup": num_warmup, "seed": seed,
                     "prior": spec.to_dict()["prior"]},
        "coverage": table,
        "divergences": {"exact": int(fits["exact/diverging"].sum()),
                        "pseudo": int(fits["pseudo/diverging"].sum())},
        "wall_time_s": time.perf_counter() - start,
    }


def markdown(result):
    """The coverage table as Markdown (method × nominal level, cluster SE in parentheses)."""
    s = result["settings"]
    lines = [
        f"K = {s['num_datasets']} datasets, N = {s['num_neurons']}, T = {s['num_bins']} bins, "
        f"{s['num_chains']} chains × {s['num_draws']} draws per fit, prior h ~ "
        f"N({s['prior']['h']['mean']}, {s['prior']['h']['scale']}), J ~ "
        f"N(0, {s['prior']['J']['scale']}); seed {s['seed']}; "
        f"{result['wall_time_s']:.0f} s.",
        "",
        "| method | " + " | ".join(f"{int(100 * float(x))}%" for x in LEVELS)
        + " | 90%: h | 90%: J |",
        "|---|" + "---|" * (len(LEVELS) + 2),
    ]
    for method, rows in result["coverage"].items():
        cells = [f"{100 * r['coverage']:.1f} ± {100 * r['binomial_se']:.1f} "
                 f"({100 * r['cluster_se']:.1f})" for r in rows.values()]
        r90 = rows["0.9"]
        cells += [f"{100 * r90['coverage_h']:.1f}", f"{100 * r90['coverage_J']:.1f}"]
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    lines += ["", "Entries: empirical coverage in % ± binomial SE (cluster SE over datasets)."]
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datasets", type=int, default=300)
    parser.add_argument("--neurons", type=int, default=6)
    parser.add_argument("--bins", type=int, default=2000)
    parser.add_argument("--num-draws", type=int, default=200)
    parser.add_argument("--num-warmup", type=int, default=None,
                        help="default 100 (nuts) or the sampler spec's")
    add_deprecated_alias(parser, "--draws", "--num-draws", "num_draws", type=int)
    add_deprecated_alias(parser, "--warmup", "--num-warmup", "num_warmup", type=int)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="40 datasets (a smoke run)")
    parser.add_argument("--sampler", choices=("nuts", *LARGE_N_SAMPLER_SPECS), default="nuts",
                        help="split_hmc: the large-N sampler of models/pseudo_large.toml (its "
                             "warmup unless --num-warmup is given); hmc: the leapfrog one "
                             "before it")
    args = parser.parse_args(argv)
    num_sets = 40 if args.quick else args.datasets
    spec = LARGE_N_SAMPLER_SPECS.get(args.sampler, CALIBRATION_SPEC)
    num_warmup = args.num_warmup if args.num_warmup is not None else (
        spec.num_warmup if args.sampler != "nuts" else 100)
    result = run(num_sets, args.neurons, args.bins, num_draws=args.num_draws,
                 num_warmup=num_warmup, seed=args.seed, spec=spec)
    result["settings"]["sampler"] = {"algorithm": spec.algorithm, "float32": spec.float32}
    OUTPUT.mkdir(exist_ok=True)
    stem = "calibration" + ("" if args.sampler == "nuts" else f"_{args.sampler}")
    (OUTPUT / f"{stem}.json").write_text(json.dumps(result, indent=2) + "\n")
    text = markdown(result)
    (OUTPUT / f"{stem}.md").write_text(text + "\n")
    print(text)
    return result


if __name__ == "__main__":
    main()
