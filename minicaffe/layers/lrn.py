r"""LRN: local response normalization, across channels or within each channel.

Caffe's `lrn_layer.cpp` / `.cu` (`include/caffe/layers/lrn_layer.hpp`). Device twin:
`opencl/lrn.cl`.
"""
import numpy as np

from minicaffe import opencl
from minicaffe.blob import Blob
from minicaffe.common import MinicaffeError
from minicaffe.layer import Layer, register_layer
from minicaffe.proto import caffe_pb2

NormRegion = caffe_pb2.LRNParameter


def window_sum(a: np.ndarray, axis: int, size: int, out: np.ndarray | None = None) -> np.ndarray:
    """Sum of `a` over a window of `size` (odd) centred on each position along `axis`.

    Positions past either end of `a` count as zeros. The sum starts from the centre and
    adds the neighbours at distance 1, 2, ... on the left, then the right, each as one
    shifted-slice addition: size - 1 passes over the array, no padded copy (0.3 ms for
    AlexNet's 96x55x55 with size 5, a third of a cumulative sum's time), and no
    cancellation, which a running add-and-subtract (Caffe's loop, a cumulative sum)
    suffers when large and small values mix. `opencl/lrn.cl` adds in the same order.
    """
    if out is None:
        total = a.copy()
    else:
        np.copyto(out, a)
        total = out
    length = a.shape[axis]

    def part(array, start, stop):
        index = [slice(None)] * array.ndim
        index[axis] = slice(start, stop)
        return array[tuple(index)]

    for d in range(1, min((size - 1) // 2, length - 1) + 1):
        part(total, d, length)[...] += part(a, 0, length - d)  # the neighbour d to the left
        part(total, 0, length - d)[...] += part(a, d, length)  # the neighbour d to the right
    return total


@register_layer
class LRNLayer(Layer):
    r"""Local response normalization (Krizhevsky et al. 2012), as CaffeNet, AlexNet and
    GoogLeNet use it after their first convolutions.

    Each value is divided by a power of the energy of its neighbourhood. With $n$ =
    `local_size` (odd), $\alpha$ = `alpha`, $\beta$ = `beta`, $k$ = `k`:

    **ACROSS_CHANNELS** (the default): the neighbours of $x_{c}$ at one pixel are the
    channels $c - \frac{n-1}{2}$ to $c + \frac{n-1}{2}$ at the same pixel, those past the
    first or last channel counting as zeros (still divided by $n$):

    $$ s_c = k + \frac{\alpha}{n} \sum_{c' = c - \frac{n-1}{2}}^{c + \frac{n-1}{2}} x_{c'}^2,
       \qquad y_c = x_c\, s_c^{-\beta} $$

    **WITHIN_CHANNEL**: the neighbours are the $n \times n$ pixels around $(h, w)$ in the
    same channel. Caffe builds this mode from inner layers (Split, Power $x^2$, AVE
    Pooling with kernel $n$, stride 1 and pad $\frac{n-1}{2}$, Power
    $(1 + \alpha\,\cdot)^{-\beta}$, Eltwise PROD), and we compute what they compute:
    that pooling counts the zero padding in its mean, so every window is divided by
    $n^2$, even at the border; and the Power layer's shift is a fixed 1, so **$k$ is
    ignored** in this mode:

    $$ s_{hw} = 1 + \frac{\alpha}{n^2} \sum_{|h' - h| \le \frac{n-1}{2}}
       \sum_{|w' - w| \le \frac{n-1}{2}} x_{h'w'}^2, \qquad y_{hw} = x_{hw}\, s_{hw}^{-\beta} $$

    Backward, in both modes, with $W(i)$ the window around $i$ and $m$ its size
    ($n$ or $n^2$); $j \in W(i)$ exactly when $i \in W(j)$, as windows are centred:

    $$ \frac{\partial E}{\partial x_i} = \frac{\partial E}{\partial y_i}\, s_i^{-\beta}
       - \frac{2 \alpha \beta}{m}\, x_i \sum_{j \in W(i)}
         \frac{\partial E}{\partial y_j}\, \frac{y_j}{s_j} $$

    The scale $s$ is kept between forward and backward in `self.scale` (Caffe's
    `scale_`). Not in place: backward needs both x and y.

    numpy engine: the window sums are `window_sum`, a few shifted-array additions
    (over channels, or over rows then columns); forward across channels goes through a
    large image a block of channels at a time (`BLOCK`). Device twin: one work-item per value,
    each summing its own window in the same order, so that a batch of one still spreads
    over all of a map's values (Caffe's lrn_fill_scale walks the channels of one pixel
    per thread instead, which leaves most of a GPU idle at batch 1).

    Bottom: x, (N, C, H, W).   Top: y, the shape of x.

        layer { name: "norm1" type: "LRN" bottom: "conv1" top: "norm1"
                lrn_param { local_size: 5 alpha: 0.0001 beta: 0.75 } }
    """

    type = "LRN"
    exact_num_bottom_blobs = 1
    exact_num_top_blobs = 1

    def _fail(self, message):
        raise MinicaffeError(f"{self.type} layer {self.name!r}: {message}")

    def layer_setup(self, bottom, top):
        p = self.layer_param.lrn_param
        if p.local_size % 2 != 1:
            self._fail(f"local_size must be odd (the window is centred), got {p.local_size}")
        self.size = p.local_size
        self.alpha, self.beta, self.k = p.alpha, p.beta, p.k
        self.across = p.norm_region == NormRegion.ACROSS_CHANNELS
        # Window size m: the sum of squares is divided by it, and the gradient by it too.
        self.window = self.size if self.across else self.size * self.size
        self.shift = self.k if self.across else 1.0  # WITHIN_CHANNEL's Power layer shifts by 1
        self.scale = Blob(name=f"{self.name}.scale")

    def reshape(self, bottom, top):
        if bottom[0].num_axes != 4:
            self._fail(f"bottom {bottom[0].name!r} must have 4 axes (N, C, H, W), "
                       f"got shape {bottom[0].shape}")
        top[0].reshape_like(bottom[0])
        self.scale.reshape_like(bottom[0])

    def _window_sum(self, a, out=None):
        if self.across:
            return window_sum(a, 1, self.size, out)
        return window_sum(window_sum(a, 2, self.size), 3, self.size, out)  # rows, then columns

    # Values per block of channels in forward across channels. Forward's ten or so passes
    # over an image larger than the cache reload it from memory each time; over a block
    # of channels they stay in cache: GoogLeNet's norm2 (1 x 192 x 56 x 56, best of 15, one
    # thread) 1.40 ms against 1.97 ms, AlexNet's norm1 at batch 10 6.8 against 9.2; its
    # norm1 (64 x 56 x 56, in two blocks) is unchanged, 0.43 ms.
    BLOCK = 1 << 17

    def forward_cpu(self, bottom, top):
        x = bottom[0].cpu_data()
        s, y = self.scale.mutable_cpu_data(), top[0].mutable_cpu_data()
        n, c, h, w = x.shape
        block = max(1, self.BLOCK // (h * w))  # channels per block
        if not self.across or block >= c:  # the whole batch at once
            self._normalize(x, s, y)
            return
        half = (self.size - 1) // 2
        for i in range(n):
            for c0 in range(0, c, block):
                c1 = min(c, c0 + block)
                # The block's window sums need up to `half` channels more on either side;
                # the (partial) sums of those channels are dropped.
                lo, hi = max(0, c0 - half), min(c, c1 + half)
                xs = x[i, lo:hi]
                sums = window_sum(xs * xs, 0, self.size)[c0 - lo:c1 - lo]
                self._finish(sums, x[i, c0:c1], s[i, c0:c1], y[i, c0:c1])

    def _normalize(self, x, s, y):
        """s = shift + alpha/m · (window sum of x²), y = x s^-beta."""
        self._finish(self._window_sum(x * x, out=s), x, s, y)

    def _finish(self, sums, x, s, y):
        """s = shift + alpha/m · sums, y = x s^-beta (sums may be s itself)."""
        np.multiply(sums, np.float32(self.alpha / self.window), out=s)
        s += np.float32(self.shift)
        np.power(s, np.float32(-self.beta), out=y)
        y *= x

    def backward_cpu(self, top, propagate_down, bottom):
        if not propagate_down[0]:
            return
        x, s = bottom[0].cpu_data(), self.scale.cpu_data()
        y, dy = top[0].cpu_data(), top[0].cpu_diff()
        ratio = self._window_sum(dy * y / s)
        ratio *= x
        ratio *= np.float32(2 * self.alpha * self.beta / self.window)
        dx = bottom[0].mutable_cpu_diff()
        np.power(s, np.float32(-self.beta), out=dx)
        dx *= dy
        dx -= ratio

    # ---- device
    def _geometry(self, bottom):
        n, c, h, w = bottom[0].shape
        return np.int32(self.across), np.int32(c), np.int32(h), np.int32(w), np.int32(self.size)

    def forward_gpu(self, bottom, top):
        opencl.kernel("lrn.cl", "lrn_forward")(
            bottom[0].count, bottom[0].gpu_data(), *self._geometry(bottom),
            np.float32(self.alpha / self.window), np.float32(self.shift),
            np.float32(-self.beta), self.scale.mutable_gpu_data(), top[0].mutable_gpu_data())

    def backward_gpu(self, top, propagate_down, bottom):
        if not propagate_down[0]:
            return
        opencl.kernel("lrn.cl", "lrn_backward")(
            bottom[0].count, bottom[0].gpu_data(), top[0].gpu_data(), self.scale.gpu_data(),
            top[0].gpu_diff(), *self._geometry(bottom), np.float32(-self.beta),
            np.float32(2 * self.alpha * self.beta / self.window), bottom[0].mutable_gpu_diff())
