r"""The adaptive-Metropolis walk (Haario, Saksman & Tamminen 2001) as state / step / chunks, and
the way a careful user runs it: several walks from overdispersed starts, in chunks, until the
draws carry the evidence the posterior carries (R-hat ≤ 1.01 and bulk/tail ESS ≥ 400 for every
parameter) or a stated budget is spent.

One step: propose :math:`x' \sim \mathcal N(x_t, C_t)` and accept with probability
:math:`\min(1, \pi(x')/\pi(x_t))`; :math:`C_t = C_0` for :math:`t < t_0`, afterwards
:math:`s_d\,(\mathrm{Cov}(x_0..x_t) + \varepsilon I)` with :math:`s_d = 2.38^2/d`, the history's
covariance updated recursively (Welford). The Cholesky factor is refreshed every
``adapt_every`` steps.

:func:`sample_walks` discards the first half of every walk (burn-in, as in Stan/ArviZ practice)
and keeps at most ``keep`` evenly thinned draws per walk, so its memory is
``num_chains · (keep + D) · D`` numbers whatever the length; thinning lowers ESS only little when
the autocorrelation time is long, and the ESS it reports is that of the kept draws.
"""

import time
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from bayes_ising.core.convergence import MAX_RHAT, MIN_ESS, draw_statistics, verdict
from bayes_ising.errors import BayesIsingError

__all__ = ["WalkState", "init_state", "run_steps", "overdispersed_starts", "sample_walks",
           "walk_diagnostics", "MAX_RHAT", "MIN_ESS"]



class WalkState(NamedTuple):
    """One walk: position (D,), logdensity (), history mean (D,) and scatter (D, D), count
    (states in the history), cholesky (D, D) of the proposal, num_accepted, step."""

    position: jax.Array
    logdensity: jax.Array
    mean: jax.Array
    scatter: jax.Array
    count: jax.Array
    cholesky: jax.Array
    num_accepted: jax.Array
    step: jax.Array


def init_state(logdensity_fn, initial, initial_cholesky):
    """The state at ``initial`` (D,) with proposal Cholesky factor ``initial_cholesky``."""
    dim = initial.shape[0]
    return WalkState(initial, logdensity_fn(initial), initial,
                     jnp.zeros((dim, dim), initial.dtype), jnp.asarray(1, jnp.int32),
                     initial_cholesky, jnp.asarray(0, jnp.int32), jnp.asarray(0, jnp.int32))


def _move(logdensity_fn, state, key):
    """Propose, accept/reject and update the history (Welford); the proposal is unchanged."""
    dim = state.position.shape[0]
    dtype = state.position.dtype
    key_proposal, key_accept = jax.random.split(key)
    proposal = state.position + state.cholesky @ jax.random.normal(key_proposal, (dim,), dtype)
    proposal_logdensity = logdensity_fn(proposal)
    accept = jnp.log(jax.random.uniform(key_accept, dtype=dtype)) < (
        proposal_logdensity - state.logdensity)
    accept = accept & jnp.isfinite(proposal_logdensity)
    position = jnp.where(accept, proposal, state.position)
    logdensity = jnp.where(accept, proposal_logdensity, state.logdensity)
    count = state.count + 1
    delta = position - state.mean
    mean = state.mean + delta / count
    scatter = state.scatter + jnp.outer(delta, position - mean)
    return WalkState(position, logdensity, mean, scatter, count, state.cholesky,
                     state.num_accepted + accept, state.step + 1)


def _refreshed(state, scale, epsilon):
    """Cholesky factor of s_d (Cov(history) + ε I)."""
    dim = state.position.shape[-1]
    covariance = scale * (state.scatter / (state.count - 1) + epsilon * jnp.eye(
        dim, dtype=state.position.dtype))
    return jnp.linalg.cholesky(covariance)


def _step(logdensity_fn, state, key, scale, epsilon, adaptation_start, adapt_every,
          walks=False):
    """One adaptive-Metropolis step (module docstring) of one walk, or of a batch of walks
    (``walks``: leading axis; they share the step counter, so the refresh is one ``cond``
    outside the ``vmap`` — a ``vmap`` of ``cond`` would factorise every step)."""
    if walks:
        keys = jax.random.split(key, state.position.shape[0])
        state = jax.vmap(_move, in_axes=(None, 0, 0))(logdensity_fn, state, keys)
        step = state.step[0]
        refresh = jax.vmap(_refreshed, in_axes=(0, None, None))
    else:
        state = _move(logdensity_fn, state, key)
        step = state.step
        refresh = _refreshed
    adapt = (step >= adaptation_start) & (step % adapt_every == 0)
    cholesky = jax.lax.cond(adapt, lambda st: refresh(st, scale, epsilon),
                            lambda st: st.cholesky, state)
    return state._replace(cholesky=cholesky)


def run_steps(logdensity_fn, state, rng_key, num_kept, thin=1, *, scale, epsilon=1e-8,
              adaptation_start=100, adapt_every=1, walks=False):
    """``num_kept · thin`` steps from ``state``; returns (state, every ``thin``-th position
    (num_kept, [walks,] D)). ``num_kept`` is static, ``thin`` may be traced (one compilation
    for every thinning); ``walks``: the state holds a batch of walks (leading axis)."""
    def kept(state, key):
        def inner(k, state):
            return _step(logdensity_fn, state, jax.random.fold_in(key, k), scale, epsilon,
                         adaptation_start, adapt_every, walks)

        state = jax.lax.fori_loop(0, thin, inner, state)
        return state, state.position

    return jax.lax.scan(kept, state, jax.random.split(rng_key, num_kept))


def overdispersed_starts(rng_key, centre, covariance, num_chains, overdispersion=2.0):
    """Starts (C, D): centre + overdispersion · L z, L L^T = covariance (the posterior
    covariance guess), z ~ N(0, I) — dispersed over twice the expected posterior sd."""
    chol = np.linalg.cholesky(np.asarray(covariance))
    z = np.asarray(jax.random.normal(rng_key, (num_chains, centre.shape[0])))
    return np.asarray(centre)[None, :] + overdispersion * z @ chol.T


def walk_diagnostics(draws):
    """max_rhat, min_ess_bulk, min_ess_tail over parameters of draws (C, K, D): the package's
    one R-hat and bulk/tail ESS (:func:`bayes_ising.core.convergence.draw_statistics`)."""
    rhat, bulk, tail = draw_statistics(draws)
    return {"max_rhat": float(np.nanmax(rhat)), "min_ess_bulk": float(np.nanmin(bulk)),
            "min_ess_tail": float(np.nanmin(tail)), "ess_bulk": bulk, "rhat": rhat}


def _chunk_program(logdensity_fn, scale, epsilon, adaptation_start, adapt_every):
    """jit of :func:`run_steps` over a batch of walks; returns (state, positions (C, K, D));
    ``num_kept`` static, ``thin`` traced."""
    def chunk(state, key, num_kept, thin):
        state, kept = run_steps(logdensity_fn, state, key, num_kept, thin, scale=scale,
                                epsilon=epsilon, adaptation_start=adaptation_start,
                                adapt_every=adapt_every, walks=True)
        return state, jnp.swapaxes(kept, 0, 1)

    return jax.jit(chunk, static_argnums=(2,))


def sample_walks(rng_key, logdensity_fn, centre, covariance, *, num_chains=4, walk_draws=None,
                 max_walk_draws=100_000, min_ess=MIN_ESS, max_rhat=MAX_RHAT, keep=1000,
                 overdispersion=2.0, max_seconds=None, epsilon=1e-8):
    """Several adaptive-Metropolis walks, run in chunks until the evidence is there.

    Parameters
    ----------
    logdensity_fn : (D,) → scalar log density (jit-traceable)
    centre : (D,) the MLE; covariance : (D, D) the posterior covariance guess (inverse
        curvature): starts are :func:`overdispersed_starts`, the initial proposal s_d·covariance
    walk_draws : a fixed number of draws per walk (after as many burn-in steps), or None:
        double the walks' length until max R-hat ≤ ``max_rhat`` and min bulk/tail ESS ≥
        ``min_ess`` (every parameter), at most ``max_walk_draws`` draws per walk
    keep : kept (thinned) draws per walk; max_seconds : wall-time budget of the adaptive length,
        checked after every chunk of ``keep`` kept draws: the walks stop when the next chunk,
        at the last one's pace, would end past it (None: none)

    Returns
    -------
    draws (C, K, D): the kept draws of the walks' second halves; info dict (JSON-able):
    converged, stopped ("evidence reached", "budget: ...", "fixed length"), num_chains,
    num_draws (per walk, after burn-in), num_steps, thin, max_rhat, min_ess_bulk,
    min_ess_tail, acceptance_rate (mean; per walk in acceptance_rate_per_walk),
    num_logdensity_evals, seconds, history.
    """
    started = time.perf_counter()
    centre = jnp.asarray(centre, jnp.float64)
    dim = int(centre.shape[0])
    scale = 2.38**2 / dim
    covariance = 0.5 * (np.asarray(covariance) + np.asarray(covariance).T)
    key_start, key_walk = jax.random.split(rng_key)
    starts = jnp.asarray(overdispersed_starts(key_start, centre, covariance, num_chains,
                                              overdispersion))
    chol = jnp.linalg.cholesky(jnp.asarray(scale * covariance))
    if not bool(jnp.all(jnp.isfinite(chol))):
        raise BayesIsingError("sample_walks: the covariance is not positive definite")
    state = jax.vmap(lambda x: init_state(logdensity_fn, x, chol))(starts)
    program = _chunk_program(logdensity_fn, scale, epsilon, max(100, 10 * dim),
                             max(1, dim // 10))
    target = None if walk_draws is None else 2 * int(walk_draws)
    limit = target or 2 * int(max_walk_draws)
    # every chunk keeps `keep` positions at the current thinning: 1 compilation; the buffer
    # is halved (every other draw) when it exceeds 2·keep, so each chunk doubles the walks
    thin, steps, buffer, history, diag = 1, 0, None, [], None
    stopped = "fixed length" if target else "budget: max_walk_draws"
    first_check = min(16 * dim, limit)
    keep = max(2, min(int(keep), limit // 2))
    step_seconds = 0.0  # the last chunk's wall time per step (the first includes compilation)
    while steps < limit:
        key_walk, key = jax.random.split(key_walk)
        step_thin = max(1, min(thin, -(-(limit - steps) // keep)))
        chunk_started = time.perf_counter()
        state, kept = program(state, key, keep, step_thin)
        steps += keep * step_thin
        buffer = (np.asarray(kept) if buffer is None
                  else np.concatenate([buffer, np.asarray(kept)], axis=1))
        step_seconds = (time.perf_counter() - chunk_started) / (keep * step_thin)
        if buffer.shape[1] >= 2 * keep:
            buffer, thin = buffer[:, 1::2], thin * 2
        # the budget is kept, not overrun: stop when the next chunk (keep · thin steps at the
        # last chunk's pace) would end past it
        spent = (target is None and max_seconds is not None
                 and time.perf_counter() - started + step_seconds * keep * thin > max_seconds)
        if steps < first_check and steps < limit and not spent:
            continue
        diag = walk_diagnostics(buffer[:, buffer.shape[1] // 2:])
        history.append({"num_draws": steps // 2, **{k: diag[k] for k in (
            "max_rhat", "min_ess_bulk", "min_ess_tail")}})
        if target is None and _converged(diag, max_rhat, min_ess):
            stopped = "evidence reached"
            break
        if spent:
            stopped = f"budget: max_seconds {max_seconds:g}"
            break
    draws = buffer[:, buffer.shape[1] // 2:]
    info = {"converged": _converged(diag, max_rhat, min_ess), "stopped": stopped,
            "num_chains": int(num_chains), "num_walks": int(num_chains),
            "num_draws": steps // 2, "num_steps": steps,
            "thin": int(thin), "num_kept": int(draws.shape[1]),
            **{k: diag[k] for k in ("max_rhat", "min_ess_bulk", "min_ess_tail")},
            "acceptance_rate": float(np.mean(np.asarray(state.num_accepted)) / max(steps, 1)),
            "acceptance_rate_per_walk": (np.asarray(state.num_accepted) / max(steps, 1)).tolist(),
            "num_logdensity_evals": int(num_chains * (steps + 1)),
            "seconds": time.perf_counter() - started, "history": history,
            "thresholds": {"max_rhat": max_rhat, "min_ess": min_ess},
            "overdispersion": overdispersion}
    return draws, info


def _converged(diag, max_rhat, min_ess):
    """The package's one rule (:func:`bayes_ising.core.convergence.verdict`) on the walks'
    worst statistics (no divergences in a random walk)."""
    return bool(diag is not None and verdict(
        diag["max_rhat"], diag["min_ess_bulk"], diag["min_ess_tail"], max_rhat=max_rhat,
        min_ess=min_ess).converged)
