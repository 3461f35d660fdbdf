"""Cross-engine checks: the OpenCL twin of a layer must compute what its numpy body does.

`compare_engines` builds the same layer twice from one LayerParameter, once per engine,
feeds both the same bottoms, parameters and top diffs, and compares every top, every
bottom diff and every parameter diff. The RNG is reseeded before each engine runs, so
layers that draw random numbers (Dropout) must draw the same ones on both engines.

Tolerance: float32 with sums taken in another order (GEMM tiles, tree reductions),
so agreement is to a few ulps of the magnitudes involved, not bit for bit:
|gpu - cpu| <= atol + rtol * |cpu| with rtol = 1e-4, atol = 1e-5 by default.
"""
from __future__ import annotations

import numpy as np

from minicaffe import common
from minicaffe.blob import Blob
from minicaffe.layer import create_layer


def _run(layer_param, bottoms, top_count, params, top_diffs, propagate_down, mode, seed):
    with common.using_mode(mode):
        common.set_random_seed(seed)
        layer = create_layer(layer_param)
        bottom = []
        for array in bottoms:
            blob = Blob(array.shape)
            blob.mutable_cpu_data()[...] = array
            bottom.append(blob)
        top = [Blob() for _ in range(top_count)]
        layer.setup(bottom, top)
        for blob, array in zip(layer.blobs, params or []):
            blob.mutable_cpu_data()[...] = array
        params = [b.cpu_data().copy() for b in layer.blobs]
        common.set_random_seed(seed)
        layer.forward(bottom, top)
        tops = [t.cpu_data().copy() for t in top]
        if top_diffs is None:
            top_diffs = [np.random.default_rng(seed).uniform(-1, 1, t.shape).astype(np.float32)
                         for t in top]
        for t, d in zip(top, top_diffs):
            t.mutable_cpu_diff()[...] = d
        for b in layer.blobs:
            b.mutable_cpu_diff()[...] = 0
        pd = propagate_down if propagate_down is not None else [True] * len(bottom)
        diffs = None
        if pd is not False:
            layer.backward(top, pd, bottom)
            diffs = ([b.cpu_diff().copy() for b, p in zip(bottom, pd) if p],
                     [b.cpu_diff().copy() for b in layer.blobs])
        return tops, diffs, params, top_diffs


def compare_engines(layer_param, bottoms, top_count=1, *, params=None, top_diffs=None,
                    propagate_down=None, backward=True, rtol=1e-4, atol=1e-5, seed=1701):
    """Assert the numpy and OpenCL engines agree on forward and backward for one layer.

    `bottoms`: numpy arrays for the bottom blobs. `propagate_down`: per bottom (default all).
    `backward=False` checks forward only (for layers without a gradient, like Accuracy).
    Returns the numpy engine's tops.
    """
    bottoms = [np.asarray(b, dtype=np.float32) for b in bottoms]
    pd = propagate_down if backward else False
    cpu_tops, cpu_diffs, params, top_diffs = _run(layer_param, bottoms, top_count, params, top_diffs,
                                                  pd, common.CPU, seed)
    gpu_tops, gpu_diffs, _, _ = _run(layer_param, bottoms, top_count, params, top_diffs,
                                     pd, common.GPU, seed)
    name = f"{layer_param.type} layer {layer_param.name!r}"
    for i, (c, g) in enumerate(zip(cpu_tops, gpu_tops)):
        np.testing.assert_allclose(g, c, rtol=rtol, atol=atol, err_msg=f"{name}: top {i} differs")
    if backward:
        for kind, cs, gs in (("bottom diff", cpu_diffs[0], gpu_diffs[0]),
                             ("param diff", cpu_diffs[1], gpu_diffs[1])):
            for i, (c, g) in enumerate(zip(cs, gs)):
                np.testing.assert_allclose(g, c, rtol=rtol, atol=atol, err_msg=f"{name}: {kind} {i} differs")
    return cpu_tops
