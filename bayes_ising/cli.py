"""The ``bayes-ising`` command.

Each verb lives in its own module under :mod:`bayes_ising.commands` and exposes
``register(subparsers, parents)``: it adds its sub-parser and sets ``func`` to a function
``run(args) -> int``. This module owns what all verbs share: the data-selection flags (named as
in the Python API), the float64 switch, and the exit codes

* 0 — success;
* 2 — bad input or usage: one line on stderr naming the problem, no traceback;
* 1 — internal error (traceback shown, since it is a bug).
"""

import argparse
import importlib
import os
import sys

from .errors import BayesIsingError

__all__ = ["main", "build_parser", "add_data_selection_flags", "load_selected_data",
           "selection_flags", "add_convention_flag", "VERBS"]

#: verb name -> module under bayes_ising.commands (the order is the order of ``--help``)
VERBS = {
    "summary": "summary",
    "mle": "mle",
    "fit": "fit",
    "diagnose": "diagnose",
    "check": "check",
    "thermo": "thermo",
    "compare-mle": "compare_mle",
    "report": "report",
    "study": "study",
    "demo": "demo",
    "batch": "batch",
}


class _UsageError(BayesIsingError):
    pass


class _Parser(argparse.ArgumentParser):
    """argparse that reports usage errors as exit 2 with one line (argparse's own convention)."""

    def error(self, message):
        raise _UsageError(f"{self.prog}: {message}")


def add_data_selection_flags(parser, posterior=False):
    """The flags every data-reading verb shares; names follow :meth:`SpikeData.select` and
    :func:`bayes_ising.provenance.select`. ``posterior``: the verb reads a posterior, whose
    recorded selection is the default (adds ``--allow-other-data``)."""
    g = parser.add_argument_group("data selection")
    g.add_argument("--bin-size", type=float, default=None,
                   help="bin width for spike times, in --time-units (required for spike times)")
    g.add_argument("--time-units", default=None, choices=["s", "ms", "us"],
                   help="units of spike times and --bin-size (default: the file's, else s)")
    g.add_argument("--population", default=None,
                   help="cell types to keep, comma separated (e.g. E, I or E,I)")
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
    convention, converted exactly by :func:`bayes_ising.ising.to_lattice_gas`."""
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
    applied (:func:`bayes_ising.provenance.apply`), and data that do not match the record are
    refused (DataError: exit 2).
    """
    from . import data as data_module
    from . import provenance

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


def build_parser():
    from . import __version__

    parser = _Parser(prog="bayes-ising",
                     description="Bayesian pairwise maximum-entropy (Ising) analysis of spiking.")
    parser.add_argument("--version", action="version", version=f"bayes_ising {__version__}")
    sub = parser.add_subparsers(dest="verb", metavar="VERB", parser_class=_Parser)
    sub.required = True
    for verb, module_name in VERBS.items():
        try:
            module = importlib.import_module(f".commands.{module_name}", __package__)
        except ModuleNotFoundError as err:
            if err.name and err.name.endswith(f"commands.{module_name}"):
                continue  # verb not built yet
            raise
        module.register(sub, verb)
    return parser


#: where compiled XLA programs persist between runs (``BAYES_ISING_JAX_CACHE``; "off" disables)
DEFAULT_JAX_CACHE = os.path.join("~", ".cache", "bayes_ising", "jax")


def _configure_jax():
    """float64, one CPU device per core (chosen before JAX starts: the CLI is an edge), and
    JAX's persistent compilation cache, so that a second ``fit`` of the same shapes skips the
    compilation of its NUTS program (seconds of every short run)."""
    if "jax" not in sys.modules:
        cores = os.cpu_count() or 1
        flags = os.environ.get("XLA_FLAGS", "")
        if "xla_force_host_platform_device_count" not in flags:
            os.environ["XLA_FLAGS"] = (
                f"{flags} --xla_force_host_platform_device_count={min(cores, 8)}"
            ).strip()
    import jax

    jax.config.update("jax_enable_x64", True)
    cache = os.environ.get("BAYES_ISING_JAX_CACHE", DEFAULT_JAX_CACHE)
    if cache.lower() not in ("", "0", "off", "none"):
        jax.config.update("jax_compilation_cache_dir", os.path.expanduser(cache))
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
        _configure_jax()
        return int(args.func(args) or 0)
    except (BayesIsingError, FileNotFoundError, IsADirectoryError, PermissionError) as err:
        message = str(err).splitlines()[0] if str(err) else type(err).__name__
        if isinstance(err, (FileNotFoundError, IsADirectoryError, PermissionError)):
            message = f"{type(err).__name__}: {err.filename or message}" if getattr(
                err, "filename", None) else message
        print(f"bayes-ising: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("bayes-ising: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
