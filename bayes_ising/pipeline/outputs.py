"""The study's outputs: ``DIR/study.json``, ``DIR/tables/*.csv`` and :class:`StudyResult`.

``study.json`` (every number a report shows; paths relative to DIR)::

    format, wall_time_s, data: {source, sha256, num_neurons, num_bins, states: {state:
        {num_bins, silent_neurons, always_active}}}, populations, notes (analyses skipped, why),
    fits: [{state, population, num_neurons, num_bins, likelihood, likelihood_reason, adjust,
        status, error, converged, reasons, valid, validity, num_flagged, flagged, max_rhat,
        min_ess_bulk, min_ess_tail, num_divergent, posterior, I2_IN, T_peak, C_max_per_neuron,
        T_peak_control, C_max_per_neuron_control, silent_neurons, results: {checks, thermo,
        compare}, errors: {kind: message}}],
    families: [{state, population, method, criterion, num_neurons, rows, result}],
        # only with compare_families; method "loo" (N <= 22) rows: {family, elpd, se,
        # elpd_diff, dse, pareto_k_max, pk_in_band, pk_seen, seconds, ...}; "held_out"
        # (N > 22) rows: {family, held_out_per_bin, held_out_difference, held_out_se,
        # pk_in_band, pk_seen, max_rhat, min_ess_bulk, num_divergent, seconds, intervals}
    ei: {state: {E|I: {log_ratio_population_only, log_ratio_joint,
        ratio_population_only_to_joint, k_high, observed_tail, population_size, result}}},
    states: {block: {"a>b": {coupling, correlation}}},   # P(mean in a > mean in b)
    state_blocks: {block: {state: {coupling, correlation, num_pairs}}},
    stages: [{name, kind, status, error, seconds}], settings.

Intervals are ``{"median", "lower", "upper"}`` (central ``settings.interval``). The tidy
tables hold the same numbers, one row per (fit, quantity, ...), see :data:`TABLES`.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np

__all__ = ["StudyResult", "write_outputs", "read_study", "TABLES"]

#: the tidy tables in DIR/tables/ (name -> what a row is)
TABLES = {
    "fits": "one fit (state × population): verdict, likelihood, headline numbers",
    "neurons": "one neuron of one fit: diagnostics flag beside the restart-cosine and 5% rules",
    "information": "S1, S2, SN, IN, I2, I2/IN of one fit (median, lower, upper)",
    "synchrony": "P(K) of one fit at one k: data, independent model, posterior predictive band",
    "thermo": "C/N, S/N, E/N of one fit (posterior or shuffled control) at one temperature",
    "peaks": "T* and C_max/N of one fit, posterior or shuffled control",
    "ei": "one population-only vs E+I comparison: log tail ratios per state",
    "ei_synchrony": "P(K_A) at one k: data, population-only and joint posterior bands",
    "state_blocks": "mean coupling / correlation of one cell-type block in one state",
    "state_probabilities": "P(mean of a block in state a > in state b), every ordered pair",
    "comparison": "the study's method vs the posterior for one fit (interval summary)",
    "families": "one energy family of one fit, with the comparison's method: PSIS-LOO elpd, "
                "difference to the best, Pareto k (method loo, N <= 22) or held-out log "
                "pseudolikelihood per bin, difference and se over blocks of bins (method "
                "held_out, N > 22; not comparable with LOO), P(K) in its predictive band, "
                "R-hat, ESS (study --compare-families)",
    "stages": "one task of the study: status, error, seconds",
}


def _interval(d):
    if not isinstance(d, dict) or "median" not in d:
        return None
    return {k: (None if d.get(k) is None else float(d[k])) for k in ("median", "lower", "upper")}


def _read(out_dir, task, outcomes):
    """The task's stored result dict, or None (failed, skipped, missing)."""
    if outcomes.get(task.key, {}).get("status") not in ("done", "existing"):
        return None
    path = Path(out_dir) / task.path
    if task.kind == "fit":
        return str(task.path)
    with open(path) as f:
        return json.load(f)["result"]


def _fit_entry(fit, analyses, plan, outcomes):
    p = fit.params
    outcome = outcomes.get(fit.key, {})
    info = plan.states[fit.state]
    entry = dict(state=fit.state, population=fit.population, num_neurons=len(p["neurons"]),
                 num_bins=info["num_bins"], likelihood=p["likelihood"],
                 likelihood_reason=p["likelihood_reason"], adjust=p["adjust"],
                 status=outcome.get("status"), error=outcome.get("error", ""),
                 posterior=fit.path if outcome.get("status") in ("done", "existing") else None,
                 silent_neurons=[n for n in info["silent_neurons"] if n in p["neurons"]],
                 converged=None, reasons=[], valid=None, validity=None, num_flagged=None,
                 flagged=[], I2_IN=None, T_peak=None, C_max_per_neuron=None,
                 results={}, errors={})
    for task, result in analyses:
        entry["results"][task.kind] = task.path if result is not None else None
        if result is None and outcomes.get(task.key, {}).get("error"):
            entry["errors"][task.kind] = outcomes[task.key]["error"]
    by_kind = {task.kind: result for task, result in analyses}
    checks = by_kind.get("checks")
    if checks:
        d = checks["diagnostics"]
        entry.update(converged=bool(d["converged"]), reasons=list(d["reasons"]),
                     num_flagged=int(d["num_flagged"]),
                     flagged=[n["id"] for n in d["neurons"] if n["flagged"]],
                     valid=checks["validity"]["valid"], validity=checks["validity"]["verdict"],
                     verdict=d.get("verdict"),
                     max_rhat=d["summary"].get("max_rhat"),
                     min_ess_bulk=d["summary"].get("min_ess_bulk"),
                     min_ess_tail=d["summary"].get("min_ess_tail"),
                     num_divergent=d["sampler"].get("num_divergent"),
                     I2_IN=_interval(checks["checks"]["information"].get("ratio")),
                     SN_reliable=checks["checks"]["information"].get("SN_reliable"),
                     I2_IN_note=checks["checks"]["information"].get("note"))
    thermo = by_kind.get("thermo")
    if thermo:
        control = thermo.get("shuffled_control", {}).get("peak", {})
        entry.update(T_peak=_interval(thermo["peak"]["temperature"]),
                     C_max_per_neuron=_interval(thermo["peak"]["heat_capacity_per_neuron"]),
                     T_peak_control=_interval(control.get("temperature")),
                     C_max_per_neuron_control=_interval(control.get("heat_capacity_per_neuron")))
    return entry


def _ei_section(tasks, results):
    out = {}
    for task in tasks:
        result = results.get(task.key)
        if task.kind != "ei" or result is None:
            continue
        out.setdefault(task.state, {})[task.population] = dict(
            log_ratio_population_only=_interval(result.get("log_ratio_population_only")),
            log_ratio_joint=_interval(result.get("log_ratio_joint")),
            ratio_population_only_to_joint=_interval(
                result.get("ratio_population_only_to_joint")),
            k_high=int(result["k_high"]), observed_tail=result.get("observed_tail"),
            population_size=result.get("population_size"), result=task.path)
    return out


def _families_section(tasks, results):
    """Per fit with a family comparison: its method ("loo" or "held_out"), criterion, rows
    (best family first) and the result file."""
    from bayes_ising.analysis.families import CRITERIA

    out = []
    for t in tasks:
        if t.kind != "families" or results.get(t.key) is None:
            continue
        result = results[t.key]
        method = result.get("method", t.params.get("method", "loo"))
        out.append(dict(state=t.state, population=t.population, method=method,
                        criterion=result.get("criterion", CRITERIA[method]),
                        num_neurons=len(t.params["neurons"]), rows=result["rows"],
                        result=t.path))
    return out


def build_study(out_dir, plan, settings, outcomes, data, wall_time_s):
    """The study.json dict (see the module docstring) and the raw task results by key."""
    results = {t.key: _read(out_dir, t, outcomes) for t in plan.tasks}
    fits = []
    for fit in (t for t in plan.tasks if t.kind == "fit"):
        analyses = [(t, results[t.key]) for t in plan.tasks
                    if t.deps == (fit.key,) and t.kind in ("checks", "thermo", "compare")]
        fits.append(_fit_entry(fit, analyses, plan, outcomes))
    states_task = next((t for t in plan.tasks if t.kind == "states"), None)
    states = results.get(states_task.key) if states_task else None
    from bayes_ising import __version__

    return dict(
        format=1, bayes_ising_version=__version__, wall_time_s=wall_time_s,
        data=dict(source=str(data.source), sha256=plan.data_sha256,
                  num_neurons=data.num_neurons, num_bins=data.num_bins,
                  bin_size=data.bin_size, time_units=data.time_units,
                  cell_types=None if data.cell_types is None else dict(zip(
                      *np.unique(data.cell_types, return_counts=True), strict=True)),
                  states=plan.states),
        populations=list(plan.populations), notes=list(plan.notes), fits=fits,
        ei=_ei_section(plan.tasks, results),
        families=_families_section(plan.tasks, results),
        states={} if not states else states["probabilities"],
        state_blocks={} if not states else states["per_state"],
        state_result=states_task.path if states else None,
        stages=[{k: outcomes[t.key].get(k) for k in ("name", "kind", "status", "error",
                                                     "seconds")} for t in plan.tasks],
        settings=settings.to_dict(),
    ), results


@dataclasses.dataclass
class StudyResult:
    """A finished (or partly failed) study: the folder, study.json's dict and the tables.

    ``tables`` maps a name of :data:`TABLES` to a pandas DataFrame; ``fits``, ``ei`` ... are
    shortcuts. :meth:`posterior` opens a fit's posterior; :meth:`thermo_curves` gives the
    C(T)/N bands as an xarray Dataset.
    """

    out_dir: Path
    summary: dict
    tables: dict
    report: Path | None = None

    def __getattr__(self, name):
        tables = self.__dict__.get("tables", {})
        if name in tables:
            return tables[name]
        raise AttributeError(name)

    @property
    def failed(self):
        return [f for f in self.summary["fits"] if f["status"] not in ("done", "existing")]

    def posterior(self, state, population):
        from bayes_ising.fit import bayes

        for f in self.summary["fits"]:
            if f["state"] == state and f["population"] == population and f["posterior"]:
                return bayes.load_posterior(self.out_dir / f["posterior"])
        raise KeyError(f"no posterior for state {state!r}, population {population!r}")

    def thermo_curves(self):
        """xarray Dataset (state, population, model, quantity, temperature) of the bands."""
        frame = self.tables["thermo"]
        index = ["state", "population", "model", "quantity", "temperature"]
        return frame.set_index(index)[["median", "lower", "upper"]].to_xarray()


def write_outputs(out_dir, plan, settings, outcomes, data, wall_time_s):
    """Write study.json and the tables (atomically); return the :class:`StudyResult`."""
    from bayes_ising._io import atomic_path, to_jsonable, write_json
    from bayes_ising.pipeline.tables import build_tables

    summary, results = build_study(out_dir, plan, settings, outcomes, data, wall_time_s)
    tables = build_tables(summary, plan, results)
    for name, frame in tables.items():
        with atomic_path(Path(out_dir) / "tables" / f"{name}.csv", force=True) as tmp:
            frame.to_csv(tmp, index=False)
    write_json(Path(out_dir) / "study.json", summary, force=True)
    return StudyResult(out_dir=Path(out_dir), summary=to_jsonable(summary), tables=tables)


def read_study(out_dir):
    """A :class:`StudyResult` from a study folder written earlier."""
    import pandas as pd

    out_dir = Path(out_dir)
    summary = json.loads((out_dir / "study.json").read_text())
    tables = {p.stem: pd.read_csv(p) for p in sorted((out_dir / "tables").glob("*.csv"))}
    report = out_dir / "report.html"
    return StudyResult(out_dir=out_dir, summary=summary, tables=tables,
                       report=report if report.exists() else None)
