"""``bayes-ising compare-mle``: the study's MLE + adaptive Metropolis against the NUTS posterior.

    bayes-ising compare-mle POSTERIOR.nc DATA --out CMP.json [--method auto|exact|pseudo]
        [--l2 L] [--walk-draws D | --max-walk-draws D] [--num-walks C] [--restarts K]
        [--seed S] [--diagnostics DIAG.json] [--force]

Runs the study's adaptive-Metropolis walk the careful way (several walks from overdispersed
starts, until R-hat <= 1.01 and bulk/tail ESS >= 400 for every parameter, or a budget, then
labelled unconverged) and writes per-parameter intervals of both methods, their agreement by
parameter group (busy / rare neurons, pairs that never co-fire; also the 0/1-convention
fields), the walks' diagnostics, each side's cost per effective draw, the flagged-neuron
verdicts (restart cosine similarity, the 5% firing rule, the diagnostics) and a verdict
sentence; the keys are documented in :mod:`bayes_ising.analysis.comparison`.
"""

import argparse
import sys

__all__ = ["register", "run"]


def register(subparsers, name):
    from bayes_ising.cli.commands._common import add_convention_flag, add_data_selection_flags
    from bayes_ising.core.convergence import MAX_RHAT, MIN_ESS

    parser = subparsers.add_parser(
        name, help="compare MLE + adaptive-Metropolis intervals with the NUTS posterior",
        description=__doc__.split("\n\n")[0])
    parser.add_argument("posterior", metavar="POSTERIOR.nc",
                        help="posterior written by `bayes-ising fit`")
    parser.add_argument("data", metavar="DATA", help="the data file of the fit")
    parser.add_argument("--method", choices=["auto", "exact", "pseudo"], default="auto",
                        help="MLE: exact moment matching or pseudolikelihood (auto: the "
                             "posterior's likelihood)")
    parser.add_argument("--l2", type=float, default=0.0,
                        help="L2 penalty of the MLE per bin (default 0: plain MLE)")
    parser.add_argument("--walk-draws", type=int, default=None,
                        help="a fixed number of adaptive-Metropolis draws per walk (default: "
                             f"run the walks until R-hat <= {MAX_RHAT:g} and bulk/tail ESS >= "
                             f"{MIN_ESS:g} for every parameter, at most --max-walk-draws)")
    parser.add_argument("--draws", type=int, default=None, dest="old_draws",
                        help=argparse.SUPPRESS)
    parser.add_argument("--max-walk-draws", type=int, default=100_000,
                        help="budget: draws per walk at most (default 100000); a walk stopped "
                             "there is labelled unconverged")
    parser.add_argument("--max-walk-seconds", type=float, default=300.0,
                        help="budget: stop the walks after about this many seconds (checked "
                             "after each doubling; default 300; 0: no time budget)")
    parser.add_argument("--num-walks", type=int, default=4,
                        help="adaptive-Metropolis walks from overdispersed starts (default 4)")
    parser.add_argument("--restarts", type=int, default=5,
                        help="optimiser restarts for the cosine-similarity verdict "
                             "(default 5; 0 skips it)")
    parser.add_argument("--interval", type=float, default=0.9,
                        help="central interval probability (default 0.9)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the walk and restarts")
    parser.add_argument("--diagnostics", metavar="DIAG.json", default=None,
                        help="reuse the output of `bayes-ising diagnose` (else computed)")
    add_data_selection_flags(parser, posterior=True)
    add_convention_flag(parser)
    parser.add_argument("--out", required=True, metavar="CMP.json", help="output JSON")
    parser.add_argument("--force", action="store_true", help="overwrite --out")
    parser.set_defaults(func=run)
    return parser


def run(args):
    import jax

    from bayes_ising import __version__, report
    from bayes_ising._io import check_writable, write_json
    from bayes_ising.analysis import comparison
    from bayes_ising.cli.commands._common import load_selected_data
    from bayes_ising.errors import BayesIsingError
    from bayes_ising.fit.bayes import load_posterior

    if not 0 < args.interval < 1:
        raise BayesIsingError(f"--interval must be in (0, 1), got {args.interval}")
    if args.old_draws is not None:
        print("bayes-ising compare-mle: --draws is deprecated; use --walk-draws",
              file=sys.stderr)
        args.walk_draws = args.walk_draws or args.old_draws
    for flag in ("walk_draws", "max_walk_draws"):
        value = getattr(args, flag)
        if value is not None and value < 10:
            raise BayesIsingError(f"--{flag.replace('_', '-')} must be at least 10, got {value}")
    if args.num_walks < 2:
        raise BayesIsingError(f"--num-walks must be at least 2 (R-hat), got {args.num_walks}")
    if args.restarts < 0 or args.restarts == 1:
        raise BayesIsingError(f"--restarts must be 0 (skip) or at least 2, got {args.restarts}")
    if args.l2 < 0:
        raise BayesIsingError(f"--l2 must be >= 0, got {args.l2}")
    check_writable(args.out, args.force)
    tree = load_posterior(args.posterior, family=None)
    if tree.attrs.get("family", "pairwise") != "pairwise":
        raise BayesIsingError(
            f"compare-mle compares the study's pairwise MLE + adaptive Metropolis with a "
            f"pairwise posterior; {args.posterior} is a {tree.attrs['family']} posterior (the "
            "study's method has no V(K)): compare families with `bayes-ising compare-families`")
    data = load_selected_data(args, tree)
    diagnosis = report.load_json(args.diagnostics) if args.diagnostics else None
    result = comparison.compare_mle(
        jax.random.key(args.seed), tree, data, method=args.method, l2=args.l2,
        walk_draws=args.walk_draws, max_walk_draws=args.max_walk_draws,
        max_walk_seconds=args.max_walk_seconds or None,
        num_chains=args.num_walks, num_restarts=args.restarts, interval=args.interval,
        diagnosis=diagnosis)
    if args.convention == "01":
        result["parameters_01"] = comparison.lattice_gas_columns(result["parameters"],
                                                                 len(result["neurons"]))
    result["posterior"] = str(args.posterior)
    result["data"] = str(args.data)
    result["seed"] = args.seed
    result["bayes_ising_version"] = __version__
    write_json(args.out, result, force=args.force)
    for message in result["mle"]["warnings"]:
        print(f"bayes-ising compare-mle: warning: {message}", file=sys.stderr)
    walk, timing = result["adaptive_metropolis"], result["timing"]
    nuts = (f"NUTS {timing['nuts_s']:.1f} s" if timing["nuts_s"] is not None
            else "NUTS time not recorded")
    print(f"MLE ({result['mle']['method']}) + adaptive Metropolis: {timing['mle_total_s']:.1f} s;"
          f" {nuts}")
    print(f"walks: {walk['label']} ({walk['num_chains']} x {walk['num_draws']} draws, max "
          f"R-hat {walk['max_rhat']:.3f}, min ESS bulk {walk['min_ess_bulk']:.0f} / tail "
          f"{walk['min_ess_tail']:.0f}, {walk['seconds']:.1f} s)")
    print(result["verdict"] + f" -> {args.out}")
    return 0
