"""Import ConIII (Lee & Daniels 2019) for the comparison benchmarks, or explain why not.

ConIII 3.0.1 does not ``pip install`` under current SciPy (its ``setup.py`` and several of its
modules use NumPy functions that SciPy once re-exported, e.g. ``scipy.exp``). It does import
from its extracted source tree once those names are aliased back onto ``scipy``; see
``benchmarks/README.md`` for fetching the sdist. :func:`load` tries, in order:

1. ``import coniii`` (an installed copy);
2. the source directory named by the environment variable ``CONIII_SOURCE`` (the folder that
   holds the ``coniii`` package, e.g. ``.../coniii-3.0.1``), with the SciPy shim;

and returns the module, or ``None`` with the reason printed. Nothing of ConIII is part of this
repository. The shim sets attributes on the ``scipy`` module of this process only.
"""

from __future__ import annotations

import importlib
import os
import sys

# NumPy names that ConIII 3.0.1 reads from ``scipy`` (removed from SciPy's namespace)
_SCIPY_ALIASES = (
    "arctanh", "array", "binary_repr", "concatenate", "cosh", "diag", "diagonal", "dot", "exp",
    "inf", "linspace", "log", "mean", "ones", "outer", "pi", "real_if_close", "repeat", "shape",
    "sqrt", "sum", "tanh", "transpose", "tri", "zeros",
)


def _shim_scipy():
    import numpy
    import scipy

    for name in _SCIPY_ALIASES:
        if not hasattr(scipy, name) and hasattr(numpy, name):
            setattr(scipy, name, getattr(numpy, name))


def load(verbose=True):
    """The ``coniii`` module, or ``None`` (the reason is printed when ``verbose``)."""
    reasons = []
    try:
        _shim_scipy()  # harmless for a working installed copy, needed for 3.0.1
        return importlib.import_module("coniii")
    except Exception as err:  # ImportError, or ConIII failing inside its own imports
        reasons.append(f"import coniii: {type(err).__name__}: {err}")
        for name in [m for m in sys.modules if m == "coniii" or m.startswith("coniii.")]:
            del sys.modules[name]
    source = os.environ.get("CONIII_SOURCE")
    if source:
        if not os.path.isdir(os.path.join(source, "coniii")):
            reasons.append(f"CONIII_SOURCE={source!r} holds no 'coniii' package folder")
        else:
            sys.path.insert(0, os.path.abspath(source))
            try:
                _shim_scipy()
                return importlib.import_module("coniii")
            except Exception as err:
                reasons.append(f"CONIII_SOURCE={source}: {type(err).__name__}: {err}")
    else:
        reasons.append("CONIII_SOURCE not set (see benchmarks/README.md)")
    if verbose:
        print("ConIII not available, comparison skipped: " + "; ".join(reasons))
    return None


def skipped_reason():
    """One line for the benchmark JSON when :func:`load` returned None."""
    return ("ConIII not available: pip install coniii, or set CONIII_SOURCE to its extracted "
            "sdist (see benchmarks/README.md)")


def ensure_equations(coniii, num_neurons, cache_dir=None):
    """Make ``coniii.ising_eqn.ising_eqn_{N}_sym`` importable (ConIII's ``Enumerate`` and
    ``Ising`` model need it; ConIII ships N ≤ 9).

    Writes the file with ConIII's own ``enumerate.pairwise(N, sym=1)`` — which writes
    ``./ising_eqn/ising_eqn_{N}_sym.py`` relative to the working directory — inside
    ``cache_dir`` (default: env ``CONIII_CACHE`` or ``<tmp>/coniii_ising_eqn``), once, and adds
    that folder to the package's search path. Returns the file's path.
    """
    import tempfile

    importlib.import_module("coniii.ising_eqn")
    name = f"ising_eqn_{int(num_neurons)}_sym"
    shipped = os.path.join(os.path.dirname(coniii.ising_eqn.__file__), name + ".py")
    if os.path.exists(shipped):
        return shipped
    cache_dir = cache_dir or os.environ.get("CONIII_CACHE") or os.path.join(
        tempfile.gettempdir(), "coniii_ising_eqn")
    folder = os.path.join(cache_dir, "ising_eqn")
    path = os.path.join(folder, name + ".py")
    if not os.path.exists(path):
        os.makedirs(cache_dir, exist_ok=True)
        from coniii import enumerate as coniii_enumerate

        cwd = os.getcwd()
        try:
            os.chdir(cache_dir)
            coniii_enumerate.pairwise(int(num_neurons), sym=1)
        finally:
            os.chdir(cwd)
    if folder not in coniii.ising_eqn.__path__:
        coniii.ising_eqn.__path__.append(folder)
    # import it here (Python compiles the large generated file once and caches the bytecode)
    importlib.import_module(f"coniii.ising_eqn.{name}")
    return path
