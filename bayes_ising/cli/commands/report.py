"""``bayes-ising report``: one self-contained HTML report from saved results.

    bayes-ising report POSTERIOR.nc [DATA] [--diagnostics DIAG.json] [--checks CHECKS.json]
        [--thermo THERMO.json] [--comparison CMP.json] [--ei EI.json] [--states STATES.json]
        --out REPORT.html [--force]
    bayes-ising report STUDY_DIR --out REPORT.html [--force]

The second form (re)draws the report of a folder written by ``bayes-ising study`` (its
study.json and tables; the study writes STUDY_DIR/report.html itself). Figures are embedded
(PNG, base64), so the file opens offline. A section whose input is not given stays in the
report and says how to produce it. A K-pairwise posterior (``fit --model k_pairwise``) gets
the same report; its diagnostics section adds the convergence of each level V(k).
"""

import sys
from pathlib import Path

__all__ = ["register", "run"]


def register(subparsers, name):
    from bayes_ising.cli.commands._common import add_data_selection_flags

    parser = subparsers.add_parser(
        name, help="build the self-contained HTML report from saved results",
        description=__doc__.split("\n\n")[0])
    parser.add_argument("posterior", metavar="POSTERIOR.nc",
                        help="posterior written by `bayes-ising fit`, or a folder written by "
                             "`bayes-ising study` (then only --out, --title and --force apply)")
    parser.add_argument("data", metavar="DATA", nargs="?", default=None,
                        help="the data file of the fit (raster excerpt, rates, states); "
                             "use the same selection flags as the fit")
    parser.add_argument("--diagnostics", metavar="DIAG.json", default=None,
                        help="output of `bayes-ising diagnose`")
    parser.add_argument("--checks", metavar="CHECKS.json", default=None,
                        help="output of `bayes-ising check`")
    parser.add_argument("--thermo", metavar="THERMO.json", default=None,
                        help="output of `bayes-ising thermo`")
    parser.add_argument("--comparison", metavar="CMP.json", default=None,
                        help="output of `bayes-ising compare-mle`")
    parser.add_argument("--ei", metavar="EI.json", default=None,
                        help="E-only vs E+I comparison (bayes_ising.analysis.analyses.ei_analysis; "
                             "written by `bayes-ising demo`)")
    parser.add_argument("--states", metavar="STATES.json", default=None,
                        help="state comparison (bayes_ising.analysis.analyses.state_analysis; "
                             "written by `bayes-ising demo`)")
    parser.add_argument("--title", default=None, help="title of the report")
    add_data_selection_flags(parser, posterior=True)
    parser.add_argument("--out", required=True, metavar="REPORT.html", help="output HTML file")
    parser.add_argument("--force", action="store_true", help="overwrite --out")
    parser.set_defaults(func=run)
    return parser


def run(args):
    from bayes_ising import report
    from bayes_ising._io import check_writable
    from bayes_ising.cli.commands._common import load_selected_data
    from bayes_ising.fit import posterior

    check_writable(args.out, args.force)
    if Path(args.posterior).is_dir():
        from bayes_ising.report.study import render_study

        path = render_study(args.posterior, path=args.out, force=args.force, title=args.title)
        print(f"wrote {path} (the study report of {args.posterior})", file=sys.stderr)
        return 0
    from bayes_ising.fit.bayes import load_posterior

    tree = load_posterior(args.posterior, family=None)  # pairwise or K-pairwise
    data = None
    if args.data is not None:
        data = posterior.align(tree, load_selected_data(args, tree))
    inputs = {}
    for key in ("diagnostics", "checks", "thermo", "comparison", "ei", "states"):
        path = getattr(args, key)
        inputs[key] = report.load_json(path) if path else None
    text = report.build_report(tree, data, title=args.title, **inputs)
    report.write_report(args.out, text, force=args.force)
    missing = [k for k, v in inputs.items() if v is None]
    print(f"wrote {args.out}" + (f" (no {', '.join(missing)} given: those sections say so)"
                                 if missing else ""), file=sys.stderr)
    return 0
