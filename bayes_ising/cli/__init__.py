"""The ``bayes-ising`` command.

Each verb lives in its own module under :mod:`bayes_ising.cli.commands` and exposes
``register(subparsers, parents)``: it adds its sub-parser and sets ``func`` to a function
``run(args) -> int``. This module owns the float64 switch and the exit codes (the flags all
verbs share — data selection, sampler sizes, deprecated aliases — live in
:mod:`bayes_ising.cli.commands._common`, which the verbs import; this module imports the verbs
only when it builds the parser)

* 0 — success;
* 2 — bad input or usage: one line on stderr naming the problem, no traceback;
* 1 — internal error (traceback shown, since it is a bug).
"""

import argparse
import importlib
import os
import sys

from bayes_ising.cli.commands._common import (
    add_convention_flag,
    add_data_selection_flags,
    load_selected_data,
    selection_flags,
)
from bayes_ising.errors import BayesIsingError

__all__ = ["main", "build_parser", "add_data_selection_flags", "load_selected_data",
           "selection_flags", "add_convention_flag", "VERBS"]

#: verb name -> module under bayes_ising.cli.commands (the order is the order of ``--help``)
VERBS = {
    "summary": "summary",
    "mle": "mle",
    "fit": "fit",
    "diagnose": "diagnose",
    "check": "check",
    "thermo": "thermo",
    "compare-mle": "compare_mle",
    "compare-families": "compare_families",
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


def build_parser():
    from bayes_ising import __version__

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
            if err.errno and err.strerror and err.strerror != os.strerror(err.errno):
                message += f" ({err.strerror})"  # our own explanation, e.g. packaged models
        print(f"bayes-ising: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("bayes-ising: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
