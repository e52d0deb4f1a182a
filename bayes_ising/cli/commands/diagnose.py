"""``bayes-ising diagnose``: convergence verdict and per-neuron reliability of a posterior.

    bayes-ising diagnose POSTERIOR.nc --out DIAG.json [--force] [--max-rhat 1.01]
        [--min-ess 400] [--min-contraction 0.5]

DIAG.json holds ``converged`` (bool), ``reasons`` (list of str), ``sampler`` (divergences,
E-BFMI, tree-depth saturation), ``summary``, ``thresholds``, ``rule`` (the flagging rule in
words), ``neurons`` (one entry per neuron: ``id``, ``cell_type``, ``firing_probability``,
``flagged``, ``reasons``, ``max_rhat``, ``min_ess_bulk``, ``contraction`` and more; see
:func:`bayes_ising.analysis.diagnostics.neuron_reliability`) and ``parameters`` (per-parameter
R-hat,
ESS, MCSE, interval, contraction). A K-pairwise posterior (``fit --model k_pairwise``) is
diagnosed the same way — per neuron over h_i and J_i· (its 0/1 field includes V(1)) — and its
potential gets its own rows, ``potential`` (one per level V(k), k = 1..N: R-hat, ESS,
interval, ``flagged``, ``reasons``); V's levels count in the run verdict. Exit status 0
when written, whether or not the run converged (the verdict is in the file and printed); 2
for bad input.
"""

__all__ = ["register", "run", "diagnosis_to_json"]

RULE = (
    "A neuron (its field h_i and couplings J_i.) is flagged for non-convergence when any of its "
    "parameters has R-hat > {max_rhat} or bulk/tail ESS < {min_ess}, or divergent transitions "
    "concentrate on them; for weak identification when the posterior contraction "
    "1 - Var_post/Var_ref of its 0/1-convention field a_i = 2h_i - 2 sum_j J_ij (the log-odds "
    "of firing when the others are silent), or the median over its couplings, is below "
    "{min_contraction} (Var_ref = min(prior variance, squared robust spread of the posterior "
    "means across the population, at least {min_reference_sd}^2)). The field is judged in the "
    "0/1 convention because in the +-1 convention a coupling to a neuron that never fires is "
    "almost a shift of h_i, so one silent neuron would make every h_i look unidentified. A "
    "contraction below 0 means the posterior is wider than the reference scale."
)


def register(subparsers, name):
    from bayes_ising.analysis import diagnostics
    from bayes_ising.cli.commands._common import add_convention_flag, add_deprecated_alias

    parser = subparsers.add_parser(
        name, help="convergence verdict and per-neuron reliability of a posterior (JSON)",
        description=__doc__.split("\n\n")[0])
    parser.add_argument("posterior", metavar="POSTERIOR.nc", help="posterior from `fit`")
    parser.add_argument("--out", required=True, metavar="DIAG.json", help="output JSON file")
    parser.add_argument("--force", action="store_true", help="overwrite --out if it exists")
    parser.add_argument("--max-rhat", type=float, default=diagnostics.MAX_RHAT,
                        help=f"R-hat cut (default {diagnostics.MAX_RHAT})")
    parser.add_argument("--min-ess", type=float, default=diagnostics.MIN_ESS,
                        help=f"bulk/tail ESS cut (default {diagnostics.MIN_ESS})")
    add_deprecated_alias(parser, "--rhat-max", "--max-rhat", "max_rhat", type=float)
    add_deprecated_alias(parser, "--ess-min", "--min-ess", "min_ess", type=float)
    parser.add_argument("--min-contraction", type=float, default=diagnostics.MIN_CONTRACTION,
                        help=f"contraction cut (default {diagnostics.MIN_CONTRACTION})")
    add_deprecated_alias(parser, "--contraction-min", "--min-contraction", "min_contraction",
                         type=float)
    add_convention_flag(parser)
    parser.set_defaults(func=run)
    return parser


def diagnosis_to_json(diagnosis):
    """The JSON layout of DIAG.json from :func:`bayes_ising.analysis.diagnostics.diagnose`."""
    out = {k: v for k, v in diagnosis.items() if k != "parameters"}
    params = diagnosis["parameters"]
    out["parameters"] = {
        "neuron": [str(v) for v in params["neuron"].values],
        "pair": [[str(a), str(b)] for a, b in zip(params["neuron_i"].values,
                                                    params["neuron_j"].values, strict=True)]
        if "neuron_i" in params.coords else None,
        **({"k": [int(v) for v in params["mean_V"][params["mean_V"].dims[0]].values]}
           if "mean_V" in params else {}),
        **{name: params[name].values for name in params.data_vars},
    }
    out["rule"] = RULE.format(**diagnosis["thresholds"])
    return out


def run(args):
    from bayes_ising import __version__
    from bayes_ising._io import check_writable, write_json
    from bayes_ising.analysis import diagnostics
    from bayes_ising.errors import BayesIsingError
    from bayes_ising.fit import bayes, posterior

    if args.max_rhat <= 1 or args.min_ess <= 0:
        raise BayesIsingError("--max-rhat must be > 1 and --min-ess > 0")
    check_writable(args.out, args.force)
    tree = bayes.load_posterior(args.posterior, family=None)
    k_pairwise = posterior.family(tree) == "k_pairwise"
    if k_pairwise and args.convention == "01":
        raise BayesIsingError("--convention 01 is the pairwise model's 0/1 parametrisation; a "
                              "K-pairwise posterior's V(K) has none: drop --convention")
    diagnosis = diagnostics.diagnose(tree, max_rhat=args.max_rhat, min_ess=args.min_ess,
                                     min_contraction=args.min_contraction)
    out = diagnosis_to_json(diagnosis)
    out.update(posterior=str(args.posterior), bayes_ising_version=__version__)
    if args.convention == "01":
        out["parameters_01"] = diagnostics.lattice_gas_summary(tree)
    write_json(args.out, out, force=args.force)
    verdict = diagnosis["verdict"]  # mixing and validity (model check) together
    if diagnosis.get("warnings"):
        verdict += " (warnings: " + "; ".join(diagnosis["warnings"]) + ")"
    flagged = [row["id"] for row in diagnosis["neurons"] if row["flagged"]]
    levels = ""
    if diagnosis["potential"] is not None:
        bad = [f"V({row['k']})" for row in diagnosis["potential"] if row["flagged"]]
        levels = (f"; {len(bad)} of {len(diagnosis['potential'])} levels of V(K) not converged"
                  + (f" ({', '.join(bad)})" if bad else ""))
    print(f"{verdict}. {len(flagged)} of {len(diagnosis['neurons'])} neurons flagged"
          + (f" ({', '.join(flagged)})" if flagged else "") + levels
          + f". Written to {args.out}")
    return 0
