"""``bayes-ising demo``: the study (``bayes-ising study``) on the embedded E/I sleep dataset.

    bayes-ising demo [--out DIR] [--force] [--fast] [--scheduler S] [--seed S] [--quiet]

Every state × population (E+I with all 40 neurons, E, I), every analysis of the study, and
the report; a rerun resumes where an interrupted one stopped. ``--fast``: a small subset with
few draws (a smoke test). See :mod:`bayes_ising.pipeline.demo`.
"""

__all__ = ["register", "run"]


def register(subparsers, name):
    parser = subparsers.add_parser(
        name, help="the study on the embedded E/I sleep dataset -> DIR/study.json, report",
        description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="demo_output", metavar="DIR",
                        help="the study folder (default demo_output)")
    parser.add_argument("--force", action="store_true",
                        help="replace the results of another study in DIR")
    parser.add_argument("--fast", action="store_true",
                        help="a small subset with few draws (for trying things out, not for "
                             "conclusions); also BAYES_ISING_FAST=1")
    parser.add_argument("--full", action="store_true", help=argparse_suppress())
    parser.add_argument("--scheduler", default=None,
                        help='"sync", "local" or a Dask scheduler address (see study)')
    parser.add_argument("--seed", type=int, default=0, help="seed of every random step")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.set_defaults(func=run)
    return parser


def argparse_suppress():
    import argparse

    return argparse.SUPPRESS  # --full: the default is already all 40 neurons


def run(args):
    from bayes_ising.cli.commands.study import print_summary
    from bayes_ising.pipeline import demo

    if args.full and not args.fast:
        import sys

        print("bayes-ising demo: --full is deprecated: the demo fits all 40 neurons by "
              "default", file=sys.stderr)
    fast = True if args.fast else None
    result = demo.run_demo(args.out, fast=fast, full=args.full, force=args.force,
                           seed=args.seed, progress=not args.quiet, scheduler=args.scheduler)
    print_summary(result)
    return 0
