r"""int8 post-training quantization: a trained float net run with 8-bit weights and inputs.

A trained net's Convolution and InnerProduct layers do almost all of its arithmetic, and
almost all of it is multiply-adds of weights with activations. Storing both as 8-bit
integers makes the weights four times smaller, and integer multiply-adds are cheaper
than float ones on most hardware. *Post-training* quantization does it without any
retraining: the float weights are rounded, and the activations are measured on a few
real batches (*calibration*) to choose their scale.

Symmetric linear quantization
-----------------------------
A real value $x$ is represented by an integer $q$ and a positive float *scale* $s$:

$$ q = \mathrm{clip}\big(\mathrm{round}(x / s),\ -127,\ 127\big), \qquad \hat x = s\,q . $$

*Symmetric*: zero is exactly $q = 0$ and the range $[-127 s, 127 s]$ is centred on it
(-128 is left out so that $-q$ always fits: the range is the same on both sides).
`round` is round-half-to-even (`numpy.rint`, OpenCL's `rint`). A value inside the range
is off by at most $s/2$ after the round trip; a value outside it is clipped to
$\pm 127 s$.

Weights: one scale per output channel. Output channel $c$ of a layer (one filter of a
Convolution, one row of an InnerProduct's $W$) gets

$$ s_w[c] = \frac{\max_k |W[c, k]|}{127}, $$

so its largest weight maps to $\pm 127$ and nothing is clipped. One scale for the whole
tensor would do too, but a filter with small weights would then use only a few of the
255 levels; per channel costs one float per channel and keeps every filter at full
resolution. (A channel of zeros, e.g. a pruned one, gets $s_w = 1$: all its $q$ are 0.)

Activations: one scale per layer input, from a range *calibrated* on real data.
`calibrate` runs N real batches through the float net and records, for every quantized
layer, the largest $|x|$ its input reached; then $s_x = \max|x| / 127$. Max-abs is the
simplest calibration and never clips a value seen in calibration, but one outlier
stretches the range and coarsens every other value. Others exist: a percentile of
$|x|$ (e.g. 99.99%) instead of the maximum, the range that minimises the mean squared
error of the round trip, or the one that minimises the KL divergence between the
float and the quantized histograms (TensorRT's "entropy" calibration). For a small
net like LeNet max-abs loses under 0.1 point (docs/quantization.md).

The integer product
-------------------
A layer's output channel $c$ is a dot product $y = \sum_k W[c,k]\,x_k + b[c]$. With
$W[c,k] \approx s_w[c]\,q_w[c,k]$ and $x_k \approx s_x\,q_{x,k}$:

$$ y \approx s_x\, s_w[c] \underbrace{\sum_k q_w[c,k]\, q_{x,k}}_{\text{int32 accumulator}} + b[c]. $$

Each product of two int8 values fits in 15 bits ($127^2 = 16129$), so the sum is
accumulated in int32 (exact up to $K = 2^{31} / 16129 \approx 133{,}000$ terms; longer
dot products are refused). Only then is it rescaled once by $s_x s_w[c]$ (one float per
channel, precomputed) and the float bias added. A Convolution is the same product on
im2col's columns: the input is quantized first and its zero padding stays zero.

Where the error comes from
--------------------------
1. **Rounding**: every weight and every input is off by up to half a step, $s/2$.
   Over a dot product of $K$ terms the errors are independent and partly cancel: the
   output error grows like $\sqrt K$, not $K$.
2. **Clipping**: an input beyond the calibrated range is cut to $\pm 127 s_x$. Max-abs
   never clips what calibration saw, but test data can go further.
3. **Calibration range**: a wider range (an outlier) means a coarser step $s_x$ and
   more rounding error everywhere; a narrower one means more clipping. The choice of
   calibration method is this trade.
The errors of one layer are the next layer's input errors, so they add up with depth.

Between the quantized layers
----------------------------
Each quantized layer here takes a float input, quantizes it with its own $s_x$, and
gives a float (dequantized) output; the layers in between (ReLU, Pooling, LRN, Softmax,
...) run unchanged, in float, on the dequantized values. An int8 pipeline would keep
ReLU and MAX pooling in int8, and for those two it makes no difference: both are
monotone and commute with $x \mapsto \mathrm{clip}(\mathrm{round}(x / s))$ for $s > 0$,
so quantizing after them equals running them on the quantized values. AVE pooling does
not commute with rounding (a mean of integers is not an integer) and needs a requantize
step in an int8 pipeline; in float it needs nothing.

Engines and exactness
---------------------
numpy: int8 x int8 products summed in int32 by `numpy.matmul` on int32 arrays are
about 50x slower than BLAS (numpy has no integer BLAS: LeNet's ip1 at batch 100, 35 ms
against 0.7 ms), so `int8_gemm` multiplies the integer values as floats, which is
exact here (see its docstring). OpenCL (`opencl/quantize.cl`): a kernel that reads
`char` operands and sums in `int`; the two engines give the same int32 accumulators,
bit for bit, and quantize inputs to the same integers: both multiply by $1/s$ (rounded
to float32 once) rather than divide by $s$, because a float multiply is correctly
rounded on every OpenCL device and a division is allowed 2.5 ulp of error.

The file
--------
`save` writes a QuantizedModel as HDF5 (written in memory, then atomically):

    /                      attrs: format = "minicaffe-int8", version = 1,
                                  net_name (the prototxt's `name`), model (its path),
                                  calibration_batches, calibration_phase
    /layers/<i>            one group per quantized layer, i = 0, 1, ... in net order;
                           attrs: name, type ("Convolution" or "InnerProduct"),
                                  input_scale (float32 s_x)
        weight             int8, the layer's weight blob shape, output channel first
                           (an InnerProduct with transpose: true is stored untransposed)
        weight_scale       float32 (num_output,): s_w
        bias               float32 (num_output,): zeros when the layer has no bias

Layer names may contain "/" (a group separator in HDF5), hence numbered groups. The
int8 weights take exactly a quarter of the float32 weights' bytes; scales and biases
add one or two floats per output channel. `load` reads and checks such a file, and
`QuantizedNet` runs a net with it.

    net = Net("lenet_train_test.prototxt", TEST, weights="lenet.caffemodel")
    model = quantize_net(net, calibration_batches=10)
    save(model, "lenet_int8.h5")
    qnet = QuantizedNet("lenet_train_test.prototxt", "lenet_int8.h5")
    qnet.forward_loss(); qnet.blobs["accuracy"].data
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from math import ceil, prod

import numpy as np

from minicaffe import common, opencl, protoio
from minicaffe.common import MinicaffeError
from minicaffe.im2col import Im2col

log = logging.getLogger("minicaffe.quantize")

QMAX = 127                 # symmetric: [-127, 127], -128 unused
FORMAT, VERSION = "minicaffe-int8", 1
QUANTIZED_TYPES = ("Convolution", "InnerProduct")
# An int32 accumulator holds any sum of this many products of int8 values in [-127, 127].
MAX_DOT_LENGTH = (2**31 - 1) // (QMAX * QMAX)
# float32 adds integers exactly while every partial sum stays within 2^24.
FLOAT32_EXACT_DOT_LENGTH = 2**24 // (QMAX * QMAX)


# ---------------------------------------------------------------- the arithmetic
def scale_for(max_abs) -> np.ndarray:
    """s = max|x| / 127 as float32 (elementwise); a range of 0 gets s = 1 (all q are 0)."""
    max_abs = np.asarray(max_abs, dtype=np.float32)
    return np.where(max_abs > 0, max_abs / np.float32(QMAX), np.float32(1)).astype(np.float32)


def quantize(x, scale) -> np.ndarray:
    """q = clip(round(x / s), -127, 127) as int8; `scale` broadcasts against x.

    Computed as x * (1/s) with 1/s rounded to float32 once, exactly as the OpenCL kernel
    does (see the module docstring), and rounded half to even.
    """
    x = np.asarray(x, dtype=np.float32)
    inverse = np.float32(1) / np.asarray(scale, dtype=np.float32)
    return np.clip(np.rint(x * inverse), -QMAX, QMAX).astype(np.int8)


def dequantize(q, scale) -> np.ndarray:
    """x̂ = s q, float32."""
    return np.asarray(q, dtype=np.float32) * np.asarray(scale, dtype=np.float32)


def channel_scales(weights) -> np.ndarray:
    """s_w[c] = max|W[c]| / 127 for each output channel c (axis 0) of a weight blob."""
    w = np.asarray(weights, dtype=np.float32)
    return scale_for(np.abs(w.reshape(w.shape[0], -1)).max(axis=1))


def quantize_weights(weights) -> tuple[np.ndarray, np.ndarray]:
    """(int8 weights of the same shape, per-output-channel float32 scales)."""
    w = np.asarray(weights, dtype=np.float32)
    scales = channel_scales(w)
    return quantize(w, scales.reshape(-1, *([1] * (w.ndim - 1)))), scales


def int8_gemm(a, b) -> np.ndarray:
    """The int32 accumulators a @ b of two int8 matrices (or stacks of them).

    Computed by BLAS on the integer values stored as floats, which is exact: every
    product is an integer of at most 127^2 = 16129 and every partial sum, in whatever
    order BLAS adds them, an integer of at most K * 16129. float32 holds every integer up
    to 2^24 exactly (K <= 1040), float64 up to 2^53; an integer sum of exactly
    representable integers that stays within that bound is never rounded. So this equals
    the int32 sum, 20-50x faster than numpy's integer matmul.
    """
    a, b = np.asarray(a), np.asarray(b)
    K = a.shape[-1]
    if K > MAX_DOT_LENGTH:
        raise MinicaffeError(f"int8 dot products of length {K} could overflow an int32 "
                             f"accumulator (at most {MAX_DOT_LENGTH} terms)")
    exact = np.float32 if K <= FLOAT32_EXACT_DOT_LENGTH else np.float64
    return np.matmul(a.astype(exact), b.astype(exact)).astype(np.int32)


# ---------------------------------------------------------------- a quantized layer
@dataclass
class QuantizedLayer:
    """One Convolution or InnerProduct layer in int8: what the file holds for it."""
    name: str
    type: str
    weight: np.ndarray        # int8, the blob's shape, output channel first
    weight_scale: np.ndarray  # float32 (num_output,)
    bias: np.ndarray          # float32 (num_output,)
    input_scale: float        # s_x
    _device: dict = field(default_factory=dict, repr=False, compare=False)

    @property
    def num_output(self) -> int:
        return self.weight.shape[0]

    @property
    def matrix(self) -> np.ndarray:
        """The weights as (num_output, K): one row per output channel."""
        return self.weight.reshape(self.num_output, -1)

    def output_scale(self) -> np.ndarray:
        """s_x s_w[c], float32: what an int32 accumulator of channel c is multiplied by."""
        return (np.float32(self.input_scale) * self.weight_scale).astype(np.float32)

    def quantize_input(self, x) -> np.ndarray:
        return quantize(x, self.input_scale)

    # ---- numpy
    def accumulators_cpu(self, layer, x: np.ndarray) -> np.ndarray:
        """int32 accumulators in the top's layout, (N, C_out, ∏O) or (M, num_output)."""
        xq = self.quantize_input(x)
        if self.type == "InnerProduct":
            return int8_gemm(xq.reshape(layer.M, layer.K), self.matrix.T)
        # The columns of the quantized input, batch last: one product for the whole batch
        # (a float32 copy of int8 values: im2col works on float32; the values stay exact).
        n, G, out = layer.num, layer.group, layer.conv_out_spatial_dim
        im2col = Im2col((n, layer.channels, *layer.conv_input_shape), layer.kernel, layer.pad,
                        layer.stride, layer.dilation, batch_last=True)
        cols = im2col(xq.astype(np.float32).reshape(n, layer.channels, *layer.conv_input_shape))
        cols = cols.reshape(G, -1, out * n)                 # (G, rows, ∏O·N)
        w = self.matrix.reshape(G, self.num_output // G, -1)  # (G, C_out/G, rows)
        acc = int8_gemm(w, cols)                            # (G, C_out/G, ∏O·N)
        return np.ascontiguousarray(acc.reshape(self.num_output, out, n).transpose(2, 0, 1))

    def forward_cpu(self, layer, bottom, top) -> None:
        for b, t in zip(bottom, top):
            acc = self.accumulators_cpu(layer, b.cpu_data())
            y = t.mutable_cpu_data().reshape(acc.shape)
            channel = (-1, 1) if self.type == "Convolution" else (-1,)
            np.multiply(acc.astype(np.float32), self.output_scale().reshape(channel), out=y)
            y += self.bias.reshape(channel)

    # ---- OpenCL
    def _buffers(self) -> dict:
        """The constants on the device, uploaded once: int8 weights, s_x s_w, bias."""
        if not self._device:
            self._device["weight"] = upload(self.weight)
            self._device["scale"] = upload(self.output_scale())
            self._device["bias"] = upload(self.bias)
        return self._device

    def accumulators_gpu(self, layer, x) -> tuple:
        """Launch the int8 products of one bottom (a device buffer); returns
        (int32 accumulator buffer, chunks): the accumulators of images n0 .. n0+m-1 for
        each (n0, m, offset) in chunks, laid out (C_out, m·∏O) from `offset` (Convolution),
        or one (M, num_output) matrix (InnerProduct)."""
        dev = self._buffers()
        if self.type == "InnerProduct":
            M, K, N = layer.M, layer.K, self.num_output
            xq = scratch(dev, "xq", ceil(M * K / 4))
            quantize_gpu(M * K, x, self.input_scale, xq)
            acc = scratch(dev, "acc", M * N)
            gemm_int8(M, N, K, xq, 0, dev["weight"], 0, True, acc, 0)  # X Wᵀ
            return acc, [(0, M, 0)]
        n, G, plane = layer.num, layer.group, layer.conv_out_spatial_dim
        rows, C = layer.kernel_dim, self.num_output
        image = layer.channels * prod(layer.conv_input_shape)
        chunk = max(1, min(n, CHUNK_COLUMN_VALUES // (rows * G * plane)))
        cols = scratch(dev, "cols", rows * G * chunk * plane)
        colq = scratch(dev, "colq", ceil(rows * G * chunk * plane / 4))
        acc = scratch(dev, "acc", C * n * plane)
        chunks = []
        for n0 in range(0, n, chunk):
            m = min(chunk, n - n0)
            # im2col of the float input, then quantize the columns: the same integers as
            # im2col of the quantized input (padding is 0 either way), one pass fewer.
            opencl.im2col(x, layer.channels, *layer.conv_input_shape, *layer.kernel, *layer.pad,
                          *layer.stride, *layer.dilation, cols, im_offset=n0 * image, num=m)
            width = m * plane
            quantize_gpu(rows * G * width, cols, self.input_scale, colq)
            offset = C * n0 * plane
            for g in range(G):  # (C/G, rows) · (rows, m∏O) per group
                gemm_int8(C // G, width, rows, dev["weight"], g * C // G * rows, colq,
                          g * rows * width, False, acc, offset + g * C // G * width)
            chunks.append((n0, m, offset))
        return acc, chunks

    def forward_gpu(self, layer, bottom, top) -> None:
        dev = self._buffers()
        i32 = np.int32
        for b, t in zip(bottom, top):
            acc, chunks = self.accumulators_gpu(layer, b.gpu_data())
            y = t.mutable_gpu_data()
            if self.type == "InnerProduct":
                M, N = layer.M, self.num_output
                opencl.kernel("quantize.cl", "dequantize_columns")(
                    M * N, acc, dev["scale"], dev["bias"], i32(N), y)
                continue
            C, plane = self.num_output, layer.conv_out_spatial_dim
            for n0, m, offset in chunks:
                opencl.kernel("quantize.cl", "dequantize_rows")(
                    m * C * plane, acc, i32(offset), dev["scale"], dev["bias"], i32(C), i32(m),
                    i32(plane), y, i32(n0 * C * plane))

    def forward(self, layer, bottom, top) -> None:
        """The layer's forward in int8, on the engine of the current mode."""
        layer.reshape(bottom, top)
        if common.mode() == common.GPU:
            self.forward_gpu(layer, bottom, top)
        else:
            self.forward_cpu(layer, bottom, top)

    def accumulators(self, layer, bottom) -> np.ndarray:
        """The int32 accumulators of `bottom` (a Blob) on the current engine, as a host
        array in the top's layout; for tests and for seeing the integers."""
        layer.reshape([bottom], [_Shape()])
        if common.mode() != common.GPU:
            return self.accumulators_cpu(layer, bottom.cpu_data())
        acc, chunks = self.accumulators_gpu(layer, bottom.gpu_data())
        if self.type == "InnerProduct":
            return download(acc, layer.M * self.num_output, np.int32).reshape(layer.M, -1)
        C, plane = self.num_output, layer.conv_out_spatial_dim
        host = download(acc, C * layer.num * plane, np.int32)
        images = []
        for n0, m, offset in chunks:
            images.append(host[offset:offset + C * m * plane].reshape(C, m, plane).transpose(1, 0, 2))
        return np.concatenate(images)


class _Shape:
    """A stand-in top for `accumulators`: takes the shape a layer's reshape gives it."""

    def reshape(self, shape):
        self.shape = tuple(shape)


# ---------------------------------------------------------------- device helpers
# Values in one column buffer: a larger batch is done a chunk of images at a time.
CHUNK_COLUMN_VALUES = 1 << 24


def upload(array: np.ndarray):
    """A device buffer holding `array`'s bytes (int8, int32 or float32)."""
    array = np.ascontiguousarray(array)
    buffer = opencl.allocate(ceil(array.nbytes / 4))  # allocate counts 4-byte values
    opencl.write_bytes(buffer, array)
    return buffer


def scratch(dev: dict, name: str, values: int):
    """A device work buffer of at least `values` 4-byte values, kept between calls."""
    if dev.get(name + "_size", -1) < values:
        dev[name], dev[name + "_size"] = opencl.allocate(values), values
    return dev[name]


def download(buffer, n: int, dtype) -> np.ndarray:
    """The first `n` values of type `dtype` (np.int8, np.int32) in a device buffer."""
    out = np.empty(n, dtype)
    opencl.read_bytes(out, buffer)
    return out


def quantize_gpu(n: int, x, scale: float, q) -> None:
    """q[i] = clip(rint(x[i] / s), -127, 127) as char, for n floats of buffer x."""
    inverse = np.float32(1) / np.float32(scale)
    opencl.kernel("quantize.cl", "quantize")(n, x, inverse, q)


def gemm_int8(M: int, N: int, K: int, A, a_offset: int, B, b_offset: int, trans_b: bool,
              C, c_offset: int) -> None:
    """C (int, M x N) = A (char, M x K) op(B) (char, K x N, or N x K if trans_b), row-major.

    Two kernels of opencl/quantize.cl: `gemm_int8_dots` when B is transposed (rows of A
    and B are both contiguous: InnerProduct), `gemm_int8_strips` when it is not (outer
    products of 16-byte rows of B: Convolution's columns).
    """
    if M <= 0 or N <= 0:
        return
    if K > MAX_DOT_LENGTH:
        raise MinicaffeError(f"int8 dot products of length {K} could overflow an int32 "
                             f"accumulator (at most {MAX_DOT_LENGTH} terms)")
    i32 = np.int32
    if trans_b:
        opencl.kernel("quantize.cl", "gemm_int8_dots").launch(
            (N, M), None, i32(M), i32(N), i32(K), A, i32(a_offset), B, i32(b_offset), C, i32(c_offset))
    else:
        opencl.kernel("quantize.cl", "gemm_int8_strips").launch(
            (ceil(N / 16), ceil(M / STRIP_ROWS)), None, i32(M), i32(N), i32(K), A, i32(a_offset),
            B, i32(b_offset), C, i32(c_offset))


STRIP_ROWS = 4  # RM in opencl/quantize.cl


# ---------------------------------------------------------------- calibration and a model
@dataclass
class QuantizedModel:
    """Every quantized layer of a net, in net order, and where the ranges came from."""
    net_name: str
    layers: list[QuantizedLayer]
    model: str = ""
    calibration_batches: int = 0
    calibration_phase: str = "TEST"

    def layer(self, name: str) -> QuantizedLayer:
        for q in self.layers:
            if q.name == name:
                return q
        raise KeyError(name)

    def weight_bytes(self) -> dict[str, int]:
        """Bytes of the int8 weights, of the float32 weights they replace, and of the
        scales and biases kept in float32."""
        count = sum(q.weight.size for q in self.layers)
        extra = sum(q.weight_scale.nbytes + q.bias.nbytes + 4 for q in self.layers)
        return {"int8": count, "float32": 4 * count, "scales_and_biases": extra}


def quantizable(record) -> bool:
    return record.layer.type in QUANTIZED_TYPES


def check_quantizable(record) -> None:
    """Refuse, by name, a layer the int8 path does not cover."""
    layer, where = record.layer, f"layer {record.name!r} ({record.layer.type})"
    if layer.type == "Convolution":
        if layer.channel_axis != 1 or layer.num_spatial_axes != 2:
            raise MinicaffeError(f"{where}: int8 quantization handles 2-D convolutions over "
                                 f"axis 1; this one has axis {layer.channel_axis} and "
                                 f"{layer.num_spatial_axes} spatial axes")
        length = layer.kernel_dim
    else:
        length = layer.K
    if length > MAX_DOT_LENGTH:
        raise MinicaffeError(f"{where}: dot products of {length} terms could overflow the int32 "
                             f"accumulator (at most {MAX_DOT_LENGTH})")


def calibrate(net, batches: int) -> dict[str, float]:
    """max|x| of every Convolution / InnerProduct input over `batches` float forwards.

    The net reads its own data: each forward pass takes the next batch of its data
    layer, as testing does.
    """
    if batches < 1:
        raise MinicaffeError(f"calibration needs at least 1 batch, got {batches}")
    ranges: dict[str, float] = {}
    for record in net.layer_records:
        if quantizable(record):
            check_quantizable(record)
            ranges[record.name] = 0.0
    if not ranges:
        raise MinicaffeError(f"net {net.name!r} has no Convolution or InnerProduct layer to quantize")
    for _ in range(batches):
        for record in net.layer_records:
            if record.name in ranges:  # before forward: an in-place layer may overwrite it
                seen = max(float(np.abs(b.cpu_data()).max(initial=0.0)) for b in record.bottom_vec)
                ranges[record.name] = max(ranges[record.name], seen)
            record.layer.forward(record.bottom_vec, record.top_vec)
    return ranges


def quantize_layer(record, input_range: float) -> QuantizedLayer:
    layer = record.layer
    w = layer.blobs[0].cpu_data()
    if layer.type == "InnerProduct" and layer.transpose:
        w = w.T  # stored (K, N): output channels first, as every other layer
    q, scales = quantize_weights(w)
    bias = (layer.blobs[1].cpu_data().reshape(-1).astype(np.float32) if layer.bias_term
            else np.zeros(w.shape[0], np.float32))
    return QuantizedLayer(record.name, layer.type, q, scales, bias.copy(),
                          float(scale_for(input_range)))


def quantize_net(net, calibration_batches: int, model: str = "", phase: str = "TEST") -> QuantizedModel:
    """Calibrate `net` (with its float weights loaded) and quantize its layers."""
    ranges = calibrate(net, calibration_batches)
    layers = [quantize_layer(r, ranges[r.name]) for r in net.layer_records if r.name in ranges]
    for q in layers:
        log.info("%s (%s): input range %.4g, s_x %.4g, weight scales %.3g .. %.3g",
                 q.name, q.type, ranges[q.name], q.input_scale, q.weight_scale.min(),
                 q.weight_scale.max())
    return QuantizedModel(net.name, layers, str(model), calibration_batches, phase)


# ---------------------------------------------------------------- the file
def save(model: QuantizedModel, path) -> None:
    """Write `model` in the HDF5 layout of the module docstring, atomically."""
    from minicaffe.io import hdf5

    def write(f):
        f.attrs.update(format=FORMAT, version=VERSION, net_name=model.net_name, model=model.model,
                       calibration_batches=model.calibration_batches,
                       calibration_phase=model.calibration_phase)
        layers = f.create_group("layers")
        for i, q in enumerate(model.layers):
            g = layers.create_group(str(i))
            g.attrs.update(name=q.name, type=q.type, input_scale=np.float32(q.input_scale))
            g.create_dataset("weight", data=q.weight.astype(np.int8))
            g.create_dataset("weight_scale", data=q.weight_scale.astype(np.float32))
            g.create_dataset("bias", data=q.bias.astype(np.float32))
    protoio.write_atomic(path, hdf5.to_bytes(write))


def load(path) -> QuantizedModel:
    """Read a file written by `save`; anything else is one clear error naming the file."""
    import h5py

    from minicaffe.io import hdf5
    where = str(path)
    with hdf5.open_for_reading(path, "loading a quantized model") as f:
        if f.attrs.get("format") != FORMAT:
            raise MinicaffeError(f"{where}: not a minicaffe int8 model (no format attribute "
                                 f"{FORMAT!r}; write one with `minicaffe quantize`)")
        if int(f.attrs.get("version", -1)) != VERSION:
            raise MinicaffeError(f"{where}: int8 model format version {f.attrs.get('version')}, "
                                 f"this minicaffe reads version {VERSION}")
        group = f.get("layers")
        if not isinstance(group, h5py.Group):
            raise MinicaffeError(f"{where}: no group 'layers'")
        layers = []
        for i in range(len(group)):
            g = group.get(str(i))
            if not isinstance(g, h5py.Group):
                raise MinicaffeError(f"{where}: layers/{i} is missing (groups must be 0 .. {len(group) - 1})")
            layers.append(_read_layer(g, f"{where}: layers/{i}"))
        return QuantizedModel(str(f.attrs.get("net_name", "")), layers, str(f.attrs.get("model", "")),
                              int(f.attrs.get("calibration_batches", 0)),
                              str(f.attrs.get("calibration_phase", "")))


def _read_layer(g, where: str) -> QuantizedLayer:
    import h5py
    name, kind = g.attrs.get("name"), g.attrs.get("type")
    if not isinstance(name, str) or kind not in QUANTIZED_TYPES:
        raise MinicaffeError(f"{where}: needs attributes name and type (one of {QUANTIZED_TYPES}), "
                             f"has name={name!r}, type={kind!r}")
    where = f"{where} (layer {name!r})"
    arrays = {}
    for key, dtype in (("weight", np.int8), ("weight_scale", np.float32), ("bias", np.float32)):
        item = g.get(key)
        if not isinstance(item, h5py.Dataset) or item.dtype != dtype:
            raise MinicaffeError(f"{where}: dataset {key!r} must be {np.dtype(dtype).name}, "
                                 f"found {item.dtype if isinstance(item, h5py.Dataset) else 'none'}")
        arrays[key] = item[()]
    weight, scales, bias = arrays["weight"], arrays["weight_scale"], arrays["bias"]
    channels = weight.shape[0] if weight.ndim else 0
    if weight.ndim < 2 or scales.shape != (channels,) or bias.shape != (channels,):
        raise MinicaffeError(f"{where}: weight {weight.shape}, weight_scale {scales.shape} and bias "
                             f"{bias.shape} do not fit: one scale and one bias per output channel")
    input_scale = float(g.attrs.get("input_scale", float("nan")))
    if not (np.all(np.isfinite(scales)) and np.all(scales > 0) and np.isfinite(input_scale)
            and input_scale > 0):
        raise MinicaffeError(f"{where}: scales must be finite and positive "
                             f"(input_scale {input_scale}, weight_scale min {scales.min()})")
    if np.any(weight == -128):
        raise MinicaffeError(f"{where}: weight holds -128; symmetric int8 uses -127 .. 127")
    return QuantizedLayer(name, kind, weight, scales, bias, input_scale)


# ---------------------------------------------------------------- running a net in int8
class QuantizedNet:
    """A Net whose Convolution and InnerProduct layers run in int8.

    Built from the model prototxt and a quantized model (a path or a QuantizedModel).
    `weights` (a .caffemodel) is needed only when other layers have parameters
    (BatchNorm, Scale, PReLU, ...); the quantized layers' float weights are not used.
    Exposes what `minicaffe test` uses: `forward_loss`, `output_blobs`, ..., `blobs`.
    """

    def __init__(self, model, quantized, weights=None, phase=None, level: int = 0, stages=()):
        from minicaffe.net import TEST, Net
        self.quantized = quantized if isinstance(quantized, QuantizedModel) else load(quantized)
        self.net = Net(model, TEST if phase is None else phase, level=level, stages=stages)
        source = (f"the int8 model of net {self.quantized.net_name!r}"
                  if isinstance(quantized, QuantizedModel) else str(quantized))
        if self.quantized.net_name and self.quantized.net_name != self.net.name:
            log.warning("%s was quantized from net %r, this net is %r", source,
                        self.quantized.net_name, self.net.name)
        by_name = {r.name: r for r in self.net.layer_records}
        self.by_layer: dict[str, QuantizedLayer] = {}
        for q in self.quantized.layers:
            record = by_name.get(q.name)
            if record is None:
                raise MinicaffeError(f"{source}: quantized layer {q.name!r} is not a layer of "
                                     f"{self.net.source}")
            self._check_fits(source, q, record)
            self.by_layer[q.name] = q
        float_left = [r.name for r in self.net.layer_records if quantizable(r) and r.name not in self.by_layer]
        for name in float_left:
            log.warning("layer %r is not in %s: it runs in float", name, source)
        if weights:
            self.net.copy_trained_layers_from(weights)
        else:
            missing = [r.name for r in self.net.layer_records
                       if r.layer.blobs and r.name not in self.by_layer]
            if missing:
                raise MinicaffeError(f"layers {missing} of {self.net.source} have parameters that "
                                     f"{source} does not hold; give the float weights too (--weights)")

    @staticmethod
    def _check_fits(source, q: QuantizedLayer, record) -> None:
        layer, where = record.layer, f"{source}: layer {q.name!r}"
        if layer.type != q.type:
            raise MinicaffeError(f"{where} is a {q.type} in the file and a {layer.type} in the net")
        check_quantizable(record)
        shape = tuple(layer.blobs[0].shape)
        if layer.type == "InnerProduct" and layer.transpose:
            shape = shape[::-1]
        if tuple(q.weight.shape) != shape:
            raise MinicaffeError(f"{where}: the file's weights have shape {tuple(q.weight.shape)}, "
                                 f"the net's {shape}")

    def forward_loss(self) -> float:
        loss = 0.0
        for record in self.net.layer_records:
            q = self.by_layer.get(record.name)
            if q is None:
                loss += record.layer.forward(record.bottom_vec, record.top_vec)
            else:
                q.forward(record.layer, record.bottom_vec, record.top_vec)
        return loss

    def forward(self, **inputs) -> dict[str, np.ndarray]:
        """Set Input blobs by name (as Net.forward), run, and return the outputs."""
        for name, values in inputs.items():
            self.net.blobs[name].data[...] = values
        self.forward_loss()
        return {name: blob.data.copy() for name, blob in zip(self.output_blob_names, self.output_blobs)}

    @property
    def blobs(self):
        return self.net.blobs

    @property
    def output_blobs(self):
        return self.net.output_blobs

    @property
    def output_blob_names(self):
        return self.net.output_blob_names

    @property
    def output_blob_loss_weights(self):
        return self.net.output_blob_loss_weights
