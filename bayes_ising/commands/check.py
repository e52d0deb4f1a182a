"""``bayes-ising check``: posterior predictive checks, I2/IN and the E/I comparison.

    bayes-ising check POSTERIOR.nc DATA --out CHECKS.json [--force] [--posterior-draws 100]
        [--seed 0] [--no-progress]
        [--no-ei] [--ei-max-e 14] [data-selection flags]

CHECKS.json holds ``synchrony`` (P(K): data, pairwise posterior predictive with a 90% band,
independent model), ``patterns`` (observed vs predicted pattern probabilities, the most
frequent patterns), ``third_order`` (connected third-order correlations), ``information``
(S1, S2, SN, I2/IN with intervals and the SN caveat) and, when the data have E and I cell
types, ``ei``: per population the log ratio of predicted to observed P(K ≥ k_high) for the
population-only model (maximum likelihood) and for this posterior's marginal. The data must
hold the posterior's neurons (select them with the same flags as for ``fit``).
"""

import sys

__all__ = ["register", "run"]

#: at most this many patterns (the most frequent) go into CHECKS.json
MAX_PATTERNS = 5000


def register(subparsers, name):
    from ..cli import add_data_selection_flags

    parser = subparsers.add_parser(
        name, help="posterior predictive checks, I2/IN and E/I synchrony (JSON)",
        description=__doc__.split("\n\n")[0])
    parser.add_argument("posterior", metavar="POSTERIOR.nc", help="posterior from `fit`")
    parser.add_argument("data", metavar="DATA", help="the spike data the posterior was fit to")
    parser.add_argument("--out", required=True, metavar="CHECKS.json", help="output JSON file")
    parser.add_argument("--force", action="store_true", help="overwrite --out if it exists")
    from ..checks import DEFAULT_CHECK_DRAWS

    parser.add_argument("--posterior-draws", "--draws", dest="draws", type=int,
                        default=DEFAULT_CHECK_DRAWS,
                        help=f"posterior draws used (evenly thinned; default "
                             f"{DEFAULT_CHECK_DRAWS}: the 90%% band's ends to about ±0.21 "
                             "posterior sd)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--no-ei", action="store_true", help="skip the E/I comparison")
    parser.add_argument("--ei-max-e", type=int, default=14,
                        help="E neurons (most active) in the E-only model (default 14)")
    add_data_selection_flags(parser, posterior=True)
    parser.set_defaults(func=run)
    return parser


def _trim_patterns(patterns):
    out = dict(patterns)
    for key in ("patterns", "counts", "observed", "independent"):
        out[key] = out[key][:MAX_PATTERNS]
    out["predicted"] = {k: v[:MAX_PATTERNS] for k, v in out["predicted"].items()}
    out["num_patterns_total"] = int(len(patterns["counts"]))
    return out


def _ei(rng_key, spins, cell_types, tree, h_draws, J_draws, max_e):
    import numpy as np

    from .. import analyses, stats

    types = np.asarray(cell_types).astype(str)
    result = {}
    firing = stats.firing_probability(spins)
    for population in ("E", "I"):
        members = np.flatnonzero(types == population)
        if population == "E" and members.size > max_e:
            members = np.sort(members[np.argsort(-firing[members], kind="stable")[:max_e]])
        pop_h, pop_J, label = analyses.fit_draws(rng_key, spins[:, members], fit="mle")
        block = analyses.synchrony_comparison(rng_key, spins[:, members], (pop_h, pop_J),
                                              (h_draws, J_draws), members)
        block["fit"] = {"population_only": label, "joint": "this posterior (all neurons)"}
        block["neurons"] = [str(v) for v in tree["posterior"]["neuron"].values[members]]
        result[population] = block
    return result


def run(args):
    import jax
    import numpy as np

    from .. import __version__, bayes, checks, posterior
    from .._io import check_writable, write_json
    from ..cli import load_selected_data
    from ..errors import BayesIsingError

    if args.draws < 1:
        raise BayesIsingError(f"--draws must be >= 1, got {args.draws}")
    check_writable(args.out, args.force)
    tree = bayes.load_posterior(args.posterior)
    data = posterior.align(tree, load_selected_data(args, tree))
    spins = np.asarray(data.spins)
    key_checks, key_ei = jax.random.split(jax.random.key(args.seed))
    out = checks.posterior_predictive_checks(key_checks, tree, spins, num_draws=args.draws,
                                             progress=not args.no_progress)
    out["patterns"] = _trim_patterns(out["patterns"])
    types = None if data.cell_types is None else np.asarray(data.cell_types).astype(str)
    if types is None:
        types = posterior.cell_types(tree)
    if not args.no_ei and types is not None and all(
            np.sum(types == t) >= 2 for t in ("E", "I")):
        # the joint marginal needs Gibbs sampling per draw above the enumeration limit
        ei_draws = args.draws if spins.shape[1] <= checks.MAX_EXACT_CHECK_NEURONS else min(
            args.draws, 50)
        h_draws, J_draws = checks.parameter_draws(tree, ei_draws)
        out["ei"] = _ei(key_ei, spins, types, tree, h_draws, J_draws, args.ei_max_e)
    out.update(posterior=str(args.posterior), data=str(args.data), seed=args.seed,
               bayes_ising_version=__version__)
    write_json(args.out, out, force=args.force)
    sync, info = out["synchrony"], out["information"]
    ratio = info.get("ratio")
    text = (f"P(K): observed within the {sync['interval']:.0%} band for "
            f"{sync['fraction_in_band']:.0%} of K; ")
    if ratio:
        text += (f"I2/IN = {ratio['median']:.3f} [{ratio['lower']:.3f}, {ratio['upper']:.3f}]"
                 + ("" if info["SN_reliable"] else " (SN unreliable: too few bins)") + "; ")
    if "ei" in out:
        e = out["ei"]["E"]["log_ratio_population_only"]
        text += (f"E-only log P(K_E>={out['ei']['E']['k_high']}) ratio {e['median']:.2f} "
                 f"[{e['lower']:.2f}, {e['upper']:.2f}]; ")
    if info.get("ratio_warning"):
        print(f"bayes-ising check: warning: {info['ratio_warning']}", file=sys.stderr)
    print(text + f"written to {args.out}")
    return 0
