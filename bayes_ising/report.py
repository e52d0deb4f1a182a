"""One self-contained HTML report of a Bayesian Ising analysis.

The report is a single ``.html`` file: PNG figures are embedded as base64 ``data:`` URIs, the
style sheet is inline, and nothing is fetched from the network, so a collaborator can open it
offline. Sections, in order (their ``id`` attributes are stable and listed in :data:`SECTIONS`):

1. ``verdict`` — run settings and the convergence verdict, in plain words, first;
2. ``data`` — raster excerpt, firing probabilities, states, cell types;
3. ``reliability`` — the per-neuron reliability table (and the cosine / 5% verdicts beside it);
4. ``worst`` — trace and rank plots of the worst-converged parameters;
5. ``couplings`` — posterior mean of J and its significance mask, ordered by cell type;
6. ``fit`` — posterior predictive P(K) and pattern frequencies;
7. ``information`` — S1, S2, SN and I2/IN;
8. ``ei`` — E-only vs E+I synchrony;
9. ``states`` — couplings and correlations per state;
10. ``thermo`` — C(T)/N and S(T)/N with bands, T*, the shuffled control and the caveat;
11. ``mle`` — MLE + adaptive Metropolis vs NUTS.

A section whose input was not given is kept and says what is missing and how to produce it.

Inputs are the results as the CLI saves them: the posterior DataTree (``bayes.load_posterior``),
the data (:class:`~bayes_ising.data.SpikeData`), and the JSON layouts of ``diagnose``
(DIAG.json), ``check`` (CHECKS.json), ``thermo`` (THERMO.json) and ``compare-mle`` (CMP.json).
"""

import base64
import datetime as _datetime
import html
import io
import json
import math
import traceback
from pathlib import Path

import numpy as np

from . import __version__, plots
from . import posterior as posterior_contract
from ._io import atomic_path
from .errors import DataError

__all__ = [
    "SECTIONS",
    "build_report",
    "write_report",
    "load_json",
    "posterior_summary",
    "convergence_summary",
    "figure_to_data_uri",
    "CRITICALITY_CAVEAT",
]

#: (id, title) of every section, in the order they appear
SECTIONS = [
    ("verdict", "Run settings and convergence verdict"),
    ("data", "Data summary"),
    ("reliability", "Per-neuron reliability"),
    ("worst", "Worst-converged parameters: trace and rank plots"),
    ("couplings", "Couplings J, ordered by cell type"),
    ("fit", "Goodness of fit: synchrony P(K) and pattern frequencies"),
    ("information", "Information: how much structure the pairwise model captures (I2/IN)"),
    ("ei", "Excitation and inhibition: E-only vs E+I models"),
    ("states", "States: couplings and correlations across states"),
    ("thermo", "Thermodynamics: heat capacity and entropy"),
    ("mle", "Maximum likelihood vs Bayes"),
]

#: printed in every thermodynamics section (DESIGN.md §1)
CRITICALITY_CAVEAT = (
    "A peak of the heat capacity near T = 1 is often read as a sign that the population sits "
    "near a critical point. Read it with care: such a peak also arises from subsampling a larger "
    "network, from shared input (a common fluctuating drive such as up/down states), and from "
    "the inference itself (a model fitted to finite data). Compare with the shuffled-data "
    "control below, and with how the peak moves as the number of neurons grows, before "
    "drawing any conclusion about criticality."
)

#: thresholds of the basic convergence check used when no diagnostics file is given
RHAT_THRESHOLD = 1.01
ESS_THRESHOLD = 400

_STYLE = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;max-width:1180px;margin:0 auto;
padding:1.5em 2em 4em;color:#222;line-height:1.45}
h1{font-size:1.7em;margin-bottom:.2em} h2{border-bottom:2px solid #ddd;padding-bottom:.2em;
margin-top:2.2em} h3{margin-bottom:.3em}
nav ol{columns:2;font-size:.92em} .meta{color:#666;font-size:.9em}
.verdict{padding:.8em 1.1em;border-radius:6px;font-size:1.05em;margin:.8em 0}
.ok{background:#e8f6ec;border-left:6px solid #27ae60} .bad{background:#fdecea;
border-left:6px solid #c0392b} .warn{background:#fff6e0;border-left:6px solid #e67e22}
.missing{background:#f4f4f4;border-left:6px solid #aaa;padding:.6em 1em;color:#555}
.error{background:#fdecea;padding:.6em 1em;color:#922}
table{border-collapse:collapse;font-size:.85em;margin:.6em 0} th,td{border:1px solid #ddd;
padding:3px 7px;text-align:right} th{background:#f3f3f3} td.l,th.l{text-align:left}
tr.flag td{background:#fff1f0} .scroll{max-height:460px;overflow:auto;display:inline-block}
figure{margin:1em 0} figure img{max-width:100%;border:1px solid #eee}
figcaption{font-size:.88em;color:#555;max-width:980px} code{background:#f4f4f4;padding:0 3px}
.caveat{background:#fff6e0;padding:.7em 1em;border-left:6px solid #e67e22}
"""


# ----------------------------------------------------------------------------- helpers


def figure_to_data_uri(fig, dpi=100):
    """PNG of a matplotlib figure as a ``data:image/png;base64,...`` URI (closes nothing global)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _figure_html(fig, caption, alt=None):
    uri = figure_to_data_uri(fig)
    alt = html.escape(alt or caption.split(".")[0])
    return (f'<figure><img src="{uri}" alt="{alt}"><figcaption>{caption}</figcaption>'
            "</figure>")


def _esc(value):
    return html.escape(str(value))


def _fmt(value, digits=3):
    if value is None:
        return "–"
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else "no"
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    try:
        number = float(value)
    except (TypeError, ValueError):
        return _esc(value)
    if not math.isfinite(number):
        return str(number)
    if number != 0 and (abs(number) < 0.1 or abs(number) >= 1e5):
        return f"{number:.{digits}g}"
    return f"{number:.{digits}f}"


def _interval_text(value, digits=3):
    """'0.42 [0.31, 0.55]' from a dict with median/lower/upper (or a number)."""
    if value is None:
        return "–"
    if isinstance(value, dict):
        centre = next((value[k] for k in ("median", "mean", "value", "estimate")
                       if value.get(k) is not None), None)
        if value.get("lower") is not None and value.get("upper") is not None:
            return f"{_fmt(centre, digits)} [{_fmt(value['lower'], digits)}, " \
                   f"{_fmt(value['upper'], digits)}]"
        return _fmt(centre, digits)
    return _fmt(value, digits)


def _table(headers, rows, *, row_classes=None, left=(0,)):
    head = "".join(f'<th class="{"l" if k in left else ""}">{_esc(h)}</th>'
                   for k, h in enumerate(headers or []))
    body = []
    for r, row in enumerate(rows):
        cls = f' class="{row_classes[r]}"' if row_classes and row_classes[r] else ""
        cells = "".join(f'<td class="{"l" if k in left else ""}">{cell}</td>'
                        for k, cell in enumerate(row))
        body.append(f"<tr{cls}>{cells}</tr>")
    head = f"<thead><tr>{head}</tr></thead>" if headers else ""
    return f"<table>{head}<tbody>{''.join(body)}</tbody></table>"


def _missing(what, how):
    return f'<p class="missing">Not available: {what}. {how}</p>'


def _get(mapping, *keys, default=None):
    """First key of ``keys`` present (and not None) in ``mapping``."""
    if not isinstance(mapping, dict):
        return default
    for key in keys:
        if mapping.get(key) is not None:
            return mapping[key]
    return default


def load_json(path):
    """Read a JSON result file; a clear :class:`DataError` when it is not JSON."""
    path = Path(path)
    try:
        with open(path) as f:
            return json.load(f)
    except json.JSONDecodeError as err:
        raise DataError(f"{path} is not a JSON file ({err.msg} at line {err.lineno})") from None
    except UnicodeDecodeError:
        raise DataError(f"{path} is not a JSON file (binary content)") from None


# ------------------------------------------------------------------ posterior summaries


def _maybe_json(value):
    if isinstance(value, str):
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value
    return value


def posterior_summary(tree, interval=0.9):
    """Arrays the report needs from a posterior DataTree.

    Returns
    -------
    dict with ``h`` (chain, draw, N), ``J`` (chain, draw, P), ``pairs`` (i, j), ``neuron_ids``,
    ``cell_types`` (or None), ``J_mean`` (N, N), ``J_significant`` (N, N) bool (the central
    ``interval`` credible interval excludes 0), ``num_chains``, ``num_draws``, ``divergences``.
    """
    h, J = posterior_contract.flat_draws(tree)
    num_neurons = h.shape[-1]
    ids, types = posterior_contract.neuron_ids(tree), posterior_contract.cell_types(tree)
    first, second = posterior_contract.pair_members(tree)
    tail = (1 - interval) / 2
    flat_mean = J.mean(axis=(0, 1))
    lower, upper = np.quantile(J.reshape(-1, J.shape[-1]), [tail, 1 - tail], axis=0)
    J_mean = np.zeros((num_neurons, num_neurons))
    J_mean[first, second] = flat_mean
    J_mean[second, first] = flat_mean
    significant = np.zeros((num_neurons, num_neurons), dtype=bool)
    excludes = (lower > 0) | (upper < 0)
    significant[first, second] = excludes
    significant[second, first] = excludes
    divergences = None
    try:
        stats = tree["sample_stats"].to_dataset()
        if "diverging" in stats:
            divergences = int(np.asarray(stats["diverging"].values).sum())
    except (KeyError, AttributeError):
        pass
    return {
        "h": h, "J": J, "pairs": (np.asarray(first), np.asarray(second)), "neuron_ids": ids,
        "cell_types": types, "J_mean": J_mean, "J_significant": significant,
        "J_lower": lower, "J_upper": upper, "num_chains": h.shape[0], "num_draws": h.shape[1],
        "divergences": divergences, "interval": interval,
    }


def convergence_summary(summary):
    """Per-parameter R-hat (rank-normalised) and bulk/tail ESS from ``posterior_summary``.

    Returns a dict of (P_total,) arrays ``name``, ``rhat``, ``ess_bulk``, ``ess_tail`` over all
    h then all J parameters, and a basic verdict (R-hat ≤ 1.01, bulk ESS ≥ 400, no divergences)
    used when no diagnostics file is given.
    """
    import arviz_stats as azs

    ids = summary["neuron_ids"]
    first, second = summary["pairs"]
    draws = np.concatenate([summary["h"], summary["J"]], axis=-1)  # (chain, draw, P)
    names = [f"h[{i}]" for i in ids] + [f"J[{ids[a]},{ids[b]}]" for a, b in
                                         zip(first, second, strict=True)]
    if summary["num_chains"] < 2 and summary["num_draws"] < 8:
        nan = np.full(draws.shape[-1], np.nan)
        return {"name": names, "rhat": nan, "ess_bulk": nan, "ess_tail": nan, "converged": None,
                "reasons": ["too few draws to compute R-hat"]}
    rhat = np.asarray(azs.rhat(draws, chain_axis=0, draw_axis=1))
    ess_bulk = np.asarray(azs.ess(draws, chain_axis=0, draw_axis=1, method="bulk"))
    ess_tail = np.asarray(azs.ess(draws, chain_axis=0, draw_axis=1, method="tail",
                                  prob=(0.05, 0.95)))
    reasons = []
    worst_rhat = float(np.nanmax(rhat))
    if not worst_rhat <= RHAT_THRESHOLD:
        count = int(np.sum(~(rhat <= RHAT_THRESHOLD)))
        reasons.append(f"{count} parameter(s) have R-hat above {RHAT_THRESHOLD} "
                       f"(worst {worst_rhat:.3f})")
    low_ess = float(np.nanmin(ess_bulk))
    if not low_ess >= ESS_THRESHOLD:
        count = int(np.sum(~(ess_bulk >= ESS_THRESHOLD)))
        reasons.append(f"{count} parameter(s) have bulk ESS below {ESS_THRESHOLD} "
                       f"(lowest {low_ess:.0f})")
    if summary["divergences"]:
        reasons.append(f"{summary['divergences']} divergent transition(s)")
    return {"name": names, "rhat": rhat, "ess_bulk": ess_bulk, "ess_tail": ess_tail,
            "converged": not reasons, "reasons": reasons}


# ---------------------------------------------------------------------------- data view


class _DataView:
    """What the data section needs, from a SpikeData or, failing that, the posterior."""

    def __init__(self, data, tree, summary):
        self.spins = None
        self.states = None
        self.bin_size = None
        self.time_units = None
        self.source = None
        self.neuron_ids = summary["neuron_ids"] if summary else None
        self.cell_types = summary["cell_types"] if summary else None
        self.firing_probability = None
        self.num_bins = None
        if data is not None:
            self.spins = np.asarray(data.spins)
            self.states = None if data.states is None else np.asarray(data.states).astype(str)
            self.bin_size = data.bin_size
            self.time_units = data.time_units
            self.source = data.source
            self.neuron_ids = np.asarray(data.neuron_ids).astype(str)
            self.cell_types = (None if data.cell_types is None
                               else np.asarray(data.cell_types).astype(str))
            self.firing_probability = np.asarray(data.firing_probability, dtype=float)
            self.num_bins = int(data.num_bins)
        elif tree is not None:
            try:
                observed = tree["observed_data"].to_dataset()
            except (KeyError, AttributeError):
                observed = None
            if observed is not None:
                if "spins" in observed:
                    self.spins = np.asarray(observed["spins"].values)
                if "firing_probability" in observed:
                    self.firing_probability = np.asarray(observed["firing_probability"].values,
                                                         dtype=float)
                elif "m" in observed:
                    self.firing_probability = (1 + np.asarray(observed["m"].values)) / 2
                if "num_bins" in observed:
                    self.num_bins = int(np.asarray(observed["num_bins"].values))
            attrs = getattr(tree, "attrs", {}) or {}
            self.source = attrs.get("data_source")
            self.bin_size = attrs.get("bin_size")
            self.time_units = attrs.get("time_units")
        if self.num_bins is None and self.spins is not None:
            self.num_bins = self.spins.shape[0]

    @property
    def available(self):
        return self.firing_probability is not None or self.spins is not None


# ---------------------------------------------------------------------------- sections


def _section_verdict(ctx):
    parts = []
    diag = ctx["diagnostics"]
    conv = ctx["convergence"]
    if diag is not None:
        converged = bool(diag.get("converged"))
        reasons = list(diag.get("reasons") or [])
        source = "the diagnostics"
    elif conv is not None and conv["converged"] is not None:
        converged = bool(conv["converged"])
        reasons = list(conv["reasons"])
        source = (f"a basic check of the posterior (R-hat ≤ {RHAT_THRESHOLD}, bulk ESS ≥ "
                  f"{ESS_THRESHOLD}, no divergences; no diagnostics file was given)")
    else:
        converged = None
        reasons = []
        source = None
    if converged is None:
        parts.append('<div class="verdict warn">No posterior or diagnostics were given, so '
                     "convergence cannot be judged.</div>")
    elif converged:
        text = (f"<b>The sampler converged</b> according to {_esc(source)}: the chains agree "
                "with each other and every parameter has enough effective draws, so the "
                "intervals below can be read as posterior uncertainty.")
        warnings = list((diag or {}).get("warnings") or [])
        if warnings:
            text += (" Sampler warnings (efficiency, not validity):<ul>"
                     + "".join(f"<li>{_esc(w)}</li>" for w in warnings) + "</ul>")
        parts.append(f'<div class="verdict ok">{text}</div>')
    else:
        text = (f"<b>The sampler did not converge</b> according to {_esc(source)}. Do not "
                "interpret the numbers below until it does (run more warmup and draws, or look "
                "at the flagged neurons). Reasons:<ul>"
                + "".join(f"<li>{_esc(r)}</li>" for r in reasons) + "</ul>")
        parts.append(f'<div class="verdict bad">{text}</div>')
    neurons = (diag or {}).get("neurons") or []
    flagged = [n for n in neurons if n.get("flagged")]
    if neurons:
        if flagged:
            names = ", ".join(_esc(n.get("id")) for n in flagged[:20])
            more = f" and {len(flagged) - 20} more" if len(flagged) > 20 else ""
            parts.append(f'<div class="verdict warn">{len(flagged)} of {len(neurons)} neurons '
                         f"are flagged as not reliably identified by the data ({names}{more}); "
                         "their fields and couplings are mostly prior, see the reliability "
                         "table.</div>")
        else:
            parts.append(f"<p>None of the {len(neurons)} neurons is flagged: every neuron's "
                         "parameters are identified by the data.</p>")
    parts.append(_settings_table(ctx))
    return "".join(parts)


def _settings_table(ctx):
    rows = []
    summary = ctx["summary"]
    tree = ctx["posterior"]
    attrs = dict(getattr(tree, "attrs", {}) or {}) if tree is not None else {}
    if summary is not None:
        rows.append(("neurons (N)", len(summary["neuron_ids"])))
        rows.append(("parameters", summary["h"].shape[-1] + summary["J"].shape[-1]))
        rows.append(("chains × draws", f"{summary['num_chains']} × {summary['num_draws']}"))
        if summary["divergences"] is not None:
            rows.append(("divergent transitions", summary["divergences"]))
    for key, label in [("likelihood", "likelihood"), ("adjust", "pseudo-posterior adjustment"),
                       ("num_warmup", "warmup steps"), ("seed", "seed"),
                       ("data_source", "data source"), ("sampling_time_s", "sampling time (s)"),
                       ("wall_time_s", "wall time (s)"),
                       ("bayes_ising_version", "bayes_ising version (fit)")]:
        if attrs.get(key) is not None:
            rows.append((label, attrs[key]))
    spec = _maybe_json(attrs.get("model_spec")) if attrs.get("model_spec") else None
    if isinstance(spec, dict):
        rows.append(("model spec", f"<code>{_esc(json.dumps(spec, sort_keys=True))}</code>"))
    for key, value in (ctx["settings"] or {}).items():
        rows.append((key, value))
    rows.append(("report made", f"{_datetime.datetime.now().isoformat(timespec='seconds')} "
                                f"by bayes_ising {__version__}"))
    formatted = [(f"<b>{_esc(k)}</b>", v if isinstance(v, str) and v.startswith("<code>")
                  else _esc(v) if isinstance(v, str) else _fmt(v)) for k, v in rows]
    return "<h3>Run settings</h3>" + _table(["setting", "value"], formatted, left=(0, 1))


def _section_data(ctx):
    view = ctx["data_view"]
    if not view.available:
        return _missing("the spike data", "Pass the data file (bayes-ising report POSTERIOR.nc "
                        "DATA …) to show the raster and rates.")
    parts = []
    num_neurons = len(view.firing_probability) if view.firing_probability is not None \
        else view.spins.shape[1]
    facts = [("source", _esc(view.source or "–")), ("neurons", num_neurons),
             ("bins", _fmt(view.num_bins))]
    if view.bin_size:
        facts.append(("bin size", f"{_fmt(view.bin_size)} {_esc(view.time_units or '')}"))
        facts.append(("duration", f"{_fmt(view.num_bins * view.bin_size)} "
                                  f"{_esc(view.time_units or '')}"))
    if view.cell_types is not None:
        types, counts = np.unique(view.cell_types, return_counts=True)
        facts.append(("cell types", ", ".join(f"{_esc(t)}: {c}" for t, c in
                                              zip(types, counts, strict=True))))
    if view.states is not None:
        states, counts = np.unique(view.states, return_counts=True)
        facts.append(("states (bins)", ", ".join(f"{_esc(s)}: {c}" for s, c in
                                                 zip(states, counts, strict=True))))
    if view.firing_probability is not None:
        p = view.firing_probability
        facts.append(("firing probability", f"median {_fmt(np.median(p))}, "
                                            f"range {_fmt(p.min())}–{_fmt(p.max())}; "
                                            f"{int(np.sum(p < 0.05))} neuron(s) below 5%"))
    parts.append(_table(None, [(f"<b>{k}</b>", v) for k, v in facts], left=(0, 1)))
    if view.spins is not None:
        fig = plots.plot_raster(view.spins, neuron_ids=view.neuron_ids,
                                cell_types=view.cell_types, states=view.states,
                                bin_size=view.bin_size, time_units=view.time_units,
                                start=_raster_start(view))
        parts.append(_figure_html(fig, "Raster excerpt. Each tick is a bin in which the neuron "
                                       "fired (s = +1); neurons ordered by cell type "
                                       "(E red, I blue); the strip on top shows the state."))
    flagged = _flag_mask(ctx, view.neuron_ids)
    if view.firing_probability is not None:
        fig = plots.plot_firing_rates(view.firing_probability, neuron_ids=view.neuron_ids,
                                      cell_types=view.cell_types, flagged=flagged,
                                      bin_size=view.bin_size, time_units=view.time_units)
        parts.append(_figure_html(fig, "Firing probability per neuron with the 5% rule of the "
                                       "study; hatched bars are neurons the diagnostics "
                                       "flagged."))
    if view.states is not None:
        names, counts = np.unique(view.states, return_counts=True)
        fig = plots.plot_states(names, counts, bin_size=view.bin_size,
                                time_units=view.time_units)
        parts.append(_figure_html(fig, "Time spent in each state."))
    return "".join(parts)


def _raster_start(view):
    """Start the excerpt where the states change, so the strip shows more than one state."""
    if view.states is None or view.spins is None:
        return 0
    changes = np.flatnonzero(view.states[1:] != view.states[:-1])
    if changes.size == 0:
        return 0
    return int(max(0, changes[0] - 300))


def _flag_mask(ctx, neuron_ids):
    diag = ctx["diagnostics"]
    if diag is None or neuron_ids is None or not diag.get("neurons"):
        return None
    flagged = {str(n.get("id")) for n in diag["neurons"] if n.get("flagged")}
    return np.array([str(n) in flagged for n in neuron_ids])


def _section_reliability(ctx):
    diag = ctx["diagnostics"]
    comparison = ctx["comparison"]
    if diag is None or not diag.get("neurons"):
        return _missing("per-neuron diagnostics", "Run <code>bayes-ising diagnose POSTERIOR.nc "
                        "--out DIAG.json</code> and pass <code>--diagnostics DIAG.json</code>.")
    neurons = diag["neurons"]
    old = _old_verdicts(comparison)
    headers = ["neuron", "cell type", "firing prob.", "flagged", "worst R-hat", "min bulk ESS",
               "contraction", "reasons"]
    if old:
        headers += ["cosine sim.", "cosine verdict", "≥ 5% rule"]
    rows, classes = [], []
    for neuron in neurons:
        row = [_esc(neuron.get("id")), _esc(neuron.get("cell_type") or "–"),
               _fmt(neuron.get("firing_probability")),
               "<b>flagged</b>" if neuron.get("flagged") else "ok",
               _fmt(neuron.get("max_rhat")), _fmt(neuron.get("min_ess_bulk"), 0),
               _fmt(neuron.get("contraction")),
               _esc("; ".join(neuron.get("reasons") or []) or "–")]
        if old:
            entry = old.get(str(neuron.get("id")), {})
            row += [_fmt(entry.get("cosine_similarity")),
                    _verdict_word(entry.get("cosine_flagged")),
                    _verdict_word(entry.get("threshold_flagged"))]
        rows.append(row)
        classes.append("flag" if neuron.get("flagged") else "")
    parts = [f"<p>{sum(bool(n.get('flagged')) for n in neurons)} of {len(neurons)} neurons "
             "flagged. A neuron is flagged when its parameters do not converge or the data "
             "barely move them away from the prior (low posterior contraction); "
             "the reasons column says which.</p>"]
    rule = diag.get("rule") or diag.get("flag_rule")
    if rule:
        rule = rule if isinstance(rule, str) else json.dumps(rule)
        parts.append(f"<p class='meta'>Rule: {_esc(rule)}</p>")
    parts.append('<div class="scroll">'
                 + _table(headers, rows, row_classes=classes, left=(0, 1, 7)) + "</div>")
    if old:
        parts.append(_agreement_html(comparison))
    else:
        parts.append(_missing("the study's cosine-similarity and 5% verdicts", "Run "
                              "<code>bayes-ising compare-mle</code> and pass "
                              "<code>--comparison CMP.json</code> to see them beside the "
                              "diagnostics."))
    try:
        fig = plots.plot_reliability(
            [n.get("firing_probability") for n in neurons],
            [_nan(n.get("max_rhat")) for n in neurons],
            [_nan(n.get("contraction")) for n in neurons],
            [bool(n.get("flagged")) for n in neurons],
            cell_types=(None if any(n.get("cell_type") in (None, "") for n in neurons)
                        else [n["cell_type"] for n in neurons]))
        parts.append(_figure_html(fig, "Per-neuron diagnostics against firing probability. "
                                       "Flagged neurons are circled in red; the dotted line is "
                                       "R-hat = 1.01 and the dashed line the 5% firing rule."))
    except (TypeError, ValueError):
        pass
    return "".join(parts)


def _nan(value):
    return np.nan if value is None else float(value)


def _verdict_word(flag):
    if flag is None:
        return "–"
    return "<b>unreliable</b>" if flag else "kept"


def _old_verdicts(comparison):
    flagged = (comparison or {}).get("flagged")
    if not flagged or not flagged.get("neurons"):
        return {}
    result = {}
    for k, neuron in enumerate(flagged["neurons"]):
        def pick(key, index=k):
            values = flagged.get(key)
            return None if values is None else values[index]
        result[str(neuron)] = {"cosine_similarity": pick("cosine_similarity"),
                               "cosine_flagged": pick("cosine"),
                               "threshold_flagged": pick("firing_threshold")}
    return result


def _agreement_html(comparison):
    agreement = (comparison.get("flagged") or {}).get("agreement") or {}
    names = {"diagnostics": "diagnostics", "restarts": "restart cosine similarity",
             "firing": "5% firing rule"}
    rows = []
    for key, counts in agreement.items():
        first, _, second = key.partition("_vs_")
        rows.append([f"{_esc(names.get(first, first))} vs {_esc(names.get(second, second))}",
                     _fmt(counts.get("both")), _fmt(counts.get("only_first")),
                     _fmt(counts.get("only_second")), _fmt(counts.get("neither")),
                     _fmt(counts.get("agree"))])
    if not rows:
        return ""
    return ("<h3>Agreement between the verdicts (numbers of neurons)</h3>"
            + _table(["first rule vs second rule", "both flag", "only the first",
                      "only the second", "neither", "agree"], rows))


def _section_worst(ctx, num_worst=6):
    summary, conv = ctx["summary"], ctx["convergence"]
    if summary is None:
        return _missing("the posterior", "Pass POSTERIOR.nc.")
    if conv is None or np.all(np.isnan(conv["rhat"])):
        return _missing("convergence statistics", "The posterior has too few draws.")
    rhat = np.nan_to_num(conv["rhat"], nan=np.inf)
    ess = np.nan_to_num(conv["ess_bulk"], nan=0.0)
    # worst first: highest R-hat, ties broken by lowest ESS
    order = np.lexsort((ess, -rhat))[:num_worst]
    draws = np.concatenate([summary["h"], summary["J"]], axis=-1)[..., order]
    draws = np.moveaxis(draws, -1, 0)
    names = [conv["name"][k] for k in order]
    fig = plots.plot_rank_trace(draws, names, rhat=conv["rhat"][order],
                                ess_bulk=conv["ess_bulk"][order])
    text = (f"<p>The {len(order)} parameters with the highest R-hat out of {len(conv['name'])}."
            f" Worst R-hat {_fmt(float(np.nanmax(conv['rhat'])))}, lowest bulk ESS "
            f"{_fmt(float(np.nanmin(conv['ess_bulk'])), 0)}, lowest tail ESS "
            f"{_fmt(float(np.nanmin(conv['ess_tail'])), 0)}.</p>")
    return text + _figure_html(fig, "Left: traces of each chain (one colour per chain). "
                                    "Right: rank histograms per chain; flat histograms near "
                                    "the dashed line mean the chains mix well.")


def _section_couplings(ctx):
    summary = ctx["summary"]
    if summary is None:
        return _missing("the posterior", "Pass POSTERIOR.nc.")
    fig = plots.plot_coupling_matrix(summary["J_mean"], summary["J_significant"],
                                     neuron_ids=summary["neuron_ids"],
                                     cell_types=summary["cell_types"],
                                     interval=summary["interval"])
    parts = [_figure_html(fig, "Posterior mean couplings (left) and only those whose "
                               f"{summary['interval']:.0%} credible interval excludes 0 "
                               "(right). Red: positive (the pair tends to fire together), "
                               "blue: negative. Lines separate cell-type blocks.")]
    types = summary["cell_types"]
    if types is not None:
        first, second = summary["pairs"]
        blocks = np.array(["-".join(sorted((types[a], types[b]))) for a, b in
                           zip(first, second, strict=True)])
        J = summary["J"].reshape(-1, summary["J"].shape[-1])
        rows = []
        tail = (1 - summary["interval"]) / 2
        for block in sorted(set(blocks.tolist())):
            sel = blocks == block
            block_mean = J[:, sel].mean(axis=1)
            low, mid, high = np.quantile(block_mean, [tail, 0.5, 1 - tail])
            sig = summary["J_significant"][first[sel], second[sel]]
            positive = (summary["J_lower"][sel] > 0).sum()
            rows.append([_esc(block), int(sel.sum()), f"{_fmt(mid)} [{_fmt(low)}, {_fmt(high)}]",
                         f"{int(sig.sum())} ({int(positive)} positive)"])
        parts.append(_table(["block", "pairs", f"mean J [{summary['interval']:.0%} interval]",
                             "significant pairs"], rows))
    return "".join(parts)


def _checks_synchrony(checks):
    """(observed, predicted dict, independent) from a CHECKS.json, tolerant of key names."""
    block = _get(checks, "synchrony", "p_k", "P_K", "synchrony_distribution")
    if not isinstance(block, dict):
        return None
    observed = _get(block, "observed", "data")
    predicted = _get(block, "predicted", "pairwise", "model")
    independent = _get(block, "independent")
    if observed is None:
        return None
    return {"observed": observed, "predicted": predicted, "independent": independent,
            "interval": _get(block, "interval", default=0.9), "summary": block}


def _section_fit(ctx):
    checks = ctx["checks"]
    if checks is None:
        return _missing("posterior predictive checks", "Run <code>bayes-ising check "
                        "POSTERIOR.nc DATA --out CHECKS.json</code> and pass "
                        "<code>--checks CHECKS.json</code>.")
    parts = []
    sync = _checks_synchrony(checks)
    if sync is not None:
        predicted = sync["predicted"]
        fig = plots.plot_synchrony_distribution(
            sync["observed"], predicted=_get(predicted, "median", "mean")
            if isinstance(predicted, dict) else predicted,
            lower=_get(predicted, "lower") if isinstance(predicted, dict) else None,
            upper=_get(predicted, "upper") if isinstance(predicted, dict) else None,
            independent=_get(sync["independent"], "median", "mean")
            if isinstance(sync["independent"], dict) else sync["independent"],
            interval=float(sync["interval"]))
        parts.append(_figure_html(fig, "Probability that K neurons fire in the same bin: data "
                                       "(dots), the pairwise model's posterior predictive "
                                       "(line and band) and the independent model (dashed)."))
        rows = _scalar_rows(sync["summary"], {
            "fraction_in_band": "fraction of observed P(K) inside the band",
            "max_abs_log_ratio": "max |log(predicted / observed)|, pairwise",
            "max_abs_log_ratio_independent": "max |log(predicted / observed)|, independent",
            "min_count": "(over K seen in at least this many bins)",
            "method": "method", "num_bins": "bins"})
        if rows:
            parts.append(_table(["P(K) check", "value"], rows, left=(0,)))
    else:
        parts.append(_missing("the P(K) comparison", "The checks file has no synchrony entry."))
    patterns = _get(checks, "patterns", "pattern_frequencies")
    if isinstance(patterns, dict) and _get(patterns, "observed") is not None:
        predicted = _get(patterns, "predicted", "model")
        fig = plots.plot_pattern_frequencies(
            patterns["observed"],
            _get(predicted, "median", "mean") if isinstance(predicted, dict) else predicted,
            lower=_get(predicted, "lower") if isinstance(predicted, dict) else None,
            upper=_get(predicted, "upper") if isinstance(predicted, dict) else None,
            num_bins=_get(patterns, "num_bins", default=_get(checks, "num_bins")))
        parts.append(_figure_html(fig, "Each point is one spike pattern observed in the data: "
                                       "its observed frequency against the model's "
                                       "probability. Points between the dashed lines agree "
                                       "within the sampling noise of the data."))
        rows = _scalar_rows(patterns, {
            "mean_abs_log_ratio": "count-weighted mean |log(predicted / observed)|, pairwise",
            "mean_abs_log_ratio_independent": "the same, independent model"})
        if rows:
            parts.append(_table(["pattern check", "value"], rows, left=(0,)))
    else:
        parts.append(_missing("pattern frequencies", "The checks file has no patterns entry."))
    third = _get(checks, "third_order", "third_order_correlations")
    if isinstance(third, dict):
        parts.append("<h3>Third-order correlations</h3>")
        predicted = third.get("predicted")
        if third.get("observed") is not None and isinstance(predicted, dict):
            fig = plots.plot_third_order(third["observed"], _get(predicted, "median", "mean"),
                                         lower=predicted.get("lower"),
                                         upper=predicted.get("upper"),
                                         interval=float(third.get("interval", 0.9)))
            parts.append(_figure_html(fig, "Connected third-order correlations of every "
                                           "triplet: the pairwise model's prediction against "
                                           "the data (a prediction: the model is fitted to "
                                           "means and pairs only)."))
        rows = _scalar_rows(third, {"correlation": "correlation, predicted vs observed",
                                    "slope": "slope through 0, predicted on observed",
                                    "rms_observed": "RMS of the observed values",
                                    "rms_error": "RMS error of the prediction",
                                    "method": "method"})
        if rows:
            parts.append(_table(["third-order check", "value"], rows, left=(0,)))
    return "".join(parts)


def _scalar_rows(block, labels):
    """Rows [label, value] for the scalar entries of ``block`` named in ``labels``, in order."""
    rows = []
    for key, label in labels.items():
        value = block.get(key) if isinstance(block, dict) else None
        if value is None or np.ndim(value) != 0:
            continue
        rows.append([_esc(label), _esc(value) if isinstance(value, str) else _fmt(value)])
    return rows


def _information_entries(ctx):
    """(entries with numbers, notes) from the checks and the extra fits."""
    blocks = []
    checks = ctx["checks"]
    info = _get(checks, "information", "info")
    if isinstance(info, dict):
        blocks.append((ctx.get("main_label") or "this fit", info))
    extra = dict(ctx["extra_information"] or {})
    subset = _get(checks, "information_subset")
    if isinstance(subset, dict) and not extra:
        extra["subset fit"] = subset
    blocks += list(extra.items())
    entries, notes = [], []
    for label, block in blocks:
        entry = _information_entry(block, label)
        if entry["ratio"] is None and entry["S2"] is None:
            if entry["note"]:
                notes.append(f"{label}: {entry['note']}")
            continue
        entries.append(entry)
        if entry["note"]:
            notes.append(f"{label}: {entry['note']}")
    return entries, notes


def _information_entry(info, label):
    ratio = _get(info, "ratio", "I2_over_IN", "i2_over_in", "multi_information_ratio")
    return {"label": label, "S1": _get(info, "S1", "s1"), "S2": _get(info, "S2", "s2"),
            "SN": _get(info, "SN", "sn"), "ratio": ratio,
            "reliable": _get(info, "SN_reliable", "reliable", "sn_reliable"),
            "note": _get(info, "note", "SN_note", "caveat")}


def _section_information(ctx):
    entries, notes = _information_entries(ctx)
    if not entries:
        return _missing("information ratios", "Run <code>bayes-ising check</code> (N ≤ 22: S2 "
                        "needs enumeration) and pass <code>--checks CHECKS.json</code>.") + (
            '<p class="caveat">' + "<br>".join(_esc(n) for n in notes) + "</p>" if notes
            else "")
    rows = []
    for entry in entries:
        rows.append([_esc(entry["label"]), _interval_text(entry["S1"]),
                     _interval_text(entry["S2"]), _interval_text(entry["SN"]),
                     _interval_text(entry["ratio"]),
                     _fmt(entry["reliable"]) if entry["reliable"] is not None else "–"])
    parts = ["<p>S1: entropy of the independent model; S2: of the pairwise model; SN: of the "
             "data (plug-in with Miller–Madow correction). I2/IN = (S1 − S2)/(S1 − SN) is the "
             "fraction of the multi-information captured by pairwise interactions. All "
             "entropies in nats per bin.</p>",
             _table(["fit", "S1", "S2", "SN", "I2/IN [interval]", "SN reliable"], rows)]
    if notes:
        parts.append('<p class="caveat">' + "<br>".join(_esc(n) for n in notes) + "</p>")
    try:
        parts.append(_figure_html(plots.plot_information(entries),
                                  "Entropies (left, with intervals over posterior draws where "
                                  "available) and I2/IN with its interval (right)."))
    except (TypeError, ValueError) as err:
        parts.append(f'<p class="error">Figure not drawn: {_esc(err)}</p>')
    return "".join(parts)


def _section_ei(ctx):
    ei = ctx["ei"] if ctx["ei"] is not None else _get(ctx["checks"], "ei", "e_only_vs_ei",
                                                      "ei_comparison")
    if not isinstance(ei, dict) or not ei:
        return _missing("the E/I comparison", "It needs cell types and fits of the E-only "
                        "and E+I models (<code>bayes-ising check</code> does it when cell types "
                        "are known; <code>bayes-ising demo</code> always does).")
    parts = ["<p>The synchrony of each population predicted by a model fitted to that "
             "population alone, against the E+I model's marginal over the same neurons and "
             "the data. A population-only model that over-predicts high-K synchrony is "
             "missing the other population's input.</p>"]
    rows, verdicts = [], []
    for population, block in ei.items():
        if not isinstance(block, dict) or population == "settings":
            continue
        pop_only = block.get("log_ratio_population_only")
        joint = block.get("log_ratio_joint")
        rows.append([_esc(population), _fmt(block.get("population_size")),
                     _fmt(block.get("k_high")), _fmt(block.get("observed_tail")),
                     _interval_text(block.get("tail_population_only")),
                     _interval_text(block.get("tail_joint")), _interval_text(pop_only),
                     _interval_text(joint)])
        if isinstance(pop_only, dict) and pop_only.get("lower") is not None:
            factor = math.exp(float(pop_only["median"]))
            direction = ("over-predicts" if pop_only["lower"] > 0 else
                         "under-predicts" if pop_only["upper"] < 0 else
                         "is compatible with")
            verdicts.append(
                f"The {population}-only model {direction} the probability of "
                f"{block.get('k_high')} or more {population} neurons firing together "
                f"(×{factor:.2g} the data's; log ratio {_interval_text(pop_only, 2)})"
                + (f", the E+I model's marginal: log ratio {_interval_text(joint, 2)}"
                   if isinstance(joint, dict) else "") + ".")
        sync = _get(block, "synchrony", "p_k")
        if isinstance(sync, dict) and _get(sync, "observed") is not None:
            fig = plots._figure(6, 3.8)
            ax = fig.subplots()
            observed = sync["observed"]
            for key, label, color in [("population_only", f"{population}-only model", "C3"),
                                      ("joint", "E+I model (marginal)", "C0")]:
                curve = sync.get(key)
                if isinstance(curve, dict):
                    k = np.arange(len(curve["median"]))
                    ax.fill_between(k, curve["lower"], curve["upper"], color=color, alpha=0.25)
                    ax.plot(k, curve["median"], color=color, label=label)
            observed = np.asarray(observed, dtype=float)
            shown = observed > 0
            ax.plot(np.arange(observed.size)[shown], observed[shown], "ko", markersize=3,
                    label="data")
            ax.set_yscale("log")
            ax.set_xlabel(f"K_{population} (number of {population} neurons active in a bin)")
            ax.set_ylabel("P(K) (fraction of bins)")
            ax.legend(fontsize=7)
            ax.set_title(f"{population} synchrony: {population}-only vs E+I model", fontsize=9)
            parts.append(_figure_html(fig, f"Synchrony of the {population} neurons: data, the "
                                           f"{population}-only model and the E+I model's "
                                           "marginal, with posterior bands."))
    if rows:
        table = _table(["population", "neurons", "k_high", "data P(K ≥ k_high)",
                        "population-only model", "E+I model marginal",
                        "log(population-only / data)", "log(E+I / data)"], rows)
        parts.insert(1, "".join(f"<p><b>{_esc(v)}</b></p>" for v in verdicts) + table)
    settings = ei.get("settings") if isinstance(ei.get("settings"), dict) else {}
    if settings:
        parts.append(f"<p class='meta'>Fits: {_esc(settings.get('fit'))}; joint model neurons:"
                     f" {_esc(', '.join(settings.get('joint_neurons') or []))}.</p>")
    return "".join(parts)


def _section_states(ctx):
    states = ctx["states"]
    if not isinstance(states, dict) or not states.get("states"):
        return _missing("the state comparison", "It needs fits per state "
                        "(<code>bayes-ising demo</code> does them; or fit with "
                        "<code>--state</code> for each state).")
    parts = []
    names = states["states"]
    for quantity in ("coupling", "correlation"):
        blocks = states.get(f"{quantity}_by_block")
        if blocks:
            parts.append(_figure_html(
                plots.plot_state_comparison(names, blocks, quantity=quantity,
                                            interval=states.get("interval", 0.9)),
                f"Mean {quantity} within each cell-type block, per state, with "
                f"{states.get('interval', 0.9):.0%} intervals over posterior draws"
                + (" (bootstrap over bins for correlations)." if quantity == "correlation"
                   else ".")))
    probabilities = states.get("probabilities") or {}
    if probabilities:
        parts.append(_table(["statement", "posterior probability"],
                            [[_esc(k), _fmt(v)] for k, v in probabilities.items()],
                            left=(0,)))
    if states.get("note"):
        parts.append(f"<p>{_esc(states['note'])}</p>")
    return "".join(parts) or _missing("state results", "The state entry is empty.")


def _section_thermo(ctx):
    thermo = ctx["thermo"]
    caveat = f'<p class="caveat"><b>Caveat.</b> {_esc(CRITICALITY_CAVEAT)}</p>'
    if thermo is None:
        return _missing("thermodynamics", "Run <code>bayes-ising thermo POSTERIOR.nc --out "
                        "THERMO.json</code> and pass <code>--thermo THERMO.json</code>.") + caveat
    temperature = thermo["temperature"]
    shuffled = _get(thermo, "shuffled_control", "shuffled")
    if isinstance(shuffled, dict):
        shuffled = {"temperature": _get(shuffled, "temperature", default=temperature),
                    "heat_capacity": _get(shuffled, "heat_capacity_per_neuron",
                                          "heat_capacity"),
                    "entropy": _get(shuffled, "entropy_per_neuron", "entropy"),
                    "peak": _get(shuffled, "peak")}
    else:
        shuffled = None
    fig = plots.plot_thermodynamics(temperature, thermo.get("heat_capacity_per_neuron"),
                                    thermo.get("entropy_per_neuron"), peak=thermo.get("peak"),
                                    shuffled=shuffled, interval=_get(
                                        thermo.get("heat_capacity_per_neuron") or {}, "interval",
                                        default=0.9), num_neurons=thermo.get("num_neurons"))
    peak = thermo.get("peak") or {}
    rows = [["peak temperature T*", _interval_text(peak.get("temperature"))],
            ["peak heat capacity C_max/N", _interval_text(peak.get("heat_capacity_per_neuron"))]]
    if shuffled is not None and shuffled.get("peak"):
        rows.append(["shuffled control: T*", _interval_text(shuffled["peak"].get("temperature"))])
        rows.append(["shuffled control: C_max/N",
                     _interval_text(shuffled["peak"].get("heat_capacity_per_neuron"))])
    for key in ("method", "num_posterior_draws", "posterior_draws", "num_neurons"):
        if thermo.get(key) is not None:
            rows.append([key.replace("_", " "), _esc(thermo[key])])
    warnings = thermo.get("warnings") or []
    parts = [_figure_html(fig, "Heat capacity C(T)/N = Var_T(E)/(N T²) (left) and entropy "
                               "S(T)/N by thermodynamic integration from S(∞) = N log 2 "
                               "(right), with posterior bands; the shaded vertical band is the "
                               "interval of the peak T*, the dotted line T = 1 (the fitted "
                               "model), grey the model fitted to shuffled data."),
             _table(["quantity", "median [interval]"], rows, left=(0,))]
    if warnings:
        parts.append('<p class="caveat">' + "<br>".join(_esc(w) for w in warnings) + "</p>")
    if shuffled is None:
        parts.append(_missing("the shuffled-data control", "Run <code>bayes-ising thermo … "
                              "--shuffled-control DATA</code>."))
    parts.append(caveat)
    return "".join(parts)


def _section_mle(ctx):
    comparison = ctx["comparison"]
    if comparison is None or not comparison.get("parameters"):
        return _missing("the MLE comparison", "Run <code>bayes-ising compare-mle POSTERIOR.nc "
                        "DATA --out CMP.json</code> and pass <code>--comparison "
                        "CMP.json</code>.")
    params = comparison["parameters"]
    fig = plots.plot_mle_vs_bayes(params["kind"], params["mle"], params["mle_lower"],
                                  params["mle_upper"], params["bayes_mean"],
                                  params["bayes_lower"], params["bayes_upper"])
    summary = comparison.get("summary") or {}
    timing = comparison.get("timing") or {}
    mle_info = comparison.get("mle") or {}
    walk = comparison.get("adaptive_metropolis") or {}
    rows = []
    for kind, label in (("h", "fields h"), ("J", "couplings J")):
        if summary.get(f"{kind}_num_parameters") is None:
            continue
        rows.append([label, _fmt(summary.get(f"{kind}_num_parameters")),
                     _fmt(summary.get(f"{kind}_median_width_ratio")),
                     _fmt(summary.get(f"{kind}_fraction_mle_in_bayes_interval")),
                     _fmt(summary.get(f"{kind}_fraction_intervals_overlap")),
                     _fmt(summary.get(f"{kind}_correlation")),
                     _fmt(summary.get(f"{kind}_rms_difference"))])
    times = [["MLE fit", timing.get("mle_fit_s")],
             ["adaptive Metropolis", timing.get("adaptive_metropolis_s")],
             ["optimiser restarts", timing.get("restarts_s")],
             ["MLE side in total", timing.get("mle_total_s")],
             ["NUTS (sampling, from the fit)", timing.get("nuts_s")]]
    method = mle_info.get("method")
    facts = [f"MLE: {_esc(method)}" if method else None,
             f"moment error {_fmt((mle_info.get('moment_error') or {}).get('max_abs_mean'))}"
             f" (means), {_fmt((mle_info.get('moment_error') or {}).get('max_abs_pair'))}"
             " (pairs)" if mle_info.get("moment_error") else None,
             f"{_fmt(walk.get('num_draws'))} adaptive-Metropolis draws, acceptance "
             f"{_fmt(walk.get('acceptance_rate'))}" if walk else None,
             f"compared on the {_esc(comparison['fit'])} fit" if comparison.get("fit")
             else None]
    parts = [f"<p>The study's approach (maximum likelihood, then an adaptive-Metropolis random "
             f"walk around the MLE for intervals, and optimiser restarts with a cosine-similarity"
             f" cut for reliability) against the NUTS posterior, parameter by parameter. "
             f"Intervals are central {comparison.get('interval', 0.9):.0%}. "
             + "; ".join(f for f in facts if f) + ".</p>",
             _figure_html(fig, "Left: MLE against posterior mean (each point one h_i or "
                               "J_ij). Right: width of the adaptive-Metropolis interval "
                               "against the NUTS interval (below the line: the walk's "
                               "interval is narrower)."),
             _table(["parameters", "number", "median width ratio (MLE walk / NUTS)",
                     "MLE inside NUTS interval", "intervals overlap", "correlation of "
                     "estimates", "RMS difference"], rows),
             "<h3>Time taken</h3>",
             _table(["step", "seconds"], [[k, _fmt(v, 1)] for k, v in times], left=(0,))]
    if comparison.get("flagged"):
        parts.append(_agreement_html(comparison))
    for warning in mle_info.get("warnings") or []:
        parts.append(f'<p class="caveat">MLE: {_esc(warning)}</p>')
    return "".join(parts)


_SECTION_BUILDERS = {
    "verdict": _section_verdict, "data": _section_data, "reliability": _section_reliability,
    "worst": _section_worst, "couplings": _section_couplings, "fit": _section_fit,
    "information": _section_information, "ei": _section_ei, "states": _section_states,
    "thermo": _section_thermo, "mle": _section_mle,
}


# ---------------------------------------------------------------------------- builder


def build_report(posterior=None, data=None, *, diagnostics=None, checks=None, thermo=None,
                 comparison=None, ei=None, states=None, extra_information=None, settings=None,
                 title=None, interval=0.9):
    """The report as one HTML string.

    Parameters
    ----------
    posterior : xarray.DataTree or None — the fit (layout of ``bayes.fit_posterior``)
    data : SpikeData or None — the data the fit used (raster, states, rates)
    diagnostics, checks, thermo, comparison : dicts in the layouts of DIAG.json, CHECKS.json,
        THERMO.json and CMP.json, or None
    ei : dict population -> {quantity: {median, lower, upper}, "synchrony": {...}} (the demo's
        E/I comparison), or None to use the ``ei`` entry of ``checks``
    states : dict with ``states`` (names), ``coupling_by_block`` and/or
        ``correlation_by_block`` ({block: {median, lower, upper}}), ``probabilities``
    extra_information : dict label -> information block (S1, S2, SN, ratio) of other fits
    settings : extra rows for the run-settings table
    interval : central credible interval used for the J significance mask

    Returns
    -------
    str — a complete HTML document with every figure embedded (no external resources).
    """
    import matplotlib

    matplotlib.rcParams.update({"font.size": 9})
    summary = posterior_summary(posterior, interval) if posterior is not None else None
    convergence = convergence_summary(summary) if summary is not None else None
    context = {
        "posterior": posterior, "summary": summary, "convergence": convergence,
        "diagnostics": diagnostics, "checks": checks, "thermo": thermo,
        "comparison": comparison, "ei": ei, "states": states, "settings": settings,
        "extra_information": extra_information,
        "main_label": (settings or {}).get("fit label"),
    }
    context["data_view"] = _DataView(data, posterior, summary)
    bodies = []
    for section_id, section_title in SECTIONS:
        try:
            body = _SECTION_BUILDERS[section_id](context)
        except Exception as err:  # one broken input must not lose the whole report
            detail = "".join(traceback.format_exception_only(type(err), err)).strip()
            body = (f'<p class="error">This section could not be drawn from the given input: '
                    f"{_esc(detail)}</p>")
        bodies.append(f'<section id="{section_id}"><h2>{_esc(section_title)}</h2>{body}'
                      "</section>")
    source = context["data_view"].source
    heading = title or "Bayesian Ising analysis"
    nav = "".join(f'<li><a href="#{sid}">{_esc(t)}</a></li>' for sid, t in SECTIONS)
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<title>{_esc(heading)}</title><style>{_STYLE}</style></head><body>"
        f"<h1>{_esc(heading)}</h1><p class=\"meta\">Data: {_esc(source or '–')} · "
        f"bayes_ising {__version__} · pairwise model E(s) = −Σ h_i s_i − Σ_(i&lt;j) J_ij s_i "
        "s_j, spins ±1, entropies in nats</p>"
        f"<nav><b>Contents</b><ol>{nav}</ol></nav>{''.join(bodies)}</body></html>\n"
    )


def write_report(path, text, force=False):
    """Write the HTML ``text`` to ``path`` atomically; returns the path."""
    path = Path(path)
    with atomic_path(path, force) as tmp:
        Path(tmp).write_text(text, encoding="utf-8")
    return path
