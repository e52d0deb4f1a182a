"""``bayes-ising summary DATA``: print the data summary and optionally write it as JSON."""

import sys
import warnings

from bayes_ising._io import write_json
from bayes_ising.cli.commands._common import add_data_selection_flags, load_selected_data

__all__ = ["register", "run", "format_summary"]


def register(subparsers, name):
    parser = subparsers.add_parser(
        name, help="summarise spike data (sizes, firing, correlations, P(K), entropy)",
        description="Print a summary of the (selected) data; --out also writes it as JSON.")
    parser.add_argument("data", metavar="DATA", help="data file (.npz, .mat, .nwb, .npy)")
    add_data_selection_flags(parser)
    parser.add_argument("--out", default=None, metavar="SUMMARY.json",
                        help="write the summary as JSON here")
    parser.add_argument("--force", action="store_true", help="overwrite an existing --out")
    parser.set_defaults(func=run)
    return parser


def _fmt_prob(x):
    return f"{100 * x:.2f}%"


def format_summary(summary):
    """The human-readable text of a summary dict (as made by ``SpikeData.summary``)."""
    s = summary
    lines = [f"data: {s['source']}"]
    if s.get("selection"):
        lines.append("selection: " + ", ".join(f"{k}={v}" for k, v in s["selection"].items()))
    bins = f"{s['num_bins']} bins"
    if s.get("bin_size") is not None:
        bins += f" of {s['bin_size']:g} {s.get('time_units') or ''}".rstrip()
    lines.append(f"{bins} x {s['num_neurons']} neurons")
    if s.get("cell_type_counts"):
        lines.append("cell types: " + ", ".join(f"{k} {v}"
                                               for k, v in s["cell_type_counts"].items()))
    if s.get("state_bin_counts"):
        lines.append("states (bins): " + ", ".join(f"{k} {v}"
                                                  for k, v in s["state_bin_counts"].items()))
    fp = s["firing_probability"]
    lines.append(f"firing probability per bin: min {_fmt_prob(fp['min'])}, "
                 f"median {_fmt_prob(fp['median'])}, max {_fmt_prob(fp['max'])}")
    types = s.get("cell_types")
    lines.append("  neuron  " + ("type  " if types else "") + "p(fire)")
    for k, (nid, p) in enumerate(fp["per_neuron"].items()):
        mark = ""
        if p == 0:
            mark = "  never fires (kept)"
        elif p == 1:
            mark = "  fires in every bin (kept)"
        typ = f"{types[k]:<6}" if types else ""
        lines.append(f"  {nid:<7} {typ}{_fmt_prob(p):>8}{mark}")
    if s.get("mean_pairwise_correlation") is not None:
        lines.append(f"mean pairwise correlation (Pearson, i<j): "
                     f"{s['mean_pairwise_correlation']:.4f}")
    sy = s["synchrony"]
    pk = sy["P_K"]
    shown = ", ".join(f"P({k})={v:.3g}" for k, v in enumerate(pk[: sy["max_K_observed"] + 1]))
    lines.append(f"synchrony K: mean {sy['mean_K']:.3f}, max observed {sy['max_K_observed']}")
    lines.append(f"  {shown}")
    lines.append(f"unique patterns: {s['num_unique_patterns']}")
    e = s["entropy"]
    verdict = "reliable" if e["reliable"] else "UNRELIABLE"
    lines.append(f"data entropy: plug-in {e['plugin_nats']:.4f} nats, Miller-Madow "
                 f"{e['miller_madow_nats']:.4f} nats ({verdict})")
    lines.append(f"  {e['note']}")
    for w in s.get("warnings", []):
        lines.append(f"warning: {w}")
    return "\n".join(lines)


def run(args):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        data = load_selected_data(args)
        summary = data.summary()
    messages = list(dict.fromkeys(str(w.message) for w in caught
                                  if issubclass(w.category, UserWarning)))
    summary["warnings"] = messages
    print(format_summary(summary))
    if args.out:
        write_json(args.out, summary, force=args.force)
        print(f"wrote {args.out}", file=sys.stderr)
    return 0
