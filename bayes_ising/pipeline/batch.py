"""Many fits on Dask distributed: recordings × states × populations × subsamples × models.

A **plan** (TOML, validated like the model specs) names datasets and blocks of fits; each block
is the Cartesian product of its lists::

    name = "ei_sleep_states"
    out = "results/ei_sleep_states"        # default output folder (relative to the plan)

    [datasets]
    ei = "ei_sleep"                        # the embedded dataset
    retina = { source = "../data/retina15.mat", variable = "raster" }   # a file + load options

    [defaults]                             # apply to every [[fits]] block unless it overrides
    kind = "bayes"                         # "bayes" (posterior, netCDF) or "mle" (JSON)
    num_chains = 4
    num_draws = 500
    num_warmup = 200
    seed = 0

    [[fits]]
    datasets = ["ei"]                      # default: every dataset
    states = ["wake", "deep"]              # "all" = every bin (default)
    populations = ["E+I", "E"]             # cell types joined by "+" or ","; "all" (default)
    min_rate = 0.05                        # keep neurons firing in ≥ 5% of the selected bins
    subsample_sizes = [12]                 # random neuron subsets of this size ...
    subsample_seeds = [0, 1]               # ... drawn with these seeds (NumPy default_rng)
    models = ["default"]                   # model specs (bayes): a packaged name or a TOML path
    likelihood = "exact"                   # or ["exact", "pseudo"]; default: the spec's

Every fit becomes a :class:`FitTask` whose **key** is the SHA-256 of everything that determines
its result: the data (the bytes of the file, or the embedded dataset's name, seed and
settings), the load options, the selection, the model spec's content, the likelihood,
adjustment and sampler settings, the seed and the package version. The fit writes exactly one
file, ``<kind>-<key[:20]>.nc`` (posterior DataTree, :func:`bayes_ising.fit.bayes.save_posterior`)
or ``.json`` (:class:`bayes_ising.fit.mle.FitResult`), atomically, with the key and the summary row
stored inside. A rerun opens every existing result, checks that it loads and that its stored
key matches, and skips it; a corrupted or truncated file is redone. So a killed run resumes
where it stopped. Failures (bad data, impossible selections, crashed workers) are collected
with their messages in ``failures.json`` and the summary's ``error`` column and never stop the
other fits; a rerun retries them.

Fits run as tasks on Dask distributed: a :class:`distributed.LocalCluster` of single-threaded
worker *processes* started with ``spawn`` (forking a process in which JAX has started can
deadlock), or an existing scheduler by address (``tcp://host:8786``: dask-jobqueue, SLURM,
Kubernetes ...; the workers need the package installed and the output folder on a shared file
system). The task function :func:`execute_task` is importable at module level, as spawned
workers must import it. At the end a summary table (one row per fit) is written as
``summary.csv`` and ``summary.parquet``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import json
import math
import os
import sys
import time
import traceback
import warnings
from dataclasses import dataclass
from pathlib import Path

from bayes_ising.errors import DataError, ModelSpecError
from bayes_ising.fit.model_spec import read_toml

__all__ = [
    "KINDS",
    "EMBEDDED_DATASETS",
    "SUMMARY_COLUMNS",
    "DatasetEntry",
    "Plan",
    "FitTask",
    "BatchResult",
    "load_plan",
    "plan_from_dict",
    "expand_plan",
    "result_path",
    "read_result",
    "select_data",
    "fit",
    "execute_task",
    "run_batch",
    "local_cluster",
    "format_summary",
]

#: kinds of fit: a Bayesian posterior (netCDF) or a maximum-likelihood fit (JSON)
KINDS = ("bayes", "mle")
#: dataset sources that are generated in-process rather than read from a file
EMBEDDED_DATASETS = ("ei_sleep",)
#: columns of the summary table, in order
SUMMARY_COLUMNS = (
    "dataset", "state", "population", "subsample_size", "subsample_seed", "num_neurons",
    "num_bins", "kind", "likelihood", "adjust", "model", "converged", "valid", "max_rhat",
    "min_ess_bulk", "min_ess_tail", "num_divergent", "reasons", "flagged_neurons",
    "max_moment_error", "validity_reason", "wall_time_s",
    "status", "result_file", "key", "error", "warnings",
)
#: length of the key prefix in result file names (80 bits: collisions are not a concern)
_KEY_CHARS = 20

_PLAN_KEYS = {"name", "description", "out", "datasets", "defaults", "fits"}
_DATASET_KEYS = {"source", "bin_size", "time_units", "variable", "orientation"}
_FIT_KEYS = {
    "datasets", "states", "populations", "min_rate", "subsample_sizes", "subsample_seeds",
    "models", "kind", "likelihood", "adjust", "num_chains", "num_draws", "num_warmup", "seed",
    "l2",
}
#: old plan keys, accepted with a deprecation warning (one vocabulary: num_chains, ...)
_DEPRECATED_FIT_KEYS = {"chains": "num_chains", "draws": "num_draws", "warmup": "num_warmup"}
_LIST_KEYS = {"datasets", "states", "populations", "subsample_sizes", "subsample_seeds",
              "models", "likelihood"}


# --------------------------------------------------------------------------------------------
# The plan
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DatasetEntry:
    """One dataset of a plan: ``source`` is an embedded name or an absolute file path."""

    name: str
    source: str
    load: dict  # bin_size, time_units, variable, orientation (None when not given)

    @property
    def embedded(self):
        return self.source in EMBEDDED_DATASETS


@dataclass(frozen=True)
class Plan:
    """A validated plan: datasets by name and the fit blocks (defaults merged in)."""

    name: str
    description: str
    source: str  # the plan file ("<dict>" when built from a dict)
    out: str | None  # default output folder (absolute), or None
    datasets: dict  # name -> DatasetEntry
    fits: tuple  # of dicts with the keys of _FIT_KEYS (lists normalised)


def _fail(source, key, message):
    raise ModelSpecError(f"{source}: {key}: {message}")


def _as_list(value):
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _renamed_keys(block, where, source):
    """The block with the old keys (chains, draws, warmup) renamed, each with a warning."""
    import warnings

    out = dict(block)
    for old, new in _DEPRECATED_FIT_KEYS.items():
        if old in out:
            if new in out:
                _fail(source, f"{where}.{old}", f"give {new} or its deprecated spelling {old}, "
                                                "not both")
            warnings.warn(f"{source}: {where}.{old} is deprecated; write {new}", FutureWarning,
                          stacklevel=5)
            out[new] = out.pop(old)
    return out


def _check_fit_block(block, where, source, dataset_names, base):
    block = _renamed_keys(block, where, source)
    unknown = sorted(set(block) - _FIT_KEYS)
    if unknown:
        _fail(source, f"{where}.{unknown[0]}",
              f"unknown key (allowed: {', '.join(sorted(_FIT_KEYS))})")
    out = {}
    for key, value in block.items():
        name = f"{where}.{key}"
        values = _as_list(value) if key in _LIST_KEYS else [value]
        if key in _LIST_KEYS and not values:
            _fail(source, name, "empty list")
        for v in values:
            _check_fit_value(source, name, key, v, dataset_names)
        out[key] = values if key in _LIST_KEYS else value
        if key == "models":
            out[key] = [_model_entry(v, base, source, name) for v in values]
    return out


def _model_entry(value, base, source, name):
    """A plan's model: "default", a packaged name, or a TOML path relative to the plan."""
    from bayes_ising.fit.model_spec import packaged_models

    if value == "default":
        return value
    path = (base / value).resolve()
    if path.is_file():
        return str(path)
    stem = value[:-5] if value.endswith(".toml") else value
    if "/" not in value and stem in packaged_models():
        return stem
    _fail(source, name, f"model spec file not found: {path} (and no packaged model named "
                        f"{value!r}: {', '.join(packaged_models())})")


def _check_fit_value(source, name, key, v, dataset_names):
    from bayes_ising.fit.model_spec import ADJUSTMENTS, LIKELIHOODS

    def is_int(x):
        return isinstance(x, int) and not isinstance(x, bool)

    def is_real(x):
        return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)

    if key == "datasets":
        if v not in dataset_names:
            _fail(source, name, f"unknown dataset {v!r} (the plan defines: "
                                f"{', '.join(sorted(dataset_names)) or 'none'})")
    elif key in ("states", "populations", "models"):
        if not isinstance(v, str) or not v.strip():
            _fail(source, name, f"expected non-empty strings, got {v!r}")
    elif key == "kind":
        if v not in KINDS:
            _fail(source, name, f"must be one of {KINDS}, got {v!r}")
    elif key == "likelihood":
        if v not in LIKELIHOODS:
            _fail(source, name, f"must be one of {LIKELIHOODS}, got {v!r}")
    elif key == "adjust":
        if v not in ADJUSTMENTS:
            _fail(source, name, f"must be one of {ADJUSTMENTS}, got {v!r}")
    elif key in ("num_chains", "num_draws", "subsample_sizes"):
        if not is_int(v) or v < (2 if key == "subsample_sizes" else 1):
            _fail(source, name, f"must be an integer >= {2 if key == 'subsample_sizes' else 1}, "
                                f"got {v!r}")
    elif key in ("num_warmup", "seed", "subsample_seeds"):
        if not is_int(v) or v < 0:
            _fail(source, name, f"must be an integer >= 0, got {v!r}")
    elif key == "min_rate":
        if not is_real(v) or not 0.0 <= v <= 1.0:
            _fail(source, name, f"must be a number in [0, 1], got {v!r}")
    elif key == "l2":
        if not is_real(v) or v < 0:
            _fail(source, name, f"must be a number >= 0, got {v!r}")


def plan_from_dict(data, source="<dict>", base_dir=None):
    """Validate a plan given as a dict (the TOML layout, see the module docstring).

    Relative paths (datasets, models, ``out``) are resolved against ``base_dir`` (default: the
    current folder).

    Raises
    ------
    ModelSpecError
        An unknown key or an impossible value; the message names the key and ``source``.
    FileNotFoundError
        A dataset file that does not exist.
    """
    base = Path(base_dir if base_dir is not None else ".").resolve()
    if not isinstance(data, dict):
        _fail(source, "<plan>", "expected a table")
    unknown = sorted(set(data) - _PLAN_KEYS)
    if unknown:
        _fail(source, unknown[0], f"unknown key (allowed: {', '.join(sorted(_PLAN_KEYS))})")
    for key in ("name", "description", "out"):
        if key in data and not isinstance(data[key], str):
            _fail(source, key, f"expected a string, got {data[key]!r}")

    raw_datasets = data.get("datasets")
    if not isinstance(raw_datasets, dict) or not raw_datasets:
        _fail(source, "datasets", "a plan needs a [datasets] table naming at least one dataset")
    datasets = {}
    for name, entry in raw_datasets.items():
        where = f"datasets.{name}"
        if isinstance(entry, str):
            entry = {"source": entry}
        if not isinstance(entry, dict):
            _fail(source, where, f"expected a string or a table, got {entry!r}")
        unknown = sorted(set(entry) - _DATASET_KEYS)
        if unknown:
            _fail(source, f"{where}.{unknown[0]}",
                  f"unknown key (allowed: {', '.join(sorted(_DATASET_KEYS))})")
        src = entry.get("source")
        if not isinstance(src, str) or not src:
            _fail(source, f"{where}.source", "needs a file path or an embedded dataset name "
                                             f"({', '.join(EMBEDDED_DATASETS)})")
        if src not in EMBEDDED_DATASETS:
            path = (base / src).resolve()
            if not path.is_file():
                raise FileNotFoundError(2, f"{source}: {where}.source: no such file", str(path))
            src = str(path)
        load = {k: entry.get(k) for k in sorted(_DATASET_KEYS - {"source"})}
        if load["bin_size"] is not None and not (
                isinstance(load["bin_size"], (int, float)) and load["bin_size"] > 0):
            _fail(source, f"{where}.bin_size", f"must be a positive number, got "
                                               f"{load['bin_size']!r}")
        datasets[name] = DatasetEntry(name=name, source=src, load=load)

    defaults = data.get("defaults", {})
    if not isinstance(defaults, dict):
        _fail(source, "defaults", "expected a table")
    defaults = _check_fit_block(defaults, "defaults", source, set(datasets), base)
    blocks = data.get("fits")
    if not isinstance(blocks, list) or not blocks:
        _fail(source, "fits", "a plan needs at least one [[fits]] block")
    fits = []
    for k, block in enumerate(blocks):
        if not isinstance(block, dict):
            _fail(source, f"fits[{k}]", "expected a table")
        merged = {**defaults, **_check_fit_block(block, f"fits[{k}]", source, set(datasets),
                                                 base)}
        fits.append(merged)
    out = data.get("out")
    return Plan(
        name=data.get("name", Path(source).stem if source != "<dict>" else "plan"),
        description=data.get("description", ""),
        source=str(source),
        out=str((base / out).resolve()) if out else None,
        datasets=datasets,
        fits=tuple(fits),
    )


def load_plan(path):
    """Read and validate a plan TOML file (paths inside are relative to the file's folder).

    Raises
    ------
    ModelSpecError
        Not valid TOML, an unknown key or an impossible value (naming the key and the file).
    FileNotFoundError
        The plan, a dataset file or a model spec file does not exist.
    """
    path = Path(path)
    data = read_toml(path)
    return plan_from_dict(data, source=str(path), base_dir=path.resolve().parent)


# --------------------------------------------------------------------------------------------
# Tasks and their content keys
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FitTask:
    """One fit: everything a worker needs, JSON-able (sent to workers, stored in the result)."""

    key: str  # SHA-256 (hex) of the identity below
    dataset: str  # the plan's name for the dataset
    source: str  # embedded name or absolute path
    load: dict
    state: str | None
    population: str | None  # label as in the plan ("E+I"), None = all neurons
    min_rate: float | None
    subsample_size: int | None
    subsample_seed: int | None
    kind: str
    likelihood: str
    adjust: str | None
    model: str | None  # path of the model spec, "default", or None (mle)
    spec_json: str | None  # the model spec (bayes), as ModelSpec.to_json()
    num_chains: int | None
    num_draws: int | None
    num_warmup: int | None
    seed: int
    l2: float
    version: str

    def to_dict(self):
        return dataclasses.asdict(self)

    @property
    def chains(self):
        """Deprecated: :attr:`num_chains`."""
        return self._renamed("chains", "num_chains")

    @property
    def draws(self):
        """Deprecated: :attr:`num_draws`."""
        return self._renamed("draws", "num_draws")

    @property
    def warmup(self):
        """Deprecated: :attr:`num_warmup`."""
        return self._renamed("warmup", "num_warmup")

    def _renamed(self, old, new):
        import warnings

        warnings.warn(f"FitTask.{old} is deprecated; use FitTask.{new}", DeprecationWarning,
                      stacklevel=3)
        return getattr(self, new)

    @property
    def file_name(self):
        return f"{self.kind}-{self.key[:_KEY_CHARS]}.{'nc' if self.kind == 'bayes' else 'json'}"

    @property
    def label(self):
        parts = [self.dataset, self.state or "all", self.population or "all"]
        if self.subsample_size:
            parts.append(f"N{self.subsample_size}s{self.subsample_seed}")
        parts += [self.kind, self.likelihood]
        return "/".join(parts)


@functools.cache
def _file_digest(path, size, mtime_ns):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _data_identity(entry):
    """What identifies a dataset's content: file bytes, or the embedded generator's settings."""
    if entry.embedded:
        from bayes_ising.data import datasets

        return {"embedded": entry.source, "seed": datasets.EI_SLEEP_SEED,
                "settings": datasets.EI_SLEEP_SETTINGS}
    stat = os.stat(entry.source)
    return {"sha256": _file_digest(entry.source, stat.st_size, stat.st_mtime_ns)}


def _population_types(label):
    if label is None:
        return None
    return [p.strip() for p in label.replace("+", ",").split(",") if p.strip()]


def _hash(identity):
    from bayes_ising._io import to_jsonable

    text = json.dumps(to_jsonable(identity), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def expand_plan(plan):
    """The plan's fits as a list of :class:`FitTask` (duplicates removed, plan order kept).

    Model specs are read here (so a bad spec stops the run before any fit); the data are not.
    """
    from bayes_ising import __version__
    from bayes_ising.fit.model_spec import default_model_spec, load_model_spec

    if isinstance(plan, (str, os.PathLike)):
        plan = load_plan(plan)
    identities = {name: _data_identity(entry) for name, entry in plan.datasets.items()}
    specs = {}
    tasks = {}
    for block in plan.fits:
        kind = block.get("kind", "bayes")
        models = block.get("models", ["default"]) if kind == "bayes" else [None]
        for dataset in block.get("datasets", list(plan.datasets)):
            entry = plan.datasets[dataset]
            for state in block.get("states", ["all"]):
                for population in block.get("populations", ["all"]):
                    for size in block.get("subsample_sizes", [None]):
                        seeds = block.get("subsample_seeds", [0]) if size else [None]
                        for sub_seed in seeds:
                            for model in models:
                                if model is not None and model not in specs:
                                    specs[model] = (default_model_spec() if model == "default"
                                                    else load_model_spec(model))
                                spec = specs.get(model)
                                likelihoods = block.get(
                                    "likelihood", [spec.likelihood if spec else "exact"])
                                for likelihood in likelihoods:
                                    task = _make_task(
                                        plan, entry, identities[dataset], block, kind, state,
                                        population, size, sub_seed, model, spec, likelihood,
                                        __version__)
                                    tasks.setdefault(task.key, task)
    return list(tasks.values())


def _make_task(plan, entry, identity, block, kind, state, population, size, sub_seed, model,
               spec, likelihood, version):
    state = None if state == "all" else state
    population = None if population == "all" else population
    adjust = None
    sizes = {"num_chains": None, "num_draws": None, "num_warmup": None}
    spec_json = None
    if kind == "bayes":
        adjust = (block.get("adjust", spec.adjust) if likelihood == "pseudo" else "none")
        sizes = {name: block.get(name, getattr(spec, name)) for name in sizes}
        spec_json = spec.to_json()
    seed = int(block.get("seed", 0))
    l2 = float(block.get("l2", 0.0))
    min_rate = block.get("min_rate")
    identity = {
        "data": identity,
        "load": entry.load,
        "selection": {"state": state, "population": _population_types(population),
                      "min_rate": min_rate, "subsample_size": size, "subsample_seed": sub_seed},
        "kind": kind,
        "likelihood": likelihood,
        "adjust": adjust,
        # the spec's content, not where it came from
        "spec": None if spec is None else spec.to_dict(),
        "sampler": sizes,
        "seed": seed,
        "l2": l2 if kind == "mle" else None,
        "version": version,
    }
    return FitTask(
        key=_hash(identity), dataset=entry.name, source=entry.source, load=dict(entry.load),
        state=state, population=population, min_rate=min_rate, subsample_size=size,
        subsample_seed=sub_seed, kind=kind, likelihood=likelihood, adjust=adjust,
        model=model, spec_json=spec_json, **sizes, seed=seed, l2=l2, version=version,
    )


# --------------------------------------------------------------------------------------------
# Running one fit (on a worker)
# --------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=4)
def _load_source(source, load_items):
    from bayes_ising import data as data_module

    if source == "ei_sleep":
        from bayes_ising.data import datasets

        return datasets.ei_sleep()
    return data_module.load(source, **dict(load_items))


def select_data(task):
    """Load the task's dataset and apply its selection and neuron subsample -> SpikeData.

    The subsample is ``sort(default_rng(subsample_seed).choice(N, subsample_size, replace=
    False))`` of the neurons left by the state/population/min_rate selection.

    Raises
    ------
    DataError
        The selection leaves no bins or neurons, or the subsample is larger than what is left.
    """
    import numpy as np

    data = _load_source(task.source, tuple(sorted(task.load.items())))
    data = data.select(population=_population_types(task.population), state=task.state,
                       min_rate=task.min_rate)
    if task.subsample_size:
        available = data.num_neurons
        if task.subsample_size > available:
            raise DataError(
                f"subsample of {task.subsample_size} neurons asked for, but the selection "
                f"(state={task.state or 'all'}, population={task.population or 'all'}, "
                f"min_rate={task.min_rate}) leaves only {available}")
        rng = np.random.default_rng(task.subsample_seed)
        keep = np.sort(rng.choice(available, task.subsample_size, replace=False))
        selection = {**data.selection, "subsample_size": task.subsample_size,
                     "subsample_seed": task.subsample_seed}
        data = dataclasses.replace(
            data, spins=data.spins[:, keep], neuron_ids=data.neuron_ids[keep],
            cell_types=None if data.cell_types is None else data.cell_types[keep],
            selection=selection)
    return data


def fit(task, data):
    """The default fit of a task: a posterior DataTree (bayes) or a FitResult (mle)."""
    import jax

    key = jax.random.PRNGKey(task.seed)
    if task.kind == "bayes":
        from bayes_ising.fit import bayes
        from bayes_ising.fit.model_spec import ModelSpec

        spec = ModelSpec.from_json(task.spec_json)
        return bayes.fit_posterior(
            key, data, spec, likelihood=task.likelihood, adjust=task.adjust,
            num_chains=task.num_chains, num_draws=task.num_draws, num_warmup=task.num_warmup,
            progress=False)
    from bayes_ising.fit import mle

    if task.likelihood == "exact":
        return mle.fit_exact(data, l2=task.l2)
    return mle.fit_pseudo(data, l2=task.l2, rng_key=key)


def _base_row(task, out_dir):
    return {
        "dataset": task.dataset, "state": task.state or "all",
        "population": task.population or "all", "subsample_size": task.subsample_size,
        "subsample_seed": task.subsample_seed, "num_neurons": None, "num_bins": None,
        "kind": task.kind, "likelihood": task.likelihood, "adjust": task.adjust,
        "model": task.model, "converged": None, "valid": None, "validity_reason": "",
        "max_rhat": math.nan,
        "min_ess_bulk": math.nan, "min_ess_tail": math.nan, "num_divergent": None,
        "reasons": "", "flagged_neurons": None,
        "max_moment_error": math.nan, "wall_time_s": math.nan, "status": "",
        "result_file": str(Path(out_dir) / task.file_name), "key": task.key, "error": "",
        "warnings": "",
    }


def _posterior_row(tree, row):
    """Convergence figures and the verdict of :func:`bayes_ising.analysis.diagnostics.diagnose`."""
    from bayes_ising.analysis import diagnostics
    from bayes_ising.core.convergence import rule_text
    from bayes_ising.fit import bayes

    summary = bayes.convergence_summary(tree)
    row.update(max_rhat=summary["max_rhat"], min_ess_bulk=summary["min_ess_bulk"],
               min_ess_tail=summary["min_ess_tail"], num_divergent=summary["num_divergent"])
    try:
        diagnosis = diagnostics.diagnose(tree)
    except Exception as err:  # noqa: BLE001 - keep the fit; say why the verdict is partial
        row.update(converged=bool(summary["converged"]),
                   reasons=f"diagnostics.diagnose failed ({type(err).__name__}: {err}); "
                           f"verdict from {rule_text()} only")
    else:
        row.update(converged=bool(diagnosis["converged"]), valid=bool(diagnosis["valid"]),
                   validity_reason=diagnosis["validity_reason"],
                   reasons="; ".join(diagnosis["reasons"]),
                   flagged_neurons=int(diagnosis["num_flagged"]))


def _write_result(task, result, row, path):
    from bayes_ising._io import to_jsonable, write_json

    row_json = json.dumps(to_jsonable(row))
    if task.kind == "bayes":
        from bayes_ising.fit import bayes

        result.attrs["batch_key"] = task.key
        result.attrs["batch_task"] = json.dumps(to_jsonable(task.to_dict()))
        result.attrs["batch_row"] = row_json
        bayes.save_posterior(result, path, force=True)
    else:
        write_json(path, {"batch_key": task.key, "task": task.to_dict(),
                          "row": json.loads(row_json), "fit": result.to_dict()}, force=True)


def execute_task(task, out_dir, fit_function=None):
    """Run one fit on a worker and write its result file; return its summary row (a dict).

    ``fit_function(task, data)`` (default :func:`fit`) returns a posterior DataTree (kind
    "bayes") or a :class:`~bayes_ising.fit.mle.FitResult` (kind "mle"). Errors are caught and
    returned in the row (``status = "failed"``, ``error``, ``traceback``); nothing is written
    then. A crash of the worker process itself is handled by Dask (the task is retried on
    another worker) and, past Dask's retry limit, reported by :func:`run_batch`.
    """
    import bayes_ising

    bayes_ising.enable_x64()  # a worker process is an edge, like the CLI
    fit_function = fit if fit_function is None else fit_function
    row = _base_row(task, out_dir)
    start = time.perf_counter()
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            data = select_data(task)
            row.update(num_neurons=data.num_neurons, num_bins=data.num_bins)
            result = fit_function(task, data)
            if task.kind == "bayes":
                _posterior_row(result, row)
            else:
                row.update(converged=bool(result.converged),
                           reasons="" if result.converged else "optimiser did not converge",
                           max_moment_error=max(
                    float(result.moment_error.get("max_abs_mean", math.nan)),
                    float(result.moment_error.get("max_abs_pair", math.nan))))
        messages = list(dict.fromkeys(str(w.message).splitlines()[0] for w in caught))
        row["warnings"] = "; ".join(messages)[:500]
        row["wall_time_s"] = time.perf_counter() - start
        row["status"] = "done"
        _write_result(task, result, row, row["result_file"])
    except Exception as err:  # noqa: BLE001 - every failure is reported, none stops the batch
        row.update(status="failed", wall_time_s=time.perf_counter() - start,
                   error=f"{type(err).__name__}: {err}",
                   traceback="".join(traceback.format_exception(err)))
    return row


# --------------------------------------------------------------------------------------------
# Existing results
# --------------------------------------------------------------------------------------------


def result_path(task, out_dir):
    return Path(out_dir) / task.file_name


def read_result(path, key):
    """The summary row stored in a result file, after checking that the file is valid.

    Valid: it loads completely (netCDF through :func:`bayes_ising.fit.bayes.load_posterior`, JSON
    through ``json``) and its stored key equals ``key``.

    Raises
    ------
    DataError
        The file is unreadable, truncated, or belongs to another fit.
    """
    path = Path(path)
    try:
        if path.suffix == ".nc":
            from bayes_ising.fit import bayes

            tree = bayes.load_posterior(path)
            stored, row = tree.attrs.get("batch_key"), tree.attrs.get("batch_row")
        else:
            with open(path) as f:
                content = json.load(f)
            stored, row = content.get("batch_key"), content.get("row")
            row = json.dumps(row)
        if stored != key:
            raise DataError(f"{path}: stored key {stored!r} does not match")
        row = json.loads(row)
        if not isinstance(row, dict):
            raise DataError(f"{path}: no summary row")
    except DataError:
        raise
    except Exception as err:  # noqa: BLE001 - any unreadable file is a bad result
        raise DataError(f"{path}: unreadable result ({type(err).__name__}: {err})") from None
    return row


# --------------------------------------------------------------------------------------------
# The batch driver
# --------------------------------------------------------------------------------------------


@dataclass
class BatchResult:
    """What :func:`run_batch` did: the summary table and where things were written."""

    summary: object  # pandas.DataFrame, one row per fit, columns SUMMARY_COLUMNS
    out_dir: Path
    num_done: int
    num_existing: int
    num_failed: int
    failures: list  # dicts: key, label, task, error, traceback
    wall_time_s: float

    @property
    def ok(self):
        return self.num_failed == 0


@contextlib.contextmanager
def local_cluster(num_workers, **cluster_kwargs):
    """A LocalCluster of ``num_workers`` single-threaded processes started with ``spawn``.

    Workers get ``XLA_PYTHON_CLIENT_PREALLOCATE=false`` unless it is set, so several JAX
    processes can share one GPU (each would otherwise reserve 75% of its memory).
    """
    import dask
    from distributed import LocalCluster

    env = {"XLA_PYTHON_CLIENT_PREALLOCATE": os.environ.get(
        "XLA_PYTHON_CLIENT_PREALLOCATE", "false")}
    # dashboard (when bokeh is installed) and HTTP routes on a free port: no clash between runs
    settings = dict(n_workers=int(num_workers), threads_per_worker=1, processes=True,
                    dashboard_address=":0", env=env)
    settings.update(cluster_kwargs)
    # kept set while the cluster lives: the nanny reads it again when it restarts a worker
    with dask.config.set({"distributed.worker.multiprocessing-method": "spawn"}):
        with LocalCluster(**settings) as cluster:
            yield cluster


def _log_to_stderr(message):
    print(message, file=sys.stderr, flush=True)


def run_batch(plan, out_dir=None, *, scheduler=None, client=None, num_workers=None,
              force=False, progress=True, fit_function=None, log=_log_to_stderr):
    """Run every fit of a plan that has no valid result yet; write the summary table.

    Parameters
    ----------
    plan : :class:`Plan` or path of a plan TOML file
    out_dir : output folder (default: the plan's ``out``, else ``<plan name>_results`` next to
        the plan file); results, ``summary.csv``, ``summary.parquet`` and ``failures.json`` go
        there. With a remote scheduler it must be on a file system the workers share.
    scheduler : address of a running Dask scheduler (``tcp://host:8786``); default: start a
        LocalCluster of ``num_workers`` (default: min(CPU count, fits to run)) processes
    client : an existing :class:`distributed.Client` (overrides ``scheduler``)
    force : redo every fit even when a valid result exists
    progress : show a progress bar (tqdm, on stderr) over the fits as they complete
    fit_function : ``fit_function(task, data)`` replacing :func:`fit` (must be importable at
        module level, as workers import it)
    log : callable taking one message (default: print to stderr)

    Returns
    -------
    :class:`BatchResult`
    """
    import pandas as pd

    start = time.perf_counter()
    if not isinstance(plan, Plan):
        plan = load_plan(plan)
    if out_dir is None:
        out_dir = plan.out or (Path(plan.source).resolve().parent / f"{plan.name}_results")
    out_dir = Path(out_dir).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    tasks = expand_plan(plan)

    rows = {}
    pending = []
    for task in tasks:
        path = result_path(task, out_dir)
        if path.exists() and not force:
            try:
                row = read_result(path, task.key)
            except DataError as err:
                log(f"redoing {task.label}: {err}")
            else:
                row.update(status="existing", result_file=str(path))
                rows[task.key] = row
                continue
        pending.append(task)
    log(f"batch {plan.name}: {len(tasks)} fits, {len(rows)} with valid results (skipped), "
        f"{len(pending)} to run; results in {out_dir}")

    failures = []
    if pending:
        with contextlib.ExitStack() as stack:
            if client is None:
                from distributed import Client

                if scheduler is None:
                    workers = num_workers or max(1, min(os.cpu_count() or 1, len(pending)))
                    cluster = stack.enter_context(local_cluster(workers))
                    client = stack.enter_context(Client(cluster))
                    log(f"LocalCluster of {workers} worker process(es); dashboard: "
                        f"{client.dashboard_link}")
                else:
                    client = stack.enter_context(Client(scheduler))
            rows.update(_run_pending(client, pending, out_dir, fit_function, progress, failures,
                                     log))

    ordered = [rows[t.key] for t in tasks]
    summary = pd.DataFrame(ordered).reindex(columns=list(SUMMARY_COLUMNS))
    _write_outputs(summary, failures, out_dir)
    counts = summary["status"].value_counts()
    result = BatchResult(
        summary=summary, out_dir=out_dir, num_done=int(counts.get("done", 0)),
        num_existing=int(counts.get("existing", 0)), num_failed=int(counts.get("failed", 0)),
        failures=failures, wall_time_s=time.perf_counter() - start)
    log(f"batch {plan.name}: {result.num_done} done, {result.num_existing} existing, "
        f"{result.num_failed} failed in {result.wall_time_s:.1f} s; summary in "
        f"{out_dir / 'summary.csv'}")
    return result


def _run_pending(client, pending, out_dir, fit_function, progress, failures, log):
    from distributed import as_completed
    from tqdm.auto import tqdm

    by_key = {}
    futures = []
    for task in pending:
        future = client.submit(execute_task, task, str(out_dir), fit_function,
                               key=f"bayes-ising-fit-{task.key}", pure=False)
        by_key[future.key] = task
        futures.append(future)
    rows = {}
    bar = tqdm(total=len(futures), unit="fit", disable=not progress, file=sys.stderr,
               desc="fits")
    with bar:
        for future in as_completed(futures):
            task = by_key[future.key]
            if future.status == "finished":
                row = future.result()
            else:  # the worker died too often (KilledWorker), or the task was cancelled
                try:
                    err = future.exception()
                except Exception as cancelled:  # noqa: BLE001 - CancelledError and the like
                    err = cancelled
                row = _base_row(task, out_dir)
                row.update(status="failed", error=f"{type(err).__name__}: {err}",
                           traceback="".join(traceback.format_exception(err)))
            tb = row.pop("traceback", "")
            if row["status"] == "failed":
                failures.append({"key": task.key, "label": task.label, "error": row["error"],
                                 "traceback": tb, "task": task.to_dict()})
                row["result_file"] = ""
                bar.write(f"failed: {task.label}: {row['error']}", file=sys.stderr)
            rows[task.key] = row
            bar.update(1)
            future.release()
    return rows


def _write_outputs(summary, failures, out_dir):
    from bayes_ising._io import atomic_path, write_json

    with atomic_path(out_dir / "summary.csv", force=True) as tmp:
        summary.to_csv(tmp, index=False)
    try:
        import pyarrow  # noqa: F401
    except ImportError:  # pragma: no cover - pyarrow is in the "dask" extra
        warnings.warn("pyarrow is not installed: summary.parquet not written", stacklevel=3)
    else:
        table = summary.astype({"converged": "boolean", "valid": "boolean",
                                "subsample_size": "Int64",
                                "subsample_seed": "Int64", "num_neurons": "Int64",
                                "num_bins": "Int64", "num_divergent": "Int64",
                                "flagged_neurons": "Int64"})
        with atomic_path(out_dir / "summary.parquet", force=True) as tmp:
            table.to_parquet(tmp, index=False)
    write_json(out_dir / "failures.json", failures, force=True)


def format_summary(summary, max_rows=40):
    """A compact text table of the summary (the columns a reader scans first)."""
    columns = ["dataset", "state", "population", "num_neurons", "num_bins", "kind",
               "likelihood", "converged", "valid", "max_rhat", "min_ess_bulk", "wall_time_s",
               "status"]
    table = summary[columns].copy()
    note = summary["error"].fillna("").where(summary["status"] == "failed",
                                             summary["reasons"].fillna(""))
    table["error / reasons"] = note.str.slice(0, 60)
    with_pandas_options = table.head(max_rows).to_string(
        index=False, float_format=lambda x: f"{x:.3g}", na_rep="-")
    more = f"\n... {len(table) - max_rows} more rows" if len(table) > max_rows else ""
    return with_pandas_options + more
