"""Tests of bayes_ising.core.ising: closed forms, brute force, finite differences, contracts."""

import itertools
import time
from types import SimpleNamespace

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bayes_ising.core import ising
from bayes_ising.errors import BayesIsingError, Float64Error, TooManyNeuronsError


def random_model(seed, num_neurons, field_scale=0.5, coupling_scale=0.5):
    rng = np.random.default_rng(seed)
    h = rng.normal(0.0, field_scale, num_neurons)
    upper = np.triu(rng.normal(0.0, coupling_scale, (num_neurons, num_neurons)), 1)
    return h, upper + upper.T


def brute_force(h, J):
    """Every quantity by a plain loop over itertools.product: independent of ising.py."""
    num_neurons = len(h)
    states = np.array(list(itertools.product([-1.0, 1.0], repeat=num_neurons)))
    energies = np.array(
        [
            -h @ s - sum(J[i, j] * s[i] * s[j] for i in range(num_neurons)
                         for j in range(i + 1, num_neurons))
            for s in states
        ]
    )
    weights = np.exp(-energies)
    log_z = np.log(weights.sum())
    prob = weights / weights.sum()
    i, j = np.triu_indices(num_neurons, 1)
    features = np.concatenate([states, states[:, i] * states[:, j]], axis=1)
    mean_features = prob @ features
    centred = features - mean_features
    return SimpleNamespace(
        states=states,
        energies=energies,
        log_z=log_z,
        prob=prob,
        m=prob @ states,
        Q=states.T @ (prob[:, None] * states),
        synchrony=np.bincount((states > 0).sum(1), weights=prob, minlength=num_neurons + 1),
        entropy=-prob @ np.log(prob),
        fisher=centred.T @ (prob[:, None] * centred),
    )


# ------------------------------------------------------------------ packing and conventions


def test_pair_order_is_triu_and_pack_roundtrip():
    i, j = ising.pair_indices(4)
    assert list(zip(i.tolist(), j.tolist(), strict=True)) == [
        (0, 1), (0, 2), (0, 3), (1, 2), (1, 3), (2, 3)
    ]
    assert ising.num_pairs(4) == 6
    h, J = random_model(0, 5)
    theta = ising.pack(h, J)
    assert theta.shape == (5 + 10,)
    np.testing.assert_array_equal(theta[5:], J[np.triu_indices(5, 1)])
    h2, J2 = ising.unpack(theta, 5)
    np.testing.assert_array_equal(h2, h)
    np.testing.assert_array_equal(J2, J)
    np.testing.assert_array_equal(np.diag(J2), 0.0)
    batch = jnp.stack([theta, 2 * theta])
    hb, Jb = ising.unpack(batch, 5)
    assert hb.shape == (2, 5) and Jb.shape == (2, 5, 5)
    np.testing.assert_allclose(Jb[1], 2 * J)
    with pytest.raises(ValueError, match="expected N"):
        ising.unpack(theta[:-1], 5)


def test_all_states_order():
    states = ising.all_states(3)
    assert states.dtype == np.int8 and states.shape == (8, 3)
    expected = np.array(list(itertools.product([-1, 1], repeat=3)), dtype=np.int8)
    np.testing.assert_array_equal(states, expected)


def test_energy_each_pair_once():
    h = np.array([0.3, -0.2, 0.1])
    J = np.array([[0.0, 0.5, -1.0], [0.5, 0.0, 0.25], [-1.0, 0.25, 0.0]])
    s = np.array([1, -1, 1], dtype=np.int8)
    by_hand = -(0.3 + 0.2 + 0.1) - (0.5 * (1 * -1) + -1.0 * (1 * 1) + 0.25 * (-1 * 1))
    assert float(ising.energy(s, h, J)) == pytest.approx(by_hand, abs=1e-14)
    batch = np.stack([s, -s])
    assert ising.energy(batch, h, J).shape == (2,)


# ------------------------------------------------------------------ N = 2 closed forms


def test_two_neuron_closed_forms():
    h1, h2, j12 = 0.3, -0.7, 0.9
    h = np.array([h1, h2])
    J = np.array([[0.0, j12], [j12, 0.0]])
    # Z = Σ_{s1,s2} exp(h1 s1 + h2 s2 + J s1 s2) = 2e^J cosh(h1+h2) + 2e^{-J} cosh(h1−h2)
    a, b = np.exp(j12) * np.cosh(h1 + h2), np.exp(-j12) * np.cosh(h1 - h2)
    z = 2 * a + 2 * b
    m1 = (2 * np.exp(j12) * np.sinh(h1 + h2) + 2 * np.exp(-j12) * np.sinh(h1 - h2)) / z
    m2 = (2 * np.exp(j12) * np.sinh(h1 + h2) - 2 * np.exp(-j12) * np.sinh(h1 - h2)) / z
    q12 = (2 * a - 2 * b) / z
    assert float(ising.log_partition(h, J)) == pytest.approx(np.log(z), abs=1e-13)
    m, Q = ising.exact_moments(h, J)
    np.testing.assert_allclose(m, [m1, m2], atol=1e-13)
    np.testing.assert_allclose(Q, [[1.0, q12], [q12, 1.0]], atol=1e-13)
    # P(K): K=0 is (−,−): exp(−h1−h2+J); K=2 is (+,+): exp(h1+h2+J)
    pk = ising.exact_synchrony_distribution(h, J)
    expected = np.array(
        [np.exp(-h1 - h2 + j12), np.exp(h1 - h2 - j12) + np.exp(-h1 + h2 - j12),
         np.exp(h1 + h2 + j12)]
    ) / z
    np.testing.assert_allclose(pk, expected, atol=1e-13)
    entropy = np.log(z) - h1 * m1 - h2 * m2 - j12 * q12
    assert float(ising.exact_entropy(h, J)) == pytest.approx(entropy, abs=1e-13)
    # Fisher information for J = 0, h: independent spins, Var s_i = 1 − tanh² h_i.
    F = ising.fisher_information(h, np.zeros((2, 2)))
    t1, t2 = np.tanh(h1), np.tanh(h2)
    expected_f = np.array(
        [
            [1 - t1**2, 0.0, t2 * (1 - t1**2)],
            [0.0, 1 - t2**2, t1 * (1 - t2**2)],
            [t2 * (1 - t1**2), t1 * (1 - t2**2), 1 - (t1 * t2) ** 2],
        ]
    )
    np.testing.assert_allclose(F, expected_f, atol=1e-13)


# ------------------------------------------------------------------ enumeration vs brute force


@pytest.mark.parametrize("num_neurons", [1, 3, 6])
def test_enumeration_matches_brute_force(num_neurons):
    h, J = random_model(num_neurons, num_neurons, 0.6, 0.6)
    ref = brute_force(h, J)
    assert float(ising.log_partition(h, J)) == pytest.approx(ref.log_z, abs=1e-12)
    m, Q = ising.exact_moments(h, J)
    np.testing.assert_allclose(m, ref.m, atol=1e-12)
    np.testing.assert_allclose(Q, ref.Q, atol=1e-12)
    np.testing.assert_allclose(ising.exact_synchrony_distribution(h, J), ref.synchrony,
                               atol=1e-12)
    assert float(ising.exact_entropy(h, J)) == pytest.approx(ref.entropy, abs=1e-12)
    np.testing.assert_allclose(ising.energy(ref.states, h, J), ref.energies, atol=1e-12)
    np.testing.assert_allclose(np.exp(ising.log_probability(ref.states, h, J)), ref.prob,
                               atol=1e-12)
    np.testing.assert_allclose(ising.fisher_information(h, J), ref.fisher, atol=1e-12)
    temperatures = np.array([0.3, 1.0, 2.5])
    mean_e, var_e = ising.exact_energy_moments(h, J, temperatures)
    for k, temperature in enumerate(temperatures):
        w = np.exp(-(ref.energies - ref.energies.min()) / temperature)
        w /= w.sum()
        assert float(mean_e[k]) == pytest.approx(w @ ref.energies, abs=1e-11)
        assert float(var_e[k]) == pytest.approx(w @ (ref.energies - w @ ref.energies) ** 2,
                                                abs=1e-11)


def test_exact_log_likelihood_matches_sum_of_log_probabilities():
    h, J = random_model(3, 5)
    rng = np.random.default_rng(4)
    spins = rng.choice(np.array([-1, 1], dtype=np.int8), size=(200, 5))
    moments = SimpleNamespace(
        num_bins=200, m=spins.mean(0), Q=(spins.T.astype(float) @ spins) / 200
    )
    expected = float(jnp.sum(ising.log_probability(spins, h, J)))
    assert float(ising.exact_log_likelihood(h, J, moments)) == pytest.approx(expected, rel=1e-12)
    try:
        from bayes_ising.core import stats
    except ImportError:
        return
    if hasattr(stats, "moments"):
        real = stats.moments(spins)
        assert float(ising.exact_log_likelihood(h, J, real)) == pytest.approx(expected, rel=1e-10)


def test_low_temperature_energy_moments_are_finite():
    h, J = random_model(5, 8, 1.0, 1.0)
    mean_e, var_e = ising.exact_energy_moments(h, J, np.array([0.01, 0.05]))
    ground = float(jnp.min(ising.energy(ising.all_states(8), h, J)))
    assert np.all(np.isfinite(mean_e)) and np.all(var_e >= 0)
    assert float(mean_e[0]) == pytest.approx(ground, abs=1e-6)


# ------------------------------------------------------------------ split-half vs naive


def naive_log_partition(h, J):
    states = jnp.asarray(ising.all_states(len(h)), jnp.float64)
    i, j = np.triu_indices(len(h), 1)
    features = jnp.concatenate([states, states[:, i] * states[:, j]], axis=1)
    return jax.scipy.special.logsumexp(features @ ising.pack(h, J))


@pytest.mark.parametrize("num_neurons", [7, 12])
def test_split_half_matches_naive(num_neurons):
    h, J = random_model(10 + num_neurons, num_neurons, 0.4, 0.3)
    assert float(ising.log_partition(h, J)) == pytest.approx(
        float(naive_log_partition(h, J)), abs=1e-11
    )


def test_split_half_speed_n15(capsys):
    """Report one value+grad at N = 15 against the 2^N × N(N+1)/2 feature-matrix way."""
    num_neurons = 15
    h, J = random_model(1, num_neurons, 0.3, 0.1)
    theta = ising.pack(h, J)
    split = jax.jit(jax.value_and_grad(lambda t: ising.log_partition(*ising.unpack(t, 15))))
    naive = jax.jit(jax.value_and_grad(lambda t: naive_log_partition(*ising.unpack(t, 15))))
    timings = {}
    for name, fn in (("split-half", split), ("feature-matrix", naive)):
        value, grad = fn(theta)
        grad.block_until_ready()
        start = time.perf_counter()
        for _ in range(20):
            fn(theta)[1].block_until_ready()
        timings[name] = (time.perf_counter() - start) / 20
    np.testing.assert_allclose(split(theta)[1], naive(theta)[1], atol=1e-12)
    with capsys.disabled():
        print(f"\nN=15 value+grad: split-half {1e3 * timings['split-half']:.2f} ms, "
              f"feature matrix {1e3 * timings['feature-matrix']:.2f} ms")


# ------------------------------------------------------------------ gradients


def central_difference(fn, x, step=1e-5):
    fn = jax.jit(fn)
    x = np.asarray(x, float)
    grad = np.zeros_like(x)
    for k in range(x.size):
        e = np.zeros_like(x)
        e[k] = step
        grad[k] = (float(fn(x + e)) - float(fn(x - e))) / (2 * step)
    return grad


def test_log_partition_gradient_is_moments_and_matches_finite_differences():
    num_neurons = 5
    h, J = random_model(7, num_neurons)
    theta = np.asarray(ising.pack(h, J))
    fn = lambda t: ising.log_partition(*ising.unpack(t, num_neurons))
    grad = np.asarray(jax.grad(fn)(jnp.asarray(theta)))
    np.testing.assert_allclose(grad, central_difference(fn, theta), atol=1e-8)
    m, Q = ising.exact_moments(h, J)
    np.testing.assert_allclose(grad, ising.pack(m, Q), atol=1e-12)


def test_fisher_is_finite_difference_hessian():
    num_neurons = 4
    h, J = random_model(8, num_neurons)
    theta = np.asarray(ising.pack(h, J))
    grad_fn = jax.jit(jax.grad(lambda t: ising.log_partition(*ising.unpack(t, num_neurons))))
    step = 1e-5
    hessian = np.zeros((theta.size, theta.size))
    for k in range(theta.size):
        e = np.zeros_like(theta)
        e[k] = step
        hessian[:, k] = (np.asarray(grad_fn(theta + e)) - np.asarray(grad_fn(theta - e))) / (
            2 * step
        )
    np.testing.assert_allclose(ising.fisher_information(h, J), hessian, atol=1e-8)
    # and the autodiff Hessian
    np.testing.assert_allclose(ising.fisher_information(h, J), jax.hessian(
        lambda t: ising.log_partition(*ising.unpack(t, num_neurons)))(theta), atol=1e-12)


def test_fisher_chunked_path(monkeypatch):
    """Force several chunks and compare with the single-chunk result."""
    h, J = random_model(9, 5)
    whole = ising.fisher_information(h, J)
    monkeypatch.setattr(ising, "_FISHER_CHUNK_BYTES", 8 * 15 * 8)  # 8 rows per chunk
    chunked = ising.fisher_information(h + 0.0, J)
    np.testing.assert_allclose(chunked, whole, atol=1e-13)


# ------------------------------------------------------------------ pseudolikelihood


def pseudolikelihood_loop(h, J, patterns, counts):
    total = 0.0
    for pattern, count in zip(patterns, counts, strict=True):
        for i in range(len(h)):
            field = h[i] + sum(J[i, j] * pattern[j] for j in range(len(h)) if j != i)
            # P(s_i | rest) = exp(s_i H_i) / (exp(H_i) + exp(−H_i))
            total += count * (pattern[i] * field - np.log(np.exp(field) + np.exp(-field)))
    return total


def test_pseudolikelihood_matches_loop_and_gradient():
    num_neurons = 6
    h, J = random_model(11, num_neurons)
    rng = np.random.default_rng(12)
    spins = rng.choice(np.array([-1, 1], dtype=np.int8), size=(300, num_neurons), p=[0.7, 0.3])
    patterns, counts = np.unique(spins, axis=0, return_counts=True)
    value = float(ising.log_pseudolikelihood(h, J, patterns, counts))
    assert value == pytest.approx(pseudolikelihood_loop(h, J, patterns, counts), rel=1e-12)
    # unique patterns with counts == all bins with count one
    assert float(ising.log_pseudolikelihood(h, J, spins)) == pytest.approx(value, rel=1e-12)
    theta = np.asarray(ising.pack(h, J))
    fn = lambda t: ising.log_pseudolikelihood(*ising.unpack(t, num_neurons), patterns, counts)
    analytic = np.asarray(ising.log_pseudolikelihood_grad(h, J, patterns, counts))
    np.testing.assert_allclose(analytic, np.asarray(jax.grad(fn)(jnp.asarray(theta))),
                               rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(analytic, central_difference(fn, theta), rtol=1e-6, atol=1e-6)


def test_pseudolikelihood_equals_likelihood_for_independent_model():
    # With J = 0 the conditionals are the marginals, so PL = L exactly.
    h = np.array([0.2, -0.5, 1.0])
    patterns = ising.all_states(3)
    counts = np.arange(1, 9)
    pl = float(ising.log_pseudolikelihood(h, np.zeros((3, 3)), patterns, counts))
    ll = float(counts @ ising.log_probability(patterns, h, np.zeros((3, 3))))
    assert pl == pytest.approx(ll, rel=1e-12)


# ------------------------------------------------------------------ errors and dtypes


def test_too_many_neurons_error_names_limit_and_alternatives():
    n = ising.MAX_EXACT_NEURONS + 1
    with pytest.raises(TooManyNeuronsError) as info:
        ising.log_partition(np.zeros(n), np.zeros((n, n)))
    message = str(info.value)
    assert f"N = {n}" in message and str(ising.MAX_EXACT_NEURONS) in message
    assert "pseudolikelihood" in message and "Gibbs" in message
    assert isinstance(info.value, BayesIsingError)
    for fn in (ising.exact_moments, ising.exact_entropy, ising.fisher_information):
        with pytest.raises(TooManyNeuronsError):
            fn(np.zeros(n), np.zeros((n, n)))
    with pytest.raises(TooManyNeuronsError):
        ising.all_states(n)


def test_float64_error_when_x64_off():
    h, J = random_model(0, 3)
    jax.config.update("jax_enable_x64", False)
    try:
        with pytest.raises(Float64Error, match="enable_x64"):
            ising.log_partition(h, J)
        with pytest.raises(Float64Error):
            ising.exact_moments(h, J)
        # pseudolikelihood works in float32
        assert ising.log_pseudolikelihood(h, J, ising.all_states(3)).dtype == jnp.float32
    finally:
        jax.config.update("jax_enable_x64", True)


def test_float64_survives_jit():
    h, J = random_model(0, 4)
    h, J = jnp.asarray(h), jnp.asarray(J)
    funcs = [
        ising.log_partition,
        lambda h, J: ising.exact_moments(h, J)[1],
        ising.exact_entropy,
        ising.exact_synchrony_distribution,
        lambda h, J: ising.log_pseudolikelihood(h, J, ising.all_states(4)),
        lambda h, J: ising.exact_energy_moments(h, J, jnp.array([1.0, 2.0]))[1],
        ising.fisher_information,
    ]
    for fn in funcs:
        eager = fn(h, J)
        jitted = jax.jit(fn)(h, J)
        assert eager.dtype == jnp.float64 and jitted.dtype == jnp.float64
        np.testing.assert_allclose(jitted, eager, rtol=1e-13, atol=1e-14)


def test_largest_exact_size_runs():
    n = ising.MAX_EXACT_NEURONS
    # J = 0: log Z = Σ log 2cosh h_i
    h = np.linspace(-1, 1, n)
    assert float(ising.log_partition(h, np.zeros((n, n)))) == pytest.approx(
        np.sum(np.log(2 * np.cosh(h))), rel=1e-13
    )
