r"""Does a fitted model reproduce its data? Moment checks by simulation, for any N.

A fitted pairwise model is *valid* for the data when, simulated, it reproduces the data's
means :math:`m_i` and connected correlations :math:`C_{ij} = \langle s_i s_j\rangle - m_i m_j`
(i<j) — for the maximum-likelihood model exactly, up to Monte Carlo noise. For N too large to
enumerate the model's moments come from Gibbs chains
(:func:`bayes_ising.core.gibbs.sweep_sums`), started from uniformly random states *and* from
data rows: a model with a second, degenerate phase (e.g. the all-active state of an
over-coupled pseudolikelihood fit) looks fine from one start type only.

Noise on both sides:

* Monte Carlo: the chains are split into G independent groups; each group's average is an
  independent estimate, so MCSE = sd over groups / √G (autocorrelation included);
* data: bins of a recording are autocorrelated, so the data's standard errors are batch means
  over ``num_blocks`` contiguous blocks of bins, floored at the independent-bins value.

A moment's error e is judged by :math:`z = e / \sqrt{\mathrm{MCSE}^2 + \mathrm{SE}_{data}^2}`
against a Bonferroni critical value over all N + N(N−1)/2 moments (Student t with G − 1
degrees of freedom at ``significance`` = 0.05).

Functions
    :func:`data_standard_errors` — batch-means SEs of m and C;
    :func:`simulate_moments` — Gibbs moments of D models at once (vmapped, jitted);
    :func:`compare_moments` — errors, z-scores and summary numbers;
    :func:`model_check` — the verdict for one model: passed, verdict, reason, numbers.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import scipy.stats

from bayes_ising.core import gibbs, ising, stats
from bayes_ising.core.stats import connected_pairs as _connected
from bayes_ising.core.stats import data_standard_errors

__all__ = [
    "NUM_GROUPS",
    "data_standard_errors",
    "simulate_moments",
    "compare_moments",
    "z_critical",
    "model_check",
]

#: independent groups of chains behind every Monte Carlo standard error
NUM_GROUPS = 32
#: a chain state (or a bin) with at least this fraction of active neurons is "all active"
ALL_ACTIVE = 0.9


def z_critical(num_moments, significance=0.05, num_groups=NUM_GROUPS):
    """Two-sided Bonferroni critical value over ``num_moments`` z-scores, Student t(G − 1)."""
    return float(scipy.stats.t.isf(significance / (2 * max(int(num_moments), 1)),
                                   num_groups - 1))


@functools.partial(jax.jit, static_argnames=("num_sweeps", "burn_in", "num_groups"))
def _simulate(rng_key, h, J, spins, num_sweeps, burn_in, num_groups):
    """vmapped over models: h (D, N), J (D, N, N), spins (D, C, N) → group means of s
    (D, G, N) and s sᵀ (D, G, N, N), final spins (D, C, N)."""

    def one_model(key, h, J, spins):
        spins, _, _ = gibbs.sweep_sums(key, spins, h, J, 0, burn_in, 0)
        spins, sum_s, sum_ss = gibbs.sweep_sums(key, spins, h, J, burn_in, num_sweeps,
                                                num_groups)
        count = num_sweeps * (spins.shape[0] // num_groups)
        return sum_s / count, sum_ss / count, spins

    keys = jax.random.split(rng_key, h.shape[0])
    return jax.vmap(one_model)(keys, h, J, spins)


def _kpairwise_group_sums(rng_key, h, J, V, num_chains, num_sweeps, burn_in, num_groups,
                          initial_spins):
    """K-pairwise chains (:func:`bayes_ising.core.gibbs.sample_kpairwise_spins`, every sweep
    kept after ``burn_in``): per-group means of s (D, G, N) and s sᵀ (D, G, N, N) and the
    chains' final spins (D, C, N), as :func:`_simulate` returns them."""
    samples = gibbs.sample_kpairwise_spins(
        rng_key, h, J, V, num_chains * num_sweeps, num_chains=num_chains, burn_in=burn_in,
        thin=1, initial_spins=initial_spins)  # rows sweep by sweep, chains within a sweep
    num_models, _, num_neurons = samples.shape
    per_group = num_chains // num_groups
    group_m = np.zeros((num_models, num_groups, num_neurons))
    group_Q = np.zeros((num_models, num_groups, num_neurons, num_neurons))
    for d in range(num_models):
        x = samples[d].reshape(num_sweeps, num_groups, per_group, num_neurons)
        x = np.moveaxis(x, 1, 0).reshape(num_groups, -1, num_neurons).astype(np.float32)
        group_m[d] = x.mean(axis=1)
        group_Q[d] = np.einsum("gti,gtj->gij", x, x) / x.shape[1]
    final = samples[:, -num_chains:, :].astype(np.float64)
    return group_m, group_Q, final


def simulate_moments(rng_key, h, J, *, V=None, num_chains=1024, num_sweeps=1000, burn_in=500,
                     initial_spins=None, num_groups=NUM_GROUPS):
    r"""Model moments of D models by Gibbs sampling, vectorised over models (one compile per
    shape).

    h : (D, N) or (N,); J : (D, N, N) or (N, N); ``V`` (D, N+1) or (N+1,): the K-pairwise
    potential (E − V(K); sampled by :func:`bayes_ising.core.gibbs.sample_kpairwise_spins`,
    the same chains, groups and sweeps), or None for the pairwise model. ``initial_spins``
    None for uniformly random starts, or data rows (R, N) from which each chain draws one row
    at random. float32 spins.

    Returns dict of arrays, each with a leading D axis (dropped for a single (N,) model):
    ``m`` (N,), ``C`` (P,), ``mcse_m``, ``mcse_C`` (spread of ``num_groups`` independent groups
    of chains / √G), ``final_activity`` (C,) fraction of active neurons in each chain's last
    state, ``mean_activity``.
    """
    single = np.ndim(h) == 1
    h = np.atleast_2d(np.asarray(h, np.float64))
    J = np.asarray(J, np.float64).reshape(h.shape[0], h.shape[1], h.shape[1])
    num_models, num_neurons = h.shape
    num_chains = num_groups * int(math.ceil(num_chains / num_groups))
    key_start, key_run = jax.random.split(rng_key)
    if V is not None:
        V = np.asarray(V, np.float64).reshape(num_models, num_neurons + 1)
        group_m, group_Q, final = _kpairwise_group_sums(
            key_run, h, J, V, num_chains, int(num_sweeps), int(burn_in), int(num_groups),
            initial_spins)
    elif initial_spins is None:
        start = jax.random.bernoulli(key_start, 0.5, (num_models, num_chains, num_neurons))
        start = jnp.where(start, 1.0, -1.0).astype(jnp.float32)
    else:
        rows = np.asarray(initial_spins)
        pick = jax.random.randint(key_start, (num_models, num_chains), 0, rows.shape[0])
        start = jnp.asarray(rows[np.asarray(pick)], jnp.float32)
    if V is None:
        group_m, group_Q, final = _simulate(key_run, jnp.asarray(h), jnp.asarray(J), start,
                                            int(num_sweeps), int(burn_in), int(num_groups))
    group_m = np.asarray(group_m, np.float64)
    group_Q = np.asarray(group_Q, np.float64)
    group_C = _connected(group_m, group_Q)  # (D, G, P)
    root = math.sqrt(num_groups)
    out = {
        "m": group_m.mean(axis=1), "C": _connected(group_m.mean(axis=1), group_Q.mean(axis=1)),
        "mcse_m": group_m.std(axis=1, ddof=1) / root,
        "mcse_C": group_C.std(axis=1, ddof=1) / root,
        "final_activity": stats.probability_from_mean(np.asarray(final, np.float64)).mean(axis=2),
    }
    out["mean_activity"] = stats.probability_from_mean(out["m"]).mean(axis=-1)
    return {k: v[0] for k, v in out.items()} if single else out


def compare_moments(model, data, *, significance=0.05, data_weight=1.0):
    r"""Errors of one model's simulated moments against the data's, with their noise.

    model : one model's :func:`simulate_moments` dict; data : :func:`data_standard_errors`.
    z-scores :math:`z = e/\sqrt{\mathrm{MCSE}^2 + (w\,\mathrm{SE}_{data})^2}` (w =
    ``data_weight``), and :math:`z_{MC} = e/\mathrm{MCSE}`; ``within`` when max |z| ≤ the
    Bonferroni critical value.

    Returns a JSON-able dict: ``max_abs_mean``, ``max_abs_connected``, ``rms_connected``,
    ``max_z``, ``max_z_mc``, ``max_error_over_data_se``, ``z_critical``, ``within``,
    ``mean_activity``, ``mean_spin``, ``mcse_mean``, ``mcse_connected`` (max), and
    ``all_active_chains`` (fraction of chains whose last state is ≥ 90% active).
    """
    err = np.concatenate([model["m"] - data["m"], model["C"] - data["C"]])
    mcse = np.concatenate([model["mcse_m"], model["mcse_C"]])
    se = np.concatenate([data["se_m"], data["se_C"]])
    num_mean = data["m"].shape[0]
    floor = 1e-12
    z = np.abs(err) / np.sqrt(mcse**2 + (data_weight * se) ** 2 + floor)
    z_mc = np.abs(err) / np.sqrt(mcse**2 + floor)
    critical = z_critical(err.size, significance)
    connected = err[num_mean:]
    i, j = ising.pair_indices(num_mean)
    pair = connected + (model["m"][i] * model["m"][j] - data["m"][i] * data["m"][j])
    return {
        "max_abs_pair": float(np.max(np.abs(pair))) if pair.size else 0.0,
        "max_abs_mean": float(np.max(np.abs(err[:num_mean]))),
        "max_abs_connected": float(np.max(np.abs(connected))) if connected.size else 0.0,
        "rms_connected": float(np.sqrt(np.mean(connected**2))) if connected.size else 0.0,
        "max_z": float(np.max(z)), "max_z_mc": float(np.max(z_mc)),
        "max_error_over_data_se": float(np.max(np.abs(err) / np.maximum(se, floor))),
        "z_critical": critical, "within": bool(np.max(z) <= critical),
        "mean_activity": float(model["mean_activity"]),
        "mean_spin": float(np.mean(model["m"])),
        "mcse_mean": float(np.max(model["mcse_m"])),
        "mcse_connected": float(np.max(model["mcse_C"])) if connected.size else 0.0,
        "all_active_chains": float(np.mean(model["final_activity"] >= ALL_ACTIVE)),
        "all_silent_chains": float(np.mean(model["final_activity"] <= 1.0 - ALL_ACTIVE)),
        "above_data_chains": float(np.mean(model["final_activity"] > np.max(data["activity"]))),
        "below_data_chains": float(np.mean(model["final_activity"] < np.min(data["activity"]))),
    }


def _runaway(res, data, name):
    """(verdict, reason) when ≥ 5% of one start type's chains end in a state the data never
    show (all active / above the data's most active bin, or the silent mirror images)."""
    activity = data["activity"]
    mean = float(np.mean(activity))
    tail = f"mean activity {res['mean_activity']:.3f} vs {mean:.3f} in the data"
    if res["all_active_chains"] >= 0.05 and np.mean(activity >= ALL_ACTIVE) < 0.01:
        return ("degenerate: runs to an all-active state",
                f"{100 * res['all_active_chains']:.0f}% of chains from {name} starts end "
                f"≥ 90% active ({tail})")
    if res["all_silent_chains"] >= 0.05 and np.mean(activity <= 1 - ALL_ACTIVE) < 0.01:
        return ("degenerate: runs to an all-silent state",
                f"{100 * res['all_silent_chains']:.0f}% of chains from {name} starts end "
                f"≥ 90% silent ({tail})")
    if res["above_data_chains"] >= 0.05:
        return ("degenerate: runs to a high-activity state not in the data",
                f"{100 * res['above_data_chains']:.0f}% of chains from {name} starts end more "
                f"active than any data bin (> {np.max(activity):.2f}; {tail})")
    if res["below_data_chains"] >= 0.05:
        return ("degenerate: runs to a low-activity state not in the data",
                f"{100 * res['below_data_chains']:.0f}% of chains from {name} starts end less "
                f"active than any data bin (< {np.min(activity):.2f}; {tail})")
    return None


def _verdict(random_start, data_start, data, critical):
    """(verdict, reason) from the two start types' comparisons; first rule that applies."""
    activity = float(np.mean(data["activity"]))
    runaway = _runaway(data_start, data, "data-row")  # the model leaves the data's states
    if runaway is not None:
        return runaway
    if random_start["between_starts_z"] > critical:
        return ("multimodal: random and data starts reach different states",
                f"means from random and data-row starts differ by "
                f"{random_start['between_starts_z']:.1f} MC errors (critical {critical:.1f}); "
                f"mean activity {random_start['mean_activity']:.3f} vs "
                f"{data_start['mean_activity']:.3f}")
    runaway = _runaway(random_start, data, "random")
    if runaway is not None:
        return runaway
    worst = max((random_start, data_start), key=lambda r: r["max_z"])
    if worst["max_z"] > critical:
        return ("poor fit: moment errors above tolerance",
                f"max |z| = {worst['max_z']:.1f} > {critical:.1f} (max |Δm| "
                f"{worst['max_abs_mean']:.4f}, max |ΔC| {worst['max_abs_connected']:.4f}, "
                f"mean activity {worst['mean_activity']:.3f} vs {activity:.3f})")
    return ("ok", f"max |z| = {worst['max_z']:.1f} ≤ {critical:.1f} from random and data "
                  f"starts (max |Δm| {worst['max_abs_mean']:.4f}, max |ΔC| "
                  f"{worst['max_abs_connected']:.4f})")


def model_check(rng_key, h, J, spins, *, num_chains=1024, num_sweeps=1000, burn_in=500,
                significance=0.05, num_blocks=50, data=None):
    r"""Simulate one fitted model from random and from data-row starts and compare it with
    the data (module docstring): the validity verdict of a fit.

    h (N,), J (N, N); spins (T, N) ±1 (``data`` may pass precomputed
    :func:`data_standard_errors`). Verdicts, first that applies: ``"degenerate: runs to an
    all-active state"`` (≥ 5% of chains from either start type end ≥ 90% active while < 1% of
    the data's bins are; or the all-silent mirror image; data-row starts judged first),
    ``"degenerate: runs to a high-/low-activity state not in the data"`` (≥ 5% of chains end
    beyond the data's most/least active bin), ``"multimodal: random and data starts reach
    different states"`` (their means differ by more than the critical number of MC errors;
    checked after the data-row starts' and before the random starts' degeneracy), ``"poor
    fit: moment errors above tolerance"`` (some |z| above the critical value, z with MC and
    data errors), ``"ok"``.

    Returns a JSON-able dict: ``passed`` (verdict == "ok"), ``verdict``, ``reason`` (one line
    with the numbers), ``random_start`` and ``data_start`` (:func:`compare_moments`),
    ``data`` (mean spin, mean activity, max data SEs), ``z_critical``, ``settings``.
    """
    spins = np.asarray(spins)
    if data is None:
        data = data_standard_errors(spins, num_blocks)
    key_random, key_data = jax.random.split(rng_key)
    kwargs = dict(num_chains=num_chains, num_sweeps=num_sweeps, burn_in=burn_in)
    sim_random = simulate_moments(key_random, h, J, **kwargs)
    sim_data = simulate_moments(key_data, h, J, initial_spins=spins, **kwargs)
    random_start = compare_moments(sim_random, data, significance=significance)
    data_start = compare_moments(sim_data, data, significance=significance)
    between = np.abs(sim_random["m"] - sim_data["m"]) / np.sqrt(
        sim_random["mcse_m"] ** 2 + sim_data["mcse_m"] ** 2 + 1e-12)
    random_start["between_starts_z"] = float(np.max(between))
    critical = random_start["z_critical"]
    verdict, reason = _verdict(random_start, data_start, data, critical)
    return {
        "passed": verdict == "ok", "verdict": verdict, "reason": reason,
        "random_start": random_start, "data_start": data_start, "z_critical": critical,
        "data": {"mean_spin": float(np.mean(data["m"])),
                 "mean_activity": float(np.mean(data["activity"])),
                 "max_se_mean": float(np.max(data["se_m"])),
                 "max_se_connected": float(np.max(data["se_C"])) if data["se_C"].size else 0.0},
        "settings": {"num_chains": int(sim_random["final_activity"].shape[0]),
                     "num_sweeps": int(num_sweeps), "burn_in": int(burn_in),
                     "num_groups": NUM_GROUPS, "significance": float(significance),
                     "num_blocks": int(data["num_blocks"])},
    }
