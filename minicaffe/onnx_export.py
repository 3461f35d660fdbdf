r"""Export a deploy net and its trained weights to ONNX, the exchange format that
onnxruntime, TensorRT, OpenVINO and most inference engines read.

    minicaffe export_onnx --model deploy.prototxt --weights W.caffemodel --output M.onnx

or from Python, `export_onnx("deploy.prototxt", "W.caffemodel", "M.onnx")`, or
`net_to_onnx(net)` for a `Net` already built and filled.

## What is exported

The net is built as `minicaffe test` builds it: the TEST phase (Dropout is the identity,
BatchNorm uses its stored statistics), with the weights of the .caffemodel copied in by
layer name. Then:

* each **Input** layer's tops become the graph's inputs, float32 tensors of the shapes the
  prototxt declares (batch included: a deploy net is exported at its own batch size);
* each learned blob becomes an **initializer** (a constant tensor stored in the file),
  named `<layer>.weight`, `<layer>.bias`, `<layer>.mean`, ...;
* each layer becomes one ONNX node, or a few where ONNX has no single operator for it;
* the net's outputs (the blobs no layer reads) become the graph's outputs, under their
  Caffe names (`prob`).

Both sides lay images out as NCHW, so no tensor is ever transposed, and Caffe's weight
layouts are ONNX's: a Convolution's $(C_{out}, C_{in}/g, k_h, k_w)$ is Conv's `W`, a
Deconvolution's $(C_{in}, C_{out}/g, k_h, k_w)$ is ConvTranspose's `W`, an InnerProduct's
$(N_{out}, K)$ is Gemm's `B` with `transB = 1`.

ONNX values are written once (static single assignment), while Caffe layers may work
in place (`relu1` reads and writes `conv1`). Each write of a blob gets its own value:
the last write keeps the blob's name, earlier ones are named `<blob>/<layer>`. So the
graph's outputs carry the Caffe names, and a blob read in the middle of the net is the
value written before the read. Split (which Net inserts where a blob has several
readers) and Dropout (the identity at test time) produce no node at all: their tops
are their bottom's value.

## The mapping, and where the semantics differ

| Caffe | ONNX | bridged |
|---|---|---|
| Convolution | Conv (`group`, `dilations`, `pads`) | same output rule (floor) |
| Deconvolution | ConvTranspose | same output rule: $s(H-1) + d(k-1) + 1 - 2p$ |
| InnerProduct | Flatten(`axis`) + Gemm(`transB`=1) | Reshape back when `axis` > 1 |
| Pooling MAX / AVE | MaxPool / AveragePool | explicit tail pads, AVE divisor corrected |
| LRN ACROSS_CHANNELS | LRN | none needed: both divide $\alpha$ by `size` |
| LRN WITHIN_CHANNEL | Mul, AveragePool, Mul, Add, Pow, Mul | Caffe's own inner layers, as nodes |
| BatchNorm | BatchNormalization (scale 1, bias 0) | statistics divided by Caffe's factor |
| Scale, Bias | Mul, Add | operand reshaped to broadcast |
| Eltwise SUM / PROD / MAX | Sum (Mul by coeff) / Mul / Max | |
| Concat, Softmax | Concat, Softmax (`axis`) | |
| ReLU, PReLU, ELU | Relu or LeakyRelu, PRelu, Elu | |
| Sigmoid, TanH, AbsVal, BNLL | Sigmoid, Tanh, Abs, Softplus | |
| Power, Exp, Log | Mul, Add, Pow / Exp / Log | |
| Threshold, Clip, Swish | Greater + Cast, Clip, Sigmoid + Mul | |
| Flatten, Reshape | Reshape to the top's shape | |
| Crop, Slice, Tile | Slice, Split, Tile | Crop's second bottom lends only its shape |
| ArgMax | Gather (axis reversed), TopK, Cast, Sub | Caffe's order of equal values |
| Reduction | Abs or Mul, ReduceSum, Mul by coeff | |
| MVN | ReduceMean, Sub, Sqrt, Add, Div | $\epsilon$ added to the deviation |
| Embed, BatchReindex | Cast to int64, Gather (Add for Embed's bias) | |
| Parameter | Identity of an initializer | |
| Im2col | Conv with one-hot kernels, a group per channel | |
| SPP | its levels' pooling, Flatten, Concat | |
| LSTMUnit | Split, Sigmoid, Tanh, Mul, Add | |
| RNN, LSTM | the nodes of the net they unroll over T steps | initial state zero, or the exposed bottoms |
| Dropout, Split | (no node) | |
| Silence | (no node) | |

**Pooling.** Caffe rounds the output size up (`round_mode: CEIL`, its default), lets
the last window hang over the bottom/right edge, and drops a last window that would
start in the right padding:
$H' = \lceil (H + 2p - k)/s \rceil + 1$, minus 1 if padded and $(H'-1)s \ge H + p$.
ONNX's `ceil_mode` has been read differently by different runtimes and versions, so
the export does not use it. It pads the tail explicitly instead, by
$t = (H'-1)s + k - H - p$ (at least 0), the padding that makes ONNX's floor rule give
Caffe's $H'$ with every window whole: pads $(p, t)$, which may differ from $(p, p)$.
MAX ignores padding on both sides, so that is all MAX needs. AVE's divisor differs:
Caffe divides by the window clipped to the *padded* image, $\min(h_0 + k, H + p) - h_0$
rows (padding counts as zeros, the overhang beyond it does not), while AveragePool
with `count_include_pad = 1` divides every window by the full $k_h k_w$ (they all fit
in the explicitly padded image). Where the two differ (the overhanging last row or
column), a Mul by the constant $k_h k_w / |P|$, one value per output position, puts
Caffe's divisor back. A layout in which some window holds no image pixel at all
(unpadded, stride larger than the kernel) has no ONNX form and is reported.
`global_pooling` is pooling with a kernel the size of the image.

**LRN.** Caffe computes $y = x\,(k + \frac{\alpha}{n}\sum x^2)^{-\beta}$ over $n$ channels,
and ONNX's LRN is specified with the same $\alpha / n$ (`size` = $n$, `bias` = $k$); the
tests check it numerically. WITHIN_CHANNEL has no ONNX operator; it is exported as the
layers Caffe itself builds it from (x², an average over $n \times n$ counting the zero
padding, $1 + \alpha\,\cdot$, power $-\beta$, times x; $k$ is unused there, as in Caffe).

**BatchNorm.** Caffe stores running sums and a third blob, their weight $w$; the
statistics are `blobs[0] / w` and `blobs[1] / w` (0 if $w = 0$). These quotients become
BatchNormalization's `mean` and `var`, with scale 1 and bias 0 (Caffe's BatchNorm has
none: a Scale layer follows, exported as Mul and Add). With `use_global_stats: false`
in the TEST phase Caffe normalises by the batch's own statistics: ReduceMean nodes.

**ArgMax.** Caffe ranks equal values by position, the *later* one first; ONNX's TopK
puts the earlier one first. Ranking the axis reversed (a Gather with the indices
$D-1, \dots, 0$) and mapping each reversed position $i$ back to $D - 1 - i$ gives
Caffe's order; the indices become floats, as in a Blob. **Im2col** has no ONNX operator,
but it is a convolution: with one group per channel and $K = k_h k_w$ output channels a
group, each kernel holding a single 1, output channel $cK + k$ copies kernel position
$k$ of channel $c$, which is Caffe's column order; each output is one product by 1, so
the copy is exact.

**RNN and LSTM** hold a net unrolled over the T time steps of their input (see
`minicaffe.layers.recurrent`); its layers (InnerProduct, Scale by `cont`, Eltwise,
TanH or LSTMUnit, ...) are exported in line, their values named `<layer>/<blob>`, and
the learned weights become initializers once, however many steps share them. With
`expose_hidden: true` the initial states are the layer's extra bottoms and the final
states its extra tops, as in Caffe, and the graph computes exactly what the layer does.
Without it, Caffe carries the last state of one forward call into the next; an ONNX
graph keeps no state between runs, so the export starts from zero, as a fresh net's
first call does. A sequence that starts in the batch (`cont` = 0 at its first step)
does not see the carried state, so it is computed the same either way; to continue a
sequence across calls, export with `expose_hidden` and pass the state yourself.

## What is not exported

Layers with no counterpart, which the export lists, all at once, by name and type:
data layers (Data, ImageData, HDF5Data, ...: export the deploy net, whose images come
through an Input layer), Python layers (arbitrary code), losses and Accuracy (training
and scoring, not inference), HDF5Output (it writes a file), and Filter (how many items
it passes depends on the data, while the export writes fixed shapes). A few parameters
are refused too: a convolution or Im2col on an axis other than 1, STOCHASTIC pooling, a
Pooling layer's second (mask) top.

The opset is 17 (IR version 8), which every onnxruntime the `onnx` extra allows runs.
"""
from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np

from minicaffe.common import MinicaffeError
from minicaffe.proto import caffe_pb2

log = logging.getLogger(__name__)

OPSET = 17
INSTALL_HINT = "pip install 'minicaffe[onnx]'"

# Layers whose tops are their bottoms' values at test time: no node is written.
ALIASES = {"Split", "Dropout"}
# Layers that compute nothing at inference and write no top.
NO_NODE = {"Silence"}
# Layer types that get a reason of their own in the error message.
DATA_LAYERS = {"Data", "ImageData", "HDF5Data", "MemoryData", "DummyData", "WindowData"}


def require_onnx():
    """The `onnx` module, or a one-line MinicaffeError saying how to install it."""
    try:
        import onnx
    except ImportError:
        raise MinicaffeError(f"ONNX export needs the onnx package, which is not installed: {INSTALL_HINT}") from None
    return onnx


class Unsupported(Exception):
    """A layer (or one of its settings) that has no ONNX form; collected, then reported."""


# ---------------------------------------------------------------- the graph being built

class GraphBuilder:
    """The nodes, initializers and value names of the ONNX graph under construction."""

    def __init__(self, onnx, reserved):
        self.onnx, self.helper = onnx, onnx.helper
        self.nodes, self.initializers = [], []
        self.used = set(reserved)  # every Caffe blob name, and every name handed out
        self.shared = {}  # (memory, shape) -> its initializer, for learned blobs

    def fresh(self, name: str) -> str:
        """`name`, or `name_1`, `name_2`, ... : a value name no one has yet."""
        candidate, i = name, 0
        while candidate in self.used:
            i += 1
            candidate = f"{name}_{i}"
        self.used.add(candidate)
        return candidate

    def const(self, name: str, value, dtype=np.float32) -> str:
        """An initializer holding `value`; returns its (fresh) name."""
        name = self.fresh(name)
        array = np.ascontiguousarray(np.asarray(value, dtype=dtype))
        self.initializers.append(self.onnx.numpy_helper.from_array(array, name))
        return name

    def learned(self, name: str, blob) -> str:
        """An initializer holding a learned blob's values, once per memory: the steps of
        an unrolled RNN or LSTM (and layers sharing a named param) use one blob."""
        key = (id(blob.data_mem), blob.shape)
        if key not in self.shared:
            self.shared[key] = (blob.data_mem, self.const(name, _data(blob)))  # keeps the memory alive
        return self.shared[key][1]

    def node(self, op: str, inputs, outputs=None, *, name: str, **attrs) -> str:
        """Add one node; `outputs` defaults to one fresh value named after the node.
        Returns the first output's name."""
        if outputs is None:
            outputs = [self.fresh(name)]
        self.nodes.append(self.helper.make_node(op, list(inputs), list(outputs),
                                                name=self.fresh(name), **attrs))
        return outputs[0]


def _data(blob) -> np.ndarray:
    return np.asarray(blob.cpu_data(), dtype=np.float32)


def _broadcastable(operand_shape, axis: int, ndim: int) -> tuple:
    """The shape that lets an operand spanning axes axis.. of an ndim-array broadcast
    against it by ONNX's (numpy's) right-aligned rule: trailing ones appended."""
    return tuple(operand_shape) + (1,) * (ndim - axis - len(operand_shape))


def _int64(g, r, what: str, values) -> str:
    """An int64 initializer (shapes, indices, sizes) named after layer record `r`."""
    return g.const(f"{r.name}.{what}", values, np.int64)


def _to_top_shape(g, r, value: str, outs) -> None:
    """The layer's last node: `value` reshaped to its top's shape, which the Net knows."""
    g.node("Reshape", [value, _int64(g, r, "shape", r.top_vec[0].shape)], outs, name=r.name)


# ---------------------------------------------------------------- one function per layer type
#
# Each takes the builder g, the Net's LayerRecord r, the ONNX names of its bottoms and
# the names its tops must get, and adds the nodes that compute them.

def _conv(g, r, ins, outs):
    layer = r.layer
    if layer.channel_axis != 1:
        raise Unsupported(f"convolution_param.axis {layer.channel_axis} (ONNX convolves axis 1)")
    inputs = [ins[0], g.learned(f"{r.name}.weight", layer.blobs[0])]
    if layer.bias_term:
        inputs.append(g.learned(f"{r.name}.bias", layer.blobs[1]))
    op = "ConvTranspose" if layer.type == "Deconvolution" else "Conv"
    g.node(op, inputs, outs, name=r.name, kernel_shape=list(layer.kernel),
           strides=list(layer.stride), pads=list(layer.pad) * 2,
           dilations=list(layer.dilation), group=layer.group)


def _inner_product(g, r, ins, outs):
    layer = r.layer
    x_shape = r.bottom_vec[0].shape
    x = ins[0]
    if not (len(x_shape) == 2 and layer.axis == 1):
        x = g.node("Flatten", [x], name=f"{r.name}/flatten", axis=layer.axis)
    inputs = [x, g.learned(f"{r.name}.weight", layer.blobs[0])]
    if layer.bias_term:
        inputs.append(g.learned(f"{r.name}.bias", layer.blobs[1]))
    if layer.axis == 1:
        g.node("Gemm", inputs, outs, name=r.name, transB=0 if layer.transpose else 1)
        return
    # Caffe keeps the axes before `axis`: (d0, ..., d_{axis-1}, N_out).
    y = g.node("Gemm", inputs, name=f"{r.name}/gemm", transB=0 if layer.transpose else 1)
    _to_top_shape(g, r, y, outs)


def _pooling(g, r, ins, outs):
    layer = r.layer
    P = caffe_pb2.PoolingParameter
    pool = layer.layer_param.pooling_param.pool
    if pool == P.STOCHASTIC:
        raise Unsupported("pool: STOCHASTIC (ONNX has no stochastic pooling)")
    if len(r.tops) > 1:
        raise Unsupported("a second top, the max mask (ONNX's MaxPool indices are another layout)")
    height, width = r.bottom_vec[0].shape[2:]
    kernel = (layer.kernel_h, layer.kernel_w)
    stride = (layer.stride_h, layer.stride_w)
    pad = (layer.pad_h, layer.pad_w)
    pooled = (layer.pooled_height, layer.pooled_width)
    tails = []
    for size, k, s, p, out in zip((height, width), kernel, stride, pad, pooled):
        tail = max(0, (out - 1) * s + k - size - p)  # the padding after the image
        if tail >= k or (size + p + tail - k) // s + 1 != out:
            raise Unsupported(f"windows of kernel {kernel}, stride {stride}, pad {pad} over a "
                              f"{height}x{width} image leave some window without any image "
                              "pixel, which ONNX pooling cannot express")
        tails.append(tail)
    attrs = dict(kernel_shape=list(kernel), strides=list(stride), pads=[*pad, *tails])
    if pool == P.MAX:
        g.node("MaxPool", ins, outs, name=r.name, **attrs)
        return
    # AVE: every window is whole within the explicit padding, so AveragePool divides by
    # k_h k_w; Caffe divides by |P| (layer.pool_size), the window clipped to H + p.
    correction = (kernel[0] * kernel[1]) / layer.pool_size.astype(np.float64)
    if np.all(correction == 1):
        g.node("AveragePool", ins, outs, name=r.name, count_include_pad=1, **attrs)
        return
    y = g.node("AveragePool", ins, name=f"{r.name}/sum_over_kxk", count_include_pad=1, **attrs)
    g.node("Mul", [y, g.const(f"{r.name}.divisor_correction", correction)], outs, name=r.name)


def _lrn(g, r, ins, outs):
    layer = r.layer
    if layer.across:
        g.node("LRN", ins, outs, name=r.name, size=layer.size, alpha=float(layer.alpha),
               beta=float(layer.beta), bias=float(layer.k))
        return
    # WITHIN_CHANNEL: Caffe's inner layers (x^2, AVE pooling n x n counting the zero pad,
    # 1 + alpha *, power -beta, times x), one node each.
    n, half = layer.size, (layer.size - 1) // 2
    x = ins[0]
    squared = g.node("Mul", [x, x], name=f"{r.name}/square")
    mean = g.node("AveragePool", [squared], name=f"{r.name}/pool", kernel_shape=[n, n],
                  strides=[1, 1], pads=[half] * 4, count_include_pad=1)
    scaled = g.node("Mul", [mean, g.const(f"{r.name}.alpha", layer.alpha)], name=f"{r.name}/alpha")
    shifted = g.node("Add", [scaled, g.const(f"{r.name}.one", 1.0)], name=f"{r.name}/shift")
    factor = g.node("Pow", [shifted, g.const(f"{r.name}.minus_beta", -layer.beta)],
                    name=f"{r.name}/power")
    g.node("Mul", [x, factor], outs, name=r.name)


def _batch_norm(g, r, ins, outs):
    layer = r.layer
    channels = r.bottom_vec[0].shape[1]
    if layer.use_global_stats:
        w = float(_data(layer.blobs[2]).reshape(-1)[0])
        factor = np.float32(0 if w == 0 else 1 / w)  # as the layer computes it
        mean = _data(layer.blobs[0]).reshape(-1) * factor
        var = _data(layer.blobs[1]).reshape(-1) * factor
        g.node("BatchNormalization",
               [ins[0], g.const(f"{r.name}.scale", np.ones(channels)),
                g.const(f"{r.name}.bias", np.zeros(channels)),
                g.const(f"{r.name}.mean", mean), g.const(f"{r.name}.var", var)],
               outs, name=r.name, epsilon=float(layer.eps))
        return
    # The batch's own statistics, over every axis but the channels.
    axes = [0] + list(range(2, len(r.bottom_vec[0].shape)))
    mean = g.node("ReduceMean", ins, name=f"{r.name}/mean", axes=axes, keepdims=1)
    centred = g.node("Sub", [ins[0], mean], name=f"{r.name}/centre")
    square = g.node("Mul", [centred, centred], name=f"{r.name}/square")
    var = g.node("ReduceMean", [square], name=f"{r.name}/var", axes=axes, keepdims=1)
    std = g.node("Sqrt", [g.node("Add", [var, g.const(f"{r.name}.eps", layer.eps)],
                                 name=f"{r.name}/var_eps")], name=f"{r.name}/std")
    g.node("Div", [centred, std], outs, name=r.name)


def _operand(g, r, operand, axis_param: int, what: str) -> str:
    """Scale's or Bias's operand (a learned blob, or a second bottom's value), as an
    ONNX value that broadcasts against the first bottom."""
    ndim = len(r.bottom_vec[0].shape)
    if isinstance(operand, str):  # a second bottom: reshape its value
        shape = r.bottom_vec[1].shape
        axis = 0 if len(shape) == 0 else axis_param % ndim
        target = _broadcastable(shape, axis, ndim)
        if tuple(target) == tuple(shape):
            return operand
        return g.node("Reshape", [operand, _int64(g, r, f"{what}_shape", target)],
                      name=f"{r.name}/{what}_reshape")
    values = _data(operand)
    axis = 0 if values.ndim == 0 else axis_param % ndim
    return g.const(f"{r.name}.{what}", values.reshape(_broadcastable(values.shape, axis, ndim)))


def _scale(g, r, ins, outs):
    layer = r.layer
    p = layer.layer_param.scale_param
    scale = ins[1] if len(ins) > 1 else layer.blobs[0]
    factor = _operand(g, r, scale, p.axis, "scale")
    if layer.bias_index is None:
        g.node("Mul", [ins[0], factor], outs, name=r.name)
        return
    y = g.node("Mul", [ins[0], factor], name=f"{r.name}/mul")
    bias = _operand(g, r, layer.blobs[layer.bias_index], p.axis, "bias")
    g.node("Add", [y, bias], outs, name=r.name)


def _bias(g, r, ins, outs):
    layer = r.layer
    bias = ins[1] if len(ins) > 1 else layer.blobs[0]
    g.node("Add", [ins[0], _operand(g, r, bias, layer.layer_param.bias_param.axis, "bias")],
           outs, name=r.name)


def _eltwise(g, r, ins, outs):
    layer = r.layer
    E = caffe_pb2.EltwiseParameter
    if layer.op == E.PROD:
        y = ins[0]
        for i, x in enumerate(ins[1:], 1):
            y = g.node("Mul", [y, x], outs if i == len(ins) - 1 else None, name=r.name)
    elif layer.op == E.MAX:
        g.node("Max", ins, outs, name=r.name)
    else:  # SUM, each bottom times its coefficient
        terms = [x if c == 1 else g.node("Mul", [x, g.const(f"{r.name}.coeff{i}", c)],
                                        name=f"{r.name}/coeff{i}")
                 for i, (x, c) in enumerate(zip(ins, layer.coeffs))]
        g.node("Sum", terms, outs, name=r.name)


def _relu(g, r, ins, outs):
    slope = r.layer.layer_param.relu_param.negative_slope
    if slope:
        g.node("LeakyRelu", ins, outs, name=r.name, alpha=float(slope))
    else:
        g.node("Relu", ins, outs, name=r.name)


def _prelu(g, r, ins, outs):
    slopes = _data(r.layer.blobs[0])
    ndim = len(r.bottom_vec[0].shape)
    shape = (1,) if r.layer.channel_shared else _broadcastable(slopes.shape, 1, ndim)
    g.node("PRelu", [ins[0], g.const(f"{r.name}.slope", slopes.reshape(shape))], outs, name=r.name)


def _affine(g, r, x, scale, shift) -> str:
    """scale * x + shift, leaving out a multiplication by 1 and an addition of 0."""
    if scale != 1:
        x = g.node("Mul", [x, g.const(f"{r.name}.scale", scale)], name=f"{r.name}/scale")
    if shift != 0:
        x = g.node("Add", [x, g.const(f"{r.name}.shift", shift)], name=f"{r.name}/shift")
    return x


def _power(g, r, ins, outs):
    layer = r.layer
    if layer.diff_scale == 0:  # y does not depend on x: a constant of the top's shape
        g.node("Expand", [g.const(f"{r.name}.value", layer.constant_top()),
                          _int64(g, r, "shape", r.top_vec[0].shape)],
               outs, name=r.name)
        return
    u = _affine(g, r, ins[0], layer.scale, layer.shift)
    if layer.power == 1:
        g.node("Identity", [u], outs, name=r.name)
    else:
        g.node("Pow", [u, g.const(f"{r.name}.power", layer.power)], outs, name=r.name)


def _exp(g, r, ins, outs):  # y = base^(shift + scale x) = outer * e^(inner x)
    layer = r.layer
    e = g.node("Exp", [_affine(g, r, ins[0], layer.inner_scale, 0)],
               None if layer.outer_scale != 1 else outs, name=r.name)
    if layer.outer_scale != 1:
        g.node("Mul", [e, g.const(f"{r.name}.outer", layer.outer_scale)], outs, name=f"{r.name}/outer")


def _log(g, r, ins, outs):  # y = ln(shift + scale x) / ln(base)
    layer = r.layer
    y = g.node("Log", [_affine(g, r, ins[0], layer.scale, layer.shift)],
               None if layer.base_scale != 1 else outs, name=r.name)
    if layer.base_scale != 1:
        g.node("Mul", [y, g.const(f"{r.name}.base_scale", layer.base_scale)], outs,
               name=f"{r.name}/base")


def _threshold(g, r, ins, outs):
    t = r.layer.layer_param.threshold_param.threshold
    above = g.node("Greater", [ins[0], g.const(f"{r.name}.threshold", t)], name=f"{r.name}/greater")
    g.node("Cast", [above], outs, name=r.name, to=g.onnx.TensorProto.FLOAT)


def _clip(g, r, ins, outs):
    g.node("Clip", [ins[0], g.const(f"{r.name}.min", r.layer.min),
                    g.const(f"{r.name}.max", r.layer.max)], outs, name=r.name)


def _swish(g, r, ins, outs):  # x * sigmoid(beta x)
    s = g.node("Sigmoid", [_affine(g, r, ins[0], r.layer.beta, 0)], name=f"{r.name}/sigmoid")
    g.node("Mul", [ins[0], s], outs, name=r.name)


def _reshape(g, r, ins, outs):  # Flatten and Reshape: the top's shape is known
    _to_top_shape(g, r, ins[0], outs)


def _simple(op: str, **attrs):
    def convert(g, r, ins, outs):
        g.node(op, ins, outs, name=r.name, **attrs)
    return convert


def _elu(g, r, ins, outs):
    g.node("Elu", ins, outs, name=r.name, alpha=float(r.layer.layer_param.elu_param.alpha))


def _concat(g, r, ins, outs):
    g.node("Concat", ins, outs, name=r.name, axis=r.layer.concat_axis)


def _softmax(g, r, ins, outs):
    g.node("Softmax", ins, outs, name=r.name, axis=r.layer.axis)


def _crop(g, r, ins, outs):  # the second bottom only lends its shape
    box = r.layer.box
    g.node("Slice", [ins[0], _int64(g, r, "starts", [b.start for b in box]),
                     _int64(g, r, "ends", [b.stop for b in box]),
                     _int64(g, r, "axes", range(len(box)))], outs, name=r.name)


def _slice(g, r, ins, outs):
    layer = r.layer
    if len(outs) == 1:  # one top is the bottom itself
        g.node("Identity", ins, outs, name=r.name)
        return
    g.node("Split", [ins[0], _int64(g, r, "sizes", layer.sizes)], outs, name=r.name,
           axis=layer.slice_axis)


def _tile(g, r, ins, outs):
    # Caffe repeats the block of axes axis.. `tiles` times; so does Tile with a repeat
    # count on `axis` alone: both give y[.., t*D + d, ..] = x[.., d, ..].
    repeats = [1] * len(r.bottom_vec[0].shape)
    repeats[r.layer.axis] = r.layer.tiles
    g.node("Tile", [ins[0], _int64(g, r, "repeats", repeats)], outs, name=r.name)


def _argmax(g, r, ins, outs):
    layer = r.layer
    dim, k = layer.dim, layer.top_k
    # Caffe ranks equal values by position, larger first; TopK puts the smaller position
    # first. Ranking the reversed axis and mapping position i back to dim-1-i does both.
    x = g.node("Reshape", [ins[0], _int64(g, r, "rows", [layer.outer, dim, layer.inner])],
               name=f"{r.name}/rows")
    x = g.node("Gather", [x, _int64(g, r, "reversed", np.arange(dim)[::-1])],
               name=f"{r.name}/reversed", axis=1)
    values, reversed_index = g.fresh(f"{r.name}/values"), g.fresh(f"{r.name}/reversed_index")
    g.node("TopK", [x, _int64(g, r, "k", [k])], [values, reversed_index], name=f"{r.name}/topk",
           axis=1, largest=1, sorted=1)
    as_float = g.node("Cast", [reversed_index], name=f"{r.name}/as_float",
                      to=g.onnx.TensorProto.FLOAT)
    index = g.node("Sub", [g.const(f"{r.name}.last", dim - 1), as_float], name=f"{r.name}/index")
    if not layer.has_axis and layer.out_max_val:  # (N, 2, k): the indices, then the values
        y = g.node("Concat", [index, values], name=f"{r.name}/both", axis=1)
    else:
        y = values if layer.out_max_val else index
    _to_top_shape(g, r, y, outs)


def _reduction(g, r, ins, outs):
    from minicaffe.layers.reduction import ASUM, SUMSQ

    layer = r.layer
    x = g.node("Reshape", [ins[0], _int64(g, r, "rows", [layer.num, layer.dim])], name=f"{r.name}/rows")
    if layer.op == ASUM:
        x = g.node("Abs", [x], name=f"{r.name}/abs")
    elif layer.op == SUMSQ:
        x = g.node("Mul", [x, x], name=f"{r.name}/square")
    y = g.node("ReduceSum", [x, _int64(g, r, "axis", [1])], name=f"{r.name}/sum", keepdims=0)
    # layer.coeff is MEAN's coefficient already divided by the number of values.
    if layer.coeff != 1:
        y = g.node("Mul", [y, g.const(f"{r.name}.coeff", layer.coeff)], name=f"{r.name}/coeff")
    _to_top_shape(g, r, y, outs)


def _mvn(g, r, ins, outs):
    layer = r.layer
    x = g.node("Reshape", [ins[0], _int64(g, r, "groups", [layer.groups, layer.dim])],
               name=f"{r.name}/groups")
    mean = g.node("ReduceMean", [x], name=f"{r.name}/mean", axes=[1], keepdims=1)
    y = g.node("Sub", [x, mean], name=f"{r.name}/centred")
    if layer.normalize_variance:  # Caffe adds eps to the standard deviation, not the variance
        square = g.node("Mul", [y, y], name=f"{r.name}/square")
        variance = g.node("ReduceMean", [square], name=f"{r.name}/variance", axes=[1], keepdims=1)
        std = g.node("Sqrt", [variance], name=f"{r.name}/std")
        std = g.node("Add", [std, g.const(f"{r.name}.eps", layer.eps)], name=f"{r.name}/std_eps")
        y = g.node("Div", [y, std], name=f"{r.name}/scaled")
    _to_top_shape(g, r, y, outs)


def _indices(g, r, value: str) -> str:
    """Index values (floats in a Blob, truncated toward zero as Caffe's cast) as int64."""
    return g.node("Cast", [value], name=f"{r.name}/indices", to=g.onnx.TensorProto.INT64)


def _embed(g, r, ins, outs):  # row x of the (input_dim, num_output) table, for each x
    layer = r.layer
    table = g.learned(f"{r.name}.weight", layer.blobs[0])
    if not layer.bias_term:
        g.node("Gather", [table, _indices(g, r, ins[0])], outs, name=r.name, axis=0)
        return
    y = g.node("Gather", [table, _indices(g, r, ins[0])], name=f"{r.name}/rows", axis=0)
    g.node("Add", [y, g.learned(f"{r.name}.bias", layer.blobs[1])], outs, name=r.name)


def _batch_reindex(g, r, ins, outs):
    g.node("Gather", [ins[0], _indices(g, r, ins[1])], outs, name=r.name, axis=0)


def _parameter(g, r, ins, outs):
    value = _data(r.layer.blobs[0]).reshape(r.top_vec[0].shape)
    g.node("Identity", [g.const(f"{r.name}.param", value)], outs, name=r.name)


def _im2col(g, r, ins, outs):
    # A convolution whose kernels are one-hot: with one group per channel, output channel
    # c*K + k copies the k-th kernel position of channel c, Caffe's column order.
    layer = r.layer
    if layer.channel_axis != 1:
        raise Unsupported(f"convolution_param.axis {layer.channel_axis} (ONNX convolves axis 1)")
    channels, positions = r.bottom_vec[0].shape[1], math.prod(layer.kernel)
    one_hot = np.eye(positions, dtype=np.float32).reshape(positions, 1, *layer.kernel)
    kernels = np.tile(one_hot, (channels,) + (1,) * (one_hot.ndim - 1))  # (C K, 1, k_h, k_w)
    g.node("Conv", [ins[0], g.const(f"{r.name}.one_hot", kernels)], outs, name=r.name,
           kernel_shape=list(layer.kernel), strides=list(layer.stride),
           pads=list(layer.pad) * 2, dilations=list(layer.dilation), group=channels)


def _spp(g, r, ins, outs):
    # The layer's own inner Pooling layers, each exported as Pooling is; then, for a
    # pyramid of several levels, flattened and concatenated.
    from types import SimpleNamespace

    layer = r.layer
    if layer.height == 1:
        inner = SimpleNamespace(name=f"{r.name}/pool0", layer=layer.pooling[0], tops=r.tops,
                                bottom_vec=r.bottom_vec)
        _pooling(g, inner, ins, outs)
        return
    flat = []
    for level, pooling in enumerate(layer.pooling):
        inner = SimpleNamespace(name=f"{r.name}/pool{level}", layer=pooling, tops=[None],
                                bottom_vec=r.bottom_vec)
        pooled = g.fresh(inner.name)
        _pooling(g, inner, ins, [pooled])
        flat.append(g.node("Flatten", [pooled], name=f"{r.name}/flatten{level}", axis=1))
    g.node("Concat", flat, outs, name=r.name, axis=1)


def _lstm_unit(g, r, ins, outs):
    n, d = r.bottom_vec[0].shape[1], r.layer.hidden_dim
    gates = g.node("Reshape", [ins[1], _int64(g, r, "gates", [n, 4, d])], name=f"{r.name}/gates")
    names = ("i", "f", "o", "g")
    pre = [g.fresh(f"{r.name}/{name}_pre") for name in names]
    g.node("Split", [gates, _int64(g, r, "split", [1, 1, 1, 1])], pre, name=f"{r.name}/split", axis=1)
    i, f, o = (g.node("Sigmoid", [pre[k]], name=f"{r.name}/{names[k]}") for k in range(3))
    candidate = g.node("Tanh", [pre[3]], name=f"{r.name}/g")
    shape = _int64(g, r, "state", [n, 1, d])  # the gates' (N, 1, D) layout
    c_prev = g.node("Reshape", [ins[0], shape], name=f"{r.name}/c_prev")
    cont = g.node("Reshape", [ins[2], _int64(g, r, "cont", [n, 1, 1])], name=f"{r.name}/cont")
    kept = g.node("Mul", [g.node("Mul", [cont, f], name=f"{r.name}/cont_f"), c_prev], name=f"{r.name}/kept")
    c = g.node("Add", [kept, g.node("Mul", [i, candidate], name=f"{r.name}/i_g")], name=f"{r.name}/c_new")
    h = g.node("Mul", [o, g.node("Tanh", [c], name=f"{r.name}/tanh_c")], name=f"{r.name}/h_new")
    top_shape = _int64(g, r, "shape", r.top_vec[0].shape)
    g.node("Reshape", [c, top_shape], [outs[0]], name=f"{r.name}/c")
    g.node("Reshape", [h, top_shape], [outs[1]], name=f"{r.name}/h")


def _recurrent(g, r, ins, outs):
    # RNN and LSTM compute through the net they unroll over the T time steps (its
    # InnerProduct, Scale, Eltwise, LSTMUnit, ... layers): its layers are exported here,
    # in line, with the layer's bottoms as its inputs.
    layer = r.layer
    inner = layer.unrolled_net
    current = {"x": ins[0], "cont": ins[1]}
    if layer.static_input:
        current["x_static"] = ins[2]
    for j, (name, shape) in enumerate(zip(layer.recurrent_input_names(), layer.recurrent_input_shapes())):
        if layer.expose_hidden:  # the initial states are bottoms
            current[name] = ins[2 + layer.static_input + j]
        else:  # zero, as at Caffe's first forward; the state carried between calls is not
            current[name] = g.const(f"{r.name}.{name}", np.zeros(shape))
    records = inner.layer_records[:layer.last_layer_index + 1]
    problems = _add_layers(g, records, current, lambda i, rec, top: g.fresh(f"{r.name}/{top.name}"))
    if problems:
        raise Unsupported("its unrolled net: " + "; ".join(problems))
    results = layer.output_names() + (layer.recurrent_output_names() if layer.expose_hidden else [])
    for name, out in zip(results, outs):
        g.node("Identity", [current[name]], [out], name=f"{r.name}/{name}")


CONVERTERS = {
    "Convolution": _conv,
    "Deconvolution": _conv,
    "InnerProduct": _inner_product,
    "Pooling": _pooling,
    "LRN": _lrn,
    "BatchNorm": _batch_norm,
    "Scale": _scale,
    "Bias": _bias,
    "Eltwise": _eltwise,
    "Concat": _concat,
    "Softmax": _softmax,
    "ReLU": _relu,
    "PReLU": _prelu,
    "ELU": _elu,
    "Sigmoid": _simple("Sigmoid"),
    "TanH": _simple("Tanh"),
    "AbsVal": _simple("Abs"),
    "BNLL": _simple("Softplus"),
    "Power": _power,
    "Exp": _exp,
    "Log": _log,
    "Threshold": _threshold,
    "Clip": _clip,
    "Swish": _swish,
    "Flatten": _reshape,
    "Reshape": _reshape,
    "Crop": _crop,
    "Slice": _slice,
    "Tile": _tile,
    "ArgMax": _argmax,
    "Reduction": _reduction,
    "MVN": _mvn,
    "Embed": _embed,
    "BatchReindex": _batch_reindex,
    "Parameter": _parameter,
    "Im2col": _im2col,
    "SPP": _spp,
    "LSTMUnit": _lstm_unit,
    "RNN": _recurrent,
    "LSTM": _recurrent,
}


def supported_types() -> set[str]:
    """The layer types the export knows (Input, the aliases and no-ops included)."""
    return set(CONVERTERS) | ALIASES | NO_NODE | {"Input"}


def _why_not(layer_type: str) -> str:
    if layer_type in DATA_LAYERS:
        return "a data layer: export the deploy net, whose images come through an Input layer"
    if layer_type == "Python":
        return "a Python layer runs code of its own, which ONNX cannot hold"
    if layer_type.endswith("Loss") or layer_type == "Accuracy":
        return "a training/scoring layer: export the deploy net, without losses and labels"
    if layer_type == "Filter":
        return "the number of items it passes depends on the data, and the export writes fixed shapes"
    if layer_type == "HDF5Output":
        return "it writes a file, which an ONNX graph cannot"
    return "no ONNX form in minicaffe's export"


# ---------------------------------------------------------------- the net

def net_to_onnx(net, *, outputs=None, graph_name: str | None = None):
    """The ONNX model (an onnx.ModelProto) that computes `net`'s forward pass.

    `net` is a built minicaffe Net (the TEST phase is meant), its parameters filled.
    `outputs` names the blobs the graph outputs (default: the net's outputs); any blob
    may be given, to compare a net with its export blob by blob (each blob's value
    after the whole forward pass, as `net.blobs` holds it then).
    Raises MinicaffeError naming every layer that cannot be exported, with its type."""
    onnx = require_onnx()
    helper = onnx.helper
    records = net.layer_records
    g = GraphBuilder(onnx, reserved=[b.name for b in net.blob_records])

    # The last (non-alias) write of each blob keeps its name; inputs keep theirs.
    last_write = {}
    for i, r in enumerate(records):
        if r.layer.type not in ALIASES:
            for top in r.tops:
                last_write[top.name] = i
    inputs = [top.name for r in records if r.layer.type == "Input" for top in r.tops]

    graph_inputs, current = [], {}  # current: blob name -> its ONNX value now
    for r in records:
        if r.layer.type == "Input":
            for top in r.tops:
                graph_inputs.append(helper.make_tensor_value_info(
                    top.name, onnx.TensorProto.FLOAT, list(top.blob.shape)))
                current[top.name] = top.name

    def value_name(i, r, top):
        if last_write[top.name] == i and top.name not in inputs:
            return top.name
        return g.fresh(f"{top.name}/{r.name}")

    problems = _add_layers(g, records, current, value_name)
    if problems:
        raise MinicaffeError(f"{net.source}: cannot export to ONNX {len(problems)} layer(s): "
                             + "; ".join(problems))

    graph_outputs = []
    for name in net.outputs if outputs is None else outputs:
        if name not in current:
            raise MinicaffeError(f"{net.source}: no blob {name!r} to output; the net's blobs "
                                 f"are {list(current)}")
        value = current[name]
        if value in inputs:  # a graph input cannot be an output too: copy it
            value = g.node("Identity", [value], name=f"{name}/output")
        elif value != name and name not in inputs and name not in _produced(g):
            value = g.node("Identity", [value], [name], name=f"{name}/output")
        graph_outputs.append(helper.make_tensor_value_info(
            value, onnx.TensorProto.FLOAT, list(net.blobs[name].shape)))
    if not graph_outputs:
        raise MinicaffeError(f"{net.source}: the net has no outputs to export")

    graph = helper.make_graph(g.nodes, graph_name or net.name or "minicaffe", graph_inputs,
                              graph_outputs, initializer=g.initializers)
    model = helper.make_model(graph, producer_name="minicaffe",
                              opset_imports=[helper.make_opsetid("", OPSET)])
    # A file any onnxruntime from 1.14 on reads (IR version 8 goes with opset 17).
    model.ir_version = 8
    model.doc_string = f"Exported by minicaffe from {net.source}"
    onnx.checker.check_model(model, full_check=True)
    return model


def _add_layers(g, records, current: dict, value_name) -> list[str]:
    """Add the nodes of `records` (Input layers skipped: `current` has their values),
    updating `current` as each layer writes its tops; `value_name(i, r, top)` names the
    value that record i writes to `top`. Returns what could not be exported."""
    problems = []
    for i, r in enumerate(records):
        kind = r.layer.type
        if kind == "Input" or kind in NO_NODE:
            continue
        ins = [current[b.name] for b in r.bottoms]
        if kind in ALIASES:  # Split: every top is the bottom; Dropout: the top is the bottom
            for j, top in enumerate(r.tops):
                current[top.name] = ins[min(j, len(ins) - 1)]
            continue
        outs = [value_name(i, r, top) for top in r.tops]
        convert = CONVERTERS.get(kind)
        try:
            if convert is None:
                raise Unsupported(_why_not(kind))
            convert(g, r, ins, outs)
        except Unsupported as why:
            problems.append(f"layer {r.name!r} ({kind}): {why}")
        for top, name in zip(r.tops, outs):
            current[top.name] = name
    return problems


def _produced(g) -> set[str]:
    return {out for node in g.nodes for out in node.output}


def export_onnx(model, weights, output, *, level: int = 0, stages=()):
    """Build `model` (a deploy prototxt, TEST phase) with `weights` (a .caffemodel) and
    write its ONNX form to `output`, atomically. Returns the onnx.ModelProto."""
    require_onnx()
    from minicaffe import protoio
    from minicaffe.net import TEST, Net

    net = Net(model, TEST, level=level, stages=stages)
    net.copy_trained_layers_from(weights)
    onnx_model = net_to_onnx(net, graph_name=Path(str(model)).stem if net.name == "" else None)
    protoio.write_atomic(output, onnx_model.SerializeToString())
    log.info("Wrote %s: %d nodes, %d initializers (%s parameters), opset %d", output,
             len(onnx_model.graph.node), len(onnx_model.graph.initializer),
             f"{sum(math.prod(t.dims) for t in onnx_model.graph.initializer):,}", OPSET)
    return onnx_model
