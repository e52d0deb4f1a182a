"""``bayes-ising check``: posterior predictive checks, I2/IN and the E/I comparison.

    bayes-ising check POSTERIOR.nc DATA --out CHECKS.json [--force] [--posterior-draws K]
        [--seed 0] [--no-ei] [--ei-max-e 14] [--no-progress] [data-selection flags]

CHECKS.json holds ``synchrony`` (P(K): data, pairwise posterior predictive with a 90% band,
independent model), ``patterns`` (observed vs predicted pattern probabilities, the most
frequent patterns), ``third_order`` (connected third-order correlations), ``information``
(S1, S2, SN, I2/IN with intervals and the SN caveat) and, when the data have E and I cell
types, ``ei``: per population the log ratio of predicted to observed P(K ≥ k_high) for the
population-only model (maximum likelihood) and for this posterior's marginal. The data must
hold the posterior's neurons (select them with the same flags as for ``fit``).

``predictive_moments`` (``--moments``; by default for N > 20, where the exact checks stop):
the posterior's models simulated by Gibbs sampling from random and from data-row starts
(:func:`bayes_ising.analysis.checks.predictive_moments`) against the data's means and connected
correlations with their batch-means standard errors — ``passed``, ``reason``, per start max
|z|, coverage, RMS and max errors, and per neuron / pair the data value, its SE and the
predictive mean of each start.

A K-pairwise posterior (``fit --model k_pairwise``) is checked as the K-pairwise model: P(K),
patterns, third order and information enumerate (or Gibbs-sample) the energy with its V(K)
term, and S2 is the K-pairwise entropy; ``family`` in CHECKS.json says which. Its predictive
moments are those of the K-pairwise draws — enumerated for N <= 22 (one "start", ``exact``),
else by the K-pairwise Gibbs sampler from random and data starts — in the same layout. Its
E/I comparison is not computed (the population-only models are pairwise; CHECKS.json says so
under ``ei``).
"""

import sys

from bayes_ising.core.limits import MAX_EXACT_MOMENTS_NEURONS

__all__ = ["register", "run"]

#: at most this many patterns (the most frequent) go into CHECKS.json
MAX_PATTERNS = 5000
#: ``--moments auto`` simulates the predictive moments above this many neurons (where a
#: model's moments are no longer enumerated: the limits table)
MAX_MOMENTS_AUTO_NEURONS = MAX_EXACT_MOMENTS_NEURONS


def register(subparsers, name):
    from bayes_ising.cli.commands._common import add_data_selection_flags, add_deprecated_alias

    parser = subparsers.add_parser(
        name, help="posterior predictive checks, I2/IN and E/I synchrony (JSON)",
        description=__doc__.split("\n\n")[0])
    parser.add_argument("posterior", metavar="POSTERIOR.nc", help="posterior from `fit`")
    parser.add_argument("data", metavar="DATA", help="the spike data the posterior was fit to")
    parser.add_argument("--out", required=True, metavar="CHECKS.json", help="output JSON file")
    parser.add_argument("--force", action="store_true", help="overwrite --out if it exists")
    from bayes_ising.analysis.checks import DEFAULT_CHECK_DRAWS

    parser.add_argument("--posterior-draws", type=int, default=DEFAULT_CHECK_DRAWS, metavar="K",
                        help=f"posterior draws used (evenly thinned; default "
                             f"{DEFAULT_CHECK_DRAWS}: the 90%% band's ends to about ±0.21 "
                             "posterior sd)")
    add_deprecated_alias(parser, "--draws", "--posterior-draws", "posterior_draws", type=int)
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--no-ei", action="store_true", help="skip the E/I comparison")
    parser.add_argument("--ei-max-e", type=int, default=14,
                        help="E neurons (most active) in the E-only model (default 14)")
    parser.add_argument("--moments", choices=("auto", "yes", "no"), default="auto",
                        help="posterior predictive means and connected correlations by Gibbs "
                             "simulation from random and data starts (auto: for N > "
                             f"{MAX_MOMENTS_AUTO_NEURONS})")
    parser.add_argument("--moments-draws", type=int, default=40, metavar="K",
                        help="posterior draws simulated for --moments (default 40)")
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


def _moments_json(result):
    """:func:`checks.predictive_moments` as JSON: its summary plus, per neuron and per pair,
    the data value, its standard error and each start's predictive mean (mean over draws)."""
    moments, out = result["moments"], dict(result["summary"])
    for key in ("m", "C"):
        out[f"{key}_data"] = moments[f"{key}_data"].values.tolist()
        out[f"se_{key}"] = moments[f"se_{key}"].values.tolist()
        model = moments[f"{key}_model"].mean("draw")
        out[f"{key}_model"] = {str(s): model.sel(start=s).values.tolist()
                               for s in moments["start"].values}
    out["neurons"] = [str(v) for v in moments["neuron"].values]
    out["pairs"] = [[str(a), str(b)] for a, b in zip(moments["neuron_i"].values,
                                                      moments["neuron_j"].values, strict=True)]
    return out


def _moments_text(moments):
    """One line of the check's summary: passed or not, why, the worst errors per start."""
    worst = "; ".join(
        f"{start}{'' if start == 'exact' else ' starts'} max |dm| "
        f"{moments[start]['mean']['max_abs_error']:.3f}, "
        f"RMS dC {moments[start]['connected']['rms_error']:.3f}"
        for start in ("exact", "random", "data") if start in moments)
    return (f"predictive moments {'passed' if moments['passed'] else 'FAILED'} "
            f"({moments['reason']}; {worst}); ")


def run(args):
    import jax
    import numpy as np

    from bayes_ising import __version__
    from bayes_ising._io import check_writable, write_json
    from bayes_ising.analysis import analyses, checks
    from bayes_ising.cli.commands._common import load_selected_data
    from bayes_ising.errors import BayesIsingError
    from bayes_ising.fit import bayes, posterior

    if args.posterior_draws < 1:
        raise BayesIsingError(f"--posterior-draws must be >= 1, got {args.posterior_draws}")
    if args.moments_draws < 1:
        raise BayesIsingError(f"--moments-draws must be >= 1, got {args.moments_draws}")
    check_writable(args.out, args.force)
    tree = bayes.load_posterior(args.posterior, family=None)
    k_pairwise = posterior.family(tree) == "k_pairwise"
    data = posterior.align(tree, load_selected_data(args, tree))
    spins = np.asarray(data.spins)
    key_checks, key_ei, key_moments = jax.random.split(jax.random.key(args.seed), 3)
    out = checks.posterior_predictive_checks(key_checks, tree, spins,
                                             num_draws=args.posterior_draws,
                                             progress=not args.no_progress)
    out["patterns"] = _trim_patterns(out["patterns"])
    types = None if data.cell_types is None else np.asarray(data.cell_types).astype(str)
    if types is None:
        types = posterior.cell_types(tree)
    has_ei = types is not None and all(np.sum(types == t) >= 2 for t in ("E", "I"))
    if not args.no_ei and has_ei and k_pairwise:
        out["ei"] = {"note": "not computed for a K-pairwise posterior: the population-only "
                             "comparison fits and marginalises pairwise models only"}
    elif not args.no_ei and has_ei:
        # the joint marginal needs Gibbs sampling per draw above the enumeration limit
        ei_draws = (args.posterior_draws if spins.shape[1] <= checks.MAX_EXACT_CHECK_NEURONS
                    else min(args.posterior_draws, 50))
        h_draws, J_draws = checks.parameter_draws(tree, ei_draws)
        out["ei"] = analyses.population_only_synchrony(
            key_ei, spins, types, posterior.neuron_ids(tree), h_draws, J_draws,
            max_excitatory=args.ei_max_e)
    if args.moments == "yes" or (args.moments == "auto"
                                   and spins.shape[1] > MAX_MOMENTS_AUTO_NEURONS):
        out["predictive_moments"] = _moments_json(checks.predictive_moments(
            key_moments, tree, spins, num_draws=args.moments_draws))
    out.update(posterior=str(args.posterior), data=str(args.data), seed=args.seed,
               bayes_ising_version=__version__)
    write_json(args.out, out, force=args.force)
    sync, info = out["synchrony"], out["information"]
    ratio = info.get("ratio")
    text = ("K-pairwise model (V(K) included): " if k_pairwise else "")
    text += (f"P(K): observed within the {sync['interval']:.0%} band for "
            f"{sync['fraction_in_band']:.0%} of K; ")
    if ratio:
        text += (f"{'I_K/IN' if k_pairwise else 'I2/IN'} = {ratio['median']:.3f} "
                 f"[{ratio['lower']:.3f}, {ratio['upper']:.3f}]"
                 + ("" if info["SN_reliable"] else " (SN unreliable: too few bins)") + "; ")
    if "ei" in out and "E" in out["ei"]:
        e = out["ei"]["E"]["log_ratio_population_only"]
        text += (f"E-only log P(K_E>={out['ei']['E']['k_high']}) ratio {e['median']:.2f} "
                 f"[{e['lower']:.2f}, {e['upper']:.2f}]; ")
    if "passed" in out.get("predictive_moments", {}):
        text += _moments_text(out["predictive_moments"])
    if info.get("ratio_warning"):
        print(f"bayes-ising check: warning: {info['ratio_warning']}", file=sys.stderr)
    print(text + f"written to {args.out}")
    return 0
