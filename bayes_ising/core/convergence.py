r"""The one convergence rule: thresholds, the mixing verdict and the autocorrelation time.

A run of MCMC chains is *mixed* when every parameter has rank-normalised split
:math:`\hat R \le` :data:`MAX_RHAT`, bulk and tail effective sample size
:math:`\ge` :data:`MIN_ESS`, and no transition diverged (Vehtari, Gelman, Simpson, Carpenter &
Bürkner 2021, *Rank-normalization, folding, and localization: an improved R-hat*, Bayesian
Analysis 16, 667). :func:`verdict` applies it to arrays of per-parameter statistics
(:func:`bayes_ising.fit.posterior.mixing_verdict` to a posterior DataTree).

:func:`integrated_autocorrelation_time` is the one estimator of τ (multi-chain
autocorrelation, Sokal's automatic window), used for the Gibbs sampler's energies by
:mod:`bayes_ising.core.gibbs` and :mod:`bayes_ising.analysis.thermo`.
"""

from typing import NamedTuple

import numpy as np

__all__ = [
    "MAX_RHAT",
    "MIN_ESS",
    "MixingVerdict",
    "rule_text",
    "split_rhat",
    "draw_statistics",
    "num_divergent",
    "rule_failures",
    "verdict",
    "integrated_autocorrelation_time",
]

#: R-hat above this is non-convergence (Vehtari et al. 2021: 1.01 for the rank-normalised,
#: split R-hat; the older 1.1 misses chains that have not mixed)
MAX_RHAT = 1.01
#: bulk or tail ESS below this is too few effective draws (Vehtari et al. 2021: 100 per chain
#: with 4 chains, so that R-hat and the MCSEs themselves are reliable)
MIN_ESS = 400


class MixingVerdict(NamedTuple):
    """Whether a run mixed, and why not. NaN statistics are reported as NaN (too few draws)."""

    max_rhat: float  # over all parameters; NaN with one chain
    min_ess_bulk: float
    min_ess_tail: float
    num_divergent: int
    converged: bool
    reasons: tuple  # of str, empty when converged
    num_rhat_over: int = 0  # parameters with R-hat > max_rhat
    num_ess_under: int = 0  # parameters with bulk or tail ESS < min_ess


def rule_text(max_rhat=MAX_RHAT, min_ess=MIN_ESS):
    """The rule in words, e.g. for a report: 'R-hat ≤ 1.01, bulk and tail ESS ≥ 400, no
    divergences'."""
    return f"R-hat ≤ {max_rhat:g}, bulk and tail ESS ≥ {min_ess:g}, no divergences"


def _split(x):
    """(P, C, D) → (P, 2C, D//2): the first and last halves of every chain (the middle draw
    of an odd D dropped), as arviz-stats splits them."""
    half = x.shape[-1] // 2
    return np.concatenate([x[..., :half], x[..., x.shape[-1] - half:]], axis=1)


def _z_scale(x):
    """Rank-normalised values per parameter: Φ⁻¹((r − 3/8)/(S + 1/4)), r the average ranks
    over all S = chains·draws values (Blom 1958; Vehtari et al. 2021)."""
    from scipy import special, stats

    flat = x.reshape(x.shape[0], -1)
    ranks = stats.rankdata(flat, method="average", axis=1)
    return special.ndtri((ranks - 0.375) / (flat.shape[1] + 0.25)).reshape(x.shape)


def _rhat(x):
    """Split-R-hat of already split chains (P, C, D): √((B/W + D − 1)/D)."""
    num_draws = x.shape[-1]
    between = num_draws * np.var(x.mean(axis=-1), axis=-1, ddof=1)
    within = np.mean(np.var(x, axis=-1, ddof=1), axis=-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.sqrt((between / within + num_draws - 1) / num_draws)


def _ess(x):
    r"""ESS of split chains (P, C, D), all parameters at once: FFT autocovariances, Geyer's
    initial positive sequence truncated at the first pair sum ρ̂_{2k} + ρ̂_{2k+1} ≤ 0, made
    monotone (a running minimum of the pair sums), :math:`\hat\tau = -1 + 2\sum_{k<K}
    P_k + \hat\rho_{2K}^{(+)}`, ESS = CD / max(τ̂, 1/log₁₀ CD) — the arithmetic of arviz-stats'
    per-parameter loop, vectorised (tests compare the two)."""
    from scipy import fft

    num_params, num_chains, num_draws = x.shape
    centred = x - x.mean(axis=-1, keepdims=True)
    size = fft.next_fast_len(2 * num_draws)
    spectrum = fft.rfft(centred, n=size, axis=-1)
    acov = fft.irfft(spectrum * np.conjugate(spectrum), n=size, axis=-1)[..., :num_draws]
    acov /= num_draws
    mean_var = acov[..., 0].mean(axis=-1) * num_draws / (num_draws - 1.0)
    var_plus = mean_var * (num_draws - 1.0) / num_draws
    if num_chains > 1:
        var_plus = var_plus + np.var(x.mean(axis=-1), axis=-1, ddof=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        rho = 1.0 - (mean_var[:, None] - acov.mean(axis=1)) / var_plus[:, None]
    rho[:, 0] = 1.0
    num_pairs = num_draws // 2
    pairs = rho[:, : 2 * num_pairs].reshape(num_params, num_pairs, 2).sum(axis=-1)  # P_k
    k_max = max(0, (num_draws - 3) // 2)  # pairs k = 1..k_max are looked at (2k − 1 < D − 3)
    for_stop = pairs[:, : k_max + 1] <= 0
    first = np.argmax(for_stop, axis=1)
    stop = np.where(for_stop.any(axis=1), np.minimum(first, k_max), k_max)
    monotone = np.minimum.accumulate(pairs, axis=1)
    kept = np.arange(num_pairs)[None, :] < stop[:, None]
    even = rho[np.arange(num_params), np.minimum(2 * stop, num_draws - 1)]
    last_pair = pairs[np.arange(num_params), np.minimum(stop, num_pairs - 1)]
    tail = np.where((last_pair >= 0) | (even > 0), even, 0.0)
    tau = -1.0 + 2.0 * np.sum(np.where(kept, monotone, 0.0), axis=1) + tail
    total = num_chains * num_draws
    ess = total / np.maximum(tau, 1.0 / np.log10(total))
    ess = np.where(np.isnan(rho).any(axis=1), np.nan, ess)
    constant = np.ptp(x.reshape(num_params, -1), axis=1) < np.finfo(float).resolution
    return np.where(constant, float(total), ess)


def split_rhat(series):
    """Rank-normalised split R-hat (Vehtari et al. 2021), vectorised over the leading axes of
    ``series`` (..., chains, draws) -> (...): the larger of the bulk and tail (folded) values.
    A series that never changes gives 1. The one R-hat of the package."""
    x = np.asarray(series, dtype=np.float64)
    lead = x.shape[:-2]
    flat = x.reshape((-1,) + x.shape[-2:])
    split = _split(flat)
    folded = np.abs(split - np.median(split.reshape(split.shape[0], -1), axis=1)[:, None, None])
    rhat = np.maximum(_rhat(_z_scale(split)), _rhat(_z_scale(folded)))
    rhat = np.where(np.ptp(flat.reshape(flat.shape[0], -1), axis=1) == 0, 1.0, rhat)
    return rhat.reshape(lead)


def draw_statistics(draws):
    """Per-parameter split R-hat, bulk ESS and tail ESS of draws (chain, draw, P), each (P,):
    rank-normalised (Vehtari et al. 2021), computed for all parameters at once (arviz-stats'
    functions loop over parameters in Python: 7 s for 820 parameters × 4 × 500 draws; tests
    check that the numbers are theirs). Tail ESS: the smaller ESS of the 5% and 95% quantile
    indicators. R-hat is NaN with one chain (split R-hat of one chain cannot see a chain stuck
    in a mode); everything is NaN with fewer than 4 draws or non-finite draws.
    """
    draws = np.asarray(draws, dtype=np.float64)
    num_chains, num_draws = draws.shape[:2]
    shape = draws.shape[2:]
    nan = np.full(shape, np.nan)
    if num_draws < 4:
        return nan, nan.copy(), nan.copy()
    x = np.moveaxis(draws.reshape(num_chains, num_draws, -1), -1, 0)  # (P, C, D)
    finite = np.isfinite(x).all(axis=(1, 2))
    x = np.where(finite[:, None, None], x, 0.0)
    rhat = split_rhat(x) if num_chains >= 2 else np.full(x.shape[0], np.nan)
    split = _split(x)
    ess_bulk = _ess(_z_scale(split))
    flat = x.reshape(x.shape[0], -1)
    ess_tail = np.minimum(*(_ess(_split(x <= np.quantile(flat, prob, axis=1)[:, None, None])
                                 .astype(float)) for prob in (0.05, 0.95)))
    out = [np.where(finite, v, np.nan).reshape(shape) for v in (rhat, ess_bulk, ess_tail)]
    return tuple(out)


def num_divergent(tree):
    """Number of divergent transitions in ``sample_stats/diverging`` (0 when absent)."""
    try:
        stats = tree["sample_stats"]
    except (KeyError, TypeError, AttributeError):
        return 0
    if "diverging" not in stats:
        return 0
    return int(np.asarray(stats["diverging"].values).sum())


def rule_failures(rhat, ess_bulk, ess_tail=None, *, max_rhat=MAX_RHAT, min_ess=MIN_ESS):
    """Where the rule fails, per parameter: ``(rhat_over, ess_under)`` bool arrays of the
    statistics' shape — R-hat > ``max_rhat``; bulk (or tail) ESS < ``min_ess``. A NaN
    statistic fails nothing here (:func:`verdict` reports too few draws or one chain)."""
    rhat, ess_bulk = np.asarray(rhat, dtype=float), np.asarray(ess_bulk, dtype=float)
    ess_under = ess_bulk < min_ess
    if ess_tail is not None:
        ess_under = ess_under | (np.asarray(ess_tail, dtype=float) < min_ess)
    return rhat > max_rhat, ess_under


def verdict(rhat, ess_bulk, ess_tail, divergent=0, *, num_chains=None, num_transitions=None,
            max_rhat=MAX_RHAT, min_ess=MIN_ESS):
    """The mixing rule applied to per-parameter statistics (arrays of the same shape).

    ``num_chains`` < 2 is a reason in itself (R-hat cannot detect non-convergence);
    ``num_transitions`` only shapes the divergence message.
    """
    rhat, ess_bulk, ess_tail = (np.ravel(np.asarray(v, dtype=float))
                                for v in (rhat, ess_bulk, ess_tail))

    def extreme(values, fn):
        return float(fn(values)) if np.any(np.isfinite(values)) else float("nan")

    worst_rhat, low_bulk, low_tail = (extreme(rhat, np.nanmax), extreme(ess_bulk, np.nanmin),
                                      extreme(ess_tail, np.nanmin))
    reasons = []
    if num_chains is not None and num_chains < 2:
        reasons.append("only one chain: R-hat cannot detect non-convergence")
    elif not np.isfinite(worst_rhat):
        reasons.append("too few draws to compute R-hat")
    rhat_over, ess_under = rule_failures(rhat, ess_bulk, ess_tail, max_rhat=max_rhat,
                                         min_ess=min_ess)
    num_bad_rhat = int(np.sum(rhat_over))
    if num_bad_rhat:
        reasons.append(f"{num_bad_rhat} of {rhat.size} parameters have R-hat > {max_rhat} "
                       f"(max {worst_rhat:.3f})")
    num_low_ess = int(np.sum(ess_under))
    if num_low_ess:
        reasons.append(f"{num_low_ess} of {rhat.size} parameters have bulk or tail ESS < "
                       f"{min_ess} (min bulk {low_bulk:.0f}, min tail {low_tail:.0f})")
    divergent = int(divergent or 0)
    if divergent:
        of = f" of {num_transitions}" if num_transitions else ""
        reasons.append(f"{divergent}{of} transitions diverged")
    return MixingVerdict(max_rhat=worst_rhat, min_ess_bulk=low_bulk, min_ess_tail=low_tail,
                         num_divergent=divergent, converged=not reasons, reasons=tuple(reasons),
                         num_rhat_over=num_bad_rhat, num_ess_under=num_low_ess)


def integrated_autocorrelation_time(samples, *, window_factor=5.0):
    r"""Integrated autocorrelation time of ``samples`` (draws, chains, ...), in draws.

    .. math:: \tau = 1 + 2 \sum_{t=1}^{M} \hat\rho_t,
       \qquad \hat\rho_t = 1 - (W - \bar\gamma_t)/\widehat{\mathrm{var}}^+,

    the multi-chain autocorrelation of Vehtari et al. (2021) — W the mean within-chain
    variance, :math:`\bar\gamma_t` the chain-averaged autocovariance (FFT),
    :math:`\widehat{\mathrm{var}}^+` including the between-chain variance, so chains stuck in
    different modes give a large τ — summed up to Sokal's automatic window: the smallest M with
    M ≥ ``window_factor`` · τ(M) (Sokal 1997; as in emcee). When no such window exists within
    the run (a chain that never decorrelates) τ is the full sum, at least the run length. A
    quantity that never fluctuates gives τ = 1; ESS = draws × chains / τ. Returns an array of
    shape ``samples.shape[2:]``.
    """
    x = np.asarray(samples, dtype=np.float64)
    num_draws, num_chains = x.shape[:2]
    x = np.moveaxis(x, (0, 1), (-1, -2))  # (..., chains, draws)
    if num_draws < 4:
        return np.full(x.shape[:-2], np.inf)
    centred = x - x.mean(axis=-1, keepdims=True)
    size = 2 ** int(np.ceil(np.log2(2 * num_draws)))
    spectrum = np.fft.rfft(centred, n=size, axis=-1)
    autocov = np.fft.irfft(spectrum * np.conj(spectrum), n=size, axis=-1)[..., :num_draws]
    autocov /= num_draws  # biased estimator, γ_t
    within = (autocov[..., 0] * num_draws / (num_draws - 1)).mean(axis=-1)  # W
    between = x.mean(axis=-1).var(axis=-1, ddof=1) if num_chains > 1 else 0.0 * within
    var_plus = (num_draws - 1) / num_draws * within + between
    with np.errstate(divide="ignore", invalid="ignore"):
        rho = 1.0 - (within[..., None] - autocov.mean(axis=-2)) / var_plus[..., None]
    rho = np.where(var_plus[..., None] > 0, rho, 0.0)
    rho[..., 0] = 1.0
    cumulative = 2.0 * np.cumsum(rho, axis=-1) - 1.0  # τ(M) for M = 0, 1, ...
    window = np.arange(num_draws) >= window_factor * cumulative
    found = window.any(axis=-1)
    m = np.where(found, np.argmax(window, axis=-1), num_draws - 1)
    tau = np.take_along_axis(cumulative, m[..., None], axis=-1)[..., 0]
    tau = np.where(found, tau, np.maximum(tau, num_draws))
    return np.maximum(tau, 1.0 / np.log10(max(num_draws * num_chains, 10)))
