r"""MVN: mean-variance normalization of each channel (or each image) to mean 0, std 1.

Caffe's `mvn_layer.cpp` / `.cu` (`include/caffe/layers/mvn_layer.hpp`). Device twin:
`opencl/mvn.cl`.
"""
import numpy as np

from minicaffe import opencl
from minicaffe.blob import Blob
from minicaffe.common import MinicaffeError
from minicaffe.layer import Layer, register_layer


@register_layer
class MVNLayer(Layer):
    r"""Subtract the mean, and optionally divide by the standard deviation, over groups.

    A group is one channel of one image, its $H W$ values (the default), or with
    `across_channels: true` one whole image, its $C H W$ values. Over a group of $D$
    values, with $\epsilon$ = `eps`:

    $$ \mu = \frac1D \sum_i x_i, \qquad \sigma = \sqrt{\frac1D \sum_i (x_i - \mu)^2},
       \qquad y_i = \frac{x_i - \mu}{\sigma + \epsilon} $$

    Note where $\epsilon$ goes, as in Caffe: it is added to the standard deviation, not
    to the variance (BatchNorm adds it to the variance). The variance is computed in two
    passes, as the mean of squared deviations. With `normalize_variance: false`,
    $y_i = x_i - \mu$.

    Backward, per group, with means $\langle\cdot\rangle$ over the group:

    $$ \frac{\partial E}{\partial x_i} = \frac{1}{\sigma + \epsilon}\left(
       \frac{\partial E}{\partial y_i} - \Big\langle \frac{\partial E}{\partial y} \Big\rangle
       - y_i \Big\langle y\, \frac{\partial E}{\partial y} \Big\rangle \right)
       \qquad \text{or, without the variance,} \qquad
       \frac{\partial E}{\partial x_i} = \frac{\partial E}{\partial y_i}
       - \Big\langle \frac{\partial E}{\partial y} \Big\rangle $$

    This is Caffe's formula: the exact gradient when $\epsilon = 0$, so it drifts from
    the true one as $\epsilon$ grows against $\sigma$ (negligible at the default 1e-9).
    $\sigma + \epsilon$ is kept between forward and backward in `self.variance` (Caffe's
    `variance_`, which holds it despite its name). Not in place: backward reads y and
    writes dx, and forward needs x whole to compute $\mu$.

    Shapes are Caffe's legacy 4-D ones: a bottom of up to 4 axes is read as
    (N, C, H, W), missing trailing axes being 1, and the top gets that 4-D shape (a
    (N, D) bottom gives a (N, D, 1, 1) top). More than 4 axes is an error.

    numpy engine: the blob viewed as (groups, D), means along axis 1. Device twin: one
    work-group per group, which totals its values with `group_sum` (common.cl) and then
    writes the group's outputs, so a forward or backward is one launch.

    Bottom: x, (N, C, H, W).   Top: y, (N, C, H, W).

        layer { name: "mvn" type: "MVN" bottom: "data" top: "mvn"
                mvn_param { normalize_variance: true across_channels: false } }
    """

    type = "MVN"
    exact_num_bottom_blobs = 1
    exact_num_top_blobs = 1

    def layer_setup(self, bottom, top):
        p = self.layer_param.mvn_param
        self.normalize_variance = p.normalize_variance
        self.across_channels = p.across_channels
        self.eps = p.eps
        self.variance = Blob(name=f"{self.name}.variance")

    def reshape(self, bottom, top):
        b = bottom[0]
        if b.num_axes > 4:
            raise MinicaffeError(f"{self.type} layer {self.name!r}: bottom {b.name!r} has "
                                 f"{b.num_axes} axes, shape {b.shape}; MVN reads at most 4 "
                                 f"(N, C, H, W)")
        top[0].reshape(b.num, b.channels, b.height, b.width)
        self.groups = b.num if self.across_channels else b.num * b.channels
        self.dim = b.count // self.groups if self.groups else 0
        self.variance.reshape(self.groups)

    def forward_cpu(self, bottom, top):
        x = bottom[0].cpu_data().reshape(self.groups, self.dim)
        y = top[0].mutable_cpu_data().reshape(self.groups, self.dim)
        np.subtract(x, x.mean(axis=1, keepdims=True), out=y)
        if self.normalize_variance:
            std = self.variance.mutable_cpu_data()
            np.sqrt((y * y).mean(axis=1), out=std)
            std += np.float32(self.eps)
            y /= std[:, None]

    def backward_cpu(self, top, propagate_down, bottom):
        if not propagate_down[0]:
            return
        dy = top[0].cpu_diff().reshape(self.groups, self.dim)
        dx = bottom[0].mutable_cpu_diff().reshape(self.groups, self.dim)
        np.subtract(dy, dy.mean(axis=1, keepdims=True), out=dx)
        if self.normalize_variance:
            y = top[0].cpu_data().reshape(self.groups, self.dim)
            dx -= y * (y * dy).mean(axis=1, keepdims=True)
            dx /= self.variance.cpu_data()[:, None]

    # ---- device: one work-group per group
    def _launch(self, name, *args):
        import pyopencl  # only the OpenCL engine comes here

        launcher = opencl.kernel("mvn.cl", name)
        group = launcher.work_group
        scratch = pyopencl.LocalMemory(group * np.dtype(opencl.DTYPE).itemsize)
        if self.groups:
            launcher.launch((self.groups * group,), (group,), np.int32(self.dim),
                            np.int32(self.normalize_variance), *args, scratch)

    def forward_gpu(self, bottom, top):
        self._launch("mvn_forward", np.float32(self.eps), bottom[0].gpu_data(),
                     self.variance.mutable_gpu_data(), top[0].mutable_gpu_data())

    def backward_gpu(self, top, propagate_down, bottom):
        if propagate_down[0]:
            self._launch("mvn_backward", top[0].gpu_data(), top[0].gpu_diff(),
                         self.variance.gpu_data(), bottom[0].mutable_gpu_diff())
