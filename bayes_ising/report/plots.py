"""Figures of the report, one function per figure, drawn from plain arrays.

Every function takes NumPy arrays (the contract's shapes: spins ``(num_bins, N)`` in {−1, +1},
h ``(N,)``, J ``(N, N)``, draws ``(chain, draw, ...)``) and returns a
:class:`matplotlib.figure.Figure` built without pyplot, so nothing global is touched and the
figures can be made in worker threads or notebooks alike. Every axis carries a label with its
unit; quantities without a physical unit say what they count (e.g. "fraction of bins").

Conventions: the Ising energy is E(s) = −Σ h_i s_i − Σ_{i<j} J_ij s_i s_j in units of k_B T at the
fitted temperature T = 1, so h and J are dimensionless; entropies are in nats.
"""

import numpy as np
from matplotlib.colors import TwoSlopeNorm
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from bayes_ising.core.convergence import MAX_RHAT

__all__ = [
    "cell_type_order",
    "plot_raster",
    "plot_firing_rates",
    "plot_states",
    "plot_rank_trace",
    "plot_coupling_matrix",
    "plot_synchrony_distribution",
    "plot_ei_synchrony",
    "plot_pattern_frequencies",
    "plot_information",
    "plot_third_order",
    "plot_interval_comparison",
    "plot_state_comparison",
    "plot_thermodynamics",
    "plot_mle_vs_bayes",
    "plot_reliability",
    "plot_study_synchrony",
    "plot_study_ei",
    "plot_study_blocks",
    "plot_study_thermo",
    "plot_study_widths",
]

#: colours by cell type (others fall back to grey)
CELL_TYPE_COLORS = {"E": "#c0392b", "I": "#2471a3"}
_OTHER_COLOR = "#7f8c8d"
_STATE_COLORS = ["#af7ac5", "#48c9b0", "#ec7063", "#f4d03f", "#5dade2", "#a04000"]
#: fixed colours for the usual state names, so every figure uses the same ones
_KNOWN_STATE_COLORS = {"wake": "#f5b041", "light": "#58d68d", "deep": "#34495e"}


def _state_color(name, index=0):
    return _KNOWN_STATE_COLORS.get(str(name), _STATE_COLORS[index % len(_STATE_COLORS)])


def _figure(width, height):
    return Figure(figsize=(width, height), layout="constrained")


def _time_label(time_units):
    return f"time ({time_units})" if time_units else "time (bins)"


def _type_color(cell_type):
    return CELL_TYPE_COLORS.get(str(cell_type), _OTHER_COLOR)


def cell_type_order(cell_types, num_neurons=None):
    """Indices that sort neurons by cell type (E, then I, then others), stable within a type.

    Parameters
    ----------
    cell_types : array of str, shape (N,), or None
    num_neurons : int, used when ``cell_types`` is None (identity order)

    Returns
    -------
    order : (N,) int
    """
    if cell_types is None:
        return np.arange(int(num_neurons))
    cell_types = np.asarray(cell_types).astype(str)
    rank = {"E": 0, "I": 1}
    keys = np.array([rank.get(t, 2) for t in cell_types])
    return np.lexsort((cell_types, keys))


def _type_boundaries(sorted_types):
    """Positions between runs of equal cell types (for block separators)."""
    sorted_types = np.asarray(sorted_types).astype(str)
    return [k for k in range(1, len(sorted_types)) if sorted_types[k] != sorted_types[k - 1]]


def plot_raster(spins, *, neuron_ids=None, cell_types=None, states=None, bin_size=None,
                time_units=None, max_bins=600, start=0):
    """Raster excerpt: active bins (s = +1) as ticks, neurons ordered by cell type.

    Parameters
    ----------
    spins : (num_bins, N) array in {−1, +1}
    states : (num_bins,) array of str or None — drawn as a coloured strip above the raster
    bin_size, time_units : the time axis is ``bin index × bin_size`` in ``time_units``
    max_bins, start : the excerpt shown is ``spins[start:start + max_bins]``
    """
    spins = np.asarray(spins)
    num_bins, num_neurons = spins.shape
    stop = min(num_bins, start + max_bins)
    excerpt = spins[start:stop]
    order = cell_type_order(cell_types, num_neurons)
    scale = float(bin_size) if bin_size else 1.0
    times = (np.arange(start, stop) + 0.5) * scale
    height = max(2.6, 1.0 + 0.1 * num_neurons)
    fig = _figure(10, height + (0.5 if states is not None else 0))
    if states is not None:
        ax_state, ax = fig.subplots(2, 1, sharex=True,
                                    gridspec_kw={"height_ratios": [0.5, height]})
        _draw_state_strip(ax_state, np.asarray(states)[start:stop], times, scale)
        ax_state.set_title(f"Raster excerpt: bins {start}–{stop - 1} of {num_bins} "
                           "(tick: spike in bin; strip: state)")
    else:
        ax = fig.subplots()
        ax.set_title(f"Raster excerpt: bins {start}–{stop - 1} of {num_bins} "
                     "(tick: spike in bin)")
    for row, neuron in enumerate(order):
        active = excerpt[:, neuron] > 0
        color = _type_color(cell_types[neuron]) if cell_types is not None else "k"
        ax.vlines(times[active], row + 0.1, row + 0.9, color=color, linewidth=0.8)
    ax.set_ylim(0, num_neurons)
    ax.set_xlim(times[0] - 0.5 * scale, times[-1] + 0.5 * scale)
    ax.invert_yaxis()
    ax.set_xlabel(_time_label(time_units if bin_size else None))
    ax.set_ylabel("neuron (ordered by cell type)")
    if num_neurons <= 40 and neuron_ids is not None:
        ax.set_yticks(np.arange(num_neurons) + 0.5)
        ax.set_yticklabels(np.asarray(neuron_ids).astype(str)[order], fontsize=6)
    if cell_types is not None:
        for boundary in _type_boundaries(np.asarray(cell_types)[order]):
            ax.axhline(boundary, color="0.5", linewidth=0.6)
        _cell_type_legend(ax, cell_types)
    return fig


def _draw_state_strip(ax, states, times, scale):
    names = sorted(set(states.tolist()))
    colors = {name: _state_color(name, k) for k, name in enumerate(names)}
    for name in names:
        mask = states == name
        ax.bar(times[mask], np.ones(mask.sum()), width=scale, color=colors[name], label=name,
               linewidth=0)
    ax.set_yticks([])
    ax.set_ylim(0, 1)
    ax.set_ylabel("state", rotation=0, ha="right", va="center")
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.3), fontsize=7, frameon=False)


def _cell_type_legend(ax, cell_types):
    from matplotlib.lines import Line2D

    types = list(dict.fromkeys(np.asarray(cell_types).astype(str).tolist()))
    handles = [Line2D([], [], color=_type_color(t), linewidth=3, label=t) for t in types]
    ax.legend(handles=handles, title="cell type", loc="upper left", bbox_to_anchor=(1.0, 1.0),
              fontsize=7, title_fontsize=7, frameon=False)


def plot_firing_rates(firing_probability, *, neuron_ids=None, cell_types=None, threshold=0.05,
                      flagged=None, bin_size=None, time_units=None):
    """Firing probability per neuron (fraction of bins with a spike), with the 5% rule.

    ``flagged`` (N,) bool marks neurons the diagnostics flagged (hatched bars). When
    ``bin_size`` is given a second axis shows the rate in spikes per ``time_units`` (a lower
    bound: a bin counts one spike however many it holds).
    """
    p = np.asarray(firing_probability, dtype=float)
    num_neurons = p.size
    order = cell_type_order(cell_types, num_neurons)
    colors = [_type_color(cell_types[k]) if cell_types is not None else "0.4" for k in order]
    fig = _figure(10, 3.2)
    ax = fig.subplots()
    bars = ax.bar(np.arange(num_neurons), p[order], color=colors)
    if flagged is not None:
        flagged = np.asarray(flagged, dtype=bool)
        for bar, neuron in zip(bars, order, strict=True):
            if flagged[neuron]:
                bar.set_hatch("///")
                bar.set_edgecolor("k")
    if threshold is not None:
        ax.axhline(threshold, color="k", linestyle="--", linewidth=1,
                   label=f"{threshold:.0%} firing rule")
        ax.legend(fontsize=7, loc="upper right")
    ax.set_ylim(0, max(float(p.max()) * 1.1, (threshold or 0) * 1.5))
    ax.set_xlabel("neuron (ordered by cell type)" + ("; hatched = flagged" if flagged is not None
                                                      else ""))
    ax.set_ylabel("firing probability\n(fraction of bins)")
    if neuron_ids is not None and num_neurons <= 60:
        ax.set_xticks(np.arange(num_neurons))
        ax.set_xticklabels(np.asarray(neuron_ids).astype(str)[order], rotation=90, fontsize=6)
    if bin_size:
        unit = time_units or "s"
        secondary = ax.secondary_yaxis("right", functions=(lambda q: q / bin_size,
                                                           lambda r: r * bin_size))
        secondary.set_ylabel(f"rate, lower bound (spikes/{unit})")
    ax.set_title("Firing probability per neuron")
    return fig


def plot_states(state_names, bin_counts, *, bin_size=None, time_units=None):
    """Time spent in each state (number of bins, and duration when the bin size is known)."""
    names = [str(n) for n in state_names]
    counts = np.asarray(bin_counts, dtype=float)
    fig = _figure(5, 2.6)
    ax = fig.subplots()
    ax.barh(names, counts, color=[_state_color(name, k) for k, name in enumerate(names)])
    ax.set_xlabel("number of bins")
    ax.set_ylabel("state")
    if bin_size:
        unit = time_units or "s"
        secondary = ax.secondary_xaxis("top", functions=(lambda b: b * bin_size,
                                                         lambda t: t / bin_size))
        secondary.set_xlabel(f"duration ({unit})")
    return fig


def plot_rank_trace(draws, names, *, rhat=None, ess_bulk=None, num_rank_bins=20):
    """Trace and rank plots of a few parameters (the worst converged ones).

    Parameters
    ----------
    draws : (P, chain, draw) array — the draws of the P parameters to show
    names : P labels
    rhat, ess_bulk : optional (P,) values printed in each row's title

    Each row: left, the trace of every chain (value vs draw index); right, the rank histogram
    per chain (ranks of all draws pooled, split by chain; a well-mixed run gives flat
    histograms at the dashed line = draws per chain / number of rank bins).
    """
    draws = np.asarray(draws, dtype=float)
    num_params, num_chains, num_draws = draws.shape
    fig = _figure(10, 0.4 + 1.7 * num_params)
    axes = np.atleast_2d(fig.subplots(num_params, 2, squeeze=False))
    colors = [f"C{c % 10}" for c in range(num_chains)]
    for p in range(num_params):
        ax_trace, ax_rank = axes[p]
        flat = draws[p].reshape(-1)
        ranks = np.argsort(np.argsort(flat, kind="stable"), kind="stable").reshape(
            num_chains, num_draws)
        edges = np.linspace(0, flat.size, num_rank_bins + 1)
        for c in range(num_chains):
            ax_trace.plot(np.arange(num_draws), draws[p, c], color=colors[c], linewidth=0.6,
                          alpha=0.8)
            counts, _ = np.histogram(ranks[c], bins=edges)
            ax_rank.step(np.arange(num_rank_bins + 1),
                         np.append(counts, counts[-1]), where="post", color=colors[c],
                         linewidth=1)
        ax_rank.axhline(num_draws / num_rank_bins, color="k", linestyle="--", linewidth=0.8)
        title = names[p]
        extras = []
        if rhat is not None:
            extras.append(f"R-hat {rhat[p]:.3f}")
        if ess_bulk is not None:
            extras.append(f"bulk ESS {ess_bulk[p]:.0f}")
        if extras:
            title += " (" + ", ".join(extras) + ")"
        ax_trace.set_title(title, fontsize=8, loc="left")
        ax_trace.set_ylabel("value\n(dimensionless)", fontsize=7)
        ax_rank.set_ylabel("draws per\nrank bin", fontsize=7)
        ax_trace.set_xlabel("draw (after warmup)", fontsize=7)
        ax_rank.set_xlabel(f"rank bin (of {num_rank_bins}, pooled chains)", fontsize=7)
        ax_rank.set_ylim(bottom=0)
        ax_rank.xaxis.set_major_locator(MaxNLocator(integer=True))
    return fig


def plot_coupling_matrix(J_mean, significant, *, neuron_ids=None, cell_types=None,
                         interval=0.9):
    """Posterior mean of J (left) and the same with non-significant couplings blanked (right).

    Parameters
    ----------
    J_mean : (N, N) symmetric, zero diagonal
    significant : (N, N) bool — the ``interval`` credible interval excludes 0
    Neurons are ordered by cell type (E, then I); thin lines separate the blocks.
    """
    J_mean = np.asarray(J_mean, dtype=float)
    significant = np.asarray(significant, dtype=bool)
    num_neurons = J_mean.shape[0]
    order = cell_type_order(cell_types, num_neurons)
    ordered = J_mean[np.ix_(order, order)]
    mask = significant[np.ix_(order, order)]
    limit = float(np.nanmax(np.abs(ordered))) if ordered.size else 1.0
    limit = limit if limit > 0 else 1.0
    norm = TwoSlopeNorm(vmin=-limit, vcenter=0.0, vmax=limit)
    fig = _figure(11, 5.0)
    axes = fig.subplots(1, 2)
    titles = ["posterior mean of J_ij",
              f"significant only ({interval:.0%} interval excludes 0): "
              f"{int(np.triu(mask, 1).sum())} of {num_neurons * (num_neurons - 1) // 2} pairs"]
    image = None
    for ax, values, title in zip(axes, [ordered, np.where(mask, ordered, np.nan)], titles,
                                 strict=True):
        image = ax.imshow(values, cmap="RdBu_r", norm=norm, interpolation="nearest")
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("neuron j (ordered by cell type)")
        ax.set_ylabel("neuron i (ordered by cell type)")
        if cell_types is not None:
            sorted_types = np.asarray(cell_types).astype(str)[order]
            for boundary in _type_boundaries(sorted_types):
                ax.axhline(boundary - 0.5, color="k", linewidth=0.8)
                ax.axvline(boundary - 0.5, color="k", linewidth=0.8)
            _type_ticks(ax, sorted_types)
        elif neuron_ids is not None and num_neurons <= 30:
            ids = np.asarray(neuron_ids).astype(str)[order]
            ax.set_xticks(range(num_neurons), ids, rotation=90, fontsize=6)
            ax.set_yticks(range(num_neurons), ids, fontsize=6)
    fig.colorbar(image, ax=list(axes), shrink=0.8, label="J_ij (dimensionless, units of k_B T)")
    return fig


def _type_ticks(ax, sorted_types):
    """Put one tick per cell-type block, at its centre, labelled with the type."""
    starts = [0] + _type_boundaries(sorted_types)
    stops = starts[1:] + [len(sorted_types)]
    centres = [(a + b - 1) / 2 for a, b in zip(starts, stops, strict=True)]
    labels = [f"{sorted_types[a]} ({b - a})" for a, b in zip(starts, stops, strict=True)]
    ax.set_xticks(centres, labels, fontsize=8)
    ax.set_yticks(centres, labels, fontsize=8)


def plot_synchrony_distribution(observed, *, predicted=None, lower=None, upper=None,
                                independent=None, interval=0.9, title=None, label="pairwise",
                                ax=None):
    """P(K): probability that K neurons are active in a bin, data vs model(s), log scale.

    Parameters
    ----------
    observed : (N+1,) empirical P(K)
    predicted, lower, upper : (N+1,) posterior-predictive median and interval of P(K)
    independent : (N+1,) P(K) of the independent model (J = 0)
    """
    observed = np.asarray(observed, dtype=float)
    k = np.arange(observed.size)
    fig = None
    if ax is None:
        fig = _figure(6, 3.8)
        ax = fig.subplots()
    floor = _positive_floor(observed, predicted, lower, independent)
    if lower is not None and upper is not None:
        ax.fill_between(k, np.maximum(lower, floor), np.maximum(upper, floor), color="C0",
                        alpha=0.3, step=None, label=f"{label} model, {interval:.0%} band")
    if predicted is not None:
        ax.plot(k, np.maximum(predicted, floor), color="C0", label=f"{label} model")
    if independent is not None:
        ax.plot(k, np.maximum(independent, floor), color="C2", linestyle="--",
                label="independent model")
    _synchrony_data_and_labels(ax, k, observed, title or "Synchrony distribution P(K)")
    return fig if fig is not None else ax.figure


def _synchrony_data_and_labels(ax, k, observed, title):
    """The observed P(K) (dots where > 0) on a log axis with the P(K) labels and legend."""
    shown = observed > 0
    ax.plot(k[shown], observed[shown], "ko", markersize=3, label="data")
    _log_y_integer_x(ax)
    ax.set_xlabel("K (number of neurons active in a bin)")
    ax.set_ylabel("P(K) (fraction of bins)")
    ax.legend(fontsize=7)
    ax.set_title(title, fontsize=9)


def plot_ei_synchrony(population, synchrony, *, ax=None, title=None):
    """P(K_A) of a population A: data, the A-only model and the E+I model's marginal over A.

    Parameters
    ----------
    population : name of A ("E" or "I")
    synchrony : dict with ``observed`` (|A|+1,) and the bands ``population_only`` and
        ``joint`` (dicts of ``median``, ``lower``, ``upper``, each (|A|+1,)); the layout of
        :func:`bayes_ising.analysis.analyses.synchrony_comparison`'s ``synchrony`` entry
    """
    fig = None
    if ax is None:
        fig = _figure(6, 3.8)
        ax = fig.subplots()
    observed = np.asarray(synchrony["observed"], dtype=float)
    curves = [(synchrony.get(key), label, color) for key, label, color in [
        ("population_only", f"{population}-only model", "C3"),
        ("joint", "E+I model (marginal)", "C0")]]
    floor = _positive_floor(observed, *[c["lower"] for c, _, _ in curves if isinstance(c, dict)])
    for curve, label, color in curves:
        if isinstance(curve, dict):
            k = np.arange(len(curve["median"]))
            ax.fill_between(k, np.maximum(curve["lower"], floor),
                            np.maximum(curve["upper"], floor), color=color, alpha=0.25)
            ax.plot(k, np.maximum(curve["median"], floor), color=color, label=label)
    shown = observed > 0
    ax.plot(np.arange(observed.size)[shown], observed[shown], "ko", markersize=3, label="data")
    _log_y_integer_x(ax)
    ax.set_xlabel(f"K_{population} (number of {population} neurons active in a bin)")
    ax.set_ylabel("P(K) (fraction of bins)")
    ax.legend(fontsize=7)
    ax.set_title(title or f"{population} synchrony: {population}-only vs E+I model", fontsize=9)
    return fig if fig is not None else ax.figure


def plot_family_synchrony(synchrony, *, title=None, interval=0.9):
    """P(K) data against the posterior-predictive band of each energy family.

    ``synchrony``: the layout of :func:`bayes_ising.analysis.families.comparison_summary`'s
    ``synchrony`` entry (``observed`` (N+1,), ``bands`` {family: {lower, upper}})."""
    fig = _figure(6, 3.8)
    ax = fig.subplots()
    observed = np.asarray(synchrony["observed"], dtype=float)
    bands = synchrony["bands"]
    floor = _positive_floor(observed, *[np.asarray(b["lower"], float) for b in bands.values()])
    colors = {"independent": "C2", "pairwise": "C0", "k_pairwise": "C3"}
    k = np.arange(observed.size)
    for index, (family, band) in enumerate(bands.items()):
        ax.fill_between(k, np.maximum(np.asarray(band["lower"], float), floor),
                        np.maximum(np.asarray(band["upper"], float), floor),
                        color=colors.get(family, f"C{index + 4}"), alpha=0.25,
                        label=f"{family.replace('_', '-')}, {interval:.0%} band")
    _synchrony_data_and_labels(ax, k, observed,
                               title or "P(K): data vs each family's predictive band")
    return fig


def _log_y_integer_x(ax):
    """A count on x (integer ticks), a probability on a log y axis (:func:`_log_ticks`)."""
    from matplotlib.ticker import MaxNLocator

    ax.set_yscale("log")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    _log_ticks(ax.yaxis, *ax.get_ylim())


def _log_ticks(axis, low, high):
    """Decade ticks (10⁻³, 10⁻²…) over ≥ 2 decades; else 1, 2, 5 × 10^k labelled "0.02", so
    that a short range still has labels and no minor labels crowd it."""
    from matplotlib.ticker import FuncFormatter, LogFormatterSciNotation, LogLocator, NullFormatter

    if low > 0 and high / low >= 100:
        axis.set_major_locator(LogLocator(base=10, numticks=8))
        axis.set_major_formatter(LogFormatterSciNotation())
    else:
        axis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0), numticks=12))
        axis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    axis.set_minor_formatter(NullFormatter())


def _positive_floor(*arrays):
    positives = [np.asarray(a, dtype=float)[np.asarray(a) > 0] for a in arrays if a is not None]
    positives = [p for p in positives if p.size]
    if not positives:
        return 1e-12
    return 0.3 * min(float(p.min()) for p in positives)


def plot_pattern_frequencies(observed, predicted, *, lower=None, upper=None, num_bins=None,
                             label="pairwise model"):
    """Observed vs predicted pattern probability, log–log (each point one spike pattern).

    The dashed lines show the ±2 standard-error band of a probability estimated from
    ``num_bins`` bins (binomial), so points inside it agree within sampling noise.
    """
    observed = np.asarray(observed, dtype=float)
    predicted = np.asarray(predicted, dtype=float)
    fig = _figure(5, 4.6)
    ax = fig.subplots()
    if lower is not None and upper is not None:
        err = np.vstack([predicted - np.asarray(lower), np.asarray(upper) - predicted])
        ax.errorbar(observed, predicted, yerr=np.clip(err, 0, None), fmt="o", markersize=3,
                    color="C0", ecolor="C0", alpha=0.7, elinewidth=0.6, label=label)
    else:
        ax.plot(observed, predicted, "o", markersize=3, color="C0", alpha=0.7, label=label)
    positive = np.concatenate([observed[observed > 0], predicted[predicted > 0]])
    low = float(positive.min()) * 0.5 if positive.size else 1e-6
    high = min(1.0, float(positive.max()) * 2) if positive.size else 1.0
    grid = np.geomspace(low, high, 100)
    ax.plot(grid, grid, color="k", linewidth=0.8, label="equality")
    if num_bins:
        spread = 2 * np.sqrt(grid * (1 - grid) / num_bins)
        ax.plot(grid, grid + spread, "k--", linewidth=0.6, label="±2 s.e. of the data")
        ax.plot(grid, np.clip(grid - spread, low, None), "k--", linewidth=0.6)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(low, high)
    ax.set_ylim(low, high)
    ax.set_xlabel("observed pattern probability (fraction of bins)")
    ax.set_ylabel("predicted pattern probability")
    ax.legend(fontsize=7, loc="upper left")
    ax.set_title("Pattern frequencies", fontsize=9)
    return fig


def plot_information(entries):
    """Entropies and the multi-information ratio I2/IN for one or more fits.

    Parameters
    ----------
    entries : list of dicts with keys ``label``, ``S1``, ``S2``, ``SN`` (nats; S2 may be a dict
        with ``median``/``lower``/``upper``) and ``ratio`` (dict ``median``/``lower``/``upper``).
    """
    fig = _figure(10, 3.4)
    ax_s, ax_r = fig.subplots(1, 2, gridspec_kw={"width_ratios": [3, 2]})
    labels = [e["label"] for e in entries]
    x = np.arange(len(entries))
    names = {"S1": "S1 independent model", "S2": "S2 pairwise model",
             "SN": "SN data (Miller–Madow)"}
    for offset, key, color in [(-0.15, "S1", "C2"), (0.0, "S2", "C0"), (0.15, "SN", "0.3")]:
        values = np.array([_centre(e.get(key)) for e in entries], dtype=float)
        errs = np.array([_error(e.get(key)) for e in entries], dtype=float).T
        ax_s.errorbar(x + offset, values, yerr=errs, fmt="o", color=color, capsize=3,
                      label=names[key])
    ax_s.set_xticks(x, labels, fontsize=8)
    ax_s.set_xlim(-0.6, len(entries) - 0.4)
    ax_s.set_xlabel("fit")
    ax_s.set_ylabel("entropy (nats per bin)")
    ax_s.legend(fontsize=7, loc="best")
    ax_s.set_title("Entropies (the gaps S1 − S2 and S1 − SN matter)", fontsize=9)
    for k, entry in enumerate(entries):
        ratio = entry.get("ratio") or {}
        centre = _centre(ratio)
        if centre is None or not np.isfinite(centre):
            continue
        err = np.array(_error(ratio)).reshape(2, 1)
        ax_r.errorbar([k], [centre], yerr=err, fmt="o", color="C0", capsize=3)
    ax_r.axhline(1.0, color="k", linewidth=0.6, linestyle=":")
    ax_r.set_xticks(x, labels, fontsize=8)
    ax_r.set_xlim(-0.6, len(entries) - 0.4)
    ax_r.set_xlabel("fit")
    ax_r.set_ylabel("I2 / IN (fraction of\nmulti-information)")
    ax_r.set_title("Multi-information captured by pairs", fontsize=9)
    return fig


def _centre(value):
    if value is None:
        return np.nan
    if isinstance(value, dict):
        for key in ("median", "mean", "value", "estimate"):
            if value.get(key) is not None:
                return float(value[key])
        return np.nan
    return float(value)


def _error(value):
    if isinstance(value, dict) and value.get("lower") is not None:
        centre = _centre(value)
        return [max(centre - float(value["lower"]), 0.0), max(float(value["upper"]) - centre, 0.0)]
    return [0.0, 0.0]


def plot_third_order(observed, predicted, *, lower=None, upper=None, interval=0.9):
    """Connected third-order correlations ⟨δs_i δs_j δs_k⟩ (i<j<k): model vs data.

    The pairwise model is not fitted to them, so agreement is a genuine prediction; the
    independent model predicts 0 for every triplet.
    """
    observed = np.asarray(observed, dtype=float)
    predicted = np.asarray(predicted, dtype=float)
    fig = _figure(5, 4.4)
    ax = fig.subplots()
    if lower is not None and upper is not None:
        err = np.vstack([predicted - np.asarray(lower, float), np.asarray(upper, float)
                         - predicted])
        ax.errorbar(observed, predicted, yerr=np.clip(err, 0, None), fmt="o", markersize=2.5,
                    alpha=0.6, elinewidth=0.5, color="C0",
                    label=f"pairwise model ({interval:.0%} interval)")
    else:
        ax.plot(observed, predicted, "o", markersize=2.5, alpha=0.6, color="C0",
                label="pairwise model")
    values = np.concatenate([observed, predicted])
    low, high = float(np.min(values)), float(np.max(values))
    ax.plot([low, high], [low, high], color="k", linewidth=0.8, label="equality")
    ax.axhline(0, color="C2", linestyle="--", linewidth=0.8, label="independent model (0)")
    ax.set_xlabel("observed ⟨δs_i δs_j δs_k⟩ (dimensionless)")
    ax.set_ylabel("predicted ⟨δs_i δs_j δs_k⟩")
    ax.legend(fontsize=7)
    ax.set_title("Third-order connected correlations", fontsize=9)
    return fig


def plot_interval_comparison(labels, median, lower, upper, *, xlabel, title=None,
                             reference=None, colors=None):
    """Horizontal forest plot: one row per label, point with its interval."""
    median = np.asarray(median, dtype=float)
    rows = np.arange(len(labels))
    fig = _figure(6.5, 0.8 + 0.35 * len(labels))
    ax = fig.subplots()
    err = np.vstack([median - np.asarray(lower, float), np.asarray(upper, float) - median])
    for row in rows:
        ax.errorbar([median[row]], [row], xerr=np.clip(err[:, [row]], 0, None), fmt="o",
                    color=(colors[row] if colors else "C0"), capsize=3)
    if reference is not None:
        ax.axvline(reference, color="k", linewidth=0.6, linestyle=":")
    ax.set_yticks(rows, labels, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel(xlabel)
    ax.set_ylabel("comparison")
    if title:
        ax.set_title(title, fontsize=9)
    return fig


def plot_state_comparison(states, blocks, *, quantity="coupling", interval=0.9):
    """Mean coupling (or correlation) per cell-type block and state, with intervals.

    Parameters
    ----------
    states : list of state names (x positions)
    blocks : dict block -> dict with ``median``, ``lower``, ``upper`` lists (one per state)
    quantity : "coupling" (J, dimensionless) or "correlation" (Pearson correlation of the
        binned spins, dimensionless)
    """
    fig = _figure(6.5, 3.6)
    ax = fig.subplots()
    x = np.arange(len(states))
    block_colors = {"E-E": CELL_TYPE_COLORS["E"], "I-I": CELL_TYPE_COLORS["I"], "E-I": "#7d3c98"}
    spread = np.linspace(-0.15, 0.15, max(len(blocks), 1))
    for offset, (block, values) in zip(spread, blocks.items(), strict=False):
        med = np.asarray(values["median"], dtype=float)
        err = np.vstack([med - np.asarray(values["lower"], float),
                         np.asarray(values["upper"], float) - med])
        ax.errorbar(x + offset, med, yerr=np.clip(err, 0, None), fmt="o-",
                    color=block_colors.get(block, _OTHER_COLOR), capsize=3, label=block)
    ax.axhline(0, color="k", linewidth=0.5)
    ax.set_xticks(x, states)
    ax.set_xlabel("state")
    if quantity == "coupling":
        ax.set_ylabel("mean J within block\n(dimensionless, k_B T)")
    else:
        ax.set_ylabel("mean Pearson correlation of\nthe binned spins (dimensionless)")
    ax.legend(title=f"block ({interval:.0%} interval)", fontsize=7, title_fontsize=7)
    ax.set_title(f"Mean {quantity} per block across states", fontsize=9)
    return fig


def plot_thermodynamics(temperature, heat_capacity, entropy, *, peak=None, shuffled=None,
                        interval=0.9, num_neurons=None):
    """C(T)/N and S(T)/N with posterior bands, the peak T*, and the shuffled-data control.

    Parameters
    ----------
    temperature : (K,) grid (T = 1 is the fitted model)
    heat_capacity, entropy : dicts with ``median``, ``lower``, ``upper`` lists of length K
        (per neuron: C/N = Var_T(E)/(N T²) in units of k_B; S/N in nats)
    peak : dict with ``temperature`` {median, lower, upper}
    shuffled : dict with ``heat_capacity`` (and optionally ``entropy``), same layout, for the
        model fitted to shuffled data (correlations destroyed)
    """
    temperature = np.asarray(temperature, dtype=float)
    fig = _figure(11, 3.8)
    ax_c, ax_s = fig.subplots(1, 2)
    for ax, curve, key, ylabel in [
        (ax_c, heat_capacity, "heat_capacity", "heat capacity C(T)/N\n(k_B per neuron)"),
        (ax_s, entropy, "entropy", "entropy S(T)/N\n(nats per neuron)"),
    ]:
        if curve is not None:
            _band(ax, temperature, curve, "C0", f"fitted model ({interval:.0%} band)")
        if shuffled is not None and shuffled.get(key) is not None:
            shuffled_t = np.asarray(shuffled.get("temperature", temperature), dtype=float)
            _band(ax, shuffled_t, shuffled[key], "0.5", "shuffled-data control", linestyle="--")
        ax.axvline(1.0, color="k", linewidth=0.6, linestyle=":", label="T = 1 (data)")
        ax.set_xlabel("temperature T (relative to the fitted model)")
        ax.set_ylabel(ylabel)
    if peak is not None and peak.get("temperature") is not None:
        t_peak = peak["temperature"]
        ax_c.axvspan(float(t_peak["lower"]), float(t_peak["upper"]), color="C1", alpha=0.2,
                     label=f"T* = {float(t_peak['median']):.2f} "
                           f"[{float(t_peak['lower']):.2f}, {float(t_peak['upper']):.2f}]")
    if num_neurons:
        ax_s.axhline(np.log(2), color="C3", linewidth=0.6, linestyle="--",
                     label="log 2 (T → ∞)")
    ax_c.legend(fontsize=7)
    ax_s.legend(fontsize=7, loc="lower right")
    ax_c.set_title("Heat capacity per neuron", fontsize=9)
    ax_s.set_title("Entropy per neuron", fontsize=9)
    return fig


def _band(ax, x, curve, color, label, linestyle="-"):
    median = np.asarray(curve["median"], dtype=float)
    if curve.get("lower") is not None and curve.get("upper") is not None:
        ax.fill_between(x, np.asarray(curve["lower"], float), np.asarray(curve["upper"], float),
                        color=color, alpha=0.25)
    ax.plot(x, median, color=color, linestyle=linestyle, label=label)


def plot_mle_vs_bayes(kind, mle, mle_lower, mle_upper, bayes, bayes_lower, bayes_upper):
    """Point estimates (left) and interval widths (right), MLE + adaptive Metropolis vs NUTS.

    Parameters
    ----------
    kind : (P,) array of "h" or "J" per parameter
    mle, mle_lower, mle_upper : (P,) MLE and its adaptive-Metropolis interval
    bayes, bayes_lower, bayes_upper : (P,) posterior mean and NUTS credible interval
    """
    kind = np.asarray(kind).astype(str)
    values = {name: np.asarray(v, dtype=float) for name, v in [
        ("mle", mle), ("mle_lower", mle_lower), ("mle_upper", mle_upper), ("bayes", bayes),
        ("bayes_lower", bayes_lower), ("bayes_upper", bayes_upper)]}
    fig = _figure(11, 4.2)
    ax_point, ax_width = fig.subplots(1, 2)
    for name, color in [("h", "C1"), ("J", "C0")]:
        sel = kind == name
        if not sel.any():
            continue
        ax_point.plot(values["bayes"][sel], values["mle"][sel], "o", markersize=3, alpha=0.6,
                      color=color, label=f"{name} ({int(sel.sum())})")
        width_mle = values["mle_upper"][sel] - values["mle_lower"][sel]
        width_bayes = values["bayes_upper"][sel] - values["bayes_lower"][sel]
        ax_width.plot(width_bayes, width_mle, "o", markersize=3, alpha=0.6, color=color,
                      label=name)
    for ax in (ax_point, ax_width):
        finite = np.concatenate([np.asarray(line.get_xydata()).ravel() for line in ax.lines]
                                ) if ax.lines else np.array([0.0, 1.0])
        finite = finite[np.isfinite(finite)]
        if ax is ax_width:
            finite = finite[finite > 0]
        low, high = (float(finite.min()), float(finite.max())) if finite.size else (0.1, 1.0)
        ax.plot([low, high], [low, high], color="k", linewidth=0.8, label="equality")
        ax.legend(fontsize=7)
    _log_axes(ax_width)
    ax_point.set_xlabel("posterior mean, NUTS (dimensionless)")
    ax_point.set_ylabel("MLE (dimensionless)")
    ax_point.set_title("Point estimates", fontsize=9)
    ax_width.set_xlabel("NUTS credible-interval width (dimensionless, log scale)")
    ax_width.set_ylabel("adaptive-Metropolis interval width")
    ax_width.set_title("Interval widths", fontsize=9)
    return fig


def _log_axes(ax):
    """Log–log axes ticked at 1, 2, 5 × 10^k with short labels ("0.02"), no minor labels (the
    default minor labels overlap on ranges shorter than a decade)."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    ax.set_xscale("log")
    ax.set_yscale("log")
    for axis in (ax.xaxis, ax.yaxis):
        axis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0), numticks=12))
        axis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
        axis.set_minor_formatter(NullFormatter())


def plot_reliability(firing_probability, max_rhat, contraction, flagged, *, cell_types=None,
                     threshold=0.05):
    """Per-neuron diagnostics against firing probability: worst R-hat and posterior contraction.

    Flagged neurons are drawn as open red circles; the dashed line is the 5% firing rule.
    """
    p = np.asarray(firing_probability, dtype=float)
    flagged = np.asarray(flagged, dtype=bool)
    fig = _figure(10, 3.4)
    ax_r, ax_c = fig.subplots(1, 2)
    colors = [_type_color(t) for t in cell_types] if cell_types is not None else ["0.3"] * p.size
    for ax, values, ylabel in [(ax_r, max_rhat, "worst R-hat of the neuron's\nparameters"),
                               (ax_c, contraction, "median posterior contraction\n"
                                                   "1 − Var_post/Var_prior")]:
        values = np.asarray(values, dtype=float)
        ax.scatter(p, values, c=colors, s=14)
        ax.scatter(p[flagged], values[flagged], s=60, facecolors="none", edgecolors="r",
                   label="flagged")
        if threshold is not None:
            ax.axvline(threshold, color="k", linestyle="--", linewidth=0.8,
                       label=f"{threshold:.0%} rule")
        ax.set_xlim(0, max(float(np.nanmax(p)) * 1.1, 0.1))
        ax.set_xlabel("firing probability (fraction of bins)")
        ax.set_ylabel(ylabel)
        ax.legend(fontsize=7)
    ax_r.axhline(MAX_RHAT, color="C1", linewidth=0.8, linestyle=":")
    return fig


# --------------------------------------------------------------------------------------------
# The study's figure set (bayes_ising.report.study): pure functions of tidy tables
# --------------------------------------------------------------------------------------------


def _panel_grid(num_panels, width_per_panel=3.6, height=3.2, max_columns=3):
    """A figure with ``num_panels`` axes on a grid of at most ``max_columns`` columns."""
    columns = max(1, min(num_panels, max_columns))
    rows = -(-max(num_panels, 1) // columns)
    fig = _figure(width_per_panel * columns + 0.6, height * rows)
    axes = np.atleast_1d(fig.subplots(rows, columns, squeeze=False).ravel())
    for ax in axes[num_panels:]:
        ax.set_visible(False)
    return fig, axes[:num_panels]


def _series(frame, column):
    return np.asarray(frame[column], dtype=float)


def plot_study_synchrony(table, *, interval=0.9, titles=None):
    """The study's Fig. 4: P(K) per state for one population, data vs pairwise vs independent.

    Parameters
    ----------
    table : DataFrame with columns ``state``, ``k``, ``observed``, ``independent`` and the
        posterior predictive ``median``, ``lower``, ``upper`` (one row per state and K; the
        layout of ``DIR/tables/synchrony.csv``)
    titles : optional dict state -> panel title (e.g. to say a fit did not converge)
    """
    states = list(dict.fromkeys(table["state"]))
    fig, axes = _panel_grid(len(states))
    for ax, state in zip(axes, states, strict=True):
        rows = table[table["state"] == state].sort_values("k")
        plot_synchrony_distribution(
            _series(rows, "observed"), predicted=_series(rows, "median"),
            lower=_series(rows, "lower"), upper=_series(rows, "upper"),
            independent=_series(rows, "independent"), interval=interval, ax=ax,
            title=(titles or {}).get(state, f"state: {state}"))
        seen = _series(rows, "observed")
        if np.any(seen > 0):  # the model's far tail below what 1% of a bin could show
            ax.set_ylim(bottom=max(ax.get_ylim()[0], 0.01 * float(seen[seen > 0].min())))
            _log_ticks(ax.yaxis, *ax.get_ylim())
        ax.legend(fontsize=6, loc="lower left")
    return fig


def plot_study_ei(table, *, titles=None):
    """The study's Fig. 6: K_A of each population A, A-only model vs the E+I marginal, per state.

    Parameters
    ----------
    table : DataFrame with columns ``state``, ``population`` (A: "E", "I"), ``k``,
        ``observed`` and ``population_only_{median,lower,upper}``, ``joint_{median,lower,upper}``
    titles : optional dict (state, population) -> panel title

    One row of panels per population, one column per state.
    """
    states = list(dict.fromkeys(table["state"]))
    populations = list(dict.fromkeys(table["population"]))
    fig = _figure(3.6 * len(states) + 0.6, 3.1 * len(populations))
    axes = fig.subplots(len(populations), len(states), squeeze=False)
    for row, population in enumerate(populations):
        for column, state in enumerate(states):
            ax = axes[row, column]
            rows = table[(table["state"] == state) & (table["population"] == population)]
            if rows.empty:
                ax.set_visible(False)
                continue
            rows = rows.sort_values("k")
            synchrony = {"observed": _series(rows, "observed")}
            for key in ("population_only", "joint"):
                if f"{key}_median" in rows and rows[f"{key}_median"].notna().any():
                    synchrony[key] = {q: _series(rows, f"{key}_{q}")
                                      for q in ("median", "lower", "upper")}
            plot_ei_synchrony(population, synchrony, ax=ax, title=(titles or {}).get(
                (state, population), f"{population} neurons, {state}"))
            ax.legend(fontsize=6, loc="lower left")
    return fig


def plot_study_blocks(table, *, interval=0.9):
    """The study's Fig. 7: mean coupling and mean correlation per cell-type block, per state.

    Parameters
    ----------
    table : DataFrame with columns ``state``, ``block`` ("E-E", "E-I", "I-I"), ``quantity``
        ("coupling" or "correlation") and ``median``, ``lower``, ``upper``
    """
    quantities = [q for q in ("coupling", "correlation") if q in set(table["quantity"])]
    fig = _figure(5.2 * len(quantities) + 0.6, 3.6)
    axes = np.atleast_1d(fig.subplots(1, len(quantities), squeeze=False).ravel())
    states = list(dict.fromkeys(table["state"]))
    block_colors = {"E-E": CELL_TYPE_COLORS["E"], "I-I": CELL_TYPE_COLORS["I"], "E-I": "#7d3c98"}
    for ax, quantity in zip(axes, quantities, strict=True):
        rows = table[table["quantity"] == quantity]
        blocks = list(dict.fromkeys(rows["block"]))
        for offset, block in zip(np.linspace(-0.15, 0.15, max(len(blocks), 1)), blocks,
                                 strict=False):
            sel = rows[rows["block"] == block].set_index("state").reindex(states)
            med = _series(sel, "median")
            err = np.vstack([med - _series(sel, "lower"), _series(sel, "upper") - med])
            ax.errorbar(np.arange(len(states)) + offset, med, yerr=np.clip(err, 0, None),
                        fmt="o-", capsize=3, label=block,
                        color=block_colors.get(block, _OTHER_COLOR))
        ax.axhline(0, color="k", linewidth=0.5)
        ax.set_xticks(np.arange(len(states)), states)
        ax.set_xlabel("state")
        ax.set_ylabel("mean J within block\n(dimensionless, units of k_B T)"
                      if quantity == "coupling" else
                      "mean Pearson correlation of\nthe binned spins (dimensionless)")
        ax.legend(title=f"block ({interval:.0%} interval)", fontsize=7, title_fontsize=7)
        ax.set_title(f"Mean {quantity} per block across states", fontsize=9)
    return fig


def plot_study_thermo(table, *, interval=0.9):
    """The study's Fig. 8: C(T)/N per population, every state on the population's panel.

    Parameters
    ----------
    table : DataFrame with columns ``state``, ``population``, ``model`` ("posterior": the
        fitted model's posterior, or "shuffled": the shuffled-data control), ``temperature`` and
        ``heat_capacity_median``, ``heat_capacity_lower``, ``heat_capacity_upper`` (C/N in k_B)
    """
    populations = list(dict.fromkeys(table["population"]))
    states = list(dict.fromkeys(table["state"]))
    fig, axes = _panel_grid(len(populations), width_per_panel=4.2, height=3.4)
    for ax, population in zip(axes, populations, strict=True):
        for index, state in enumerate(states):
            color = _state_color(state, index)
            for model, style, label in (("posterior", "-", state),
                                        ("shuffled", "--", f"{state}, shuffled")):
                rows = table[(table["population"] == population) & (table["state"] == state)
                             & (table["model"] == model)].sort_values("temperature")
                if rows.empty:
                    continue
                x = _series(rows, "temperature")
                ax.fill_between(x, _series(rows, "heat_capacity_lower"),
                                _series(rows, "heat_capacity_upper"), color=color,
                                alpha=0.25 if model == "posterior" else 0.12, linewidth=0)
                ax.plot(x, _series(rows, "heat_capacity_median"), linestyle=style, color=color,
                        label=label, linewidth=1.2 if model == "posterior" else 0.9)
        ax.axvline(1.0, color="k", linewidth=0.6, linestyle=":")
        ax.set_xlabel("temperature T (T = 1: the fitted model)")
        ax.set_ylabel("heat capacity C(T)/N (k_B per neuron)")
        ax.set_title(f"{population}: C(T)/N, {interval:.0%} bands; dashed: shuffled control",
                     fontsize=8)
        ax.legend(fontsize=6, ncol=2)
    return fig


def plot_study_widths(table):
    """MLE walk vs NUTS interval widths, one panel per fit (log–log, equality line).

    Parameters
    ----------
    table : DataFrame with columns ``state``, ``population``, ``kind`` ("h" or "J"),
        ``mle_lower``, ``mle_upper``, ``bayes_lower``, ``bayes_upper``
    """
    fits = list(dict.fromkeys(zip(table["state"], table["population"], strict=True)))
    fig, axes = _panel_grid(len(fits), width_per_panel=3.3, height=3.1, max_columns=3)
    for ax, (state, population) in zip(axes, fits, strict=True):
        rows = table[(table["state"] == state) & (table["population"] == population)]
        widths = []
        for kind, color in (("h", "C1"), ("J", "C0")):
            sel = rows[rows["kind"] == kind]
            bayes = _series(sel, "bayes_upper") - _series(sel, "bayes_lower")
            walk = _series(sel, "mle_upper") - _series(sel, "mle_lower")
            keep = (bayes > 0) & (walk > 0)
            ax.plot(bayes[keep], walk[keep], "o", markersize=2.5, alpha=0.6, color=color,
                    label=f"{kind} ({int(keep.sum())})")
            widths += [bayes[keep], walk[keep]]
        values = np.concatenate(widths) if widths else np.array([0.1, 1.0])
        low, high = (values.min(), values.max()) if values.size else (0.1, 1.0)
        ax.plot([low, high], [low, high], color="k", linewidth=0.8, label="equal width")
        _log_axes(ax)
        ax.set_xlim(low / 1.15, high * 1.15)  # the same range on both axes: the diagonal
        ax.set_ylim(low / 1.15, high * 1.15)  # is equality, and distance from it the ratio
        ax.set_xlabel("NUTS interval width (dimensionless)")
        ax.set_ylabel("walk interval width")
        ax.set_title(f"{population}, {state}", fontsize=8)
        ax.legend(fontsize=6)
    return fig
