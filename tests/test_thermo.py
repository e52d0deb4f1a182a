"""Thermodynamics: exact enumeration vs brute force, closed forms, Gibbs vs exact (MCSE),
autocorrelation refusal, posterior bands, shuffled control and the ``thermo`` CLI verb."""

import itertools
import json

import jax
import numpy as np
import pytest
import xarray as xr

from bayes_ising.analysis import thermo
from bayes_ising.cli import main
from bayes_ising.core import ising

# x tanh x = 1: the maximum of x² sech² x (one independent spin, C(T) with x = h/T).
_X_PEAK = 1.19967864025773


def _random_model(seed, num_neurons, h_scale=0.5, j_scale=0.4):
    rng = np.random.default_rng(seed)
    h = rng.normal(0.0, h_scale, num_neurons)
    upper = np.triu(rng.normal(0.0, j_scale, (num_neurons, num_neurons)), 1)
    return h, upper + upper.T


def _brute_force(h, J, temperatures):
    """Mean E, C = Var/T², S = −Σ p log p over all 2^N states, plain NumPy (float64)."""
    states = np.array(list(itertools.product([-1.0, 1.0], repeat=h.size)))
    energies = -states @ h - 0.5 * np.einsum("si,ij,sj->s", states, J, states)
    out = []
    for temperature in temperatures:
        log_w = -energies / temperature
        log_p = log_w - np.logaddexp.reduce(log_w)
        p = np.exp(log_p)
        mean = p @ energies
        out.append((mean, p @ (energies - mean) ** 2 / temperature**2, -(p @ log_p)))
    return np.array(out).T  # (3, K)


def _posterior_tree(h_draws, j_draws):
    """A posterior DataTree in the contract's layout: h (chain, draw, neuron), J (..., pair)."""
    num_neurons = h_draws.shape[-1]
    i, j = ising.pair_indices(num_neurons)
    ids = np.array([f"n{k}" for k in range(num_neurons)])
    posterior = xr.Dataset(
        {
            "h": (("chain", "draw", "neuron"), h_draws),
            "J": (("chain", "draw", "pair"), j_draws[..., i, j]),
        },
        coords={"neuron": ids, "neuron_i": ("pair", ids[i]), "neuron_j": ("pair", ids[j])},
    )
    tree = xr.DataTree.from_dict({"posterior": posterior})
    tree.attrs["bayes_ising_version"] = "test"
    return tree


# ---------------------------------------------------------------------------- exact


@pytest.mark.parametrize("num_neurons, seed", [(1, 0), (5, 1), (8, 2)])
def test_exact_matches_brute_force(num_neurons, seed):
    h, J = _random_model(seed, num_neurons)
    temperatures = np.linspace(0.4, 3.0, 14)
    result = thermo.exact_thermodynamics(h, J, temperatures)
    mean, heat, entropy = _brute_force(h, J, temperatures)
    np.testing.assert_allclose(result.energy_per_neuron[0], mean / num_neurons, atol=1e-12)
    np.testing.assert_allclose(result.heat_capacity_per_neuron[0], heat / num_neurons, atol=1e-12)
    # Thermodynamic integration on the default grid (64 β steps + the requested β + 201 peak
    # points, Hermite rule): stated tolerance 1e-7 nats per neuron; observed ~1e-9.
    np.testing.assert_allclose(result.entropy_per_neuron[0], entropy / num_neurons, atol=1e-7)
    assert result.entropy_integration_error < 1e-7
    assert result.method == "exact"


def test_integration_is_fourth_order():
    """Halving the β step divides the entropy error by ~16 (Hermite rule), S(∞) = N log 2."""
    h, J = _random_model(3, 6, h_scale=0.8, j_scale=0.6)
    temperatures = np.array([0.5, 1.0, 2.0])
    exact = _brute_force(h, J, temperatures)[2] / h.size
    errors = []
    for num_grid in (8, 16, 32):
        result = thermo.exact_thermodynamics(h, J, temperatures, num_grid=num_grid, peak_points=0)
        errors.append(np.max(np.abs(result.entropy_per_neuron[0] - exact)))
    assert errors[0] / errors[1] > 10 and errors[1] / errors[2] > 10, errors
    # T → ∞: S/N → log 2.
    hot = thermo.exact_thermodynamics(h, J, [1e4], peak_points=0)
    assert abs(hot.entropy_per_neuron[0, 0] - np.log(2)) < 1e-6


def test_integration_grid_contents():
    temperatures = np.array([0.5, 1.0, 3.0])
    betas, index = thermo.integration_grid(temperatures, num_grid=10)
    assert betas[0] == 0.0 and np.all(np.diff(betas) > 0)
    np.testing.assert_allclose(betas[index], 1 / temperatures)
    assert betas[-1] == pytest.approx(2.0)
    assert np.max(np.diff(betas)) <= 1.5 * 0.2 + 1e-12  # step β_max/num_grid, 1.5 near targets


def test_independent_closed_form_and_peak():
    h = np.array([0.3, -0.8, 1.2, 0.05, -1.5])
    temperatures = np.linspace(0.2, 4.0, 40)
    energy, heat, entropy = thermo.independent_thermodynamics(h, temperatures)
    # C/N = Σ h_i² / (N T² cosh²(h_i/T)) written out.
    expected_heat = np.mean(h[None] ** 2 / (temperatures[:, None] ** 2
                                            * np.cosh(h[None] / temperatures[:, None]) ** 2),
                            axis=1)
    np.testing.assert_allclose(heat, expected_heat, rtol=1e-12)
    result = thermo.exact_thermodynamics(h, np.zeros((5, 5)), temperatures)
    np.testing.assert_allclose(result.energy_per_neuron[0], energy, atol=1e-12)
    np.testing.assert_allclose(result.heat_capacity_per_neuron[0], heat, atol=1e-12)
    np.testing.assert_allclose(result.entropy_per_neuron[0], entropy, atol=1e-7)
    # One spin: peak at T* = h / x*, C_max = x*² sech² x* ≈ 0.4392.
    single = thermo.exact_thermodynamics([1.0], [[0.0]], np.linspace(0.3, 2.0, 18))
    assert single.peak_temperature[0] == pytest.approx(1 / _X_PEAK, rel=1e-4)
    assert single.peak_heat_capacity_per_neuron[0] == pytest.approx(
        _X_PEAK**2 / np.cosh(_X_PEAK) ** 2, rel=1e-6)
    assert not single.peak_at_edge[0]


def test_peak_parabola_on_coarse_grid_and_edge():
    # Without peak refinement the parabola through the grid maximum still lands near T*.
    coarse = thermo.exact_thermodynamics([1.0], [[0.0]], np.linspace(0.3, 2.0, 8), peak_points=0)
    assert coarse.peak_temperature[0] == pytest.approx(1 / _X_PEAK, rel=0.03)
    # Peak below the range: reported at the lower end and flagged.
    edge = thermo.exact_thermodynamics([1.0], [[0.0]], np.linspace(1.5, 3.0, 5))
    assert edge.peak_at_edge[0] and edge.peak_temperature[0] == pytest.approx(1.5)


def test_exact_refuses_float32():
    from bayes_ising.errors import Float64Error

    jax.config.update("jax_enable_x64", False)
    try:
        with pytest.raises(Float64Error):
            thermo.exact_thermodynamics([0.1, 0.2], np.zeros((2, 2)), [1.0])
    finally:
        jax.config.update("jax_enable_x64", True)


# ---------------------------------------------------------------------------- temperatures


def test_parse_temperatures():
    np.testing.assert_allclose(thermo.parse_temperatures("0.5:3.0:26"), np.linspace(0.5, 3, 26))
    np.testing.assert_allclose(thermo.parse_temperatures("2, 1,1.5"), [1.0, 1.5, 2.0])
    np.testing.assert_allclose(thermo.parse_temperatures("1"), [1.0])
    bad = {
        "0.5:3.0": "three fields",
        "a:3:4": "must be numbers",
        "0.5:3:x": "COUNT must be an integer",
        "0.5:3:1": "at least 2",
        "3:0.5:4": "STOP > START",
        "-1:2:4": "positive",
        "0,1": "positive",
        "": "empty",
        "1;2": "comma-separated",
    }
    for text, fragment in bad.items():
        with pytest.raises(thermo.TemperatureError, match=fragment):
            thermo.parse_temperatures(text)


# ---------------------------------------------------------------------------- autocorrelation


def test_autocorrelation_time_ar1():
    """AR(1) with coefficient φ: τ = (1 + φ)/(1 − φ); and stuck chains give τ ≥ run length."""
    rng = np.random.default_rng(0)
    phi, num_draws, num_chains = 0.8, 4000, 8
    noise = rng.normal(size=(num_draws, num_chains, 2))
    x = np.zeros_like(noise)
    for t in range(1, num_draws):
        x[t] = phi * x[t - 1] + noise[t]
    tau = thermo.autocorrelation_time(x)
    np.testing.assert_allclose(tau, (1 + phi) / (1 - phi), rtol=0.15)
    white = thermo.autocorrelation_time(rng.normal(size=(2000, 4, 1)))
    assert 0.8 < white[0] < 1.2
    stuck = rng.normal(size=(500, 4, 1)) * 0.1 + np.array([0, 0, 5, 5])[None, :, None]
    assert thermo.autocorrelation_time(stuck)[0] >= 500


# ---------------------------------------------------------------------------- posterior bands


def test_posterior_bands_shape_order_and_reproducibility():
    rng = np.random.default_rng(5)
    num_neurons, chains, draws = 6, 2, 15
    base_h, base_J = _random_model(7, num_neurons)
    h_draws = base_h + 0.1 * rng.normal(size=(chains, draws, num_neurons))
    noise = np.triu(0.1 * rng.normal(size=(chains, draws, num_neurons, num_neurons)), 1)
    j_draws = base_J + noise + np.swapaxes(noise, -1, -2)
    tree = _posterior_tree(h_draws, j_draws)
    temperatures = np.linspace(0.5, 2.5, 9)

    h, J = thermo.posterior_parameters(jax.random.key(1), tree, num_draws=12)
    assert h.shape == (12, num_neurons) and J.shape == (12, num_neurons, num_neurons)
    flat_h = h_draws.reshape(-1, num_neurons)
    rows = [int(np.argmin(np.abs(flat_h - row).sum(axis=1))) for row in h]
    np.testing.assert_allclose(J, j_draws.reshape(-1, num_neurons, num_neurons)[rows])
    h_again, _ = thermo.posterior_parameters(jax.random.key(1), tree, num_draws=12)
    np.testing.assert_array_equal(h, h_again)
    h_other, _ = thermo.posterior_parameters(jax.random.key(2), tree, num_draws=12)
    assert not np.array_equal(h, h_other)

    # posterior_thermodynamics picks draws with the first half of its key.
    draw_key = jax.random.split(jax.random.key(4))[0]
    h, J = thermo.posterior_parameters(draw_key, tree, num_draws=12)
    result = thermo.posterior_thermodynamics(jax.random.key(4), tree, temperatures,
                                             num_draws=12)
    assert result.heat_capacity_per_neuron.shape == (12, 9)
    assert result.peak_temperature.shape == (12,)
    # Each draw's curve equals a single-model evaluation of that draw.
    single = thermo.exact_thermodynamics(h[3], J[3], temperatures)
    np.testing.assert_allclose(result.heat_capacity_per_neuron[3],
                               single.heat_capacity_per_neuron[0], atol=1e-12)
    out = result.to_dict(interval=0.8)
    for name in ("energy_per_neuron", "heat_capacity_per_neuron", "entropy_per_neuron"):
        band = out[name]
        assert band["interval"] == 0.8 and len(band["median"]) == 9
        assert np.all(band["lower"] <= band["median"]) and np.all(band["median"] <= band["upper"])
        assert np.any(band["lower"] < band["upper"])
    for name in ("temperature", "heat_capacity_per_neuron"):
        peak = out["peak"][name]
        assert peak["lower"] <= peak["median"] <= peak["upper"]
    assert out["method"] == "exact" and out["caveat"] == thermo.CRITICALITY_CAVEAT


def test_posterior_rejects_wrong_pair_count():
    tree = _posterior_tree(np.zeros((1, 2, 4)), np.zeros((1, 2, 4, 4)))
    bad = xr.DataTree.from_dict({"posterior": tree["posterior"].to_dataset().isel(pair=[0, 1])})
    from bayes_ising.errors import DataError

    with pytest.raises(DataError, match="pairs"):
        thermo.posterior_parameters(jax.random.key(0), bad)


# ---------------------------------------------------------------------------- controls


def test_shuffle_bins_keeps_rates_and_reproduces():
    rng = np.random.default_rng(0)
    spins = np.where(rng.random((500, 4)) < 0.3, 1, -1).astype(np.int8)
    spins[:, 1] = spins[:, 0]  # perfectly correlated pair
    shuffled = thermo.shuffle_bins(jax.random.key(3), spins)
    assert shuffled.dtype == np.int8
    np.testing.assert_array_equal(np.sort(shuffled, axis=0), np.sort(spins, axis=0))
    assert np.mean(shuffled[:, 0] == shuffled[:, 1]) < 0.8
    np.testing.assert_array_equal(shuffled, thermo.shuffle_bins(jax.random.key(3), spins))


def _exact_sample(seed, h, J, num_bins):
    """Independent draws from P(s) ∝ exp(−E(s)) by enumeration (plain NumPy)."""
    states = np.array(list(itertools.product([-1, 1], repeat=h.size)), dtype=np.int8)
    neg_energy = states @ h + 0.5 * np.einsum("si,ij,sj->s", states, J, states)
    p = np.exp(neg_energy - neg_energy.max())
    rows = np.random.default_rng(seed).choice(len(states), num_bins, p=p / p.sum())
    return states[rows]


def test_shuffled_control_removes_couplings():
    h, J = _random_model(13, 5, h_scale=0.3, j_scale=0.6)
    spins = _exact_sample(0, h, J, 4000)
    temperatures = np.linspace(0.5, 3.0, 11)
    control, info = thermo.shuffled_control(jax.random.key(0), spins, temperatures,
                                            num_shuffles=2)
    assert control.num_draws == 2 and info["fit_method"] == "exact"
    # Coupling noise of a 4000-bin fit is ~1/sqrt(4000) ≈ 0.02 per pair; the planted J are ~0.6.
    assert np.max(info["max_abs_J"]) < 0.15 < np.max(np.abs(J))
    # The control is close to the independent model of the data, h_i = atanh(m_i).
    _, heat, _ = thermo.independent_thermodynamics(np.arctanh(spins.mean(axis=0)), temperatures)
    np.testing.assert_allclose(control.heat_capacity_per_neuron, heat[None].repeat(2, 0),
                               atol=0.03)
    real = thermo.exact_thermodynamics(h, J, temperatures)
    assert np.max(np.abs(real.heat_capacity_per_neuron[0] - heat)) > 0.1


def test_subsample_peaks_shapes():
    h, J = _random_model(11, 8)
    out = thermo.peak_versus_subsample(jax.random.key(0), h, J, [3, 8], np.linspace(0.5, 2, 7),
                                       num_subsets=4)
    assert out[3].peak_heat_capacity_per_neuron.shape == (4,)
    # All subsets of size N are the model itself.
    full = thermo.exact_thermodynamics(h, J, np.linspace(0.5, 2, 7))
    np.testing.assert_allclose(out[8].peak_heat_capacity_per_neuron,
                               full.peak_heat_capacity_per_neuron[0], rtol=1e-10)


# ---------------------------------------------------------------------------- CLI


@pytest.fixture(scope="module")
def posterior_file(tmp_path_factory):
    rng = np.random.default_rng(9)
    base_h, base_J = _random_model(4, 5)
    h_draws = base_h + 0.05 * rng.normal(size=(2, 10, 5))
    noise = np.triu(0.05 * rng.normal(size=(2, 10, 5, 5)), 1)
    tree = _posterior_tree(h_draws, base_J + noise + np.swapaxes(noise, -1, -2))
    path = tmp_path_factory.mktemp("thermo") / "posterior.nc"
    tree.to_netcdf(path, engine="h5netcdf")
    return path


def test_cli_json_keys(posterior_file, tmp_path, capsys):
    out = tmp_path / "thermo.json"
    code = main(["thermo", str(posterior_file), "--temperatures", "0.5:3.0:6",
                 "--posterior-draws", "8", "--out", str(out)])
    assert code == 0
    result = json.loads(out.read_text())
    assert result["temperature"] == pytest.approx(list(np.linspace(0.5, 3.0, 6)))
    for name in ("energy_per_neuron", "heat_capacity_per_neuron", "entropy_per_neuron"):
        assert set(result[name]) == {"median", "lower", "upper", "interval"}
        assert result[name]["interval"] == 0.9 and len(result[name]["median"]) == 6
    assert set(result["peak"]["temperature"]) >= {"median", "lower", "upper"}
    assert set(result["peak"]["heat_capacity_per_neuron"]) >= {"median", "lower", "upper"}
    assert result["method"] == "exact" and result["num_draws"] == 8
    assert "criticality" in result["caveat"]
    assert "autocorrelation_time_sweeps" in result
    assert "T* =" in capsys.readouterr().out
    assert "subsample" not in result
    sub_out = tmp_path / "sub.json"
    assert main(["thermo", str(posterior_file), "--temperatures", "0.5:3.0:6",
                 "--posterior-draws", "8", "--subsample-sizes", "2,5", "--num-subsets", "3",
                 "--out", str(sub_out)]) == 0
    sub = json.loads(sub_out.read_text())["subsample"]
    assert sub["sizes"] == [2, 5] and set(sub["peak"]["heat_capacity_per_neuron"]) == {"2", "5"}
    assert main(["thermo", str(posterior_file), "--subsample-sizes", "2,9",
                 "--out", str(tmp_path / "bad.json")]) == 2
    # Existing output without --force → exit 2.
    assert main(["thermo", str(posterior_file), "--out", str(out)]) == 2


def test_cli_shuffled_control(posterior_file, tmp_path):
    from bayes_ising.data import SpikeData

    base_h, base_J = _random_model(4, 5)
    spins = _exact_sample(1, base_h, base_J, 3000)
    ids = [f"n{k}" for k in range(5)]
    data_path = tmp_path / "data.npz"
    SpikeData.from_raster(spins, neuron_ids=ids).to_npz(data_path)
    out = tmp_path / "thermo.json"
    code = main(["thermo", str(posterior_file), "--temperatures", "0.5,1,2",
                 "--posterior-draws", "4", "--shuffled-control", str(data_path),
                 "--num-shuffles", "2", "--out", str(out)])
    assert code == 0
    control = json.loads(out.read_text())["shuffled_control"]
    assert control["num_draws"] == 2 and len(control["max_abs_J"]) == 2
    assert len(control["heat_capacity_per_neuron"]["median"]) == 3
    # Neuron ids that do not match the posterior's → exit 2.
    SpikeData.from_raster(spins).to_npz(tmp_path / "other.npz")
    assert main(["thermo", str(posterior_file), "--temperatures", "0.5,1,2",
                 "--shuffled-control", str(tmp_path / "other.npz"),
                 "--out", str(tmp_path / "t2.json")]) == 2


@pytest.mark.parametrize("text", ["0.5:3.0", "3:1:5", "0.5:3:one", "0:2:5"])
def test_cli_bad_temperatures_exit_2(posterior_file, tmp_path, capsys, text):
    code = main(["thermo", str(posterior_file), "--temperatures", text,
                 "--out", str(tmp_path / "t.json")])
    assert code == 2
    err = capsys.readouterr().err
    assert err.startswith("bayes-ising: error:") and "--temperatures" in err
    assert not (tmp_path / "t.json").exists()


def test_cli_missing_posterior_exit_2(tmp_path):
    assert main(["thermo", str(tmp_path / "none.nc"), "--out", str(tmp_path / "t.json")]) == 2


# ---------------------------------------------------------------------------- Gibbs


def _ferromagnet(num_neurons, coupling, field):
    J = np.full((num_neurons, num_neurons), coupling)
    np.fill_diagonal(J, 0.0)
    return np.full(num_neurons, field), J


def test_sampled_matches_exact_within_mcse():
    """Gibbs ⟨E⟩/N, C/N and S/N agree with enumeration in units of their MCSE (N = 10)."""
    pytest.importorskip("bayes_ising.core.gibbs")
    h, J = _random_model(21, 10, h_scale=0.3, j_scale=0.35)
    temperatures = np.linspace(0.6, 2.4, 7)
    exact = thermo.exact_thermodynamics(h, J, temperatures)
    assert 0.6 < exact.peak_temperature[0] < 2.4  # the grid contains the peak
    sampled = thermo.sampled_thermodynamics(
        jax.random.key(0), h, J, temperatures, num_chains=32, num_sweeps=1500, burn_in=300,
        num_grid=16,
    )
    assert sampled.method == "gibbs" and sampled.autocorrelation_time.shape == (1, 7)
    for name in ("energy_per_neuron", "heat_capacity_per_neuron", "entropy_per_neuron"):
        mcse = sampled.mcse[name][0]
        assert np.all(mcse > 0) and np.all(mcse < 0.02), (name, mcse)
        z = (getattr(sampled, name)[0] - getattr(exact, name)[0]) / mcse
        # 21 comparisons: |z| < 4.5 fails by chance with probability ~1e-4.
        assert np.all(np.abs(z) < 4.5), (name, z)


def test_sampled_reproducible_per_key():
    pytest.importorskip("bayes_ising.core.gibbs")
    h, J = _random_model(22, 6)
    temperatures = [0.8, 1.2]
    options = dict(num_chains=8, num_sweeps=300, burn_in=50, num_grid=4, on_short_run="warn")
    first = thermo.sampled_thermodynamics(jax.random.key(5), h, J, temperatures, **options)
    again = thermo.sampled_thermodynamics(jax.random.key(5), h, J, temperatures, **options)
    other = thermo.sampled_thermodynamics(jax.random.key(6), h, J, temperatures, **options)
    np.testing.assert_array_equal(first.heat_capacity_per_neuron, again.heat_capacity_per_neuron)
    np.testing.assert_array_equal(first.entropy_per_neuron, again.entropy_per_neuron)
    assert not np.array_equal(first.heat_capacity_per_neuron, other.heat_capacity_per_neuron)


def test_short_run_on_slow_mixing_model_refused():
    """A strong ferromagnet without replica exchange: chains stay in the + or − state, so the
    energy's multi-chain autocorrelation time exceeds the run; refused, or warned about."""
    pytest.importorskip("bayes_ising.core.gibbs")
    h, J = _ferromagnet(12, 0.5, 0.05)
    options = dict(num_chains=16, num_sweeps=200, burn_in=20, num_grid=4,
                   replica_exchange=False)
    with pytest.raises(thermo.RunTooShortError, match="autocorrelation time"):
        thermo.sampled_thermodynamics(jax.random.key(0), h, J, [0.8, 1.0], **options)
    with pytest.warns(thermo.AutocorrelationWarning):
        result = thermo.sampled_thermodynamics(jax.random.key(0), h, J, [0.8, 1.0],
                                               on_short_run="warn", **options)
    assert result.warnings and np.max(result.autocorrelation_time) >= 200


@pytest.mark.slow
def test_bimodal_ferromagnet_replica_exchange():
    """Ferromagnet (J = 0.3, N = 10, h = 0.02), bimodal below T ≈ 1.8: with replica exchange
    the sampled curves match enumeration within MCSE and τ stays ~1 sweep; without it the chains
    stay in their mode at T = 1 and the run is refused."""
    pytest.importorskip("bayes_ising.core.gibbs")
    h, J = _ferromagnet(10, 0.3, 0.02)
    temperatures = np.linspace(1.0, 4.0, 7)
    exact = thermo.exact_thermodynamics(h, J, temperatures)
    options = dict(num_chains=32, num_sweeps=2000, burn_in=300, num_grid=16)
    sampled = thermo.sampled_thermodynamics(jax.random.key(0), h, J, temperatures,
                                            replica_exchange=True, **options)
    assert np.max(sampled.autocorrelation_time) < 5
    for name in ("energy_per_neuron", "heat_capacity_per_neuron", "entropy_per_neuron"):
        z = (getattr(sampled, name)[0] - getattr(exact, name)[0]) / sampled.mcse[name][0]
        assert np.all(np.abs(z) < 4.5), (name, z)
    with pytest.raises(thermo.RunTooShortError):
        thermo.sampled_thermodynamics(jax.random.key(0), h, J, temperatures,
                                      replica_exchange=False, **options)


@pytest.mark.slow
def test_retina_peak_and_shuffled_control(retina_path):
    """retina15: the exact MLE (l2 = 1e-3) peaks near T = 1 (measured T* = 1.035, C_max/N =
    0.387); shuffled data give a lower peak (measured 0.28) at a higher T, close to the
    independent model's."""
    from bayes_ising import data
    from bayes_ising.fit import mle

    spins = data.load(retina_path).spins
    temperatures = thermo.parse_temperatures("0.5:3.0:26")
    with pytest.warns(UserWarning):  # pairs that never fire together
        fit = mle.fit_exact(spins, l2=1e-3)
    real = thermo.exact_thermodynamics(np.asarray(fit.h), np.asarray(fit.J), temperatures)
    assert 0.95 < real.peak_temperature[0] < 1.15
    assert 0.35 < real.peak_heat_capacity_per_neuron[0] < 0.42
    control, info = thermo.shuffled_control(jax.random.key(0), spins, temperatures)
    assert np.max(info["max_abs_J"]) < 0.25
    assert control.peak_heat_capacity_per_neuron[0] < 0.32
    assert control.peak_temperature[0] > real.peak_temperature[0]


@pytest.mark.slow
def test_real_posterior_through_cli(tmp_path):
    """A real bayes.fit_posterior tree (not hand-built): J rebuilt as bayes.j_matrix does, and
    the CLI runs on the saved file."""
    from bayes_ising.data import SpikeData
    from bayes_ising.fit import bayes

    h, J = _random_model(31, 4)
    data = SpikeData.from_raster(_exact_sample(2, h, J, 2000))
    tree = bayes.fit_posterior(jax.random.key(0), data, likelihood="exact", num_chains=1,
                               num_draws=40, num_warmup=40, progress=False)
    h_draws, j_draws = thermo.posterior_parameters(jax.random.key(0), tree)
    np.testing.assert_allclose(j_draws, bayes.j_matrix(tree).values.reshape(40, 4, 4))
    np.testing.assert_allclose(h_draws, tree["posterior"]["h"].values.reshape(40, 4))
    path = tmp_path / "posterior.nc"
    bayes.save_posterior(tree, path)
    out = tmp_path / "thermo.json"
    assert main(["thermo", str(path), "--temperatures", "0.5:2:4", "--posterior-draws", "10",
                 "--out", str(out)]) == 0
    assert json.loads(out.read_text())["num_draws"] == 10


# ---------------------------------------------------------------------------- vectorised Gibbs


def test_vectorised_draws_match_exact_within_mcse():
    """Three models (N = 10) in one vectorised run with the adaptive schedule: each model's
    ⟨E⟩/N, C/N and S/N agree with enumeration in MCSE units, and the run's own checks pass."""
    models = [_random_model(40 + k, 10, h_scale=0.3, j_scale=0.3) for k in range(3)]
    h = np.stack([m[0] for m in models])
    J = np.stack([m[1] for m in models])
    temperatures = np.linspace(0.7, 2.2, 5)
    exact = thermo.exact_thermodynamics(h, J, temperatures)
    sampled = thermo.sampled_thermodynamics(jax.random.key(1), h, J, temperatures,
                                            num_chains=8, num_sweeps="auto", num_grid=8)
    checks = sampled.settings["gibbs_convergence"]
    assert checks["converged"] and checks["max_rhat"] <= 1.01 and checks["min_ess_bulk"] >= 400
    assert checks["models_converged"] == [True] * 3
    assert sampled.settings["num_sweeps"] >= 500
    for name in ("energy_per_neuron", "heat_capacity_per_neuron", "entropy_per_neuron"):
        z = (getattr(sampled, name) - getattr(exact, name)) / sampled.mcse[name]
        # 45 comparisons: |z| < 4.5 fails by chance with probability ~3e-4.
        assert np.all(np.abs(z) < 4.5), (name, z)


def test_models_in_a_batch_are_independent_of_the_batch():
    """Model d of a batch uses fold_in(key, d): alone (first in a batch of one) or together with
    another model, its energies are the same."""
    from bayes_ising.core import gibbs

    h1, J1 = _random_model(50, 7)
    h2, J2 = _random_model(51, 7)
    ladder = np.array([1.0, 1.5, 2.0])

    def run(h, J, pieces):
        state = gibbs.init_models(jax.random.key(0), h, J, ladder, 3)
        out, first = [], 0
        for size in pieces:
            state, energies, _ = gibbs.sample_models_energies(
                jax.random.key(1), h, J, state, ladder, num_chains=3, num_sweeps=size,
                first_sweep=first)
            out.append(energies)
            first += size
        return np.concatenate(out)

    both = run(np.stack([h1, h2]), np.stack([J1, J2]), [60])
    alone = run(h1[None], J1[None], [20, 40])  # also: continued in pieces = one run
    assert both.shape == (60, 2, 3, 3)
    np.testing.assert_array_equal(both[:, :1], alone)
    assert not np.array_equal(both[:, 0], both[:, 1])


def test_convergence_flags_on_a_stuck_ferromagnet():
    """Without replica exchange a strong ferromagnet's chains stay in their mode: the Gibbs
    checks report R-hat > 1.01 and the model as not converged; with exchange they pass."""
    h, J = _ferromagnet(12, 0.5, 0.05)
    options = dict(num_chains=8, num_sweeps=300, burn_in=20, num_grid=4, on_short_run="warn")
    with pytest.warns(thermo.AutocorrelationWarning):
        stuck = thermo.sampled_thermodynamics(jax.random.key(0), h, J, [0.8, 1.0],
                                              replica_exchange=False, **options)
    checks = stuck.settings["gibbs_convergence"]
    assert not checks["converged"] and checks["max_rhat"] > 1.01
    assert checks["models_converged"] == [False]
    mixed = thermo.sampled_thermodynamics(jax.random.key(0), h, J, np.linspace(1.0, 4.0, 5),
                                          replica_exchange=True,
                                          **{**options, "num_sweeps": "auto", "num_grid": 16})
    assert mixed.settings["gibbs_convergence"]["converged"]


def test_split_rhat_matches_arviz():
    from arviz_stats.base import array_stats

    rng = np.random.default_rng(1)
    x = rng.normal(size=(6, 4, 300)).cumsum(-1) * 0.05 + rng.normal(size=(6, 4, 300))
    x[:2] += np.arange(4)[:, None] * 0.3  # chains that disagree
    expected = np.asarray(array_stats.rhat(x, chain_axis=-2, draw_axis=-1))
    np.testing.assert_allclose(thermo.split_rhat(x), expected, rtol=1e-10)
    assert np.all(thermo.split_rhat(x)[:2] > 1.05)
    np.testing.assert_array_equal(thermo.split_rhat(np.ones((2, 4, 50))), 1.0)


def test_schedule_targets_follow_the_autocorrelation_time():
    """The adaptive length: max(50 τ, 400 τ / chains) × 1.1 and at least 1.5 × the run so far
    (R-hat), at most doubling per step, in whole chunks, capped; a fixed length or a converged
    run stops."""
    schedule = thermo.SamplerSchedule(num_sweeps="auto", max_sweeps=3000)
    checks = {"converged": False, "autocorrelation_time_sweeps": np.array([[2.0, 20.0]])}
    assert schedule.next_target(500, checks, 4) == 1000  # wants 2200: doubles
    assert schedule.next_target(1000, checks, 4) == 2000
    assert schedule.next_target(1500, checks, 4) == 2300  # max(2200, 1.5 × 1500), whole chunks
    assert schedule.next_target(2000, checks, 4) == 3000  # τ met: R-hat failing, × 1.5
    assert schedule.next_target(2900, checks, 4) == 3000  # the cap
    assert schedule.next_target(3000, checks, 4) is None
    assert schedule.next_target(500, {**checks, "converged": True}, 4) is None
    assert thermo.SamplerSchedule(num_sweeps=700).next_target(700, checks, 4) is None
    noisy = thermo.SamplerSchedule(num_sweeps="auto", max_mcse_fraction=0.5)
    quick = {"converged": False, "autocorrelation_time_sweeps": np.array([[1.0]]),
             "band_noise": 0.6}
    assert noisy.next_target(1000, quick, 4) == 1600  # 1.1 × 1000 × (0.6 / 0.5)², whole chunks


def test_mean_field_fit_of_shuffled_data_matches_the_exact_fit():
    """On shuffled data (correlations only sampling noise) the naive mean-field inverse gives
    the exact maximum-likelihood couplings to within 0.01 and the same C(T)/N to 0.005."""
    from bayes_ising.fit import mle

    h, J = _random_model(61, 8, h_scale=0.4, j_scale=0.5)
    shuffled = thermo.shuffle_bins(jax.random.key(2), _exact_sample(3, h, J, 20000))
    h_mf, J_mf = thermo.mean_field_fit(shuffled)
    fit = mle.fit_exact(shuffled)
    assert np.max(np.abs(J_mf - np.asarray(fit.J))) < 0.01
    assert np.max(np.abs(h_mf - np.asarray(fit.h))) < 0.01
    temperatures = np.linspace(0.5, 3.0, 11)
    a = thermo.exact_thermodynamics(h_mf, J_mf, temperatures)
    b = thermo.exact_thermodynamics(np.asarray(fit.h), np.asarray(fit.J), temperatures)
    np.testing.assert_allclose(a.heat_capacity_per_neuron, b.heat_capacity_per_neuron,
                               atol=0.005)


@pytest.mark.parametrize("method", ["exact", "gibbs"])
def test_fit_thermodynamics_summary_curves_and_control(method):
    """The study's call: summary numbers with intervals, a tidy table, the control beside."""
    rng = np.random.default_rng(5)
    base_h, base_J = _random_model(70, 8, h_scale=0.3, j_scale=0.3)
    noise = np.triu(0.03 * rng.normal(size=(20, 8, 8)), 1)
    h_draws = base_h + 0.03 * rng.normal(size=(20, 8))
    J_draws = base_J + noise + np.swapaxes(noise, -1, -2)
    spins = _exact_sample(4, base_h, base_J, 3000)
    options = {"num_chains": 4, "num_grid": 8, "max_sweeps": 1000} if method == "gibbs" else {}
    out = thermo.fit_thermodynamics(jax.random.key(0), (h_draws, J_draws), spins,
                                    temperatures="0.5:2.5:5", num_posterior_draws=12,
                                    method=method, **options)
    assert out.posterior.num_draws == 12 and out.control.num_draws == 1
    summary = out.summary
    for part in (summary, summary["control"]):
        for name in ("T_peak", "C_max_per_neuron"):
            band = part[name]
            assert band["lower"] <= band["median"] <= band["upper"]
    assert summary["method"] == method and summary["num_neurons"] == 8
    assert (summary["gibbs_convergence"] is not None) == (method == "gibbs")
    assert set(out.curves["model"]) == {"posterior", "shuffled"}
    assert len(out.curves) == 2 * 3 * 5
    assert {"temperature", "quantity", "median", "lower", "upper", "max_mcse"} <= set(
        out.curves.columns)
    # The control has (almost) no couplings: a lower peak than the coupled model.
    assert summary["control"]["C_max_per_neuron"]["median"] < summary["C_max_per_neuron"][
        "lower"]
    as_json = out.to_dict()
    assert as_json["shuffled_control"]["fit_method"] == "exact"
    assert as_json["summary"]["T_peak"] == summary["T_peak"]
