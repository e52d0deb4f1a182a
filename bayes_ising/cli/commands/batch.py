"""``bayes-ising batch PLAN.toml``: run many fits on Dask and write a summary table.

Exit codes: 0 when every fit has a valid result, 1 when some fits failed (their messages are
printed and written to ``failures.json``; a rerun retries them), 2 for a bad plan.
"""

import sys

__all__ = ["register", "run"]


def register(subparsers, name):
    parser = subparsers.add_parser(
        name, help="run the fits of a plan on Dask (resumable; summary as CSV/Parquet)",
        description=(
            "Run every fit listed in PLAN.toml (datasets x states x populations x subsamples x "
            "models) as Dask tasks, one result file per fit named by a hash of its inputs. A "
            "rerun skips the fits whose results exist and are valid, so an interrupted run "
            "resumes. See docs/scaling.md and plans/example_plan.toml."))
    parser.add_argument("plan", metavar="PLAN.toml", help="the batch plan (TOML)")
    parser.add_argument("--scheduler", default=None, metavar="ADDRESS",
                        help="address of a running Dask scheduler (tcp://host:8786), e.g. "
                             "from dask-jobqueue on SLURM; default: a LocalCluster")
    parser.add_argument("--workers", type=int, default=None, metavar="K",
                        help="worker processes of the LocalCluster (default: min(CPU cores, "
                             "fits to run))")
    parser.add_argument("--out", default=None, metavar="DIR",
                        help="output folder (default: the plan's `out`, else "
                             "<plan name>_results next to the plan)")
    parser.add_argument("--force", action="store_true",
                        help="redo every fit, even those with valid results")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(func=run)
    return parser


def run(args):
    from bayes_ising.errors import BayesIsingError
    from bayes_ising.pipeline.batch import format_summary, run_batch

    if args.workers is not None and args.workers < 1:
        raise BayesIsingError(f"--workers must be >= 1, got {args.workers}")
    if args.workers is not None and args.scheduler is not None:
        raise BayesIsingError("--workers sizes the LocalCluster; with --scheduler the "
                              "cluster's own workers are used")
    result = run_batch(args.plan, args.out, scheduler=args.scheduler, num_workers=args.workers,
                       force=args.force, progress=not args.no_progress)
    print(format_summary(result.summary))
    print(f"summary: {result.out_dir / 'summary.csv'} (and summary.parquet)")
    if result.num_failed:
        print(f"bayes-ising: {result.num_failed} of {len(result.summary)} fits failed; "
              f"messages in {result.out_dir / 'failures.json'} (a rerun retries them)",
              file=sys.stderr)
        return 1
    return 0
