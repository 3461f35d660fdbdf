"""Input: tops shaped from input_param, left alone afterwards; errors.
Tests taking `mode` run once per engine (numpy, OpenCL)."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from minicaffe.blob import Blob
from minicaffe.common import MinicaffeError
from minicaffe.layer import create_layer
from minicaffe.layers.input import InputLayer
from tests.strategies import layer_param, shapes



def input_layer(dims_list, name="input"):
    return create_layer(layer_param("Input", name=name,
                                    input_param={"shape": [{"dim": list(d)} for d in dims_list]}))


def test_one_shape_for_every_top(mode):
    tops = [Blob(), Blob()]
    input_layer([(1, 3, 28, 28)]).setup([], tops)
    assert [t.shape for t in tops] == [(1, 3, 28, 28), (1, 3, 28, 28)]


def test_one_shape_per_top(mode):
    tops = [Blob(), Blob()]
    input_layer([(64, 1, 28, 28), (64,)]).setup([], tops)
    assert [t.shape for t in tops] == [(64, 1, 28, 28), (64,)]


def test_forward_keeps_user_values_and_shape(mode):
    top, layer = Blob(), input_layer([(2, 3)])
    layer.setup([], [top])
    top.data = [[1, 2, 3], [4, 5, 6]]
    layer.forward([], [top])
    np.testing.assert_array_equal(top.cpu_data(), [[1, 2, 3], [4, 5, 6]])
    top.reshape(5, 3)  # the user may reshape an input: forward must not undo it
    layer.forward([], [top])
    assert top.shape == (5, 3)
    assert layer.forward([], [top]) == 0.0
    layer.backward([top], [], [])  # nothing to do, and nothing to fail


@given(tops=st.integers(1, 4), per_top=st.booleans(), data=st.data())
def test_shapes_property(mode, tops, per_top, data):
    dims = [data.draw(shapes(min_axes=0, max_axes=4, min_side=0, max_side=6))
            for _ in range(tops if per_top else 1)]
    blobs_ = [Blob() for _ in range(tops)]
    input_layer(dims).setup([], blobs_)
    assert [b.shape for b in blobs_] == (dims if per_top else dims * tops)


def test_device_body_is_the_host_body():
    # Forward and backward do nothing, so one body serves both engines.
    assert InputLayer.forward_gpu is InputLayer.forward_cpu
    assert InputLayer.backward_gpu is InputLayer.backward_cpu


def test_no_shape_leaves_tops_alone(mode):
    top = Blob(4, 2)
    create_layer(layer_param("Input")).setup([], [top])
    assert top.shape == (4, 2)


def test_shape_count_mismatch(mode):
    with pytest.raises(MinicaffeError, match=r"Input layer 'input_bad': give input_param.shape "
                                             r"once, once per top .* 3 top\(s\) and 2 shape\(s\)"):
        input_layer([(1,), (2,)], name="input_bad").setup([], [Blob(), Blob(), Blob()])


def test_negative_dim(mode):
    with pytest.raises(MinicaffeError, match=r"Input layer 'input_bad': top 0 has a negative"):
        input_layer([(1, -3)], name="input_bad").setup([], [Blob()])


def test_takes_no_bottom(mode):
    with pytest.raises(MinicaffeError, match=r"Input layer 'input_bad' takes exactly 0 bottom"):
        input_layer([(1,)], name="input_bad").setup([Blob(1)], [Blob()])
