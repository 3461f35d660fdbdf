"""Silence: no tops, forward changes nothing, backward zeroes exactly the diffs asked for,
on both engines; bad blob counts. Tests taking `mode` run once per engine."""
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
from tests.strategies import blob_from, blobs, layer_param


def silence(name="silence"):
    return create_layer(layer_param("Silence", name=name))


def test_backward_zeroes_only_the_diffs_asked_for(mode):
    a, b = blob_from([[1.0, 2.0]]), blob_from([3.0, 4.0, 5.0])
    a.diff, b.diff = [[7.0, 7.0]], [8.0, 8.0, 8.0]
    layer = silence()
    layer.setup([a, b], [])
    layer.forward([a, b], [])
    np.testing.assert_array_equal(a.cpu_data(), [[1, 2]])  # forward leaves the bottoms alone
    layer.backward([], [True, False], [a, b])
    np.testing.assert_array_equal(a.cpu_diff(), [[0, 0]])
    np.testing.assert_array_equal(b.cpu_diff(), [8, 8, 8])


@given(bottoms=st.lists(blobs(max_side=3), min_size=1, max_size=3))
def test_gradient(mode, bottoms):
    # No top: the objective is 0 whatever the bottoms, so the gradient must be 0. Diffs
    # start at 5, so a backward that forgot to write them would fail.
    for blob in bottoms:
        blob.diff = np.full(blob.shape, 5.0)
    GradientChecker(1e-2, 1e-3).check_gradient(silence(), bottoms, [])
    for blob in bottoms:
        np.testing.assert_array_equal(blob.cpu_diff(), 0)


@pytest.mark.opencl
@given(bottoms=st.lists(blobs(max_side=3), min_size=1, max_size=3), data=st.data())
def test_engines_agree(bottoms, data):
    down = data.draw(st.lists(st.booleans(), min_size=len(bottoms), max_size=len(bottoms)))
    compare_engines(layer_param("Silence"), [b.cpu_data() for b in bottoms], 0,
                    propagate_down=down, rtol=0, atol=0)


@pytest.mark.opencl
def test_device_path_makes_no_host_copies():
    x = blob_from([1.0, 2.0])
    x.diff = [3.0, 4.0]
    layer = silence()
    with common.using_mode(common.GPU):
        layer.setup([x], [])
        x.gpu_data(), x.gpu_diff()
        before = dict(SyncedMemory.transfers)
        layer.forward([x], [])
        layer.backward([], [True], [x])
        assert SyncedMemory.transfers == before
    np.testing.assert_array_equal(x.cpu_diff(), [0, 0])


def test_bad_blob_counts(mode):
    with pytest.raises(MinicaffeError, match=r"Silence layer 'quiet' takes at least 1 bottom"):
        silence("quiet").setup([], [])
    with pytest.raises(MinicaffeError, match=r"Silence layer 'quiet' takes exactly 0 top"):
        silence("quiet").setup([Blob(2)], [Blob()])
