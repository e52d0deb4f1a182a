"""``bayes-ising fit``: sample the posterior over fields and couplings with NUTS.

    bayes-ising fit DATA --likelihood exact|pseudo [--adjust none|curvature|mode|mode+curvature]
        [--model models/default.toml] [--chains C] [--draws D] [--warmup W] [--seed S]
        --out POSTERIOR.nc [--force] [--no-progress] [data-selection flags]

Writes an ArviZ netCDF posterior (see :func:`bayes_ising.bayes.fit_posterior`) and prints a
one-paragraph convergence summary (max R-hat, min ESS, divergences, time). ``--likelihood
exact`` with more than 22 neurons exits with status 2.
"""

__all__ = ["register", "run"]


def register(subparsers, name):
    from ..cli import add_convention_flag, add_data_selection_flags
    from ..model_spec import ADJUSTMENTS, LIKELIHOODS

    parser = subparsers.add_parser(
        name, help="Bayesian posterior over h and J with NUTS (ArviZ netCDF)",
        description=__doc__.split("\n\n")[0])
    parser.add_argument("data", metavar="DATA", help="spike data (.npz, .mat, .nwb)")
    parser.add_argument("--likelihood", choices=LIKELIHOODS, default=None,
                        help="exact (enumeration, N <= 22) or pseudo (any N); default: the "
                             "model file's")
    parser.add_argument("--adjust", choices=ADJUSTMENTS, default=None,
                        help="pseudo-posterior calibration (default: the model file's, "
                             "mode+curvature in models/default.toml; see docs/calibration.md)")
    parser.add_argument("--model", default=None, metavar="MODEL.toml",
                        help="model spec: priors and sampler settings (default: "
                             "models/default.toml's values)")
    parser.add_argument("--chains", type=int, default=None, help="number of chains")
    parser.add_argument("--draws", type=int, default=None, help="draws per chain after warmup")
    parser.add_argument("--warmup", type=int, default=None, help="warmup iterations per chain")
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
    from .. import bayes, diagnostics, ising
    from .._io import check_writable
    from ..cli import load_selected_data
    from ..errors import BayesIsingError, TooManyNeuronsError

    for flag in ("chains", "draws"):
        value = getattr(args, flag)
        if value is not None and value < 1:
            raise BayesIsingError(f"--{flag} must be >= 1, got {value}")
    if args.warmup is not None and args.warmup < 0:
        raise BayesIsingError(f"--warmup must be >= 0, got {args.warmup}")
    check_writable(args.out, args.force)  # fail before sampling, not after
    spec = bayes.load_model_spec(args.model) if args.model else bayes.default_model_spec()
    likelihood = args.likelihood or spec.likelihood
    data = load_selected_data(args)
    if likelihood == "exact" and data.num_neurons > ising.MAX_EXACT_NEURONS:
        raise TooManyNeuronsError(
            f"--likelihood exact enumerates 2^N states and is limited to N <= "
            f"{ising.MAX_EXACT_NEURONS} neurons; the selected data have N = {data.num_neurons} "
            "(use --likelihood pseudo, or select fewer neurons with --population/--min-rate)"
        )
    tree = bayes.fit_posterior(
        args.seed, data, spec, likelihood=likelihood, adjust=args.adjust,
        num_chains=args.chains, num_draws=args.draws, num_warmup=args.warmup,
        progress=not args.no_progress,
    )
    if args.convention == "01":
        tree["lattice_gas"] = lattice_gas_group(tree)
    bayes.save_posterior(tree, args.out, force=args.force)
    summary = bayes.convergence_summary(tree)
    print(bayes.format_convergence_summary(summary, tree))
    validity = diagnostics.posterior_validity(tree)
    print(("valid: " if validity["valid"] else "NOT valid: ") + validity["validity_reason"])
    print(f"posterior: {args.out}")
    return 0


def lattice_gas_group(tree):
    """The posterior's draws in the 0/1 convention (group ``lattice_gas``): ``a`` (chain,
    draw, neuron) and ``b`` (chain, draw, pair, in the posterior's pair order), each draw
    converted exactly by :func:`bayes_ising.ising.to_lattice_gas`."""
    import xarray as xr

    from .. import ising, posterior

    group = posterior.posterior_group(tree)
    shape = (group.sizes["chain"], group.sizes["draw"])
    h, J = posterior.posterior_draws(tree)
    a, b = ising.convert(h, J, "01")
    first, second = posterior.pair_members(tree)
    return xr.DataTree(xr.Dataset({
        "a": (("chain", "draw", "neuron"), a.reshape(shape + a.shape[1:])),
        "b": (("chain", "draw", "pair"), b[:, first, second].reshape(shape + (first.size,))),
    }, coords={"neuron": group["neuron"].values}, attrs={
        "convention": "01: x = (s + 1) / 2, -E = sum_i a_i x_i + sum_{i<j} b_ij x_i x_j"}))
