r"""BaseConvolutionLayer: the im2col + GEMM machinery of Convolution and Deconvolution
(Caffe's `base_conv_layer.cpp`).

Per group $g$, a convolution is the product $Y_g = W_g\,\mathrm{col}_g(x)$ of its weights
with the columns of its input (`minicaffe/im2col.py`), and its backward is two more
products. A deconvolution is the same three products with the two sides swapped: its
forward is a convolution's backward to the input. So both layers are written with five
helpers, each on both engines (`*` is `cpu` or `gpu`):

| helper | computes |
|---|---|
| `forward_*_gemm(input, weights, output)` | output $= W\,\mathrm{im2col}(\text{input})$ |
| `backward_*_gemm(output, weights, input)` | input $= \mathrm{col2im}(W^\top \text{output})$ |
| `weight_*_gemm(input, output, weights)` | weights $\mathrel{+}= \text{output}\;\mathrm{im2col}(\text{input})^\top$ |
| `forward_*_bias(top, bias)` | top $\mathrel{+}= b$, per channel |
| `backward_*_bias(bias, top)` | $b \mathrel{+}=$ top summed over images and positions |

"input" is the side im2col reads, $(N, C_{in}, S_1, \dots)$, "output" the side the
GEMM writes, $(N, C_{out}, \prod O)$: a Convolution's bottom and top, a Deconvolution's
top and bottom, which is all `reverse_dimensions()` decides. A subclass answers it,
gives `compute_output_shape()` (the top's spatial shape) and writes its forward and
backward with the helpers, which take whole batches (host arrays or device buffers).
The columns a helper builds are kept as set `col` (one per bottom), and a later
`*_gemm(..., skip_im2col=True)` reuses them: Convolution's backward reuses forward's,
where Caffe builds them again to save memory.

Host. Each product runs over the whole batch at once, in one of the two column layouts
of `im2col.py`, picked by `_batch_last` (whose docstring has the measurements): Caffe's
per-image layout, where the products are batched and write straight into the blob, or
the batch last, where each product is one GEMM and the result is transposed into the
blob. `_col_matrices` and `_output_matrices` give the products their operands in
either layout.

Device (kernels: `opencl/convolution.cl`, `opencl/gemm.cl`, `opencl/im2col.cl`). The
columns of a whole batch lie side by side, $(C_{in}\prod k) \times (N \prod O)$,
image-major, so each product is one large GEMM per group (small per-image GEMMs leave a
CPU device mostly idle). The GEMM's result, $(C_{out}, N, \prod O)$, is moved into the
blob, $(N, C_{out}, \prod O)$, by `conv_to_images`, and an output diff the other way by
`conv_to_channels`. A batch whose columns would pass `DEVICE_COL_LIMIT` values is done
a few images at a time; kept columns then hold only the last chunk, so they are rebuilt.
"""
from __future__ import annotations

from math import prod
from types import SimpleNamespace

import numpy as np

from minicaffe import opencl, opencl_gemm
from minicaffe.blob import MAX_BLOB_COUNT, Blob
from minicaffe.common import MinicaffeError
from minicaffe.filler import fill
from minicaffe.im2col import Im2col, col2im
from minicaffe.layer import Layer


def _which(blob: Blob) -> str:
    return f"bottom {blob.name!r}" if blob.name else "the bottom"


class BaseConvolutionLayer(Layer):
    """Geometry, parameters and products shared by Convolution and Deconvolution."""

    min_bottom_blobs = 1
    min_top_blobs = 1
    equal_num_bottom_top_blobs = True

    def reverse_dimensions(self) -> bool:
        """True for Deconvolution: im2col reads the top and the GEMM writes the bottom."""
        raise NotImplementedError

    def compute_output_shape(self, spatial: tuple[int, ...]) -> tuple[int, ...]:
        """The top's spatial shape for a bottom of spatial shape `spatial`."""
        raise NotImplementedError

    def _error(self, message: str) -> MinicaffeError:
        return MinicaffeError(f"{self.type} layer {self.name!r}: {message}")

    # ---- parameters
    def _spatial_values(self, name: str, values, h_w, default: int, num_spatial: int):
        """One value per spatial axis from `values` (given 0, 1 or d times) or the _h/_w pair."""
        p = self.layer_param.convolution_param
        if h_w is not None and (p.HasField(h_w[0]) or p.HasField(h_w[1])):
            if num_spatial != 2:
                raise self._error(f"{h_w[0]}/{h_w[1]} can only be used for 2-D convolution, "
                                  f"the bottom has {num_spatial} spatial axes")
            if len(values):
                raise self._error(f"give either {name} or {h_w[0]}/{h_w[1]}, not both")
            return (getattr(p, h_w[0]), getattr(p, h_w[1]))
        if len(values) == 0:
            return (default,) * num_spatial
        if len(values) == 1:
            return (int(values[0]),) * num_spatial
        if len(values) != num_spatial:
            raise self._error(f"{name} must be given once or once per spatial axis; given "
                              f"{len(values)} times for {num_spatial} spatial axes")
        return tuple(int(v) for v in values)

    def layer_setup(self, bottom, top):
        p = self.layer_param.convolution_param
        try:
            self.channel_axis = bottom[0].canonical_axis_index(p.axis)
        except MinicaffeError as err:
            raise self._error(str(err)) from None
        self.num_spatial_axes = bottom[0].num_axes - self.channel_axis - 1
        d = self.num_spatial_axes
        if not p.HasField("kernel_h") and not p.HasField("kernel_w") and not len(p.kernel_size):
            raise self._error("kernel_size (or kernel_h and kernel_w) must be specified")
        if p.HasField("kernel_h") != p.HasField("kernel_w"):
            raise self._error("kernel_h and kernel_w must be given together")
        self.kernel = self._spatial_values("kernel_size", p.kernel_size,
                                           ("kernel_h", "kernel_w"), 0, d)
        if any(k <= 0 for k in self.kernel):
            raise self._error(f"kernel dimensions must be positive, got {self.kernel}")
        self.stride = self._spatial_values("stride", p.stride, ("stride_h", "stride_w"), 1, d)
        if any(s <= 0 for s in self.stride):
            raise self._error(f"stride must be positive, got {self.stride}")
        self.pad = self._spatial_values("pad", p.pad, ("pad_h", "pad_w"), 0, d)
        self.dilation = self._spatial_values("dilation", p.dilation, None, 1, d)
        if any(r <= 0 for r in self.dilation):
            raise self._error(f"dilation must be positive, got {self.dilation}")
        # A 1x1 kernel at stride 1 without padding: the input is its own column matrix.
        self.is_1x1 = (all(k == 1 for k in self.kernel) and all(s == 1 for s in self.stride)
                       and not any(self.pad))

        self.channels = bottom[0].shape[self.channel_axis]
        self.num_output, self.group = p.num_output, p.group
        if self.num_output <= 0:
            raise self._error("convolution_param.num_output must be specified and positive")
        if self.group <= 0 or self.channels % self.group:
            raise self._error(f"the bottom's {self.channels} channels (axis {self.channel_axis} "
                              f"of {_which(bottom[0])} {bottom[0].shape}) are not "
                              f"divisible by group {self.group}")
        if self.num_output % self.group:
            raise self._error(f"num_output {self.num_output} is not divisible by group {self.group}")
        if self.reverse_dimensions():
            self.conv_in_channels, self.conv_out_channels = self.num_output, self.channels
        else:
            self.conv_in_channels, self.conv_out_channels = self.channels, self.num_output
        # Rows of one group's columns, and of one output channel's weights.
        self.kernel_dim = self.conv_in_channels // self.group * prod(self.kernel)

        weight_shape = (self.conv_out_channels, self.conv_in_channels // self.group, *self.kernel)
        self.bias_term = p.bias_term
        if self.blobs:
            if len(self.blobs) != 1 + self.bias_term:
                raise self._error(f"expected {1 + self.bias_term} parameter blob(s), "
                                  f"got {len(self.blobs)}")
            if self.blobs[0].shape != weight_shape:
                raise self._error(f"weight shape {self.blobs[0].shape} given, "
                                  f"expected {weight_shape}")
            if self.bias_term and self.blobs[1].shape != (self.num_output,):
                raise self._error(f"bias shape {self.blobs[1].shape} given, "
                                  f"expected {(self.num_output,)}")
        else:
            self.blobs.append(Blob(weight_shape, name=f"{self.name}.weight"))
            fill(self.blobs[0], p.weight_filler)
            if self.bias_term:
                self.blobs.append(Blob((self.num_output,), name=f"{self.name}.bias"))
                fill(self.blobs[1], p.bias_filler)
        self.param_propagate_down = [True] * len(self.blobs)
        self._bottom_shape = None

    def reshape(self, bottom, top):
        x = bottom[0]
        if x.num_axes != self.channel_axis + 1 + self.num_spatial_axes:
            raise self._error(f"{_which(x)} has shape {x.shape}; the number of axes may "
                              f"not change after setup ({self.channel_axis + 1 + self.num_spatial_axes})")
        if x.shape[self.channel_axis] != self.channels:
            raise self._error(f"{_which(x)} has {x.shape[self.channel_axis]} channels, "
                              f"the weights expect {self.channels}")
        for b in bottom[1:]:
            if b.shape != x.shape:
                raise self._error(f"all bottoms must have one shape: {_which(x)} is {x.shape}, "
                                  f"{_which(b)} is {b.shape}")
        if self._bottom_shape != x.shape:
            self._plan(x)
        for t in top:
            t.reshape(self.top_shape)

    def _plan(self, x: Blob) -> None:
        """Shapes, column layout and column buffers for bottoms of x's shape."""
        self.num = x.count_range(0, self.channel_axis)
        bottom_spatial = x.shape[self.channel_axis + 1:]
        try:
            self.output_shape = self.compute_output_shape(bottom_spatial)
        except MinicaffeError as err:
            raise self._error(f"{_which(x)} of shape {x.shape}: {err}") from None
        self.top_shape = (*x.shape[:self.channel_axis], self.num_output, *self.output_shape)
        if prod(self.top_shape) > MAX_BLOB_COUNT:  # before sizing the column buffers from it
            raise self._error(f"top shape {self.top_shape} holds {prod(self.top_shape):,} values, "
                              f"more than the {MAX_BLOB_COUNT:,} (INT_MAX) a blob may hold")
        self.out_spatial_dim = prod(self.output_shape)  # values per channel of a top image
        if self.reverse_dimensions():
            self.conv_input_shape, conv_output_shape = self.output_shape, bottom_spatial
        else:
            self.conv_input_shape, conv_output_shape = bottom_spatial, self.output_shape
        self.conv_out_spatial_dim = prod(conv_output_shape)  # columns per image
        self.batch_last = self._batch_last()
        self._col_size = self.kernel_dim * self.group * self.conv_out_spatial_dim * self.num
        self._cols: dict[int, np.ndarray] = {}  # per column set: the columns im2col returned
        self._col_diff: np.ndarray | None = None  # for backward_cpu_gemm, made on first use
        self._im2col: Im2col | None = None  # made on first use
        self._device = None  # the device's buffers, made by the first GPU pass
        self._bottom_shape = x.shape

    def _batch_last(self) -> bool:
        """Whether the host puts the batch last in its columns (see `im2col.py`).

        Measured (forward + backward, batch 64, OpenBLAS on a shared 2-core machine,
        best of 6), per-image layout against batch last: LeNet's conv1 (each image's
        columns 25 x 576) 2.9 ms against 19.6 ms, its conv2 (500 x 64) 72 ms against
        21 ms, a 1x1 kernel (32 x 256) 2.0 ms against 26 ms. Per-image products are
        fast when they are wide, so the batch goes last only when an image's column
        matrix is taller than wide, and never for a 1x1 kernel (its input is its columns).
        """
        rows, cols = self.kernel_dim * self.group, self.conv_out_spatial_dim
        return self.num > 1 and cols < rows and not self.is_1x1

    # ---- host helpers
    def _im2col_cpu(self, input: np.ndarray, col: int) -> np.ndarray:
        """The columns of `input` (N, C_in, *S_in), kept as column set `col`."""
        x = input.reshape(self.num, self.conv_in_channels, *self.conv_input_shape)
        if self.is_1x1:  # in Caffe's layout (never batch last, see above) x is its own columns
            self._cols[col] = x.reshape(self.num, self.conv_in_channels, -1)
            return self._cols[col]
        if self._im2col is None:
            self._im2col = Im2col(x.shape, self.kernel, self.pad, self.stride, self.dilation,
                                  self.batch_last)
        kept = self._cols.get(col)  # the memory of the set's last columns, else new memory
        buffer = np.empty(self._col_size, np.float32) if kept is None else kept.reshape(-1)
        self._cols[col] = self._im2col(x, out=buffer)
        return self._cols[col]

    def _col_matrices(self, col: np.ndarray) -> np.ndarray:
        """Columns (or their diff) as the products' stack of matrices, group by group:
        (G, rows, ∏O·N) with the batch last, else (N, G, rows, ∏O)."""
        G, cols, n = self.group, self.conv_out_spatial_dim, self.num
        return col.reshape(G, -1, cols * n) if self.batch_last else col.reshape(n, G, -1, cols)

    def _output_matrices(self, output: np.ndarray) -> np.ndarray:
        """An output-side array (N, C_out, ∏O) as the products' operand, group by group:
        a view (N, G, C_out/G, ∏O) in Caffe's layout, a transposed copy with the batch last."""
        G, cols, n = self.group, self.conv_out_spatial_dim, self.num
        y = output.reshape(n, G, -1, cols)
        if self.batch_last:
            return y.transpose(1, 2, 3, 0).reshape(G, -1, cols * n)
        return y

    def forward_cpu_gemm(self, input, weights, output, col: int = 0, skip_im2col: bool = False):
        """output = W im2col(input), per group; keeps the columns as column set `col`."""
        columns = self._cols[col] if skip_im2col else self._im2col_cpu(input, col)
        w = weights.reshape(self.group, self.conv_out_channels // self.group, -1)
        if self.batch_last:  # one product for the batch, then the images to the front
            product = np.matmul(w, self._col_matrices(columns))
            n, cols = self.num, self.conv_out_spatial_dim
            output.reshape(n, -1, cols)[...] = product.reshape(-1, cols, n).transpose(2, 0, 1)
        else:  # one product per image, straight into the output
            np.matmul(w, self._col_matrices(columns), out=self._output_matrices(output))

    def backward_cpu_gemm(self, output, weights, input):
        """input = col2im(Wᵀ output), per group."""
        if self._col_diff is None:
            self._col_diff = np.empty(self._col_size, dtype=np.float32)
        w = weights.reshape(self.group, self.conv_out_channels // self.group, -1)
        np.matmul(w.transpose(0, 2, 1), self._output_matrices(output),
                  out=self._col_matrices(self._col_diff))
        shape = (self.num, self.conv_in_channels, *self.conv_input_shape)
        col2im(self._col_diff, shape, self.kernel, self.pad, self.stride, self.dilation,
               out=input.reshape(shape), batch_last=self.batch_last)

    def weight_cpu_gemm(self, input, output, weights, col: int = 0, skip_im2col: bool = False):
        """weights += output im2col(input)ᵀ, per group, summed over the batch."""
        columns = self._cols[col] if skip_im2col else self._im2col_cpu(input, col)
        col_m, out_m = self._col_matrices(columns), self._output_matrices(output)
        dw = weights.reshape(self.group, -1, self.kernel_dim)
        if col_m.shape[-2] > col_m.shape[-1]:
            # Columns taller than wide (small planes): output colᵀ is already in dw's
            # layout, where the other order's result must be added transposed: 1.2 ms
            # against 1.4 ms for SqueezeNet's conv10 at batch 1 (1000 x 512 weights).
            products = np.matmul(out_m, col_m.swapaxes(-1, -2))
        else:
            # (col outputᵀ)ᵀ rather than output colᵀ: OpenBLAS is 1.3-1.6x faster with the
            # larger matrix on the left (measured on LeNet and CIFAR shapes).
            products = np.matmul(col_m, out_m.swapaxes(-1, -2)).swapaxes(-1, -2)
        if products.ndim == dw.ndim + 1:  # Caffe's layout: one product per image
            # A batch of one needs no sum (which copies): conv10 at batch 1, 1.4 ms
            # against 2.7 ms; ResNet-50's backward at batch 1, 68 ms against 184 ms.
            products = products[0] if len(products) == 1 else products.sum(axis=0)
        dw += products

    def forward_cpu_bias(self, top, bias):
        """top += bias, per channel."""
        y = top.reshape(self.num, self.num_output, self.out_spatial_dim)
        y += bias[:, None]

    def backward_cpu_bias(self, bias, top):
        """bias += the top diff summed over images and positions."""
        dy = top.reshape(self.num, self.num_output, self.out_spatial_dim)
        # As a product with ones (Caffe's bias_multiplier): BLAS does it faster than
        # numpy's reduction over two axes.
        bias += (dy @ np.ones(self.out_spatial_dim, dtype=np.float32)).sum(axis=0)

    # ---- device helpers: whole chunks of the batch per GEMM
    DEVICE_COL_LIMIT = 1 << 24  # values in one device column buffer (64 MiB)

    def _device_buffers(self) -> SimpleNamespace:
        """Columns and the GEMM's result for this shape: made once per reshape."""
        if self._device is None:
            rows, plane = self.kernel_dim * self.group, self.conv_out_spatial_dim
            chunk = max(1, min(self.num, self.DEVICE_COL_LIMIT // (rows * plane)))
            nd = self.num_spatial_axes != 2 or self.layer_param.convolution_param.force_nd_im2col
            self._device = SimpleNamespace(
                chunk=chunk,
                cols={},  # per column set: (C_in∏k, chunk·∏O)
                col_diff=opencl.allocate(rows * chunk * plane),
                out=opencl.allocate(self.conv_out_channels * chunk * plane),  # (C_out, chunk·∏O)
                geometry=opencl.ConvGeometry(self.conv_input_shape, self.kernel, self.pad,
                                             self.stride, self.dilation) if nd else None)
        return self._device

    def _chunks(self) -> list[tuple[int, int]]:
        """(first image, number of images) of each pass over the batch."""
        chunk = self._device_buffers().chunk
        return [(n0, min(chunk, self.num - n0)) for n0 in range(0, self.num, chunk)]

    def _im2col_gpu(self, input, n0: int, m: int, col: int, skip_im2col: bool):
        """Column set `col` for images n0 .. n0+m-1 of `input`; reused when `skip_im2col`
        and the set holds them, i.e. when the whole batch is one chunk."""
        buf = self._device_buffers()
        if col not in buf.cols:
            buf.cols[col] = opencl.allocate(self.kernel_dim * self.group * buf.chunk
                                            * self.conv_out_spatial_dim)
        if skip_im2col and buf.chunk >= self.num:
            return buf.cols[col]
        offset = n0 * self.conv_in_channels * prod(self.conv_input_shape)
        if buf.geometry is not None:
            opencl.im2col_nd(input, m, self.conv_in_channels, buf.geometry, buf.cols[col],
                             im_offset=offset)
        else:
            opencl.im2col(input, self.conv_in_channels, *self.conv_input_shape, *self.kernel,
                          *self.pad, *self.stride, *self.dilation, buf.cols[col],
                          im_offset=offset, num=m)
        return buf.cols[col]

    def _col2im_gpu(self, col_diff, n0: int, m: int, input) -> None:
        buf = self._device_buffers()
        offset = n0 * self.conv_in_channels * prod(self.conv_input_shape)
        if buf.geometry is not None:
            opencl.col2im_nd(col_diff, m, self.conv_in_channels, buf.geometry, input,
                             im_offset=offset)
        else:
            opencl.col2im(col_diff, self.conv_in_channels, *self.conv_input_shape, *self.kernel,
                          *self.pad, *self.stride, *self.dilation, input, im_offset=offset,
                          num=m)

    def _gemm_sizes(self) -> tuple[int, int, int, int]:
        """Groups, output channels, rows of a group's columns, columns per image."""
        return self.group, self.conv_out_channels, self.kernel_dim, self.conv_out_spatial_dim

    def _to_channels(self, output, n0: int, m: int):
        """Images n0 .. n0+m-1 of an output-side buffer, as (C_out, m·∏O) in `out`."""
        buf, K, plane = self._device_buffers(), self.conv_out_channels, self.conv_out_spatial_dim
        opencl.kernel("convolution.cl", "conv_to_channels")(
            m * K, output, np.int32(n0 * K * plane), np.int32(K), np.int32(plane), buf.out)
        return buf.out

    def forward_gpu_gemm(self, input, weights, output, col: int = 0, skip_im2col: bool = False):
        """output = W im2col(input), per group, a chunk of images per GEMM."""
        buf = self._device_buffers()
        G, K, rows, plane = self._gemm_sizes()
        for n0, m in self._chunks():
            columns, cols = self._im2col_gpu(input, n0, m, col, skip_im2col), m * plane
            for g in range(G):  # (K/G, rows) · (rows, m∏O)
                opencl_gemm.gemm(False, False, K // G, cols, rows, 1.0, weights, columns, 0.0,
                                 buf.out, g * K // G * rows, g * rows * cols, g * K // G * cols)
            opencl.kernel("convolution.cl", "conv_to_images")(
                m * K, buf.out, np.int32(K), np.int32(plane), output, np.int32(n0 * K * plane))

    def backward_gpu_gemm(self, output, weights, input):
        """input = col2im(Wᵀ output), per group, a chunk of images per GEMM."""
        buf = self._device_buffers()
        G, K, rows, plane = self._gemm_sizes()
        for n0, m in self._chunks():
            dy, cols = self._to_channels(output, n0, m), m * plane
            for g in range(G):  # (rows, K/G) · (K/G, m∏O)
                opencl_gemm.gemm(True, False, rows, cols, K // G, 1.0, weights, dy, 0.0,
                                 buf.col_diff, g * K // G * rows, g * K // G * cols,
                                 g * rows * cols)
            self._col2im_gpu(buf.col_diff, n0, m, input)

    def weight_gpu_gemm(self, input, output, weights, col: int = 0, skip_im2col: bool = False):
        """weights += output im2col(input)ᵀ, per group, a chunk of images per GEMM."""
        G, K, rows, plane = self._gemm_sizes()
        for n0, m in self._chunks():
            columns = self._im2col_gpu(input, n0, m, col, skip_im2col)
            dy, cols = self._to_channels(output, n0, m), m * plane
            for g in range(G):  # (K/G, m∏O) · (m∏O, rows)
                opencl_gemm.gemm(False, True, K // G, rows, cols, 1.0, dy, columns, 1.0,
                                 weights, g * K // G * cols, g * rows * cols, g * K // G * rows)

    def forward_gpu_bias(self, top, bias):
        """top += bias, per channel."""
        opencl.kernel("convolution.cl", "conv_bias_forward")(
            self.num * self.num_output, bias, np.int32(self.num_output),
            np.int32(self.out_spatial_dim), top)

    def backward_gpu_bias(self, bias, top):
        """bias += the top diff summed over images and positions."""
        opencl.kernel("convolution.cl", "conv_bias_backward")(
            self.num_output, top, np.int32(self.num), np.int32(self.out_spatial_dim), bias)
