"""The study on the embedded E/I sleep dataset: what ``bayes-ising demo`` and the notebooks run.

:func:`run_demo` is :func:`bayes_ising.pipeline.plan.study` on
:func:`bayes_ising.data.datasets.ei_sleep` (40 neurons, 32 E + 8 I, 50 ms bins, 20,000 bins in each
of ``wake``, ``light``, ``deep``): every state × population (E+I with all 40 neurons and E with
32: the calibrated pseudo-posterior; I with 8: exact), diagnostics beside the study's
restart-cosine and 5% rules, predictive checks, I2/IN (N ≤ 22), C(T)/N with the shuffled
control, MLE + walk vs the posterior, E-only / I-only vs E+I per state and the state
comparison; outputs in the study folder (``study.json``, ``tables/``, ``fits/``, the report).
A rerun resumes where an interrupted one stopped.

``fast=True`` (``bayes-ising demo --fast`` or ``BAYES_ISING_FAST=1``) runs the same study on a
small subset (5 E + 3 I neurons, 1,500 bins of wake and deep) with few draws: what the tests
and the notebooks' fast mode use; not for conclusions.

:class:`DemoSettings` and :func:`demo_data` / :func:`subset_data` cut the dataset (the
notebooks use them for their own subsets).
"""

import dataclasses
import os
import time

import numpy as np

__all__ = ["DemoSettings", "DEFAULT_SETTINGS", "FAST_SETTINGS", "FULL_SETTINGS",
           "demo_settings", "fast_mode", "demo_data", "subset_data", "run_demo", "REPORT_NAME",
           "demo_study_settings", "DEMO_TRIMS"]

REPORT_NAME = "report.html"


@dataclasses.dataclass(frozen=True)
class DemoSettings:
    """How the demo cuts the embedded dataset.

    ``num_excitatory``/``num_inhibitory``/``bins_per_state`` = None keep the whole dataset;
    otherwise the first neurons of each type (always keeping the sparsest E neuron, so a < 5%
    neuron is in the subset) and the first bins of each of ``states``.
    ``subset_excitatory`` E neurons (the sparsest first) and all I neurons form the
    exact-likelihood subset of :func:`subset_data` (None: no subset).
    """

    states: tuple = ("wake", "light", "deep")
    num_excitatory: int | None = None
    num_inhibitory: int | None = None
    bins_per_state: int | None = None
    subset_excitatory: int | None = None


DEFAULT_SETTINGS = DemoSettings()
#: the 16-neuron exact subset (8 E, sparsest first, + 8 I) of :func:`subset_data`
FULL_SETTINGS = DemoSettings(subset_excitatory=8)
#: the fast demo's subset: 5 E + 3 I neurons, 1,500 bins of wake and deep
FAST_SETTINGS = DemoSettings(states=("wake", "deep"), num_excitatory=5, num_inhibitory=3,
                             bins_per_state=1500)


def fast_mode():
    """True when the environment asks for the fast mode (``BAYES_ISING_FAST=1``)."""
    return os.environ.get("BAYES_ISING_FAST", "").strip().lower() in ("1", "true", "yes")


def demo_settings(fast=None, full=False):
    """:data:`FAST_SETTINGS` when ``fast`` (default: :func:`fast_mode`), :data:`FULL_SETTINGS`
    when ``full``, else :data:`DEFAULT_SETTINGS`."""
    if fast is None:
        fast = fast_mode()
    if fast and full:
        from bayes_ising.errors import BayesIsingError

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
    from bayes_ising.data import SpikeData

    rows = np.arange(data.num_bins) if rows is None else rows
    states = None if data.states is None else np.asarray(data.states).astype(str)[rows]
    return SpikeData.from_raster(
        np.asarray(data.spins)[np.ix_(rows, columns)], neuron_ids=data.neuron_ids[columns],
        cell_types=data.cell_types[columns], states=states, bin_size=data.bin_size,
        time_units=data.time_units)


def demo_data(settings=DEFAULT_SETTINGS):
    """The embedded E/I sleep dataset, cut to the settings' subset (see :class:`DemoSettings`)."""
    from bayes_ising.data import datasets

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


#: the demo's trims of the study's defaults, so that the whole study on the embedded dataset
#: runs in about ten minutes on 2 cores (the MLE comparison, the costliest analysis, is on
#: the E+I fits only, the study's default): walks of at most 15 s each (labelled unconverged
#: when they stop there), C(T) runs of at most 2,000 sweeps (the MC error then enters the
#: bands) and 10,000 simulated patterns per predictive check; the fits are the study's.
DEMO_TRIMS = dict(walk_seconds=15.0, thermo_sweeps=2000, check_samples=10_000)


def demo_study_settings(fast=False, seed=0):
    """The study's settings for the demo: :data:`bayes_ising.pipeline.plan.FAST_SETTINGS` with
    ``fast`` (the small subset also has 1,500 bins per state), else the study's defaults with
    :data:`DEMO_TRIMS`."""
    from bayes_ising.pipeline.plan import FAST_SETTINGS as STUDY_FAST
    from bayes_ising.pipeline.plan import StudySettings

    settings = STUDY_FAST if fast else StudySettings(**DEMO_TRIMS)
    return dataclasses.replace(settings, seed=seed)


def run_demo(out_dir="demo_output", *, fast=None, force=False, seed=0, progress=True,
             log=print, scheduler=None, full=False, settings=None):
    """The study (:func:`bayes_ising.pipeline.plan.study`) on the embedded dataset.

    Every state × population (E+I with all 40 neurons, E with 32: the calibrated
    pseudo-posterior; I with 8: exact), with every analysis of the study and the report.

    Parameters
    ----------
    out_dir : the study folder (a rerun resumes in it)
    fast : the small subset (5 E + 3 I, 1,500 bins of wake and deep) with few draws (default:
        the ``BAYES_ISING_FAST`` environment variable)
    force : replace the results of another study in ``out_dir``
    seed : one integer; every task gets its own key from it and its content
    progress : the overall bar and the sampler's bar of the fit in flight
    log : where one-line messages go
    scheduler : see :func:`bayes_ising.pipeline.plan.study`
    full : accepted for compatibility: the default is already all 40 neurons
    settings : a :class:`~bayes_ising.pipeline.plan.StudySettings` replacing the demo's

    Returns
    -------
    :class:`bayes_ising.pipeline.outputs.StudyResult` (``report``: the report path or None).
    """
    from bayes_ising.pipeline.plan import study

    fast = fast_mode() if fast is None else bool(fast)
    if fast and full:
        from bayes_ising.errors import BayesIsingError

        raise BayesIsingError("--fast and --full contradict each other: choose one")
    data = demo_data(FAST_SETTINGS if fast else DemoSettings())
    settings = settings or demo_study_settings(fast, seed)
    if fast:
        settings = dataclasses.replace(settings, min_bins=min(settings.min_bins, 1000))
    log(f"bayes-ising demo ({'fast' if fast else 'default'} settings): {data} -> {out_dir}")
    start = time.perf_counter()
    result = study(data, out_dir, settings=settings, scheduler=scheduler, force=force,
                   progress=progress, log=log)
    log(f"demo finished in {time.perf_counter() - start:.0f} s")
    return result
