"""``bayes-ising thermo``: heat capacity, energy and entropy versus temperature, with bands.

    bayes-ising thermo POSTERIOR.nc [--temperatures 0.5:3.0:21] [--posterior-draws K]
        [--shuffled-control DATA] [--method auto|exact|gibbs] [--seed S] [--no-progress]
        --out THERMO.json

Writes a JSON file with "temperature", "energy_per_neuron", "heat_capacity_per_neuron",
"entropy_per_neuron" (each {"median", "lower", "upper", "interval"} over posterior draws),
"peak" (T* and C_max/N with intervals), "method", the autocorrelation times of the Gibbs runs,
the criticality caveat and, with ``--shuffled-control``, the same curves for models fitted to
the data with each neuron's bins shuffled independently, and "summary" (T_peak and
C_max_per_neuron with intervals, the control's, the Gibbs checks). With Gibbs (N > 20), all
posterior draws and the control run in one vectorised sampler whose length is chosen from the
measured autocorrelation times (``--num-sweeps auto``); a progress bar goes to stderr.
A K-pairwise posterior (``fit --model k_pairwise``) is run as the K-pairwise model (V(K)
included; exact, or its Gibbs sampler on a fixed schedule: ``--num-sweeps`` kept sweeps, 2000
for auto, with the energies' R-hat reported); ``summary.family`` says which.
"""

from __future__ import annotations

import sys

__all__ = ["register", "run"]


def register(subparsers, name):
    from bayes_ising.cli.commands._common import add_data_selection_flags
    from bayes_ising.core.convergence import MAX_RHAT, MIN_ESS

    parser = subparsers.add_parser(
        name,
        help="heat capacity C(T)/N, energy and entropy versus temperature, with posterior bands",
        description=__doc__.split("\n\n")[0],
    )
    parser.add_argument("posterior", metavar="POSTERIOR.nc",
                        help="posterior written by `bayes-ising fit`")
    from bayes_ising.core.limits import (
        AUTO_EXACT_THERMO_NEURONS,
        DEFAULT_POSTERIOR_DRAWS,
        DEFAULT_TEMPERATURES,
    )

    parser.add_argument("--temperatures", default=DEFAULT_TEMPERATURES,
                        help="START:STOP:COUNT (inclusive, evenly spaced) or T1,T2,... "
                             f"(default {DEFAULT_TEMPERATURES})")
    parser.add_argument("--posterior-draws", type=int, default=DEFAULT_POSTERIOR_DRAWS,
                        metavar="K",
                        help=f"posterior draws to evaluate (default {DEFAULT_POSTERIOR_DRAWS}: "
                             "the 90%% band's ends to about ±0.26 posterior sd; all if fewer)")
    parser.add_argument("--method", choices=["auto", "exact", "gibbs"], default="auto",
                        help="exact enumeration or Gibbs sampling (auto: exact for N <= "
                             f"{AUTO_EXACT_THERMO_NEURONS})")
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
    gibbs.add_argument("--num-chains", type=int, default=4,
                       help="chains per draw and temperature (default 4; R-hat needs >= 2)")
    gibbs.add_argument("--num-sweeps", default="auto",
                       help="kept sweeps per chain, or 'auto' (default): extended until R-hat "
                            f"<= {MAX_RHAT:g}, energy ESS >= {MIN_ESS:g}, >= 50 autocorrelation "
                            "times and the "
                            "MC error of C_max/N <= --max-mcse-fraction of its posterior sd")
    gibbs.add_argument("--max-sweeps", type=int, default=8000,
                       help="cap of --num-sweeps auto (default 8000)")
    gibbs.add_argument("--max-mcse-fraction", type=float, default=0.5,
                       help="MC error of C_max/N allowed, as a fraction of its posterior sd "
                            "(default 0.5: the band widens by at most 12%%)")
    gibbs.add_argument("--burn-in", type=int, default=200)
    gibbs.add_argument("--allow-short-run", action="store_true",
                       help="warn instead of refusing when the run is shorter than 50 energy "
                            "autocorrelation times")
    add_data_selection_flags(parser, posterior=True)
    parser.add_argument("--out", required=True, metavar="THERMO.json", help="output JSON")
    parser.add_argument("--force", action="store_true", help="overwrite --out")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.set_defaults(func=run)
    return parser


def _subsample(args, tree, temperatures, key, options):
    from bayes_ising.analysis import thermo
    from bayes_ising.errors import BayesIsingError

    try:
        sizes = sorted({int(v) for v in args.subsample_sizes.split(",")})
    except ValueError:
        raise BayesIsingError(
            f"--subsample-sizes {args.subsample_sizes!r}: expected integers like 5,10,15"
        ) from None
    return thermo.posterior_subsample_peaks(
        key, tree, sizes, temperatures, num_subsets=args.num_subsets, interval=args.interval,
        method=args.method, **options)


def _sampler_options(args, num_neurons):
    """Gibbs options from the flags ({} when the exact path will run)."""
    from bayes_ising.analysis import thermo
    from bayes_ising.errors import BayesIsingError

    if args.method == "exact" or (args.method == "auto"
                                  and num_neurons <= thermo.AUTO_EXACT_THERMO_NEURONS):
        return {}
    num_sweeps = args.num_sweeps
    if num_sweeps != "auto":
        try:
            num_sweeps = int(num_sweeps)
        except ValueError:
            raise BayesIsingError(
                f"--num-sweeps must be an integer or 'auto', got {num_sweeps!r}") from None
    return dict(num_chains=args.num_chains, num_sweeps=num_sweeps, burn_in=args.burn_in,
                max_sweeps=args.max_sweeps, max_mcse_fraction=args.max_mcse_fraction,
                on_short_run="warn" if args.allow_short_run else "raise")


def run(args):
    import jax

    from bayes_ising import __version__
    from bayes_ising._io import check_writable, write_json
    from bayes_ising.analysis import thermo
    from bayes_ising.errors import BayesIsingError
    from bayes_ising.fit import posterior
    from bayes_ising.fit.bayes import load_posterior

    temperatures = thermo.parse_temperatures(args.temperatures)
    if not 0 < args.interval < 1:
        raise BayesIsingError(f"--interval must be in (0, 1), got {args.interval}")
    check_writable(args.out, args.force)
    tree = load_posterior(args.posterior, family=None)  # K-pairwise: V(K) included
    key = jax.random.key(args.seed)
    posterior_key, subsample_key = jax.random.split(key)
    options = _sampler_options(args, posterior.neuron_ids(tree).size)
    control_spins = None
    if args.shuffled_control:
        from bayes_ising.cli.commands._common import load_selected_data

        args.data = args.shuffled_control
        control_spins = posterior.align(tree, load_selected_data(args, tree)).spins
    result = thermo.fit_thermodynamics(
        posterior_key, tree, control_spins, temperatures=temperatures,
        num_posterior_draws=args.posterior_draws, num_shuffles=args.num_shuffles,
        method=args.method, interval=args.interval, progress=not args.no_progress, **options)
    out = result.to_dict(interval=args.interval)
    out["posterior"] = str(args.posterior)
    out["seed"] = args.seed
    out["bayes_ising_version"] = __version__
    if args.shuffled_control:
        out["shuffled_control"]["data"] = str(args.shuffled_control)
    if args.subsample_sizes:
        options.pop("max_mcse_fraction", None)
        out["subsample"] = _subsample(args, tree, temperatures, subsample_key, options)
    for message in out["warnings"]:
        print(f"bayes-ising thermo: warning: {message}", file=sys.stderr)
    write_json(args.out, out, force=args.force)
    peak = out["peak"]
    print(
        f"C(T)/N peak: T* = {peak['temperature']['median']:.3g} "
        f"[{peak['temperature']['lower']:.3g}, {peak['temperature']['upper']:.3g}], "
        f"C_max/N = {peak['heat_capacity_per_neuron']['median']:.3g} "
        f"({result.posterior.method}, {result.posterior.num_draws} draws, "
        f"{result.summary['wall_s']:.0f} s) -> {args.out}"
    )
    return 0
