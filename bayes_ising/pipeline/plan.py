r"""The study's whole analysis on one recording: ``bayes-ising study DATA --out DIR``.

For every state of the data (each epoch name; ``"all"`` when there are none) × every
population present (``"E+I"``, ``"E"``, ``"I"``; or ``populations=``) the study fits the
posterior (exact likelihood up to :data:`MAX_EXACT_NEURONS` neurons, else the calibrated
pseudo-posterior; the choice and its reason are recorded) and analyses it: diagnostics with
per-neuron flags beside the study's restart-cosine and 5% rules, posterior predictive P(K) /
patterns / third-order checks, S1, S2, SN and I2/IN, C(T)/N and S(T)/N with bands and the
shuffled control, and the study's method (MLE + adaptive-Metropolis walk + restart cosine)
against the posterior. Across fits: population-only vs E+I synchrony per state
(:func:`bayes_ising.analysis.analyses.ei_posterior_comparison`, over all neurons of the population)
and
the state comparison per cell-type block
(:func:`bayes_ising.analysis.analyses.state_posterior_comparison`).

**Tasks.** Each fit and each analysis is a :class:`StudyTask` whose ``key`` is the SHA-256 of
everything that determines its result (the data's content, the selection, the settings that
task uses, the keys of the tasks it reads, the package version). It writes exactly one file
named by its key (``fits/<state>_<population>-<key>.nc`` or ``tasks/<kind>-...-<key>.json``),
atomically, with the key inside. A rerun skips every task whose file loads and holds its key,
so a killed study resumes where it stopped; a failed task is reported (and retried by the next
run) and the tasks that need it are skipped, never the others.

**Where tasks run.** ``scheduler="sync"`` runs them in this process, in order;
``"local"`` on a :class:`distributed.LocalCluster`
(:func:`bayes_ising.pipeline.batch.local_cluster`);
an address (``tcp://host:8786``) on a running Dask scheduler whose workers share ``DIR``.
The default (None) is ``"sync"`` on machines with ≤ 2 CPU cores, ``"local"`` above: on 2
cores, each spawned worker pays its own JAX start and XLA compilation of every sampler program
(in-process fits of the same shape reuse them), XLA already uses both cores for the large-N
matrix products, two workers would double the memory, and only in-process fits can show the
sampler's progress bar.

Outputs (see :mod:`bayes_ising.pipeline.outputs`): ``DIR/study.json``, ``DIR/tables/*.csv``,
``DIR/fits/*.nc``, the per-task results in ``DIR/tasks/`` and, when
:func:`bayes_ising.report.render_study` exists, ``DIR/report.html``.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
import shutil
import sys
import time
import traceback
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bayes_ising._deprecation import module_aliases
from bayes_ising.core.limits import MAX_EXACT_NEURONS
from bayes_ising.errors import DataError, ExistingOutputError

__all__ = ["StudySettings", "FAST_SETTINGS", "StudyTask", "StudyPlan", "plan_study",
           "execute_study_task", "run_tasks", "study", "parse_populations",
           "MAX_EXACT_NEURONS", "STUDY_FORMAT"]

#: version of the layout of DIR (study.json, tables, tasks)
STUDY_FORMAT = 1
#: the names every study output folder may hold (removed by ``force=True``, nothing else is)
OUTPUT_NAMES = ("study.json", "study_identity.json", "data.npz", "report.html", "fits",
                "tasks", "tables")


#: the least time budget (s) of the study's walks when it is matched to the posterior's
MIN_WALK_SECONDS = 30.0

#: the exact likelihood (enumeration of 2^N patterns) up to this many neurons
__getattr__ = module_aliases(__name__, globals(), {"EXACT_MAX_NEURONS": "MAX_EXACT_NEURONS"})


@dataclass(frozen=True)
class StudySettings:
    """Everything a study's results depend on besides the data.

    ``num_chains``/``num_draws``/``num_warmup`` None keep the model spec's. ``posterior_draws``
    posterior draws feed the predictive checks, the E/I and the state analyses, each draw
    simulated with ``check_samples`` patterns (Gibbs; above the enumeration limit);
    ``thermo_draws`` the C(T) bands, sampled by ``thermo_chains`` Gibbs chains per model and
    temperature whose length tunes itself up to ``thermo_sweeps`` sweeps (after
    ``thermo_burn_in``). The study's adaptive-Metropolis walks run until their own R-hat and
    ESS say converged, or ``walk_seconds`` per fit (then their intervals are labelled
    unconverged; None: the posterior's own sampling time, at least
    :data:`MIN_WALK_SECONDS` — a comparison at equal cost); ``walk_draws`` fixes their length
    instead. ``compare_populations``: the populations that comparison is run for (None: the
    joint population only, e.g. "E+I" — it compares the methods, and at N ≈ 90 each one costs
    minutes; ``("E+I", "E", "I")`` for every population).
    ``min_rate`` None keeps every neuron (judged by the diagnostics); a number applies the
    study's rule per state. ``min_bins``: a state with fewer bins is refused.
    ``compare_families``: also fit the independent, pairwise and K-pairwise posteriors of every
    state × population and compare them (:mod:`bayes_ising.analysis.families`; priors and
    sampler of ``family_model``, chains/draws/warmup overridden as for the fits): by PSIS-LOO
    for N ≤ 22; above, each family's unadjusted pseudo-posterior (P(K) band from Gibbs samples
    of min(``posterior_draws``, 50) draws) scored by the held-out log pseudolikelihood of
    ``held_out_blocks`` contiguous blocks of bins (the CLI's ``--held-out-blocks``; comparable
    between the families, not with LOO).
    """

    populations: tuple | None = None
    states: tuple | None = None
    min_rate: float | None = None
    min_bins: int = 200
    model: str | None = None
    pseudo_model: str | None = "pseudo_large"
    num_chains: int | None = None
    num_draws: int | None = None
    num_warmup: int | None = None
    posterior_draws: int = 100
    check_samples: int = 20_000
    third_order_draws: int = 20
    thermo_draws: int = 20
    temperatures: str = "0.5:3.0:26"
    thermo_chains: int = 4
    thermo_sweeps: int = 8000
    thermo_burn_in: int = 200
    walk_draws: int | None = None
    walk_seconds: float | None = None
    compare_populations: tuple | None = None
    num_restarts: int = 4
    tail: float = 0.01
    num_bootstrap: int = 200
    interval: float = 0.9
    seed: int = 0
    compare_families: bool = False
    family_model: str = "k_pairwise"
    held_out_blocks: int = 10

    def to_dict(self):
        return dataclasses.asdict(self)


#: a smoke test: few draws everywhere (seconds per fit; not for conclusions)
FAST_SETTINGS = StudySettings(
    num_chains=2, num_draws=60, num_warmup=60, posterior_draws=8, check_samples=4_000,
    third_order_draws=4, thermo_draws=4, temperatures="0.5:3.0:11", thermo_chains=4,
    thermo_sweeps=500, thermo_burn_in=100, walk_draws=300, num_restarts=2, num_bootstrap=50)


@dataclass(frozen=True)
class StudyTask:
    """One fit or analysis: JSON-able, sent to workers, its key stored in its result."""

    key: str
    kind: str  # "fit", "checks", "thermo", "compare", "ei", "states", "families"
    state: str | None
    population: str | None
    params: dict
    deps: tuple = ()

    @property
    def name(self):
        return "/".join(p for p in (self.kind, self.state, self.population) if p)

    @property
    def path(self):
        """The result file, relative to the study folder."""
        return task_path(self.kind, self.state, self.population, self.key)


def task_path(kind, state, population, key):
    """``fits/<state>_<population>-<key[:12]>.nc`` or ``tasks/<kind>-...-<key[:12]>.json``."""
    slug = "_".join(_slug(p) for p in (state, population) if p)
    if kind == "fit":
        return f"fits/{slug}-{key[:12]}.nc"
    return f"tasks/{kind}{'-' + slug if slug else ''}-{key[:12]}.json"


def _slug(text):
    return "".join(c if c.isalnum() else "-" for c in str(text).replace("+", "p"))


@dataclass(frozen=True)
class StudyPlan:
    """The validated study: its tasks, the data's description per state, and notes."""

    tasks: tuple
    data_sha256: str
    states: dict  # state -> {num_bins, silent_neurons, always_active, neurons}
    populations: tuple
    notes: tuple  # one line each: analyses skipped and why


# --------------------------------------------------------------------------------------------
# Planning (every check of the inputs happens here, before anything is written)
# --------------------------------------------------------------------------------------------


def parse_populations(text):
    """``"E+I,E,I"`` or a list -> labels; ``"E,I"`` (a deprecated alias) means ``"E+I"``."""
    if text is None:
        return None
    if isinstance(text, str):
        if text.replace(" ", "") == "E,I":
            warnings.warn("populations 'E,I' is deprecated: write 'E+I'", DeprecationWarning,
                          stacklevel=2)
            return ("E+I",)
        text = text.split(",")
    return tuple(p.strip() for p in text if p.strip())


def _types_of(label):
    return [t for t in label.split("+") if t]


def data_sha256(data):
    """SHA-256 of a SpikeData's content (spins, ids, cell types, states, bin size)."""
    digest = hashlib.sha256()
    digest.update(np.ascontiguousarray(data.spins).tobytes())
    for part in (data.neuron_ids, data.cell_types, data.states):
        digest.update(b"|" if part is None else "\x1f".join(map(str, part)).encode())
    digest.update(repr((data.bin_size, data.time_units)).encode())
    return digest.hexdigest()


def _populations(data, requested):
    """The population labels to fit; an unknown cell type or a bad label is a DataError."""
    if data.cell_types is None:
        if requested and set(requested) != {"all"}:
            raise DataError(f"populations {', '.join(requested)} asked for, but the data have "
                            "no cell types")
        return ("all",)
    present = [t for t in ("E", "I") if t in set(data.cell_types.tolist())]
    present += sorted(set(data.cell_types.tolist()) - {"E", "I"})
    if not requested:
        joint = "+".join(present)
        return tuple(dict.fromkeys([joint] + (present if len(present) > 1 else [])))
    for label in requested:
        unknown = [t for t in _types_of(label) if t not in present]
        if unknown or not _types_of(label):
            raise DataError(f"unknown population {label!r} (cell types present: "
                            f"{', '.join(present)}; e.g. {'+'.join(present)})")
    return tuple(dict.fromkeys(requested))


def _states(data, requested, min_bins):
    if data.states is None:
        if requested and set(requested) != {"all"}:
            raise DataError(f"states {', '.join(requested)} asked for, but the data have none")
        names, counts = ["all"], [data.num_bins]
    else:
        labels = np.asarray(data.states).astype(str)
        _, first = np.unique(labels, return_index=True)
        names = [str(labels[k]) for k in sorted(first)]
        if requested:
            missing = [s for s in requested if s not in names]
            if missing:
                raise DataError(f"unknown state {missing[0]!r} (states present: "
                                f"{', '.join(names)})")
            names = list(requested)
        counts = [int(np.sum(labels == s)) for s in names]
    for name, count in zip(names, counts, strict=True):
        if count < min_bins:
            raise DataError(f"state {name!r} has {count} bins; the study needs at least "
                            f"{min_bins} per state (min_bins / --min-bins)")
    return names


def select(data, state, population, min_rate):
    """The bins of ``state`` ("all": every bin) and neurons of ``population`` ("all")."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # inactive neurons: reported per state by the plan
        return data.select(state=None if state == "all" else state,
                           population=None if population == "all" else _types_of(population),
                           min_rate=min_rate)


def _state_info(data, state):
    sub = select(data, state, "all", None)
    p = sub.firing_probability
    return dict(num_bins=sub.num_bins,
                silent_neurons=[str(v) for v in sub.neuron_ids[p == 0]],
                always_active=[str(v) for v in sub.neuron_ids[p == 1]])


def _task(kind, state, population, params, deps, identity):
    from bayes_ising import __version__
    from bayes_ising._io import to_jsonable

    body = {"kind": kind, "state": state, "population": population, "params": params,
            "deps": list(deps), "data": identity, "version": __version__,
            "format": STUDY_FORMAT}
    text = json.dumps(to_jsonable(body), sort_keys=True, separators=(",", ":"))
    return StudyTask(key=hashlib.sha256(text.encode()).hexdigest(), kind=kind, state=state,
                     population=population, params=to_jsonable(params), deps=tuple(deps))


def _resolve_spec(name):
    """A model spec by path or packaged name (:func:`bayes_ising.fit.model_spec.load_model_spec`),
    or the default (None / "default")."""
    from bayes_ising.fit.model_spec import default_model_spec, load_model_spec

    if name is None or name == "default":
        return default_model_spec()
    return load_model_spec(name)


def _likelihood_choice(num_neurons):
    if num_neurons <= MAX_EXACT_NEURONS:
        return "exact", (f"N = {num_neurons} <= {MAX_EXACT_NEURONS}: exact likelihood "
                         f"(enumeration of 2^{num_neurons} patterns)")
    return "pseudo", (f"N = {num_neurons} > {MAX_EXACT_NEURONS}: enumeration infeasible; "
                      "pseudolikelihood posterior with its calibration adjustment")


def _fit_params(sub, settings, specs):
    likelihood, reason = _likelihood_choice(sub.num_neurons)
    spec = specs[likelihood]
    adjust = spec.adjust if likelihood == "pseudo" else "none"
    return dict(neurons=[str(v) for v in sub.neuron_ids], min_rate=settings.min_rate,
                likelihood=likelihood, likelihood_reason=reason, adjust=adjust,
                spec=json.loads(spec.to_json()),
                num_chains=settings.num_chains or spec.num_chains,
                num_draws=settings.num_draws or spec.num_draws,
                num_warmup=spec.num_warmup if settings.num_warmup is None
                else settings.num_warmup, seed=settings.seed)


def _compared(settings, populations):
    """The populations the MLE comparison is run for: ``compare_populations`` or the joint
    one (the first fitted)."""
    return (settings.compare_populations if settings.compare_populations is not None
            else populations[:1])


def _fit_analysis_tasks(fit, settings, identity, compared):
    s = settings
    common = dict(seed=s.seed, interval=s.interval)
    tasks = [
        _task("checks", fit.state, fit.population, dict(
            common, posterior_draws=s.posterior_draws, check_samples=s.check_samples,
            third_order_draws=s.third_order_draws), [fit.key], identity),
        _task("thermo", fit.state, fit.population, dict(
            common, thermo_draws=s.thermo_draws, temperatures=s.temperatures,
            thermo_chains=s.thermo_chains, thermo_sweeps=s.thermo_sweeps,
            thermo_burn_in=s.thermo_burn_in), [fit.key], identity)]
    if fit.population in compared:
        tasks.append(_task("compare", fit.state, fit.population, dict(
            common, walk_draws=s.walk_draws, walk_seconds=s.walk_seconds,
            num_restarts=s.num_restarts), [fit.key], identity))
    return tasks


def plan_study(data, settings=None):
    """Validate the inputs and list the study's tasks -> :class:`StudyPlan`.

    Raises :class:`~bayes_ising.errors.DataError` (CLI exit 2) for an unknown population or
    state, a population with < 2 neurons in a state, a state with < ``min_bins`` bins, or
    (with ``compare_families`` and a fit with N > 22) ``held_out_blocks`` outside 2..bins.
    """
    settings = settings or StudySettings()
    identity = data_sha256(data)
    populations = _populations(data, settings.populations)
    states = _states(data, settings.states, settings.min_bins)
    specs = {"exact": _resolve_spec(settings.model),
             "pseudo": _resolve_spec(settings.pseudo_model)}
    tasks, fits, info, notes = [], {}, {}, []
    compared = _compared(settings, populations)
    for state in states:
        info[state] = _state_info(data, state)
        for population in populations:
            try:
                sub = select(data, state, population, settings.min_rate)
            except DataError as err:
                raise DataError(f"state {state!r}, population {population!r}: {err}") from None
            if sub.num_neurons < 2:
                raise DataError(f"population {population!r} has {sub.num_neurons} neuron(s) in "
                                f"state {state!r}; a pairwise model needs at least 2")
            fit = _task("fit", state, population, _fit_params(sub, settings, specs), [],
                        identity)
            fits[state, population] = fit
            tasks += [fit, *_fit_analysis_tasks(fit, settings, identity, compared)]
    tasks += _cross_fit_tasks(fits, states, populations, settings, identity, notes)
    unknown = [p for p in settings.compare_populations or () if p not in populations]
    if unknown:
        raise DataError(f"compare_populations: {unknown[0]!r} is not among the populations "
                        f"fitted ({', '.join(populations)})")
    skipped = [p for p in populations if p not in compared]
    if skipped:
        why = (f"compare_populations = {', '.join(compared)}"
               if settings.compare_populations is not None else
               f"by default the joint population {compared[0]} only; --compare-populations "
               f"{','.join(populations)} for every one")
        notes.append(f"MLE comparison not run for {', '.join(skipped)} ({why})")
    if settings.compare_families:
        tasks += _family_tasks(fits, _resolve_spec(settings.family_model), settings, identity,
                               info)
    return StudyPlan(tasks=tuple(tasks), data_sha256=identity, states=info,
                     populations=populations, notes=tuple(notes))


def _family_tasks(fits, spec, settings, identity, info):
    """One comparison of the families (independent, pairwise, K-pairwise) per fit: PSIS-LOO
    for N ≤ 22 (``method`` "loo"), blocked held-out pseudolikelihood above ("held_out")."""
    from bayes_ising.core.kpairwise import FAMILIES

    tasks = []
    for (state, population), fit in fits.items():
        neurons = fit.params["neurons"]
        params = dict(
            method="loo", neurons=neurons, families=list(FAMILIES),
            spec=json.loads(spec.to_json()), num_chains=settings.num_chains or spec.num_chains,
            num_draws=settings.num_draws or spec.num_draws,
            num_warmup=spec.num_warmup if settings.num_warmup is None
            else settings.num_warmup, check_draws=settings.posterior_draws,
            seed=settings.seed, interval=settings.interval)
        if len(neurons) > MAX_EXACT_NEURONS:
            num_bins = info[state]["num_bins"]
            if not 2 <= settings.held_out_blocks <= num_bins:
                raise DataError(f"held_out_blocks (--held-out-blocks) must be between 2 and "
                                f"the bins of state {state!r} ({num_bins}); got "
                                f"{settings.held_out_blocks}")
            params.update(method="held_out", held_out_blocks=settings.held_out_blocks,
                          check_draws=min(settings.posterior_draws, 50))
        tasks.append(_task("families", state, population, params, [], identity))
    return tasks


def _cross_fit_tasks(fits, states, populations, settings, identity, notes):
    """E/I comparisons per state and the state comparison of the joint fits."""
    tasks = []
    joint = populations[0]
    parts = [p for p in populations[1:] if p in _types_of(joint) and len(_types_of(joint)) > 1]
    if joint == "all":
        notes.append("E/I analyses skipped: the data have no cell types")
    elif not parts:
        notes.append(f"E/I analyses skipped: no single-type population beside {joint!r} "
                     "among the populations fitted")
    for state in states:
        for part in parts:
            tasks.append(_task("ei", state, part, dict(
                seed=settings.seed, posterior_draws=settings.posterior_draws,
                check_samples=settings.check_samples, tail=settings.tail,
                num_bootstrap=settings.num_bootstrap, joint=joint, interval=settings.interval),
                [fits[state, part].key, fits[state, joint].key], identity))
    if len(states) < 2:
        notes.append(f"state comparison skipped: one state only ({states[0]!r})")
    elif joint == "all":
        notes.append("state comparison skipped: it compares cell-type blocks and the data "
                     "have no cell types")
    else:
        tasks.append(_task("states", None, joint, dict(
            seed=settings.seed, posterior_draws=settings.posterior_draws,
            num_bootstrap=settings.num_bootstrap, interval=settings.interval, states=states),
            [fits[s, joint].key for s in states], identity))
    return tasks


# --------------------------------------------------------------------------------------------
# Running one task (in this process or on a worker)
# --------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=2)
def _load_data(path, mtime_ns):
    from bayes_ising.data import load

    return load(path)


def _study_data(out_dir):
    path = Path(out_dir) / "data.npz"
    return _load_data(str(path), path.stat().st_mtime_ns)


def _task_data(task, out_dir, state=None, population=None, neurons=None, tree=None):
    """The task's bins and neurons (``neurons``: those ids, in that order; ``tree``: the
    posterior's neurons, :func:`bayes_ising.fit.posterior.align`)."""
    from bayes_ising.fit import posterior

    data = select(_study_data(out_dir), state or task.state, population or "all", None)
    if tree is not None:
        return posterior.align(tree, data)
    if neurons is not None:
        cols = posterior.id_columns(data.neuron_ids, neurons, what="the study plan's")
        data = dataclasses.replace(
            data, spins=data.spins[:, cols], neuron_ids=data.neuron_ids[cols],
            cell_types=None if data.cell_types is None else data.cell_types[cols])
    return data


def _rng_key(task):
    import jax

    return jax.random.fold_in(jax.random.PRNGKey(int(task.params.get("seed", 0))),
                              int(task.key[:7], 16))


def _write_task_result(task, out_dir, result):
    from bayes_ising._io import write_json

    write_json(Path(out_dir) / task.path, {"study_key": task.key, "task": task.name,
                                           "result": result}, force=True)


def execute_study_task(task, out_dir, *upstream, progress=False):
    """Run one task and write its result file; return its outcome (a small dict).

    ``upstream`` are the outcomes of the tasks it reads that ran in this study run (a failed
    or skipped one skips this task). Errors are caught and returned (``status`` "failed",
    ``error``, ``traceback``); nothing is written then.
    """
    from bayes_ising import enable_x64
    from bayes_ising.pipeline.tasks import RUNNERS

    enable_x64()  # a worker process is an edge, like the CLI
    outcome = dict(key=task.key, name=task.name, kind=task.kind, status="done", error="",
                   seconds=0.0)
    bad = [u for u in upstream if u and u.get("status") in ("failed", "skipped")]
    if bad:
        return {**outcome, "status": "skipped", "error": f"skipped: {bad[0]['name']} failed"}
    start = time.perf_counter()
    try:
        RUNNERS[task.kind](task, Path(out_dir), progress=progress)
    except Exception as err:  # noqa: BLE001 - every failure is reported, none stops the study
        outcome.update(status="failed", error=f"{type(err).__name__}: {err}",
                       traceback="".join(traceback.format_exception(err)))
    outcome["seconds"] = time.perf_counter() - start
    return outcome


def result_ok(task, out_dir):
    """Whether the task's result file exists, loads, and holds the task's key."""
    path = Path(out_dir) / task.path
    if not path.is_file():
        return False
    try:
        if task.kind == "fit":
            import xarray as xr

            with xr.open_datatree(path, engine="h5netcdf") as tree:
                stored = tree.attrs.get("study_key")
        else:
            with open(path) as f:
                stored = json.load(f).get("study_key")
    except Exception:  # noqa: BLE001 - an unreadable or truncated file is redone
        return False
    return stored == task.key


# --------------------------------------------------------------------------------------------
# Running the tasks
# --------------------------------------------------------------------------------------------


def default_scheduler():
    """"sync" on ≤ 2 CPU cores, "local" above (see the module docstring for why)."""
    return "sync" if (os.cpu_count() or 1) <= 2 else "local"


class _Progress:
    """One overall bar: stages done / total, elapsed, estimate; the task in flight."""

    def __init__(self, total, done, enabled):
        from tqdm.auto import tqdm

        self.bar = tqdm(total=total, initial=done, desc="study", unit="stage",
                        disable=not enabled, file=sys.stderr, position=0,
                        bar_format="{desc}: {n_fmt}/{total_fmt} stages |{bar}| "
                                   "{elapsed} elapsed, ~{remaining} left")

    def start(self, name):
        self.bar.set_description(f"study [{name}]")

    def finish(self, outcome):
        if outcome["status"] == "failed":
            self.bar.write(f"failed: {outcome['name']}: {outcome['error']}", file=sys.stderr)
        self.bar.update(1)

    def close(self):
        self.bar.set_description("study")
        self.bar.close()


def _run_sync(pending, out_dir, progress, bar):
    outcomes = {}
    for task in pending:
        bar.start(task.name)
        upstream = [outcomes[d] for d in task.deps if d in outcomes]
        outcome = execute_study_task(task, out_dir, *upstream, progress=progress)
        outcomes[task.key] = outcome
        bar.finish(outcome)
    return outcomes


def _run_dask(pending, out_dir, scheduler, bar, log):
    import contextlib

    from distributed import Client, as_completed

    from bayes_ising.pipeline.batch import local_cluster

    with contextlib.ExitStack() as stack:
        if scheduler == "local":
            workers = max(1, min(os.cpu_count() or 1, sum(t.kind == "fit" for t in pending)))
            cluster = stack.enter_context(local_cluster(workers))
            client = stack.enter_context(Client(cluster))
            log(f"LocalCluster of {workers} worker process(es)")
        else:
            client = stack.enter_context(Client(scheduler))
        futures, by_key = {}, {}
        for task in pending:  # in plan order: dependencies first
            upstream = [futures[d] for d in task.deps if d in futures]
            future = client.submit(execute_study_task, task, str(out_dir), *upstream,
                                   key=f"bayes-ising-study-{task.key}", pure=False)
            futures[task.key], by_key[future.key] = future, task
        outcomes = {}
        for future in as_completed(list(futures.values())):
            task = by_key[future.key]
            try:
                outcome = future.result()
            except Exception as err:  # noqa: BLE001 - a worker died (KilledWorker) and so on
                outcome = dict(key=task.key, name=task.name, kind=task.kind, status="failed",
                               error=f"{type(err).__name__}: {err}", seconds=float("nan"))
            outcomes[task.key] = outcome
            bar.finish(outcome)
        return outcomes


def run_tasks(tasks, out_dir, *, scheduler=None, progress=True, log=print):
    """Run every task without a valid result file; return key -> outcome for all tasks.

    Outcomes: ``status`` "existing" (skipped: its file holds its key), "done", "failed" (with
    ``error``) or "skipped" (a task it needs failed). ``scheduler``: "sync", "local", a Dask
    scheduler address, or None (:func:`default_scheduler`).
    """
    out_dir = Path(out_dir)
    outcomes = {t.key: dict(key=t.key, name=t.name, kind=t.kind, status="existing", error="",
                            seconds=0.0) for t in tasks if result_ok(t, out_dir)}
    pending = [t for t in tasks if t.key not in outcomes]
    scheduler = scheduler or default_scheduler()
    log(f"study: {len(tasks)} stages, {len(outcomes)} already done, {len(pending)} to run "
        f"({'in this process' if scheduler == 'sync' else scheduler})")
    bar = _Progress(len(tasks), len(outcomes), progress)
    try:
        if pending and scheduler == "sync":
            outcomes.update(_run_sync(pending, out_dir, progress, bar))
        elif pending:
            outcomes.update(_run_dask(pending, out_dir, scheduler, bar, log))
    finally:
        bar.close()
    return outcomes


# --------------------------------------------------------------------------------------------
# The study
# --------------------------------------------------------------------------------------------


def _prepare_folder(out_dir, plan, data, force):
    """Refuse a folder holding another study's results (unless ``force``); write the data."""
    from bayes_ising._io import write_json

    identity_path = out_dir / "study_identity.json"
    other = None
    if identity_path.is_file():
        try:
            stored = json.loads(identity_path.read_text()).get("data_sha256")
        except (OSError, ValueError):
            stored = "unreadable"
        other = stored if stored != plan.data_sha256 else None
    elif out_dir.is_dir() and any((out_dir / n).exists() for n in ("study.json", "fits",
                                                                   "tasks")):
        other = "unknown"
    if other and not force:
        raise ExistingOutputError(
            f"{out_dir} holds the results of another study (of other data); choose another "
            "--out, or pass --force to replace them")
    if other:
        for name in OUTPUT_NAMES:
            target = out_dir / name
            if target.is_dir():
                shutil.rmtree(target)
            elif target.exists():
                target.unlink()
    for sub in ("fits", "tasks", "tables"):
        (out_dir / sub).mkdir(parents=True, exist_ok=True)
    data_path = out_dir / "data.npz"
    if other or not identity_path.is_file() or not data_path.is_file():
        data.to_npz(data_path, force=True)
        write_json(identity_path, {"format": STUDY_FORMAT, "data_sha256": plan.data_sha256,
                                   "source": str(data.source)}, force=True)


def study(data, out="study_output", *, settings=None, scheduler=None, force=False,
          progress=True, log=print, render=True, **overrides):
    """The study's whole analysis of ``data`` -> :class:`bayes_ising.pipeline.outputs.StudyResult`.

    Parameters
    ----------
    data : SpikeData (with cell types and states for the E/I and state analyses), or a path
    out : the study folder (created; a rerun resumes in it; another study's -> refused)
    settings : :class:`StudySettings`; keyword ``overrides`` replace its fields
        (e.g. ``populations=("E+I", "E")``, ``num_draws=200``)
    scheduler : "sync", "local", a Dask scheduler address, or None (:func:`default_scheduler`)
    force : replace the results of another study in ``out``
    progress : the overall bar and the sampler's bar of the fit in flight
    render : write ``report.html`` (:func:`bayes_ising.report.render_study`, when present)

    Raises
    ------
    DataError, ExistingOutputError : bad input (nothing is written then).
    """
    from bayes_ising import enable_x64
    from bayes_ising.pipeline.outputs import write_outputs

    enable_x64()
    if isinstance(data, (str, os.PathLike)):
        from bayes_ising.data import load

        data = load(data)
    settings = dataclasses.replace(settings or StudySettings(), **overrides)
    if isinstance(settings.populations, str):
        settings = dataclasses.replace(settings,
                                       populations=parse_populations(settings.populations))
    start = time.perf_counter()
    plan = plan_study(data, settings)
    out_dir = Path(out).resolve()
    _prepare_folder(out_dir, plan, data, force)
    for note in plan.notes:
        log(note)
    for state, info in plan.states.items():
        for kind, what in (("silent_neurons", "never fire"),
                           ("always_active", "fire in every bin")):
            if info[kind]:
                log(f"state {state!r}: neuron(s) {', '.join(info[kind])} {what} there (kept; "
                    "the diagnostics judge them)")
    outcomes = run_tasks(plan.tasks, out_dir, scheduler=scheduler, progress=progress, log=log)
    result = write_outputs(out_dir, plan, settings, outcomes, data,
                           wall_time_s=time.perf_counter() - start)
    if render:
        from bayes_ising.report.study import render_study

        result.report = render_study(out_dir)
    return result
