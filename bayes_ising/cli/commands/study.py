"""``bayes-ising study DATA --out DIR``: the study's whole analysis of one recording.

    bayes-ising study DATA --out DIR [--populations E+I,E,I] [--states wake,deep]
        [--min-rate R] [--num-chains C --num-draws D --num-warmup W] [--posterior-draws P]
        [--walk-draws W | --walk-seconds S] [--compare-populations E+I]
        [--compare-families [--held-out-blocks B]] [--scheduler sync|local|ADDRESS] [--fast]
        [--force] [--quiet]

Every state × population: the posterior (exact up to 22 neurons, else the calibrated
pseudo-posterior), diagnostics, predictive checks, I2/IN, C(T)/N with the shuffled control and
the study's MLE method beside it; across fits E-only / I-only vs E+I and the state comparison.
``--compare-families`` adds the independent / pairwise / K-pairwise comparison of every fit:
PSIS-LOO up to 22 neurons, the held-out log pseudolikelihood of ``--held-out-blocks`` blocks of
bins above (a different criterion).
Resumable: rerun the same command after an interruption and only what is missing is redone.
Writes DIR/study.json, DIR/tables/*.csv, DIR/fits/*.nc (and DIR/report.html). See
:mod:`bayes_ising.pipeline.plan`.
"""

__all__ = ["register", "run"]


def _positive_int(text):
    value = int(text)
    if value < 1:
        raise ValueError(text)
    return value


def register(subparsers, name):
    from bayes_ising.core.limits import MAX_EXACT_NEURONS
    from bayes_ising.pipeline.plan import MIN_WALK_SECONDS

    parser = subparsers.add_parser(
        name, help="the study's whole analysis of a recording -> DIR/study.json, tables, fits",
        description=__doc__.split("\n\n")[0])
    parser.add_argument("data", help="recording (.npz, .npy, .mat, .nwb)")
    parser.add_argument("--out", required=True, metavar="DIR", help="the study folder")
    group = parser.add_argument_group("data")
    group.add_argument("--bin-size", type=float, default=None,
                       help="bin width for spike times, in --time-units")
    group.add_argument("--time-units", default=None, choices=["s", "ms", "us"])
    group.add_argument("--variable", default=None, help="MATLAB variable holding the raster")
    group.add_argument("--states-table", default=None,
                       help="NWB: interval table holding the states, e.g. sleep_states")
    group.add_argument("--state-column", default=None,
                       help="NWB: column of that table naming the state, e.g. label")
    group.add_argument("--cell-type-column", default=None,
                       help="NWB: Units column holding cell types, e.g. cell_class")
    group.add_argument("--populations", default=None,
                       help='populations to fit, e.g. "E+I,E,I" (default: every one present; '
                            '"E,I" is a deprecated alias of "E+I")')
    group.add_argument("--states", default=None, help="states to analyse (default: all)")
    group.add_argument("--min-rate", type=float, default=None,
                       help="apply the study's rule: drop neurons firing in fewer than this "
                            "fraction of a state's bins (default: keep all; the diagnostics "
                            "judge them)")
    group.add_argument("--min-bins", type=_positive_int, default=None,
                       help="refuse a state with fewer bins (default 200)")
    sampling = parser.add_argument_group("sampling")
    for flag in ("num-chains", "num-draws", "num-warmup", "posterior-draws", "walk-draws",
                 "thermo-draws"):
        sampling.add_argument(f"--{flag}", type=int, default=None)
    sampling.add_argument("--walk-seconds", type=float, default=None,
                          help="time budget of the study's walks per fit (default: the "
                               "posterior's own sampling time, at least "
                               f"{MIN_WALK_SECONDS:g} s; they stop earlier when converged)")
    sampling.add_argument("--compare-populations", default=None,
                          help='run the MLE comparison for these populations, e.g. "E+I,E,I" '
                               "(default: the joint population only, e.g. E+I)")
    sampling.add_argument("--seed", type=int, default=None)
    parser.add_argument("--compare-families", action="store_true",
                        help="also compare the independent, pairwise and K-pairwise posteriors "
                             f"of every fit: by PSIS-LOO for N <= {MAX_EXACT_NEURONS}, above "
                             "by the held-out log pseudolikelihood of blocks of bins (not "
                             "comparable with LOO; docs/models.md)")
    parser.add_argument("--held-out-blocks", type=_positive_int, default=None, metavar="B",
                        help="with --compare-families: contiguous blocks of bins held out in "
                             f"turn for the fits with N > {MAX_EXACT_NEURONS} (default 10)")
    parser.add_argument("--fast", action="store_true",
                        help="few draws everywhere (a smoke test; not for conclusions)")
    parser.add_argument("--scheduler", default=None,
                        help='"sync" (in this process), "local" (a Dask LocalCluster) or a '
                             "Dask scheduler address (default: sync on <= 2 cores, else local)")
    parser.add_argument("--force", action="store_true",
                        help="replace the results of another study in DIR")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.set_defaults(func=run)
    return parser


def _population_flags(args):
    """``--populations`` and ``--compare-populations`` as labels
    (:func:`~bayes_ising.pipeline.plan.parse_populations`); the deprecated spelling "E,I" is
    announced once per command line, naming the flags that used it."""
    import sys
    import warnings

    from bayes_ising.pipeline.plan import parse_populations

    parsed, old = {}, []
    for dest in ("populations", "compare_populations"):
        text = getattr(args, dest, None)
        if not text:
            continue
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", DeprecationWarning)
            parsed[dest] = parse_populations(text)
        if any(issubclass(w.category, DeprecationWarning) for w in caught):
            old.append("--" + dest.replace("_", "-"))
    if old:
        print(f'bayes-ising study: {" and ".join(old)} "E,I" is deprecated; write "E+I"',
              file=sys.stderr)
    return parsed


def settings_from_args(args):
    """:class:`~bayes_ising.pipeline.plan.StudySettings` from the flags (None keeps the default)."""
    import dataclasses

    from bayes_ising.pipeline.plan import FAST_SETTINGS, StudySettings

    base = FAST_SETTINGS if args.fast else StudySettings()
    names = ("num_chains", "num_draws", "num_warmup", "posterior_draws", "walk_draws",
             "thermo_draws", "walk_seconds", "seed", "min_rate", "min_bins", "held_out_blocks")
    overrides = {n: getattr(args, n) for n in names if getattr(args, n, None) is not None}
    if getattr(args, "compare_families", False):
        overrides["compare_families"] = True
    elif getattr(args, "held_out_blocks", None) is not None:
        from bayes_ising.errors import BayesIsingError

        raise BayesIsingError("--held-out-blocks applies to the family comparison: add "
                              "--compare-families")
    overrides.update(_population_flags(args))
    if args.states:
        overrides["states"] = tuple(s.strip() for s in args.states.split(",") if s.strip())
    return dataclasses.replace(base, **overrides)


def run(args):
    from bayes_ising import data as data_module
    from bayes_ising.pipeline.plan import study

    data = data_module.load(args.data, bin_size=args.bin_size, time_units=args.time_units,
                            variable=args.variable, states_table=args.states_table,
                            state_column=args.state_column,
                            cell_type_column=args.cell_type_column)
    if str(data.source) != str(args.data):  # e.g. which NWB table and columns were read
        print(f"data: {data.source}")
    result = study(data, args.out, settings=settings_from_args(args),
                   scheduler=args.scheduler, force=args.force, progress=not args.quiet)
    print_summary(result)
    return 0


def print_summary(result, file=None):
    """A few lines: fits (verdict), failures, where the outputs are."""
    import sys

    file = file or sys.stdout
    for f in result.summary["fits"]:
        if f["error"]:
            verdict = f"FAILED: {f['error']}"
        else:
            verdict = ("converged" if f["converged"] else "NOT converged") + (
                "" if f["valid"] is None else ", valid" if f["valid"] else ", NOT valid") + (
                f", {f['num_flagged']} of {f['num_neurons']} neurons flagged"
                if f["num_flagged"] is not None else "")
        print(f"  {f['state']:>8} {f['population']:>4}  N={f['num_neurons']:<3} "
              f"{f['likelihood']:<6} {verdict}", file=file)
    for note in result.summary["notes"]:
        print(f"  note: {note}", file=file)
    print(f"study: {result.out_dir / 'study.json'}", file=file)
    if result.report is not None:
        print(f"report: {result.report}", file=file)
