"""The whole analysis of the embedded E/I sleep dataset, ending in one HTML report.

:func:`run_demo` is what ``bayes-ising demo`` and the notebooks run; nothing here lives only in
a notebook. Steps (each writes its result into the output folder, atomically):

1. data: :func:`bayes_ising.datasets.ei_sleep` (40 neurons, 32 E + 8 I, 50 ms bins, 20,000
   bins in each of ``wake``, ``light``, ``deep``) — ``data_summary.json``;
2. fits (NumPyro NUTS; the exact likelihood where N ≤ 20, else the pseudolikelihood with the
   package's default calibration): E+I on all bins (the main fit), E-only and I-only on all
   bins, and E+I in each state — ``posterior_<name>.nc``;
3. diagnostics of every fit, flagged neurons beside the restart-cosine and 5% verdicts —
   ``diagnostics.json``;
4. posterior predictive checks and I2/IN of the main fit — ``checks.json``;
5. E-only vs E+I synchrony — ``ei.json``; state comparison (I–I deep vs wake) —
   ``states.json``;
6. C(T)/N and S(T)/N with posterior bands and the shuffled-data control — ``thermo.json``;
7. MLE + adaptive Metropolis vs NUTS — ``comparison.json``;
8. the report — ``report.html``.

``fast=True`` (or the environment variable ``BAYES_ISING_FAST=1``) runs the same steps on a
small subset (a few neurons of each type, a few thousand bins per state) with few draws: it is
what the tests and the notebooks' fast mode use, and it is not meant for conclusions.
"""

import dataclasses
import os
import time
from pathlib import Path

import numpy as np

from ._io import check_writable, write_json
from .errors import ExistingOutputError

__all__ = ["DemoSettings", "DEFAULT_SETTINGS", "FAST_SETTINGS", "demo_settings", "fast_mode",
           "demo_data", "run_demo", "REPORT_NAME"]

REPORT_NAME = "report.html"


@dataclasses.dataclass(frozen=True)
class DemoSettings:
    """Sizes of the demo. ``num_excitatory``/``num_inhibitory``/``bins_per_state`` = None keep
    the whole dataset; otherwise the first neurons of each type (always keeping the sparsest E
    neuron, so a < 5% neuron is in the subset) and the first bins of each state."""

    num_chains: int = 2
    num_draws: int = 300
    num_warmup: int = 200
    thermo_draws: int = 16
    temperatures: str = "0.5:3.0:26"
    thermo_chains: int = 16
    thermo_sweeps: int = 600
    thermo_burn_in: int = 200
    mle_draws: int = 4000
    num_restarts: int = 4
    check_draws: int = 40
    states: tuple = ("wake", "light", "deep")
    num_excitatory: int | None = None
    num_inhibitory: int | None = None
    bins_per_state: int | None = None
    comparison_population: str = "I"  # compare-mle on this fit (small N: exact MLE)


DEFAULT_SETTINGS = DemoSettings()
FAST_SETTINGS = DemoSettings(num_chains=2, num_draws=60, num_warmup=60, thermo_draws=4,
                             temperatures="0.5:3.0:11", thermo_chains=8, thermo_sweeps=200,
                             thermo_burn_in=50, mle_draws=400, num_restarts=2, check_draws=8,
                             states=("wake", "deep"), num_excitatory=5, num_inhibitory=3,
                             bins_per_state=1500)


def fast_mode():
    """True when the environment asks for the fast mode (``BAYES_ISING_FAST=1``)."""
    return os.environ.get("BAYES_ISING_FAST", "").strip().lower() in ("1", "true", "yes")


def demo_settings(fast=None):
    """:data:`FAST_SETTINGS` when ``fast`` (default: :func:`fast_mode`), else the defaults."""
    if fast is None:
        fast = fast_mode()
    return FAST_SETTINGS if fast else DEFAULT_SETTINGS


def demo_data(settings=DEFAULT_SETTINGS):
    """The embedded E/I sleep dataset, cut to the settings' subset (see :class:`DemoSettings`)."""
    from . import datasets
    from .data import SpikeData

    data = datasets.ei_sleep()
    if settings.num_excitatory is None and settings.bins_per_state is None:
        return data
    types = np.asarray(data.cell_types).astype(str)
    columns = []
    for cell_type, count in (("E", settings.num_excitatory), ("I", settings.num_inhibitory)):
        members = np.flatnonzero(types == cell_type)
        if count is not None and count < members.size:
            if cell_type == "E":
                sparsest = members[np.argmin(data.firing_probability[members])]
                chosen = list(members[: count - 1]) + [sparsest]
                members = np.array(sorted(set(int(c) for c in chosen)))
            else:
                members = members[:count]
        columns.extend(int(c) for c in members)
    columns = np.array(columns)
    rows = np.arange(data.num_bins)
    states = np.asarray(data.states).astype(str)
    if settings.bins_per_state is not None:
        rows = np.concatenate([np.flatnonzero(states == s)[: settings.bins_per_state]
                               for s in settings.states])
        rows.sort()
    return SpikeData.from_raster(
        np.asarray(data.spins)[np.ix_(rows, columns)], neuron_ids=data.neuron_ids[columns],
        cell_types=data.cell_types[columns], states=states[rows], bin_size=data.bin_size,
        time_units=data.time_units)


def _outputs(settings):
    names = ["data_summary.json", "diagnostics.json", "checks.json", "ei.json",
             "states.json", "thermo.json", "comparison.json", REPORT_NAME]
    names += [f"posterior_{name}.nc" for name in _fit_names(settings)]
    return names


def _fit_names(settings):
    return ["EI", "E", "I"] + [f"EI_{state}" for state in settings.states]


def _likelihood(num_neurons):
    from .thermo import AUTO_EXACT_MAX_NEURONS

    return "exact" if num_neurons <= AUTO_EXACT_MAX_NEURONS else "pseudo"


class _Steps:
    """Progress over the demo's steps (tqdm) with a timer per step."""

    def __init__(self, total, progress, log):
        from tqdm.auto import tqdm

        self.bar = tqdm(total=total, desc="demo", unit="step", disable=not progress,
                        bar_format="{desc}: {n_fmt}/{total_fmt} steps |{bar}| {elapsed}")
        self.log = log
        self.times = {}

    def __call__(self, name):
        steps = self

        class _Step:
            def __enter__(self):
                self.start = time.perf_counter()
                steps.bar.set_description(f"demo: {name}")
                return self

            def __exit__(self, *exc):
                seconds = time.perf_counter() - self.start
                steps.times[name] = seconds
                if exc[0] is None:
                    steps.bar.update(1)
                    steps.log(f"  {name}: {seconds:.1f} s")
                return False

        return _Step()

    def close(self):
        self.bar.close()


def run_demo(out_dir="demo_output", *, fast=None, force=False, seed=0, progress=True,
             log=print, settings=None):
    """Run the whole analysis on the embedded dataset and write the report.

    Parameters
    ----------
    out_dir : folder for every result (created if missing)
    fast : small subset and few draws (default: the ``BAYES_ISING_FAST`` environment variable)
    force : overwrite existing results in ``out_dir`` (else :class:`ExistingOutputError`
        before any work is done)
    seed : one integer; every step gets its own key split from it
    progress : show progress bars
    log : where the one-line step messages go (``print``; pass ``lambda *a: None`` to silence)
    settings : a :class:`DemoSettings` overriding ``fast``

    Returns
    -------
    dict with ``report`` (the report path), ``outputs`` (name → path), ``times`` (s per step),
    ``results`` (the dicts written as JSON) and ``fits`` (name → posterior DataTree).
    """
    import jax

    from . import bayes, diagnostics, enable_x64, report, thermo

    enable_x64()
    settings = settings or demo_settings(fast)
    out_dir = Path(out_dir)
    paths = {name: out_dir / name for name in _outputs(settings)}
    existing = [p for p in paths.values() if p.exists()]
    if existing and not force:
        raise ExistingOutputError(f"{out_dir} already holds demo results ({existing[0].name}, "
                                  "...); pass --force (force=True) to overwrite them")
    out_dir.mkdir(parents=True, exist_ok=True)
    for path in paths.values():
        check_writable(path, force=True)
    keys = dict(zip(["fits", "thermo", "control", "compare", "checks", "ei", "states"],
                    jax.random.split(jax.random.key(seed), 7), strict=True))
    steps = _Steps(total=8, progress=progress, log=log)
    results = {}
    fits = {}
    start = time.perf_counter()
    log(f"bayes-ising demo ({'fast' if settings is FAST_SETTINGS else 'default'} settings) -> "
        f"{out_dir}")
    try:
        with steps("data"):
            data = demo_data(settings)
            summary = data.summary()
            write_json(paths["data_summary.json"], summary, force=True)
            results["data_summary"] = summary

        with steps("fits"):
            selections = _selections(data, settings)
            fit_keys = jax.random.split(keys["fits"], len(selections))
            for fit_key, (name, subset) in zip(fit_keys, selections.items(), strict=True):
                tree = bayes.fit_posterior(
                    fit_key, subset, likelihood=_likelihood(subset.num_neurons),
                    num_chains=settings.num_chains, num_draws=settings.num_draws,
                    num_warmup=settings.num_warmup, progress=progress)
                tree.attrs["demo_fit"] = name
                bayes.save_posterior(tree, paths[f"posterior_{name}.nc"], force=True)
                fits[name] = tree
                log(f"    fit {name}: N = {subset.num_neurons}, {subset.num_bins} bins, "
                    f"{tree.attrs['likelihood']} likelihood, "
                    f"{float(tree.attrs.get('wall_time_s', float('nan'))):.1f} s")

        with steps("diagnostics"):
            diagnoses = {}
            for name, tree in fits.items():
                diagnosis = diagnostics.diagnose(tree)
                diagnosis.pop("parameters", None)
                diagnoses[name] = diagnosis
            results["diagnostics"] = {**diagnoses["EI"], "fits": {
                name: {"converged": d["converged"], "reasons": d["reasons"],
                       "num_flagged": d["num_flagged"],
                       "flagged": [n["id"] for n in d["neurons"] if n["flagged"]]}
                for name, d in diagnoses.items()}}
            write_json(paths["diagnostics.json"], results["diagnostics"], force=True)

        with steps("checks"):
            results["checks"] = _run_checks(keys["checks"], fits["EI"], selections["EI"],
                                            settings)
            write_json(paths["checks.json"], results["checks"] or {}, force=True)

        with steps("E/I and states"):
            results["ei"] = _run_ei(keys["ei"], fits, selections, settings)
            results["states"] = _run_states(keys["states"], fits, selections, settings)
            write_json(paths["ei.json"], results["ei"] or {}, force=True)
            write_json(paths["states.json"], results["states"] or {}, force=True)

        with steps("thermodynamics"):
            temperatures = thermo.parse_temperatures(settings.temperatures)
            options = _thermo_options(fits["EI"], settings)
            curves = thermo.posterior_thermodynamics(
                keys["thermo"], fits["EI"], temperatures, num_draws=settings.thermo_draws,
                **options)
            thermo_dict = curves.to_dict(interval=0.9)
            control, info = thermo.shuffled_control(keys["control"], selections["EI"].spins,
                                                    temperatures, **options)
            control_dict = control.to_dict(interval=0.9)
            control_dict.pop("caveat", None)
            control_dict.update(info)
            thermo_dict["shuffled_control"] = control_dict
            thermo_dict["num_neurons"] = selections["EI"].num_neurons
            results["thermo"] = thermo_dict
            write_json(paths["thermo.json"], thermo_dict, force=True)

        with steps("MLE vs Bayes"):
            from .comparison import compare_mle

            name = settings.comparison_population
            results["comparison"] = compare_mle(
                keys["compare"], fits[name], selections[name], num_draws=settings.mle_draws,
                num_restarts=settings.num_restarts, diagnosis=diagnoses[name])
            results["comparison"]["fit"] = name
            write_json(paths["comparison.json"], results["comparison"], force=True)

        with steps("report"):
            settings_rows = {
                "fit label": "E+I, all bins",
                "demo settings": "fast (a small subset; not for conclusions)"
                if settings is FAST_SETTINGS else "default",
                "fits in this demo": ", ".join(
                    f"{name} (N={selections[name].num_neurons}, "
                    f"{fits[name].attrs['likelihood']})" for name in fits),
                "MLE comparison on": f"the {settings.comparison_population}-only fit",
            }
            text = report.build_report(
                fits["EI"], data, diagnostics=results["diagnostics"],
                checks=results["checks"], thermo=results["thermo"],
                comparison=results["comparison"], ei=results["ei"], states=results["states"],
                settings=settings_rows,
                title="bayes-ising demo: embedded E/I sleep dataset")
            report.write_report(paths[REPORT_NAME], text, force=True)
    finally:
        steps.close()
    total = time.perf_counter() - start
    log(f"demo finished in {total:.0f} s; report: {paths[REPORT_NAME].resolve()}")
    return {"report": paths[REPORT_NAME], "outputs": paths, "times": steps.times,
            "results": results, "fits": fits, "total_s": total}


def _selections(data, settings):
    """The data of each fit: E+I, E, I on all bins, E+I in each state."""
    selections = {"EI": data, "E": data.select(population=["E"]),
                  "I": data.select(population=["I"])}
    for state in settings.states:
        selections[f"EI_{state}"] = data.select(state=state)
    return selections


def _thermo_options(tree, settings):
    from .thermo import AUTO_EXACT_MAX_NEURONS

    num_neurons = tree["posterior"].sizes["neuron"]
    if num_neurons <= AUTO_EXACT_MAX_NEURONS:
        return {"method": "exact"}
    return {"method": "gibbs", "num_chains": settings.thermo_chains,
            "num_sweeps": settings.thermo_sweeps, "burn_in": settings.thermo_burn_in,
            "on_short_run": "warn"}


def _run_checks(rng_key, tree, data, settings):
    """Posterior predictive checks and I2/IN of the main fit (``bayes_ising.checks``)."""
    try:
        from . import checks
    except ImportError:
        return None
    return checks.posterior_predictive_checks(rng_key, tree, data,
                                              num_draws=settings.check_draws)


def _run_ei(rng_key, fits, selections, settings):
    """E-only vs E+I (and I-only vs E+I) synchrony (``bayes_ising.analyses``)."""
    try:
        from . import analyses
    except ImportError:
        return None
    return analyses.ei_comparison(rng_key, fits["EI"], fits["E"], fits["I"], selections["EI"],
                                  num_draws=settings.check_draws)


def _run_states(rng_key, fits, selections, settings):
    """I–I (and E–E, E–I) couplings and correlations across states (``bayes_ising.analyses``)."""
    try:
        from . import analyses
    except ImportError:
        return None
    state_fits = {state: fits[f"EI_{state}"] for state in settings.states}
    state_data = {state: selections[f"EI_{state}"] for state in settings.states}
    return analyses.state_comparison(rng_key, state_fits, state_data)
