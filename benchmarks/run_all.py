"""Run the benchmark suite and print one table of same-run ratios.

    python benchmarks/run_all.py [--quick] [--only mle,gibbs,...] [--timeout SECONDS]
    python benchmarks/run_all.py --collect   # table and summary from the saved outputs

Each ``benchmarks/bench_<topic>.py`` exposes ``main()`` returning a dict of figures (and writes
``benchmarks/output/<topic>.json``). Every benchmark runs in its own Python process (so each
can choose its JAX settings, and one crash does not end the suite) with ``JAX_ENABLE_X64=1``;
``--quick`` is passed to ``main(quick=True)`` when it takes that argument and is also visible as
``BAYES_ISING_BENCH_QUICK=1``. Missing benchmarks are skipped with a message. The ratios of
all of them — each computed within one run on one machine — are printed as one table and
written with every benchmark's full dict to ``benchmarks/output/summary.json``.

Ratios are "ours / baseline" for speeds (higher is better) and "baseline / ours" for times, so
that > 1 always means bayes_ising is faster.
"""

import argparse
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
OUTPUT = HERE / "output"
#: the suite, in the order of the table
BENCHMARKS = ("mle", "gibbs", "nuts", "batch")


# --------------------------------------------------------------------------------------------
# Running one benchmark (in a child process)
# --------------------------------------------------------------------------------------------


def _run_one(name, quick, result_path):
    """Child process: import bench_<name>, call main(), write its dict as JSON."""
    import importlib
    import inspect

    sys.path.insert(0, str(HERE))
    module = importlib.import_module(f"bench_{name}")
    kwargs = {}
    parameters = inspect.signature(module.main).parameters
    if "quick" in parameters:
        kwargs["quick"] = quick
    if "argv" in parameters:
        kwargs["argv"] = ["--quick"] if quick else []
    sys.argv = [module.__file__] + (["--quick"] if quick else [])
    result = module.main(**kwargs)
    from bayes_ising._io import to_jsonable

    Path(result_path).write_text(json.dumps(to_jsonable(result if result is not None else {})))


def run_benchmark(name, quick=False, timeout=None):
    """Run ``bench_<name>.main`` in a child process; return (dict or None, status text)."""
    path = HERE / f"bench_{name}.py"
    if not path.exists():
        return None, f"skipped: {path.name} not present"
    env = dict(os.environ)
    env.setdefault("JAX_ENABLE_X64", "1")
    if quick:
        env["BAYES_ISING_BENCH_QUICK"] = "1"
    with tempfile.TemporaryDirectory() as tmp:
        result_path = Path(tmp) / "result.json"
        command = [sys.executable, str(Path(__file__).resolve()), "--_one", name,
                   "--_result", str(result_path)] + (["--quick"] if quick else [])
        start = time.perf_counter()
        try:
            completed = subprocess.run(command, env=env, timeout=timeout, check=False)
        except subprocess.TimeoutExpired:
            return None, f"failed: timed out after {timeout} s"
        elapsed = time.perf_counter() - start
        if completed.returncode != 0 or not result_path.exists():
            return None, f"failed: exit code {completed.returncode} (output above)"
        return json.loads(result_path.read_text()), f"ran in {elapsed:.0f} s"


def collect_benchmark(name):
    """The dict a previous run of ``bench_<name>`` saved; (dict or None, status text)."""
    path = OUTPUT / f"{name}.json"
    if not path.exists():
        return None, f"skipped: {path.name} not saved yet"
    modified = time.strftime("%Y-%m-%d %H:%M", time.localtime(path.stat().st_mtime))
    return json.loads(path.read_text()), f"collected from {path.name} (written {modified})"


# --------------------------------------------------------------------------------------------
# The ratio table
# --------------------------------------------------------------------------------------------


def _get(d, *path):
    for key in path:
        if not isinstance(d, dict) or key not in d:
            return None
        d = d[key]
    return d


def _number(x):
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _row(comparison, ours, baseline, units, higher_is_better=True, ratio=None, note=""):
    if ratio is None and _number(ours) and _number(baseline) and ours and baseline:
        ratio = ours / baseline if higher_is_better else baseline / ours
    return {"comparison": comparison, "ours": ours, "baseline": baseline, "units": units,
            "ratio": ratio, "note": note}


def _skip_note(d):
    return d.get("skipped", "") if isinstance(d, dict) else ""


def _rows_mle(r):
    rows = []
    coniii = r.get("coniii", {})
    for label, ours_key, coniii_key in (
            ("exact MLE (retina, N = 15) vs ConIII Enumerate", "exact_retina15", "enumerate"),
            ("pseudolikelihood MLE (N = 50) vs ConIII Pseudo", "pseudo_n50", "pseudo")):
        ours = r.get(ours_key, {})
        theirs = coniii.get(coniii_key, {}) if isinstance(coniii, dict) else {}
        note = _skip_note(ours) or _skip_note(theirs) or _skip_note(coniii)
        rows.append(_row(label, ours.get("warm_s"), theirs.get("wall_s"), "s (time)",
                         higher_is_better=False, note=note))
    return rows


def _rows_gibbs(r):
    rows = []
    baselines = (("NumPy loop, 1 chain", ("numpy_single_chain",)),
                 ("Numba, 1 chain, fields on flip", ("numba", "single_chain_fields_on_flip")),
                 ("Numba, many chains in parallel", ("numba", "many_chains_parallel_on_flip")),
                 ("ConIII Metropolis", ("coniii_metropolis",)))
    for size, entry in (r.get("sizes") or {}).items():
        ours = _get(entry, "jax_float32", "updates_per_s")
        for label, path in baselines:
            baseline = _get(entry, *path)
            note = _skip_note(baseline) or _skip_note(_get(entry, path[0]))
            rows.append(_row(f"Gibbs N = {size}: JAX float32 vs {label}", ours,
                             _get(entry, *path, "updates_per_s"), "spin updates/s", note=note))
    return rows


def _rows_batch(r):
    one, two = r.get("one_worker", {}), r.get("two_workers", {})
    return [_row(f"batch throughput: 2 vs 1 workers ({r.get('num_fits')} {r.get('kind')} fits)",
                 two.get("fits_per_s"), one.get("fits_per_s"), "fits/s",
                 note=f"{r.get('cpu_count')} CPU cores")]


def _rows_generic(name, r, prefix=""):
    """Fallback: every finite number whose key names a ratio or a speed-up."""
    rows = []
    for key, value in r.items():
        label = f"{prefix}{key}"
        if isinstance(value, dict):
            rows += _rows_generic(name, value, f"{label}.")
        elif _number(value) and any(w in key.lower() for w in ("ratio", "speedup", "speed_up")):
            rows.append(_row(f"{name}: {label}", None, None, "", ratio=value))
    return rows


def _size(d):
    """"CxD" chains x draws of a result (older result files: chains, draws)."""
    return f"{d.get('num_chains', d.get('chains'))}x{d.get('num_draws', d.get('draws'))}"


def _rhat(d):
    value = d.get("max_rhat", d.get("rhat_max"))  # older result files: rhat_max
    return f"{value:.4f}" if _number(value) else "-"


def _rows_nuts(r):
    exact = r.get("exact_retina15", {})
    ours, plain = exact.get("ours", {}), exact.get("plain_nuts", {})
    rows = [_row("NUTS exact (retina, N = 15): ours vs plain NumPyro NUTS, min bulk ESS/s",
                 ours.get("min_ess_per_s"), plain.get("min_ess_per_s"), "min-ESS/s",
                 note=_skip_note(exact) or (
                     f"ours {_size(ours)} in "
                     f"{_fmt(ours.get('wall_s'))} s, R-hat {_rhat(ours)}; plain "
                     f"{_size(plain)}, R-hat {_rhat(plain)}"))]
    pseudo = r.get("pseudo_n50")
    if isinstance(pseudo, dict):
        p = pseudo.get("ours", {})
        rows.append(_row("pseudo posterior (N = 50, T = 40,000, --model pseudo_large): "
                         "wall time vs 300 s target",
                         p.get("wall_s"), 300.0, "s (time)", higher_is_better=False,
                         note=_skip_note(pseudo) or (
                             f"{_size(p)}, R-hat {_rhat(p)}, "
                             f"min ESS "
                             f"{_fmt(p.get('min_ess_bulk', p.get('ess_bulk_min')))}")))
    return rows


#: per-benchmark adapters from its dict to table rows (generic fallback otherwise)
ADAPTERS = {"mle": _rows_mle, "gibbs": _rows_gibbs, "batch": _rows_batch, "nuts": _rows_nuts}


def table_rows(results):
    rows = []
    for name, result in results.items():
        if not isinstance(result, dict):
            continue
        adapter = ADAPTERS.get(name)
        found = adapter(result) if adapter else []
        rows += found or _rows_generic(name, result)
    return rows


def _fmt(x):
    if x is None:
        return "-"
    if _number(x):
        return f"{x:.3g}" if abs(x) < 1e4 else f"{x:.3e}"
    return str(x)


def format_table(rows):
    header = ("comparison", "ours", "baseline", "units", "ratio")
    body = [(r["comparison"], _fmt(r["ours"]), _fmt(r["baseline"]), r["units"],
             "-" if r["ratio"] is None else f"{r['ratio']:.2f}x") for r in rows]
    widths = [max(len(h), *(len(b[k]) for b in body)) if body else len(h)
              for k, h in enumerate(header)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    for b in body:
        lines.append("  ".join(c.ljust(w) for c, w in zip(b, widths, strict=True)))
    notes = [f"  {r['comparison']}: {r['note']}" for r in rows if r.get("note")]
    return "\n".join(lines + (["notes:"] + notes if notes else []))


def main(argv=None):
    parser = argparse.ArgumentParser(description="Run the bayes_ising benchmark suite.")
    parser.add_argument("--quick", action="store_true", help="short runs of every benchmark")
    parser.add_argument("--only", default=None,
                        help=f"comma-separated subset of {', '.join(BENCHMARKS)}")
    parser.add_argument("--timeout", type=float, default=None,
                        help="seconds allowed per benchmark (default: none)")
    parser.add_argument("--collect", action="store_true",
                        help="run nothing: build the table from benchmarks/output/<name>.json "
                             "(each from its own run)")
    parser.add_argument("--_one", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--_result", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args._one:
        _run_one(args._one, args.quick, args._result)
        return 0

    names = BENCHMARKS if args.only is None else tuple(args.only.split(","))
    unknown = [n for n in names if not (HERE / f"bench_{n}.py").exists()
               and n not in BENCHMARKS]
    if unknown:
        parser.error(f"unknown benchmark(s): {', '.join(unknown)}")
    results, status = {}, {}
    for name in names:
        print(f"=== bench_{name}{' (quick)' if args.quick else ''} ===", flush=True)
        if args.collect:
            results[name], status[name] = collect_benchmark(name)
        else:
            results[name], status[name] = run_benchmark(name, args.quick, args.timeout)
        print(f"--- bench_{name}: {status[name]}", flush=True)
    rows = table_rows(results)
    print()
    print("Same-run ratios (> 1: bayes_ising faster)")
    print(format_table(rows) if rows else "(no ratios: no benchmark ran)")
    for name in names:
        if results[name] is None:
            print(f"  bench_{name}: {status[name]}")
    summary = {
        "quick": args.quick,
        "collected": args.collect,
        "machine": {"platform": platform.platform(), "python": platform.python_version(),
                    "cpu_count": os.cpu_count()},
        "status": status,
        "ratios": rows,
        "results": results,
    }
    try:
        import jax

        summary["machine"]["jax"] = jax.__version__
        summary["machine"]["devices"] = [str(d) for d in jax.devices()]
    except Exception as err:  # noqa: BLE001 - the machine description is best effort
        summary["machine"]["devices"] = f"unknown ({err})"
    from bayes_ising._io import write_json

    write_json(OUTPUT / "summary.json", summary, force=True)
    print(f"written: {OUTPUT / 'summary.json'}")
    return 0 if all(r is not None for n, r in results.items()
                    if (HERE / f"bench_{n}.py").exists()) else 1


if __name__ == "__main__":
    sys.exit(main())
