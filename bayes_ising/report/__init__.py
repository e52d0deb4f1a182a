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

The HTML comes from Jinja2 templates (``bayes_ising/report/templates``: ``base.html.j2`` the page,
``_macros.html.j2`` tables and figures, ``report/<section>.html.j2`` one per section). The
Python side only gathers each section's numbers (from the analysis modules' results) and
figures into a plain dict, its *view*; a section's template lays the view out. The whole-study
report (:func:`render_study`, in :mod:`bayes_ising.report.study`) uses the same machinery.

Inputs are the results as the CLI saves them: the posterior DataTree (``bayes.load_posterior``),
the data (:class:`~bayes_ising.data.SpikeData`), and the JSON layouts of ``diagnose``
(DIAG.json), ``check`` (CHECKS.json), ``thermo`` (THERMO.json) and ``compare-mle`` (CMP.json).
"""

import base64
import datetime as _datetime
import functools
import io
import json
import math
import traceback
from pathlib import Path

import numpy as np

from bayes_ising import __version__
from bayes_ising._io import atomic_path
from bayes_ising.core import convergence, stats
from bayes_ising.errors import DataError
from bayes_ising.fit import posterior as posterior_contract
from bayes_ising.report import plots

__all__ = [
    "SECTIONS",
    "build_report",
    "write_report",
    "render_study",
    "render_template",
    "render_page",
    "load_json",
    "posterior_summary",
    "convergence_summary",
    "figure_to_data_uri",
    "format_number",
    "interval_text",
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
    "control, and with how the peak moves as the number of neurons grows, before "
    "drawing any conclusion about criticality."
)

#: where the templates live (package data, see pyproject.toml)
TEMPLATE_DIR = Path(__file__).parent / "templates"


# ----------------------------------------------------------------------------- templates


@functools.cache
def _environment():
    """The Jinja2 environment: autoescaping on, undefined names are errors, two filters."""
    import jinja2

    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATE_DIR), autoescape=True,
                             undefined=jinja2.StrictUndefined, trim_blocks=True,
                             lstrip_blocks=True, keep_trailing_newline=True)
    env.filters["fmt"] = format_number
    env.filters["interval"] = interval_text
    return env


def render_template(name, **context):
    """Render ``templates/<name>`` with ``context``; returns Markup (safe to nest)."""
    from markupsafe import Markup

    return Markup(_environment().get_template(name).render(**context))


def _error_text(err):
    return "".join(traceback.format_exception_only(type(err), err)).strip()


def render_section(section_id, title, template, build, *args):
    """One section as ``{id, title, body, error}``: ``build(*args)`` makes the view, the
    template lays it out; an exception in either is caught and named in that section only."""
    try:
        body = render_template(template, v=build(*args), caveat=CRITICALITY_CAVEAT)
        return {"id": section_id, "title": title, "body": body, "error": None}
    except Exception as err:  # one broken input must not lose the whole report
        return {"id": section_id, "title": title, "body": "", "error": _error_text(err)}


def render_page(title, meta, sections, template="base.html.j2", **context):
    """The whole page: ``sections`` from :func:`render_section`, in order."""
    return render_template(template, title=title, meta=meta, sections=sections, **context)


# ----------------------------------------------------------------------------- helpers


def figure_to_data_uri(fig, dpi=100):
    """PNG of a matplotlib figure as a ``data:image/png;base64,...`` URI (closes nothing global)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def figure_view(fig, caption, alt=None):
    """A figure for the ``figure`` macro: embedded PNG, alt text, caption."""
    return {"uri": figure_to_data_uri(fig), "alt": alt or caption.split(".")[0],
            "caption": caption}


def format_number(value, digits=3):
    """A number as text: "–" for None / NaN, "yes"/"no" for booleans, 3 significant digits."""
    if value is None:
        return "–"
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else "no"
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    try:
        number = float(value)
    except (TypeError, ValueError):
        return str(value)
    if math.isnan(number):
        return "–"
    if math.isinf(number):
        return "∞" if number > 0 else "−∞"
    if number != 0 and (abs(number) < 0.1 or abs(number) >= 1e5):
        return f"{number:.{digits}g}"
    return f"{number:.{digits}f}"


_fmt = format_number


def _centre(value):
    return next((value[k] for k in ("median", "mean", "value", "estimate")
                 if value.get(k) is not None), None)


def interval_text(value, digits=3):
    """'0.42 [0.31, 0.55]' from a dict with median/lower/upper (or a number)."""
    if value is None:
        return "–"
    if isinstance(value, dict):
        centre = _centre(value)
        if value.get("lower") is not None and value.get("upper") is not None:
            if value["lower"] == value["upper"] == centre:  # one draw: no interval to show
                return format_number(centre, digits)
            return (f"{format_number(centre, digits)} [{format_number(value['lower'], digits)}, "
                    f"{format_number(value['upper'], digits)}]")
        return format_number(centre, digits)
    return format_number(value, digits)


_interval_text = interval_text


def table_view(headers, rows, *, row_classes=None, left=(0,)):
    """A table for the ``table`` macro (cells are text; Markup cells pass unescaped)."""
    return {"headers": list(headers) if headers else None, "rows": [list(r) for r in rows],
            "classes": list(row_classes) if row_classes else None, "left": list(left)}


def _bold(text):
    from markupsafe import Markup, escape

    return Markup("<b>{}</b>").format(escape(text))


def _code(text):
    from markupsafe import Markup, escape

    return Markup("<code>{}</code>").format(escape(text))


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


def render_study(out_dir, *, path=None, force=True):
    """Write ``DIR/report.html`` for a study folder; returns its path (see
    :func:`bayes_ising.report.study.render_study`)."""
    from bayes_ising.report.study import render_study as _render

    return _render(out_dir, path=path, force=force)


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
    ``interval`` credible interval excludes 0), ``num_chains``, ``num_draws``, ``num_divergent``
    (None when not recorded), ``V`` (chain, draw, N) — the sampled levels V(1..N) of a
    K-pairwise posterior, or None — and ``family``.
    """
    h, J = posterior_contract.flat_draws(tree)
    V = None
    if posterior_contract.has_potential(tree):
        V = posterior_contract.posterior_group(tree)["V"]
        V = np.asarray(V.transpose("chain", "draw", ...).values, float)[..., 1:]
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
    num_divergent = None  # None: the tree records no divergences (not a NUTS run)
    if "sample_stats" in tree.children and "diverging" in tree["sample_stats"].data_vars:
        num_divergent = convergence.num_divergent(tree)
    elif "num_divergent" in (getattr(tree, "attrs", None) or {}):
        num_divergent = int(tree.attrs["num_divergent"])  # K-pairwise trees keep the count
    return {
        "V": V, "family": posterior_contract.family(tree),
        "h": h, "J": J, "pairs": (np.asarray(first), np.asarray(second)), "neuron_ids": ids,
        "cell_types": types, "J_mean": J_mean, "J_significant": significant,
        "J_lower": lower, "J_upper": upper, "num_chains": h.shape[0], "num_draws": h.shape[1],
        "num_divergent": num_divergent, "interval": interval,
    }


def _all_draws(summary):
    """h, J and (K-pairwise) V draws side by side, (chain, draw, P_total)."""
    parts = [summary["h"], summary["J"]] + ([summary["V"]] if summary.get("V") is not None
                                            else [])
    return np.concatenate(parts, axis=-1)


def convergence_summary(summary):
    """Per-parameter R-hat (rank-normalised) and bulk/tail ESS from ``posterior_summary``.

    Returns a dict of (P_total,) arrays ``name``, ``rhat``, ``ess_bulk``, ``ess_tail`` over all
    h then all J parameters (then V(1..N) of a K-pairwise posterior), and the package's
    mixing verdict
    (:func:`bayes_ising.core.convergence.verdict`) used when no diagnostics file is given.
    """
    ids = summary["neuron_ids"]
    first, second = summary["pairs"]
    draws = _all_draws(summary)  # (chain, draw, P)
    names = [f"h[{i}]" for i in ids] + [f"J[{ids[a]},{ids[b]}]" for a, b in
                                         zip(first, second, strict=True)]
    if summary.get("V") is not None:
        names += [f"V({k})" for k in range(1, summary["V"].shape[-1] + 1)]
    rhat, ess_bulk, ess_tail = convergence.draw_statistics(draws)
    mixing = convergence.verdict(rhat, ess_bulk, ess_tail, summary["num_divergent"],
                                 num_chains=summary["num_chains"],
                                 num_transitions=summary["num_chains"] * summary["num_draws"])
    return {"name": names, "rhat": rhat, "ess_bulk": ess_bulk, "ess_tail": ess_tail,
            "converged": mixing.converged, "reasons": list(mixing.reasons)}


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
                    self.firing_probability = stats.probability_from_mean(observed["m"].values)
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


def _verdict_view(ctx):
    diag, conv = ctx["diagnostics"], ctx["convergence"]
    view = {"converged": None, "reasons": [], "warnings": [], "source": None, "valid": None,
            "valid_reason": None, "num_neurons": 0, "num_flagged": 0, "flagged": [],
            "flagged_more": 0, "settings": _settings_table(ctx)}
    if diag is not None:
        view.update(converged=bool(diag.get("converged")), source="the diagnostics",
                    reasons=list(diag.get("reasons") or []),
                    warnings=list(diag.get("warnings") or []))
        validity = diag.get("validity") if isinstance(diag.get("validity"), dict) else {}
        valid = _get(diag, "valid", default=validity.get("valid"))
        if valid is not None:
            view.update(valid=bool(valid), valid_reason=_get(
                diag, "valid_reason", "validity_reason",
                default=_get(validity, "reason", "verdict")))
    elif conv is not None and conv["converged"] is not None:
        view.update(converged=bool(conv["converged"]), reasons=list(conv["reasons"]),
                    source=f"a basic check of the posterior ({convergence.rule_text()}; no "
                           "diagnostics file was given)")
    neurons = (diag or {}).get("neurons") or []
    flagged = [str(n.get("id")) for n in neurons if n.get("flagged")]
    view.update(num_neurons=len(neurons), num_flagged=len(flagged), flagged=flagged[:20],
                flagged_more=max(0, len(flagged) - 20))
    return view


def _settings_table(ctx):
    rows = []
    summary = ctx["summary"]
    tree = ctx["posterior"]
    attrs = dict(getattr(tree, "attrs", {}) or {}) if tree is not None else {}
    if summary is not None:
        rows.append(("neurons (N)", len(summary["neuron_ids"])))
        rows.append(("parameters", _all_draws(summary).shape[-1]))
        rows.append(("family", summary["family"].replace("_", "-")))
        rows.append(("chains × draws", f"{summary['num_chains']} × {summary['num_draws']}"))
        if summary["num_divergent"] is not None:
            rows.append(("divergent transitions", summary["num_divergent"]))
    for key, label in [("likelihood", "likelihood"), ("adjust", "pseudo-posterior adjustment"),
                       ("num_warmup", "warmup steps"), ("seed", "seed"),
                       ("data_source", "data source"), ("sampling_time_s", "sampling time (s)"),
                       ("wall_time_s", "wall time (s)"),
                       ("bayes_ising_version", "bayes_ising version (fit)")]:
        if attrs.get(key) is not None:
            rows.append((label, attrs[key]))
    spec = _maybe_json(attrs.get("model_spec")) if attrs.get("model_spec") else None
    if isinstance(spec, dict):
        rows.append(("model spec", _code(json.dumps(spec, sort_keys=True))))
    for key, value in (ctx["settings"] or {}).items():
        rows.append((key, value))
    rows.append(("report made", f"{_datetime.datetime.now().isoformat(timespec='seconds')} "
                                f"by bayes_ising {__version__}"))
    formatted = [(_bold(k), v if isinstance(v, str) else _fmt(v)) for k, v in rows]
    return table_view(["setting", "value"], formatted, left=(0, 1))


def _data_view(ctx):
    view = ctx["data_view"]
    if not view.available:
        return None
    num_neurons = len(view.firing_probability) if view.firing_probability is not None \
        else view.spins.shape[1]
    unit = view.time_units or ""
    facts = [("source", view.source or "–"), ("neurons", num_neurons),
             ("bins", _fmt(view.num_bins))]
    if view.bin_size:
        facts.append(("bin size", f"{_fmt(view.bin_size)} {unit}"))
        facts.append(("duration", f"{_fmt(view.num_bins * view.bin_size)} {unit}"))
    for label, values in (("cell types", view.cell_types), ("states (bins)", view.states)):
        if values is not None:
            names, counts = np.unique(values, return_counts=True)
            facts.append((label, ", ".join(f"{t}: {c}" for t, c in
                                           zip(names, counts, strict=True))))
    if view.firing_probability is not None:
        p = view.firing_probability
        facts.append(("firing probability", f"median {_fmt(np.median(p))}, range "
                                            f"{_fmt(p.min())}–{_fmt(p.max())}; "
                                            f"{int(np.sum(p < 0.05))} neuron(s) below 5%"))
    return {"facts": table_view(None, [(_bold(k), v if isinstance(v, str) else _fmt(v))
                                       for k, v in facts], left=(0, 1)),
            "figures": _data_figures(ctx, view)}


def _data_figures(ctx, view):
    figures = []
    if view.spins is not None:
        fig = plots.plot_raster(view.spins, neuron_ids=view.neuron_ids,
                                cell_types=view.cell_types, states=view.states,
                                bin_size=view.bin_size, time_units=view.time_units,
                                start=_raster_start(view))
        figures.append(figure_view(fig, "Raster excerpt. Each tick is a bin in which the neuron "
                                        "fired (s = +1); neurons ordered by cell type (E red, "
                                        "I blue); the strip on top shows the state."))
    if view.firing_probability is not None:
        fig = plots.plot_firing_rates(view.firing_probability, neuron_ids=view.neuron_ids,
                                      cell_types=view.cell_types,
                                      flagged=_flag_mask(ctx, view.neuron_ids),
                                      bin_size=view.bin_size, time_units=view.time_units)
        figures.append(figure_view(fig, "Firing probability per neuron with the 5% rule of "
                                        "the study; hatched bars are neurons the diagnostics "
                                        "flagged."))
    if view.states is not None:
        names, counts = np.unique(view.states, return_counts=True)
        fig = plots.plot_states(names, counts, bin_size=view.bin_size,
                                time_units=view.time_units)
        figures.append(figure_view(fig, "Time spent in each state."))
    return figures


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


def _reliability_view(ctx):
    diag, comparison = ctx["diagnostics"], ctx["comparison"]
    if diag is None or not diag.get("neurons"):
        return None
    neurons = diag["neurons"]
    old = _old_verdicts(comparison)
    rule = diag.get("rule") or diag.get("flag_rule")
    figure = None
    try:
        figure = figure_view(plots.plot_reliability(
            [n.get("firing_probability") for n in neurons],
            [_nan(n.get("max_rhat")) for n in neurons],
            [_nan(n.get("contraction")) for n in neurons],
            [bool(n.get("flagged")) for n in neurons],
            cell_types=(None if any(n.get("cell_type") in (None, "") for n in neurons)
                        else [n["cell_type"] for n in neurons])),
            "Per-neuron diagnostics against firing probability. Flagged neurons are circled "
            f"in red; the dotted line is R-hat = {convergence.MAX_RHAT:g} and the dashed line the "
            "5% firing rule.")
    except (TypeError, ValueError):
        pass
    return {"num_flagged": sum(bool(n.get("flagged")) for n in neurons),
            "num_neurons": len(neurons), "has_old": bool(old),
            "potential": potential_table(diag.get("potential")),
            "num_potential_flagged": sum(bool(r.get("flagged"))
                                         for r in diag.get("potential") or []),
            "num_potential": len(diag.get("potential") or []),
            "rule": None if not rule else rule if isinstance(rule, str) else json.dumps(rule),
            "table": reliability_table(neurons, old), "figure": figure,
            "agreement": _agreement_table(comparison) if old else None}


def potential_table(rows):
    """The K-pairwise potential's convergence, one row per level V(k) (``potential`` of
    DIAG.json, :func:`bayes_ising.analysis.diagnostics.potential_reliability`); None when
    absent (a pairwise posterior)."""
    if not rows:
        return None
    body = [[f"V({r['k']})", format_number(r.get("mean")),
             f"[{format_number(r.get('lower'))}, {format_number(r.get('upper'))}]",
             format_number(_nan(r.get("rhat")), 4), format_number(_nan(r.get("ess_bulk")), 0),
             format_number(_nan(r.get("ess_tail")), 0), format_number(bool(r.get("flagged"))),
             "; ".join(r.get("reasons") or []) or "–"] for r in rows]
    return table_view(["level", "mean", "90% interval", "R-hat", "bulk ESS", "tail ESS",
                       "flagged", "reasons"], body, left=(0, 7))


def reliability_table(neurons, old=None):
    """The per-neuron table: diagnostics' flags, with the study's rules beside them."""
    headers = ["neuron", "cell type", "firing prob.", "flagged", "worst R-hat",
               "min bulk ESS", "contraction", "reasons"]
    if old:
        headers += ["cosine sim.", "cosine verdict", "≥ 5% rule"]
    rows, classes = [], []
    for neuron in neurons:
        row = [str(neuron.get("id")), neuron.get("cell_type") or "–",
               _fmt(neuron.get("firing_probability")),
               _bold("flagged") if neuron.get("flagged") else "ok",
               _fmt(neuron.get("max_rhat")), _fmt(neuron.get("min_ess_bulk"), 0),
               _fmt(neuron.get("contraction")), "; ".join(neuron.get("reasons") or []) or "–"]
        if old:
            entry = old.get(str(neuron.get("id")), {})
            row += [_fmt(entry.get("cosine_similarity")),
                    _verdict_word(entry.get("cosine_flagged")),
                    _verdict_word(entry.get("threshold_flagged"))]
        rows.append(row)
        classes.append("flag" if neuron.get("flagged") else "")
    return table_view(headers, rows, row_classes=classes, left=(0, 1, 7))


def _nan(value):
    return np.nan if value is None else float(value)


def _verdict_word(flag):
    if flag is None:
        return "–"
    return _bold("unreliable") if flag else "kept"


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


def _agreement_table(comparison):
    agreement = ((comparison or {}).get("flagged") or {}).get("agreement") or {}
    names = {"diagnostics": "diagnostics", "restarts": "restart cosine similarity",
             "firing": "5% firing rule"}
    rows = []
    for key, counts in agreement.items():
        first, _, second = key.partition("_vs_")
        rows.append([f"{names.get(first, first)} vs {names.get(second, second)}",
                     _fmt(counts.get("both")), _fmt(counts.get("only_first")),
                     _fmt(counts.get("only_second")), _fmt(counts.get("neither")),
                     _fmt(counts.get("agree"))])
    if not rows:
        return None
    return table_view(["first rule vs second rule", "both flag", "only the first",
                       "only the second", "neither", "agree"], rows)


def _worst_view(ctx, num_worst=6):
    summary, conv = ctx["summary"], ctx["convergence"]
    if summary is None:
        return {"missing": "posterior"}
    if conv is None or np.all(np.isnan(conv["rhat"])):
        return {"missing": "statistics"}
    rhat = np.nan_to_num(conv["rhat"], nan=np.inf)
    ess = np.nan_to_num(conv["ess_bulk"], nan=0.0)
    order = np.lexsort((ess, -rhat))[:num_worst]  # highest R-hat first, then lowest ESS
    draws = np.moveaxis(_all_draws(summary)[..., order], -1, 0)
    fig = plots.plot_rank_trace(draws, [conv["name"][k] for k in order],
                                rhat=conv["rhat"][order], ess_bulk=conv["ess_bulk"][order])
    return {"missing": None, "shown": len(order), "total": len(conv["name"]),
            "worst_rhat": float(np.nanmax(conv["rhat"])),
            "min_ess_bulk": float(np.nanmin(conv["ess_bulk"])),
            "min_ess_tail": float(np.nanmin(conv["ess_tail"])),
            "figure": figure_view(fig, "Left: traces of each chain (one colour per chain). "
                                       "Right: rank histograms per chain; flat histograms "
                                       "near the dashed line mean the chains mix well.")}


def _couplings_view(ctx):
    summary = ctx["summary"]
    if summary is None:
        return None
    fig = plots.plot_coupling_matrix(summary["J_mean"], summary["J_significant"],
                                     neuron_ids=summary["neuron_ids"],
                                     cell_types=summary["cell_types"],
                                     interval=summary["interval"])
    figure = figure_view(fig, "Posterior mean couplings (left) and only those whose "
                              f"{summary['interval']:.0%} credible interval excludes 0 (right). "
                              "Red: positive (the pair tends to fire together), blue: negative. "
                              "Lines separate cell-type blocks.")
    return {"figure": figure, "blocks": _block_table(summary)}


def _block_table(summary):
    types = summary["cell_types"]
    if types is None:
        return None
    first, second = summary["pairs"]
    blocks = np.array(["-".join(sorted((types[a], types[b]))) for a, b in
                       zip(first, second, strict=True)])
    J = summary["J"].reshape(-1, summary["J"].shape[-1])
    tail = (1 - summary["interval"]) / 2
    rows = []
    for block in sorted(set(blocks.tolist())):
        sel = blocks == block
        low, mid, high = np.quantile(J[:, sel].mean(axis=1), [tail, 0.5, 1 - tail])
        significant = summary["J_significant"][first[sel], second[sel]]
        positive = (summary["J_lower"][sel] > 0).sum()
        rows.append([block, int(sel.sum()), f"{_fmt(mid)} [{_fmt(low)}, {_fmt(high)}]",
                     f"{int(significant.sum())} ({int(positive)} positive)"])
    return table_view(["block", "pairs", f"mean J [{summary['interval']:.0%} interval]",
                       "significant pairs"], rows)


def _checks_synchrony(checks):
    """(observed, predicted dict, independent) from a CHECKS.json, tolerant of key names."""
    block = _get(checks, "synchrony", "p_k", "P_K", "synchrony_distribution")
    if not isinstance(block, dict):
        return None
    observed = _get(block, "observed", "data")
    if observed is None:
        return None
    return {"observed": observed, "predicted": _get(block, "predicted", "pairwise", "model"),
            "independent": _get(block, "independent"),
            "interval": _get(block, "interval", default=0.9), "summary": block}


def _band_parts(value):
    """(centre, lower, upper) of a band dict, or (value, None, None)."""
    if isinstance(value, dict):
        return _get(value, "median", "mean"), _get(value, "lower"), _get(value, "upper")
    return value, None, None


def _fit_view(ctx):
    checks = ctx["checks"]
    if checks is None:
        return None
    return {"synchrony": _synchrony_part(checks), "patterns": _patterns_part(checks),
            "third": _third_part(checks)}


def _synchrony_part(checks):
    sync = _checks_synchrony(checks)
    if sync is None:
        return None
    predicted, lower, upper = _band_parts(sync["predicted"])
    fig = plots.plot_synchrony_distribution(
        sync["observed"], predicted=predicted, lower=lower, upper=upper,
        independent=_band_parts(sync["independent"])[0], interval=float(sync["interval"]))
    rows = _scalar_rows(sync["summary"], {
        "fraction_in_band": "fraction of observed P(K) inside the band",
        "max_abs_log_ratio": "max |log(predicted / observed)|, pairwise",
        "max_abs_log_ratio_independent": "max |log(predicted / observed)|, independent",
        "min_count": "(over K seen in at least this many bins)",
        "method": "method", "num_bins": "bins"})
    return {"figure": figure_view(fig, "Probability that K neurons fire in the same bin: data "
                                       "(dots), the pairwise model's posterior predictive "
                                       "(line and band) and the independent model (dashed)."),
            "table": table_view(["P(K) check", "value"], rows) if rows else None}


def _patterns_part(checks):
    patterns = _get(checks, "patterns", "pattern_frequencies")
    if not isinstance(patterns, dict) or _get(patterns, "observed") is None:
        return None
    predicted, lower, upper = _band_parts(_get(patterns, "predicted", "model"))
    fig = plots.plot_pattern_frequencies(
        patterns["observed"], predicted, lower=lower, upper=upper,
        num_bins=_get(patterns, "num_bins", default=_get(checks, "num_bins")))
    rows = _scalar_rows(patterns, {
        "mean_abs_log_ratio": "count-weighted mean |log(predicted / observed)|, pairwise",
        "mean_abs_log_ratio_independent": "the same, independent model"})
    return {"figure": figure_view(fig, "Each point is one spike pattern observed in the data: "
                                       "its observed frequency against the model's "
                                       "probability. Points between the dashed lines agree "
                                       "within the sampling noise of the data."),
            "table": table_view(["pattern check", "value"], rows) if rows else None}


def _third_part(checks):
    third = _get(checks, "third_order", "third_order_correlations")
    if not isinstance(third, dict):
        return None
    figure = None
    predicted = third.get("predicted")
    if third.get("observed") is not None and isinstance(predicted, dict):
        centre, lower, upper = _band_parts(predicted)
        fig = plots.plot_third_order(third["observed"], centre, lower=lower, upper=upper,
                                     interval=float(third.get("interval", 0.9)))
        figure = figure_view(fig, "Connected third-order correlations of every triplet: the "
                                  "pairwise model's prediction against the data (a "
                                  "prediction: the model is fitted to means and pairs only).")
    rows = _scalar_rows(third, {"correlation": "correlation, predicted vs observed",
                                "slope": "slope through 0, predicted on observed",
                                "rms_observed": "RMS of the observed values",
                                "rms_error": "RMS error of the prediction",
                                "method": "method"})
    return {"figure": figure,
            "table": table_view(["third-order check", "value"], rows) if rows else None}


def _scalar_rows(block, labels):
    """Rows [label, value] for the scalar entries of ``block`` named in ``labels``, in order."""
    rows = []
    for key, label in labels.items():
        value = block.get(key) if isinstance(block, dict) else None
        if value is None or np.ndim(value) != 0:
            continue
        rows.append([label, value if isinstance(value, str) else _fmt(value)])
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
        if entry["note"]:
            notes.append(f"{label}: {entry['note']}")
        if entry["ratio"] is not None or entry["S2"] is not None:
            entries.append(entry)
    return entries, notes


def _information_entry(info, label):
    ratio = _get(info, "ratio", "I2_over_IN", "i2_over_in", "multi_information_ratio")
    return {"label": label, "S1": _get(info, "S1", "s1"), "S2": _get(info, "S2", "s2"),
            "SN": _get(info, "SN", "sn"), "ratio": ratio,
            "reliable": _get(info, "SN_reliable", "reliable", "sn_reliable"),
            "note": _get(info, "note", "SN_note", "caveat")}


def _information_view(ctx):
    entries, notes = _information_entries(ctx)
    rows = [[e["label"], _interval_text(e["S1"]), _interval_text(e["S2"]),
             _interval_text(e["SN"]), _interval_text(e["ratio"]), _fmt(e["reliable"])]
            for e in entries]
    view = {"rows": rows, "notes": notes, "figure": None, "figure_error": None,
            "table": table_view(["fit", "S1", "S2", "SN", "I2/IN [interval]", "SN reliable"],
                                rows)}
    if entries:
        try:
            view["figure"] = figure_view(plots.plot_information(entries),
                                         "Entropies (left, with intervals over posterior draws "
                                         "where available) and I2/IN with its interval "
                                         "(right).")
        except (TypeError, ValueError) as err:
            view["figure_error"] = str(err)
    return view


def ei_verdict(population, block):
    """One sentence: does the population-only model over-/under-predict high-K synchrony?"""
    pop_only, joint = block.get("log_ratio_population_only"), block.get("log_ratio_joint")
    if not isinstance(pop_only, dict) or pop_only.get("lower") is None:
        return None
    direction = ("over-predicts" if pop_only["lower"] > 0 else
                 "under-predicts" if pop_only["upper"] < 0 else "is compatible with")
    text = (f"The {population}-only model {direction} the probability of "
            f"{block.get('k_high')} or more {population} neurons firing together "
            f"(×{math.exp(float(pop_only['median'])):.2g} the data's; log ratio "
            f"{_interval_text(pop_only, 2)})")
    if isinstance(joint, dict):
        text += f", the E+I model's marginal: log ratio {_interval_text(joint, 2)}"
    return text + "."


def _ei_view(ctx):
    ei = ctx["ei"] if ctx["ei"] is not None else _get(ctx["checks"], "ei", "e_only_vs_ei",
                                                      "ei_comparison")
    if not isinstance(ei, dict) or not ei:
        return None
    rows, verdicts, figures = [], [], []
    for population, block in ei.items():
        if not isinstance(block, dict) or population == "settings":
            continue
        rows.append([population, _fmt(block.get("population_size")), _fmt(block.get("k_high")),
                     _fmt(block.get("observed_tail")),
                     _interval_text(block.get("tail_population_only")),
                     _interval_text(block.get("tail_joint")),
                     _interval_text(block.get("log_ratio_population_only")),
                     _interval_text(block.get("log_ratio_joint"))])
        verdict = ei_verdict(population, block)
        if verdict:
            verdicts.append(verdict)
        sync = _get(block, "synchrony", "p_k")
        if isinstance(sync, dict) and _get(sync, "observed") is not None:
            figures.append(figure_view(
                plots.plot_ei_synchrony(population, sync),
                f"Synchrony of the {population} neurons: data, the {population}-only model "
                "and the E+I model's marginal, with posterior bands."))
    settings = ei.get("settings") if isinstance(ei.get("settings"), dict) else None
    return {"verdicts": verdicts, "figures": figures,
            "table": table_view(["population", "neurons", "k_high", "data P(K ≥ k_high)",
                                 "population-only model", "E+I model marginal",
                                 "log(population-only / data)", "log(E+I / data)"], rows)
            if rows else None,
            "settings": None if not settings else {
                "fit": settings.get("fit"),
                "joint_neurons": ", ".join(settings.get("joint_neurons") or [])}}


def _states_view(ctx):
    states = ctx["states"]
    if not isinstance(states, dict) or not states.get("states"):
        return None
    figures = []
    interval = states.get("interval", 0.9)
    for quantity in ("coupling", "correlation"):
        blocks = states.get(f"{quantity}_by_block")
        if blocks:
            figures.append(figure_view(
                plots.plot_state_comparison(states["states"], blocks, quantity=quantity,
                                            interval=interval),
                f"Mean {quantity} within each cell-type block, per state, with {interval:.0%} "
                "intervals over posterior draws"
                + (" (bootstrap over bins for correlations)." if quantity == "correlation"
                   else ".")))
    probabilities = states.get("probabilities") or {}
    return {"figures": figures, "note": states.get("note"),
            "probabilities": table_view(["statement", "posterior probability"],
                                        [[k, _fmt(v)] for k, v in probabilities.items()])
            if probabilities else None}


def _shuffled_curves(thermo):
    shuffled = _get(thermo, "shuffled_control", "shuffled")
    if not isinstance(shuffled, dict):
        return None
    return {"temperature": _get(shuffled, "temperature", default=thermo["temperature"]),
            "heat_capacity": _get(shuffled, "heat_capacity_per_neuron", "heat_capacity"),
            "entropy": _get(shuffled, "entropy_per_neuron", "entropy"),
            "peak": _get(shuffled, "peak")}


def _thermo_view(ctx):
    thermo = ctx["thermo"]
    if thermo is None:
        return None
    shuffled = _shuffled_curves(thermo)
    fig = plots.plot_thermodynamics(
        thermo["temperature"], thermo.get("heat_capacity_per_neuron"),
        thermo.get("entropy_per_neuron"), peak=thermo.get("peak"), shuffled=shuffled,
        interval=_get(thermo.get("heat_capacity_per_neuron") or {}, "interval", default=0.9),
        num_neurons=thermo.get("num_neurons"))
    peak = thermo.get("peak") or {}
    rows = [["peak temperature T*", _interval_text(peak.get("temperature"))],
            ["peak heat capacity C_max/N", _interval_text(peak.get("heat_capacity_per_neuron"))]]
    if shuffled is not None and shuffled.get("peak"):
        rows.append(["shuffled control: T*", _interval_text(shuffled["peak"].get("temperature"))])
        rows.append(["shuffled control: C_max/N",
                     _interval_text(shuffled["peak"].get("heat_capacity_per_neuron"))])
    for key in ("method", "num_posterior_draws", "posterior_draws", "num_neurons"):
        if thermo.get(key) is not None:
            rows.append([key.replace("_", " "), str(thermo[key])])
    return {"figure": figure_view(fig, "Heat capacity C(T)/N = Var_T(E)/(N T²) (left) and "
                                       "entropy S(T)/N by thermodynamic integration from S(∞) "
                                       "= N log 2 (right), with posterior bands; the shaded "
                                       "vertical band is the interval of the peak T*, the "
                                       "dotted line T = 1 (the fitted model), grey the model "
                                       "fitted to shuffled data."),
            "table": table_view(["quantity", "median [interval]"], rows),
            "warnings": list(thermo.get("warnings") or []), "has_shuffled": shuffled is not None}


def walk_verdict(walk, interval_ratio=None):
    """(CSS class, sentence) on whether the adaptive-Metropolis intervals can be read."""
    converged = walk.get("converged")
    rhat, ess = walk.get("max_rhat"), walk.get("min_ess_bulk")
    numbers = ", ".join(x for x in (f"max R-hat {_fmt(rhat)}" if rhat is not None else None,
                                    f"min bulk ESS {_fmt(ess, 0)}" if ess is not None else None)
                        if x)
    ratio = (f" The median width ratio {_fmt(interval_ratio)} therefore measures the walk's "
             "shortfall, not the study's uncertainty." if interval_ratio is not None else "")
    if converged is None:
        return "warn", ("The walk's own convergence was not checked (no R-hat or ESS of the walk "
                        "was given): an unconverged walk gives intervals that are too narrow, so "
                        "narrower walk intervals below are not evidence that the study "
                        "under-stated its uncertainty.")
    if converged:
        return "ok", (f"The walk converged ({numbers}): both sides have the same evidence, so the "
                      "interval widths below can be compared.")
    return "bad", (f"The walk did not converge ({numbers}): its intervals are too narrow and "
                   "are not the study's error bars." + ratio)


def _mle_view(ctx):
    comparison = ctx["comparison"]
    if comparison is None or not comparison.get("parameters"):
        return None
    params = comparison["parameters"]
    fig = plots.plot_mle_vs_bayes(params["kind"], params["mle"], params["mle_lower"],
                                  params["mle_upper"], params["bayes_mean"],
                                  params["bayes_lower"], params["bayes_upper"])
    summary = comparison.get("summary") or {}
    timing = comparison.get("timing") or {}
    walk = comparison.get("adaptive_metropolis") or {}
    walk_class, walk_text = walk_verdict(walk, summary.get("J_median_width_ratio"))
    if comparison.get("verdict"):  # the comparison's own sentence (comparison.verdict)
        walk_text = str(comparison["verdict"])
    mle_info = comparison.get("mle") or {}
    return {"interval": f"{comparison.get('interval', 0.9):.0%}",
            "facts": _mle_facts(comparison, mle_info, walk), "walk_class": walk_class,
            "walk_verdict": walk_text, "table": mle_summary_table(summary),
            "figure": figure_view(fig, "Left: MLE against posterior mean (each point one h_i or "
                                       "J_ij). Right: width of the adaptive-Metropolis interval "
                                       "against the NUTS interval (below the line: the walk's "
                                       "interval is narrower)."),
            "times": table_view(["step", "seconds"], [[k, _fmt(timing[key], 1)] for k, key in [
                ("MLE fit", "mle_fit_s"), ("adaptive Metropolis", "adaptive_metropolis_s"),
                ("optimiser restarts", "restarts_s"), ("MLE side in total", "mle_total_s"),
                ("NUTS (sampling, from the fit)", "nuts_s")] if timing.get(key) is not None]),
            "agreement": _agreement_table(comparison) if comparison.get("flagged") else None,
            "groups": _group_table(comparison.get("groups")),
            "warnings": list(mle_info.get("warnings") or [])}


#: the parameter groups of :func:`bayes_ising.analysis.comparison.group_comparison`, in words
_GROUP_NAMES = {"h_busy": "h of neurons above the firing threshold",
                "a_busy": "0/1-convention fields a of those neurons",
                "J_busy": "J between those neurons",
                "h_rare": "h of rare neurons (weakly identified)",
                "J_never_cofire": "J of pairs that never fire together"}


def _group_table(groups):
    """Median interval-width ratio walk/NUTS per parameter group, with its Monte Carlo error."""
    rows = [[_GROUP_NAMES.get(name, name), _fmt(group.get("num_parameters")),
             _fmt(group.get("median_width_ratio")), _fmt(group.get("mc_error"))]
            for name, group in (groups or {}).items()
            if isinstance(group, dict) and group.get("num_parameters")]
    if not rows:
        return None
    return table_view(["parameters", "number", "median width ratio (walk / NUTS)",
                       "± Monte Carlo error"], rows)


def _mle_facts(comparison, mle_info, walk):
    facts = []
    if mle_info.get("method"):
        facts.append(f"MLE: {mle_info['method']}")
    error = mle_info.get("moment_error")
    if error:
        facts.append(f"moment error {_fmt(error.get('max_abs_mean'))} (means), "
                     f"{_fmt(error.get('max_abs_pair'))} (pairs)")
    if walk:
        walks = f" in {walk['num_walks']} walks" if walk.get("num_walks") else ""
        facts.append(f"{_fmt(walk.get('num_draws'))} adaptive-Metropolis draws{walks}, "
                     f"acceptance {_fmt(walk.get('acceptance_rate'))}")
    if comparison.get("fit"):
        facts.append(f"compared on the {comparison['fit']} fit")
    return facts


def mle_summary_table(summary):
    """Width ratios and agreement of MLE + walk vs NUTS, one row per parameter kind."""
    rows = []
    for kind, label in (("h", "fields h"), ("J", "couplings J")):
        if summary.get(f"{kind}_num_parameters") is None:
            continue
        rows.append([label] + [_fmt(summary.get(f"{kind}_{key}")) for key in (
            "num_parameters", "median_width_ratio", "fraction_mle_in_bayes_interval",
            "fraction_intervals_overlap", "correlation", "rms_difference")])
    return table_view(["parameters", "number", "median width ratio (MLE walk / NUTS)",
                       "MLE inside NUTS interval", "intervals overlap",
                       "correlation of estimates", "RMS difference"], rows)


_SECTION_BUILDERS = {
    "verdict": _verdict_view, "data": _data_view, "reliability": _reliability_view,
    "worst": _worst_view, "couplings": _couplings_view, "fit": _fit_view,
    "information": _information_view, "ei": _ei_view, "states": _states_view,
    "thermo": _thermo_view, "mle": _mle_view,
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
    ei : dict population -> {quantity: {median, lower, upper}, "synchrony": {...}} (the
        E/I comparison of :func:`bayes_ising.analysis.analyses.ei_analysis`), or None to use the
        ``ei``
        entry of ``checks``
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
    context = {
        "posterior": posterior, "summary": summary,
        "convergence": convergence_summary(summary) if summary is not None else None,
        "diagnostics": diagnostics, "checks": checks, "thermo": thermo,
        "comparison": comparison, "ei": ei, "states": states, "settings": settings,
        "extra_information": extra_information,
        "main_label": (settings or {}).get("fit label"),
    }
    context["data_view"] = _DataView(data, posterior, summary)
    sections = [render_section(sid, section_title, f"report/{sid}.html.j2",
                               _SECTION_BUILDERS[sid], context)
                for sid, section_title in SECTIONS]
    k_pairwise = summary is not None and summary["family"] == "k_pairwise"
    meta = (f"Data: {context['data_view'].source or '–'} · bayes_ising {__version__} · "
            + ("K-pairwise" if k_pairwise else "pairwise") + " model E(s) = −Σ h_i s_i − "
            "Σ_(i<j) J_ij s_i s_j" + (" − V(K), K = #active" if k_pairwise else "")
            + ", spins ±1, entropies in nats")
    return str(render_page(title or "Bayesian Ising analysis", meta, sections))


def write_report(path, text, force=False):
    """Write the HTML ``text`` to ``path`` atomically; returns the path."""
    path = Path(path)
    with atomic_path(path, force) as tmp:
        Path(tmp).write_text(text, encoding="utf-8")
    return path
