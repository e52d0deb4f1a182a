"""``bayes-ising demo``: the whole analysis on the embedded E/I sleep dataset, ending in a report.

    bayes-ising demo [--out DIR] [--force] [--fast | --full] [--seed S] [--quiet]

Fits per state and per population, diagnostics with flagged neurons beside the study's
cosine/5% verdicts, predictive checks, I2/IN, E-only vs E+I, the state comparison, C(T) with
bands and the shuffled control, and MLE vs Bayes; prints where the report is
(``DIR/report.html``). See :mod:`bayes_ising.demo`.
"""

__all__ = ["register", "run"]


def register(subparsers, name):
    parser = subparsers.add_parser(
        name, help="run the whole analysis on the embedded E/I sleep dataset -> report.html",
        description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="demo_output", metavar="DIR",
                        help="output folder (default demo_output)")
    parser.add_argument("--force", action="store_true",
                        help="overwrite the results of an earlier demo in DIR")
    parser.add_argument("--fast", action="store_true",
                        help="a small subset with few draws (seconds; for trying things out, "
                             "not for conclusions); also BAYES_ISING_FAST=1")
    parser.add_argument("--full", action="store_true",
                        help="all 40 neurons in the main fit (pseudolikelihood; much slower)")
    parser.add_argument("--seed", type=int, default=0, help="seed of every random step")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.set_defaults(func=run)
    return parser


def run(args):
    from .. import demo

    fast = True if args.fast else None
    result = demo.run_demo(args.out, fast=fast, full=args.full, force=args.force,
                           seed=args.seed, progress=not args.quiet)
    print(f"report: {result['report'].resolve()}")
    return 0
