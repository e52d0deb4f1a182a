"""Tidy tables of a study (pandas DataFrames; ``DIR/tables/<name>.csv``).

One builder per table of :data:`bayes_ising.pipeline.outputs.TABLES`, each reading the study.json
dict and the raw task results (task key -> result dict) of :func:`build_study`.
"""

import numpy as np
import pandas as pd

__all__ = ["build_tables"]

_STAT = ("median", "lower", "upper")


def _by_fit(plan, results, kind):
    """(state, population, result) of every finished ``kind`` analysis of a fit."""
    for task in plan.tasks:
        if task.kind == kind and results.get(task.key) is not None:
            yield task.state, task.population, results[task.key]


def _fits(summary, plan, results):
    rows = []
    for f in summary["fits"]:
        row = {k: v for k, v in f.items() if not isinstance(v, (dict, list))}
        for name in ("I2_IN", "T_peak", "C_max_per_neuron", "T_peak_control",
                     "C_max_per_neuron_control"):
            for stat in _STAT:
                row[f"{name}_{stat}"] = (f.get(name) or {}).get(stat)
        row["flagged"] = " ".join(f.get("flagged", []))
        row["reasons"] = "; ".join(f.get("reasons", []))
        row["silent_neurons"] = " ".join(f.get("silent_neurons", []))
        rows.append(row)
    return pd.DataFrame(rows)


def _neurons(summary, plan, results):
    compare = {(s, p): r for s, p, r in _by_fit(plan, results, "compare")}
    rows = []
    for state, population, result in _by_fit(plan, results, "checks"):
        flags = compare.get((state, population), {}).get("flagged", {})
        ids = flags.get("neurons", [])
        position = {n: k for k, n in enumerate(ids)}
        for n in result["diagnostics"]["neurons"]:
            k = position.get(n["id"])

            def rule(name, k=k, flags=flags):
                values = flags.get(name)
                return None if values is None or k is None else values[k]

            rows.append(dict(state=state, population=population, neuron=n["id"],
                             cell_type=n["cell_type"], firing_probability=n["firing_probability"],
                             flagged=n["flagged"], reasons="; ".join(n["reasons"]),
                             contraction=n["contraction"], max_rhat=n["max_rhat"],
                             cosine_flagged=rule("cosine"),
                             cosine_similarity=rule("cosine_similarity"),
                             firing_threshold_flagged=rule("firing_threshold")))
    return pd.DataFrame(rows)


def _information(summary, plan, results):
    rows = []
    for state, population, result in _by_fit(plan, results, "checks"):
        info = result["checks"]["information"]
        for name, key in (("S1_model", "S1_model"), ("S2", "S2"), ("I2", "I2"),
                          ("I2_IN", "ratio")):
            if isinstance(info.get(key), dict):
                rows.append(dict(state=state, population=population, quantity=name,
                                 **{s: info[key][s] for s in _STAT}))
        for name in ("S1", "SN", "IN"):
            if name in info:
                rows.append(dict(state=state, population=population, quantity=name,
                                 median=info[name], lower=None, upper=None))
    return pd.DataFrame(rows, columns=["state", "population", "quantity", *_STAT])


def _synchrony(summary, plan, results):
    rows = []
    for state, population, result in _by_fit(plan, results, "checks"):
        sync = result["checks"]["synchrony"]
        for k in range(len(sync["k"])):
            rows.append(dict(state=state, population=population, k=sync["k"][k],
                             observed=sync["observed"][k], independent=sync["independent"][k],
                             **{s: sync["predicted"][s][k] for s in _STAT},
                             replicated_lower=sync["replicated"]["lower"][k],
                             replicated_upper=sync["replicated"]["upper"][k]))
    return pd.DataFrame(rows)


def _thermo_rows(state, population, model, result):
    for quantity in ("heat_capacity_per_neuron", "entropy_per_neuron", "energy_per_neuron"):
        band = result.get(quantity)
        if not band:
            continue
        for k, temperature in enumerate(result["temperature"]):
            yield dict(state=state, population=population, model=model, quantity=quantity,
                       temperature=temperature, **{s: band[s][k] for s in _STAT})


def _thermo(summary, plan, results):
    rows = []
    for state, population, result in _by_fit(plan, results, "thermo"):
        rows += _thermo_rows(state, population, "posterior", result)
        rows += _thermo_rows(state, population, "shuffled", result.get("shuffled_control", {}))
    return pd.DataFrame(rows, columns=["state", "population", "model", "quantity",
                                       "temperature", *_STAT])


def _peaks(summary, plan, results):
    rows = []
    for state, population, result in _by_fit(plan, results, "thermo"):
        for model, r in (("posterior", result), ("shuffled", result.get("shuffled_control"))):
            for quantity, key in (("T_peak", "temperature"),
                                  ("C_max_per_neuron", "heat_capacity_per_neuron")):
                band = (r or {}).get("peak", {}).get(key)
                if band:
                    rows.append(dict(state=state, population=population, model=model,
                                     quantity=quantity, **{s: band[s] for s in _STAT},
                                     fraction_at_edge=r["peak"].get("fraction_at_edge")))
    return pd.DataFrame(rows)


def _ei(summary, plan, results):
    rows = []
    for state, pops in summary["ei"].items():
        for population, r in pops.items():
            for comparison in ("population_only", "joint"):
                band = r.get(f"log_ratio_{comparison}") or {}
                rows.append(dict(state=state, population=population, model=comparison,
                                 **{s: band.get(s) for s in _STAT}, k_high=r["k_high"],
                                 observed_tail=r["observed_tail"],
                                 population_size=r["population_size"]))
    return pd.DataFrame(rows)


def _ei_synchrony(summary, plan, results):
    rows = []
    for state, population, result in _by_fit(plan, results, "ei"):
        sync = result["synchrony"]
        for k in range(len(sync["k"])):
            row = dict(state=state, population=population, k=sync["k"][k],
                       observed=sync["observed"][k])
            for model in ("population_only", "joint"):
                for s in _STAT:
                    row[f"{model}_{s}"] = sync.get(model, {}).get(s, [np.nan] * (k + 1))[k]
            rows.append(row)
    return pd.DataFrame(rows)


def _state_blocks(summary, plan, results):
    rows = []
    for block, by_state in summary["state_blocks"].items():
        for state, r in by_state.items():
            for quantity in ("coupling", "correlation"):
                rows.append(dict(block=block, state=state, quantity=quantity,
                                 mean=r[quantity]["mean"], **{s: r[quantity][s] for s in _STAT},
                                 observed=r[quantity].get("observed"),
                                 num_pairs=r["num_pairs"]))
    return pd.DataFrame(rows)


def _state_probabilities(summary, plan, results):
    rows = []
    for block, pairs in summary["states"].items():
        for pair, probabilities in pairs.items():
            a, b = pair.split(">")
            for quantity, value in probabilities.items():
                rows.append(dict(block=block, quantity=quantity, state_a=a, state_b=b,
                                 probability=value))
    return pd.DataFrame(rows, columns=["block", "quantity", "state_a", "state_b",
                                       "probability"])


def _comparison(summary, plan, results):
    rows = []
    for state, population, result in _by_fit(plan, results, "compare"):
        walk = result.get("adaptive_metropolis", {})
        rows.append(dict(state=state, population=population, **result["summary"],
                         walk_draws=walk.get("num_draws"),
                         walk_acceptance_rate=walk.get("acceptance_rate"),
                         mle_total_s=result["timing"].get("mle_total_s"),
                         nuts_s=result["timing"].get("nuts_s")))
    return pd.DataFrame(rows)


def _families(summary, plan, results):
    rows = [dict(state=entry["state"], population=entry["population"],
                 method=entry.get("method", "loo"), criterion=entry.get("criterion"), **row)
            for entry in summary.get("families", []) for row in entry["rows"]]
    return pd.DataFrame(rows)


def _stages(summary, plan, results):
    return pd.DataFrame(summary["stages"])


_BUILDERS = {"fits": _fits, "neurons": _neurons, "information": _information,
             "synchrony": _synchrony, "thermo": _thermo, "peaks": _peaks, "ei": _ei,
             "ei_synchrony": _ei_synchrony, "state_blocks": _state_blocks,
             "state_probabilities": _state_probabilities, "comparison": _comparison,
             "families": _families, "stages": _stages}


def build_tables(summary, plan, results):
    """name -> DataFrame for every table (empty frames where an analysis did not run)."""
    return {name: builder(summary, plan, results) for name, builder in _BUILDERS.items()}
