"""The whole analysis of the embedded E/I sleep dataset, ending in one HTML report.

:func:`run_demo` is what ``bayes-ising demo`` and the notebooks run; nothing here lives only in
a notebook. Steps (each writes its result into the output folder, atomically):

1. data — :func:`bayes_ising.datasets.ei_sleep` (40 neurons, 32 E + 8 I, 50 ms bins, 20,000
   bins in each of ``wake``, ``light``, ``deep``): ``data_summary.json``;
2. the main fit (NumPyro NUTS, exact likelihood): E+I on the deep-sleep bins of 16 neurons —
   all 8 I and 8 E, the sparsest E included — ``posterior_EI.nc``;
3. diagnostics, flagged neurons beside the restart-cosine and 5% verdicts:
   ``diagnostics.json``;
4. posterior predictive checks (P(K), patterns, third-order) and I2/IN (S2 by enumeration):
   ``checks.json``;
5. E-only vs E+I synchrony (:func:`bayes_ising.analyses.ei_analysis` on every bin; the joint
   model holds the 8 most active E and all I neurons) — ``ei.json``; couplings and
   correlations per state and P(I–I larger in deep sleep than in wake)
   (:func:`bayes_ising.analyses.state_analysis`, 8 E + 8 I) — ``states.json``;
6. C(T)/N and S(T)/N with posterior bands and the shuffled-data control: ``thermo.json``;
7. MLE + adaptive Metropolis vs NUTS: ``comparison.json``;
8. the report: ``report.html``.

``full=True`` (``bayes-ising demo --full``) fits all 40 neurons in the main fit (the
pseudolikelihood with the package's default calibration, N > 20; much slower) and adds an
exact 16-neuron fit (``posterior_EI16.nc``) for I2/IN and the MLE comparison.

``fast=True`` (or the environment variable ``BAYES_ISING_FAST=1``) runs the same steps on a
small subset (5 E + 3 I neurons, 1,500 bins of wake and deep) with few draws and
maximum-likelihood fits inside the E/I and state analyses: it is what the tests and the
notebooks' fast mode use, and it is not meant for conclusions.
"""

import dataclasses
import os
import time
from pathlib import Path

import numpy as np

from ._io import check_writable, write_json
from .errors import ExistingOutputError

__all__ = ["DemoSettings", "DEFAULT_SETTINGS", "FAST_SETTINGS", "FULL_SETTINGS",
           "demo_settings", "fast_mode", "demo_data", "subset_data", "run_demo", "REPORT_NAME"]

REPORT_NAME = "report.html"


@dataclasses.dataclass(frozen=True)
class DemoSettings:
    """Sizes of the demo.

    ``num_excitatory``/``num_inhibitory``/``bins_per_state`` = None keep the whole dataset;
    otherwise the first neurons of each type (always keeping the sparsest E neuron, so a < 5%
    neuron is in the subset) and the first bins of each state. ``subset_excitatory`` E neurons
    (the sparsest first) and all I neurons form the exact-likelihood subset fit (None: the
    main fit is already exact and is reused). ``analysis_fit`` is the fit inside the E/I and
    state analyses ("posterior" or "mle").
    """

    num_chains: int = 4
    num_draws: int = 500
    num_warmup: int = 200
    analysis_chains: int = 2
    analysis_sampler_draws: int = 300
    thermo_draws: int = 12
    temperatures: str = "0.5:3.0:26"
    thermo_chains: int = 16
    thermo_sweeps: int = 600
    thermo_burn_in: int = 200
    mle_draws: int = 4000
    num_restarts: int = 4
    check_draws: int = 20
    check_samples: int = 20_000
    analysis_fit: str = "posterior"
    analysis_draws: int = 100
    states: tuple = ("wake", "light", "deep")
    main_state: str | None = "deep"
    main_excitatory: int | None = 8
    num_excitatory: int | None = None
    num_inhibitory: int | None = None
    bins_per_state: int | None = None
    subset_excitatory: int | None = None
    analysis_excitatory: int | None = 8


DEFAULT_SETTINGS = DemoSettings()
#: all 40 neurons in the main fit (pseudolikelihood) and a 16-neuron exact subset fit beside it
FULL_SETTINGS = DemoSettings(main_excitatory=None, subset_excitatory=8)
FAST_SETTINGS = DemoSettings(num_chains=2, num_draws=60, num_warmup=60, thermo_draws=4,
                             temperatures="0.5:3.0:11", thermo_chains=8, thermo_sweeps=200,
                             thermo_burn_in=50, mle_draws=300, num_restarts=2, check_draws=8,
                             check_samples=5_000, analysis_fit="mle", analysis_draws=1,
                             states=("wake", "deep"), main_state=None, num_excitatory=5,
                             num_inhibitory=3,
                             bins_per_state=1500, subset_excitatory=None,
                             main_excitatory=None, analysis_excitatory=None)


def fast_mode():
    """True when the environment asks for the fast mode (``BAYES_ISING_FAST=1``)."""
    return os.environ.get("BAYES_ISING_FAST", "").strip().lower() in ("1", "true", "yes")


def demo_settings(fast=None, full=False):
    """:data:`FAST_SETTINGS` when ``fast`` (default: :func:`fast_mode`), :data:`FULL_SETTINGS`
    when ``full``, else :data:`DEFAULT_SETTINGS`."""
    if fast is None:
        fast = fast_mode()
    if fast and full:
        from .errors import BayesIsingError

        raise BayesIsingError("--fast and --full contradict each other: choose one")
    return FAST_SETTINGS if fast else FULL_SETTINGS if full else DEFAULT_SETTINGS


def _sparsest_first(firing_probability, members, count):
    """``count`` of ``members``: the sparsest neuron first, then the first ones in order."""
    if count is None or count >= members.size:
        return members
    sparsest = members[np.argsort(firing_probability[members], kind="stable")[:max(1, count // 3)]]
    rest = [m for m in members if m not in set(sparsest.tolist())]
    return np.sort(np.concatenate([sparsest, rest[: count - sparsest.size]]).astype(int))


def _subset(data, columns, rows=None):
    from .data import SpikeData

    rows = np.arange(data.num_bins) if rows is None else rows
    states = None if data.states is None else np.asarray(data.states).astype(str)[rows]
    return SpikeData.from_raster(
        np.asarray(data.spins)[np.ix_(rows, columns)], neuron_ids=data.neuron_ids[columns],
        cell_types=data.cell_types[columns], states=states, bin_size=data.bin_size,
        time_units=data.time_units)


def demo_data(settings=DEFAULT_SETTINGS):
    """The embedded E/I sleep dataset, cut to the settings' subset (see :class:`DemoSettings`)."""
    from . import datasets

    data = datasets.ei_sleep()
    if settings.num_excitatory is None and settings.bins_per_state is None:
        return data
    types = np.asarray(data.cell_types).astype(str)
    firing = np.asarray(data.firing_probability)
    columns = np.sort(np.concatenate([
        _sparsest_first(firing, np.flatnonzero(types == "E"), settings.num_excitatory),
        _sparsest_first(firing, np.flatnonzero(types == "I"), settings.num_inhibitory)]))
    rows = None
    if settings.bins_per_state is not None:
        states = np.asarray(data.states).astype(str)
        rows = np.sort(np.concatenate([np.flatnonzero(states == s)[: settings.bins_per_state]
                                       for s in settings.states]))
    return _subset(data, columns, rows)


def subset_data(data, settings=DEFAULT_SETTINGS):
    """The exact-likelihood subset: ``subset_excitatory`` E neurons (sparsest first) + all I."""
    if settings.subset_excitatory is None:
        return data
    types = np.asarray(data.cell_types).astype(str)
    firing = np.asarray(data.firing_probability)
    columns = np.sort(np.concatenate([
        _sparsest_first(firing, np.flatnonzero(types == "E"), settings.subset_excitatory),
        np.flatnonzero(types != "E")]))
    return _subset(data, columns)


def _outputs(settings):
    names = ["data_summary.json", "diagnostics.json", "checks.json", "ei.json",
             "states.json", "thermo.json", "comparison.json", REPORT_NAME]
    names += ["posterior_EI.nc"] + (["posterior_EI16.nc"] if settings.subset_excitatory
                                    else [])
    return names


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


def run_demo(out_dir="demo_output", *, fast=None, full=False, force=False, seed=0,
             progress=True, log=print, settings=None):
    """Run the whole analysis on the embedded dataset and write the report.

    Parameters
    ----------
    out_dir : folder for every result (created if missing)
    fast : small subset and few draws (default: the ``BAYES_ISING_FAST`` environment variable)
    full : all 40 neurons in the main fit (pseudolikelihood) plus a 16-neuron exact fit
    force : overwrite existing results in ``out_dir`` (else :class:`ExistingOutputError`
        before any work is done)
    seed : one integer; every step gets its own key split from it
    progress : show progress bars
    log : where the one-line step messages go (``print``; pass ``lambda *a: None`` to silence)
    settings : a :class:`DemoSettings` overriding ``fast``

    Returns
    -------
    dict with ``report`` (the report path), ``outputs`` (name → path), ``times`` (s per step),
    ``results`` (the dicts written as JSON), ``fits`` (name → posterior DataTree) and
    ``total_s``.
    """
    import jax

    from . import analyses, bayes, checks, diagnostics, enable_x64, report, thermo
    from .comparison import compare_mle

    enable_x64()
    settings = settings or demo_settings(fast, full)
    is_fast = settings == FAST_SETTINGS
    out_dir = Path(out_dir)
    paths = {name: out_dir / name for name in _outputs(settings)}
    existing = [p for p in paths.values() if p.exists()]
    if existing and not force:
        raise ExistingOutputError(f"{out_dir} already holds demo results ({existing[0].name}, "
                                  "...); pass --force (force=True) to overwrite them")
    out_dir.mkdir(parents=True, exist_ok=True)
    for path in paths.values():
        check_writable(path, force=True)
    keys = dict(zip(["fit", "fit_subset", "thermo", "control", "compare", "checks", "ei",
                     "states"], jax.random.split(jax.random.key(seed), 8), strict=True))
    steps = _Steps(total=8, progress=progress, log=log)
    results, fits = {}, {}
    start = time.perf_counter()
    label = ("fast" if is_fast else "full" if settings == FULL_SETTINGS else "default")
    log(f"bayes-ising demo ({label} settings) -> {out_dir}")

    def fit(name, key, subset):
        tree = bayes.fit_posterior(key, subset, likelihood=_likelihood(subset.num_neurons),
                                   num_chains=settings.num_chains, num_draws=settings.num_draws,
                                   num_warmup=settings.num_warmup, progress=progress)
        tree.attrs["demo_fit"] = name
        bayes.save_posterior(tree, paths[f"posterior_{name}.nc"], force=True)
        log(f"    fit {name}: N = {subset.num_neurons}, {subset.num_bins} bins, "
            f"{tree.attrs['likelihood']} likelihood, "
            f"{float(tree.attrs.get('wall_time_s', float('nan'))):.1f} s")
        return tree

    try:
        with steps("data"):
            data = demo_data(settings)
            main_all_states = _with_excitatory(data, settings.main_excitatory)
            main = _in_state(main_all_states, settings.main_state)
            if settings.subset_excitatory is not None:  # the full demo: a 16-neuron exact fit
                subset = _in_state(_with_excitatory(data, settings.subset_excitatory),
                                   settings.main_state)
            else:
                subset = main
            # the state analysis refits per state: keep it enumerable (8 E + all I)
            analysis_data = _with_excitatory(data, settings.analysis_excitatory)
            summary = data.summary()
            write_json(paths["data_summary.json"], summary, force=True)
            results["data_summary"] = summary

        with steps("fits"):
            fits["EI"] = fit("EI", keys["fit"], main)
            if subset is not main:
                fits["EI16"] = fit("EI16", keys["fit_subset"], subset)
            small = "EI16" if "EI16" in fits else "EI"

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
            checks_main = checks.posterior_predictive_checks(
                keys["checks"], fits["EI"], main.spins, num_draws=settings.check_draws,
                num_samples=settings.check_samples,
                third_order_draws=min(settings.check_draws, 10))
            information_small = None
            if small != "EI":
                draws_h, draws_J = checks.parameter_draws(fits[small], settings.check_draws)
                information_small = checks.information(draws_h, draws_J, subset.spins)
            results["checks"] = {**checks_main, "information_subset": information_small}
            write_json(paths["checks.json"], results["checks"], force=True)

        with steps("E/I and states"):
            posterior_kwargs = dict(num_chains=settings.analysis_chains,
                                    num_draws=settings.analysis_sampler_draws,
                                    num_warmup=settings.num_warmup)
            num_e = int(np.sum(np.asarray(data.cell_types) == "E"))
            num_i = data.num_neurons - num_e
            results["ei"] = analyses.ei_analysis(
                keys["ei"], data, fit=settings.analysis_fit,
                max_neurons={"E": min(num_e, max(2, analyses.MAX_EXACT_POSTERIOR_NEURONS
                                                 - num_i))},
                num_draws=settings.analysis_draws, posterior_kwargs=posterior_kwargs)
            results["states"] = analyses.state_analysis(
                keys["states"], analysis_data, states=list(settings.states),
                fit=settings.analysis_fit, num_draws=settings.analysis_draws,
                posterior_kwargs=posterior_kwargs)
            write_json(paths["ei.json"], results["ei"], force=True)
            write_json(paths["states.json"], results["states"], force=True)

        with steps("thermodynamics"):
            temperatures = thermo.parse_temperatures(settings.temperatures)
            options = _thermo_options(main.num_neurons, settings)
            curves = thermo.posterior_thermodynamics(
                keys["thermo"], fits["EI"], temperatures, num_draws=settings.thermo_draws,
                **options)
            thermo_dict = curves.to_dict(interval=0.9)
            control, info = thermo.shuffled_control(keys["control"], main.spins, temperatures,
                                                    **options)
            control_dict = control.to_dict(interval=0.9)
            control_dict.pop("caveat", None)
            control_dict.update(info)
            thermo_dict["shuffled_control"] = control_dict
            thermo_dict["num_neurons"] = main.num_neurons
            results["thermo"] = thermo_dict
            write_json(paths["thermo.json"], thermo_dict, force=True)

        with steps("MLE vs Bayes"):
            results["comparison"] = compare_mle(
                keys["compare"], fits[small], subset, num_draws=settings.mle_draws,
                num_restarts=settings.num_restarts, diagnosis=diagnoses[small])
            results["comparison"]["fit"] = _label(small, subset)
            write_json(paths["comparison.json"], results["comparison"], force=True)

        with steps("report"):
            extra_information = {}
            if information_small is not None:
                extra_information[_label(small, subset)] = information_small
            settings_rows = {
                "fit label": f"E+I, all {main.num_neurons} neurons"
                             + (f", {settings.main_state} bins" if settings.main_state else ""),
                "main fit data": f"{main.num_bins} bins"
                                 + (f" of the {settings.main_state} state (the data section "
                                    "shows every state)" if settings.main_state else ""),
                "demo settings": "fast (a small subset, few draws: not for conclusions)"
                if is_fast else label,
                "fits in this demo": ", ".join(
                    f"{_label(name, main if name == 'EI' else subset)} "
                    f"({fits[name].attrs['likelihood']} likelihood)" for name in fits),
                "E/I and state analyses": f"{settings.analysis_fit} fits "
                                          "(bayes_ising.analyses)",
                "step times (s)": ", ".join(f"{k} {v:.0f}" for k, v in steps.times.items()),
            }
            text = report.build_report(
                fits["EI"], data, diagnostics=results["diagnostics"],
                checks=results["checks"], thermo=results["thermo"],
                comparison=results["comparison"], ei=results["ei"], states=results["states"],
                extra_information=extra_information, settings=settings_rows,
                title="bayes-ising demo: the embedded E/I sleep dataset")
            report.write_report(paths[REPORT_NAME], text, force=True)
    finally:
        steps.close()
    total = time.perf_counter() - start
    log(f"demo finished in {total:.0f} s; report: {paths[REPORT_NAME].resolve()}")
    return {"report": paths[REPORT_NAME], "outputs": paths, "times": steps.times,
            "results": results, "fits": fits, "total_s": total}


def _with_excitatory(data, count):
    """``data`` with ``count`` E neurons (sparsest first) and every other neuron; all if None."""
    if count is None:
        return data
    return subset_data(data, dataclasses.replace(DEFAULT_SETTINGS, subset_excitatory=count))


def _in_state(data, state):
    return data.select(state=state) if state else data


def _label(name, data):
    types, counts = np.unique(np.asarray(data.cell_types).astype(str), return_counts=True)
    parts = " + ".join(f"{c} {t}" for t, c in zip(types, counts, strict=True))
    return f"{name} ({parts})"


def _thermo_options(num_neurons, settings):
    from .thermo import AUTO_EXACT_MAX_NEURONS

    if num_neurons <= AUTO_EXACT_MAX_NEURONS:
        return {"method": "exact"}
    return {"method": "gibbs", "num_chains": settings.thermo_chains,
            "num_sweeps": settings.thermo_sweeps, "burn_in": settings.thermo_burn_in,
            "on_short_run": "warn"}
