r"""Convolution: learned filters slid over the input (Caffe's `conv_layer.cpp`, `base_conv_layer.cpp`).

Shapes. The bottom has shape $(N, C, S_1, \dots, S_d)$ (with `axis` = 1; a larger `axis`
folds the leading axes into $N$). With $K$ = `num_output`, $G$ = `group`, kernel
$k_a$, padding $p_a$, stride $s_a$ and dilation $r_a$ on spatial axis $a$:

$$ O_a = \left\lfloor \frac{S_a + 2 p_a - (r_a (k_a - 1) + 1)}{s_a} \right\rfloor + 1 $$

weight $W$: $(K, C/G, k_1, \dots, k_d)$, bias $b$: $(K)$, top: $(N, K, O_1, \dots, O_d)$.

Forward. Output channel $o$ belongs to group $g = \lfloor o G / K \rfloor$ and sees only the
$C/G$ input channels of that group:

$$ y_{n,o,\mathbf{q}} = b_o + \sum_{c=0}^{C/G-1} \sum_{\mathbf{i}} W_{o,c,\mathbf{i}}\;
   x^{\mathrm{pad}}_{n,\ gC/G + c,\ \mathbf{q}\odot\mathbf{s} + \mathbf{i}\odot\mathbf{r}} $$

With $\mathrm{col} = \mathrm{im2col}(x)$ (`minicaffe/im2col.py`), a matrix with one row per
$(c, \mathbf{i})$ and one column per output position, this is a matrix product per group,

$$ Y_g = W_g \, \mathrm{col}_g + b_g \mathbf{1}^\top, \qquad
   W_g: (K/G) \times (C/G \prod k), \quad \mathrm{col}_g: (C/G \prod k) \times \prod O .$$

Backward, from $\partial E/\partial Y$:

$$ \frac{\partial E}{\partial W_g} \mathrel{+}= \frac{\partial E}{\partial Y_g}\,\mathrm{col}_g^\top,
   \qquad \frac{\partial E}{\partial b_o} \mathrel{+}= \sum_{n,\mathbf{q}} \frac{\partial E}{\partial y_{n,o,\mathbf{q}}},
   \qquad \frac{\partial E}{\partial x} = \mathrm{col2im}\Big(W_g^\top \frac{\partial E}{\partial Y_g}\Big) $$

summed over the images of the batch (and over all bottoms, which share the weights).

Speed. Every product runs over the whole batch at once, in one of the two column layouts
of `im2col.py`. Caffe's per-image layout (a batched product) is used when the output plane
is at least as large as a column ($\prod O \ge C \prod k$, e.g. LeNet's conv1: 576 ≥ 25):
the per-image products are then wide and the copies move long rows. Otherwise (conv2:
64 < 500) the batch goes last and each product is a single GEMM over all images, which
measured about twice as fast there. Backward reuses the columns forward built (Caffe
rebuilds them, trading time for memory).

Multiple bottoms give as many tops, all convolved with the same weights.

Device twin: `opencl/convolution.cl`, with the GEMMs of `opencl/gemm.cl` and the columns
of `opencl/im2col.cl` (`im2col_nd` for other than 2 spatial axes or `force_nd_im2col`).
The device puts a whole batch's columns side by side, $(C\prod k) \times (N \prod O)$
(image-major, see `im2col.cl`), so each product is one large GEMM per group, as fast as
the device gets (small per-image GEMMs leave a CPU device mostly idle). The result,
$(K, N, \prod O)$, is moved into the top $(N, K, \prod O)$ adding the bias; backward
moves the top diff the other way. The bias gradient is a product with a vector of ones
(Caffe's bias_multiplier). Backward reuses forward's columns, as on the host; a batch
whose columns would pass `DEVICE_COL_LIMIT` values is done a few images at a time, and
its columns are then rebuilt in backward, as Caffe always does.

    layer {
      name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
      param { lr_mult: 1 } param { lr_mult: 2 }
      convolution_param {
        num_output: 20 kernel_size: 5 stride: 1
        weight_filler { type: "xavier" } bias_filler { type: "constant" }
      }
    }
"""
from __future__ import annotations

from math import prod
from types import SimpleNamespace

import numpy as np

from minicaffe import opencl
from minicaffe.blob import MAX_BLOB_COUNT, Blob
from minicaffe.common import MinicaffeError
from minicaffe.filler import fill
from minicaffe.im2col import col2im, conv_out_shape, im2col
from minicaffe.layer import Layer, register_layer


def _which(blob: Blob) -> str:
    return f"bottom {blob.name!r}" if blob.name else "the bottom"


@register_layer
class ConvolutionLayer(Layer):
    """Convolution over the spatial axes after `axis`; see the module docstring."""

    type = "Convolution"
    min_bottom_blobs = 1
    min_top_blobs = 1
    equal_num_bottom_top_blobs = True

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

        weight_shape = (self.num_output, self.channels // self.group, *self.kernel)
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
        self._geometry = None

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
        if self._geometry != x.shape:
            self._plan(x)
        for t in top:
            t.reshape(self.top_shape)

    def _plan(self, x: Blob) -> None:
        """Output shape, column layout and work buffers for bottoms of x's shape."""
        self.num = x.count_range(0, self.channel_axis)
        self.spatial = x.shape[self.channel_axis + 1:]
        try:
            self.out_spatial = conv_out_shape(self.spatial, self.kernel, self.pad, self.stride,
                                              self.dilation)
        except MinicaffeError as err:
            raise self._error(f"{_which(x)} of shape {x.shape}: {err}") from None
        self.top_shape = (*x.shape[:self.channel_axis], self.num_output, *self.out_spatial)
        if prod(self.top_shape) > MAX_BLOB_COUNT:  # before sizing the column buffers from it
            raise self._error(f"top shape {self.top_shape} holds {prod(self.top_shape):,} values, "
                              f"more than the {MAX_BLOB_COUNT:,} (INT_MAX) a blob may hold")
        rows, cols = self.channels * prod(self.kernel), prod(self.out_spatial)
        self.is_1x1 = (all(k == 1 for k in self.kernel) and all(s == 1 for s in self.stride)
                       and not any(self.pad))
        self.batch_last = self.num > 1 and cols < rows and not self.is_1x1
        size = rows * cols * self.num
        self._cols: list[np.ndarray | None] = []          # per bottom, as im2col returns
        self._col_buffers: list[np.ndarray | None] = []   # their memory
        self._col_diff = np.empty(size, dtype=np.float32)
        self._bias_multiplier = np.ones(cols, dtype=np.float32)
        # Batch-last: the product (K, ∏O·N) before its transpose into the top, and the top
        # diff transposed the other way. Caffe's layout: each image's dW before the sum.
        if self.batch_last:
            self._out_t = np.empty((self.num_output, cols * self.num), dtype=np.float32)
        else:
            self._weight_diff_batch = np.empty(
                (self.num, self.num_output, rows // self.group), dtype=np.float32)
        self._device = None  # the device's buffers, made by the first GPU pass
        self._geometry = x.shape

    # ---- forward / backward
    def _geometry_args(self):
        return self.kernel, self.pad, self.stride, self.dilation

    def forward_cpu(self, bottom, top):
        G, K = self.group, self.num_output
        weight = self.blobs[0].cpu_data().reshape(G, K // G, -1)
        n, cols = self.num, prod(self.out_spatial)
        for i, (b, t) in enumerate(zip(bottom, top)):
            x = b.cpu_data().reshape(n, self.channels, *self.spatial)
            # Kept for backward. A 1x1 kernel in Caffe's layout needs no buffer: x is its
            # own column matrix.
            col = im2col(x, *self._geometry_args(), out=self._col_buffer(i),
                         batch_last=self.batch_last)
            self._cols[i] = col
            y = t.mutable_cpu_data().reshape(n, K, cols)
            if self.batch_last:
                # One GEMM for the batch: (K, C∏k) · (C∏k, ∏O·N), then images to the front.
                out_t = self._out_t.reshape(G, K // G, cols * n)
                np.matmul(weight, col.reshape(G, -1, cols * n), out=out_t)
                if self.bias_term:
                    self._out_t += self.blobs[1].cpu_data()[:, None]
                y[...] = self._out_t.reshape(K, cols, n).transpose(2, 0, 1)
            else:
                # One product per image and group: (K/G, C/G∏k) · (C/G∏k, ∏O).
                np.matmul(weight, col.reshape(n, G, -1, cols), out=y.reshape(n, G, K // G, cols))
                if self.bias_term:
                    y += self.blobs[1].cpu_data()[:, None]

    def backward_cpu(self, top, propagate_down, bottom):
        G, K = self.group, self.num_output
        n, cols = self.num, prod(self.out_spatial)
        weight = self.blobs[0].cpu_data().reshape(G, K // G, -1)
        for i, (b, t) in enumerate(zip(bottom, top)):
            dy = t.cpu_diff().reshape(n, K, cols)
            if self.bias_term and self.param_propagate(1):
                # Sum over positions as a product with ones (Caffe's bias_multiplier):
                # BLAS does it faster than numpy's reduction over two axes.
                self.blobs[1].mutable_cpu_diff()[...] += (dy @ self._bias_multiplier).sum(axis=0)
            want_weight, want_bottom = self.param_propagate(0), propagate_down[i]
            if not (want_weight or want_bottom):
                continue
            if self.batch_last:
                dy_t = self._out_t.reshape(K, cols, n)
                dy_t[...] = dy.transpose(1, 2, 0)
                dy_t = dy_t.reshape(G, K // G, cols * n)
                if want_weight:
                    col = self._cols[i].reshape(G, -1, cols * n)
                    dw = self.blobs[0].mutable_cpu_diff().reshape(G, K // G, -1)
                    # dY colᵀ, computed as (col dYᵀ)ᵀ: OpenBLAS is 1.3-1.6x faster with the
                    # larger matrix on the left (measured on LeNet and CIFAR shapes).
                    dw += np.matmul(col, dy_t.transpose(0, 2, 1)).transpose(0, 2, 1)
                if want_bottom:
                    col_diff = self._col_diff.reshape(G, -1, cols * n)
                    np.matmul(weight.transpose(0, 2, 1), dy_t, out=col_diff)
            else:
                dy_g = dy.reshape(n, G, K // G, cols)
                if want_weight:
                    col = self._cols[i].reshape(n, G, -1, cols)
                    per_image = self._weight_diff_batch.reshape(n, G, K // G, -1)
                    np.matmul(dy_g, col.transpose(0, 1, 3, 2), out=per_image)
                    self.blobs[0].mutable_cpu_diff().reshape(G, K // G, -1)[...] += \
                        per_image.sum(axis=0)
                if want_bottom:
                    col_diff = self._col_diff.reshape(n, G, -1, cols)
                    np.matmul(weight.transpose(0, 2, 1), dy_g, out=col_diff)
            if want_bottom:
                col2im(self._col_diff, (n, self.channels, *self.spatial),
                       *self._geometry_args(), batch_last=self.batch_last,
                       out=b.mutable_cpu_diff().reshape(n, self.channels, *self.spatial))

    def _col_buffer(self, i: int) -> np.ndarray | None:
        while len(self._cols) <= i:
            self._cols.append(None)
            self._col_buffers.append(None)
        if self.is_1x1 and not self.batch_last:
            return None
        if self._col_buffers[i] is None:
            self._col_buffers[i] = np.empty(self._col_diff.size, dtype=np.float32)
        return self._col_buffers[i]

    # ---- device: whole chunks of the batch per GEMM (see the module docstring)
    DEVICE_COL_LIMIT = 1 << 24  # values in one device column buffer (64 MiB)

    def _device_buffers(self) -> SimpleNamespace:
        """Column, product and ones buffers for this shape: made once per reshape."""
        if self._device is None:
            rows, plane = self.channels * prod(self.kernel), prod(self.out_spatial)
            chunk = max(1, min(self.num, self.DEVICE_COL_LIMIT // (rows * plane)))
            ones = opencl.allocate(chunk * plane)
            opencl.fill(ones, chunk * plane, 1.0)
            nd = self.num_spatial_axes != 2 or self.layer_param.convolution_param.force_nd_im2col
            self._device = SimpleNamespace(
                chunk=chunk, ones=ones,
                cols=[],  # per bottom: its columns (C∏k, chunk·∏O), kept for backward
                col_diff=opencl.allocate(rows * chunk * plane),
                out=opencl.allocate(self.num_output * chunk * plane),  # (K, chunk·∏O)
                geometry=opencl.ConvGeometry(self.spatial, *self._geometry_args()) if nd else None)
        return self._device

    def _device_col(self, i: int):
        cols, size = self._device.cols, self.channels * prod(self.kernel) * self._device.chunk
        while len(cols) <= i:
            cols.append(opencl.allocate(size * prod(self.out_spatial)))
        return cols[i]

    def _chunks(self):
        """(first image, number of images) of each pass over the batch."""
        chunk = self._device.chunk
        return [(n0, min(chunk, self.num - n0)) for n0 in range(0, self.num, chunk)]

    def _im2col_gpu(self, x, image: int, m: int, col) -> None:
        offset = image * self.channels * prod(self.spatial)
        if self._device.geometry is not None:
            opencl.im2col_nd(x, m, self.channels, self._device.geometry, col, im_offset=offset)
        else:
            opencl.im2col(x, self.channels, *self.spatial, *self.kernel, *self.pad, *self.stride,
                          *self.dilation, col, im_offset=offset, num=m)

    def _col2im_gpu(self, col, image: int, m: int, dx) -> None:
        offset = image * self.channels * prod(self.spatial)
        if self._device.geometry is not None:
            opencl.col2im_nd(col, m, self.channels, self._device.geometry, dx, im_offset=offset)
        else:
            opencl.col2im(col, self.channels, *self.spatial, *self.kernel, *self.pad,
                          *self.stride, *self.dilation, dx, im_offset=offset, num=m)

    def forward_gpu(self, bottom, top):
        buf = self._device_buffers()
        G, K, plane = self.group, self.num_output, prod(self.out_spatial)
        rows = self.channels * prod(self.kernel) // G  # of one group's weights and columns
        weight = self.blobs[0].gpu_data()
        bias = self.blobs[1].gpu_data() if self.bias_term else weight
        for i, (b, t) in enumerate(zip(bottom, top)):
            x, y, col = b.gpu_data(), t.mutable_gpu_data(), self._device_col(i)
            for n0, m in self._chunks():
                cols = m * plane
                self._im2col_gpu(x, n0, m, col)
                for g in range(G):  # (K/G, C/G∏k) · (C/G∏k, m∏O), all m images at once
                    opencl.gemm(False, False, K // G, cols, rows, 1.0, weight, col, 0.0,
                                buf.out, g * K // G * rows, g * rows * cols, g * K // G * cols)
                opencl.kernel("convolution.cl", "conv_to_images")(
                    m * K, buf.out, np.int32(K), np.int32(plane), bias,
                    np.int32(self.bias_term), y, np.int32(n0 * K * plane))

    def backward_gpu(self, top, propagate_down, bottom):
        buf = self._device_buffers()
        G, K, plane = self.group, self.num_output, prod(self.out_spatial)
        rows = self.channels * prod(self.kernel) // G
        weight = self.blobs[0].gpu_data()
        want_bias = self.bias_term and self.param_propagate(1)
        chunks = self._chunks()
        for i, (b, t) in enumerate(zip(bottom, top)):
            want_weight, want_bottom = self.param_propagate(0), propagate_down[i]
            if not (want_bias or want_weight or want_bottom):
                continue
            dy, col = t.gpu_diff(), self._device_col(i)
            for n0, m in chunks:
                cols = m * plane
                opencl.kernel("convolution.cl", "conv_to_channels")(
                    m * K, dy, np.int32(n0 * K * plane), np.int32(K), np.int32(plane), buf.out)
                if want_bias:  # db += dY 1
                    opencl.gemm(False, True, 1, K, cols, 1.0, buf.ones, buf.out, 1.0,
                                self.blobs[1].mutable_gpu_diff())
                if want_weight:  # dW += dY colᵀ
                    if len(chunks) > 1:  # forward's columns are those of the last chunk only
                        self._im2col_gpu(b.gpu_data(), n0, m, col)
                    dw = self.blobs[0].mutable_gpu_diff()
                    for g in range(G):
                        opencl.gemm(False, True, K // G, rows, cols, 1.0, buf.out, col, 1.0,
                                    dw, g * K // G * cols, g * rows * cols, g * K // G * rows)
                if want_bottom:  # dx = col2im(Wᵀ dY)
                    for g in range(G):
                        opencl.gemm(True, False, rows, cols, K // G, 1.0, weight, buf.out, 0.0,
                                    buf.col_diff, g * K // G * rows, g * K // G * cols,
                                    g * rows * cols)
                    self._col2im_gpu(buf.col_diff, n0, m, b.mutable_gpu_diff())
