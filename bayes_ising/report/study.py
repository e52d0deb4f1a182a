"""The whole study's report: ``DIR/report.html`` from ``DIR/study.json`` and ``DIR/tables``.

:func:`render_study` reads what ``bayes-ising study DATA --out DIR`` wrote (the layout of
:mod:`bayes_ising.pipeline.outputs`: ``study.json``, the tidy ``tables/*.csv`` and, for the
per-parameter MLE comparison and the predictive-check summaries, the task results that
``study.json`` names) and writes one self-contained HTML file (figures embedded as PNG, no
external resources). Every number it shows was computed by the analysis modules; the report
only selects, lays out and words them. Sections (ids in :data:`SECTIONS`):

1. ``verdict`` — every fit (state, population, N, bins, likelihood, converged?, valid?,
   flagged neurons, failures with their message) and the headline numbers with intervals;
2. ``synchrony`` — per state P(K) of the E+I model with the independent model (Fig. 4);
   ``families`` — (``--compare-families``) the PSIS-LOO table of the independent, pairwise
   and K-pairwise posteriors per fit with N ≤ 22 and, as a separate criterion, the held-out
   log pseudolikelihood table (blocks of bins) of the larger fits, with each family's P(K)
   band beside the data;
3. ``ei`` — E-only / I-only vs the E+I model's marginal (Fig. 6);
4. ``states`` — couplings and correlations per cell-type block across states (Fig. 7);
5. ``thermo`` — C(T)/N per population, every state on one panel, bands and the shuffled
   control (Fig. 8), T* and C_max/N, the criticality caveat;
6. ``information`` — I2/IN (state × population);
7. ``reliability`` — per-neuron flags beside the restart-cosine and 5% rules;
8. ``mle`` — the study's method (MLE + adaptive-Metropolis walk) vs the posterior.

Each section says in words what its numbers support, names results that come from fits that
did not converge or do not reproduce the data, and, when its inputs are missing, what produces
them. Templates: ``templates/study/<section>.html.j2``.
"""

import json
from pathlib import Path

import numpy as np

from bayes_ising import __version__
from bayes_ising.core import limits
from bayes_ising.report import (
    CRITICALITY_CAVEAT,
    _bold,
    figure_view,
    format_number,
    interval_text,
    plots,
    render_page,
    render_section,
    table_view,
    walk_verdict,
    write_report,
)

__all__ = ["SECTIONS", "render_study", "build_study_report", "load_study"]

#: (id, title) of every section of the study report, in order
SECTIONS = [
    ("verdict", "Verdict of every fit and the headline numbers"),
    ("synchrony", "Synchrony P(K) per state: pairwise vs independent model (Fig. 4)"),
    ("families", "Beyond pairwise: independent vs pairwise vs K-pairwise (PSIS-LOO; held-out "
                 "pseudolikelihood above 22 neurons)"),
    ("ei", "E-only and I-only models vs the E+I model (Fig. 6)"),
    ("states", "Couplings and correlations per cell-type block across states (Fig. 7)"),
    ("thermo", "Heat capacity C(T)/N per population and state (Fig. 8)"),
    ("information", "I2/IN per state and population"),
    ("reliability", "Per-neuron reliability beside the study's cosine and 5% rules"),
    ("mle", "The study's method (MLE + adaptive-Metropolis walk) vs the posterior"),
]

_DONE = ("done", "existing")
#: posterior probabilities at or beyond these read as "clearly" one way (else: not resolved)
_CLEAR = (0.05, 0.95)


# ------------------------------------------------------------------------------ inputs


def load_study(out_dir):
    """``{"dir", "summary", "tables"}`` of a study folder (tables: name -> DataFrame)."""
    import pandas as pd

    out_dir = Path(out_dir)
    path = out_dir / "study.json"
    if not path.exists():
        from bayes_ising.errors import DataError

        raise DataError(f"{out_dir} holds no study.json (run `bayes-ising study DATA --out "
                        f"{out_dir}` first)")
    summary = json.loads(path.read_text())
    tables = {}
    for csv in sorted((out_dir / "tables").glob("*.csv")):
        try:
            tables[csv.stem] = pd.read_csv(csv)
        except pd.errors.EmptyDataError:  # an analysis that did not run: no columns
            tables[csv.stem] = pd.DataFrame()
    return {"dir": out_dir, "summary": summary, "tables": tables}


def _table(study, name, *columns):
    """The table ``name`` when present with ``columns`` and at least one row, else None."""
    frame = study["tables"].get(name)
    if frame is None or frame.empty or any(c not in frame for c in columns):
        return None
    return frame


def _task_result(study, path):
    """The ``result`` of a task file named in study.json (None when absent or unreadable)."""
    if not path:
        return None
    cache = study.setdefault("_results", {})
    if path not in cache:
        try:
            cache[path] = json.loads((study["dir"] / path).read_text()).get("result")
        except (OSError, json.JSONDecodeError):
            cache[path] = None
    return cache[path]


def _fit(study, state, population):
    return next((f for f in study["summary"].get("fits", [])
                 if f.get("state") == state and f.get("population") == population), None)


def _joint(study):
    """The population fitted jointly (the first one, e.g. "E+I")."""
    populations = study["summary"].get("populations") or []
    return populations[0] if populations else None


def _states(study):
    return list(dict.fromkeys(f["state"] for f in study["summary"].get("fits", [])))


def _trusted(fit):
    """A fit whose numbers can be read: it ran, converged and reproduces the data."""
    return bool(fit) and fit.get("status", "done") in _DONE and fit.get("converged") is True \
        and fit.get("valid") is not False


def _label(fit):
    return f"{fit['population']}, {fit['state']}"


def _untrusted_note(fits, what):
    """A sentence naming the fits among ``fits`` whose numbers should not be read."""
    bad = [f for f in fits if f and not _trusted(f)]
    if not bad:
        return None
    names = "; ".join(f"{_label(f)} ({_why_untrusted(f)})" for f in bad)
    return (f"{what} from fits that did not converge or do not reproduce the data are shown but "
            f"not to be read as results: {names}.")


def _why_untrusted(fit):
    if fit.get("status", "done") not in _DONE or fit.get("error"):
        return "failed"
    parts = []
    if fit.get("converged") is not True:
        parts.append("not converged" if fit.get("converged") is False else "convergence unknown")
    if fit.get("valid") is False:
        parts.append("not valid")
    return ", ".join(parts)


def _mark(text, fit):
    """Interval text with a dagger when it comes from a fit that is not to be read."""
    return text if _trusted(fit) or text == "–" else f"{text} †"


def _missing(what, how, study=None, kinds=()):
    """A missing section: what, what produces it, and the failures of those tasks."""
    failures = [f"{stage.get('name') or stage.get('kind')}: {stage['error']}"
                for stage in (study or {}).get("summary", {}).get("stages") or []
                if stage.get("kind") in kinds and stage.get("error")]
    if failures:
        how += " These tasks failed: " + "; ".join(failures[:6]) + (
            f" and {len(failures) - 6} more" if len(failures) > 6 else "") + "."
    return {"missing": what, "how": how}


# ----------------------------------------------------------------------- verdict section


def _verdict_view(study):
    summary = study["summary"]
    fits = summary.get("fits", [])
    rows, classes = [], []
    edges = _peak_edges(study)  # T* at an end of the temperature grid is a bound, not a peak
    for fit in fits:
        rows.append(_verdict_row(fit, edges.get((fit.get("state"), fit.get("population")), "")))
        failed = fit.get("status", "done") not in _DONE or bool(fit.get("error"))
        classes.append("fail" if failed else "" if _trusted(fit) else "flag")
    trusted = sum(_trusted(f) for f in fits)
    failures = [f for f in fits if f.get("status", "done") not in _DONE or f.get("error")]
    return {"table": table_view(
                ["state", "population", "N", "bins", "likelihood", "converged", "valid",
                 "flagged neurons", "I2/IN", "T*", "C_max/N", "failures"],
                rows, row_classes=classes, left=(0, 1, 4, 6, 7, 11)),
            "num_fits": len(fits), "num_trusted": trusted, "num_failed": len(failures),
            "headline": _headline_table(study), "notes": list(summary.get("notes") or []),
            "settings": _settings_line(summary), "interval": _interval(study)}


def _verdict_row(fit, peak_note=""):
    flagged = fit.get("flagged") or []
    shown = ", ".join(flagged[:8]) + (f" and {len(flagged) - 8} more" if len(flagged) > 8 else "")
    num_flagged = fit.get("num_flagged")
    validity = _validity_text(fit)
    if fit.get("error"):  # the fit failed: its analyses could not run
        errors = [f"fit: {fit['error']} (its analyses did not run)"]
    else:
        errors = [f"{kind}: {message}" for kind, message in (fit.get("errors") or {}).items()]
    return [fit.get("state"), fit.get("population"), format_number(fit.get("num_neurons")),
            format_number(fit.get("num_bins")), fit.get("likelihood") or "–",
            _converged_cell(fit),
            _yes_no(fit.get("valid")) + (f" ({validity})" if validity else ""),
            "–" if num_flagged is None else f"{num_flagged}" + (f": {shown}" if shown else ""),
            interval_text(fit.get("I2_IN")), interval_text(fit.get("T_peak")) + peak_note,
            interval_text(fit.get("C_max_per_neuron")), "; ".join(errors) or "–"]


def _validity_text(fit):
    """Why a fit is not valid, in words (None when valid or when no reason was recorded)."""
    if fit.get("valid") is not False:
        return None
    for text in (fit.get("validity_reason"), fit.get("validity")):
        if isinstance(text, dict):
            text = text.get("validity_reason") or text.get("reason")
        if isinstance(text, str) and text.strip() and text not in ("ok", "None") \
                and not text.startswith("{"):
            return text
    return None


def _converged_cell(fit):
    """"yes", or "no" with the worst R-hat and bulk ESS the diagnostics reported."""
    cell = _yes_no(fit.get("converged"))
    if fit.get("converged") is False:
        numbers = [f"R-hat {format_number(fit['max_rhat'])}" if fit.get("max_rhat") else None,
                   f"ESS {format_number(fit['min_ess_bulk'], 0)}" if fit.get("min_ess_bulk")
                   else None,
                   f"{fit['num_divergent']} divergent" if fit.get("num_divergent") else None]
        numbers = [n for n in numbers if n]
        if numbers:
            cell += f" ({', '.join(numbers)})"
    return cell


def _yes_no(value):
    if value is None:
        return "–"
    return "yes" if value else _bold("no")


def _settings_line(summary):
    settings = summary.get("settings") or {}
    keys = ("num_chains", "num_draws", "num_warmup", "posterior_draws", "thermo_draws",
            "walk_draws", "interval", "seed")
    parts = [f"{k} {settings[k]}" for k in keys if settings.get(k) is not None]
    return ", ".join(parts)


def _headline_table(study):
    """Rows: the study's headline quantities; columns: states. Daggers mark untrusted fits."""
    summary, joint = study["summary"], _joint(study)
    states = _states(study)
    rows, edges = [], _peak_edges(study)
    for key, label in (("I2_IN", "I2/IN"), ("T_peak", "T*"),
                       ("C_max_per_neuron", "C_max/N")):
        for population in summary.get("populations") or []:
            cells = [_mark(interval_text((_fit(study, s, population) or {}).get(key)),
                           _fit(study, s, population))
                     + (edges.get((s, population), "") if key == "T_peak" else "")
                     for s in states]
            if any(c != "–" for c in cells):
                rows.append([f"{label} ({population})", *cells])
    for population in ("E", "I"):
        for key, label in (("log_ratio_population_only", f"{population}-only model"),
                           ("log_ratio_joint", f"{joint} model's marginal")):
            cells = []
            for state in states:
                block = ((summary.get("ei") or {}).get(state) or {}).get(population) or {}
                fit = _fit(study, state, population if key.endswith("only") else joint)
                cells.append(_mark(interval_text(block.get(key), 2), fit))
            if any(c != "–" for c in cells):
                rows.append([f"log P(K_{population} ≥ k_high): {label} / data", *cells])
    return {"table": table_view(["quantity", *states], rows, left=(0,)) if rows else None,
            "probabilities": _headline_probabilities(summary)}


def _headline_probabilities(summary):
    """Sentences for P(I–I deep > wake) (or, failing that, every I–I pair)."""
    pairs = (summary.get("states") or {}).get("I-I") or {}
    chosen = {k: v for k, v in pairs.items() if k == "deep>wake"} or pairs
    out = []
    for pair, values in chosen.items():
        a, _, b = pair.partition(">")
        for quantity, probability in (values or {}).items():
            out.append(f"P(mean I–I {quantity} in {a} > {b}) = {format_number(probability)}")
    return out


# ------------------------------------------------------------ synchrony (Fig. 4) section


def _synchrony_view(study):
    joint = _joint(study)
    frame = _table(study, "synchrony", "state", "population", "k", "observed", "median",
                   "lower", "upper", "independent")
    if frame is None or joint is None or frame[frame["population"] == joint].empty:
        return _missing("the posterior predictive P(K)", "It is produced by each fit's "
                        "checks task of bayes-ising study; the verdict table names fits "
                        "whose checks failed.", study, ("checks",))
    rows = frame[frame["population"] == joint]
    states = list(dict.fromkeys(rows["state"]))
    fits = [_fit(study, s, joint) for s in states]
    titles = {s: f"{joint}, {s}" + ("" if _trusted(f) else " (not to be read)")
              for s, f in zip(states, fits, strict=True)}
    fig = plots.plot_study_synchrony(rows, interval=_interval(study), titles=titles)
    sentences = [_synchrony_sentence(study, f) for f in fits if f]
    return {"missing": None, "population": joint, "sentences": [s for s in sentences if s],
            "untrusted": _untrusted_note(fits, "Curves"),
            "figure": figure_view(fig, f"P(K), the probability that K of the {joint} neurons "
                                       "fire in the same bin, per state: data (dots), the "
                                       "pairwise model's posterior predictive median and "
                                       f"{_interval(study):.0%} band, and the independent "
                                       "model (dashed).")}


def _synchrony_sentence(study, fit):
    checks = _task_result(study, (fit.get("results") or {}).get("checks"))
    sync = ((checks or {}).get("checks") or {}).get("synchrony") or {}
    if sync.get("fraction_in_band") is None:
        return None
    inside = sync["fraction_in_band"]
    pairwise, independent = (sync.get("max_abs_log_ratio"),
                             sync.get("max_abs_log_ratio_independent"))
    closer = ""
    if pairwise is not None and independent is not None:
        closer = ("; the pairwise model is the closer of the two" if pairwise < independent
                  else "; the pairwise model is not closer than the independent model")
    return (f"{fit['state']}: {inside:.0%} of the observed P(K) (K seen in at least "
            f"{sync.get('min_count', 10)} bins) lie inside the replicated-data band; "
            f"max |log(predicted/observed)| is {format_number(pairwise)} for the pairwise model "
            f"against {format_number(independent)} for the independent model{closer}"
            + ("." if _trusted(fit) else f" (fit {_why_untrusted(fit)})."))


def _interval(study):
    return float((study["summary"].get("settings") or {}).get("interval") or 0.9)


# ------------------------------------------------------------ family comparison section


def _families_view(study):
    """The PSIS-LOO entries (N ≤ 22) and, as a separate criterion, the held-out entries."""
    entries = study["summary"].get("families") or []
    if not entries:
        asked = (study["summary"].get("settings") or {}).get("compare_families")
        if asked:
            return _missing("the family comparison", "It is produced by the families tasks "
                            "of bayes-ising study --compare-families.", study, ("families",))
        return {"missing": None, "not_asked": True, "entries": [], "held_out": []}
    loo = [e for e in entries if e.get("method", "loo") == "loo"]
    held = [e for e in entries if e.get("method") == "held_out"]

    def caveat(group):
        return (group and (_task_result(study, group[0]["result"]) or {}).get("caveat")) or ""

    return {"missing": None, "not_asked": False,
            "entries": [_loo_family_entry(study, e) for e in loo], "caveat": caveat(loo),
            "held_out": [_held_out_family_entry(study, e) for e in held],
            "held_out_caveat": caveat(held), "limit": limits.MAX_EXACT_NEURONS}


def _family_figure(study, entry, result, what):
    if not result.get("synchrony"):
        return None
    return figure_view(
        plots.plot_family_synchrony(result["synchrony"], interval=_interval(study)),
        f"P(K), {entry['population']}, {entry['state']}: data and each family's {what} "
        "(replicated data sets of the recording's size).")


def _loo_family_entry(study, entry):
    """One PSIS-LOO comparison: sentence, table, P(K) figure."""
    result = _task_result(study, entry.get("result")) or {}
    rows = [[r["family"].replace("_", "-"), format_number(r["elpd"], 6),
             format_number(r["se"]), format_number(abs(r["elpd_diff"])),
             format_number(r["dse"]), format_number(r["p"]),
             format_number(r["pareto_k_max"], 2),
             f"{r['pk_in_band']}/{r['pk_seen']}",
             format_number(r.get("third_order_slope")),
             format_number(r.get("information_ratio")),
             f"{r['patterns_in_band']}/{r['patterns_top']}" if "patterns_top" in r else "–",
             format_number(r.get("peak_temperature")),
             format_number(r.get("peak_heat_capacity_per_neuron")),
             format_number(r["max_rhat"], 4),
             format_number(r["seconds"], 0)] for r in entry["rows"]]
    best, second = entry["rows"][0], entry["rows"][1] if len(entry["rows"]) > 1 else None
    sentence = (f"{entry['population']}, {entry['state']}: {best['family'].replace('_', '-')}"
                " predicts left-out bins best" + (
                    f", by {format_number(abs(second['elpd_diff']))} ± "
                    f"{format_number(second['dse'])} (elpd difference ± se) over "
                    f"{second['family'].replace('_', '-')}" if second else "") + ".")
    return {"sentence": sentence,
            "figure": _family_figure(study, entry, result, "posterior-predictive band"),
            "table": table_view(
                ["family", "elpd_loo", "se", "elpd difference", "dse", "p_loo", "max Pareto k",
                 "P(K) in band", "third-order slope", "I_f/IN", "top patterns in band", "T*",
                 "C_max/N", "max R-hat", "fit s"], rows)}


def _held_out_family_entry(study, entry):
    """One held-out (blocked pseudolikelihood) comparison: sentence, table, P(K) figure."""
    result = _task_result(study, entry.get("result")) or {}
    blocks = len((result.get("held_out") or {}).get("block_scores", [[]])[0]) or None
    rows = [[r["family"].replace("_", "-"), format_number(r["held_out_per_bin"], 4),
             format_number(abs(r["held_out_difference"])), format_number(r["held_out_se"]),
             f"{r['pk_in_band']}/{r['pk_seen']}", format_number(r["max_rhat"], 4),
             format_number(r["min_ess_bulk"], 0), str(r.get("num_divergent", "–")),
             format_number(r["seconds"], 0)] for r in entry["rows"]]
    best, second = entry["rows"][0], entry["rows"][1] if len(entry["rows"]) > 1 else None
    sentence = (f"{entry['population']}, {entry['state']} (N = {entry.get('num_neurons')}"
                + (f", {blocks} blocks of bins" if blocks else "") + "): "
                f"{best['family'].replace('_', '-')} scores the held-out blocks best" + (
                    f", by {format_number(abs(second['held_out_difference']))} ± "
                    f"{format_number(second['held_out_se'])} (difference in held-out log "
                    f"pseudolikelihood ± se over blocks) over "
                    f"{second['family'].replace('_', '-')}" if second else "") + ".")
    return {"sentence": sentence,
            "figure": _family_figure(study, entry, result,
                                     "pseudo-posterior predictive band (Gibbs samples)"),
            "table": table_view(
                ["family", "held-out log PL per bin", "difference (sum over bins)", "se",
                 "P(K) in band", "max R-hat", "min ESS", "divergences", "fit s"], rows)}


# ------------------------------------------------------------------- E/I (Fig. 6) section


def _ei_view(study):
    summary, joint = study["summary"], _joint(study)
    ei = summary.get("ei") or {}
    frame = _table(study, "ei_synchrony", "state", "population", "k", "observed")
    if not ei:
        return _missing("the E/I comparison", "It is produced by the study's ei tasks, which "
                        "need cell types and a joint population (E+I) fitted beside E and/or I; "
                        "the notes under the verdict say why they were skipped.", study, ("ei",))
    rows, sentences, fits = [], [], []
    for state, populations in ei.items():
        for population, block in populations.items():
            pair = [_fit(study, state, population), _fit(study, state, joint)]
            fits += pair
            mark = "" if all(_trusted(f) for f in pair) else " †"
            rows.append([state, population, format_number(block.get("population_size")),
                         format_number(block.get("k_high")),
                         format_number(block.get("observed_tail")),
                         interval_text(block.get("log_ratio_population_only")) + mark,
                         interval_text(block.get("log_ratio_joint")) + mark])
            sentence = ei_sentence(state, population, joint, block)
            if sentence:
                sentences.append(sentence if not mark else
                                 sentence[:-1] + " (from a fit that is not to be read).")
    figure = None
    if frame is not None:
        figure = figure_view(plots.plot_study_ei(frame),
                             "Synchrony of each population A (rows) per state (columns): "
                             "P(K_A) of the data (dots), the model fitted to A alone (red) and "
                             f"the {joint} model's marginal over the same neurons (blue), with "
                             f"{_interval(study):.0%} posterior bands.")
    return {"missing": None, "joint": joint, "sentences": sentences, "figure": figure,
            "untrusted": _untrusted_note(list({id(f): f for f in fits if f}.values()),
                                         "Ratios"),
            "table": table_view(["state", "population A", "neurons", "k_high",
                                 "data P(K_A ≥ k_high)", "log(A-only / data)",
                                 f"log({joint} marginal / data)"], rows, left=(0, 1))}


def ei_sentence(state, population, joint, block):
    """Plain words for one comparison, from the intervals' position relative to 0."""
    alone, marginal = block.get("log_ratio_population_only"), block.get("log_ratio_joint")
    if not isinstance(alone, dict) or alone.get("lower") is None:
        return None

    def reading(band):
        if band["lower"] > 0:
            return "over-predicts"
        if band["upper"] < 0:
            return "under-predicts"
        return "agrees with the data on"

    text = (f"{state}: the {population}-only model {reading(alone)} the probability that "
            f"{block.get('k_high')} or more {population} neurons fire together (log ratio "
            f"{interval_text(alone, 2)})")
    if isinstance(marginal, dict) and marginal.get("lower") is not None:
        text += (f"; the {joint} model's marginal {reading(marginal)} it (log ratio "
                 f"{interval_text(marginal, 2)})")
    return text + "."


# ---------------------------------------------------------------- states (Fig. 7) section


def _states_view(study):
    joint = _joint(study)
    frame = _table(study, "state_blocks", "block", "state", "quantity", "median", "lower",
                   "upper")
    probabilities = _table(study, "state_probabilities", "block", "quantity", "state_a",
                           "state_b", "probability")
    if frame is None and probabilities is None:
        return _missing("the state comparison", "It is produced by the study's states task, "
                        "which needs at least two states and cell types; the notes under the "
                        "verdict say why it was skipped.", study, ("states",))
    fits = [_fit(study, s, joint) for s in _states(study)]
    view = {"missing": None, "figure": None, "table": None, "sentences": [],
            "untrusted": _untrusted_note(fits, "Couplings")}
    if frame is not None:
        view["figure"] = figure_view(
            plots.plot_study_blocks(frame, interval=_interval(study)),
            f"Mean coupling J (left; intervals over posterior draws of each state's {joint} "
            "fit) and mean Pearson correlation of the binned spins (right; intervals from a "
            "moving-block bootstrap over bins) within each cell-type block, per state.")
    if probabilities is not None:
        rows = [[r.block, r.quantity, f"{r.state_a} > {r.state_b}", format_number(r.probability)]
                for r in probabilities.itertuples()]
        view["table"] = table_view(["block", "quantity", "ordered pair of states",
                                    "P(mean in first > mean in second)"], rows, left=(0, 1, 2))
        view["sentences"] = _state_sentences(probabilities)
    return view


def _state_sentences(probabilities):
    """Per block and quantity: the pairs of states whose order is resolved (P ≥ 0.95 for one
    order), and those that are not."""
    out = []
    for (block, quantity), group in probabilities.groupby(["block", "quantity"], sort=False):
        value = {(r.state_a, r.state_b): r.probability for r in group.itertuples()}
        resolved, unresolved, seen = [], [], set()
        for a, b in value:
            if frozenset((a, b)) in seen:
                continue
            seen.add(frozenset((a, b)))
            forward, backward = value[a, b], value.get((b, a), 1 - value[a, b])
            if forward >= _CLEAR[1]:
                resolved.append(f"larger in {a} than {b} ({format_number(forward)})")
            elif backward >= _CLEAR[1]:
                resolved.append(f"larger in {b} than {a} ({format_number(backward)})")
            else:
                unresolved.append(f"{a} vs {b}")
        text = f"Mean {block} {quantity}: " + ("; ".join(resolved) if resolved else
                                                "no pair of states is ordered")
        if unresolved and resolved:
            text += "; not resolved: " + ", ".join(unresolved)
        out.append(text + ".")
    return out


# ----------------------------------------------------------------- thermo (Fig. 8) section


def _thermo_view(study):
    frame = _table(study, "thermo", "state", "population", "model", "quantity", "temperature",
                   "median", "lower", "upper")
    if frame is None:
        return _missing("thermodynamics", "It is produced by each fit's thermo task of "
                        "bayes-ising study.", study, ("thermo",))
    heat = frame[frame["quantity"] == "heat_capacity_per_neuron"].rename(columns={
        "median": "heat_capacity_median", "lower": "heat_capacity_lower",
        "upper": "heat_capacity_upper"})
    fits = [f for f in study["summary"].get("fits", []) if f.get("T_peak")]
    edges = _peak_edges(study)
    rows = [[f["state"], f["population"],
             _mark(interval_text(f.get("T_peak")), f) + edges.get((f["state"], f["population"]),
                                                                 ""),
             _mark(interval_text(f.get("C_max_per_neuron")), f),
             interval_text(f.get("T_peak_control")),
             interval_text(f.get("C_max_per_neuron_control")),
             _peak_reading(f, at_edge=(f["state"], f["population"]) in edges)]
            for f in fits]
    return {"missing": None, "untrusted": _untrusted_note(fits, "Peaks"),
            "figure": figure_view(plots.plot_study_thermo(heat, interval=_interval(study)),
                                  "Heat capacity per neuron C(T)/N = Var_T(E)/(N T²) of the "
                                  "fitted models (solid, posterior bands) and of models fitted "
                                  "to bin-shuffled data (dashed: the control with the "
                                  "correlations destroyed), every state on its population's "
                                  "panel; dotted: T = 1, the fitted model."),
            "table": table_view(["state", "population", "T*", "C_max/N", "control T*",
                                 "control C_max/N", "reading"], rows, left=(0, 1, 6))}


def _peak_edges(study):
    """(state, population) -> a note when T* lies at an end of the temperature grid for some
    draws (then T* is a bound, not a peak), from tables/peaks.csv."""
    frame = _table(study, "peaks", "state", "population", "model", "quantity",
                   "fraction_at_edge")
    if frame is None:
        return {}
    rows = frame[(frame["model"] == "posterior") & (frame["quantity"] == "T_peak")]
    return {(r.state, r.population): f" (at the grid's end in {r.fraction_at_edge:.0%} of draws)"
            for r in rows.itertuples() if r.fraction_at_edge and r.fraction_at_edge > 0}


def _peak_reading(fit, at_edge=False):
    """Where T*'s interval lies relative to 1, and C_max/N relative to the control's; a peak
    at an end of the temperature grid is only a bound (no peak inside the grid)."""
    peak, c_max = fit.get("T_peak") or {}, fit.get("C_max_per_neuron") or {}
    if peak.get("lower") is None:
        return "–"
    where = ("T* above 1" if peak["lower"] > 1 else "T* below 1" if peak["upper"] < 1
             else "T* interval contains 1")
    if at_edge:
        where = "no peak inside the temperature grid (C(T) is largest at its end)"
    control = fit.get("C_max_per_neuron_control") or {}
    if control.get("upper") is not None and c_max.get("lower") is not None:
        where += ("; C_max/N above the shuffled control's" if c_max["lower"] > control["upper"]
                  else "; C_max/N not above the shuffled control's")
    return where


# ------------------------------------------------------------------- information section


def _information_view(study):
    summary = study["summary"]
    fits = summary.get("fits", [])
    states, populations = _states(study), summary.get("populations") or []
    if not any(f.get("I2_IN") for f in fits):
        return _missing("I2/IN", "It is computed by each fit's checks task for fits of at most "
                        f"{limits.MAX_EXACT_NEURONS} neurons (S2 needs exact enumeration); "
                        "larger fits have none.")
    multi = _multi_information(study)
    rows = []
    for state in states:
        cells = []
        for population in populations:
            fit = _fit(study, state, population)
            text = _mark(interval_text((fit or {}).get("I2_IN")), fit)
            if fit and not fit.get("I2_IN") and fit.get("I2_IN_note"):
                text = f"not computed (N = {fit['num_neurons']})"
            if fit and fit.get("I2_IN") and (state, population) in multi:
                text += f"; IN = {format_number(multi[state, population])}"
            if fit and fit.get("I2_IN") and fit.get("SN_reliable") is False:
                text += " (SN unreliable)"
            cells.append(text)
        rows.append([state, *cells])
    return {"missing": None, "table": table_view(["state", *populations], rows),
            "sentences": [_information_sentence(f) for f in fits if f.get("I2_IN")
                          and _trusted(f)] + [
                f"{_label(f)}: {f['I2_IN_note']}." for f in fits
                if not f.get("I2_IN") and f.get("I2_IN_note")][:1],
            "untrusted": _untrusted_note([f for f in fits if f.get("I2_IN")], "Ratios")}


def _information_sentence(fit):
    ratio = fit["I2_IN"]
    if ratio.get("lower") is not None and (ratio["lower"] < 0 or ratio["upper"] > 1):
        return (f"{_label(fit)}: I2/IN {interval_text(ratio)} leaves [0, 1]: the total "
                "multi-information is too small for the ratio to be read.")
    return (f"{_label(fit)}: pairwise interactions capture {interval_text(ratio)} of the "
            "multi-information.")


def _multi_information(study):
    """(state, population) -> IN = S1 − SN (nats per bin) from tables/information.csv."""
    frame = _table(study, "information", "state", "population", "quantity", "median")
    if frame is None:
        return {}
    rows = frame[frame["quantity"] == "IN"]
    return {(r.state, r.population): r.median for r in rows.itertuples()}


# ------------------------------------------------------------------- reliability section


def _reliability_view(study):
    frame = _table(study, "neurons", "state", "population", "neuron", "flagged")
    if frame is None:
        return _missing("per-neuron diagnostics", "They are produced by each fit's checks task "
                        "(diagnostics) and compare task (restart cosine and 5% rules) of "
                        "bayes-ising study.", study, ("checks",))
    summary_rows, rows, classes = [], [], []
    for (state, population), group in frame.groupby(["state", "population"], sort=False):
        summary_rows.append([state, population, len(group), _count(group, "flagged"),
                             _count(group, "cosine_flagged"),
                             _count(group, "firing_threshold_flagged"),
                             ", ".join((_fit(study, state, population) or {}).get(
                                 "silent_neurons") or []) or "–"])
        for r in group.to_dict("records"):
            rows.append([state, population, r["neuron"], _text(r.get("cell_type")),
                         format_number(r.get("firing_probability")),
                         _bold("flagged") if _true(r.get("flagged")) else "ok",
                         _text(r.get("reasons")), format_number(r.get("max_rhat")),
                         format_number(r.get("contraction")),
                         format_number(r.get("cosine_similarity")),
                         _rule(r.get("cosine_flagged")),
                         _rule(r.get("firing_threshold_flagged"), "below 5%")])
            classes.append("flag" if _true(r.get("flagged")) else "")
    return {"missing": None,
            "summary": table_view(["state", "population", "neurons", "flagged (diagnostics)",
                                   "unreliable (restart cosine)", "below 5% (firing rule)",
                                   "silent in this state"], summary_rows, left=(0, 1, 6)),
            "table": table_view(["state", "population", "neuron", "cell type", "firing prob.",
                                 "diagnostics", "reasons", "worst R-hat", "contraction",
                                 "cosine sim.", "cosine rule", "5% rule"], rows,
                                row_classes=classes, left=(0, 1, 2, 3, 6))}


def _true(value):
    return value is True or (isinstance(value, (np.bool_, str)) and str(value) == "True")


def _missing_value(value):
    return value is None or (isinstance(value, float) and np.isnan(value))


def _count(group, column):
    if column not in group or group[column].isna().all():
        return "–"
    return str(int(sum(_true(v) for v in group[column])))


def _text(value):
    return "–" if _missing_value(value) or value == "" else str(value)


def _rule(value, word="unreliable"):
    if _missing_value(value):
        return "–"
    return _bold(word) if _true(value) else "kept"


# --------------------------------------------------------------------------- MLE section


def _mle_view(study):
    fits = [f for f in study["summary"].get("fits", []) if (f.get("results") or {}).get(
        "compare")]
    results = [(f, _task_result(study, f["results"]["compare"])) for f in fits]
    results = [(f, r) for f, r in results if r]
    if not results:
        return _missing("the MLE comparison", "It is produced by each fit's compare task of "
                        "bayes-ising study (MLE, adaptive-Metropolis walk, optimiser restarts).",
                        study, ("compare",))
    rows, verdicts, parameters = [], [], []
    for fit, result in results:
        css, text = comparison_verdict(result)
        verdicts.append({"class": css, "text": f"{_label(fit)}: {text}"})
        rows.append(_mle_row(fit, result))
        parameters.append(_parameter_rows(fit, result.get("parameters") or {}))
    return {"missing": None, "verdicts": _merge_verdicts(verdicts),
            "figure": _widths_figure(parameters),
            "table": table_view(["state", "population", "walk converged",
                                 "walk max R-hat", "walk min ESS (bulk / tail)",
                                 "h width ratio (walk / NUTS)", "J width ratio (walk / NUTS)",
                                 "J: MLE inside NUTS interval", "walk s per effective draw",
                                 "NUTS s per effective draw"], rows, left=(0, 1))}


def comparison_verdict(result):
    """(CSS class, sentence) of one MLE-vs-Bayes comparison: the comparison's own verdict
    (:func:`bayes_ising.analysis.comparison.verdict`) when it has one, else the walk's status."""
    walk = result.get("adaptive_metropolis") or {}
    if result.get("verdict"):
        converged = walk.get("converged")
        return ("ok" if converged else "bad" if converged is False else "warn",
                str(result["verdict"]))
    return walk_verdict(walk, (result.get("summary") or {}).get("J_median_width_ratio"))


def _width_ratio(result, kind):
    """Median width ratio walk/NUTS of the well-identified parameters (± Monte Carlo error)
    when the comparison has groups, else over all parameters of the kind."""
    group = (result.get("groups") or {}).get(f"{kind}_busy") or {}
    if group.get("median_width_ratio") is not None:
        text = format_number(group["median_width_ratio"])
        if group.get("mc_error") is not None:
            text += f" ± {format_number(group['mc_error'])}"
        return text + " (busy neurons)"
    return format_number((result.get("summary") or {}).get(f"{kind}_median_width_ratio"))


def _mle_row(fit, result):
    walk, cost = result.get("adaptive_metropolis") or {}, result.get("cost") or {}
    ess = "–"
    if walk.get("min_ess_bulk") is not None:
        ess = (f"{format_number(walk['min_ess_bulk'], 0)} / "
               f"{format_number(walk.get('min_ess_tail'), 0)}")
    draws = walk.get("num_draws")
    chains = f"{walk['num_chains']} × " if walk.get("num_chains") else ""
    converged = ("not checked" if walk.get("converged") is None
                 else _yes_no(walk["converged"])) + (f" ({chains}{draws} draws)" if draws else "")
    return [fit["state"], fit["population"], converged, format_number(walk.get("max_rhat")),
            ess, _width_ratio(result, "h"), _width_ratio(result, "J"),
            format_number((result.get("summary") or {}).get("J_fraction_mle_in_bayes_interval")),
            format_number((cost.get("walk") or {}).get("seconds_per_effective_draw")),
            format_number((cost.get("nuts") or {}).get("seconds_per_effective_draw"))]


def _merge_verdicts(verdicts):
    """Identical sentences once (e.g. every walk unchecked), else one per fit."""
    texts = {v["text"].split(": ", 1)[1] for v in verdicts}
    if len(texts) == 1:
        return [{"class": verdicts[0]["class"], "text": "Every fit: " + texts.pop()}]
    return verdicts


def _parameter_rows(fit, parameters):
    import pandas as pd

    keys = ("kind", "mle_lower", "mle_upper", "bayes_lower", "bayes_upper")
    if any(parameters.get(k) is None for k in keys):
        return pd.DataFrame()
    frame = pd.DataFrame({k: parameters[k] for k in keys})
    return frame.assign(state=fit["state"], population=fit["population"])


def _widths_figure(parameters):
    import pandas as pd

    frames = [p for p in parameters if not p.empty]
    if not frames:
        return None
    return figure_view(plots.plot_study_widths(pd.concat(frames, ignore_index=True)),
                       "Interval width of every parameter: the adaptive-Metropolis walk around "
                       "the MLE (the study's error bars) against the NUTS posterior, one panel "
                       "per fit. Below the line the walk's interval is narrower.")


# ------------------------------------------------------------------------------- builder


_BUILDERS = {"verdict": _verdict_view, "synchrony": _synchrony_view,
             "families": _families_view, "ei": _ei_view,
             "states": _states_view, "thermo": _thermo_view,
             "information": _information_view, "reliability": _reliability_view,
             "mle": _mle_view}


def build_study_report(study, *, title=None):
    """The study report as one HTML string, from :func:`load_study`'s dict."""
    import matplotlib

    matplotlib.rcParams.update({"font.size": 9})
    summary = study["summary"]
    data = summary.get("data") or {}
    sections = [render_section(sid, section_title, f"study/{sid}.html.j2", _BUILDERS[sid],
                               study) for sid, section_title in SECTIONS]
    states = ", ".join(f"{name} ({info.get('num_bins')} bins)" for name, info in
                       (data.get("states") or {}).items())
    meta = (f"Data: {data.get('source') or '–'} · {data.get('num_neurons', '–')} neurons, "
            f"{data.get('num_bins', '–')} bins" + (f" · states: {states}" if states else "")
            + f" · study wall time {format_number(summary.get('wall_time_s'), 0)} s · "
            f"bayes_ising {summary.get('bayes_ising_version') or __version__} (report "
            f"{__version__}) · E(s) = −Σ h_i s_i − Σ_(i<j) J_ij s_i s_j, spins ±1")
    return str(render_page(title or "bayes-ising study", meta, sections,
                           caveat=CRITICALITY_CAVEAT))


def render_study(out_dir, *, path=None, force=True, title=None):
    """Write the study report (default ``out_dir/report.html``, replaced); returns its path.

    Raises :class:`~bayes_ising.errors.DataError` when ``out_dir`` holds no study.json.
    """
    study = load_study(out_dir)
    path = Path(path) if path is not None else Path(out_dir) / "report.html"
    return write_report(path, build_study_report(study, title=title), force=force)
