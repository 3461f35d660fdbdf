"""Coordinate maps: which pixel of one blob lines up with which pixel of another
(pycaffe's `caffe.coord_map`).

A fully convolutional net shrinks its input with convolutions and pooling, then grows it back
with deconvolutions. The result is about the input's size but usually a few pixels larger and
shifted, and a Crop layer must cut out the part that lines up with the input. This module
works out that offset from the NetSpec graph alone, before any net is built.

## One layer

Along each spatial axis, a layer relates a position `x` in its input to a position `y` in its
output by an affine map `y = scale * x + offset`. With kernel extent `k` (a dilated kernel
covers `(kernel_size - 1) * dilation + 1` pixels), stride `s` and padding `p`:

- Convolution, Pooling, Im2col: output `y` reads inputs `y*s - p ... y*s - p + k - 1`, a
  window centred on `x = y*s - p + (k - 1)/2`. Solved for `y`: scale `1/s`,
  offset `(p - (k - 1)/2) / s`.
- Deconvolution runs that backwards: scale `s`, offset `(k - 1)/2 - p`.
- Crop with offset `o` keeps input `o` as output 0: scale 1, offset `-o`.
- Elementwise layers (ReLU, BatchNorm, Eltwise, ...) keep every pixel where it is: scale 1,
  offset 0.

A map is the triple `(axis, scale, offset)`. `axis` is the last axis that is *not* mapped
(the channel axis, 1, for images): the spatial axes follow it. Elementwise layers work on
any axes, so theirs is None, which fits with any other. `scale` and `offset` are numpy
arrays with one entry per spatial axis, or a single entry for all of them.

## A path of layers

Maps compose like functions: going through `f` then `g` is `y = g.scale * (f.scale * x +
f.offset) + g.offset`. `coord_map_from_to(a, b)` walks back from both tops through the
layers that produced them until the walks meet at a common ancestor blob `c`. It knows the
maps from `c` to `a` and from `c` to `b`; inverting the first and composing with the second
gives the map from `a`'s coordinates to `b`'s. `crop(a, b)` turns that map into a Crop layer
of `a` that lines up with `b`; it needs scale 1 (the same resolution) and a whole, non-negative
number of pixels to cut.
"""
from __future__ import annotations

from collections import deque

import numpy as np

from minicaffe.common import MinicaffeError
from minicaffe.net_spec import Function, Top
from minicaffe.net_spec import layers as L

__all__ = ["PASS_THROUGH_LAYERS", "AxisMismatchException", "CropError", "UndefinedMapException",
           "UnconnectedTopsError", "compose", "conv_params", "coord_map", "coord_map_from_to",
           "crop", "crop_params", "inverse"]

# Layers that compute each output pixel from the input pixel(s) at the same place.
PASS_THROUGH_LAYERS = ["AbsVal", "BatchNorm", "Bias", "BNLL", "Dropout", "Eltwise", "ELU", "Log",
                       "LRN", "Exp", "MVN", "Power", "ReLU", "PReLU", "Scale", "Sigmoid", "Split",
                       "TanH", "Threshold"]

IDENTITY = (None, 1, 0)


class UndefinedMapException(MinicaffeError):
    """The layer type has no coordinate map (InnerProduct, global pooling, ...)."""


class AxisMismatchException(MinicaffeError):
    """Two maps along one path disagree on which axes are spatial."""


# pycaffe raised RuntimeError for unconnected tops and failed an `assert` in `crop`; these keep
# those classes as bases so code written against pycaffe still catches them, and unlike an
# assert they are not stripped by `python -O`.
class UnconnectedTopsError(MinicaffeError, RuntimeError):
    """The two tops share no ancestor reachable through mappable layers."""


class CropError(MinicaffeError, AssertionError):
    """The map between the tops is no crop: another scale, a negative or fractional offset."""


# ---------------------------------------------------------------- one layer
def _layer_params(fn: Function, message: str) -> dict:
    """The keyword arguments of `fn` that describe its geometry: those given inside the
    `message` dict (e.g. `convolution_param=dict(kernel_size=3)`) and those given directly
    (`kernel_size=3`), which NetSpec writes into the same message."""
    nested = fn.params.get(message, {})
    if not isinstance(nested, dict):  # a protobuf message given whole
        nested = {field.name: value for field, value in nested.ListFields()}
    direct = {key: value for key, value in fn.params.items() if not key.endswith("param")}
    return {**nested, **direct}


def _per_axis(fn: Function, p: dict, name: str, short: str, default) -> np.ndarray:
    """A kernel_size / stride / pad setting as an array, one entry per spatial axis (or one
    for all). Caffe's 2-D spellings `<short>_h` and `<short>_w` win over the general one."""
    h, w = p.get(f"{short}_h"), p.get(f"{short}_w")
    if h is not None or w is not None:
        if h is None or w is None:
            raise MinicaffeError(f"{fn.type_name}: {short}_h and {short}_w must be given together")
        return np.array([h, w], dtype=float)
    value = p.get(name, default)
    if value is None:
        raise MinicaffeError(f"{fn.type_name}: no {name} (or {short}_h and {short}_w) given, "
                             "so its coordinate map is unknown")
    return np.array(value, dtype=float, ndmin=1)


def conv_params(fn: Function):
    """`(axis, stride, kernel extent, pad)` of a Convolution, Deconvolution, Im2col or Pooling
    Function, as float arrays; the extent counts dilation in."""
    message = "pooling_param" if fn.type_name == "Pooling" else "convolution_param"
    p = _layer_params(fn, message)
    if p.get("global_pooling"):
        # The kernel is the whole input, whose size the graph does not know.
        raise UndefinedMapException(f"{fn.type_name}: global pooling has no coordinate map")
    kernel = _per_axis(fn, p, "kernel_size", "kernel", None)
    stride = _per_axis(fn, p, "stride", "stride", 1)
    pad = _per_axis(fn, p, "pad", "pad", 0)
    dilation = np.array(p.get("dilation", 1), dtype=float, ndmin=1)
    return p.get("axis", 1), stride, (kernel - 1) * dilation + 1, pad


def crop_params(fn: Function):
    """`(axis, offset)` of a Crop Function, with Caffe's defaults (crop from axis 2, offset 0)."""
    p = _layer_params(fn, "crop_param")
    return p.get("axis", 2), np.array(p.get("offset", 0), dtype=float, ndmin=1)


def coord_map(fn: Function):
    """The `(axis, scale, offset)` map from the input coordinates of layer `fn` to its output
    coordinates; UndefinedMapException for a layer type without one."""
    if fn.type_name in ("Convolution", "Pooling", "Im2col"):
        axis, stride, extent, pad = conv_params(fn)
        return axis, 1 / stride, (pad - (extent - 1) / 2) / stride
    if fn.type_name == "Deconvolution":
        axis, stride, extent, pad = conv_params(fn)
        return axis, stride, (extent - 1) / 2 - pad
    if fn.type_name == "Crop":
        axis, offset = crop_params(fn)
        return axis - 1, 1, -offset  # Crop's axis is the first cropped one; a map names the one before
    if fn.type_name in PASS_THROUGH_LAYERS:
        return IDENTITY
    raise UndefinedMapException(f"{fn.type_name} layers have no coordinate map")


# ---------------------------------------------------------------- maps along a path
def compose(base_map, next_map):
    """The map that applies `next_map`, then `base_map`."""
    axis1, scale1, offset1 = base_map
    axis2, scale2, offset2 = next_map
    if axis1 is not None and axis2 is not None and axis1 != axis2:
        raise AxisMismatchException(f"cannot compose a map over the axes after {axis1} with one "
                                    f"over the axes after {axis2}")
    axis = axis2 if axis1 is None else axis1
    return axis, scale1 * scale2, scale1 * offset2 + offset1


def inverse(coord_map):
    """The map back: from `y = scale * x + offset` to `x = y / scale - offset / scale`."""
    axis, scale, offset = coord_map
    return axis, 1 / scale, -offset / scale


def _mappable_bottoms(top: Top):
    """The inputs whose coordinates the layer of `top` maps: all of them, except for Crop,
    whose second input only gives the output size."""
    inputs = top.fn.inputs
    return inputs[:1] if top.fn.type_name == "Crop" else inputs


def _ancestors(top: Top):
    """Yield `(blob, map from blob's coordinates to top's)` for `top` and every blob behind
    it through mappable layers, nearest first (a breadth-first walk)."""
    maps = {top: IDENTITY}
    queue = deque([top])
    while queue:
        blob = queue.popleft()
        yield blob, maps[blob]
        try:
            step = coord_map(blob.fn)
        except UndefinedMapException:
            continue  # the walk stops at layers that do not map coordinates
        for bottom in _mappable_bottoms(blob):
            if bottom not in maps:
                maps[bottom] = compose(maps[blob], step)
                queue.append(bottom)


def coord_map_from_to(top_from: Top, top_to: Top):
    """The `(axis, scale, offset)` map from the coordinates of `top_from` to those of `top_to`:
    pixel `x` of `top_from` lines up with pixel `scale * x + offset` of `top_to`."""
    from_maps = dict(_ancestors(top_from))
    for blob, to_map in _ancestors(top_to):
        if blob in from_maps:
            return compose(to_map, inverse(from_maps[blob]))
    raise UnconnectedTopsError(
        f"cannot map the {top_from.fn.type_name} top to the {top_to.fn.type_name} top: no blob "
        "feeds both through layers with a coordinate map (convolution, pooling, deconvolution, "
        "crop, elementwise)")


def crop(top_from: Top, top_to: Top) -> Top:
    """A Crop layer's Top: `top_from` cut to the size of `top_to`, at the offset where the two
    line up."""
    axis, scale, offset = coord_map_from_to(top_from, top_to)
    scale, offset = np.atleast_1d(scale), np.atleast_1d(offset)
    what = f"cannot crop the {top_from.fn.type_name} top to the {top_to.fn.type_name} top"
    if not np.allclose(scale, 1):
        raise CropError(f"{what}: their resolutions differ (scale = {scale})")
    if (offset > 1e-6).any():
        raise CropError(f"{what}: it would need a negative crop offset ({-offset}); the cropped "
                        "top is smaller than the reference there")
    if not np.allclose(offset, np.round(offset)):
        raise CropError(f"{what}: they are misaligned by a fraction of a pixel (offset = {-offset})")
    # Only elementwise layers in between (axis None): nothing to cut, from Caffe's default axis.
    first_axis = 2 if axis is None else axis + 1
    return L.Crop(top_from, top_to, crop_param=dict(axis=first_axis,
                                                    offset=[int(-o) for o in np.round(offset)]))
