"""Parameter: the top is the learnable blob (shared memory, both engines), its gradient is
the top diff, given values are kept, bad input. Tests taking `mode` run once per engine."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from minicaffe import common
from minicaffe.blob import Blob
from minicaffe.common import MinicaffeError
from minicaffe.layer import create_layer
from minicaffe.syncedmem import SyncedMemory
from minicaffe.testing import GradientChecker
from minicaffe.testing.engines import compare_engines
from tests.strategies import layer_param, shapes


def parameter_param(shape, name="param", **fields):
    return layer_param("Parameter", name=name, parameter_param={"shape": {"dim": list(shape)}},
                       **fields)


def test_top_is_the_parameter(mode):
    # Values given in the prototxt's `blobs`: the top shows them, and what a consumer
    # writes into the top diff is the parameter's gradient.
    values = [[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]
    layer = create_layer(parameter_param((2, 3), blobs=[{"shape": {"dim": [2, 3]},
                                                         "data": sum(values, [])}]))
    top = Blob()
    layer.setup([], [top])
    assert top.shape == (2, 3) and layer.blobs[0].shape == (2, 3)
    layer.forward([], [top])
    np.testing.assert_array_equal(top.cpu_data(), values)
    top.diff = [[1, 0, 0], [0, 0, -1]]
    layer.backward([top], [], [])
    np.testing.assert_array_equal(layer.blobs[0].cpu_diff(), [[1, 0, 0], [0, 0, -1]])
    layer.blobs[0].data = np.zeros((2, 3))  # a solver step on the parameter shows in the top
    np.testing.assert_array_equal(top.cpu_data(), 0)


def test_starts_at_zero(mode):
    layer, top = create_layer(parameter_param((4,))), Blob()
    layer.setup([], [top])
    layer.forward([], [top])
    np.testing.assert_array_equal(top.cpu_data(), [0, 0, 0, 0])
    assert layer.param_propagate(0)


@given(shape=shapes(max_axes=3, max_side=3), seed=st.integers(0, 2**31 - 1))
def test_gradient(mode, shape, seed):
    layer = create_layer(parameter_param(shape))
    top = Blob()
    layer.setup([], [top])
    layer.blobs[0].data = np.random.default_rng(seed).uniform(-2, 2, shape)
    GradientChecker(1e-2, 1e-3).check_gradient(layer, [], [top])


@pytest.mark.opencl
@given(shape=shapes(max_axes=3, max_side=3), seed=st.integers(0, 2**31 - 1))
def test_engines_agree(shape, seed):
    # Forward only: backward writes nothing of its own (the diff is shared with the top).
    values = np.random.default_rng(seed).uniform(-2, 2, shape)
    compare_engines(parameter_param(shape), [], params=[values], backward=False, rtol=0, atol=0)


@pytest.mark.opencl
def test_device_path_makes_no_host_copies():
    layer, top = create_layer(parameter_param((2,))), Blob()
    with common.using_mode(common.GPU):
        layer.setup([], [top])
        layer.blobs[0].data = [1.0, 2.0]
        layer.blobs[0].gpu_data()
        before = dict(SyncedMemory.transfers)
        layer.forward([], [top])
        top.mutable_gpu_diff()
        layer.backward([top], [], [])
        assert SyncedMemory.transfers == before
        assert top.data_mem is layer.blobs[0].data_mem
    np.testing.assert_array_equal(top.cpu_data(), [1, 2])


def test_given_blob_of_another_size(mode):
    param = parameter_param((2, 3), name="p_bad", blobs=[{"shape": {"dim": [5]}, "data": [0] * 5}])
    with pytest.raises(MinicaffeError, match=r"Parameter layer 'p_bad': expected one parameter "
                                             r"blob of shape \(2, 3\).*got \[\(5,\)\]"):
        create_layer(param).setup([], [Blob()])


def test_bad_blob_counts(mode):
    with pytest.raises(MinicaffeError, match=r"Parameter layer 'p_bad' takes exactly 0 bottom"):
        create_layer(parameter_param((2,), name="p_bad")).setup([Blob(2)], [Blob()])
    with pytest.raises(MinicaffeError, match=r"Parameter layer 'p_bad' takes exactly 1 top"):
        create_layer(parameter_param((2,), name="p_bad")).setup([], [])
