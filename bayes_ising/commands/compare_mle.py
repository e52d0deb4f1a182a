"""``bayes-ising compare-mle``: the study's MLE + adaptive Metropolis against the NUTS posterior.

    bayes-ising compare-mle POSTERIOR.nc DATA --out CMP.json [--method auto|exact|pseudo]
        [--l2 L] [--draws D] [--restarts K] [--seed S] [--diagnostics DIAG.json] [--force]

Writes per-parameter intervals of both methods, their agreement, the flagged-neuron verdicts
(restart cosine similarity, the 5% firing rule, the diagnostics) and the time each took; the
keys are documented in :mod:`bayes_ising.comparison`.
"""

import sys

__all__ = ["register", "run"]


def register(subparsers, name):
    from ..cli import add_data_selection_flags

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
    parser.add_argument("--draws", type=int, default=4000,
                        help="adaptive-Metropolis draws (default 4000)")
    parser.add_argument("--restarts", type=int, default=5,
                        help="optimiser restarts for the cosine-similarity verdict "
                             "(default 5; 0 skips it)")
    parser.add_argument("--interval", type=float, default=0.9,
                        help="central interval probability (default 0.9)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the walk and restarts")
    parser.add_argument("--diagnostics", metavar="DIAG.json", default=None,
                        help="reuse the output of `bayes-ising diagnose` (else computed)")
    add_data_selection_flags(parser, posterior=True)
    parser.add_argument("--out", required=True, metavar="CMP.json", help="output JSON")
    parser.add_argument("--force", action="store_true", help="overwrite --out")
    parser.set_defaults(func=run)
    return parser


def run(args):
    import jax

    from .. import __version__, comparison, report
    from .._io import check_writable, write_json
    from ..cli import load_selected_data
    from ..errors import BayesIsingError
    from .report import load_posterior_file

    if not 0 < args.interval < 1:
        raise BayesIsingError(f"--interval must be in (0, 1), got {args.interval}")
    if args.draws < 10:
        raise BayesIsingError(f"--draws must be at least 10, got {args.draws}")
    if args.restarts < 0 or args.restarts == 1:
        raise BayesIsingError(f"--restarts must be 0 (skip) or at least 2, got {args.restarts}")
    if args.l2 < 0:
        raise BayesIsingError(f"--l2 must be >= 0, got {args.l2}")
    check_writable(args.out, args.force)
    tree = load_posterior_file(args.posterior)
    data = load_selected_data(args, tree)
    diagnosis = report.load_json(args.diagnostics) if args.diagnostics else None
    result = comparison.compare_mle(
        jax.random.key(args.seed), tree, data, method=args.method, l2=args.l2,
        num_draws=args.draws, num_restarts=args.restarts, interval=args.interval,
        diagnosis=diagnosis)
    result["posterior"] = str(args.posterior)
    result["data"] = str(args.data)
    result["seed"] = args.seed
    result["bayes_ising_version"] = __version__
    write_json(args.out, result, force=args.force)
    for message in result["mle"]["warnings"]:
        print(f"bayes-ising compare-mle: warning: {message}", file=sys.stderr)
    summary = result["summary"]
    timing = result["timing"]
    nuts = (f"NUTS {timing['nuts_s']:.1f} s" if timing["nuts_s"] is not None
            else "NUTS time not recorded")
    print(f"MLE ({result['mle']['method']}) + adaptive Metropolis: {timing['mle_total_s']:.1f} s;"
          f" {nuts}. Median interval-width ratio (MLE/NUTS): h "
          f"{_num(summary.get('h_median_width_ratio'))}, J "
          f"{_num(summary.get('J_median_width_ratio'))}; MLE inside the NUTS interval: h "
          f"{_num(summary.get('h_fraction_mle_in_bayes_interval'))}, J "
          f"{_num(summary.get('J_fraction_mle_in_bayes_interval'))} -> {args.out}")
    return 0


def _num(value):
    return "–" if value is None else f"{value:.2f}"
