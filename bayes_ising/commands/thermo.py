"""``bayes-ising thermo``: heat capacity, energy and entropy versus temperature, with bands.

    bayes-ising thermo POSTERIOR.nc --temperatures 0.5:3.0:26 [--posterior-draws K]
        [--shuffled-control DATA] [--method auto|exact|gibbs] [--seed S] --out THERMO.json

Writes a JSON file with "temperature", "energy_per_neuron", "heat_capacity_per_neuron",
"entropy_per_neuron" (each {"median", "lower", "upper", "interval"} over posterior draws),
"peak" (T* and C_max/N with intervals), "method", the autocorrelation times of the Gibbs runs,
the criticality caveat and, with ``--shuffled-control``, the same curves for models fitted to
the data with each neuron's bins shuffled independently.
"""

from __future__ import annotations

import sys

__all__ = ["register", "run"]


def register(subparsers, name):
    from ..cli import add_data_selection_flags

    parser = subparsers.add_parser(
        name,
        help="heat capacity C(T)/N, energy and entropy versus temperature, with posterior bands",
        description=__doc__.split("\n\n")[0],
    )
    parser.add_argument("posterior", metavar="POSTERIOR.nc",
                        help="posterior written by `bayes-ising fit`")
    parser.add_argument("--temperatures", default="0.5:3.0:26",
                        help="START:STOP:COUNT (inclusive, evenly spaced) or T1,T2,... "
                             "(default 0.5:3.0:26)")
    parser.add_argument("--posterior-draws", type=int, default=100, metavar="K",
                        help="posterior draws to evaluate (default 100; all if fewer)")
    parser.add_argument("--method", choices=["auto", "exact", "gibbs"], default="auto",
                        help="exact enumeration or Gibbs sampling (auto: exact for N <= 20)")
    parser.add_argument("--seed", type=int, default=0, help="seed of draws, shuffles, sampler")
    parser.add_argument("--interval", type=float, default=0.9,
                        help="central probability of the bands (default 0.9)")
    parser.add_argument("--shuffled-control", metavar="DATA", default=None,
                        help="data file of the fit: also report models fitted to it with each "
                             "neuron's bins shuffled independently")
    parser.add_argument("--num-shuffles", type=int, default=1,
                        help="shuffles for the control (band over shuffles; default 1)")
    parser.add_argument("--subsample-sizes", default=None, metavar="N1,N2,...",
                        help="also report C_max/N and T* of sub-models on random subsets of "
                             "this many neurons (posterior-mean h, J restricted to the subset)")
    parser.add_argument("--num-subsets", type=int, default=10,
                        help="random subsets per size for --subsample-sizes (default 10)")
    gibbs = parser.add_argument_group("Gibbs sampler (--method gibbs)")
    gibbs.add_argument("--num-chains", type=int, default=32)
    gibbs.add_argument("--num-sweeps", type=int, default=2000,
                       help="kept sweeps per chain and temperature (default 2000)")
    gibbs.add_argument("--burn-in", type=int, default=500)
    gibbs.add_argument("--allow-short-run", action="store_true",
                       help="warn instead of refusing when the run is shorter than 50 energy "
                            "autocorrelation times")
    add_data_selection_flags(parser, posterior=True)
    parser.add_argument("--out", required=True, metavar="THERMO.json", help="output JSON")
    parser.add_argument("--force", action="store_true", help="overwrite --out")
    parser.set_defaults(func=run)
    return parser


def _load_posterior(path):
    try:
        from ..bayes import load_posterior
    except ImportError:  # bayes.py not available: read the netCDF DataTree directly
        import xarray as xr

        return xr.open_datatree(path)
    return load_posterior(path)


def _subsample(args, tree, temperatures, key, options):
    import numpy as np

    from .. import thermo
    from ..errors import BayesIsingError

    try:
        sizes = sorted({int(v) for v in args.subsample_sizes.split(",")})
    except ValueError:
        raise BayesIsingError(
            f"--subsample-sizes {args.subsample_sizes!r}: expected integers like 5,10,15"
        ) from None
    if args.num_subsets < 1:
        raise BayesIsingError(f"--num-subsets must be at least 1, got {args.num_subsets}")
    h, J = thermo.posterior_parameters(key, tree)
    num_neurons = h.shape[1]
    if sizes[0] < 1 or sizes[-1] > num_neurons:
        raise BayesIsingError(f"--subsample-sizes must lie in 1..{num_neurons}, got {sizes}")
    results = thermo.peak_versus_subsample(
        key, h.mean(axis=0), J.mean(axis=0), sizes, temperatures,
        num_subsets=args.num_subsets, method=args.method, **options,
    )
    peaks = {name: {} for name in ("temperature", "heat_capacity_per_neuron")}
    for size, result in results.items():
        for name, values in (("temperature", result.peak_temperature),
                             ("heat_capacity_per_neuron", result.peak_heat_capacity_per_neuron)):
            lower, median, upper = np.quantile(
                values, [(1 - args.interval) / 2, 0.5, (1 + args.interval) / 2])
            peaks[name][str(size)] = {"median": median, "lower": lower, "upper": upper}
    return {"sizes": sizes, "num_subsets": args.num_subsets, "interval": args.interval,
            "parameters": "posterior mean h and J restricted to each subset (not refits)",
            "peak": peaks}


def run(args):
    import jax

    from .. import __version__, thermo
    from .._io import check_writable, write_json
    from ..errors import BayesIsingError

    temperatures = thermo.parse_temperatures(args.temperatures)
    if not 0 < args.interval < 1:
        raise BayesIsingError(f"--interval must be in (0, 1), got {args.interval}")
    check_writable(args.out, args.force)
    tree = _load_posterior(args.posterior)
    key = jax.random.key(args.seed)
    posterior_key, control_key, subsample_key = jax.random.split(key, 3)
    options = {}
    if args.method != "exact":
        options = dict(num_chains=args.num_chains, num_sweeps=args.num_sweeps,
                       burn_in=args.burn_in,
                       on_short_run="warn" if args.allow_short_run else "raise")
    if args.method == "auto":
        # options only apply when auto picks Gibbs
        neurons = tree["posterior"]["h"].sizes["neuron"]
        if neurons <= thermo.AUTO_EXACT_MAX_NEURONS:
            options = {}
    result = thermo.posterior_thermodynamics(
        posterior_key, tree, temperatures, num_draws=args.posterior_draws, method=args.method,
        **options,
    )
    out = result.to_dict(interval=args.interval)
    out["posterior"] = str(args.posterior)
    out["seed"] = args.seed
    out["bayes_ising_version"] = __version__
    if args.shuffled_control:
        from ..cli import load_selected_data

        args.data = args.shuffled_control
        from .. import posterior

        spike_data = posterior.align(tree, load_selected_data(args, tree))
        control, info = thermo.shuffled_control(
            control_key, spike_data.spins, temperatures, num_shuffles=args.num_shuffles,
            method=args.method, **options,
        )
        control_dict = control.to_dict(interval=args.interval)
        control_dict.pop("caveat", None)
        control_dict.update(info)
        control_dict["data"] = str(args.shuffled_control)
        out["shuffled_control"] = control_dict
    if args.subsample_sizes:
        out["subsample"] = _subsample(args, tree, temperatures, subsample_key, options)
    for message in out["warnings"]:
        print(f"bayes-ising thermo: warning: {message}", file=sys.stderr)
    write_json(args.out, out, force=args.force)
    peak = out["peak"]
    print(
        f"C(T)/N peak: T* = {peak['temperature']['median']:.3g} "
        f"[{peak['temperature']['lower']:.3g}, {peak['temperature']['upper']:.3g}], "
        f"C_max/N = {peak['heat_capacity_per_neuron']['median']:.3g} "
        f"({result.method}, {result.num_draws} draws) -> {args.out}"
    )
    return 0
