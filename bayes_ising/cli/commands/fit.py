"""``bayes-ising fit``: sample the posterior over fields and couplings with NUTS.

    bayes-ising fit DATA --likelihood exact|pseudo [--adjust none|curvature|mode|mode+curvature]
        [--model default] [--num-chains C] [--num-draws D] [--num-warmup W] [--seed S]
        --out POSTERIOR.nc [--force] [--no-progress] [data-selection flags]

Writes an ArviZ netCDF posterior (see :func:`bayes_ising.fit.bayes.fit_posterior`) and prints a
one-paragraph convergence summary (max R-hat, min ESS, divergences, time). ``--likelihood
exact`` with more than 22 neurons exits with status 2. With ``--model k_pairwise
--likelihood pseudo``, ``--adjust`` is ``none`` (the default: unadjusted intervals),
``curvature`` or ``mode+curvature`` (N <= 22), the curvature adjustment of
:mod:`bayes_ising.fit.kpairwise_adjust`, gated by a model check of its centre.
"""

__all__ = ["register", "run", "format_convergence_summary"]


def register(subparsers, name):
    from bayes_ising.cli.commands._common import (
        add_convention_flag,
        add_data_selection_flags,
        add_sampler_flags,
    )
    from bayes_ising.fit.model_spec import ADJUSTMENTS, LIKELIHOODS

    parser = subparsers.add_parser(
        name, help="Bayesian posterior over h and J with NUTS (ArviZ netCDF)",
        description=__doc__.split("\n\n")[0])
    parser.add_argument("data", metavar="DATA", help="spike data (.npz, .mat, .nwb)")
    from bayes_ising.core.limits import MAX_EXACT_NEURONS

    parser.add_argument("--likelihood", choices=LIKELIHOODS, default=None,
                        help=f"exact (enumeration, N <= {MAX_EXACT_NEURONS}) or pseudo (any N); "
                             "default: the model file's")
    parser.add_argument("--adjust", choices=ADJUSTMENTS, default=None,
                        help="pseudo-posterior calibration (default: the model file's, "
                             "mode+curvature in the default model; see docs/calibration.md)")
    parser.add_argument("--model", default=None, metavar="NAME|MODEL.toml",
                        help="model spec: priors and sampler settings, by name (default, "
                             "hierarchical_blocks, horseshoe, pseudo_large: shipped with the "
                             "package) or a TOML file (default: default)")
    add_sampler_flags(parser)
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--out", required=True, metavar="POSTERIOR.nc",
                        help="output netCDF file")
    parser.add_argument("--force", action="store_true", help="overwrite --out if it exists")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_data_selection_flags(parser)
    add_convention_flag(parser)
    parser.set_defaults(func=run)
    return parser


def run(args):
    from bayes_ising._io import check_writable
    from bayes_ising.analysis import diagnostics
    from bayes_ising.cli.commands._common import check_counts, load_selected_data
    from bayes_ising.core import ising
    from bayes_ising.errors import TooManyNeuronsError
    from bayes_ising.fit import bayes, posterior

    check_counts(args, num_chains=1, num_draws=1, num_warmup=0)
    check_writable(args.out, args.force)  # fail before sampling, not after
    spec = bayes.load_model_spec(args.model) if args.model else bayes.default_model_spec()
    likelihood = args.likelihood or spec.likelihood
    data = load_selected_data(args)
    if spec.family == "k_pairwise":
        return _run_k_pairwise(args, spec, data, likelihood)
    if likelihood == "exact" and data.num_neurons > ising.MAX_EXACT_NEURONS:
        raise TooManyNeuronsError(
            f"--likelihood exact enumerates 2^N states and is limited to N <= "
            f"{ising.MAX_EXACT_NEURONS} neurons; the selected data have N = {data.num_neurons} "
            "(use --likelihood pseudo, or select fewer neurons with --population/--min-rate)"
        )
    tree = bayes.fit_posterior(
        args.seed, data, spec, likelihood=likelihood, adjust=args.adjust,
        num_chains=args.num_chains, num_draws=args.num_draws, num_warmup=args.num_warmup,
        progress=not args.no_progress,
    )
    if args.convention == "01":
        tree["lattice_gas"] = posterior.lattice_gas_group(tree)
    bayes.save_posterior(tree, args.out, force=args.force)
    summary = bayes.convergence_summary(tree)
    print(format_convergence_summary(summary, tree))
    validity = diagnostics.posterior_validity(tree)
    print(("valid: " if validity["valid"] else "NOT valid: ") + validity["validity_reason"])
    print(f"posterior: {args.out}")
    return 0


def _run_k_pairwise(args, spec, data, likelihood):
    """``--model k_pairwise``: the K-pairwise posterior (h, J, V) by NUTS — exact (N <= 22)
    or, with ``--likelihood pseudo`` (any N), the pseudo-posterior: unadjusted intervals,
    followed by the Gibbs check of its posterior-mean model
    (:func:`bayes_ising.fit.kpairwise_fit.pseudo_model_check`), or with ``--adjust
    curvature`` / ``mode+curvature`` the curvature-adjusted one, gated by the model check of
    its centre (:mod:`bayes_ising.fit.kpairwise_adjust`)."""
    import json

    import jax
    import numpy as np

    from bayes_ising.core import ising
    from bayes_ising.errors import BayesIsingError, TooManyNeuronsError
    from bayes_ising.fit import bayes, kpairwise_fit
    from bayes_ising.fit.kpairwise_adjust import K_PAIRWISE_ADJUSTMENTS

    adjust = args.adjust or "none"  # K-pairwise: unadjusted unless asked (docs/models.md)
    if args.convention != "pm1":
        raise BayesIsingError("--model k_pairwise has no --convention 01: drop --convention")
    if adjust not in K_PAIRWISE_ADJUSTMENTS or (adjust != "none" and likelihood != "pseudo"):
        choices = " | ".join(K_PAIRWISE_ADJUSTMENTS)
        raise BayesIsingError(f"--model k_pairwise takes --adjust {choices} with --likelihood "
                              f"pseudo only; got --adjust {adjust} with the {likelihood} "
                              "likelihood")
    if adjust == "mode+curvature" and data.num_neurons > ising.MAX_EXACT_NEURONS:
        raise BayesIsingError(f"--adjust mode+curvature centres on the exact MAP (N <= "
                              f"{ising.MAX_EXACT_NEURONS}); N = {data.num_neurons}: use "
                              "--adjust curvature")
    if likelihood == "exact" and data.num_neurons > ising.MAX_EXACT_NEURONS:
        raise TooManyNeuronsError(
            f"the exact K-pairwise posterior enumerates 2^N states (N <= "
            f"{ising.MAX_EXACT_NEURONS}); the selected data have N = {data.num_neurons} (use "
            "--likelihood pseudo, or select fewer neurons)")
    spins = np.asarray(data.spins)
    fit = kpairwise_fit.fit_posterior(
        spins, "k_pairwise", rng_key=args.seed, spec=spec, likelihood=likelihood,
        num_chains=args.num_chains or spec.num_chains, num_draws=args.num_draws or
        spec.num_draws, num_warmup=spec.num_warmup if args.num_warmup is None
        else args.num_warmup, neuron_ids=data.neuron_ids, adjust=adjust)
    fit.tree.attrs["data_source"] = str(data.source)
    check = None
    if likelihood == "pseudo" and adjust == "none":  # adjusted fits carry their centre's check
        check = kpairwise_fit.pseudo_model_check(jax.random.key(args.seed), fit.tree, spins)
        fit.tree.attrs["model_check"] = json.dumps(check)
    bayes.save_posterior(fit.tree, args.out, force=args.force)
    print(kpairwise_fit.format_fit_summary(fit))
    if check is not None:
        print(check["verdict"])
    print(f"posterior: {args.out}")
    return 0


def format_convergence_summary(summary, tree=None):
    """One paragraph in words from :func:`bayes_ising.fit.bayes.convergence_summary`."""
    from bayes_ising.core.convergence import rule_text

    s = summary
    ok = s["converged"]
    what = ""
    if tree is not None:
        what = (f"{tree.attrs.get('likelihood')} likelihood"
                + (f", adjust={tree.attrs.get('adjust')}"
                   if tree.attrs.get("likelihood") == "pseudo" else "") + ": ")
    verdict = (f"converged ({rule_text()})" if ok else
               f"NOT converged by the usual rules ({rule_text()}): run longer or check the "
               "model")
    return (
        f"{what}{s['num_chains']} chains x {s['num_draws']} draws in {s['wall_time_s']:.1f} s; "
        f"max R-hat {s['max_rhat']:.4f}, min bulk ESS {s['min_ess_bulk']:.0f}, min tail ESS "
        f"{s['min_ess_tail']:.0f} ({s['min_ess_per_s']:.0f} min-ESS/s), {s['num_divergent']} "
        f"divergent transitions, {s['mean_leapfrog_steps']:.1f} leapfrog steps per draw; "
        f"{verdict}."
    ) + _stop_rule_note(tree)


def _stop_rule_note(tree):
    """What the stop rule did (empty without one): mixed after D draws, or the cap."""
    attrs = {} if tree is None else tree.attrs
    if not attrs.get("max_draws"):
        return ""
    draws, cap = attrs.get("num_draws"), attrs.get("max_draws")
    if attrs.get("stopped") == "mixed":
        return f" Stop rule: mixed after {draws} draws per chain (cap {cap})."
    return (f" Stop rule: reached the cap of {cap} draws per chain before every parameter "
            "mixed; the intervals are not yet supported by enough draws.")
