"""The pseudolikelihood module's fast paths against each other and the reference."""

import jax
import jax.numpy as jnp
import numpy as np
from pl_reference import log_pseudolikelihood as reference

from bayes_ising.core import ising
from bayes_ising.core import pseudolikelihood as pl


def _data(seed, num_neurons, num_bins, p_active=0.3):
    rng = np.random.default_rng(seed)
    spins = rng.choice(np.array([-1, 1], np.int8), size=(num_bins, num_neurons),
                       p=[1 - p_active, p_active])
    patterns, counts = np.unique(spins, axis=0, return_counts=True)
    h = rng.normal(-0.5, 0.5, num_neurons)
    upper = np.triu(rng.normal(0.0, 0.3, (num_neurons, num_neurons)), 1)
    return patterns, counts, h, upper + upper.T


def _theta_reference(theta, patterns, counts, num_neurons):
    h, J = ising.unpack(theta, num_neurons)
    return reference(h, J, jnp.asarray(patterns, jnp.float64), counts)


def test_value_gradient_hessian_match_reference(num_neurons=15, num_bins=5000):
    """value_and_grad (one blocked sweep) and neg_hessian (closed form) equal the reference
    and its autodiff gradient and Hessian, float64 to 1e-10 (N = 15: several blocks)."""
    patterns, counts, h, J = _data(1, num_neurons, num_bins)
    data = pl.prepare(patterns, counts)
    theta = jnp.asarray(ising.pack(jnp.asarray(h), jnp.asarray(J)))
    fn = lambda t: _theta_reference(t, patterns, counts, num_neurons)  # noqa: E731
    value, grad = pl.value_and_grad(theta, data)
    np.testing.assert_allclose(float(value), float(fn(theta)), rtol=1e-12)
    np.testing.assert_allclose(np.asarray(grad), np.asarray(jax.grad(fn)(theta)),
                               rtol=1e-10, atol=1e-9)
    np.testing.assert_allclose(np.asarray(pl.neg_hessian(theta, data)),
                               -np.asarray(jax.hessian(fn)(theta)), rtol=1e-9, atol=1e-8)


def test_float32_sweep_and_custom_vjp_agree_with_float64():
    """log_pseudolikelihood (custom VJP) in float64 equals value_and_grad; its float32 sweep
    (accumulated in float64) agrees to ~1e-6 relative; ising's public functions go through it."""
    patterns, counts, h, J = _data(2, 12, 3000)
    data = pl.prepare(patterns, counts)
    theta = jnp.asarray(ising.pack(jnp.asarray(h), jnp.asarray(J)))

    def via_matrix(t, float32):
        hh, JJ = ising.unpack(t, 12)
        return pl.log_pseudolikelihood(hh, JJ, data, float32)

    value, grad = pl.value_and_grad(theta, data)
    for float32, rtol, atol in ((False, 1e-12, 1e-9), (True, 1e-6, 5e-3)):
        v, g = jax.value_and_grad(via_matrix)(theta, float32)
        assert v.dtype == jnp.float64
        np.testing.assert_allclose(float(v), float(value), rtol=rtol)
        np.testing.assert_allclose(np.asarray(g), np.asarray(grad), rtol=rtol, atol=atol)
    v32, g32 = pl.value_and_grad(theta, data, float32=True)
    np.testing.assert_allclose(float(v32), float(value), rtol=1e-6)
    np.testing.assert_allclose(np.asarray(g32), np.asarray(grad), atol=5e-3)
    np.testing.assert_allclose(float(ising.log_pseudolikelihood(h, J, patterns, counts)),
                               float(value), rtol=1e-12)
    np.testing.assert_allclose(np.asarray(ising.log_pseudolikelihood_grad(h, J, patterns,
                                                                          counts)),
                               np.asarray(grad), rtol=1e-12, atol=1e-10)


def test_vmapped_over_chains_equals_one_chain_at_a_time():
    """The sweep vmapped over 4 chains (the sampler's shape) gives each chain's own value and
    gradient."""
    patterns, counts, _, _ = _data(3, 10, 2000)
    data = pl.prepare(patterns, counts)
    thetas = jnp.asarray(np.random.default_rng(4).normal(0.0, 0.3, (4, 10 + 45)))
    values, grads = jax.vmap(pl.value_and_grad, in_axes=(0, None))(thetas, data)
    for k in range(4):
        v, g = pl.value_and_grad(thetas[k], data)
        np.testing.assert_allclose(float(values[k]), float(v), rtol=1e-13)
        np.testing.assert_allclose(np.asarray(grads[k]), np.asarray(g), rtol=1e-12, atol=1e-11)


def test_padding_size_classes_share_shapes():
    """Padding rows count zero; fits with nearby numbers of unique patterns (the same N in
    different states) share a shape when padded to the largest (``num_rows``); size classes
waste at most 1/16 + one block."""
    patterns, counts, h, J = _data(5, 30, 500)
    small = pl.prepare(patterns, counts)
    large = pl.prepare(patterns, counts, num_rows=5000)
    assert large.patterns.shape[0] >= 5000
    hh, JJ = jnp.asarray(h), jnp.asarray(J)
    np.testing.assert_allclose(float(pl.log_pseudolikelihood(hh, JJ, large)),
                               float(pl.log_pseudolikelihood(hh, JJ, small)), rtol=1e-13)
    assert pl.padded_size(44_272, 92, num_rows=49_964) == pl.padded_size(49_964, 92)
    for num in (300, 5_000, 44_272, 49_964, 120_000):
        size = pl.padded_size(num, 92)
        assert size >= num and size % min(size, pl.BLOCK) == 0
        assert size <= num * 17 / 16 + pl.BLOCK
    assert pl.padded_size(3, 5) == 32  # N <= 12: all 2^N states


def test_log_2cosh_is_stable_for_numpy_and_jax():
    x = np.array([-800.0, -3.0, 0.0, 1e-8, 2.5, 800.0])
    naive = np.log(2 * np.cosh(x[1:-1]))
    for value in (pl.log_2cosh(x), np.asarray(pl.log_2cosh(jnp.asarray(x)))):
        np.testing.assert_allclose(value[1:-1], naive, rtol=1e-14)
        np.testing.assert_allclose(value[[0, -1]], [800.0, 800.0], rtol=1e-15)
    assert isinstance(pl.log_2cosh(x), np.ndarray)
