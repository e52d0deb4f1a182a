"""Tests of bayes_ising.core.gibbs: exact answers by enumeration in units of the Monte
Carlo error."""

from types import SimpleNamespace

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bayes_ising.core import gibbs, ising

# Family-wise false-alarm probability of a block of z-tests whose MCSE comes from 32 groups.
FAMILY_ALPHA = 1e-3


def t_limit(num_tests, num_groups=32):
    """Bonferroni bound for |mean − exact| / MCSE when the MCSE has num_groups − 1 dof."""
    from scipy import stats

    return float(stats.t.ppf(1 - FAMILY_ALPHA / (2 * num_tests), num_groups - 1))


def random_model(seed, num_neurons, field_scale=0.3, coupling_scale=0.3):
    rng = np.random.default_rng(seed)
    h = rng.normal(-0.2, field_scale, num_neurons)
    upper = np.triu(rng.normal(0.0, coupling_scale, (num_neurons, num_neurons)), 1)
    return h, upper + upper.T


def ferromagnet(num_neurons, coupling):
    J = np.full((num_neurons, num_neurons), coupling)
    np.fill_diagonal(J, 0.0)
    return np.zeros(num_neurons), J


def group_mcse(values, num_groups=16):
    """Mean and MCSE from independent groups of chains (num_groups − 1 dof); values (draws,
    chains)."""
    groups = np.array_split(np.arange(values.shape[1]), num_groups)
    means = np.array([values[:, g].mean() for g in groups])
    return means.mean(), means.std(ddof=1) / np.sqrt(num_groups)


@pytest.fixture(scope="module")
def model10():
    return random_model(0, 10)


@pytest.fixture(scope="module")
def ladder_run(model10):
    """One run at several temperatures (around the heat-capacity peak) with moments."""
    h, J = model10
    temperatures = np.array([0.6, 1.0, 1.6, 2.5])
    result = gibbs.sample(
        jax.random.key(1), h, J, temperatures=temperatures, num_chains=256, num_sweeps=400,
        burn_in=100, record_moments=True,
    )
    return temperatures, result


def test_moments_and_energy_match_enumeration(model10, ladder_run):
    h, J = model10
    temperatures, result = ladder_run
    mean_e, var_e = ising.exact_energy_moments(h, J, temperatures)
    i, j = ising.pair_indices(10)
    groups = result.group_mean_spins.shape[0]
    assert groups == 32
    limit = t_limit(temperatures.size * (10 + 45))  # ≈ 5.6
    for k, temperature in enumerate(temperatures):
        m_exact, Q_exact = ising.exact_moments(h / temperature, J / temperature)
        m_mcse = result.group_mean_spins[:, k].std(0, ddof=1) / np.sqrt(groups)
        q_mcse = result.group_mean_products[:, k].std(0, ddof=1) / np.sqrt(groups)
        z_m = (result.mean_spins[k] - m_exact) / m_mcse
        z_q = (result.mean_products[k] - Q_exact)[i, j] / q_mcse[i, j]
        assert np.max(np.abs(z_m)) < limit, (temperature, z_m)
        assert np.max(np.abs(z_q)) < limit, (temperature, z_q)
        energies = result.energies[:, :, k]
        estimate, mcse = group_mcse(energies)
        assert abs(estimate - mean_e[k]) < t_limit(8, 16) * mcse
        # Var(E) (heat capacity · T²): variance of each group of chains around the exact mean
        squares = (energies - float(mean_e[k])) ** 2
        estimate, mcse = group_mcse(squares)
        assert abs(estimate - var_e[k]) < t_limit(8, 16) * mcse, (temperature, estimate, mcse)
    # At T = 0.6, τ ≈ 6 sweeps: with 400 sweeps split R-hat ≈ √(1 + (τ − 1)/200) ≈ 1.013 even
    # for converged chains, so the bound here is 1.03 rather than the default 1.01.
    report = gibbs.check_convergence(result, max_rhat=1.03, warn=False)
    assert report["ok"], report["messages"]
    assert all(0.5 <= t < 15.0 for t in report["autocorrelation_time_sweeps"])
    assert np.all(np.diff(result.flip_rate) > 0)  # hotter chains flip more


@pytest.mark.parametrize(
    "scan_order, rng",
    [("random", "hash"), pytest.param("systematic", "threefry", marks=pytest.mark.slow)],
)
def test_sample_moments_mcse_and_random_scan(model10, scan_order, rng):
    h, J = model10
    m_exact, Q_exact = ising.exact_moments(h, J)
    if rng == "hash":
        m, Q, info = gibbs.sample_moments(
            jax.random.key(2), h, J, num_chains=128, num_sweeps=200, burn_in=50,
            scan_order=scan_order,
        )
    else:
        m, Q, info = _threefry_moments(h, J)
    assert m.shape == (10,) and Q.shape == (10, 10)
    np.testing.assert_array_equal(np.diag(Q), 1.0)
    assert info.num_groups == 32 and info.num_samples == 128 * 200
    assert np.max(np.abs((m - m_exact) / info.m_mcse)) < t_limit(55)
    i, j = ising.pair_indices(10)
    assert np.max(np.abs((Q - Q_exact)[i, j] / info.Q_mcse[i, j])) < t_limit(55)
    # MCSE of order sqrt(τ Var / n): neither zero nor huge
    assert 1e-3 < np.median(info.m_mcse) < 2e-2


def _threefry_moments(h, J):
    result = gibbs.sample(
        jax.random.key(3), h, J, num_chains=128, num_sweeps=200, burn_in=50,
        record_moments=True, rng="threefry",
    )
    groups = result.group_mean_spins.shape[0]
    Q = result.mean_products[0].copy()
    np.fill_diagonal(Q, 1.0)
    q_mcse = result.group_mean_products[:, 0].std(0, ddof=1) / np.sqrt(groups)
    return result.mean_spins[0], Q, SimpleNamespace(
        m_mcse=result.group_mean_spins[:, 0].std(0, ddof=1) / np.sqrt(groups),
        Q_mcse=q_mcse, num_groups=groups, num_samples=128 * 200,
    )


def test_float32_changes_nothing(model10):
    """Same key: float32 and float64 runs follow the same trajectories (ties aside)."""
    h, J = model10
    runs = {
        dtype: gibbs.sample(
            jax.random.key(4), h, J, temperatures=(1.0, 2.0), num_chains=64, num_sweeps=150,
            burn_in=0, dtype=dtype, record_spins=True,
        )
        for dtype in (jnp.float32, jnp.float64)
    }
    same = np.all(runs[jnp.float32].spins == runs[jnp.float64].spins, axis=(0, 2, 3))
    assert same.mean() >= 0.95  # chains whose whole trajectory is identical
    both = same[None, :, None] & np.ones_like(runs[jnp.float32].energies, bool)
    np.testing.assert_allclose(
        runs[jnp.float32].energies[both], runs[jnp.float64].energies[both], atol=1e-4
    )
    assert runs[jnp.float32].energies.dtype == np.float64
    # fields stay exact (refresh every _REFRESH_INTERVAL sweeps, float32 rounding otherwise)
    state = runs[jnp.float32].final_state
    spins = np.asarray(state.spins, float)
    np.testing.assert_allclose(state.fields, h + spins @ J, atol=1e-5)
    np.testing.assert_allclose(state.energy, ising.energy(spins, h, J), atol=1e-5)


def test_step_contract_and_jit(model10):
    h, J = model10
    temperatures = jnp.array([1.0, 1.5, 2.0])
    state = gibbs.init(jax.random.key(0), h, J, temperatures, num_chains=5)
    assert state.spins.shape == (5, 3, 10) and state.fields.shape == (5, 3, 10)
    assert state.energy.shape == (5, 3) and state.energy.dtype == jnp.float64
    kernel = lambda key, state: gibbs.step(key, state, h, J, temperatures, sweep_index=1,
                                           replica_exchange=True)
    eager_state, eager_info = kernel(jax.random.key(9), state)
    jit_state, jit_info = jax.jit(kernel)(jax.random.key(9), state)
    for a, b in zip(eager_state, jit_state, strict=True):
        np.testing.assert_allclose(a, b, atol=1e-6)
    np.testing.assert_array_equal(eager_info.num_flips, jit_info.num_flips)
    assert eager_info.num_flips.shape == (5, 3)
    np.testing.assert_array_equal(eager_info.swap_attempted, [False, True])  # odd sweep
    spins = np.asarray(eager_state.spins, float)
    assert set(np.unique(spins)) <= {-1.0, 1.0}
    np.testing.assert_allclose(eager_state.fields, h + spins @ J, atol=1e-5)
    np.testing.assert_allclose(eager_state.energy, ising.energy(spins, h, J), atol=1e-5)


def test_sweep_sums_are_the_sweeps_of_step(model10):
    """gibbs.sweep_sums: the chains of gibbs.step with the same keys and sweep numbers, and
    per-group sums of s and s sᵀ over the sweeps, by hand."""
    h, J = model10
    rows = np.where(np.random.default_rng(1).random((12, 10)) < 0.3, 1.0, -1.0)
    spins0 = jnp.asarray(rows, jnp.float32)
    key, first, num_sweeps = jax.random.key(3), 7, 5
    chains, sum_s, sum_ss = jax.jit(
        lambda s: gibbs.sweep_sums(key, s, h, J, first, num_sweeps, 3))(spins0)
    state = gibbs.GibbsState(spins0[:, None, :], (spins0 @ J + h)[:, None, :].astype(jnp.float32),
                             ising.energy(spins0, h, J)[:, None])
    by_hand_s, by_hand_ss = np.zeros((3, 10)), np.zeros((3, 10, 10))
    for index in range(first, first + num_sweeps):
        state, _ = gibbs.step(jax.random.fold_in(key, index), state, h, J, jnp.ones(1),
                              sweep_index=index)
        s = np.asarray(state.spins[:, 0, :], float).reshape(3, 4, 10)
        by_hand_s += s.sum(axis=1)
        by_hand_ss += np.einsum("gci,gcj->gij", s, s)
    np.testing.assert_array_equal(chains, state.spins[:, 0, :])
    np.testing.assert_array_equal(sum_s, by_hand_s)
    np.testing.assert_array_equal(sum_ss, by_hand_ss)
    burned, none_s, none_ss = gibbs.sweep_sums(key, spins0, h, J, first, num_sweeps, 0)
    np.testing.assert_array_equal(burned, chains)
    assert none_s is None and none_ss is None


def test_init_from_data_rows_and_validation(model10):
    h, J = model10
    rows = np.where(np.random.default_rng(0).random((7, 10)) < 0.3, 1, -1).astype(np.int8)
    state = gibbs.init(jax.random.key(0), h, J, (1.0, 2.0), num_chains=20, initial_spins=rows)
    flat = np.asarray(state.spins).reshape(-1, 10)
    assert all(any(np.array_equal(s, r) for r in rows) for s in flat)
    one = gibbs.init(jax.random.key(0), h, J, (1.0,), num_chains=3, initial_spins=rows[0])
    np.testing.assert_array_equal(one.spins[:, 0], np.broadcast_to(rows[0], (3, 10)))
    with pytest.raises(ValueError, match="±1"):
        gibbs.init(jax.random.key(0), h, J, (1.0,), 3, initial_spins=(rows + 1) // 2)
    with pytest.raises(ValueError, match="symmetric"):
        gibbs.sample(jax.random.key(0), h, np.triu(J), num_chains=2, num_sweeps=2, burn_in=0)
    with pytest.raises(ValueError, match="positive"):
        gibbs.sample(jax.random.key(0), h, J, temperatures=(0.0,), num_chains=2,
                     num_sweeps=2, burn_in=0)


def test_reproducible_per_key_and_independent_of_chunking(model10):
    h, J = model10
    kwargs = dict(temperatures=(1.0, 1.5), num_chains=8, num_sweeps=30, burn_in=10,
                  replica_exchange=True)
    a = gibbs.sample(jax.random.key(5), h, J, **kwargs)
    b = gibbs.sample(jax.random.key(5), h, J, **kwargs, num_chunks=4)
    c = gibbs.sample(jax.random.key(6), h, J, **kwargs)
    np.testing.assert_array_equal(a.energies, b.energies)
    np.testing.assert_array_equal(a.final_state.spins, b.final_state.spins)
    assert not np.array_equal(a.energies, c.energies)


def test_replica_exchange_equals_independent_chains_when_unimodal(model10):
    h, J = model10
    temperatures = np.array([1.0, 1.3, 1.7, 2.2])
    mean_e, _ = ising.exact_energy_moments(h, J, temperatures)
    runs = [
        gibbs.sample(jax.random.key(7), h, J, temperatures=temperatures, num_chains=64,
                     num_sweeps=300, burn_in=50, replica_exchange=exchange)
        for exchange in (False, True)
    ]
    assert runs[0].swap_acceptance is None
    assert np.all(runs[1].swap_acceptance > 0.3)
    for k in range(temperatures.size):
        (e0, s0), (e1, s1) = (group_mcse(r.energies[:, :, k]) for r in runs)
        assert abs(e0 - e1) < t_limit(8, 16) * np.hypot(s0, s1)
        assert abs(e1 - mean_e[k]) < t_limit(8, 16) * s1


def test_replica_exchange_solves_bimodal_ferromagnet():
    """Strong ferromagnet at T = 1: ⟨M⟩ = 0 by symmetry, but every chain started all-up stays
    up; replica exchange over a ladder reaching above T_c visits both signs equally."""
    num_neurons = 8
    # barrier between all-up and all-down: ΔE = 32 at T = 1 (P ≈ 70 e^-32 at the saddle), and
    # the ladder reaches T = 16, above the ordering temperature (≈ J (N − 1) = 7).
    h, J = ferromagnet(num_neurons, 1.0)
    ladder = np.geomspace(1.0, 16.0, 10)
    up = np.ones(num_neurons, np.int8)
    kwargs = dict(temperatures=ladder, num_chains=64, num_sweeps=1000, burn_in=200,
                  initial_spins=up, record_spins=True, thin=5)
    plain = gibbs.sample(jax.random.key(8), h, J, **kwargs)
    tempered = gibbs.sample(jax.random.key(8), h, J, **kwargs, replica_exchange=True)
    sign_plain = np.sign(plain.spins[:, :, 0].astype(float).sum(-1) + 0.5)  # (draws, chains)
    sign_tempered = np.sign(tempered.spins[:, :, 0].astype(float).sum(-1) + 0.5)
    assert sign_plain.mean() > 0.99  # independent chains never leave the up state
    per_chain = sign_tempered.mean(0)
    z = per_chain.mean() / (per_chain.std(ddof=1) / np.sqrt(per_chain.size))
    assert abs(z) < 4.0, (per_chain.mean(), z)
    assert np.all(tempered.swap_acceptance > 0.05)
    # and the mean |M| at T = 1 matches enumeration
    states = ising.all_states(num_neurons).astype(float)
    prob = np.exp(ising.log_probability(states, h, J))
    abs_m = np.abs(tempered.spins[:, :, 0].astype(float).mean(-1))
    estimate, mcse = group_mcse(abs_m)
    assert abs(estimate - prob @ np.abs(states.mean(1))) < t_limit(1, 16) * mcse + 1e-3


def test_sample_spins(model10):
    h, J = model10
    spins = gibbs.sample_spins(jax.random.key(10), h, J, 3000, num_chains=300, burn_in=50,
                               thin=3)
    assert spins.shape == (3000, 10) and spins.dtype == np.int8
    assert set(np.unique(spins)) <= {-1, 1}
    m_exact, _ = ising.exact_moments(h, J)
    # chains are independent, draws 3 sweeps apart (τ ≈ 1–2): a generous binomial bound
    assert np.max(np.abs(spins.mean(0) - m_exact)) < 6 * np.sqrt(2.0 / 3000)


def test_autocorrelation_time_of_ar1():
    rng = np.random.default_rng(0)
    phi, num_draws, num_chains = 0.8, 4000, 16
    x = np.zeros((num_draws, num_chains))
    noise = rng.normal(size=(num_draws, num_chains))
    for t in range(1, num_draws):
        x[t] = phi * x[t - 1] + noise[t]
    tau = gibbs.energy_autocorrelation_time(x)
    assert tau == pytest.approx((1 + phi) / (1 - phi), rel=0.1)
    np.testing.assert_allclose(gibbs.energy_autocorrelation_time(x[:, :, None]), [tau])
    assert gibbs.energy_autocorrelation_time(np.ones((50, 4))) == 1.0
    # a run of 200 draws with τ = 9 is too short for 50 τ: flagged and warned about
    fake = SimpleNamespace(energies=x[:200, :, None], temperatures=np.array([1.0]), thin=1,
                           num_sweeps=200)
    with pytest.warns(RuntimeWarning) as caught:
        report = gibbs.check_convergence(fake)
    assert any("autocorrelation times" in str(w.message) for w in caught)
    assert not report["ok"]


def test_models_spins_match_enumeration():
    """sample_models_spins: two different models in one vectorised run, started from rows of
    a raster; each model's ⟨s_i⟩ and ⟨s_i s_j⟩ agree with enumeration (MCSE from 16 groups of
    chains, Bonferroni over all moments)."""
    models = [random_model(30 + k, 6, coupling_scale=0.4) for k in range(2)]
    h = np.stack([m[0] for m in models])
    J = np.stack([m[1] for m in models])
    rows = np.where(np.random.default_rng(0).random((50, 6)) < 0.5, 1, -1)
    spins, energies = gibbs.sample_models_spins(jax.random.key(3), h, J, 256 * 40,
                                                num_chains=256, burn_in=100, thin=2,
                                                initial_spins=rows)
    assert spins.shape == (2, 256 * 40, 6) and spins.dtype == np.int8
    assert energies.shape == (40, 2, 256)
    limit = t_limit(2 * (6 + 15), num_groups=16)
    i, j = np.triu_indices(6, 1)
    for d in range(2):
        m, Q = ising.exact_moments(jnp.asarray(h[d]), jnp.asarray(J[d]))
        x = spins[d].reshape(40, 256, 6).astype(float)
        for values, exact in ((x, np.asarray(m)),
                              (x[..., i] * x[..., j], np.asarray(Q)[i, j])):
            for k in range(values.shape[-1]):
                mean, mcse = group_mcse(values[..., k])
                assert abs(mean - exact[k]) < limit * mcse, (d, k, mean, exact[k], mcse)
    assert not np.array_equal(spins[0], spins[1])
