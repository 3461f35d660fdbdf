r"""Pooling: max, average or stochastic over sliding windows of each channel.

Caffe's `pooling_layer.cpp`. A window of $k_h \times k_w$ pixels slides with stride
$(s_h, s_w)$ over each channel of each image, which may first be padded by $(p_h, p_w)$.
Output size (Caffe's rule, `round_mode` CEIL by default, FLOOR on request):

$$ H' = \left\lceil \frac{H + 2p_h - k_h}{s_h} \right\rceil + 1, \qquad
   \text{then } H' \mathrel{-}= 1 \text{ if } (p_h, p_w) \ne (0, 0) \text{ and } (H' - 1)s_h \ge H + p_h $$

(with any padding, the last window must start inside the image or its left padding,
never in the right padding alone; Caffe applies this to both axes as soon as either
is padded), and likewise for the width. CEIL lets the last window hang over the
bottom/right edge; the part outside the image is simply left out.

Window $(i, j)$ covers rows $h_0 = i s_h - p_h$ up to $h_0 + k_h$ and columns alike.

* MAX: $y = \max$ of the window's pixels inside the image, found as Caffe does:
  start from -FLT_MAX and take a pixel only if it is strictly greater, so padding,
  NaN and -inf never win, and of equal maxima the first in row-major order does.
  The winner's index $h W + w$ within the channel is kept as a *mask* (-1 when
  nothing beat -FLT_MAX), and backward routes $\partial E/\partial y$ to it:
  $\partial E/\partial x_{hw} = \sum_{\text{windows whose mask is } hw} \partial E/\partial y$.
  An optional second top receives the mask (as floats), as in Caffe.
* AVE: $y = \frac{1}{|P|}\sum$ of the window's pixels inside the image, where $|P|$ is
  the window's size after clipping to the *padded* image, $\min(h_0 + k_h, H + p_h) -
  h_0$ rows (times the same for columns): padding pixels count as zeros in the mean,
  the overhang beyond the padding does not. Backward spreads
  $\frac{1}{|P|}\,\partial E/\partial y$ over the window's pixels inside the image.
* STOCHASTIC (Zeiler & Fergus 2013), which Caffe has on its GPU engine only
  (`pooling_layer.cu`) and we have on both. It takes no padding (Caffe allows
  padding for MAX and AVE only). With $S = \sum$ of the window's pixels,
  in the TRAIN phase each window picks one pixel at random, pixel $p$ with
  probability $x_p / S$ (the inputs are meant to be non-negative, e.g. after a
  ReLU): draw $u \in [0, 1)$, walk the window in row-major order adding up the
  pixels, and pick the first at which the running sum reaches $u S$. Then
  $y = x_{\text{picked}}$, its index $h W + w$ is kept (like MAX's mask, in
  `self.rand_idx`), and backward routes $\partial E/\partial y$ to it alone, as MAX
  does. The uniforms come from `hash_uniform` (`layers/helpers.py`, twin in
  `opencl/common.cl`), one per output element from a fresh seed per forward, so the
  two engines pick the same pixels. A window that reaches no threshold (only
  possible with negative inputs) or holds no pixel gives 0 and index -1 (Caffe
  leaves such outputs unwritten). In the TEST phase $y$ is the expected pick,
  $\sum_p x_p^2 / S$ (0 where $S \le 0$); it has no backward (Caffe's would route
  the gradient by stale TRAIN picks): backward in the TEST phase is an error.

A window can hold no image pixel only when the stride exceeds the kernel: MAX then
gives -FLT_MAX with mask -1 (Caffe's initial values) and AVE gives 0 (Caffe: 0/0).

`global_pooling: true` pools each whole channel to 1x1 (kernel = H x W, no pad, stride 1).

Bottom: (N, C, H, W).   Top: (N, C, H', W'); for MAX optionally a second top, the mask.

    layer {
      name: "pool1" type: "Pooling" bottom: "conv1" top: "pool1"
      pooling_param { pool: MAX kernel_size: 2 stride: 2 }
    }

numpy engine: the windows are stacked into one $(k_h k_w, N, C, H', W')$ array whose
axis 0 runs through each window in row-major order; the padding and the CEIL overhang
hold 0 for AVE and -inf for MAX. AVE is its sum along axis 0 over $|P|$. MAX is
Caffe's loop in two steps: y is the largest of -FLT_MAX and the window's values
(`np.fmax` skips NaN), and the mask is the first position along axis 0 that equals y
(the first maximum: the argmax), or -1 where y is still -FLT_MAX. When there is no
mask top and the net will ask for no gradient below the layer (`backward_may_need`,
Caffe's bottom_need_backward: deploy and test nets), MAX computes y alone, separably:
a sliding fmax down the rows, then one along the columns. Backward adds each
window's $\partial E/\partial y$ at its mask (np.add.at, as overlapping windows can
share an argmax), or for AVE adds $\frac{1}{|P|}\,\partial E/\partial y$ back through
the same windows, one kernel offset at a time. STOCHASTIC's TRAIN pick is the
first position along axis 0 where the window's cumulative sum (np.cumsum, in float32
and in the kernel's order) reaches $u S$; its backward is MAX's, with the picks as mask.

Device twin: `opencl/pooling.cl` (one work-item per output forward, Caffe's loop as
written; backward one work-item per bottom pixel, gathering from the windows that
cover it, as Caffe's pooling_layer.cu does, so no atomics are needed). When windows
cannot overlap (stride >= kernel, LeNet's 2x2/2), MAX backward on the device takes a
shortcut: each window's gradient goes straight to its argmax, since no pixel belongs
to two windows. STOCHASTIC's backward runs the same MAX kernels on its picks.
"""
import math

import numpy as np

from minicaffe import common, opencl
from minicaffe.blob import MAX_BLOB_COUNT, Blob
from minicaffe.common import MinicaffeError
from minicaffe.layer import Layer, register_layer
from minicaffe.layers.helpers import hash_uniform
from minicaffe.proto import caffe_pb2

P = caffe_pb2.PoolingParameter
FLT_MAX = float(np.finfo(np.float32).max)


@register_layer
class PoolingLayer(Layer):
    """Max, average or stochastic pooling; see the module docstring for the maths."""

    type = "Pooling"
    exact_num_bottom_blobs = 1
    min_top_blobs = 1
    max_top_blobs = 2  # narrowed to 1 for AVE and STOCHASTIC: only MAX has a mask to output

    def __init__(self, layer_param):
        super().__init__(layer_param)
        if layer_param.pooling_param.pool != P.MAX:
            self.max_top_blobs = 1
        self.max_idx = Blob(name=f"{self.name}.max_idx")  # Caffe's max_idx_, when no mask top
        self.max_idx_fresh = False  # does max_idx hold the last forward's mask? (see forward_cpu)
        self.rand_idx = Blob(name=f"{self.name}.rand_idx")  # Caffe's rand_idx_: STOCHASTIC's picks

    def _fail(self, message):
        raise MinicaffeError(f"Pooling layer {self.name!r}: {message}")

    def layer_setup(self, bottom, top):
        p = self.layer_param.pooling_param
        has = p.HasField
        self.global_pooling = p.global_pooling
        if self.global_pooling:
            if has("kernel_size") or has("kernel_h") or has("kernel_w"):
                self._fail("with global_pooling: true the kernel size cannot be given")
        else:
            if has("kernel_size") == (has("kernel_h") and has("kernel_w")):
                self._fail("give kernel_size OR both kernel_h and kernel_w, not both or neither")
        if not ((not has("pad") and has("pad_h") and has("pad_w"))
                or (not has("pad_h") and not has("pad_w"))):
            self._fail("give pad OR both pad_h and pad_w")
        if not ((not has("stride") and has("stride_h") and has("stride_w"))
                or (not has("stride_h") and not has("stride_w"))):
            self._fail("give stride OR both stride_h and stride_w")

        if self.global_pooling:
            self.kernel_h, self.kernel_w = bottom[0].height, bottom[0].width
        elif has("kernel_size"):
            self.kernel_h = self.kernel_w = p.kernel_size
        else:
            self.kernel_h, self.kernel_w = p.kernel_h, p.kernel_w
        self.pad_h, self.pad_w = (p.pad_h, p.pad_w) if has("pad_h") else (p.pad, p.pad)
        self.stride_h, self.stride_w = ((p.stride_h, p.stride_w) if has("stride_h")
                                        else (p.stride, p.stride))
        if self.kernel_h <= 0 or self.kernel_w <= 0:
            self._fail(f"kernel size must be positive, got {self.kernel_h}x{self.kernel_w}")
        if self.stride_h <= 0 or self.stride_w <= 0:
            self._fail(f"stride must be positive, got {self.stride_h}x{self.stride_w}")
        if self.global_pooling and (self.pad_h or self.pad_w
                                    or self.stride_h != 1 or self.stride_w != 1):
            self._fail("with global_pooling: true only pad = 0 and stride = 1 are allowed")
        if p.pool == P.STOCHASTIC and (self.pad_h or self.pad_w):
            self._fail(f"pool: STOCHASTIC takes no pad (padding is for MAX and AVE "
                       f"only), got {self.pad_h}x{self.pad_w}")
        if self.pad_h >= self.kernel_h or self.pad_w >= self.kernel_w:
            self._fail(f"pad ({self.pad_h}, {self.pad_w}) must be smaller than the kernel "
                       f"({self.kernel_h}, {self.kernel_w})")

    def reshape(self, bottom, top):
        if bottom[0].num_axes != 4:
            self._fail(f"bottom {bottom[0].name!r} must have 4 axes (N, C, H, W), "
                       f"got shape {bottom[0].shape}")
        n, c, height, width = bottom[0].shape
        if self.global_pooling:
            self.kernel_h, self.kernel_w = height, width
        rounding = math.floor if self.layer_param.pooling_param.round_mode == P.FLOOR else math.ceil
        pooled = []
        for size, k, s, pad in ((height, self.kernel_h, self.stride_h, self.pad_h),
                                (width, self.kernel_w, self.stride_w, self.pad_w)):
            out = rounding((size + 2 * pad - k) / s) + 1
            if (self.pad_h or self.pad_w) and (out - 1) * s >= size + pad:
                out -= 1  # the last window would start in the padding: drop it
            if out <= 0:
                self._fail(f"kernel {self.kernel_h}x{self.kernel_w} (pad {self.pad_h}x"
                           f"{self.pad_w}) does not fit bottom {bottom[0].name!r} of shape "
                           f"{bottom[0].shape}")
            pooled.append(out)
        self.pooled_height, self.pooled_width = pooled
        canvas = n * c * math.prod(self._canvas_size(height, width))
        if canvas > MAX_BLOB_COUNT:  # e.g. a stride typo'd to 999999999; Caffe loops instead
            self._fail(f"kernel {self.kernel_h}x{self.kernel_w}, stride {self.stride_h}x"
                       f"{self.stride_w} and pad {self.pad_h}x{self.pad_w} spread the windows "
                       f"over {canvas:,} values, more than the {MAX_BLOB_COUNT:,} (INT_MAX) "
                       f"minicaffe's pooling can lay out")
        top[0].reshape(n, c, *pooled)
        if len(top) > 1:
            top[1].reshape_like(top[0])
        if self.layer_param.pooling_param.pool == P.MAX and len(top) == 1:
            self.max_idx.reshape_like(top[0])
        if self.layer_param.pooling_param.pool == P.STOCHASTIC:
            self.rand_idx.reshape_like(top[0])

        # Window starts (int32, so the mask's arithmetic stays in 32 bits: 0.3 ms less for
        # LeNet's pool1), and for AVE each window's size clipped to the padded image.
        self.hstart = np.arange(self.pooled_height, dtype=np.int32) * self.stride_h - self.pad_h
        self.wstart = np.arange(self.pooled_width, dtype=np.int32) * self.stride_w - self.pad_w
        pool_h = np.minimum(self.hstart + self.kernel_h, height + self.pad_h) - self.hstart
        pool_w = np.minimum(self.wstart + self.kernel_w, width + self.pad_w) - self.wstart
        # A window can only be empty (size <= 0) when stride > kernel; its sum is 0 then,
        # and dividing by 1 keeps it 0 where Caffe would compute 0/0.
        self.pool_size = np.outer(np.maximum(pool_h, 1), np.maximum(pool_w, 1)).astype(np.float32)
        # MAX's mask, h W + w of the winner, is its window's start h0 W + w0 plus, for the
        # winner's rank r in the window (row-major), (r // k_w) W + r % k_w: a lookup, with a
        # spare entry for "no winner". Kept as floats, the mask blobs' type (exact below
        # 2^24, as the sums are rounded once). 0.26 ms against 0.35 for LeNet's pool1.
        self.mask_start = (self.hstart[:, None] * width + self.wstart).astype(np.float32)
        rank = np.arange(self.kernel_h * self.kernel_w + 1)
        self.mask_offset = (rank // self.kernel_w * width + rank % self.kernel_w).astype(np.float32)

    # ---- windows
    def _canvas_size(self, height: int, width: int) -> tuple[int, int]:
        """Height and width of a canvas that holds the padded image and every window whole."""
        return (max((self.pooled_height - 1) * self.stride_h + self.kernel_h, self.pad_h + height),
                max((self.pooled_width - 1) * self.stride_w + self.kernel_w, self.pad_w + width))

    def _canvas(self, x, fill):
        """x in a frame that holds every window whole: the padding and the CEIL overhang
        hold `fill`, and pixel (h, w) of x sits at (h + p_h, w + p_w)."""
        n, c, height, width = x.shape
        canvas_h, canvas_w = self._canvas_size(height, width)
        if (canvas_h, canvas_w, self.pad_h, self.pad_w) == (height, width, 0, 0):
            return x  # windows fit as they are (LeNet): no copy, 0.3 ms of pool1's 1.7 ms forward
        canvas = np.full((n, c, canvas_h, canvas_w), fill, dtype=x.dtype)
        canvas[:, :, self.pad_h:self.pad_h + height, self.pad_w:self.pad_w + width] = x
        return canvas

    def _offset_views(self, canvas):
        """For each kernel offset (i, j) in row-major order: the (N, C, H', W') view of
        pixel (i, j) of every window. Within one view no two windows share a pixel."""
        for i in range(self.kernel_h):
            for j in range(self.kernel_w):
                yield canvas[:, :, i:i + (self.pooled_height - 1) * self.stride_h + 1:self.stride_h,
                                   j:j + (self.pooled_width - 1) * self.stride_w + 1:self.stride_w]

    def _windows(self, x, fill):
        """Every window's pixels, stacked: (k_h k_w, N, C, H', W'), entry [i k_w + j] being
        pixel (i, j) of each window, so axis 0 runs through a window in row-major order."""
        canvas = self._canvas(x, fill)
        if (self.pooled_height, self.pooled_width) == (1, 1):
            # One window per channel (global pooling: SqueezeNet's pool10, GoogLeNet's and
            # ResNet's pool5): its pixels are the channel's first k_h rows and k_w columns,
            # and one transposing copy stacks them, not k_h k_w tiny ones (SqueezeNet's
            # 1000x14x14 AVE: 0.10 ms against 0.28).
            n, c = x.shape[:2]
            pixels = canvas[:, :, :self.kernel_h, :self.kernel_w].reshape(n, c, -1)
            return np.ascontiguousarray(pixels.transpose(2, 0, 1))[..., None, None]
        return np.stack(list(self._offset_views(canvas)))

    # ---- compute
    def forward_cpu(self, bottom, top):
        x = bottom[0].cpu_data()
        y = top[0].mutable_cpu_data()
        pool = self.layer_param.pooling_param.pool
        if pool == P.AVE:
            y[...] = self._windows(x, 0.0).sum(axis=0) / self.pool_size
            return
        if pool == P.STOCHASTIC:
            self._stochastic_forward(x, y, bottom[0].height, bottom[0].width)
            return
        # MAX, as Caffe's loop: start from -FLT_MAX and take a pixel only if it is strictly
        # greater. So y is the largest of -FLT_MAX and the window's pixels (fmax skips NaN;
        # the padding is -inf), the winner is the first pixel equal to y in row-major
        # order, and there is none where y is still -FLT_MAX.
        self.max_idx_fresh = len(top) == 1 and self.backward_may_need(0)
        if len(top) == 1 and not self.max_idx_fresh:
            # No mask top and no gradient will be asked for (a deploy or test net): the
            # value alone, separably, is 3-5x faster than value and mask (SqueezeNet's
            # pool1 0.76 ms against 2.6, GoogLeNet's 3x3/1 pad 1 on 28x28x192 0.29 against 1.3).
            self._max_value(x, y)
            return
        windows = self._windows(x, -np.inf)
        np.fmax.reduce(windows, axis=0, initial=-FLT_MAX, out=y)
        mask = (top[1] if len(top) > 1 else self.max_idx).mutable_cpu_data()
        np.add(self.mask_offset.take(first_index(windows, y)), self.mask_start, out=mask)
        empty = y == -FLT_MAX
        if empty.any():  # rare: only windows of padding, NaN or -inf (or -FLT_MAX) pixels
            mask[empty] = -1

    def _max_value(self, x, y):
        """MAX's y alone: the max over each window's rows, then over its columns.

        The max of a window is the max over its columns of the max over its rows: k_h
        sweeps over whole rows, then k_w over an array stride_h times smaller, instead of
        k_h k_w sweeps over strided views (SqueezeNet's pool1: 0.76 ms against 1.28).
        """
        n, c, _, width = x.shape
        rows = np.empty((n, c, self.pooled_height, width), dtype=x.dtype)
        sliding_fmax(x, rows, 2, self.kernel_h, self.stride_h, self.pad_h)
        if self.stride_w == 1 and self.pooled_width == width and y.flags.c_contiguous:
            same_width_fmax(rows, y, self.kernel_w, self.pad_w)
        else:
            sliding_fmax(rows, y, 3, self.kernel_w, self.stride_w, self.pad_w)
        np.fmax(y, -FLT_MAX, out=y)  # Caffe's start: windows of padding, NaN or -inf only

    def _stochastic_forward(self, x, y, height, width):
        """STOCHASTIC: TRAIN picks one pixel per window, TEST takes sum(x^2) / sum(x)."""
        windows = self._windows(x, 0.0)  # no pad; the CEIL overhang holds 0
        if self.layer_param.phase != caffe_pb2.TRAIN:
            total, squares = windows.sum(axis=0), (windows * windows).sum(axis=0)
            y[...] = 0.0
            np.divide(squares, total, out=y, where=total > 0)
            return
        # The running sum of each window in row-major order, in float32 as the kernel
        # adds it (the overhang's zeros leave it unchanged, so they are never the first
        # to reach the threshold), and the first position where it reaches u * S.
        running = np.cumsum(windows, axis=0)
        u = hash_uniform(self.draw_seed(), y.size).reshape(y.shape)
        first = first_index(running >= u * running[-1], np.ones(y.shape, bool))
        empty = (self.hstart[:, None] >= height) | (self.wstart >= width)  # stride > kernel
        found = (first < len(windows)) & ~empty
        first = np.minimum(first, len(windows) - 1)
        y[...] = np.where(found, np.take_along_axis(windows, first[None], axis=0)[0], 0.0)
        i = first // self.kernel_w  # the pick's row and column within its window
        j = first - i * self.kernel_w
        index = (self.hstart[:, None] + i) * width + (self.wstart + j)
        self.rand_idx.mutable_cpu_data()[...] = np.where(found, index, -1)

    @staticmethod
    def draw_seed() -> np.uint64:
        """A fresh 64-bit seed for this forward's STOCHASTIC picks, from the process RNG."""
        return common.rng().integers(2**64, dtype=np.uint64)

    def _picks(self, top):
        """The blob of each window's chosen pixel (h W + w, or -1): MAX's mask or STOCHASTIC's."""
        if self.layer_param.pooling_param.pool == P.STOCHASTIC:
            if self.layer_param.phase != caffe_pb2.TRAIN:
                self._fail("pool: STOCHASTIC has no backward in the TEST phase (its output "
                           "there is an average, not a pick)")
            return self.rand_idx
        if len(top) > 1:
            return top[1]
        if not self.max_idx_fresh:
            self._fail("backward was asked for a gradient the net said it would not need "
                       "(backward_may_need(0) is False), so forward kept no mask of the maxima "
                       "to route it by")
        return self.max_idx

    def backward_cpu(self, top, propagate_down, bottom):
        if not propagate_down[0]:
            return
        dy = top[0].cpu_diff()
        dx = bottom[0].mutable_cpu_diff()
        n, c, height, width = dx.shape
        if self.layer_param.pooling_param.pool == P.AVE:
            canvas, share = self._canvas(np.zeros_like(dx), 0.0), dy / self.pool_size
            for view in self._offset_views(canvas):
                view += share  # within one view no two windows share a pixel
            dx[...] = canvas[:, :, self.pad_h:self.pad_h + height, self.pad_w:self.pad_w + width]
            return
        # MAX and STOCHASTIC: dx[mask] += dy, window by window in row-major order.
        # Overlapping windows can share a pick, hence np.add.at; windows with none (-1)
        # send nothing. Scattering straight into dx (no spare slot, no copy) is a third
        # faster: SqueezeNet's pool1 at batch 1, 0.64 ms against 0.97 ms.
        mask = self._picks(top).cpu_data()
        index = mask.astype(np.intp)
        index += (np.arange(n * c) * (height * width)).reshape(n, c, 1, 1)  # in all of dx
        index, values = index.ravel(), dy.ravel()
        if (mask < 0).any():
            keep = mask.ravel() >= 0
            index, values = index[keep], values[keep]
        flat = dx.reshape(-1)  # a view: the blob's diff is contiguous
        flat.fill(0)
        np.add.at(flat, index, values)

    # ---- device
    def _geometry(self, bottom):
        """The window arguments every pooling.cl kernel takes, after its data pointers."""
        i32 = np.int32
        return (i32(bottom[0].height), i32(bottom[0].width), i32(self.pooled_height),
                i32(self.pooled_width), i32(self.kernel_h), i32(self.kernel_w),
                i32(self.stride_h), i32(self.stride_w), i32(self.pad_h), i32(self.pad_w))

    def forward_gpu(self, bottom, top):
        x = bottom[0].gpu_data()
        y = top[0].mutable_gpu_data()
        pool = self.layer_param.pooling_param.pool
        if pool == P.AVE:
            opencl.kernel("pooling.cl", "ave_pool_forward")(
                top[0].count, x, *self._geometry(bottom), y)
            return
        if pool == P.STOCHASTIC and self.layer_param.phase != caffe_pb2.TRAIN:
            opencl.kernel("pooling.cl", "sto_pool_forward_test")(
                top[0].count, x, *self._geometry(bottom), y)
            return
        if pool == P.STOCHASTIC:
            opencl.kernel("pooling.cl", "sto_pool_forward_train")(
                top[0].count, x, *self._geometry(bottom), self.draw_seed(), y,
                self.rand_idx.mutable_gpu_data())
            return
        mask = (top[1] if len(top) > 1 else self.max_idx).mutable_gpu_data()
        self.max_idx_fresh = len(top) == 1  # the device computes the mask always
        opencl.kernel("pooling.cl", "max_pool_forward")(
            top[0].count, x, *self._geometry(bottom), y, mask)

    def backward_gpu(self, top, propagate_down, bottom):
        if not propagate_down[0]:
            return
        dy = top[0].gpu_diff()
        dx = bottom[0].mutable_gpu_diff()
        if self.layer_param.pooling_param.pool == P.AVE:
            opencl.kernel("pooling.cl", "ave_pool_backward")(
                bottom[0].count, dy, *self._geometry(bottom), dx)
            return
        mask = self._picks(top).gpu_data()  # MAX's argmax or STOCHASTIC's pick: the same routing
        if self.stride_h >= self.kernel_h and self.stride_w >= self.kernel_w:
            # Windows cannot overlap: scatter each window's gradient to its argmax.
            opencl.fill(dx, bottom[0].count, 0.0)
            opencl.kernel("pooling.cl", "max_pool_backward_scatter")(
                top[0].count, dy, mask, np.int32(self.pooled_height * self.pooled_width),
                np.int32(bottom[0].height * bottom[0].width), dx)
            return
        opencl.kernel("pooling.cl", "max_pool_backward")(
            bottom[0].count, dy, mask, *self._geometry(bottom), dx)


def sliding_fmax(a, out, axis, kernel, stride, pad):
    """out[..., i, ...] = the largest of a[..., i s - p + t, ...], t < kernel, along `axis`
    (2 or 3), leaving out the indices outside `a` (padding or CEIL overhang): -inf for a
    window with none. fmax skips NaN (a window of NaN alone gives NaN); max is exact and
    order-free, so the caller's fmax with -FLT_MAX at the end gives Caffe's value.

    For each offset t the windows i whose pixel i s - p + t lies inside `a` form one
    range, so each t is a single np.fmax over a slice, and no padded copy of `a` is made.
    """
    size, count = a.shape[axis], out.shape[axis]

    def along(start, stop, step=1):
        return (slice(None),) * axis + (slice(start, stop, step),)

    whole, part = [], []  # the pixels of offsets every window has, and (first, stop, pixels)
    for t in range(kernel):
        first = max(0, -((t - pad) // stride))  # the windows with i s - p + t >= 0 ...
        stop = min(count, (size - 1 + pad - t) // stride + 1)  # ... and <= size - 1
        if first >= stop:
            continue  # offset t is padding or overhang in every window
        start = first * stride - pad + t
        pixels = a[along(start, start + (stop - first - 1) * stride + 1, stride)]
        if (first, stop) == (0, count):
            whole.append(pixels)
        else:
            part.append((first, stop, pixels))
    # Start from two offsets every window has, in one np.fmax (the usual case: 12% less
    # time than starting from a copy of one, SqueezeNet's pool1 0.68 ms against 0.78).
    if len(whole) >= 2:
        np.fmax(whole[0], whole[1], out=out)
    elif whole:
        np.copyto(out, whole[0])
    else:
        out.fill(-np.inf)
    part += [(0, count, pixels) for pixels in whole[2:]]
    for first, stop, pixels in part:
        windows = out[along(first, stop)]
        np.fmax(windows, pixels, out=windows)


def same_width_fmax(a, out, kernel, pad):
    """sliding_fmax along the last axis, stride 1, where `out` is as wide as `a` (both
    C-contiguous), as in GoogLeNet's 3x3 stride 1 pad 1 pools.

    Each offset is then one shift of the whole flattened array: one np.fmax instead of
    one per row (GoogLeNet's 14x14x512 pool: 0.08 ms against 0.23). A shifted pixel
    from the row before or after reaches only the first `pad` and last k - 1 - pad
    columns, which are then redone from their own row.
    """
    width, flat_a, flat_out = a.shape[-1], a.reshape(-1), out.reshape(-1)
    np.copyto(flat_out, flat_a)  # offset t = pad: pixel j of window j
    for shift in range(-pad, kernel - pad):
        if shift < 0:
            np.fmax(flat_out[-shift:], flat_a[:shift], out=flat_out[-shift:])
        elif shift > 0:
            np.fmax(flat_out[:-shift], flat_a[shift:], out=flat_out[:-shift])
    for j in sorted({*range(min(pad, width)), *range(max(0, width - (kernel - 1 - pad)), width)}):
        first, stop = max(0, j - pad), min(width, j - pad + kernel)  # its window, clipped
        column = out[..., j]  # (np.fmax.reduce over a[..., first:stop] is 5x slower)
        np.copyto(column, a[..., first])
        for i in range(first + 1, stop):
            np.fmax(column, a[..., i], out=column)


def first_index(a, value):
    """For each position, the first i along axis 0 with a[i] == value (len(a) if none).

    With value = a.max(axis=0) this is a.argmax(axis=0), but 13x faster on LeNet's pool1
    windows (0.24 ms against 3.1 ms: np.argmax along axis 0 copies `a`, then scans one
    4-long row per position); with np.argmax, LeNet trained 35% slower.
    """
    first = np.zeros(value.shape, np.min_scalar_type(len(a)))  # the smallest int holding len(a)
    seen = np.zeros(value.shape, bool)  # has value appeared yet?
    for entry in a:
        seen |= entry == value
        first += ~seen
    return first
