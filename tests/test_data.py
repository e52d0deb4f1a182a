"""SpikeData: binning on hand-built spike trains, labels, epochs, selection, loaders, bad input."""

import re
import warnings

import h5py
import numpy as np
import pytest
import scipy.io

from bayes_ising.data import DataWarning, Epochs, SpikeData, load, to_spins
from bayes_ising.errors import DataError

# every DataWarning must be expected explicitly
pytestmark = pytest.mark.filterwarnings("error::bayes_ising.data.DataWarning")


def spins_of(raster01):
    return np.where(np.asarray(raster01) == 1, 1, -1).astype(np.int8)


# ------------------------------------------------------------------------- binning


def test_bin_boundaries_half_open_later_bin():
    # bins [0, .1), [.1, .2), [.2, .3), [.3, .4): 0.1 and 0.3 lie exactly on boundaries and go
    # to the later bin (0.3 / 0.1 = 2.9999999999999996 in floating point: still bin 3)
    d = SpikeData.from_spike_times([[0.0, 0.1, 0.3], [0.0999, 0.2999]], bin_size=0.1)
    np.testing.assert_array_equal(d.spins, spins_of([[1, 1], [1, 0], [0, 1], [1, 0]]))
    assert d.spins.dtype == np.int8
    assert d.num_bins == 4 and d.num_neurons == 2
    assert d.bin_size == 0.1 and d.time_units == "s"
    assert d.neuron_ids.tolist() == ["0", "1"]


def test_several_spikes_in_one_bin_count_once():
    with pytest.warns(DataWarning, match="fire in every bin: '0'"):
        d = SpikeData.from_spike_times([[0.01, 0.02, 0.03, 0.15]], bin_size=0.1)
    np.testing.assert_array_equal(d.spins[:, 0], [1, 1])


def test_t_start_t_stop_and_partial_last_bin():
    # t_start = 0.05: bins [.05,.15), [.15,.25), [.25,.35); 0.36 is in the partial bin (dropped),
    # 0.01 is before t_start (ignored)
    d = SpikeData.from_spike_times([[0.01, 0.05, 0.2, 0.36]], bin_size=0.1, t_start=0.05,
                                   t_stop=0.4)
    np.testing.assert_array_equal(d.spins[:, 0], [1, 1, -1])


def test_units_ms_equals_seconds():
    times_s = [[0.0, 0.049, 0.05, 0.3], [0.12]]
    times_ms = [[1000 * t for t in train] for train in times_s]
    a = SpikeData.from_spike_times(times_s, bin_size=0.05, time_units="s")
    b = SpikeData.from_spike_times(times_ms, bin_size=50, time_units="ms")
    np.testing.assert_array_equal(a.spins, b.spins)
    np.testing.assert_array_equal(a.spins[:, 0], [1, 1, -1, -1, -1, -1, 1])
    assert b.time_units == "ms" and b.bin_size == 50


def test_parallel_arrays_equal_per_neuron_lists_and_ids_order():
    times = np.array([0.3, 0.0, 0.12, 0.25, 0.05])
    neurons = np.array(["b", "a", "b", "a", "c"])
    with pytest.warns(DataWarning) as record:
        d = SpikeData.from_spike_times(times, neurons, bin_size=0.1,
                                       neuron_ids=["c", "a", "b", "silent"],
                                       cell_types=["I", "E", "E", "E"])
    assert [str(w.message) for w in record] == [
        "spike times of neuron 'b' are not sorted (position 1); sorted them",
        "neurons that never fire: 'silent' (kept, listed in inactive_neurons)"]
    with pytest.warns(DataWarning, match="never fire: 'silent'"):
        ref = SpikeData.from_spike_times([[0.05], [0.0, 0.25], [0.12, 0.3], []], bin_size=0.1,
                                         neuron_ids=["c", "a", "b", "silent"])
    np.testing.assert_array_equal(d.spins, ref.spins)
    assert d.neuron_ids.tolist() == ["c", "a", "b", "silent"]
    assert d.inactive_neurons.tolist() == ["silent"]
    # without neuron_ids: sorted unique values (integers sorted numerically)
    d2 = SpikeData.from_spike_times([0.0, 0.1, 0.2], [10, 2, 10], bin_size=0.1)
    assert d2.neuron_ids.tolist() == ["2", "10"]
    np.testing.assert_array_equal(d2.spins, spins_of([[0, 1], [1, 0], [0, 1]]))


def test_epochs_assign_states_and_drop_crossing_bins():
    # bins of 0.1: [0,.1) [.1,.2) wake; [.2,.3) crosses 0.25 -> dropped; [.3,.4) deep;
    # [.4,.5) outside every epoch -> dropped; [.5, .6) deep
    epochs = {"wake": [(0.0, 0.2)], "deep": [(0.25, 0.4), (0.5, 0.6)]}
    with pytest.warns(DataWarning, match=re.escape(
            "dropped 2 of 6 bins not inside one epoch (1 cross an epoch boundary, "
            "1 lie outside every epoch)")):
        d = SpikeData.from_spike_times([[0.0, 0.22, 0.35, 0.45, 0.55], [0.15]], bin_size=0.1,
                                       epochs=epochs)
    assert d.states.tolist() == ["wake", "wake", "deep", "deep"]
    np.testing.assert_array_equal(d.spins, spins_of([[1, 0], [0, 1], [1, 0], [1, 0]]))
    with pytest.warns(DataWarning, match="dropped 2 of 6 bins"):
        same = SpikeData.from_spike_times(
            [[0.0, 0.22, 0.35, 0.45, 0.55], [0.15]], bin_size=0.1,
            epochs=Epochs(["deep", "wake", "deep"], [0.5, 0.0, 0.25], [0.6, 0.2, 0.4]))
    np.testing.assert_array_equal(same.spins, d.spins)
    assert same.states.tolist() == d.states.tolist()


def test_touching_epochs_keep_every_bin():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        d = SpikeData.from_spike_times([[0.05, 0.35]], bin_size=0.1,
                                       epochs={"a": [(0, 0.3)], "b": [(0.3, 0.4)]})
    assert d.states.tolist() == ["a", "a", "a", "b"]


# ------------------------------------------------------------------------- rasters


def test_from_raster_01_pm1_bool_and_orientation():
    r = np.array([[0, 1, 1], [1, 0, 0], [0, 0, 1], [1, 1, 0]])
    a = SpikeData.from_raster(r)
    b = SpikeData.from_raster(2 * r - 1)
    c = SpikeData.from_raster(r.astype(bool))
    d = SpikeData.from_raster(r.T)  # 3 x 4: more columns than rows -> neurons x bins
    for x in (b, c, d):
        np.testing.assert_array_equal(x.spins, a.spins)
    assert a.spins.dtype == np.int8 and a.num_bins == 4 and a.num_neurons == 3
    forced = SpikeData.from_raster(r, orientation="neurons-by-bins")
    assert forced.spins.shape == (3, 4)
    np.testing.assert_array_equal(to_spins(r), 2 * r - 1)
    np.testing.assert_array_equal(a.firing_probability, r.mean(0))


def test_inactive_neurons_marked_kept_and_warned():
    r = np.array([[0, 1, 1], [0, 0, 1], [0, 1, 1], [0, 0, 1]])
    with pytest.warns(DataWarning, match=re.escape(
            "neurons that never fire: 'x'; fire in every bin: 'z' (kept, listed in "
            "inactive_neurons)")):
        d = SpikeData.from_raster(r, neuron_ids=["x", "y", "z"])
    assert d.num_neurons == 3
    assert d.inactive_neurons.tolist() == ["x", "z"]
    s = d.summary()
    assert s["never_fire"] == ["x"] and s["always_fire"] == ["z"]
    assert np.isfinite(s["mean_pairwise_correlation"])


# ------------------------------------------------------------------------- selection


@pytest.fixture
def labelled():
    rng = np.random.default_rng(0)
    r = (rng.random((200, 5)) < [0.5, 0.3, 0.02, 0.4, 0.2]).astype(int)
    states = np.array(["wake"] * 120 + ["deep"] * 80)
    return SpikeData.from_raster(r, neuron_ids=list("abcde"),
                                 cell_types=["E", "E", "E", "I", "I"], states=states,
                                 bin_size=0.05, time_units="s"), r, states


def test_select_population_state_min_rate(labelled):
    d, r, states = labelled
    e = d.select(population="E")
    assert e.neuron_ids.tolist() == ["a", "b", "c"] and e.cell_types.tolist() == ["E"] * 3
    assert d.select(population="E,I").num_neurons == 5
    assert d.select(population=["I"]).neuron_ids.tolist() == ["d", "e"]
    deep = d.select(state="deep")
    assert deep.num_bins == 80 and set(deep.states.tolist()) == {"deep"}
    np.testing.assert_array_equal(deep.spins, 2 * r[states == "deep"] - 1)
    p_deep = r[states == "deep"].mean(0)
    sel = d.select(state="deep", min_rate=0.1)
    assert sel.neuron_ids.tolist() == [n for n, p in zip("abcde", p_deep, strict=True) if p >= 0.1]
    assert sel.selection == {"state": "deep", "min_rate": 0.1}
    both = d.select(population="E", state="wake", min_rate=0.1)
    assert both.neuron_ids.tolist() == ["a", "b"] and both.num_bins == 120
    assert d.select() is d


def test_select_errors_name_the_selection(labelled):
    d, _, _ = labelled
    with pytest.raises(DataError, match=re.escape(
            "selection state='rem' leaves zero bins: no bins of state 'rem' "
            "(states present: deep, wake)")):
        d.select(state="rem")
    with pytest.raises(DataError, match=re.escape(
            "selection population='X' leaves zero neurons: no neurons of cell type 'X' "
            "(cell types present: E, I)")):
        d.select(population="X")
    with pytest.raises(DataError, match=re.escape(
            "selection population='E', min_rate=0.9 leaves zero neurons")):
        d.select(population="E", min_rate=0.9)
    plain = SpikeData.from_raster(np.eye(4, 2, dtype=int))
    with pytest.raises(DataError, match=re.escape(
            "population='E' asked for, but the data have no cell types")):
        plain.select(population="E")
    with pytest.raises(DataError, match=re.escape(
            "state='wake' asked for, but the data have no states")):
        plain.select(state="wake")
    with pytest.raises(DataError, match=re.escape("min_rate must be in [0, 1], got 1.5")):
        d.select(min_rate=1.5)


# ------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("times, message", [
    ([[0.1, np.nan]], "spike time nan of neuron '0' at position 1 is not finite"),
    ([[0.1], [np.inf]], "spike time inf of neuron '1' at position 0 is not finite"),
    ([[0.1, -0.5]], "spike time -0.5 of neuron '0' at position 1 is negative"),
])
def test_bad_spike_times(times, message):
    with pytest.raises(DataError, match=re.escape(message)):
        SpikeData.from_spike_times(times, bin_size=0.1)


def test_unsorted_spike_times_are_sorted_with_warning():
    with pytest.warns(DataWarning, match=re.escape(
            "spike times of neuron 'b' are not sorted (position 1); sorted them")):
        d = SpikeData.from_spike_times([[0.0], [0.25, 0.05]], bin_size=0.1,
                                       neuron_ids=["a", "b"])
    np.testing.assert_array_equal(d.spins[:, 1], [1, -1, 1])


@pytest.mark.parametrize("kwargs, message", [
    (dict(spike_times=[0.1, 0.2, 0.3], spike_neurons=[0, 1]),
     "spike_times has 3 entries but spike_neurons has 2"),
    (dict(spike_times=[[0.1], [0.2]], neuron_ids=["a"]),
     "neuron_ids has 1 entries but the data have 2 neurons (spike trains)"),
    (dict(spike_times=[[0.1], [0.2]], cell_types=["E", "I", "I"]),
     "cell_types has 3 entries but the data have 2 neurons"),
    (dict(spike_times=[0.1, 0.2], spike_neurons=["a", "q"], neuron_ids=["a", "b"]),
     "spike_neurons contains neuron 'q', which is not in neuron_ids"),
    (dict(spike_times=[[0.1]], epochs={"wake": [(0, 1)], "deep": [(0.5, 2)]}),
     "epochs 'wake' [0, 1) and 'deep' [0.5, 2) overlap"),
    (dict(spike_times=[[0.1]], epochs={"wake": [(1, 0.5)]}),
     "epoch 'wake' [1.0, 0.5) has start >= stop"),
    (dict(spike_times=[[0.1]], epochs=(["a", "b"], [0, 1], [1])),
     "epochs: 2 names, 2 starts and 1 stops (the lengths must match)"),
    (dict(spike_times=[[0.1]], epochs={"a": [(0.0, np.nan)]}),
     "epoch 'a' [0.0, nan) has a non-finite bound"),
    (dict(spike_times=[[0.1]], bin_size=0.0), "bin_size must be a positive number, got 0.0"),
    (dict(spike_times=[[0.1]], time_units="min"),
     "unknown time_units 'min' (expected one of s, ms, us)"),
    (dict(spike_times=[[0.5]], epochs={"a": [(0.0, 0.05)]}),
     "binning gives zero bins (check bin_size, t_start/t_stop, epochs)"),
])
def test_bad_spike_time_inputs(kwargs, message):
    kwargs = {"bin_size": 0.1, **kwargs}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        with pytest.raises(DataError, match=re.escape(message)):
            SpikeData.from_spike_times(**kwargs)


@pytest.mark.parametrize("raster, message", [
    ([[0, 1], [1, 2], [0, 0]], "raster value 2 at row 1, column 1 is not binary: values must be "
     "in {0, 1} or in {-1, +1}"),
    ([[0, 1], [-1, 1], [0, 0]], "raster value -1 at row 1, column 0 is not binary: values must "
     "be in {0, 1} or in {-1, +1} (the raster also contains 0)"),
    ([[1.0, -1.0], [0.5, 1.0], [1, 1]], "raster value 0.5 at row 1, column 0 is not binary"),
    ([[1.0, 0.0], [0.0, np.nan], [1, 1]], "raster value nan at row 1, column 1 is not finite"),
    ([1, 0, 1], "raster must be 2-D (bins x neurons), got shape (3,)"),
])
def test_bad_raster_values(raster, message):
    with pytest.raises(DataError, match=re.escape(message)):
        SpikeData.from_raster(np.asarray(raster))


def test_raster_label_lengths_and_duplicates():
    r = np.eye(4, 2, dtype=int)
    with pytest.raises(DataError, match=re.escape(
            "neuron_ids has 3 entries but the data have 2 neurons")):
        SpikeData.from_raster(r, neuron_ids=["a", "b", "c"])
    with pytest.raises(DataError, match=re.escape(
            "states has 2 entries but the data have 4 bins")):
        SpikeData.from_raster(r, states=["a", "b"])
    with pytest.raises(DataError, match=re.escape(
            "neuron_ids are not unique: 'a' appears more than once")):
        SpikeData.from_raster(r, neuron_ids=["a", "a"])
    with pytest.raises(DataError, match=re.escape(
            "unknown orientation 'rows' (expected bins-by-neurons or neurons-by-bins)")):
        SpikeData.from_raster(r, orientation="rows")


# ------------------------------------------------------------------------- loaders


@pytest.fixture
def raster01():
    rng = np.random.default_rng(1)
    return (rng.random((50, 4)) < [0.3, 0.1, 0.5, 0.2]).astype(np.uint8)


def test_npz_raster_round_trip(tmp_path, labelled):
    d, _, _ = labelled
    path = d.to_npz(tmp_path / "d.npz")
    back = load(path)
    np.testing.assert_array_equal(back.spins, d.spins)
    for key in ("neuron_ids", "cell_types", "states"):
        assert getattr(back, key).tolist() == getattr(d, key).tolist()
    assert back.bin_size == 0.05 and back.time_units == "s" and back.source == str(path)
    with np.load(path, allow_pickle=False) as z:
        assert sorted(z.files) == ["bin_size", "cell_types", "neuron_ids", "raster", "states",
                                   "time_units"]
    from bayes_ising.errors import ExistingOutputError
    with pytest.raises(ExistingOutputError):
        d.to_npz(path)
    d.to_npz(path, force=True)


def test_npz_spike_times_layout(tmp_path):
    path = tmp_path / "t.npz"
    np.savez(path, spike_times=np.array([0.0, 0.12, 0.31, 0.05, 0.21]),
             spike_neurons=np.array([1, 1, 1, 2, 2]), bin_size=0.1, time_units="s",
             neuron_ids=np.array([1, 2, 3]), cell_types=np.array(["E", "I", "E"]),
             state_names=np.array(["wake", "deep"]), state_starts=np.array([0.0, 0.2]),
             state_stops=np.array([0.2, 0.4]))
    with pytest.warns(DataWarning, match="never fire: '3'"):
        d = load(path)
    np.testing.assert_array_equal(d.spins, spins_of([[1, 1, 0], [1, 0, 0], [0, 1, 0],
                                                     [1, 0, 0]]))
    assert d.states.tolist() == ["wake", "wake", "deep", "deep"]
    assert d.neuron_ids.tolist() == ["1", "2", "3"] and d.cell_types.tolist() == ["E", "I", "E"]
    # bin size given by the caller in ms, converted to the file's seconds
    with pytest.warns(DataWarning):
        d2 = load(path, bin_size=200, time_units="ms")
    assert d2.bin_size == pytest.approx(0.2) and d2.time_units == "s"
    np.testing.assert_array_equal(d2.spins, spins_of([[1, 1, 0], [1, 1, 0]]))


def test_npz_raster_with_epochs_and_units(tmp_path):
    # bins of 0.1 s from t_start = 1.0: [1.0, 1.1) [1.1, 1.2) a; [1.2, 1.3) crosses 1.25 (dropped);
    # [1.3, 1.4) b
    path = tmp_path / "r.npz"
    raster = np.array([[1, 0], [0, 0], [1, 1], [0, 1]])
    np.savez(path, raster=raster, bin_size=0.1, time_units="s", t_start=1.0,
             state_names=np.array(["a", "b"]), state_starts=np.array([1.0, 1.25]),
             state_stops=np.array([1.2, 1.4]))
    with pytest.warns(DataWarning, match="r.npz: dropped 1 of 4 bins not inside one epoch"):
        d = load(path)
    assert d.states.tolist() == ["a", "a", "b"]
    np.testing.assert_array_equal(d.spins, spins_of(raster[[0, 1, 3]]))
    # the file's bin size re-expressed in the requested units
    with pytest.warns(DataWarning, match="dropped 1 of 4"):
        ms = load(path, time_units="ms")
    assert ms.states.tolist() == ["a", "a", "b"]
    assert ms.bin_size == pytest.approx(100.0) and ms.time_units == "ms"


def test_npz_bad_files(tmp_path):
    p = tmp_path / "obj.npz"
    np.savez(p, raster=np.array([[0, 1], [1, 0]], dtype=object))
    with pytest.raises(DataError, match=re.escape(
            "key 'raster' of obj.npz cannot be loaded without pickle")):
        load(p)
    p = tmp_path / "none.npz"
    np.savez(p, foo=np.zeros(3))
    with pytest.raises(DataError, match=re.escape(
            "none.npz has neither 'raster' nor 'spike_times' (keys: foo)")), pytest.warns(
                DataWarning, match=re.escape("none.npz: ignoring unknown keys foo")):
        load(p)
    p = tmp_path / "nobin.npz"
    np.savez(p, spike_times=np.array([0.1]), spike_neurons=np.array([0]))
    with pytest.raises(DataError, match=re.escape(
            "nobin.npz holds spike times: give a bin size (--bin-size / bin_size)")):
        load(p)
    p = tmp_path / "bad.npz"
    np.savez(p, raster=np.array([[0, 1], [3, 0], [0, 0]]))
    with pytest.raises(DataError, match=re.escape(
            "key 'raster' in bad.npz: raster value 3 at row 1, column 0 is not binary")):
        load(p)
    p = tmp_path / "ep.npz"
    np.savez(p, spike_times=np.array([0.1]), spike_neurons=np.array([0]), bin_size=0.1,
             state_names=np.array(["a", "b"]), state_starts=np.array([0.0, 1.0]),
             state_stops=np.array([2.0, 3.0]))
    with pytest.raises(DataError, match=re.escape(
            "ep.npz: epochs 'a' [0, 2) and 'b' [1, 3) overlap")):
        load(p)
    p = tmp_path / "x.txt"
    p.write_text("0 1\n1 0\n")
    with pytest.raises(DataError, match=re.escape(
            "unknown data format '.txt' of x.txt (expected .npz, .mat, .nwb or .npy)")):
        load(p)
    with pytest.raises(FileNotFoundError):
        load(tmp_path / "missing.npz")


def test_npy(tmp_path, raster01):
    p = tmp_path / "r.npy"
    np.save(p, raster01.T)  # neurons x bins: inferred
    d = load(p, bin_size=20, time_units="ms")
    np.testing.assert_array_equal(d.spins, 2 * raster01.astype(int) - 1)
    assert d.bin_size == 20 and d.time_units == "ms"
    np.save(p, np.array([[0, 1], [1, 0]], dtype=object), allow_pickle=True)
    with pytest.raises(DataError, match=re.escape("cannot read r.npy without pickle")):
        load(p)


def test_matlab_v5(tmp_path, raster01):
    p = tmp_path / "v5.mat"
    scipy.io.savemat(p, {"spikes": raster01.T.astype(float), "note": "x", "scalar": 3.0})
    d = load(p)
    np.testing.assert_array_equal(d.spins, 2 * raster01.astype(int) - 1)
    assert d.source == str(p)
    forced = load(p, orientation="neurons-by-bins")
    np.testing.assert_array_equal(forced.spins, 2 * raster01.astype(int) - 1)
    p2 = tmp_path / "two.mat"
    scipy.io.savemat(p2, {"a": raster01, "b": raster01[:, :2]})
    with pytest.raises(DataError, match=re.escape(
            "two.mat has several 2-D arrays (a, b); choose one with --variable")):
        load(p2)
    np.testing.assert_array_equal(load(p2, variable="b").spins, 2 * raster01[:, :2].astype(int) - 1)
    with pytest.raises(DataError, match=re.escape(
            "two.mat has no variable 'c' (variables: a, b)")):
        load(p2, variable="c")


def _write_mat73(path, variables):
    """A MATLAB v7.3 file as MATLAB writes it: 512-byte header block, then HDF5 with each
    variable stored transposed (column-major), with its MATLAB_class attribute."""
    with h5py.File(path, "w", userblock_size=512) as f:
        for name, value in variables.items():
            value = np.asarray(value)
            ds = f.create_dataset(name, data=value.T)
            ds.attrs["MATLAB_class"] = np.bytes_("double" if value.dtype.kind == "f" else "uint8")
    header = b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: test HDF5 schema 1.00 ."
    with open(path, "r+b") as f:
        f.write(header.ljust(116, b" ") + b"\x00" * 8 + b"\x00\x02IM")


def test_matlab_v73_transposed_layout(tmp_path, raster01):
    p = tmp_path / "v73.mat"
    _write_mat73(p, {"spk": raster01})  # MATLAB variable of size bins x neurons
    with h5py.File(p, "r") as f:
        assert f["spk"].shape == (4, 50)  # stored transposed, as MATLAB does
    # forcing the orientation checks the transpose itself, not only the inference
    d = load(p, orientation="bins-by-neurons")
    np.testing.assert_array_equal(d.spins, 2 * raster01.astype(int) - 1)
    np.testing.assert_array_equal(load(p).spins, d.spins)
    # detected by the HDF5 signature, not by the extension
    p5 = tmp_path / "v5.mat"
    scipy.io.savemat(p5, {"spk": raster01})
    np.testing.assert_array_equal(load(p5).spins, d.spins)
    pbad = tmp_path / "junk.mat"
    pbad.write_bytes(b"not a mat file at all" * 10)
    with pytest.raises(DataError, match=re.escape("cannot read junk.mat as a MATLAB file")):
        load(pbad)


def test_retina15(retina_path):
    d = load(retina_path)
    assert (d.num_bins, d.num_neurons) == (40000, 15)
    p = d.firing_probability
    assert 0.0030 < p.min() < 0.0036 and 0.27 < p.max() < 0.28
    with h5py.File(retina_path, "r") as f:
        raw = np.asarray(f["spikes15"])
    assert raw.shape == (40000, 15)  # HDF5 view; the MATLAB variable is 15 x 40000
    np.testing.assert_array_equal(d.spins, 2 * raw.astype(int) - 1)
    assert d.inactive_neurons.size == 0


def test_nwb_units_table(tmp_path):
    pynwb = pytest.importorskip("pynwb")
    from datetime import UTC, datetime

    nwb = pynwb.NWBFile(session_description="test", identifier="units",
                        session_start_time=datetime(2020, 1, 1, tzinfo=UTC))
    nwb.add_unit_column(name="cell_type", description="E or I")
    nwb.add_unit(spike_times=[0.0, 0.15, 0.31], cell_type="E", id=7)
    nwb.add_unit(spike_times=[0.05, 0.26], cell_type="I", id=9)
    nwb.add_epoch(start_time=0.0, stop_time=0.2, tags=["wake"])
    nwb.add_epoch(start_time=0.2, stop_time=0.4, tags=["deep"])
    p = tmp_path / "u.nwb"
    with pynwb.NWBHDF5IO(str(p), "w") as io:
        io.write(nwb)
    d = load(p, bin_size=100, time_units="ms")
    assert d.neuron_ids.tolist() == ["7", "9"] and d.cell_types.tolist() == ["E", "I"]
    assert d.states.tolist() == ["wake", "wake", "deep", "deep"]
    assert d.bin_size == pytest.approx(0.1) and d.time_units == "s"
    np.testing.assert_array_equal(d.spins, spins_of([[1, 1], [1, 0], [0, 1], [1, 0]]))
    with pytest.raises(DataError, match=re.escape(
            "u.nwb holds spike times: give a bin size (--bin-size / bin_size)")):
        load(p)


def _dandi_sleep_nwb(path, *, epochs=False, extra_text_column=False):
    """An NWB file in the layout of DANDI's sleep datasets: cell types in a Units column
    'cell_class', states in ``intervals/sleep_states`` with a 'label' column."""
    pynwb = pytest.importorskip("pynwb")
    from datetime import UTC, datetime

    from pynwb.epoch import TimeIntervals

    nwb = pynwb.NWBFile(session_description="sleep", identifier="dandi-like",
                        session_start_time=datetime(2020, 1, 1, tzinfo=UTC))
    nwb.add_unit_column(name="cell_class", description="putative E (pyramidal) or I")
    nwb.add_unit_column(name="region", description="recording site")
    nwb.add_unit(spike_times=[0.0, 0.15, 0.31], cell_class="E", region="CA1", id=3)
    nwb.add_unit(spike_times=[0.05, 0.26], cell_class="I", region="CA1", id=4)
    states = TimeIntervals(name="sleep_states", description="sleep scoring")
    states.add_column(name="label", description="state")
    if extra_text_column:
        states.add_column(name="scorer", description="who scored")
    for start, stop, label in [(0.0, 0.2, "wake"), (0.2, 0.4, "nrem")]:
        row = dict(start_time=start, stop_time=stop, label=label)
        if extra_text_column:
            row["scorer"] = "x"
        states.add_row(**row)
    nwb.add_time_intervals(states)
    if epochs:
        nwb.add_epoch(start_time=0.0, stop_time=0.4, tags=["session"])
    with pynwb.NWBHDF5IO(str(path), "w") as io:
        io.write(nwb)
    return path


def test_nwb_dandi_sleep_layout_found_automatically(tmp_path):
    p = _dandi_sleep_nwb(tmp_path / "s.nwb")
    d = load(p, bin_size=0.1)
    assert d.neuron_ids.tolist() == ["3", "4"] and d.cell_types.tolist() == ["E", "I"]
    assert d.states.tolist() == ["wake", "wake", "nrem", "nrem"]
    np.testing.assert_array_equal(d.spins, spins_of([[1, 1], [1, 0], [0, 1], [1, 0]]))
    # the table and columns used are said
    assert d.source == (f"{p} (cell types from Units column 'cell_class'; states from "
                        "intervals/sleep_states column 'label')")


def test_nwb_several_candidates_need_the_flags(tmp_path):
    p = _dandi_sleep_nwb(tmp_path / "two.nwb", epochs=True, extra_text_column=True)
    with pytest.raises(DataError, match=re.escape(
            "two.nwb has several interval tables that could hold states (epochs, sleep_states):"
            " choose one with --states-table")):
        load(p, bin_size=0.1)
    # 'label' is a known state-column name: chosen over 'scorer' without a flag
    d = load(p, bin_size=0.1, states_table="sleep_states")
    assert d.states.tolist() == ["wake", "wake", "nrem", "nrem"]
    d = load(p, bin_size=0.1, states_table="sleep_states", state_column="scorer")
    assert d.states.tolist() == ["x"] * 4
    d = load(p, bin_size=0.1, states_table="epochs", cell_type_column="region")
    assert d.states.tolist() == ["session"] * 4 and d.cell_types.tolist() == ["CA1", "CA1"]
    assert "states from intervals/epochs (first tag)" in d.source
    with pytest.raises(DataError, match=re.escape(
            "two.nwb has no interval table 'sleep' (interval tables: epochs, sleep_states)")):
        load(p, bin_size=0.1, states_table="sleep")
    with pytest.raises(DataError, match="the Units table of two.nwb has no column 'type'"):
        load(p, bin_size=0.1, states_table="epochs", cell_type_column="type")
    with pytest.raises(DataError, match=re.escape(
            "--states-table applies to .nwb files only (x.npy is not one)")):
        np.save(tmp_path / "x.npy", np.zeros((4, 2)))
        load(tmp_path / "x.npy", states_table="sleep_states")


def test_cli_nwb_flags(tmp_path, capsys):
    from bayes_ising.cli import main

    p = _dandi_sleep_nwb(tmp_path / "two.nwb", epochs=True)
    out = tmp_path / "summary.json"
    assert main(["summary", str(p), "--bin-size", "100", "--time-units", "ms",
                 "--states-table", "sleep_states", "--out", str(out)]) == 0
    assert "states from intervals/sleep_states column 'label'" in capsys.readouterr().out
    assert main(["summary", str(p), "--bin-size", "0.1"]) == 2
    assert "choose one with --states-table" in capsys.readouterr().err


# ------------------------------------------------------------------------- bin-size guard


def _ms_recording(num_neurons=50, minutes=30, rate_hz=5.0, seed=0):
    """Spike times in ms (a 30-min recording at ~5 Hz per neuron; neuron 0 also fires 0.05 ms
    before the end, so read as seconds with 0.05 s bins it spans exactly 36 M bins)."""
    rng = np.random.default_rng(seed)
    duration_ms = minutes * 60e3
    trains = [np.sort(rng.uniform(0, duration_ms - 1, int(rate_hz * minutes * 60)))
              for _ in range(num_neurons)]
    trains[0] = np.append(trains[0], duration_ms - 0.05)
    return trains


def test_bin_size_unit_mix_up_refused_before_allocation():
    """Spike times in ms read as seconds with 50 ms bins meant as 0.05 s: 36 million bins x
    50 neurons (the issue-14 case that grew to 24 GB). Refused with the bin count and the
    likely mix-up, and before the raster is allocated (peak traced memory < 50 MB, the
    spike trains themselves being ~22 MB)."""
    import tracemalloc

    trains = _ms_recording()
    tracemalloc.start()
    try:
        with pytest.raises(DataError) as err:
            SpikeData.from_spike_times(trains, bin_size=0.05)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 50e6
    message = str(err.value)
    assert "36,000,000 bins × 50 neurons" in message
    assert "are the spike times in ms? then pass --time-units ms" in message
    assert "--bin-size 50 for 0.05 s bins" in message
    # the fix the message suggests works
    d = SpikeData.from_spike_times(trains, bin_size=50, time_units="ms")
    assert d.num_bins == 36_000 and 0.2 < d.firing_probability.mean() < 0.25


def test_bin_size_implausible_when_memory_would_fit():
    """5 neurons: 36 M bins x 5 fits under the entry limit, but the median neuron spikes in
    9000 / 36e6 = 0.025% of bins (< MIN_SPIKES_PER_BIN = 0.1%): refused as implausible."""
    trains = _ms_recording(num_neurons=5)
    with pytest.raises(DataError, match=re.escape(
            "would make 36,000,000 bins × 5 neurons (a 1.8e+06 s recording) in which the median"
            " neuron spikes in 0.025% of bins: implausible for spikes; are the spike times in "
            "ms?")):
        SpikeData.from_spike_times(trains, bin_size=0.05)


def test_bin_width_outside_spike_range_refused():
    trains = [np.array([1.0, 2.0, 3.5])]
    with pytest.raises(DataError, match=re.escape(
            "bin size 0.05 ms (5e-05 s) is implausible for spikes (expected 0.1 ms to 3600 s;"
            " binning would make 71 bins × 1 neurons); --bin-size (bin_size) is in "
            "--time-units (ms): for 0.05 s bins give --bin-size 50")):
        SpikeData.from_spike_times(trains, bin_size=0.05, time_units="ms")
    with pytest.raises(DataError, match="bin size 7200 s .* is implausible for spikes"):
        SpikeData.from_spike_times(trains, bin_size=7200)


def test_cli_summary_refuses_ms_times_with_seconds_bin(tmp_path, capsys):
    """Every verb loads through ``cli.load_selected_data``: ``summary`` is the one tried."""
    from bayes_ising.cli import main

    trains = _ms_recording()
    path = tmp_path / "ms.npz"
    np.savez(path, spike_times=np.concatenate(trains),
             spike_neurons=np.repeat(np.arange(50), [len(t) for t in trains]))
    assert main(["summary", str(path), "--bin-size", "0.05"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "36,000,000 bins × 50 neurons" in err[0]
    assert "--time-units ms" in err[0]


def test_study_verb_refuses_unit_mix_up_and_takes_nwb_flags(tmp_path, capsys):
    """``study`` loads with the same guard and NWB flags as the other verbs (refused before
    any fit: exit 2, one line, nothing written)."""
    from bayes_ising.cli import main

    trains = _ms_recording()
    path = tmp_path / "ms.npz"
    np.savez(path, spike_times=np.concatenate(trains),
             spike_neurons=np.repeat(np.arange(50), [len(t) for t in trains]))
    out = tmp_path / "study"
    assert main(["study", str(path), "--bin-size", "0.05", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "36,000,000 bins × 50 neurons" in err[0]
    assert not out.exists()
    nwb = _dandi_sleep_nwb(tmp_path / "two.nwb", epochs=True)
    assert main(["study", str(nwb), "--bin-size", "0.1", "--out", str(out)]) == 2
    assert "choose one with --states-table" in capsys.readouterr().err
