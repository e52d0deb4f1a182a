"""``bayes-ising compare-families``: which energy family predicts the data best (PSIS-LOO).

    bayes-ising compare-families DATA [--families independent,pairwise,k_pairwise]
        [--model k_pairwise] [--num-chains C] [--num-draws D] [--num-warmup W]
        [--posterior-draws P] [--seed S] [--held-out-blocks B [--held-out-only]]
        [--out COMPARISON.json] [--force] [data-selection flags]

Fits each family's exact posterior (N <= 22) on the same bins
(:func:`bayes_ising.analysis.families.compare_families`), prints the arviz-stats comparison table
(elpd_loo, se, elpd_diff, dse, Pareto k) with how many observed P(K) lie in each model's
predictive band, and writes the digest as JSON
(:func:`bayes_ising.analysis.families.comparison_summary`).
``--held-out-blocks B`` adds blocked cross-validation
(:func:`bayes_ising.fit.kpairwise_fit.held_out_blocks`: exact MLE fits and held-out
log-likelihood for N <= 22, pseudolikelihood fits and held-out log pseudolikelihood above,
where it is the only score; ``--held-out-only`` skips the posteriors). Above 22 neurons
(``--held-out-blocks`` required) each family's pseudo-posterior is fitted instead
(:func:`bayes_ising.analysis.families.compare_pseudo_families`: unadjusted, P(K) bands by
K-pairwise Gibbs sampling, R-hat, time) beside the held-out scores; no PSIS-LOO.
"""

__all__ = ["register", "run", "format_table"]


def register(subparsers, name):
    from bayes_ising.cli.commands._common import add_data_selection_flags, add_sampler_flags
    from bayes_ising.core.limits import MAX_EXACT_NEURONS

    parser = subparsers.add_parser(
        name, help="independent vs pairwise vs K-pairwise by PSIS-LOO (exact, N <= "
                   f"{MAX_EXACT_NEURONS})",
        description=__doc__.split("\n\n")[0])
    parser.add_argument("data", metavar="DATA", help="spike data (.npz, .mat, .nwb)")
    parser.add_argument("--families", default="independent,pairwise,k_pairwise",
                        help="comma-separated families (default: all three)")
    parser.add_argument("--model", default="k_pairwise", metavar="NAME|MODEL.toml",
                        help="spec of the priors and sampler (default: k_pairwise; its "
                             "prior.V applies to the K-pairwise family only)")
    add_sampler_flags(parser, defaults_from="the model file")
    parser.add_argument("--posterior-draws", type=int, default=200,
                        help="draws for the P(K) predictive bands (default 200)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--held-out-blocks", type=int, default=0, metavar="B",
                        help="also hold out each of B contiguous blocks of bins in turn "
                             "(needed above 22 neurons; default 0: off)")
    parser.add_argument("--held-out-only", action="store_true",
                        help="only the held-out blocks (no posteriors, no LOO)")
    parser.add_argument("--out", default=None, metavar="COMPARISON.json",
                        help="write the comparison digest here")
    parser.add_argument("--force", action="store_true", help="overwrite --out if it exists")
    add_data_selection_flags(parser)
    parser.set_defaults(func=run)
    return parser


def format_table(summary):
    """The comparison as aligned text lines (best family first)."""
    head = (f"{'family':<12} {'elpd_loo':>11} {'se':>7} {'d_loo':>8} {'dse':>6} {'p_loo':>6} "
            f"{'max k':>6} {'P(K) in band':>13} {'3rd slope':>9} {'I_f/IN':>6} "
            f"{'patterns':>8} {'T*':>5} {'R-hat':>6} {'time':>7}")
    lines = [head]
    for r in summary["rows"]:
        lines.append(
            f"{r['family']:<12} {r['elpd']:>11.1f} {r['se']:>7.1f} {abs(r['elpd_diff']):>8.1f} "
            f"{r['dse']:>6.1f} {r['p']:>6.1f} {r['pareto_k_max']:>6.2f} "
            f"{str(r['pk_in_band']) + '/' + str(r['pk_seen']):>13} "
            f"{_number(r.get('third_order_slope')):>9} "
            f"{_number(r.get('information_ratio')):>6} "
            f"{str(r.get('patterns_in_band')) + '/' + str(r.get('patterns_top')):>8} "
            f"{_number(r.get('peak_temperature')):>5} {r['max_rhat']:>6.3f} "
            f"{r['seconds']:>6.0f}s")
    return lines


def format_pseudo_table(summary):
    """Lines of :func:`bayes_ising.analysis.families.compare_pseudo_families`: per family the
    pseudo-posterior's P(K) band, mixing and time (best held-out score first)."""
    lines = [f"{'family':<12} {'P(K) in band':>13} {'R-hat':>6} {'min ESS':>8} {'time':>7}  "
             "intervals"]
    for r in summary["rows"]:
        lines.append(f"{r['family']:<12} {str(r['pk_in_band']) + '/' + str(r['pk_seen']):>13} "
                     f"{r['max_rhat']:>6.3f} {r['min_ess_bulk']:>8.0f} {r['seconds']:>6.0f}s  "
                     f"{r['intervals']}")
    return lines


def _number(value):
    return "-" if value is None else f"{value:.2f}"


def format_held_out(result):
    """Lines: per family the held-out score per bin and the difference to the best ± se."""
    lines = [f"held-out blocks ({result['method']} fits, score: held-out {result['score']}, "
             f"{len(result['block_scores'][0])} blocks)",
             f"{'family':<12} {'per bin':>9} {'difference':>11} {'se':>8}"]
    order = sorted(result["families"], key=lambda f: -result["total"][f])
    for f in order:
        lines.append(f"{f:<12} {result['per_bin'][f]:>9.4f} {result['difference'][f]:>11.1f} "
                     f"{result['se'][f]:>8.1f}")
    if result["method"] == "pseudo":
        lines.append("note: pseudolikelihood scores compare families fitted the same way; they "
                     "are not likelihoods and not comparable with LOO (docs/models.md)")
    return lines


def _held_out(args, spins, families):
    from bayes_ising.fit import kpairwise_fit

    if args.held_out_blocks < 2:
        from bayes_ising.errors import BayesIsingError

        raise BayesIsingError(f"--held-out-blocks must be >= 2, got {args.held_out_blocks}")
    result = kpairwise_fit.held_out_blocks(spins, families, num_blocks=args.held_out_blocks)
    print("\n".join(format_held_out(result)))
    return result


def run(args):
    import numpy as np

    from bayes_ising._io import check_writable, write_json
    from bayes_ising.analysis import families
    from bayes_ising.cli.commands._common import check_counts, load_selected_data
    from bayes_ising.core import ising, kpairwise
    from bayes_ising.errors import BayesIsingError, TooManyNeuronsError
    from bayes_ising.fit.model_spec import load_model_spec

    check_counts(args, num_chains=1, num_draws=1, num_warmup=0, posterior_draws=1)
    chosen = tuple(f.strip() for f in args.families.split(",") if f.strip())
    unknown = [f for f in chosen if f not in kpairwise.FAMILIES]
    if unknown or not chosen:
        raise BayesIsingError(f"--families: unknown {unknown or args.families!r} (choose from "
                              f"{', '.join(kpairwise.FAMILIES)})")
    if args.out:
        check_writable(args.out, args.force)
    spec = load_model_spec(args.model)
    data = load_selected_data(args)
    spins = np.asarray(data.spins)
    large = data.num_neurons > ising.MAX_EXACT_NEURONS
    if large and not args.held_out_blocks:
        raise TooManyNeuronsError(
            f"PSIS-LOO needs the exact likelihood (N <= {ising.MAX_EXACT_NEURONS}); the selected "
            f"data have N = {data.num_neurons}: compare by held-out blocks of bins instead "
            "(--held-out-blocks 10; pseudolikelihood fits, docs/models.md)")
    sampler = dict(spec=spec, num_chains=args.num_chains or spec.num_chains,
                   num_draws=args.num_draws or spec.num_draws,
                   num_warmup=spec.num_warmup if args.num_warmup is None else args.num_warmup)
    if large and not args.held_out_only:
        if args.held_out_blocks < 2:
            raise BayesIsingError(f"--held-out-blocks must be >= 2, got {args.held_out_blocks}")
        summary = families.compare_pseudo_families(
            spins, chosen, rng_key=args.seed, check_draws=min(args.posterior_draws, 50),
            num_blocks=args.held_out_blocks, **sampler)
        print("\n".join(format_held_out(summary["held_out"]) + format_pseudo_table(summary)))
        print(f"note: {summary['caveat']}")
    elif large or args.held_out_only:
        summary = {"held_out": _held_out(args, spins, chosen)}
    if large or args.held_out_only:
        if args.out:
            write_json(args.out, summary, force=args.force)
            print(f"comparison: {args.out}")
        return 0
    result = families.compare_families(
        spins, chosen, rng_key=args.seed, check_draws=args.posterior_draws, **sampler)
    summary = families.comparison_summary(result)
    print("\n".join(format_table(summary)))
    print(f"note: {summary['caveat']}")
    if args.held_out_blocks:
        summary["held_out"] = _held_out(args, spins, chosen)
    if args.out:
        write_json(args.out, summary, force=args.force)
        print(f"comparison: {args.out}")
    return 0
