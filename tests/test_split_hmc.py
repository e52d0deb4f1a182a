"""Split HMC (bayes_ising.fit.split_hmc) against targets with known moments."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.special import digamma

from bayes_ising.fit import split_hmc

jax.config.update("jax_enable_x64", True)

NUM_CHAINS, NUM_WARMUP, NUM_DRAWS = 4, 200, 1500
#: per-coordinate variances of the Gaussian block: the Laplace approximation (unit) is wrong
VARIANCES = np.array([0.5, 2.0])


def _potential(z):
    """Three log-gamma(1) coordinates, U = eᶻ − z (Laplace at 0 is N(0, 1); mean ψ(1),
    variance π²/6, skewed), and two Gaussians of variance 0.5 and 2."""
    skewed, gauss = z[:3], z[3:]
    return jnp.sum(jnp.exp(skewed) - skewed) + 0.5 * jnp.sum(gauss**2 / VARIANCES)


def _run(seed, target_accept=0.8, trajectory_length=math.pi / 2):
    init_kernel, sample_kernel = split_hmc.split_hmc(lambda: _potential)

    def chain(key):
        key_init, key_run = jax.random.split(key)
        state = init_kernel(jnp.zeros(5), NUM_WARMUP, step_size=0.5,
                            target_accept_prob=target_accept,
                            trajectory_length=trajectory_length, rng_key=key_run)

        def body(state, _):
            state = sample_kernel(state)
            return state, (state.z, state.num_steps, state.accept_prob, state.diverging)

        _, out = jax.lax.scan(body, state, None, length=NUM_WARMUP + NUM_DRAWS)
        return jax.tree.map(lambda x: x[NUM_WARMUP:], out)

    keys = jax.random.split(jax.random.PRNGKey(seed), NUM_CHAINS)
    return [np.asarray(x) for x in jax.jit(jax.vmap(chain))(keys)]


def test_split_hmc_samples_a_non_gaussian_target_with_a_wrong_laplace_metric():
    """Means within 4 Monte Carlo errors and variances within 12 % of the closed forms, for
    coordinates whose Laplace approximation is wrong in shape (log-gamma) or scale."""
    from bayes_ising.core import convergence

    z, steps, accept, diverging = _run(0)
    flat = z.reshape(-1, 5)
    mean = np.r_[np.full(3, digamma(1.0)), 0.0, 0.0]
    variance = np.r_[np.full(3, math.pi**2 / 6), VARIANCES]
    _, ess, _ = convergence.draw_statistics(z)
    error = np.sqrt(variance / ess)
    np.testing.assert_array_less(np.abs(flat.mean(axis=0) - mean), 4 * error)
    np.testing.assert_allclose(flat.var(axis=0), variance, rtol=0.12)
    assert not diverging.any()
    assert 0.65 < accept.mean() < 0.95  # dual averaging reached its target (0.8)


def test_split_hmc_takes_one_step_per_quarter_period_on_its_own_gaussian():
    """On the unit Gaussian (U₁ = 0) the split integrator is exact: every proposal is
    accepted and ε grows to the whole trajectory (one gradient per draw)."""
    init_kernel, sample_kernel = split_hmc.split_hmc(lambda: lambda z: 0.5 * jnp.sum(z**2))
    state = init_kernel(jnp.ones(50), 50, step_size=0.2, trajectory_length=math.pi / 2,
                        rng_key=jax.random.PRNGKey(1))
    state, (steps, accept) = jax.lax.scan(
        lambda s, _: (lambda n: (n, (n.num_steps, n.accept_prob)))(sample_kernel(s)),
        state, None, length=100)
    np.testing.assert_allclose(np.asarray(accept), 1.0, atol=1e-9)
    assert int(steps[-1]) == 1
    assert float(state.adapt_state.step_size) == pytest.approx(math.pi / 2)
