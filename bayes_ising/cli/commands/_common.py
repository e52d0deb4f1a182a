"""What the verbs share: data-selection flags, the sampler-size vocabulary, deprecated aliases.

The verbs import this module (never :mod:`bayes_ising.cli`, which imports the verbs), so there
is no import cycle. One vocabulary across Python, TOML, JSON and the command line, in NumPyro's
style: ``--num-chains``, ``--num-draws``, ``--num-warmup`` (MCMC sizes), ``--posterior-draws``
(how many posterior draws a verb evaluates), ``--walk-draws`` (the adaptive-Metropolis walk),
``--num-sweeps`` (Gibbs sweeps). Old spellings keep working for one release as hidden aliases
that print a one-line deprecation notice on stderr (:func:`add_deprecated_alias`).
"""

import argparse
import sys

__all__ = ["add_data_selection_flags", "selection_flags", "load_selected_data",
           "add_deprecated_alias", "add_sampler_flags", "check_counts", "population_flag",
           "add_convention_flag"]


class _DeprecatedAlias(argparse.Action):
    """Store into the new flag's ``dest``, telling the user once on stderr to use ``new``."""

    def __init__(self, option_strings, dest, new=None, **kwargs):
        self.new = new
        super().__init__(option_strings, dest, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        print(f"bayes-ising: warning: {option_string} is deprecated and will be removed; use "
              f"{self.new}", file=sys.stderr)
        setattr(namespace, self.dest, values if self.nargs != 0 else self.const)


def add_deprecated_alias(parser, old, new, dest, **kwargs):
    """A hidden flag ``old`` (``--help`` does not list it) meaning ``new`` (same ``dest``)."""
    parser.add_argument(old, dest=dest, action=_DeprecatedAlias, new=new,
                        default=argparse.SUPPRESS, help=argparse.SUPPRESS, **kwargs)


def add_sampler_flags(parser, *, defaults_from="the model file"):
    """``--num-chains``, ``--num-draws``, ``--num-warmup`` (and the old ``--chains``,
    ``--draws``, ``--warmup`` as deprecated aliases); None means the model spec's value."""
    g = parser.add_argument_group("sampler sizes")
    for name, what in (("chains", "number of chains"),
                       ("draws", "draws per chain after warmup"),
                       ("warmup", "warmup iterations per chain")):
        g.add_argument(f"--num-{name}", dest=f"num_{name}", type=int, default=None,
                       metavar="K", help=f"{what} (default: {defaults_from}'s)")
        add_deprecated_alias(g, f"--{name}", f"--num-{name}", f"num_{name}", type=int)
    return g


def check_counts(args, **minimum):
    """Raise BayesIsingError when a count flag is below its minimum, e.g.
    ``check_counts(args, num_chains=1, num_warmup=0)``; None values are skipped."""
    from bayes_ising.errors import BayesIsingError

    for dest, low in minimum.items():
        value = getattr(args, dest, None)
        if value is not None and value < low:
            flag = "--" + dest.replace("_", "-")
            raise BayesIsingError(f"{flag} must be >= {low}, got {value}")


def population_flag(value):
    """The ``--population`` text as the package spells it: cell types joined by "+" ("E+I");
    the older "E,I" is accepted."""
    if value is None:
        return None
    return "+".join(part.strip() for part in str(value).replace(",", "+").split("+")
                    if part.strip())


def add_data_selection_flags(parser, posterior=False):
    """The flags every data-reading verb shares; names follow :meth:`SpikeData.select` and
    :func:`bayes_ising.fit.provenance.select`. ``posterior``: the verb reads a posterior, whose
    recorded selection is the default (adds ``--allow-other-data``)."""
    g = parser.add_argument_group("data selection")
    g.add_argument("--bin-size", type=float, default=None,
                   help="bin width for spike times, in --time-units (required for spike times)")
    g.add_argument("--time-units", default=None, choices=["s", "ms", "us"],
                   help="units of spike times and --bin-size (default: the file's, else s)")
    g.add_argument("--population", default=None,
                   help="cell types to keep, joined by + (E, I or E+I; E,I is accepted)")
    g.add_argument("--state", default=None, help="keep only bins of this state (e.g. wake)")
    g.add_argument("--min-rate", type=float, default=None,
                   help="keep neurons firing in at least this fraction of bins")
    g.add_argument("--neurons", default=None, metavar="ID,ID,...",
                   help="keep only these neuron ids (after --state/--population/--min-rate)")
    g.add_argument("--max-neurons", type=int, default=None, metavar="K",
                   help="keep the K most active neurons (highest firing probability in the "
                        "kept bins; ties keep the file's order), applied last")
    if posterior:
        g.description = ("Default: the selection recorded in the posterior at fit time; data "
                         "that do not match it are refused.")
        g.add_argument("--allow-other-data", action="store_true",
                       help="accept data other than the fit's recorded file and bins (the "
                            "posterior's neurons must still be present)")
    g.add_argument("--variable", default=None,
                   help="MATLAB variable holding the raster (when the file has several)")
    g.add_argument("--orientation", default=None, choices=["bins-by-neurons", "neurons-by-bins"],
                   help="force the raster orientation (default: more bins than neurons)")
    g.add_argument("--states-table", default=None,
                   help="NWB: interval table holding the states, e.g. sleep_states (default: "
                        "the one candidate)")
    g.add_argument("--state-column", default=None,
                   help="NWB: column of that table naming the state, e.g. label (default: the "
                        "one candidate, else the first tag)")
    g.add_argument("--cell-type-column", default=None,
                   help="NWB: Units column holding cell types, e.g. cell_class (default: the "
                        "one candidate)")
    return parser


def add_convention_flag(parser):
    """``--convention pm1|01``: also write the parameters in the 0/1 ("lattice gas")
    convention, converted exactly by :func:`bayes_ising.core.ising.to_lattice_gas`."""
    parser.add_argument(
        "--convention", choices=["pm1", "01"], default="pm1",
        help="parameter convention written: pm1 (spins ±1, the default) or 01 (spins 0/1: "
             "a_i = 2h_i - 2 sum_j J_ij, b_ij = 4 J_ij, added beside the ±1 values)")
    return parser


def selection_flags(args):
    """The selection flags given on the command line (absent ones are None)."""
    return {"state": args.state, "population": args.population, "min_rate": args.min_rate,
            "neurons": getattr(args, "neurons", None),
            "max_neurons": getattr(args, "max_neurons", None)}


def load_selected_data(args, tree=None):
    """Load ``args.data`` and apply the data-selection flags; returns a SpikeData.

    With a posterior ``tree`` and no selection flags, the selection recorded at fit time is
    applied (:func:`bayes_ising.fit.provenance.apply`), and data that do not match the record are
    refused (DataError: exit 2).
    """
    from bayes_ising import data as data_module
    from bayes_ising.fit import provenance

    rec = provenance.recorded(tree) if tree is not None else None
    bin_size, time_units = args.bin_size, args.time_units
    if rec is not None and bin_size is None:
        bin_size, time_units = rec.get("bin_size"), time_units or rec.get("time_units")
    loaded = data_module.load(
        args.data, bin_size=bin_size, time_units=time_units, variable=args.variable,
        orientation=args.orientation, states_table=getattr(args, "states_table", None),
        state_column=getattr(args, "state_column", None),
        cell_type_column=getattr(args, "cell_type_column", None))
    if tree is None:
        return provenance.select(loaded, **selection_flags(args))
    return provenance.apply(tree, loaded, selection_flags(args), path=args.data,
                            allow_other_data=getattr(args, "allow_other_data", False))
