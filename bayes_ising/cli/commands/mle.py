"""``bayes-ising mle DATA --method exact|pseudo|boltzmann|independent --out FIT.json``.

Writes the fit as JSON (:meth:`bayes_ising.fit.mle.FitResult.to_dict`): ``neurons``, ``h``, ``J``
(N×N, symmetric, zero diagonal; E = −Σ h_i s_i − Σ_{i<j} J_ij s_i s_j), ``moment_error``,
``method``, ``iterations``, ``wall_time_s``, ``settings``, ``warnings``; ``--restarts K`` adds
``reliability`` (per-neuron cosine similarity across K optimiser restarts, beside the
firing-threshold rule), ``--walk-draws DRAWS`` adds ``adaptive_mcmc`` (95% intervals of
every parameter from adaptive Metropolis draws around the MLE), and fits sampled from Gibbs
chains carry ``model_check``.
"""

from __future__ import annotations

import sys
import warnings

from bayes_ising.cli.commands._common import (
    add_convention_flag,
    add_data_selection_flags,
    add_deprecated_alias,
    load_selected_data,
)
from bayes_ising.core.limits import MAX_EXACT_NEURONS
from bayes_ising.errors import BayesIsingError

METHODS = ("exact", "pseudo", "boltzmann", "independent")


def register(subparsers, name):
    parser = subparsers.add_parser(
        name, help="maximum-likelihood fit (exact, pseudolikelihood, Boltzmann, independent)",
        description=__doc__.split("\n\n")[0])
    parser.add_argument("data", help="spike data file (.npz, .npy, .mat, .nwb)")
    parser.add_argument("--method", choices=METHODS, default="exact",
                        help=f"exact (N <= {MAX_EXACT_NEURONS}, moment matching to --tol), "
                             "pseudo (any N), "
                             "boltzmann (Gibbs moments, started from pseudo), independent "
                             "(default: exact)")
    parser.add_argument("--l2", type=float, default=0.0,
                        help="L2 penalty on the couplings per bin (MAP under J ~ N(0, 1/(T l2))); "
                             "needed for a finite MLE when pairs never fire together")
    parser.add_argument("--tol", type=float, default=1e-6,
                        help="exact: stop when every moment error (gradient entry) is <= tol")
    parser.add_argument("--restarts", type=int, default=0, metavar="K",
                        help="add the cosine-similarity reliability table from K restarts")
    parser.add_argument("--cut", type=float, default=0.9,
                        help="cosine-similarity cut of the reliability table (default 0.9)")
    parser.add_argument("--walk-draws", type=int, default=0, metavar="DRAWS",
                        help="add 95%% intervals from DRAWS adaptive-Metropolis draws "
                             f"(N <= {MAX_EXACT_NEURONS})")
    add_deprecated_alias(parser, "--adaptive-mcmc", "--walk-draws", "walk_draws", type=int)
    parser.add_argument("--num-chains", type=int, default=512,
                        help="Gibbs chains for boltzmann fits and model checks (default 512)")
    parser.add_argument("--no-model-check", action="store_true",
                        help="skip simulating the fitted model (done for pseudo and boltzmann)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--out", required=True, help="output FIT.json")
    parser.add_argument("--force", action="store_true", help="overwrite --out if it exists")
    add_data_selection_flags(parser)
    add_convention_flag(parser)
    parser.set_defaults(func=run)
    return parser


def run(args) -> int:
    from bayes_ising.fit import mle

    # the fits' MLEWarnings are printed once by _run (and stored in the JSON)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", mle.MLEWarning)
        return _run(args)


def _run(args) -> int:
    import jax

    from bayes_ising import _io
    from bayes_ising.core import ising
    from bayes_ising.fit import mle

    if args.restarts and args.restarts < 2:
        raise BayesIsingError(f"--restarts needs at least 2 restarts, got {args.restarts}")
    if args.walk_draws < 0:
        raise BayesIsingError(f"--walk-draws must be >= 0, got {args.walk_draws}")
    _io.check_writable(args.out, args.force)
    data = load_selected_data(args)
    num_neurons = data.num_neurons
    if args.method == "exact" or args.walk_draws:
        what = "--method exact" if args.method == "exact" else "--walk-draws"
        ising.check_exact(num_neurons, what)
    key = jax.random.PRNGKey(args.seed)
    key_fit, key_check, key_restarts, key_mcmc = jax.random.split(key, 4)
    if args.method == "exact":
        fit = mle.fit_exact(data, l2=args.l2, tol=args.tol)
    elif args.method == "pseudo":
        fit = mle.fit_pseudo(data, l2=args.l2, rng_key=key_fit, num_chains=args.num_chains)
    elif args.method == "boltzmann":
        fit = mle.fit_boltzmann(key_fit, data, l2=args.l2, num_chains=args.num_chains)
    else:
        fit = mle.fit_independent(data)
    result = fit.to_dict()
    result["settings"]["seed"] = args.seed
    if args.convention == "01":
        a, b = ising.convert(fit.h, fit.J, "01")
        result["lattice_gas"] = {"a": a, "b": b, "convention": "01: x = (s + 1) / 2, "
                                 "-E = sum_i a_i x_i + sum_{i<j} b_ij x_i x_j + const"}
    result["data"] = {"source": str(data.source), "num_bins": int(data.num_bins),
                      "num_neurons": int(num_neurons)}
    if args.method in ("pseudo", "boltzmann") and not args.no_model_check:
        result["model_check"] = mle.model_check(key_check, fit.h, fit.J, data,
                                                num_chains=args.num_chains)
    if args.restarts:
        result["reliability"] = mle.restart_reliability(
            key_restarts, data, num_restarts=args.restarts, cut=args.cut, l2=args.l2)
    if args.walk_draws:
        exact_fit = fit if args.method == "exact" else mle.fit_exact(data, l2=args.l2)
        draws = mle.mle_parameter_draws(key_mcmc, data, exact_fit, args.walk_draws,
                                        l2=args.l2)
        result["adaptive_mcmc"] = {
            "h_interval": draws["h_interval"], "J_interval": draws["J_interval"],
            "acceptance_rate": draws["acceptance_rate"], "settings": draws["settings"],
            "warnings": draws["warnings"],
        }
    _io.write_json(args.out, result, force=args.force)
    errors = fit.moment_error
    print(f"{fit.method} fit of {num_neurons} neurons, {data.num_bins} bins: "
          f"max |dm| = {errors['max_abs_mean']:.3g}, max |dQ| = {errors['max_abs_pair']:.3g} "
          f"({errors.get('source', 'exact')}), {fit.iterations} iterations, "
          f"{fit.wall_time_s:.2f} s{'' if fit.converged else ', NOT converged'}")
    if "model_check" in result:
        check = result["model_check"]
        print(f"model check: {check['verdict']} ({check.get('reason', '')})")
    for message in fit.warnings:
        print(f"warning: {message}", file=sys.stderr)
    print(f"wrote {args.out}")
    return 0
