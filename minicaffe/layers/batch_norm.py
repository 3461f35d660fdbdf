r"""BatchNorm: normalize each channel to zero mean and unit variance over the batch.

Caffe's `batch_norm_layer.cpp` / `batch_norm_layer.hpp` (Ioffe and Szegedy, 2015). The
channels are axis 1; every other axis is reduced: the bottom is viewed as $(N, C, S)$
with $S$ the product of the spatial axes, and each channel $c$ has $m = N S$ values
(a bottom of one axis is one channel of $N$ values).

With batch statistics (training):

$$ \mu_c = \frac1m \sum_{n,s} x_{n,c,s}, \qquad
   \sigma^2_c = \frac1m \sum_{n,s} (x_{n,c,s} - \mu_c)^2, \qquad
   y_{n,c,s} = \frac{x_{n,c,s} - \mu_c}{\sqrt{\sigma^2_c + \epsilon}} $$

and every such forward updates the three blobs, the running sums $M$, $V$ and their
weight $w$, with $\lambda$ = `moving_average_fraction`:

$$ w \leftarrow \lambda w + 1, \qquad M_c \leftarrow \mu_c + \lambda M_c, \qquad
   V_c \leftarrow \frac{m}{m - 1} \sigma^2_c + \lambda V_c $$

($\frac{m}{m-1}$, Bessel's correction, is 1 when $m = 1$). With global statistics (the
default in the TEST phase; `use_global_stats` overrides) the layer uses their weighted
averages instead, $\mu_c = M_c / w$ and $\sigma^2_c = V_c / w$ (both 0 while $w = 0$),
and updates nothing.

Backward, with batch statistics (the mean and variance depend on every $x$ of the
channel; means over $n, s$):

$$ \frac{\partial E}{\partial x} = \frac{1}{\sqrt{\sigma^2_c + \epsilon}} \left(
   \frac{\partial E}{\partial y} - \operatorname{mean}\Big(\frac{\partial E}{\partial y}\Big)
   - \operatorname{mean}\Big(\frac{\partial E}{\partial y}\, y\Big)\, y \right) $$

and with global statistics, constants: $\partial E/\partial x = (\partial E/\partial y)
/ \sqrt{\sigma^2_c + \epsilon}$.

The blobs are statistics, not parameters: as in Caffe, setup gives each a `param`
spec with `lr_mult: 0` (so no solver moves them), and a nonzero `lr_mult` given for one
is an error. There is no learned scale or shift: follow the layer with a Scale layer
with `bias_term: true`. In place (top = bottom) is fine: training keeps its own copy of
$y$ for backward, as an in-place layer after it may overwrite the top (on the numpy
engine, only when backward may be asked for $x$'s gradient).

    layer { name: "bn_conv1" type: "BatchNorm" bottom: "conv1" top: "conv1"
            batch_norm_param { use_global_stats: true } }

Device twin: `opencl/batch_norm.cl` (the statistics are one work-group per channel,
reduced and applied on the device; the weight $w$ is read and updated there too).
"""
import numpy as np

from minicaffe import opencl
from minicaffe.blob import Blob
from minicaffe.common import MinicaffeError
from minicaffe.layer import Layer, register_layer
from minicaffe.layers.helpers import launch_per_slice
from minicaffe.proto import caffe_pb2


@register_layer
class BatchNormLayer(Layer):
    """Per-channel normalization by batch or running statistics; see the module docstring."""

    type = "BatchNorm"
    exact_num_bottom_blobs = 1
    exact_num_top_blobs = 1

    def _error(self, message: str) -> MinicaffeError:
        return MinicaffeError(f"{self.type} layer {self.name!r}: {message}")

    def _channels(self, x: Blob) -> int:
        if x.num_axes == 0:
            raise self._error(f"bottom {x.name!r} is a scalar; it needs a batch axis "
                              f"(and channels on axis 1)")
        return x.shape[1] if x.num_axes > 1 else 1

    def layer_setup(self, bottom, top):
        p = self.layer_param.batch_norm_param
        self.moving_average_fraction = p.moving_average_fraction
        self.eps = p.eps
        # Batch statistics while training, the stored ones when testing, unless told.
        self.use_global_stats = (p.use_global_stats if p.HasField("use_global_stats")
                                 else self.phase == caffe_pb2.TEST)
        self.channels = self._channels(bottom[0])
        shapes = [(self.channels,), (self.channels,), (1,)]
        if self.blobs:  # given in the prototxt, or a caffemodel merged into it
            counts = [b.count for b in self.blobs]
            if counts != [s[0] for s in shapes]:
                raise self._error(f"expected 3 blobs (mean, variance, their weight) of "
                                  f"{self.channels}, {self.channels} and 1 values, got "
                                  f"{len(counts)} of {counts} values")
        else:
            for shape, what in zip(shapes, ("mean", "variance", "weight")):
                blob = Blob(shape, name=f"{self.name}.{what}")
                blob.mutable_cpu_data()[...] = 0
                self.blobs.append(blob)
        # The solver must never move the statistics: give each blob lr_mult 0 (the Net
        # reads these specs after setup), and refuse a spec that says otherwise.
        specs = self.layer_param.param
        for i in range(len(self.blobs)):
            if len(specs) == i:
                specs.add().lr_mult = 0
            elif specs[i].lr_mult != 0:
                raise self._error(f"param {i} has lr_mult {specs[i].lr_mult:g}, but the "
                                  f"batch statistics cannot be learned: give lr_mult: 0 "
                                  f"or leave the param out")
        self.param_propagate_down = [False] * len(self.blobs)
        # Scratch: the per-channel mean and 1 / sqrt(variance + eps) that forward used,
        # and (training) the normalized y that backward needs.
        self.mean = Blob(name=f"{self.name}.batch_mean")
        self.inv_std = Blob(name=f"{self.name}.batch_inv_std")
        self.x_norm = Blob(name=f"{self.name}.x_norm")

    def reshape(self, bottom, top):
        x = bottom[0]
        if self._channels(x) != self.channels:
            raise self._error(f"bottom {x.name!r} of shape {x.shape} has {self._channels(x)} "
                              f"channels on axis 1; the layer was set up for {self.channels}")
        self.num, self.spatial = x.shape[0], x.count_range(2)
        if top[0] is not bottom[0]:
            top[0].reshape_like(x)
        self.mean.reshape(self.channels)
        self.inv_std.reshape(self.channels)
        if not self.use_global_stats:
            self.x_norm.reshape_like(x)

    def _bias_correction(self) -> np.float32:
        """m / (m - 1): the running variance estimates the population's, not the batch's."""
        m = self.num * self.spatial
        return np.float32(m / (m - 1) if m > 1 else 1.0)

    # ---- numpy
    def forward_cpu(self, bottom, top):
        shape = (self.num, self.channels, self.spatial)
        x = bottom[0].cpu_data().reshape(shape)
        y = top[0].mutable_cpu_data().reshape(shape)
        mean = self.mean.mutable_cpu_data()
        if self.use_global_stats:
            w = float(self.blobs[2].cpu_data().reshape(-1)[0])
            factor = np.float32(0 if w == 0 else 1 / w)  # no statistics yet: mean, variance 0
            mean[...] = self.blobs[0].cpu_data().reshape(-1) * factor
            variance = self.blobs[1].cpu_data().reshape(-1) * factor
            np.subtract(x, mean[:, None], out=y)
        else:
            m = self.num * self.spatial
            # einsum's sums, not ndarray.sum's: 3x faster below 1000 values a channel
            # (1024 x 14 x 14: 0.045 -> 0.013 ms), 1.4x above; float32 either way.
            mean[...] = np.einsum("ncs->c", x) / np.float32(m)
            np.subtract(x, mean[:, None], out=y)  # centred; x may be y from here on
            variance = np.einsum("ncs,ncs->c", y, y) / np.float32(m)
            lam = np.float32(self.moving_average_fraction)
            running_mean, running_var, weight = (b.mutable_cpu_data().reshape(-1)
                                                 for b in self.blobs)
            weight *= lam
            weight += 1
            running_mean[...] = mean + lam * running_mean
            running_var[...] = self._bias_correction() * variance + lam * running_var
        inv_std = self.inv_std.mutable_cpu_data()
        inv_std[...] = 1 / np.sqrt(variance + np.float32(self.eps))
        y *= inv_std[:, None]
        # Backward needs y, which a later in-place layer may overwrite: keep a copy,
        # unless no gradient will be asked (a net with no loss below): 0.73 -> 0.48 ms
        # at 64 x 112 x 112.
        if not self.use_global_stats and self.backward_may_need(0):
            self.x_norm.mutable_cpu_data()[...] = top[0].cpu_data()

    def backward_cpu(self, top, propagate_down, bottom):
        if not propagate_down[0]:
            return
        shape = (self.num, self.channels, self.spatial)
        dy = top[0].cpu_diff().reshape(shape)
        dx = bottom[0].mutable_cpu_diff().reshape(shape)  # may be dy itself (in place)
        inv_std = self.inv_std.cpu_data()[:, None]
        if self.use_global_stats:
            np.multiply(dy, inv_std, out=dx)
            return
        y = self.x_norm.cpu_data().reshape(shape)
        m = np.float32(self.num * self.spatial)
        mean_dy = np.einsum("ncs->c", dy)[:, None] / m  # einsum: as forward's mean
        mean_dy_y = np.einsum("ncs,ncs->c", dy, y)[:, None] / m
        # (dy - mean(dy) - mean(dy y) y) / std, with x_norm's diff as the one temporary
        term = np.multiply(y, mean_dy_y, out=self.x_norm.mutable_cpu_diff().reshape(shape))
        term += mean_dy
        np.subtract(dy, term, out=dx)
        dx *= inv_std

    # ---- device
    def forward_gpu(self, bottom, top):
        channels, spatial = np.int32(self.channels), np.int32(self.spatial)
        x, y = bottom[0].gpu_data(), top[0].mutable_gpu_data()
        mean, inv_std = self.mean.mutable_gpu_data(), self.inv_std.mutable_gpu_data()
        if self.use_global_stats:
            opencl.kernel("batch_norm.cl", "batch_norm_global_stats")(
                self.channels, *(b.gpu_data() for b in self.blobs),
                np.float32(self.eps), mean, inv_std)
            opencl.kernel("batch_norm.cl", "batch_norm_normalize")(
                bottom[0].count, x, mean, inv_std, channels, spatial, y)
        else:
            launch_per_slice(
                "batch_norm.cl", "batch_norm_train_forward", self.channels,
                self.num * self.spatial, x, np.int32(self.num), spatial,
                np.float32(self.moving_average_fraction), self._bias_correction(),
                np.float32(self.eps), *(b.mutable_gpu_data() for b in self.blobs),
                mean, inv_std, y, self.x_norm.mutable_gpu_data())

    def backward_gpu(self, top, propagate_down, bottom):
        if not propagate_down[0]:
            return
        dy, dx = top[0].gpu_diff(), bottom[0].mutable_gpu_diff()
        spatial = np.int32(self.spatial)
        if self.use_global_stats:
            opencl.kernel("batch_norm.cl", "batch_norm_backward_global")(
                top[0].count, dy, self.inv_std.gpu_data(), np.int32(self.channels), spatial, dx)
        else:
            launch_per_slice(
                "batch_norm.cl", "batch_norm_train_backward", self.channels,
                self.num * self.spatial, dy, self.x_norm.gpu_data(), self.inv_std.gpu_data(),
                np.int32(self.num), spatial, dx)
